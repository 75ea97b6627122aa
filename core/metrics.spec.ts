import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LavieError } from "./errors.ts";
import { maxAbsDiff, mse, psnr } from "./metrics.ts";
import { tensor } from "./tensor.ts";

const fieldIs = (field: string) => (e: unknown) => e instanceof LavieError && e.field === field;

describe("metrics", () => {
  it("PSNR is Infinity for identical inputs and max-abs-diff 0", () => {
    const a = new Uint8Array([0, 10, 255, 7]);
    assert.equal(psnr(a, a.slice(), 255), Number.POSITIVE_INFINITY);
    assert.equal(maxAbsDiff(a, a.slice()), 0);
    const t = tensor([2, 2], new Float32Array([0.5, -1, 1, 0]));
    assert.equal(psnr(t, tensor([2, 2], t.data.slice()), 2), Number.POSITIVE_INFINITY);
  });

  it("matches hand-computed values", () => {
    // uint8: every sample off by 1 -> MSE 1 -> 20 log10(255) = 48.1308 dB; no uint8 wrap-around.
    const a = new Uint8Array([0, 100, 255, 30]);
    const b = new Uint8Array([1, 99, 254, 31]);
    assert.equal(mse(a, b), 1);
    assert.ok(Math.abs(psnr(a, b, 255) - 48.1308036) < 1e-6);
    assert.equal(maxAbsDiff(new Uint8Array([0, 255]), new Uint8Array([255, 0])), 255);
    // float: one of four samples off by 0.2 -> MSE 0.01 -> peak 1 gives 20 dB, peak 2 gives 26.0206 dB.
    const x = tensor([4], new Float32Array([0, 0.25, 0.5, 0.75]));
    const yf = tensor([4], new Float32Array([0.2, 0.25, 0.5, 0.75]));
    assert.ok(Math.abs(psnr(x, yf, 1) - 20) < 1e-5);
    assert.ok(Math.abs(psnr(x, yf, 2) - 26.0206) < 1e-4);
    assert.ok(Math.abs(maxAbsDiff(x, yf) - 0.2) < 1e-7);
    // Mixed representations: a tensor against a raw float array.
    assert.equal(maxAbsDiff(x, new Float32Array([0, 0.25, 0.5, 1])), 0.25);
  });

  it("propagates NaN instead of hiding it", () => {
    const a = new Float32Array([0, Number.NaN]);
    assert.ok(Number.isNaN(maxAbsDiff(a, new Float32Array([0, 0]))));
    assert.ok(Number.isNaN(psnr(a, new Float32Array([0, 0]), 1)));
  });

  it("validates inputs", () => {
    assert.throws(() => psnr(new Uint8Array(3), new Uint8Array(4), 255), fieldIs("b"));
    assert.throws(() => psnr(tensor([2, 3]), tensor([3, 2]), 1), fieldIs("b"));
    assert.throws(() => psnr(new Uint8Array(0), new Uint8Array(0), 255), fieldIs("a"));
    assert.throws(() => psnr(new Uint8Array(2), new Uint8Array(2), 0), fieldIs("peak"));
  });
});
