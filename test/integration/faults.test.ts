/**
 * Faults the distributed system survives, with real processes: a runner killed mid-task, the
 * coordinator killed and restarted mid-job, a job cancelled mid-run; and load: concurrent jobs.
 * Completed jobs' tiles must equal the in-process reference bit for bit. Tests wait for
 * conditions with generous deadlines (bounds for a broken run, not timing checks).
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, test } from "node:test";
import { LATE_SWEEP_MS } from "../../coordinator/distributed/jobs.ts";
import type { JobRecord } from "../../coordinator/distributed/ports.ts";
import { LocalEngine } from "../../coordinator/engine.ts";
import { runPlanLocally } from "../../coordinator/executor/local.ts";
import { Coordinator } from "../../coordinator/server.ts";
import type { JobRequest } from "../../core/job.ts";
import { ensureModels } from "../../models/cache.ts";
import { connectNats, type NatsClients } from "../../transport/nats/connect.ts";
import { NatsJobStore } from "../../transport/nats/kv.ts";
import { NatsTensorStore } from "../../transport/nats/tensors.ts";
import { startNatsServer } from "../support/nats-server.ts";
import { startNodeProcess } from "../support/process.ts";

type Nats = Awaited<ReturnType<typeof startNatsServer>>;
let nats: Nats;
let modelDir: string;
let clients: NatsClients;
let store: NatsTensorStore;
let kv: NatsJobStore;
let engine: LocalEngine;
const children = new Set<ChildProcess>();

async function startProcess(
  script: string,
  env: NodeJS.ProcessEnv,
  ready: RegExp,
): Promise<{ child: ChildProcess; line: string }> {
  const started = await startNodeProcess(
    script,
    { LAVIE_NATS_URL: nats.url, LAVIE_MODEL_DIR: modelDir, LAVIE_ORT_THREADS: "1", ...env },
    ready,
  );
  children.add(started.child);
  started.child.once("exit", () => children.delete(started.child));
  return started;
}

const startRunner = (id: string, stages = "base,interpolation,vsr") =>
  startProcess(
    "stage-runners/main.ts",
    { LAVIE_RUNNER_ID: id, LAVIE_RUNNER_STAGES: stages },
    /listening on \S+/,
  );

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
}

async function record(id: string): Promise<JobRecord> {
  const r = (await kv.get<JobRecord>(id))?.value;
  assert.ok(r, `job ${id} has no record`);
  return r;
}

/** Polls `cond` until it holds; fails after `ms`. */
async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

async function until(id: string, pred: (r: JobRecord) => boolean, timeoutMs = 180_000): Promise<JobRecord> {
  const t0 = Date.now();
  for (;;) {
    const r = (await kv.get<JobRecord>(id))?.value;
    if (r && pred(r)) return r;
    if (Date.now() - t0 > timeoutMs) throw new Error(`job ${id}: condition not reached (state ${r?.state})`);
    await new Promise((res) => setTimeout(res, 25));
  }
}

async function assertTilesMatchLocal(r: JobRecord): Promise<void> {
  const plan = engine.plan(r.spec);
  const local = await runPlanLocally(plan, r.spec, engine.networks, { release: false });
  for (const task of plan.tasks) {
    const ref = r.done[task.id];
    assert.ok(ref, `task ${task.id} has no output`);
    const remote = await store.get(ref);
    const mine = local.get(task.output.tensor, task.output.tile);
    assert.ok(
      Buffer.from(remote.data.buffer).equals(Buffer.from(mine.data.buffer)),
      `tile ${task.id} differs`,
    );
  }
}

const few: Partial<JobRequest> = { base: { steps: 2 }, interpolation: { steps: 2 }, vsr: { steps: 2 } };

before(async () => {
  nats = await startNatsServer();
  modelDir = await ensureModels("tiny");
  clients = await connectNats(nats.url, { name: "faults-test" });
  store = await NatsTensorStore.open(clients.objm);
  kv = await NatsJobStore.open(clients.kvm);
  engine = await LocalEngine.open(modelDir, { intraOpThreads: 1 });
});

after(async () => {
  await Promise.all([...children].map(kill));
  await engine?.close();
  await clients?.close();
  await nats?.stop();
});

test("a runner killed mid-task: the job completes elsewhere with identical tiles", async () => {
  const c = await Coordinator.start({ natsUrl: nats.url, modelDir, keepTensors: true });
  try {
    const a = await startRunner("victim");
    await startRunner("survivor");
    const { record: job } = await c.jobs.submit({ prompt: "a runner dies", seed: 21, ...few });
    // Wait until both runners hold a task, then kill one.
    await until(job.id, (r) => Object.keys(r.done).length >= 8);
    for (let i = 0; i < 400 && c.jobs.progress(job.id).length > 0; i++) {
      if (
        (c as unknown as { dispatcher: { stats(): { inFlight: number } } }).dispatcher.stats().inFlight >= 2
      )
        break;
      await new Promise((res) => setTimeout(res, 5));
    }
    await kill(a.child);
    const done = await until(job.id, (r) => r.state === "succeeded" || r.state === "failed");
    assert.equal(done.state, "succeeded", done.error);
    await assertTilesMatchLocal(done);
  } finally {
    await c.stop();
  }
});

