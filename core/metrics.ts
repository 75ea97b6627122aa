/**
 * Image/video comparison metrics for measuring the effect of splitting (chunks, patches) against the
 * unsplit run: PSNR with an explicit peak value and max-abs-diff, over tensors or raw sample arrays
 * (Float32Array, Uint8Array / Uint8ClampedArray frames). Computed in float64.
 *
 *   psnr(splitFrames, wholeFrames, 255)   // uint8 RGB frames
 *   psnr(splitLatents, wholeLatents, 2)   // a [-1, 1] signal has peak-to-peak 2
 */
import { invalidArgument } from "./errors.ts";
import type { Tensor } from "./tensor.ts";

export type Samples = Tensor | Float32Array | Float64Array | Uint8Array | Uint8ClampedArray;

function values(x: Samples): ArrayLike<number> {
  return ArrayBuffer.isView(x) ? x : x.data;
}

function pair(a: Samples, b: Samples): [ArrayLike<number>, ArrayLike<number>] {
  if (!ArrayBuffer.isView(a) && !ArrayBuffer.isView(b)) {
    const same = a.shape.length === b.shape.length && a.shape.every((n, d) => n === b.shape[d]);
    if (!same) throw invalidArgument("b", `shape [${b.shape}] differs from [${a.shape}]`);
  }
  const va = values(a);
  const vb = values(b);
  if (va.length !== vb.length) throw invalidArgument("b", `has ${vb.length} samples, a has ${va.length}`);
  if (va.length === 0) throw invalidArgument("a", "is empty");
  return [va, vb];
}

/** Mean squared error. */
export function mse(a: Samples, b: Samples): number {
  const [va, vb] = pair(a, b);
  let s = 0;
  for (let i = 0; i < va.length; i++) {
    const d = va[i]! - vb[i]!;
    s += d * d;
  }
  return s / va.length;
}

/** Peak signal-to-noise ratio in dB: 10 log10(peak^2 / MSE); Infinity when identical. */
export function psnr(a: Samples, b: Samples, peak: number): number {
  if (!(Number.isFinite(peak) && peak > 0))
    throw invalidArgument("peak", `must be a positive number, got ${peak}`);
  const m = mse(a, b);
  if (Number.isNaN(m)) return Number.NaN;
  return m === 0 ? Number.POSITIVE_INFINITY : 10 * Math.log10((peak * peak) / m);
}

/** Largest absolute elementwise difference (0 when identical; NaN if any sample is NaN). */
export function maxAbsDiff(a: Samples, b: Samples): number {
  const [va, vb] = pair(a, b);
  let m = 0;
  for (let i = 0; i < va.length; i++) {
    const d = Math.abs(va[i]! - vb[i]!);
    if (!(d <= m)) m = d;
  }
  return m;
}
