/**
 * The distributed system against the in-process reference: a real nats-server, the coordinator,
 * and stage-runner processes over real gRPC. Every tile a job produces through the runners must be
 * bit-identical to the tile the in-process executor produces for the same plan.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, test } from "node:test";
import { LocalEngine } from "../../coordinator/engine.ts";
import { runPlanLocally } from "../../coordinator/executor/local.ts";
import { Coordinator } from "../../coordinator/server.ts";
import type { JobRequest } from "../../core/job.ts";
import type { Tensor } from "../../core/tensor.ts";
import { ensureModels } from "../../models/cache.ts";
import { connectNats, type NatsClients } from "../../transport/nats/connect.ts";
import { NatsTensorStore } from "../../transport/nats/tensors.ts";
import { startNatsServer } from "../support/nats-server.ts";
import { startNodeProcess } from "../support/process.ts";

type Nats = Awaited<ReturnType<typeof startNatsServer>>;
let nats: Nats;
let modelDir: string;
let coordinator: Coordinator;
let clients: NatsClients;
let store: NatsTensorStore;
let engine: LocalEngine;
const runners: ChildProcess[] = [];

async function startRunner(stages: string, id: string): Promise<ChildProcess> {
  const { child } = await startNodeProcess(
    "stage-runners/main.ts",
    {
      LAVIE_NATS_URL: nats.url,
      LAVIE_MODEL_DIR: modelDir,
      LAVIE_RUNNER_STAGES: stages,
      LAVIE_RUNNER_ID: id,
      LAVIE_ORT_THREADS: "1",
    },
    /listening on/,
  );
  runners.push(child);
  return child;
}

/** Polls until the job succeeded; fails on failure, or after `ms` (a bound, not a timing check). */
async function waitFor(id: string, ms = 300_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await coordinator.jobs.get(id);
    if (r.state === "succeeded") return;
    if (r.state === "failed" || r.state === "cancelled") throw new Error(`job ${id} ${r.state}: ${r.error}`);
    if (Date.now() > deadline) throw new Error(`job ${id} still ${r.state} after ${ms} ms`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** Every tile of a distributed job equals the in-process tile, bit for bit. */
async function assertSameAsLocal(req: JobRequest): Promise<void> {
  const { record } = await coordinator.jobs.submit(req);
  await waitFor(record.id);
  const done = (await coordinator.jobs.get(record.id)).done;
  const spec = engine.resolve(req);
  const plan = engine.plan(spec);
  const local = await runPlanLocally(plan, spec, engine.networks, { release: false });
  for (const task of plan.tasks) {
    const ref = done[task.id];
    assert.ok(ref, `task ${task.id} has no recorded output`);
    const remote: Tensor = await store.get(ref);
    const mine = local.get(task.output.tensor, task.output.tile);
    assert.deepEqual(remote.shape, mine.shape, task.id);
    assert.ok(
      Buffer.from(remote.data.buffer).equals(Buffer.from(mine.data.buffer)),
      `tile ${task.id} differs`,
    );
  }
}

const few = { base: { steps: 2 }, interpolation: { steps: 2 }, vsr: { steps: 2 } };

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

test("one runner per stage: every tile equals the in-process tile", async () => {
  await Promise.all([
    startRunner("base", "r-base"),
    startRunner("interpolation", "r-interp"),
    startRunner("vsr", "r-vsr"),
  ]);
  await assertSameAsLocal({ prompt: "a panda playing guitar", seed: 11, ...few });
});

test("several runners per stage with split interpolation and VSR work: identical tiles", async () => {
  await Promise.all([startRunner("interpolation,vsr", "r-extra-1"), startRunner("vsr", "r-extra-2")]);
  await assertSameAsLocal({
    prompt: "a red fox",
    seed: 12,
    ...few,
    interpolation: { steps: 2, chunkFrames: 32, chunkOverlap: 8 },
    vsr: { steps: 2, patch: 16, patchOverlap: 8 },
  });
});