test("the coordinator killed and restarted mid-job: the job completes and finished tasks are not rerun", async () => {
  const env = { LAVIE_GRPC_PORT: "0", LAVIE_KEEP_TENSORS: "1" };
  const first = await startProcess("coordinator/main.ts", env, /listening on \S+/);
  const address = first.line.split(" ").pop()!;
  await startRunner("steady");
  const { createClient, unary } = await import("../../transport/grpc/adapter.ts");
  const { JobService } = await import("../../gen/lavie/v1/jobs_pb.ts");
  const client = createClient(JobService, address);
  const res = await unary(client, JobService, "submitJob", {
    job: { prompt: "restart me", seed: 22n, base: { steps: 2 } },
  });
  client.close();
  const id = res.job!.id;
  const before = await until(id, (r) => Object.keys(r.done).length >= 10);
  await kill(first.child);
  const finishedBefore = { ...(await record(id)).done };
  assert.ok(Object.keys(finishedBefore).length >= Object.keys(before.done).length);
  const os = await clients.objm.open("lavie-tensors");
  const nuids = new Map<string, string>();
  for (const [taskId, ref] of Object.entries(finishedBefore))
    nuids.set(taskId, (await os.info(ref.object))!.nuid);
  await startProcess("coordinator/main.ts", env, /listening on \S+ \(resumed 1 jobs\)/);
  const done = await until(id, (r) => r.state === "succeeded" || r.state === "failed");
  assert.equal(done.state, "succeeded", done.error);
  for (const [taskId, ref] of Object.entries(finishedBefore)) {
    assert.deepEqual(done.done[taskId], ref, `task ${taskId} output changed`);
    assert.equal((await os.info(ref.object))!.nuid, nuids.get(taskId), `task ${taskId} was rerun`);
  }
  await assertTilesMatchLocal(done);
});

test("cancelling mid-run stops the job's tasks and removes its objects", async () => {
  const c = await Coordinator.start({ natsUrl: nats.url, modelDir });
  try {
    const { record: job } = await c.jobs.submit({ prompt: "cancel me", seed: 23, base: { steps: 30 } });
    const stats = () =>
      (c as unknown as { dispatcher: { stats(): { inFlight: number } } }).dispatcher.stats();
    // Mid-run: a task has finished (objects exist) and another is on a runner.
    await until(job.id, (r) => r.state === "running" && Object.keys(r.done).length >= 1);
    await waitFor("a task in flight", () => stats().inFlight > 0);
    const cancelledAt = Date.now();
    const cancelled = await c.jobs.cancel(job.id);
    assert.equal(cancelled.state, "cancelled");
    // The runners stop: nothing stays in flight, and every object of the job is gone, also what a
    // runner wrote after the cancel (the late sweep, LATE_SWEEP_MS after it, removes that).
    await waitFor("no task in flight", () => stats().inFlight === 0);
    await waitFor("the late sweep's time", () => Date.now() - cancelledAt > LATE_SWEEP_MS);
    await waitFor("the job's objects removed", async () => (await store.list(`${job.id}/`)).length === 0);
    assert.equal((await record(job.id)).state, "cancelled");
  } finally {
    await c.stop();
  }
});

test("20 concurrent tiny jobs all complete; a retried submit returns the same job", async () => {
  const c = await Coordinator.start({ natsUrl: nats.url, modelDir, maxRunningJobs: 20 });
  try {
    // Its own runner, so the test does not depend on runners the earlier tests left running.
    await startRunner("load");
    const one = { base: { steps: 1 }, interpolation: { steps: 1 }, vsr: { steps: 1 } };
    const subs = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        c.jobs.submit({ prompt: `job ${i}`, seed: i, ...one }, { idempotencyKey: `key-${i}` }),
      ),
    );
    const again = await c.jobs.submit({ prompt: "job 3", seed: 3, ...one }, { idempotencyKey: "key-3" });
    assert.equal(again.created, false);
    assert.equal(again.record.id, subs[3]!.record.id);
    const ends = await Promise.all(
      subs.map((s) => until(s.record.id, (r) => r.state === "succeeded" || r.state === "failed", 600_000)),
    );
    assert.deepEqual(
      ends.map((r) => r.state),
      Array(20).fill("succeeded"),
    );
    assert.ok(ends.every((r) => r.result && r.result.frames === 61));
  } finally {
    await c.stop();
  }
});
