/**
 * Quality metrics of video clips against ground truth, and the two classical baselines the learned
 * stages are measured against. Clips are float32 tensors in the engine's frame format: values in
 * [-1, 1], shape [1, 3, F, H, W] (any leading dimensions work: every function treats the last two as
 * rows x columns and, where frames matter, the third-last as frames). All sums are float64.
 *
 * - psnr: 10 log10(peak^2 / MSE) pooled over every sample; peak 2 = the [-1, 1] range. Infinity when
 *   identical.
 * - ssim: Wang et al. (2004) SSIM with an 11x11 Gaussian window (sigma 1.5, normalised), K1 0.01,
 *   K2 0.03, on the values mapped to [0, 1] ([-1, 1] -> (x + 1) / 2, L = 1: the same as SSIM of the
 *   uint8 frames with L = 255 up to rounding; the luminance term is not shift-invariant, so SSIM of
 *   the raw [-1, 1] values would differ). The SSIM map over "valid" window positions only (no
 *   padding, as the reference MATLAB code; no downsampling of large frames), averaged per plane,
 *   computed PER CHANNEL (R, G, B separately, not on luma) and averaged over channels and frames.
 *   Frames must be at least 11x11. Equals scikit-image's structural_similarity(gaussian_weights=True,
 *   sigma=1.5, use_sample_covariance=False, data_range=1) per plane (checked in the spec).
 * - flicker: mean absolute frame-to-frame difference, mean over the F-1 consecutive pairs, the
 *   channels and pixels: (1 / ((F-1) C H W)) sum |x[f+1] - x[f]|, in the clip's units (2 = the whole
 *   range). Warping-free: a moving object contributes too, so compare a clip's flicker with that of
 *   the ground truth of the same scene (the excess), not with zero.
 * - temporalDiffError: for clips aligned with ground truth, the mean absolute difference of their
 *   frame-to-frame differences, mean |(x[f+1] - x[f]) - (g[f+1] - g[f])|: 0 when every change between
 *   frames matches the truth, whatever the per-frame error.
 * - bicubicUpscale: separable cubic convolution (Keys 1981) with parameter a (default -0.5, Keys'
 *   choice and PIL's BICUBIC kernel; PyTorch's F.interpolate(mode="bicubic") uses a = -0.75).
 *   Half-pixel centres: output pixel i samples input position (i + 0.5) / factor - 0.5, as
 *   align_corners=False; taps outside the frame take the nearest edge pixel (replicated border, as
 *   PyTorch; PIL instead drops them and renormalises). No clamping of the result (it may overshoot).
 *   With a = -0.75 this is PyTorch's bicubic upsampling (the spec checks values measured with it).
 * - blendFrames: frame-rate upsampling by `factor` (16 -> 61 for 4): output frame j lies at base
 *   time j / factor; with k = floor(j / factor) and u = j / factor - k it is (1 - u) x[k] + u x[k+1],
 *   so frame factor*k is base frame k exactly.
 */
import { invalidArgument } from "../core/errors.ts";
import { psnr as psnrOf } from "../core/metrics.ts";
import type { Tensor } from "../core/tensor.ts";

const dims = (t: Tensor, field: string, rank = 2): number[] => {
  if (t.shape.length < rank)
    throw invalidArgument(field, `must have at least ${rank} dimensions; got [${t.shape.join(", ")}]`);
  return [...t.shape];
};

function sameShape(a: Tensor, b: Tensor): void {
  const same = a.shape.length === b.shape.length && a.shape.every((n, d) => n === b.shape[d]);
  if (!same) throw invalidArgument("b", `shape [${b.shape.join(", ")}] differs from [${a.shape.join(", ")}]`);
}

/** PSNR in dB with peak `peak` (default 2, the [-1, 1] range); Infinity when identical. */
export function psnr(a: Tensor, b: Tensor, peak = 2): number {
  sameShape(a, b);
  return psnrOf(a, b, peak);
}

export interface SsimOptions {
  /** The value range mapped to [0, 1] (default [-1, 1], the engine's frames). */
  low?: number;
  high?: number;
}

export const SSIM_WINDOW = 11;
export const SSIM_SIGMA = 1.5;

/** The normalised 1-D Gaussian of the SSIM window (the 2-D window is its outer product). */
export function gaussianWindow(size = SSIM_WINDOW, sigma = SSIM_SIGMA): Float64Array {
  const w = new Float64Array(size);
  const c = (size - 1) / 2;
  let s = 0;
  for (let i = 0; i < size; i++) s += w[i] = Math.exp(-((i - c) ** 2) / (2 * sigma * sigma));
  for (let i = 0; i < size; i++) w[i]! /= s;
  return w;
}

const WINDOW = gaussianWindow();

