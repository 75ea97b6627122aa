/**
 * A stage runner over real gRPC and a real nats-server (tiny models): tasks run remotely give the
 * same tiles, bit for bit, as the in-process executor; progress streams; cancelling frees the slot;
 * malformed requests are INVALID_ARGUMENT and the runner keeps serving; the process entry starts,
 * prints its ready line and drains on SIGTERM.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { dirname } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { limitsOf, planInfoOf } from "../../coordinator/engine.ts";
import { runPlanLocally, type TileStore } from "../../coordinator/executor/local.ts";
import { planJob } from "../../coordinator/plan/plan.ts";
import type { NetworkId, Plan, Task } from "../../coordinator/plan/types.ts";
import { type JobRequest, type JobSpec, resolveJob } from "../../core/job.ts";
import type { Tensor } from "../../core/tensor.ts";
import { type ExecuteTaskResponse, StageRunnerService } from "../../gen/lavie/v1/runner_pb.ts";
import { ensureModels } from "../../models/cache.ts";
import { loadModelDirectory, type ModelDirectory } from "../../models/loader.ts";
import type { ClipTokenizer } from "../../models/tokenizer/index.ts";
import { OrtNetworks } from "../../stage-runners/networks.ts";
import { OrtWorkerPool } from "../../stage-runners/ort/pool.ts";
import { fromProtoRef, toProtoRef } from "../../stage-runners/server/request.ts";
import { StageRunner } from "../../stage-runners/server/runner.ts";
import { createClient, serverStream, unary } from "../../transport/grpc/adapter.ts";
import { connectNats, type NatsClients } from "../../transport/nats/connect.ts";
import { RunnerRegistry } from "../../transport/nats/registry.ts";
import { NatsTensorStore } from "../../transport/nats/tensors.ts";
import { type NatsServerHandle, startNatsServer } from "../support/nats-server.ts";

const REPO = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
const THREADS = 2;

let nats: NatsServerHandle;
let clients: NatsClients;
let tensors: NatsTensorStore;
let registry: RunnerRegistry;
let md: ModelDirectory;
let modelDir: string;
let refPool: OrtWorkerPool;
let runner: StageRunner;
let client: grpc.Client;
let spec: JobSpec;
let plan: Plan;
let store: TileStore;

interface TileSetInit {
  tensor: string;
  shape: bigint[];
  axes: { axis: number; windows: { start: bigint; size: bigint }[] }[];
  tiles: ReturnType<typeof toProtoRef>[];
}
interface Req {
  jobId: string;
  attempt: number;
  taskJson: string;
  specJson: string;
  inputs: TileSetInit[];
  outputObject: string;
}

const JOB = "job-1";
const request: JobRequest = {
  prompt: "a panda playing guitar",
  seed: 3,
  stopAfter: "interpolation",
  base: { steps: 3 },
  interpolation: { steps: 2 },
  decode: { baseFrames: 4 },
};

before(async () => {
  nats = await startNatsServer();
  modelDir = await ensureModels("tiny");
  md = await loadModelDirectory(modelDir);
  clients = await connectNats(nats.url, { name: "runner-test" });
  tensors = await NatsTensorStore.open(clients.objm, { storage: "memory" });
  registry = await RunnerRegistry.open(clients.kvm, { storage: "memory" });

  // The in-process reference: every tile of the plan, kept.
  refPool = new OrtWorkerPool({ workers: 1, intraOpThreads: THREADS });
  const paths: Partial<Record<NetworkId, string>> = {};
  for (const [id, n] of Object.entries(md.networks)) paths[id as NetworkId] = n.path;
  const toks: Partial<Record<NetworkId, ClipTokenizer>> = {};
  for (const s of Object.values(md.stages)) toks[s.text.id] = s.tokenizer;
  spec = resolveJob(request, limitsOf(md));
  plan = planJob(spec, planInfoOf(md));
  store = await runPlanLocally(plan, spec, new OrtNetworks(refPool, paths, toks), { release: false });

  runner = new StageRunner({
    id: "test-runner",
    stages: ["base", "interpolation"],
    modelDir,
    slots: 1,
    intraOpThreads: THREADS,
    tensors,
    registry,
    heartbeatMs: 100,
  });
  const address = await runner.start();
  client = createClient(StageRunnerService, address);
});

after(async () => {
  client?.close();
  await runner?.stop();
  await refPool?.close();
  await clients?.close();
  await nats?.stop();
});

/** Puts every tile of a tensor of the reference run into NATS and describes it as a TileSet. */
const tileSets = new Map<string, TileSetInit>();
async function tileSet(tensor: string): Promise<TileSetInit> {
  const have = tileSets.get(tensor);
  if (have) return have;
  const tp = plan.tensors[tensor]!.tiles;
  const tiles = [];
  for (let i = 0; i < tp.tiles.length; i++) {
    tiles.push(toProtoRef(await tensors.put(`${JOB}/${tensor}/${i}`, store.get(tensor, i))));
  }
  const ts: TileSetInit = {
    tensor,
    shape: tp.shape.map(BigInt),
    axes: tp.axes.map((a) => ({
      axis: a.axis,
      windows: a.windows.map((w) => ({ start: BigInt(w.start), size: BigInt(w.size) })),
    })),
    tiles,
  };
  tileSets.set(tensor, ts);
  return ts;
}

