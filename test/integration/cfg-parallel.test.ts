/**
 * CFG-parallel base stage (base.cfgParallel) through the distributed system: the unconditional and
 * conditional branches run as a gang of two tasks on two distinct runners, exchanging their UNet
 * outputs every step over NATS JetStream. The latent (and every later tile) must equal the
 * in-process batched run bit for bit. With a single base runner the gang waits queued.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, test } from "node:test";
import type { DispatcherLoad } from "../../coordinator/distributed/dispatcher.ts";
import type { JobRecord } from "../../coordinator/distributed/ports.ts";
import { LocalEngine } from "../../coordinator/engine.ts";
import { runPlanLocally } from "../../coordinator/executor/local.ts";
import { Coordinator } from "../../coordinator/server.ts";
import type { JobRequest } from "../../core/job.ts";
import { ensureModels } from "../../models/cache.ts";
import { connectNats, type NatsClients } from "../../transport/nats/connect.ts";
import { NatsTensorStore } from "../../transport/nats/tensors.ts";
import { type NatsServerHandle, startNatsServer } from "../support/nats-server.ts";
import { startNodeProcess } from "../support/process.ts";

let nats: NatsServerHandle;
let modelDir: string;
let coordinator: Coordinator;
let clients: NatsClients;
let store: NatsTensorStore;
let engine: LocalEngine;
const runners: ChildProcess[] = [];

async function startRunner(id: string): Promise<void> {
  const { child } = await startNodeProcess(
    "stage-runners/main.ts",
    {
      LAVIE_NATS_URL: nats.url,
      LAVIE_MODEL_DIR: modelDir,
      LAVIE_RUNNER_STAGES: "base,interpolation,vsr",
      LAVIE_RUNNER_ID: id,
      LAVIE_ORT_THREADS: "1",
    },
    /listening on/,
  );
  runners.push(child);
}

/** Polls the dispatcher's load until `pred` holds; fails after `ms` (a bound, not a timing check). */
async function waitForLoad(what: string, pred: (l: DispatcherLoad) => boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred(coordinator.load())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

async function until(id: string, pred: (r: JobRecord) => boolean, timeoutMs = 180_000): Promise<JobRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await coordinator.jobs.get(id);
    if (pred(r)) return r;
    if (r.state === "failed" || r.state === "cancelled") throw new Error(`job ${id} ${r.state}: ${r.error}`);
    if (Date.now() > deadline) throw new Error(`job ${id} still ${r.state} after ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** Every tile of the batched in-process plan equals the cfgParallel job's tile, bit for bit. */
async function assertSameAsBatched(req: JobRequest, done: JobRecord["done"]): Promise<void> {
  const spec = engine.resolve({ ...req, base: { ...req.base, cfgParallel: false } });
  const plan = engine.plan(spec);
  const local = await runPlanLocally(plan, spec, engine.networks, { release: false });
  for (const task of plan.tasks) {
    const ref = done[task.id];
    assert.ok(ref, `task ${task.id} has no recorded output`);
    const remote = await store.get(ref);
    const mine = local.get(task.output.tensor, task.output.tile);
    assert.deepEqual(remote.shape, mine.shape, task.id);
    assert.ok(
      Buffer.from(remote.data.buffer).equals(Buffer.from(mine.data.buffer)),
      `tile ${task.id} differs`,
    );
  }
  const marker = done["base.cfg_peer#0"];
  assert.ok(marker, "the uncond gang member has no recorded output");
  assert.deepEqual(marker.shape, [1]);
}

before(async () => {
  nats = await startNatsServer();
  modelDir = await ensureModels("tiny");
  coordinator = await Coordinator.start({ natsUrl: nats.url, modelDir, keepTensors: true });
  clients = await connectNats(nats.url, { name: "test" });
  store = await NatsTensorStore.open(clients.objm);
  engine = await LocalEngine.open(modelDir, { intraOpThreads: 1 });
});

after(async () => {
  for (const r of runners) r.kill("SIGKILL");
  await engine?.close();
  await coordinator?.stop();
  await clients?.close();
  await nats?.stop();
});

test("with one base runner a cfgParallel job waits queued; a second runner lets it finish", async () => {
  await startRunner("r-cfg-1");
  const req: JobRequest = {
    prompt: "a panda playing guitar",
    seed: 31,
    stopAfter: "base",
    base: { steps: 2, cfgParallel: true },
  };
  const { record } = await coordinator.jobs.submit(req);
  // The text task runs on the one runner; the gang then needs two distinct runners and waits.
  await until(record.id, (r) => r.done["text.base#0"] !== undefined);
  // Both members queued, nothing of the base stage running, the runner free: the gang waits (the
  // dispatcher looks at its queue on every submit and finish, so this is its answer, not a moment).
  await waitForLoad("the gang queued", (l) => (l.queuedGang.base ?? 0) === 2 && (l.inFlight.base ?? 0) === 0);
  const waiting = await coordinator.jobs.get(record.id);
  assert.equal(waiting.state, "running");
  assert.equal(waiting.done["base.latent#0"], undefined);
  assert.equal(waiting.done["base.cfg_peer#0"], undefined);
  const base = coordinator.jobs.progress(record.id).find((p) => p.stage === "base")!;
  assert.equal(base.stepsDone, 1, "only the text task of the base stage has run"); // text: 1 unit
  await startRunner("r-cfg-2");
  const finished = await until(record.id, (r) => r.state === "succeeded");
  await assertSameAsBatched(req, finished.done);
});

test("a cfgParallel cascade on two runners: every tile equals the in-process batched run", async () => {
  const req: JobRequest = {
    prompt: "a red fox",
    seed: 32,
    base: { steps: 3, cfgParallel: true },
    interpolation: { steps: 2 },
    vsr: { steps: 2 },
  };
  const { record } = await coordinator.jobs.submit(req);
  const finished = await until(record.id, (r) => r.state === "succeeded");
  await assertSameAsBatched(req, finished.done);
});
