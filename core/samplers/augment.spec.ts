import assert from "node:assert/strict";
import { test } from "node:test";
import { augmentLowRes, noiseCoefficients, VSR_NOISE_AUG_SCHEDULE } from "./augment.ts";

test("VSR augmentation: sqrt(ab[50]) x + sqrt(1 - ab[50]) noise, scaled_linear 1e-4..0.02", () => {
  // independent alpha-bar: betas linear in sqrt space
  let ab = 1;
  for (let i = 0; i <= 50; i++) {
    const s = Math.sqrt(1e-4) + (i / 999) * (Math.sqrt(0.02) - Math.sqrt(1e-4));
    ab *= 1 - s * s;
  }
  const c = noiseCoefficients(VSR_NOISE_AUG_SCHEDULE, 50);
  assert.ok(Math.abs(c.signal - Math.sqrt(ab)) < 1e-14);
  assert.ok(Math.abs(c.noise - Math.sqrt(1 - ab)) < 1e-14);
  assert.ok(c.signal > 0.99 && c.signal < 1); // light noise at level 50
  const x = Float32Array.of(-1, 0, 0.5, 1);
  const n = Float32Array.of(0.3, -1.2, 2, 0);
  const want = Float32Array.from(x, (v, i) => Math.sqrt(ab) * v + Math.sqrt(1 - ab) * n[i]!);
  assert.deepEqual(augmentLowRes(x, n), want);
  assert.deepEqual(
    augmentLowRes(x, n, 0),
    Float32Array.from(x, (v, i) => v * Math.sqrt(1 - 1e-4) + Math.sqrt(1e-4) * n[i]!),
  );
});

test("VSR augmentation errors name the field", () => {
  const x = new Float32Array(4);
  assert.throws(() => augmentLowRes(x, new Float32Array(3)), { name: "LavieError", field: "noise" });
  assert.throws(() => augmentLowRes(x, x, 1000), { field: "noiseLevel" });
  assert.throws(() => augmentLowRes(x, x, 2.5), { field: "noiseLevel" });
});