function readTensors(task: Task): string[] {
  switch (task.kind) {
    case "text":
      return [];
    case "base_denoise":
      return [task.text.tensor];
    case "vae_decode":
    case "vae_encode":
      return [task.input.tensor];
    case "interp_denoise":
      return [task.text.tensor, task.cond.tensor];
    case "vsr_denoise":
      return [task.text.tensor, task.lowRes.tensor];
  }
}

async function requestFor(task: Task, jobId = JOB, s: JobSpec = spec): Promise<Req> {
  const inputs: TileSetInit[] = [];
  for (const t of readTensors(task)) inputs.push(await tileSet(t));
  return {
    jobId,
    attempt: 1,
    taskJson: JSON.stringify(task),
    specJson: JSON.stringify(s),
    inputs,
    outputObject: `${jobId}/out/${task.output.tensor}/${task.output.tile}`,
  };
}

interface CallResult {
  events: ExecuteTaskResponse[];
  error: grpc.ServiceError | undefined;
}

async function call(
  req: Req,
  opts: { signal?: AbortSignal; onEvent?: (e: ExecuteTaskResponse) => void } = {},
) {
  const out: CallResult = { events: [], error: undefined };
  try {
    for await (const e of serverStream(client, StageRunnerService, "executeTask", req, opts)) {
      out.events.push(e);
      opts.onEvent?.(e);
    }
  } catch (err) {
    out.error = err as grpc.ServiceError;
  }
  return out;
}

const describe = async () => (await unary(client, StageRunnerService, "describe", {})).runner!;

function sameBits(a: Tensor, b: Tensor, what: string): void {
  assert.deepEqual([...a.shape], [...b.shape], `${what}: shape`);
  const x = Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const y = Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength);
  assert.ok(x.equals(y), `${what}: the remote tile differs from the in-process tile`);
}

/** Runs a task on the runner and checks its output tile against the reference, bit for bit. */
async function runAndCompare(task: Task, edit?: (r: Req) => void): Promise<CallResult> {
  const req = await requestFor(task);
  edit?.(req);
  const r = await call(req);
  assert.equal(r.error, undefined, `task ${task.id}: ${r.error?.message}`);
  const kinds = r.events.map((e) => e.event.case);
  assert.equal(kinds[0], "started");
  assert.equal(kinds.at(-1), "completed");
  const first = r.events[0]!.event;
  assert.equal(first.case === "started" && first.value.runnerId, "test-runner");
  const last = r.events.at(-1)!.event;
  assert.ok(last.case === "completed" && last.value.output);
  const ref = fromProtoRef("output", last.value.output);
  assert.equal(ref.object, `${JOB}/out/${task.output.tensor}/${task.output.tile}`);
  sameBits(await tensors.get(ref), store.get(task.output.tensor, task.output.tile), task.id);
  return r;
}

const taskOf = (pred: (t: Task) => boolean): Task => {
  const t = plan.tasks.find(pred);
  assert.ok(t, "the plan has the task");
  return t;
};

test("text, base_denoise, vae_decode (a box) and interpolation tasks match the in-process tiles bit for bit", async () => {
  await runAndCompare(taskOf((t) => t.kind === "text" && t.stage === "base"));

  const denoise = await runAndCompare(taskOf((t) => t.kind === "base_denoise"));
  const progress = denoise.events.flatMap((e) => (e.event.case === "progress" ? [e.event.value] : []));
  assert.deepEqual(
    progress.map((p) => [p.done, p.total]),
    [
      [1, 3],
      [2, 3],
      [3, 3],
    ],
  );

  // The second decode task reads frames 4..8 of the base latent.
  const decode = taskOf(
    (t) => t.kind === "vae_decode" && t.output.tensor === "base.frames" && t.output.tile === 1,
  );
  assert.ok(decode.kind === "vae_decode" && decode.input.box.start[2] === 4);
  await runAndCompare(decode);

  // Interpolation: encode a frame group, then denoise reading interp.cond assembled from 4 tiles.
  // Tiles a task does not read may be sent as empty refs (the coordinator does, before they exist).
  const encode = taskOf((t) => t.kind === "vae_encode" && t.output.tile === 2);
  assert.ok(encode.kind === "vae_encode" && encode.input.tensor === "base.frames");
  await runAndCompare(encode, (req) => {
    const ts = req.inputs[0]!;
    assert.equal(ts.tiles.length, 4);
    req.inputs = [{ ...ts, tiles: ts.tiles.map((r, i) => (i === 2 ? r : { ...r, object: "", digest: "" })) }];
  });
  assert.ok(plan.tensors["interp.cond"]!.tiles.tiles.length > 1);
  await runAndCompare(taskOf((t) => t.kind === "text" && t.stage === "interpolation"));
  await runAndCompare(taskOf((t) => t.kind === "interp_denoise"));

  const info = await describe();
  assert.equal(info.id, "test-runner");
  assert.deepEqual(info.stages, ["base", "interpolation"]);
  assert.equal(info.slots, 1);
  assert.equal(info.freeSlots, 1);
  assert.equal(info.preset, "tiny");
  for (const n of ["clip_text", "base_unet", "sd_vae_decoder", "sd_vae_encoder", "interp_unet"]) {
    assert.ok(info.networksLoaded.includes(n), `${n} loaded`);
  }
  const listed = (await registry.list()).find((r) => r.id === "test-runner");
  assert.ok(listed, "the runner is registered");
  assert.deepEqual(listed.stages, ["base", "interpolation"]);
  assert.equal(listed.slots, 1);
});

