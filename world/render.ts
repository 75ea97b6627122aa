/**
 * Ground-truth frames of a scene at any size and time: exact box-filtered coverage (geometry.ts)
 * composited over the background, in the cascade's frame format: float32 RGB in [-1, 1], tensors
 * [1, 3, F, H, W] (batch, channel, frame, row, column) as the engine's stages produce and take them.
 *
 * Frame f of a clip shows time f / fps. So the 61-frame clip at 32 fps and the 16-frame clip at 8 fps
 * share their ends and frame 4k of the first is base frame k, bit for bit; a render at 4x the
 * resolution, box-filtered down by 4, equals the 1x render up to float rounding on plain backgrounds
 * (on gradients within |to - from| / (2H): an object pixel's background is taken at the pixel centre).
 */
import { invalidArgument } from "../core/errors.ts";
import type { Tensor } from "../core/tensor.ts";
import { floatToByte } from "../media/convert.ts";
import { coverage } from "./geometry.ts";
import { type Background, COLOUR_RGB, positionAt, type Scene, TONE_RGB } from "./scene.ts";

export interface ClipSpec {
  height: number;
  width: number;
  frames: number;
  fps: number;
}

/** The 16-frame base clip at 8 fps, the 61-frame 4x-frame-rate clip at 32 fps. */
export const BASE_CLIP = { frames: 16, fps: 8 } as const;
export const INTERP_CLIP = { frames: 61, fps: 32 } as const;

export function checkClipSpec(c: ClipSpec): void {
  for (const k of ["height", "width"] as const) {
    if (!Number.isInteger(c[k]) || c[k] < 1 || c[k] > 4096)
      throw invalidArgument(k, `must be an integer in [1, 4096]; got ${c[k]}`);
  }
  if (!Number.isInteger(c.frames) || c.frames < 1 || c.frames > 1024)
    throw invalidArgument("frames", `must be an integer in [1, 1024]; got ${c.frames}`);
  if (!Number.isFinite(c.fps) || c.fps <= 0 || c.fps > 1000)
    throw invalidArgument("fps", `must be a number in (0, 1000]; got ${c.fps}`);
}

/** The time of frame f: f / fps seconds. */
export const frameTime = (f: number, fps: number): number => f / fps;

/**
 * Renders the scene at time t into `dst`: channel c of pixel p at dst[offset + c * channelStride + p],
 * values in [-1, 1]. The default stride packs one [3, H, W] frame. `bg` is the background from
 * backgroundPlanes (computed when not given).
 */
export function renderFrameInto(
  scene: Scene,
  t: number,
  height: number,
  width: number,
  dst: Float32Array,
  offset = 0,
  channelStride = height * width,
  bg: Float64Array = backgroundPlanes(scene.background, height, width),
): void {
  const hw = height * width;
  for (let k = 0; k < 3; k++) {
    const base = offset + k * channelStride;
    for (let p = 0; p < hw; p++) dst[base + p] = bg[k * hw + p]! * 2 - 1;
  }
  const placed = scene.objects.map((o) => {
    const { x, y } = positionAt(o, t);
    return { shape: o.shape, s: o.size * height, cx: x * width, cy: y * height, c: COLOUR_RGB[o.colour] };
  });
  const v = [0, 0, 0];
  for (const { s, cx, cy } of placed) {
    const j0 = Math.max(0, Math.floor(cx - s / 2));
    const j1 = Math.min(width, Math.ceil(cx + s / 2));
    const i0 = Math.max(0, Math.floor(cy - s / 2));
    const i1 = Math.min(height, Math.ceil(cy + s / 2));
    for (let i = i0; i < i1; i++) {
      for (let j = j0; j < j1; j++) {
        // The whole composite of this pixel (all objects, in order), so that overlapping boxes
        // rewrite a pixel with the same value.
        const p = i * width + j;
        for (let k = 0; k < 3; k++) v[k] = bg[k * hw + p]!;
        for (const o of placed) {
          const a = coverage(o.shape, o.cx, o.cy, o.s, j, i, j + 1, i + 1);
          if (a > 0) for (let k = 0; k < 3; k++) v[k]! += a * (o.c[k]! - v[k]!);
        }
        for (let k = 0; k < 3; k++) dst[offset + k * channelStride + p] = v[k]! * 2 - 1;
      }
    }
  }
}

