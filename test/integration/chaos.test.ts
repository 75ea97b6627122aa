/**
 * Faults survived, with real processes (stage runners, a real nats-server; the coordinator runs in
 * this process): runners that hang, return corrupt or wrong-shaped outputs (LAVIE_FAULTS), a task
 * that fails everywhere, a nats-server restart mid-job, and runners SIGKILLed at random across many
 * jobs. Every completed job's tiles must equal an in-process run bit for bit. Each test has its
 * own nats-server, so no runner registration leaks from one test to the next. Tests wait for
 * conditions with generous deadlines (bounds for a broken run, not timing checks): a loaded machine
 * makes them slower, not different.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, test } from "node:test";
import type { JobRecord } from "../../coordinator/distributed/ports.ts";
import { LocalEngine } from "../../coordinator/engine.ts";
import type { TileStore } from "../../coordinator/executor/local.ts";
import { Coordinator, type CoordinatorOptions } from "../../coordinator/server.ts";
import type { JobRequest } from "../../core/job.ts";
import { ensureModels } from "../../models/cache.ts";
import { connectNats, type NatsClients } from "../../transport/nats/connect.ts";
import { NatsJobStore } from "../../transport/nats/kv.ts";
import { NatsTensorStore } from "../../transport/nats/tensors.ts";
import { metrics } from "../../transport/telemetry/metrics.ts";
import { compareTiles, runChaos } from "../support/chaos.ts";
import { type NatsServerHandle, startNatsServer } from "../support/nats-server.ts";
import { startNodeProcess } from "../support/process.ts";

let modelDir: string;
let engine: LocalEngine;
const references = new Map<string, Promise<TileStore>>();

before(async () => {
  modelDir = await ensureModels("tiny");
  engine = await LocalEngine.open(modelDir, { intraOpThreads: 1 });
});

after(async () => {
  await engine?.close();
});

/** Tiny jobs with one step per stage; two specs only, so the in-process references run twice. */
const job = (i: number): JobRequest => ({
  prompt: `chaos ${i % 2}`,
  seed: 100 + (i % 2),
  base: { steps: 1 },
  interpolation: { steps: 1 },
  vsr: { steps: 1 },
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` until it holds; fails after `ms`. */
async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** A nats-server, a coordinator in this process and runner processes; all stopped by close(). */
async function cluster(dispatcher: CoordinatorOptions["dispatcher"] = {}) {
  const nats: NatsServerHandle = await startNatsServer();
  const clients: NatsClients = await connectNats(nats.url, { name: "chaos-test", jsTimeout: 2_000 });
  const store = await NatsTensorStore.open(clients.objm);
  const kv = await NatsJobStore.open(clients.kvm);
  const children = new Set<ChildProcess>();
  const c = await Coordinator.start({ natsUrl: nats.url, modelDir, keepTensors: true, dispatcher });
  const startRunner = async (id: string, env: NodeJS.ProcessEnv = {}) => {
    const { child } = await startNodeProcess(
      "stage-runners/main.ts",
      {
        LAVIE_NATS_URL: nats.url,
        LAVIE_MODEL_DIR: modelDir,
        LAVIE_ORT_THREADS: "1",
        LAVIE_RUNNER_ID: id,
        LAVIE_RUNNER_WARM: "1",
        LAVIE_METRICS_PORT: "0",
        ...env,
      },
      /listening on \S+/,
    );
    children.add(child);
    child.once("exit", () => children.delete(child));
    return child;
  };
  const until = async (id: string, pred: (r: JobRecord) => boolean, timeoutMs = 180_000) => {
    const t0 = Date.now();
    for (;;) {
      const r = await c.jobs.get(id);
      if (pred(r)) return r;
      if (Date.now() - t0 > timeoutMs) throw new Error(`job ${id}: condition not reached (state ${r.state})`);
      await sleep(25);
    }
  };
  const ended = (id: string, timeoutMs?: number) =>
    until(id, (r) => r.state === "succeeded" || r.state === "failed" || r.state === "cancelled", timeoutMs);
  const assertTilesMatchLocal = async (r: JobRecord) => {
    const [compared, differing] = await compareTiles(engine, store, r, references);
    assert.ok(compared > 0);
    assert.equal(differing, 0, `${differing} of ${compared} tiles differ from the in-process run`);
  };
  const close = async () => {
    await Promise.all(
      [...children].map(async (child) => {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGKILL");
        await exited;
      }),
    );
    await c.stop();
    await clients.close();
    await nats.stop();
  };
  return { nats, c, store, kv, startRunner, until, ended, assertTilesMatchLocal, close };
}

test("a runner that hangs: the progress deadline moves its task to a healthy runner", async () => {
  const k = await cluster({ progressTimeoutMs: 2_000, suspectMs: 5_000 });
  try {
    // Equally warm and idle runners tie; the first by id ("a-hanger") takes the first task.
    await Promise.all([k.startRunner("a-hanger", { LAVIE_FAULTS: "hang:1" }), k.startRunner("b-healthy")]);
    const { record: submitted } = await k.c.jobs.submit(job(0));
    await waitFor("the hanger to hold a task", () => (k.c.load().inFlightByRunner["a-hanger"] ?? 0) > 0);
    const done = await k.ended(submitted.id);
    assert.equal(done.state, "succeeded", done.error);
    assert.ok(k.c.dispatcherStats().retried >= 1, "the stalled task was retried");
    await k.assertTilesMatchLocal(done);
  } finally {
    await k.close();
  }
});

test("corrupt and wrong-shaped outputs: detected, retried elsewhere, the faulty runners quarantined", async () => {
  const quarantinesBefore = await quarantineCount();
  const k = await cluster({ quarantine: { failures: 2, windowMs: 60_000, quarantineMs: 60_000 } });
  try {
    // Faulty runners sort first by id and are warm like the healthy one: they are picked first.
    await Promise.all([
      k.startRunner("a-corrupt", { LAVIE_FAULTS: "corrupt:1" }),
      k.startRunner("a-shape", { LAVIE_FAULTS: "shape:1" }),
      k.startRunner("z-good"),
    ]);
    const { record: submitted } = await k.c.jobs.submit(job(1));
    const done = await k.ended(submitted.id);
    assert.equal(done.state, "succeeded", done.error);
    const stats = k.c.dispatcherStats();
    assert.deepEqual([...stats.quarantined].sort(), ["a-corrupt", "a-shape"]);
    assert.ok(stats.retried >= 4, `retried ${stats.retried}`);
    assert.deepEqual(Object.keys(k.c.load().quarantined ?? {}).sort(), ["a-corrupt", "a-shape"]);
    assert.equal((await quarantineCount()) - quarantinesBefore, 2, "lavie_runner_quarantines_total");
    const gauge = await metrics.registry.getSingleMetric("lavie_runners_quarantined")?.get();
    assert.ok(gauge, "lavie_runners_quarantined is registered");
    // Every accepted output is the good one.
    await k.assertTilesMatchLocal(done);
  } finally {
    await k.close();
  }
});

async function quarantineCount(): Promise<number> {
  const m = await metrics.registry.getSingleMetric("lavie_runner_quarantines_total")?.get();
  return (m?.values ?? []).reduce((n, v) => n + v.value, 0);
}

test("a task that fails on every runner: the job fails after exactly maxAttempts attempts", async () => {
  const k = await cluster({ maxAttempts: 3 });
  try {
    // Base-stage runners only: the base text task is then the one task that can start (the other
    // stages' tasks wait for runners), so every attempt counted below is one of its attempts.
    const env = { LAVIE_FAULTS: "fail:1", LAVIE_RUNNER_STAGES: "base" };
    await Promise.all([k.startRunner("fail-1", env), k.startRunner("fail-2", env)]);
    const { record: submitted } = await k.c.jobs.submit(job(0));
    const done = await k.ended(submitted.id);
    assert.equal(done.state, "failed");
    assert.match(done.error, /text\.base.* failed after 3 attempt\(s\): injected fault: task failed/);
    const stats = k.c.dispatcherStats();
    assert.equal(stats.dispatched, 3, "exactly maxAttempts attempts");
    assert.equal(stats.inFlight, 0, "nothing left running");
    // The job's tasks waiting for other stages' runners were released too.
    await waitFor("the job's waiting tasks to be released", () => k.c.load().jobs.length === 0);
    const stored = (await k.kv.get<JobRecord>(submitted.id))?.value;
    assert.equal(stored?.state, "failed");
  } finally {
    await k.close();
  }
});

test("nats-server restarted mid-job: everyone reconnects and the job completes with identical tiles", async () => {
  const k = await cluster();
  try {
    await Promise.all([k.startRunner("r1"), k.startRunner("r2")]);
    const { record: submitted } = await k.c.jobs.submit(job(1));
    await k.until(submitted.id, (r) => Object.keys(r.done).length >= 6);
    await k.nats.restart();
    const done = await k.ended(submitted.id);
    assert.equal(done.state, "succeeded", done.error);
    await k.assertTilesMatchLocal(done);
    // The durable record caught up: terminal state and every finished task (KV writes retried).
    let stored: JobRecord | undefined;
    await waitFor("the job record in KV to reach succeeded", async () => {
      stored = (await k.kv.get<JobRecord>(submitted.id).catch(() => null))?.value;
      return stored?.state === "succeeded";
    });
    assert.deepEqual(stored?.done, done.done);
  } finally {
    await k.close();
  }
});

test("runners SIGKILLed at random across many jobs: every job succeeds with identical tiles", async () => {
  const nats = await startNatsServer();
  const clients = await connectNats(nats.url, { name: "chaos-drill" });
  try {
    const report = await runChaos({
      natsUrl: nats.url,
      modelDir,
      engine,
      store: await NatsTensorStore.open(clients.objm),
      jobs: 8,
      runners: 3,
      seed: 6,
      // Event-driven: 4 rounds of 2 jobs; each round kills a runner holding a task and waits for its
      // replacement, so the kills do not depend on how fast this machine is (or how loaded).
      kills: 4,
      request: job,
      references,
      // Runners also exit by themselves mid-task now and then (LAVIE_FAULTS exit, a seed per process).
      runnerEnv: (_slot, generation) => ({ LAVIE_FAULTS: `exit:0.02,seed=${generation}` }),
      // Runners die far more often here than the production budget (4) assumes: a job is lost
      // only if one of its tasks is killed 8 times.
      dispatcher: { maxAttempts: 8 },
      timeoutMs: 480_000,
    });
    console.log(`chaos report: ${JSON.stringify(report)}`);
    assert.deepEqual(report.lostReasons, []);
    assert.equal(report.jobsLost, 0);
    assert.equal(report.succeeded, 8);
    assert.equal(report.faults.sigkill, 4, "one kill per round");
    assert.ok(report.faults.exit! >= 1, "no runner exited by its fault");
    assert.equal(report.faults.other_exit, 0);
    assert.ok(report.tilesCompared > 0);
    assert.equal(report.tilesDiffering, 0);
  } finally {
    await clients.close();
    await nats.stop();
  }
});