test("cancelling a base_denoise call frees the slot quickly; a busy runner says RESOURCE_EXHAUSTED", async (t) => {
  const long = resolveJob({ ...request, base: { steps: 500 } }, limitsOf(md));
  const longPlan = planJob(long, planInfoOf(md));
  const task = longPlan.tasks.find((t) => t.kind === "base_denoise")!;
  // The text tile does not depend on the step count: reuse the reference run's, copied into this
  // job (a runner reads only objects of the request's job).
  const req = await requestFor(task, "job-cancel", long);
  const own = toProtoRef(await tensors.put("job-cancel/text.base/0", store.get("text.base", 0)));
  req.inputs = [{ ...(await tileSet("text.base")), tiles: [own] }];
  const abort = new AbortController();
  let progressed!: () => void;
  const firstProgress = new Promise<void>((r) => {
    progressed = r;
  });
  const running = call(req, {
    signal: abort.signal,
    onEvent: (e) => {
      if (e.event.case === "progress") progressed();
    },
  });
  await Promise.race([
    firstProgress,
    running.then((r) => assert.fail(`the call ended before any progress: ${r.error?.message}`)),
  ]);
  assert.equal((await describe()).freeSlots, 0);
  const busy = await call(await requestFor(taskOf((t) => t.kind === "text")));
  assert.equal(busy.error?.code, grpc.status.RESOURCE_EXHAUSTED, busy.error?.message);
  assert.equal(busy.error?.metadata.get("lavie-retryable")[0], "1");

  const t0 = performance.now();
  abort.abort();
  const r = await running;
  assert.equal(r.error?.code, grpc.status.CANCELLED);
  const steps = r.events.filter((e) => e.event.case === "progress").length;
  assert.ok(steps < 500, "the task stopped early");
  // The slot comes back because the task stopped, not because it ran to its end: no output was
  // written. (The wait is bounded; how long it takes is reported, not asserted.)
  const deadline = Date.now() + 120_000;
  while ((await describe()).freeSlots !== 1) {
    assert.ok(Date.now() < deadline, "the slot is freed after the cancel");
    await new Promise((res) => setTimeout(res, 10));
  }
  const ms = performance.now() - t0;
  assert.equal(await tensors.stat(req.outputObject), null, "the cancelled task wrote no output");
  t.diagnostic(`slot free ${ms.toFixed(0)} ms after the cancel, after ${steps} of 500 steps`);
  // And the runner keeps serving.
  await runAndCompare(taskOf((t) => t.kind === "text" && t.stage === "base"));
});