/** The background as planar [3, H, W] values in [0, 1]: a linear ramp sampled at pixel centres (= its pixel means). */
export function backgroundPlanes(b: Background, height: number, width: number): Float64Array {
  const from = TONE_RGB[b.kind === "plain" ? b.tone : b.from];
  const to = TONE_RGB[b.kind === "plain" ? b.tone : b.to];
  const vertical = b.kind === "gradient" && b.direction === "vertical";
  const hw = height * width;
  const out = new Float64Array(3 * hw);
  for (let i = 0; i < height; i++) {
    for (let j = 0; j < width; j++) {
      const u = vertical ? (i + 0.5) / height : (j + 0.5) / width;
      for (let k = 0; k < 3; k++) out[k * hw + i * width + j] = from[k]! + (to[k]! - from[k]!) * u;
    }
  }
  return out;
}

/** One frame at time t as a [3, H, W] tensor. */
export function renderFrame(scene: Scene, t: number, height: number, width: number): Tensor {
  const data = new Float32Array(3 * height * width);
  renderFrameInto(scene, t, height, width, data);
  return { shape: [3, height, width], data };
}

/** A clip as [1, 3, F, H, W]: frame f shows time f / fps. */
export function renderClip(scene: Scene, spec: ClipSpec): Tensor {
  checkClipSpec(spec);
  const { height: H, width: W, frames: F } = spec;
  const data = new Float32Array(3 * F * H * W);
  renderClipInto(scene, spec, data, 0);
  return { shape: [1, 3, F, H, W], data };
}

/** Writes a [3, F, H, W] clip into `dst` at `offset` (a dataset fills one big tensor clip by clip). */
export function renderClipInto(scene: Scene, spec: ClipSpec, dst: Float32Array, offset: number): void {
  const { height: H, width: W, frames: F, fps } = spec;
  const bg = backgroundPlanes(scene.background, H, W);
  for (let f = 0; f < F; f++) {
    renderFrameInto(scene, frameTime(f, fps), H, W, dst, offset + f * H * W, F * H * W, bg);
  }
}

/** rgb24 frames (as media/encode.ts takes them) of a [1, 3, F, H, W] clip. */
export function rgbFrames(clip: Tensor): Uint8Array[] {
  const [F, H, W] = clip.shape.slice(-3) as [number, number, number];
  const hw = H * W;
  return Array.from({ length: F }, (_, f) => {
    const out = new Uint8Array(hw * 3);
    for (let k = 0; k < 3; k++) {
      const plane = clip.data.subarray((k * F + f) * hw, (k * F + f + 1) * hw);
      for (let p = 0; p < hw; p++) out[p * 3 + k] = floatToByte(plane[p]!);
    }
    return out;
  });
}

/** Box-filters a [.., H, W] tensor (any leading dims) down by an integer factor. */
export function boxDownsample(t: Tensor, factor: number): Tensor {
  const s = t.shape;
  const H = s[s.length - 2]!;
  const W = s[s.length - 1]!;
  if (!Number.isInteger(factor) || factor < 1 || H % factor !== 0 || W % factor !== 0)
    throw invalidArgument("factor", `must be a positive integer dividing ${H}x${W}; got ${factor}`);
  const h = H / factor;
  const w = W / factor;
  const planes = t.data.length / (H * W);
  const out = new Float32Array(planes * h * w);
  const norm = 1 / (factor * factor);
  for (let p = 0; p < planes; p++) {
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        let acc = 0;
        for (let a = 0; a < factor; a++) {
          const row = p * H * W + (i * factor + a) * W + j * factor;
          for (let b = 0; b < factor; b++) acc += t.data[row + b]!;
        }
        out[(p * h + i) * w + j] = acc * norm;
      }
    }
  }
  return { shape: [...s.slice(0, -2), h, w], data: out };
}
