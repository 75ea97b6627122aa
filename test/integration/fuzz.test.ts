/**
 * Bad input (issue 6): a bounded fuzz run (test/support/fuzz.ts) against a real coordinator and a
 * real stage runner process over a real nats-server. Every hostile request - random bytes,
 * truncated and bit-flipped messages, huge prompts, invalid UTF-8, extreme values, absurd
 * chunk/patch settings, unknown enums and fields, bad job ids, forged task/spec JSON and tensor
 * references, huge attempt numbers, output objects outside the job - gets a clear gRPC error
 * (INVALID_ARGUMENT naming the field, RESOURCE_EXHAUSTED over the size limit, NOT_FOUND,
 * FAILED_PRECONDITION, DATA_LOSS; never INTERNAL/UNKNOWN, never a hang), the services stay healthy
 * after each class, and a valid tiny job still succeeds at the end with both processes alive and
 * their memory not exploded.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { limitsOf } from "../../coordinator/engine.ts";
import { resolveJob } from "../../core/job.ts";
import { JobService, JobState } from "../../gen/lavie/v1/jobs_pb.ts";
import { ensureModels } from "../../models/cache.ts";
import { loadModelDirectory } from "../../models/loader.ts";
import { createClient, unary } from "../../transport/grpc/adapter.ts";
import { connectNats, type NatsClients } from "../../transport/nats/connect.ts";
import { NatsTensorStore } from "../../transport/nats/tensors.ts";
import { formatTallies, healthCheck, runFuzz } from "../support/fuzz.ts";
import { type NatsServerHandle, startNatsServer } from "../support/nats-server.ts";
import { startNodeProcess } from "../support/process.ts";

const PER_CLASS = Number(process.env.LAVIE_FUZZ_PER_CLASS ?? 100);
const SEED = Number(process.env.LAVIE_FUZZ_SEED ?? 6);
/** VmRSS growth allowed per process over the fuzz run (kB). */
const MAX_RSS_GROWTH_KB = 400 * 1024;

let nats: NatsServerHandle;
let clients: NatsClients;
let coordinator: { child: ChildProcess; address: string };
let runner: { child: ChildProcess; address: string };

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  assert.ok(m, `no VmRSS for ${pid}`);
  return Number(m[1]);
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
}

before(async () => {
  nats = await startNatsServer();
  const modelDir = await ensureModels("tiny");
  const env = { LAVIE_NATS_URL: nats.url, LAVIE_MODEL_DIR: modelDir, LAVIE_METRICS_PORT: "0" };
  const [c, r] = await Promise.all([
    startNodeProcess("coordinator/main.ts", { ...env, LAVIE_GRPC_PORT: "0" }, /listening on \S+/),
    startNodeProcess(
      "stage-runners/main.ts",
      { ...env, LAVIE_RUNNER_ID: "fuzz-runner", LAVIE_ORT_THREADS: "1" },
      /listening on \S+/,
    ),
  ]);
  coordinator = { child: c.child, address: c.line.split(" ").pop()! };
  runner = { child: r.child, address: r.line.split(" ").pop()! };
  clients = await connectNats(nats.url, { name: "fuzz-test" });
});

after(async () => {
  await Promise.all([stop(coordinator?.child), stop(runner?.child)]);
  await clients?.close();
  await nats?.stop();
});

