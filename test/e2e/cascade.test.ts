/**
 * The whole tiny cascade in-process: determinism, seeds, and the effect of every split the plan
 * can make (exact splits must be bit-identical to the unsplit run; approximate ones are measured).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { LocalEngine } from "../../coordinator/engine.ts";
import type { JobRequest } from "../../core/job.ts";
import { psnr } from "../../core/metrics.ts";
import { ensureModels } from "../../models/cache.ts";

let engine: LocalEngine;
const few = { base: { steps: 2 }, interpolation: { steps: 2 }, vsr: { steps: 2 } };
const run = async (req: Partial<JobRequest>) =>
  (await engine.generate(engine.resolve({ prompt: "a panda playing guitar", seed: 5, ...few, ...req })))
    .frames;

before(async () => {
  engine = await LocalEngine.open(await ensureModels("tiny"), { workers: 1, intraOpThreads: 2 });
});
after(async () => {
  await engine.close();
});

test("the full cascade makes 61 frames at 4x the base size; same seed -> identical, new seed -> different", async () => {
  const a = await run({});
  assert.deepEqual(a.shape, [1, 3, 61, 128, 192]);
  assert.ok(a.data.every(Number.isFinite));
  const b = await run({});
  assert.deepEqual(a.data, b.data);
  const c = await run({ seed: 6 });
  assert.notDeepEqual(a.data, c.data);
});

test("exact splits give identical frames: per-frame VAE decode groups, one VSR patch", async () => {
  const ref = await run({});
  const split = await run({ decode: { baseFrames: 1, vsrFrames: 1 } });
  assert.deepEqual(split.data, ref.data, "frame-group size of VAE decoding must not change frames");
  const onePatch = await run({ vsr: { steps: 2, patch: 48 } }); // covers the whole 32x48 low-res frame
  assert.deepEqual(onePatch.data, ref.data, "a single VSR patch must equal whole-frame VSR");
});

test("approximate splits are measured: interpolation chunks and overlapping VSR patches", async () => {
  const ref = await run({ stopAfter: "interpolation" });
  const chunked = await run({
    stopAfter: "interpolation",
    interpolation: { steps: 2, chunkFrames: 32, chunkOverlap: 8 },
  });
  const p1 = psnr(ref, chunked, 2);
  assert.ok(
    Number.isFinite(p1),
    "chunked interpolation should differ from whole-sequence (temporal attention spans chunks)",
  );
  assert.ok(p1 > 10, `interpolation chunk PSNR ${p1.toFixed(2)} dB is implausibly low`);

  const whole = await run({});
  const patched = await run({ vsr: { steps: 2, patch: 16, patchOverlap: 8 } });
  const p2 = psnr(whole, patched, 2);
  assert.ok(Number.isFinite(p2) && p2 > 10, `VSR patch PSNR ${p2.toFixed(2)} dB`);
});

test("cancellation stops the job with a cancelled error", async () => {
  const ac = new AbortController();
  const spec = engine.resolve({ prompt: "x", ...few });
  const p = engine.generate(spec, {
    signal: ac.signal,
    onEvent: (e) => {
      if (e.type === "task_finished" && e.task.kind === "base_denoise") ac.abort();
    },
  });
  await assert.rejects(p, (e: Error & { code?: string }) => e.code === "cancelled");
});

test("cfgParallel (CFG branches as two tasks exchanging predictions) gives the batched run's frames bit for bit", async () => {
  // The engine has one ORT worker and concurrency 1: the gang's two members still start together.
  const ref = await run({});
  const gang = await run({ base: { steps: 2, cfgParallel: true } });
  assert.deepEqual(gang.shape, ref.shape);
  assert.ok(
    Buffer.from(gang.data.buffer).equals(Buffer.from(ref.data.buffer)),
    "batch-1 branch UNet runs must equal the batched [uncond, cond] run",
  );
});
