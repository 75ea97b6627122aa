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
  const lines: string[] = [];
  const jobs = new JobManager(limitsOf(md), planInfoOf(md), store, noTensors, dispatcher, {
    log: (line) => lines.push(line),
  });
  const { record } = await jobs.submit({ prompt: "x", stopAfter: "base", base: { steps: 1 } });
  for (let i = 0; i < 100 && lines.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.match(
    lines[0] ?? "",
    new RegExp(`job ${record.id}: record not saved \\(invalid_argument\\): .*maximum payload`),
  );
  assert.equal((await jobs.get(record.id)).state, "running", "the job runs on from memory");
  await jobs.cancel(record.id);
  dispatcher.close();
});
