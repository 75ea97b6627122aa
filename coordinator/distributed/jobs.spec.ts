import assert from "node:assert/strict";
import { test } from "node:test";
import { ManualClock } from "../../core/clock.ts";
import { LavieError } from "../../core/errors.ts";
import { ensureModels } from "../../models/cache.ts";
import { loadModelDirectory } from "../../models/loader.ts";
import { limitsOf, planInfoOf } from "../engine.ts";
import { Dispatcher } from "./dispatcher.ts";
import { JobManager, LATE_SWEEP_MS } from "./jobs.ts";
import type { JobRecord, JobStorePort, TensorStorePort } from "./ports.ts";

test("a job record that cannot be written is logged (never silently dropped) and the job goes on", async () => {
  const md = await loadModelDirectory(await ensureModels("tiny"), { verifyHashes: false });
  let puts = 0;
  const store: JobStorePort = {
    get: async () => null,
    list: async () => [],
    claim: async () => null,
    release: async () => {},
    put: async (r: JobRecord) => {
      // The submit's first write succeeds; later ones are over the store's message limit.
      if (puts++ > 0)
        throw new LavieError("invalid_argument", `record ${r.id}: message exceeds maximum payload`);
    },
  };
  const noTensors = { deletePrefix: async () => 0 } as unknown as TensorStorePort;
  const dispatcher = new Dispatcher({ list: () => [] }, { execute: () => new Promise(() => {}) });
  let logLine: (line: string) => void = () => {};
  const jobs = new JobManager(limitsOf(md), planInfoOf(md), store, noTensors, dispatcher, {
    log: (line) => logLine(line),
  });
  const logged = new Promise<string>((resolve) => {
    logLine = resolve;
  });
  const { record } = await jobs.submit({ prompt: "x", stopAfter: "base", base: { steps: 1 } });
  assert.match(
    await logged,
    new RegExp(`job ${record.id}: record not saved \\(invalid_argument\\): .*maximum payload`),
  );
  assert.equal((await jobs.get(record.id)).state, "running", "the job runs on from memory");
  await jobs.cancel(record.id);
  dispatcher.close();
});

test("admission refusals are told apart by which queue is full, not by their text", async () => {
  const md = await loadModelDirectory(await ensureModels("tiny"), { verifyHashes: false });
  const records = new Map<string, JobRecord>();
  const store: JobStorePort = {
    get: async (id) => records.get(id) ?? null,
    list: async () => [...records.values()],
    claim: async () => null,
    release: async () => {},
    put: async (r: JobRecord) => {
      records.set(r.id, structuredClone(r));
    },
  };
  const noTensors = { deletePrefix: async () => 0 } as unknown as TensorStorePort;
  const dispatcher = new Dispatcher({ list: () => [] }, { execute: () => new Promise(() => {}) });
  const refused: string[] = [];
  const jobs = new JobManager(limitsOf(md), planInfoOf(md), store, noTensors, dispatcher, {
    maxRunningJobs: 1,
    maxQueuedJobs: 2,
    maxQueuedPerTenant: 1,
    onRefused: (queue) => refused.push(queue),
  });
  const req = { prompt: "x", stopAfter: "base" as const, base: { steps: 1 } };
  const ids: string[] = [];
  const submit = async (tenant: string) => {
    const { record } = await jobs.submit(req, { tenant });
    ids.push(record.id);
  };
  await submit("tenant"); // runs (no runners: its tasks wait)
  await submit("tenant"); // queued: the tenant's one place
  // The tenant's queue is full; the tenant is named "tenant", the global queue's text differs.
  await assert.rejects(submit("tenant"), { code: "resource_exhausted", message: /^tenant "tenant" has 1/ });
  await submit("b"); // queued: the global queue (2) is full now
  await assert.rejects(submit("tenant b"), { code: "resource_exhausted", message: /queue is full/ });
  assert.deepEqual(refused, ["tenant", "global"]);
  for (const id of ids) await jobs.cancel(id);
  dispatcher.close();
});

test("a job's deadline fails it at its time on the manager's clock; the late sweep follows", async () => {
  const md = await loadModelDirectory(await ensureModels("tiny"), { verifyHashes: false });
  const records = new Map<string, JobRecord>();
  const store: JobStorePort = {
    get: async (id) => records.get(id) ?? null,
    list: async () => [...records.values()],
    claim: async () => null,
    release: async () => {},
    put: async (r: JobRecord) => {
      records.set(r.id, structuredClone(r));
    },
  };
  const swept: number[] = [];
  const clock = new ManualClock();
  const tensors = {
    deletePrefix: async () => {
      swept.push(clock.now());
      return 0;
    },
  } as unknown as TensorStorePort;
  const dispatcher = new Dispatcher({ list: () => [] }, { execute: () => new Promise(() => {}) }, { clock });
  const jobs = new JobManager(limitsOf(md), planInfoOf(md), store, tensors, dispatcher, { clock });
  const t0 = clock.now();
  const { record } = await jobs.submit({ prompt: "x", stopAfter: "base" }, { deadlineMs: 500 });
  assert.equal(record.deadlineUnixMs, t0 + 500);
  await clock.advance(499);
  assert.equal((await jobs.get(record.id)).state, "running", "no runners: it waits, within its deadline");
  await clock.advance(1);
  const failed = await jobs.get(record.id);
  assert.equal(failed.state, "failed");
  assert.match(failed.error ?? "", /^deadline exceeded: the job did not finish within 0\.5 s/);
  assert.equal(failed.updatedMs, t0 + 500);
  assert.deepEqual(swept, [t0 + 500], "its objects are swept at once");
  await clock.advance(LATE_SWEEP_MS);
  assert.deepEqual(swept, [t0 + 500, t0 + 500 + LATE_SWEEP_MS], "and again once late writes settled");
  dispatcher.close();
});
