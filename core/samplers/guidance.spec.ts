import assert from "node:assert/strict";
import { test } from "node:test";
import { cfgCombine, cfgCombineBatched } from "./guidance.ts";

test("cfgCombine: u + g * (c - u)", () => {
  const u = Float32Array.of(1, -2, 0.5);
  const c = Float32Array.of(3, -2, -0.5);
  assert.deepEqual(cfgCombine(u, c, 7.5), Float32Array.of(16, -2, -7));
  assert.deepEqual(cfgCombine(u, c, 1), c);
  assert.deepEqual(cfgCombine(u, c, 0), u);
});

test("cfgCombineBatched: first half uncond, second half cond; chunk-equivalent", () => {
  const batched = Float32Array.of(1, -2, 0.5, 3, -2, -0.5);
  assert.deepEqual(cfgCombineBatched(batched, 4), Float32Array.of(9, -2, -3.5));
  const out = new Float32Array(3);
  cfgCombine(batched.subarray(0, 1), batched.subarray(3, 4), 4, out.subarray(0, 1));
  cfgCombine(batched.subarray(1, 3), batched.subarray(4, 6), 4, out.subarray(1, 3));
  assert.deepEqual(out, cfgCombineBatched(batched, 4));
});

test("cfg errors name the field", () => {
  const a = new Float32Array(2);
  assert.throws(() => cfgCombine(a, new Float32Array(3), 5), { name: "LavieError", field: "cond" });
  assert.throws(() => cfgCombine(a, a, Number.NaN), { field: "guidanceScale" });
  assert.throws(() => cfgCombine(a, a, -1), { field: "guidanceScale" });
  assert.throws(() => cfgCombineBatched(new Float32Array(3), 5), { field: "modelOutput" });
});