test("hostile requests to the client and runner APIs all get clear errors; the services keep serving", async () => {
  const md = await loadModelDirectory(await ensureModels("tiny"));
  const spec = resolveJob({ prompt: "fuzz", stopAfter: "base", base: { steps: 1 } }, limitsOf(md));
  // A stored tile for digest/shape-mismatch cases: base.latent's first frame group, stored with its
  // height and width swapped (same size, another shape).
  const jobId = "fuzz-job";
  const tensors = await NatsTensorStore.open(clients.objm);
  const [h, w] = [spec.height / 8, spec.width / 8];
  const swapped = [1, 4, 4, w, h];
  const ref = await tensors.put(`${jobId}/stored/0`, {
    shape: swapped,
    data: new Float32Array(4 * 4 * w * h).fill(0.5),
  });

  const coordClient = new grpc.Client(coordinator.address, grpc.credentials.createInsecure());
  const runnerClient = new grpc.Client(runner.address, grpc.credentials.createInsecure());
  const rss0 = { coordinator: rssKb(coordinator.child.pid!), runner: rssKb(runner.child.pid!) };
  const t0 = performance.now();
  const tallies = await runFuzz(
    { coordinator: coordinator.address, runner: runner.address },
    {
      perClass: PER_CLASS,
      seed: SEED,
      // A bound for a hung answer (it counts as DEADLINE_EXCEEDED), generous for a loaded machine.
      deadlineMs: 30_000,
      spec,
      jobId,
      stored: { object: ref.object, digest: ref.digest, bytes: ref.bytes, shape: swapped },
      afterClass: async (t) => {
        assert.equal(coordinator.child.exitCode, null, `coordinator exited during "${t.name}"`);
        assert.equal(runner.child.exitCode, null, `runner exited during "${t.name}"`);
        assert.equal(await healthCheck(coordClient), "SERVING", `coordinator health after "${t.name}"`);
        assert.equal(await healthCheck(runnerClient), "SERVING", `runner health after "${t.name}"`);
      },
    },
  );
  const ms = performance.now() - t0;
  console.log(
    `${formatTallies(tallies)}\n(${tallies.reduce((n, t) => n + t.sent, 0)} requests in ${ms.toFixed(0)} ms)`,
  );
  if (process.env.LAVIE_FUZZ_VERBOSE) {
    for (const t of tallies) console.log(`${t.name}:\n  ${Object.values(t.examples).flat().join("\n  ")}`);
  }
  const violations = tallies.flatMap((t) => t.violations.map((v) => `[${t.name}] ${v}`));
  assert.deepEqual(violations, [], `unclear answers:\n${violations.join("\n")}`);
  for (const t of tallies) {
    assert.equal(t.sent, PER_CLASS, `class "${t.name}" sent ${t.sent}`);
    for (const code of ["INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED", "UNAVAILABLE"]) {
      assert.equal(t.answers[code], undefined, `class "${t.name}" got ${code}`);
    }
  }

  // Still serving: a valid tiny job succeeds.
  const client = createClient(JobService, coordinator.address);
  try {
    const res = await unary(client, JobService, "submitJob", {
      job: { prompt: "after the fuzzing", stopAfter: "base", seed: 7n, base: { steps: 1 } },
    });
    const id = res.job!.id;
    let state = res.job!.state;
    const deadline = Date.now() + 180_000;
    while (state !== JobState.SUCCEEDED && state !== JobState.FAILED && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      state = (await unary(client, JobService, "getJob", { jobId: id })).job!.state;
    }
    const job = (await unary(client, JobService, "getJob", { jobId: id })).job!;
    assert.equal(job.state, JobState.SUCCEEDED, job.error);
  } finally {
    client.close();
    coordClient.close();
    runnerClient.close();
  }

  assert.equal(coordinator.child.exitCode, null, "coordinator still alive");
  assert.equal(runner.child.exitCode, null, "runner still alive");
  const rss1 = { coordinator: rssKb(coordinator.child.pid!), runner: rssKb(runner.child.pid!) };
  console.log(
    `VmRSS kB before/after: coordinator ${rss0.coordinator}/${rss1.coordinator}, runner ${rss0.runner}/${rss1.runner}`,
  );
  for (const k of ["coordinator", "runner"] as const) {
    assert.ok(rss1[k] - rss0[k] < MAX_RSS_GROWTH_KB, `${k} VmRSS grew from ${rss0[k]} to ${rss1[k]} kB`);
  }
});
