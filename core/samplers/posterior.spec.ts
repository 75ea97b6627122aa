import assert from "node:assert/strict";
import { test } from "node:test";
import { samplePosterior } from "./posterior.ts";

test("posterior sample = scale * (mean + exp(clamped logvar / 2) * noise), per image block", () => {
  // n = 2 images, c = 1 latent channel, 1x2 pixels: moments [2, 2, 1, 2]
  const moments = Float32Array.of(1, 2, Math.log(4), 50, /* image 1 */ -1, 0, -100, 0);
  const noise = Float32Array.of(0.5, -1, 2, 3);
  const z = samplePosterior(moments, [2, 2, 1, 2], noise, 0.5);
  const expected = [
    0.5 * (1 + 2 * 0.5), // std = exp(log 4 / 2) = 2
    0.5 * (2 + Math.exp(10) * -1), // logvar 50 clamped to 20
    0.5 * (-1 + Math.exp(-15) * 2), // logvar -100 clamped to -30
    0.5 * (0 + 1 * 3),
  ];
  for (const [i, v] of z.entries())
    assert.ok(Math.abs(v - expected[i]!) <= 1e-6 * Math.max(1, Math.abs(expected[i]!)), `${i}`);
});

test("bad moment shapes are refused naming the field", () => {
  assert.throws(
    () => samplePosterior(new Float32Array(6), [1, 3, 1, 2], new Float32Array(3), 1),
    /latent_parameters/,
  );
  assert.throws(() => samplePosterior(new Float32Array(4), [1, 2, 1, 2], new Float32Array(3), 1), /noise/);
});
