import assert from "node:assert/strict";
import { test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { ensureModels } from "../../models/cache.ts";
import { loadModelDirectory } from "../../models/loader.ts";
import { limitsOf, planInfoOf } from "../engine.ts";
import { Dispatcher } from "./dispatcher.ts";
import { JobManager } from "./jobs.ts";
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