/** "valid" separable filtering of an h x w plane with the window: (h - n + 1) x (w - n + 1). */
function filterValid(x: Float64Array, h: number, w: number): Float64Array {
  const n = WINDOW.length;
  const oh = h - n + 1;
  const ow = w - n + 1;
  const rows = new Float64Array(h * ow);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < ow; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += WINDOW[k]! * x[i * w + j + k]!;
      rows[i * ow + j] = s;
    }
  }
  const out = new Float64Array(oh * ow);
  for (let i = 0; i < oh; i++) {
    for (let j = 0; j < ow; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += WINDOW[k]! * rows[(i + k) * ow + j]!;
      out[i * ow + j] = s;
    }
  }
  return out;
}

/**
 * Mean SSIM of one h x w plane pair (the mean of the valid SSIM map), on the values mapped by
 * (v - low) / (high - low), with L = 1.
 */
export function ssimPlane(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  h: number,
  w: number,
  low = 0,
  high = 1,
): number {
  if (h < SSIM_WINDOW || w < SSIM_WINDOW)
    throw invalidArgument("frames", `must be at least ${SSIM_WINDOW}x${SSIM_WINDOW} for SSIM; got ${h}x${w}`);
  const n = h * w;
  const xx = new Float64Array(n);
  const yy = new Float64Array(n);
  const x2 = new Float64Array(n);
  const y2 = new Float64Array(n);
  const xy = new Float64Array(n);
  const scale = 1 / (high - low);
  for (let p = 0; p < n; p++) {
    const a = (x[p]! - low) * scale;
    const b = (y[p]! - low) * scale;
    xx[p] = a;
    yy[p] = b;
    x2[p] = a * a;
    y2[p] = b * b;
    xy[p] = a * b;
  }
  const [mx, my, sxx, syy, sxy] = [xx, yy, x2, y2, xy].map((v) => filterValid(v, h, w)) as [
    Float64Array,
    Float64Array,
    Float64Array,
    Float64Array,
    Float64Array,
  ];
  const c1 = 0.01 ** 2;
  const c2 = 0.03 ** 2;
  let total = 0;
  for (let q = 0; q < mx.length; q++) {
    const ux = mx[q]!;
    const uy = my[q]!;
    const vx = sxx[q]! - ux * ux;
    const vy = syy[q]! - uy * uy;
    const cxy = sxy[q]! - ux * uy;
    total += ((2 * ux * uy + c1) * (2 * cxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
  }
  return total / mx.length;
}

/** Mean SSIM over every plane (channel x frame) of two clips of the same shape. */
export function ssim(a: Tensor, b: Tensor, opts: SsimOptions = {}): number {
  sameShape(a, b);
  const s = dims(a, "a");
  const h = s.at(-2)!;
  const w = s.at(-1)!;
  const planes = a.data.length / (h * w);
  const low = opts.low ?? -1;
  const high = opts.high ?? 1;
  if (!(high > low)) throw invalidArgument("high", `must be above low (${low}); got ${high}`);
  let total = 0;
  for (let p = 0; p < planes; p++) {
    const at = p * h * w;
    total += ssimPlane(a.data.subarray(at, at + h * w), b.data.subarray(at, at + h * w), h, w, low, high);
  }
  return total / planes;
}

/** Frames, rows and columns of a clip, and the number of channel planes per frame. */
function clipDims(t: Tensor, field: string): { lead: number; F: number; H: number; W: number } {
  const s = dims(t, field, 3);
  const [F, H, W] = s.slice(-3) as [number, number, number];
  return { lead: t.data.length / (F * H * W), F, H, W };
}

/** Mean |x[f+1] - x[f]| over consecutive frames, channels and pixels (see the file comment). */
export function flicker(clip: Tensor): number {
  const { lead, F, H, W } = clipDims(clip, "clip");
  if (F < 2) throw invalidArgument("clip", `needs at least 2 frames; got ${F}`);
  const hw = H * W;
  let s = 0;
  for (let c = 0; c < lead; c++) {
    for (let f = 0; f + 1 < F; f++) {
      const at = (c * F + f) * hw;
      for (let p = 0; p < hw; p++) s += Math.abs(clip.data[at + hw + p]! - clip.data[at + p]!);
    }
  }
  return s / (lead * (F - 1) * hw);
}

/** Mean |(x[f+1] - x[f]) - (g[f+1] - g[f])| of a clip against its aligned ground truth. */
export function temporalDiffError(clip: Tensor, truth: Tensor): number {
  sameShape(clip, truth);
  const { lead, F, H, W } = clipDims(clip, "clip");
  if (F < 2) throw invalidArgument("clip", `needs at least 2 frames; got ${F}`);
  const hw = H * W;
  const x = clip.data;
  const g = truth.data;
  let s = 0;
  for (let c = 0; c < lead; c++) {
    for (let f = 0; f + 1 < F; f++) {
      const at = (c * F + f) * hw;
      for (let p = 0; p < hw; p++) {
        const q = at + p;
        s += Math.abs(x[q + hw]! - x[q]! - (g[q + hw]! - g[q]!));
      }
    }
  }
  return s / (lead * (F - 1) * hw);
}

/** Keys' cubic convolution kernel with parameter a. */
export function keysKernel(x: number, a = -0.5): number {
  const t = Math.abs(x);
  if (t <= 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a;
  return 0;
}

/** Per output index: the four input indices (edge-clamped) and their weights. */
function cubicTaps(n: number, factor: number, a: number): { idx: Int32Array; wt: Float64Array } {
  const m = n * factor;
  const idx = new Int32Array(m * 4);
  const wt = new Float64Array(m * 4);
  for (let i = 0; i < m; i++) {
    const src = (i + 0.5) / factor - 0.5;
    const i0 = Math.floor(src);
    const t = src - i0;
    for (let k = 0; k < 4; k++) {
      idx[i * 4 + k] = Math.min(n - 1, Math.max(0, i0 - 1 + k));
      wt[i * 4 + k] = keysKernel(t + 1 - k, a);
    }
  }
  return { idx, wt };
}

/** Bicubic upscaling of the last two dimensions by an integer factor (see the file comment). */
export function bicubicUpscale(t: Tensor, factor = 4, a = -0.5): Tensor {
  const s = dims(t, "input");
  const H = s.at(-2)!;
  const W = s.at(-1)!;
  if (!Number.isInteger(factor) || factor < 1 || factor > 64)
    throw invalidArgument("factor", `must be an integer in [1, 64]; got ${factor}`);
  if (!Number.isFinite(a)) throw invalidArgument("a", `must be a finite number; got ${a}`);
  const H2 = H * factor;
  const W2 = W * factor;
  const planes = t.data.length / (H * W);
  const cols = cubicTaps(W, factor, a);
  const rows = cubicTaps(H, factor, a);
  const out = new Float32Array(planes * H2 * W2);
  const tmp = new Float64Array(H * W2);
  for (let p = 0; p < planes; p++) {
    const src = p * H * W;
    for (let i = 0; i < H; i++) {
      for (let j = 0; j < W2; j++) {
        let v = 0;
        for (let k = 0; k < 4; k++) v += cols.wt[j * 4 + k]! * t.data[src + i * W + cols.idx[j * 4 + k]!]!;
        tmp[i * W2 + j] = v;
      }
    }
    const dst = p * H2 * W2;
    for (let i = 0; i < H2; i++) {
      for (let j = 0; j < W2; j++) {
        let v = 0;
        for (let k = 0; k < 4; k++) v += rows.wt[i * 4 + k]! * tmp[rows.idx[i * 4 + k]! * W2 + j]!;
        out[dst + i * W2 + j] = v;
      }
    }
  }
  return { shape: [...s.slice(0, -2), H2, W2], data: out };
}

/** Frame-rate upsampling by linear blending of the two nearest frames: F -> (F - 1) * factor + 1. */
export function blendFrames(clip: Tensor, factor = 4): Tensor {
  const { lead, F, H, W } = clipDims(clip, "clip");
  if (!Number.isInteger(factor) || factor < 1 || factor > 64)
    throw invalidArgument("factor", `must be an integer in [1, 64]; got ${factor}`);
  const F2 = (F - 1) * factor + 1;
  const hw = H * W;
  const out = new Float32Array(lead * F2 * hw);
  for (let c = 0; c < lead; c++) {
    for (let j = 0; j < F2; j++) {
      const k = Math.min(F - 1, Math.floor(j / factor));
      const u = j / factor - k;
      const a = (c * F + k) * hw;
      const b = (c * F + Math.min(F - 1, k + 1)) * hw;
      const d = (c * F2 + j) * hw;
      for (let p = 0; p < hw; p++) out[d + p] = (1 - u) * clip.data[a + p]! + u * clip.data[b + p]!;
    }
  }
  return { shape: [...clip.shape.slice(0, -3), F2, H, W], data: out };
}

/** The given frames of a clip, in order (e.g. the in-between frames of an interpolated clip). */
export function pickFrames(clip: Tensor, frames: readonly number[]): Tensor {
  const { lead, F, H, W } = clipDims(clip, "clip");
  for (const f of frames) {
    if (!Number.isInteger(f) || f < 0 || f >= F)
      throw invalidArgument("frames", `must be integers in [0, ${F - 1}]; got ${f}`);
  }
  const hw = H * W;
  const n = frames.length;
  const out = new Float32Array(lead * n * hw);
  for (let c = 0; c < lead; c++) {
    frames.forEach((f, i) => {
      out.set(clip.data.subarray((c * F + f) * hw, (c * F + f + 1) * hw), (c * n + i) * hw);
    });
  }
  return { shape: [...clip.shape.slice(0, -3), n, H, W], data: out };
}

/** The clip with every value clamped to [lo, hi] (default [-1, 1], what a video shows). */
export function clampClip(t: Tensor, lo = -1, hi = 1): Tensor {
  const out = new Float32Array(t.data.length);
  for (let i = 0; i < out.length; i++) out[i] = Math.min(hi, Math.max(lo, t.data[i]!));
  return { shape: [...t.shape], data: out };
}