test("malformed requests are INVALID_ARGUMENT naming the field; the runner keeps serving", async () => {
  const text = taskOf((t) => t.kind === "text" && t.stage === "base");
  const denoise = taskOf((t) => t.kind === "base_denoise");
  const good = await requestFor(denoise);
  const cases: [string, Req, RegExp][] = [
    ["bad task JSON", { ...good, taskJson: "{not json" }, /task_json/],
    ["bad spec JSON", { ...good, specJson: "[]" }, /spec_json/],
    ["unknown kind", { ...good, taskJson: JSON.stringify({ ...denoise, kind: "dance" }) }, /task_json\.kind/],
    [
      "unknown stage",
      { ...good, taskJson: JSON.stringify({ ...denoise, stage: "audio" }) },
      /task_json\.stage/,
    ],
    [
      "stage not served",
      { ...good, taskJson: JSON.stringify({ ...text, stage: "vsr" }) },
      /task_json\.stage/,
    ],
    ["missing input TileSet", { ...good, inputs: [] }, /inputs.*text\.base/],
    ["wrong output prefix", { ...good, outputObject: "other-job/x" }, /output_object/],
    ["empty output object", { ...good, outputObject: "" }, /output_object/],
    ["missing job id", { ...good, jobId: "" }, /job_id/],
    [
      "tile count does not match the windows",
      { ...good, inputs: [{ ...good.inputs[0]!, tiles: [] }] },
      /inputs\[0\]\.tiles/,
    ],
    [
      "read box outside the tensor",
      {
        ...good,
        taskJson: JSON.stringify({
          ...denoise,
          text: { tensor: "text.base", box: { start: [0, 0, 0], size: [3, 77, 32] } },
        }),
      },
      /task_json\.text\.box/,
    ],
    [
      "spec missing a field",
      { ...good, specJson: JSON.stringify({ ...spec, base: undefined }) },
      /spec_json\.base/,
    ],
    [
      "height not a multiple of 8",
      { ...good, specJson: JSON.stringify({ ...spec, height: 36 }) },
      /spec_json\.height/,
    ],
  ];
  for (const [what, req, field] of cases) {
    const r = await call(req);
    assert.equal(r.error?.code, grpc.status.INVALID_ARGUMENT, `${what}: ${r.error?.message}`);
    assert.match(r.error!.details, field, what);
    assert.equal(r.events.length, 0, `${what}: no events`);
  }
  assert.equal((await describe()).freeSlots, 1);
  await runAndCompare(text);
});

test("drain: the task in flight completes, new tasks are UNAVAILABLE, the runner deregisters", async () => {
  const task = taskOf((t) => t.kind === "base_denoise");
  let started!: () => void;
  const isStarted = new Promise<void>((r) => {
    started = r;
  });
  const inFlight = call(await requestFor(task), {
    onEvent: (e) => {
      if (e.event.case === "started") started();
    },
  });
  await isStarted;
  const drained = runner.drain();
  const refused = await call(await requestFor(taskOf((t) => t.kind === "text")));
  assert.equal(refused.error?.code, grpc.status.UNAVAILABLE, refused.error?.message);
  assert.equal((await describe()).freeSlots, 0);
  const r = await inFlight;
  assert.equal(r.error, undefined, r.error?.message);
  assert.equal(r.events.at(-1)?.event.case, "completed");
  await drained;
  assert.ok(!(await registry.list()).some((x) => x.id === "test-runner"), "deregistered after the drain");
});

test("the process entry prints its ready line, serves Describe, and exits 0 on SIGTERM", async () => {
  const bad = spawn(process.execPath, ["--import", "tsx", "stage-runners/main.ts"], {
    cwd: REPO,
    env: { ...process.env, LAVIE_NATS_URL: "", LAVIE_RUNNER_SLOTS: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let badErr = "";
  bad.stderr.on("data", (d: Buffer) => {
    badErr += d.toString();
  });
  const badCode = await new Promise<number | null>((r) => bad.once("exit", (c) => r(c)));
  assert.equal(badCode, 2);
  assert.match(badErr, /LAVIE_NATS_URL/);

  const child = spawn(process.execPath, ["--import", "tsx", "stage-runners/main.ts"], {
    cwd: REPO,
    env: {
      ...process.env,
      LAVIE_NATS_URL: nats.url,
      LAVIE_RUNNER_STAGES: "vsr",
      LAVIE_RUNNER_ID: "child-runner",
      LAVIE_PRESET: "tiny",
      LAVIE_ORT_THREADS: "1",
      LAVIE_RUNNER_WARM: "1",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
  const line = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ready line in 30 s; stderr:\n${stderr}`)), 30_000);
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      const nl = stdout.indexOf("\n");
      if (nl >= 0) {
        clearTimeout(t);
        resolve(stdout.slice(0, nl));
      }
    });
    void exited.then((c) => reject(new Error(`exited with ${c} before ready; stderr:\n${stderr}`)));
  });
  const m = /^runner child-runner listening on (127\.0\.0\.1:\d+) stages=vsr$/.exec(line);
  assert.ok(m, `ready line: ${line}`);
  const c = createClient(StageRunnerService, m[1]!);
  try {
    const info = (await unary(c, StageRunnerService, "describe", {})).runner!;
    assert.equal(info.id, "child-runner");
    assert.deepEqual(info.stages, ["vsr"]);
    assert.equal(info.preset, "tiny");
    assert.deepEqual(info.networksLoaded, ["vsr_text", "vsr_unet", "x4_vae_decoder"], "warmed at start");
    assert.ok((await registry.list()).some((r) => r.id === "child-runner" && r.address === m[1]));
  } finally {
    c.close();
  }
  child.kill("SIGTERM");
  assert.equal(await exited, 0, stderr);
  assert.ok(!(await registry.list()).some((r) => r.id === "child-runner"), "deregistered on SIGTERM");
});
