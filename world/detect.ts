/**
 * A detector for clips of the toy world (ground truth or generated): which coloured objects are
 * there, their shapes and how they move. For each palette colour it tracks the largest region per
 * frame (segment.ts); classifies the shape by fitting the three exact shapes (geometry.ts) with the
 * region's area and centroid, sharp or slightly blurred, keeping the best fit summed over four frames
 * spread over the clip; and reads the motion from the least-squares slope of the centroid track:
 * "still" when it moves less than STILL_DISPLACEMENT of the frame over the clip, else the dominant
 * axis and its sign, "slow" or "fast" by the nearer class speed.
 *
 * Confidence per object = colour x shape x motion scores, each in [0, 1]: colour = fraction of frames
 * where it was found x (1 - mean palette residual); shape = the gap between the second-best and the
 * best fit error over SHAPE_SEPARATION x the area (at most 1); motion = how far the displacement is
 * from the still threshold and how much it keeps to one axis.
 */
import { invalidArgument } from "../core/errors.ts";
import type { Tensor } from "../core/tensor.ts";
import type { Frames } from "../media/types.ts";
import { coverage } from "./geometry.ts";
import type { ParsedCaption } from "./parse.ts";
import { COLOURS, type Colour, type Motion, SHAPES, type Shape, SPEED_OF, type SpeedClass } from "./scene.ts";
import { estimateBackground, type Region, segmentFrame, type UnitClip } from "./segment.ts";

/** Displacement (fraction of the frame over the clip) below which an object counts as still. */
export const STILL_DISPLACEMENT = 0.1;
/**
 * Fit-error gap (fraction of the area) between the best and second-best shape that gives full shape
 * confidence. For reference, a disk and the square of equal area and centre differ by 0.18 of it.
 */
export const SHAPE_SEPARATION = 0.1;
/** Frames (spread over the clip) the shape is fitted on. */
const SHAPE_FRAMES = 4;

export interface DetectedObject {
  colour: Colour;
  shape: Shape;
  motion: Motion;
  /** undefined when still. */
  speed: SpeedClass | undefined;
  /** Least-squares velocity of the centroid, frame-widths / frame-heights per second. */
  velocity: { x: number; y: number };
  /** Estimated size (fraction of the frame height) from the best-fitting shape. */
  size: number;
  /** Centroid per frame (normalised), null where the object was not found. */
  track: ({ x: number; y: number } | null)[];
  confidence: number;
  scores: { colour: number; shape: number; motion: number };
  /** Mean area over the frames where found, as a fraction of the frame. */
  area: number;
}

export interface DetectOptions {
  /** Frame rate of the clip (default 8, the base clip's). */
  fps?: number;
  /** Smallest region counted, as a fraction of the frame area (default 0.002, at least 3 pixels). */
  minArea?: number;
}

/** A [1, 3, F, H, W] or [3, F, H, W] tensor in [-1, 1] viewed as planes in [0, 1]. */
export function unitClip(t: Tensor): UnitClip {
  const s = t.shape;
  const dims = s.length === 5 && s[0] === 1 ? s.slice(1) : s;
  if (dims.length !== 4 || dims[0] !== 3)
    throw invalidArgument("clip", `must have shape [1, 3, F, H, W] or [3, F, H, W]; got [${s.join(", ")}]`);
  const [, F, H, W] = dims as [number, number, number, number];
  const data = new Float32Array(t.data.length);
  for (let i = 0; i < data.length; i++) data[i] = (t.data[i]! + 1) / 2;
  const hw = H * W;
  return {
    frames: F,
    height: H,
    width: W,
    plane: (f, k) => data.subarray((k * F + f) * hw, (k * F + f + 1) * hw),
  };
}

/** rgb24 frames (e.g. a decoded MP4) -> [1, 3, F, H, W] in [-1, 1]. */
export function clipOfFrames(v: Frames): Tensor {
  const F = v.frames.length;
  const hw = v.height * v.width;
  const data = new Float32Array(3 * F * hw);
  v.frames.forEach((frame, f) => {
    for (let p = 0; p < hw; p++)
      for (let k = 0; k < 3; k++) data[(k * F + f) * hw + p] = frame[p * 3 + k]! / 127.5 - 1;
  });
  return { shape: [1, 3, F, v.height, v.width], data };
}

/** Every object found in at least half of the frames, largest first. */
export function detectObjects(clip: Tensor, opts: DetectOptions = {}): DetectedObject[] {
  const fps = opts.fps ?? 8;
  if (!(fps > 0)) throw invalidArgument("fps", `must be positive; got ${fps}`);
  const u = unitClip(clip);
  const { frames: F, height: H, width: W } = u;
  const minArea = Math.max(3, (opts.minArea ?? 0.002) * H * W);
  const bg = estimateBackground(u);
  const perColour = new Map<number, (Region | null)[]>();
  for (let f = 0; f < F; f++) {
    for (const r of segmentFrame(u, f, bg, minArea)) {
      let seq = perColour.get(r.colour);
      if (!seq) perColour.set(r.colour, (seq = new Array<Region | null>(F).fill(null)));
      seq[f] = r;
    }
  }
  const out: DetectedObject[] = [];
  for (const [c, seq] of perColour) {
    const found = seq.filter((r): r is Region => r !== null);
    if (found.length * 2 < F) continue;
    out.push(describe(COLOURS[c]!, seq, found, u, fps));
  }
  return out.sort((a, b) => b.area - a.area);
}

/** The dominant (largest) object, or undefined when none is found. */
export function detect(clip: Tensor, opts: DetectOptions = {}): DetectedObject | undefined {
  return detectObjects(clip, opts)[0];
}

function describe(
  colour: Colour,
  seq: (Region | null)[],
  found: Region[],
  u: UnitClip,
  fps: number,
): DetectedObject {
  const { frames: F, height: H, width: W } = u;
  const err = new Map<Shape, number>(SHAPES.map((s) => [s, 0]));
  let area = 0;
  // The shape is fitted on up to SHAPE_FRAMES frames spread over the clip (it does not change).
  const nfit = Math.min(found.length, SHAPE_FRAMES);
  let fitted = 0;
  for (let k = 0; k < nfit; k++) {
    const r = found[nfit === 1 ? 0 : Math.round((k * (found.length - 1)) / (nfit - 1))]!;
    for (const s of SHAPES) err.set(s, err.get(s)! + fitError(s, r));
    fitted += r.area;
  }
  for (const r of found) area += r.area;
  const ranked = [...SHAPES].sort((a, b) => err.get(a)! - err.get(b)!);
  const shape = ranked[0]!;
  const shapeScore = clamp01((err.get(ranked[1]!)! - err.get(shape)!) / (SHAPE_SEPARATION * fitted));
  const meanArea = area / found.length;
  const size = templateSize(shape, meanArea) / H;
  const track = seq.map((r) => (r ? { x: r.cx / W, y: r.cy / H } : null));
  const m = motionOf(track, fps);
  const residual = found.reduce((a, r) => a + r.residual, 0) / found.length;
  const colourScore = (found.length / F) * clamp01(1 - residual);
  return {
    colour,
    shape,
    motion: m.motion,
    speed: m.speed,
    velocity: m.velocity,
    size,
    track,
    confidence: colourScore * shapeScore * m.score,
    scores: { colour: colourScore, shape: shapeScore, motion: m.score },
    area: meanArea / (H * W),
  };
}

const clamp01 = (x: number) => Math.min(1, Math.max(0, x));

/** The extent s of a shape with the given area (pixels). */
function templateSize(shape: Shape, area: number): number {
  return shape === "square"
    ? Math.sqrt(area)
    : shape === "circle"
      ? Math.sqrt((4 * area) / Math.PI)
      : Math.sqrt(2 * area);
}

/** Separable blur kernels tried on each template: none, and two small blurs (generated frames are soft). */
const KERNELS: readonly (readonly number[])[] = [[1], [0.25, 0.5, 0.25], [1 / 9, 2 / 9, 3 / 9, 2 / 9, 1 / 9]];
const PAD = 3;

/**
 * L1 distance between the region's coverage and the shape with the same area and centroid (the
 * triangle's centroid lies s/6 below its box centre), sharp or blurred by one of KERNELS, whichever
 * is closest, over both their extents.
 */
function fitError(shape: Shape, r: Region): number {
  const s = templateSize(shape, r.area);
  const cx = r.cx;
  const cy = shape === "triangle" ? r.cy - s / 6 : r.cy;
  const { box } = r;
  const i0 = Math.min(box.i0, Math.floor(cy - s / 2)) - PAD;
  const j0 = Math.min(box.j0, Math.floor(cx - s / 2)) - PAD;
  const h = Math.max(box.i1, Math.ceil(cy + s / 2)) + PAD - i0;
  const w = Math.max(box.j1, Math.ceil(cx + s / 2)) + PAD - j0;
  const bw = box.j1 - box.j0;
  const seen = new Float64Array(h * w);
  const tmpl = new Float64Array(h * w);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const y = i0 + i;
      const x = j0 + j;
      tmpl[i * w + j] = coverage(shape, cx, cy, s, x, y, x + 1, y + 1);
      if (y >= box.i0 && x >= box.j0 && y < box.i1 && x < box.j1)
        seen[i * w + j] = clamp01(r.alpha[(y - box.i0) * bw + (x - box.j0)]!);
    }
  }
  let best = Infinity;
  for (const k of KERNELS) {
    const t = k.length === 1 ? tmpl : blur(tmpl, h, w, k);
    let e = 0;
    for (let q = 0; q < h * w; q++) e += Math.abs(seen[q]! - t[q]!);
    best = Math.min(best, e);
  }
  return best;
}

/** Separable convolution of an h x w image with kernel k (zero outside). */
function blur(a: Float64Array, h: number, w: number, k: readonly number[]): Float64Array {
  const rad = (k.length - 1) / 2;
  const tmp = new Float64Array(h * w);
  const out = new Float64Array(h * w);
  for (let i = 0; i < h; i++)
    for (let j = 0; j < w; j++)
      for (let d = -rad; d <= rad; d++)
        if (j + d >= 0 && j + d < w) tmp[i * w + j]! += k[d + rad]! * a[i * w + j + d]!;
  for (let i = 0; i < h; i++)
    for (let j = 0; j < w; j++)
      for (let d = -rad; d <= rad; d++)
        if (i + d >= 0 && i + d < h) out[i * w + j]! += k[d + rad]! * tmp[(i + d) * w + j]!;
  return out;
}

interface MotionFit {
  motion: Motion;
  speed: SpeedClass | undefined;
  velocity: { x: number; y: number };
  score: number;
}

/** Least-squares slope of a centroid track -> direction, speed class and a score. */
export function motionOf(track: readonly ({ x: number; y: number } | null)[], fps: number): MotionFit {
  const pts = track.flatMap((p, f) => (p ? [{ t: f / fps, ...p }] : []));
  if (pts.length < 2) return { motion: "still", speed: undefined, velocity: { x: 0, y: 0 }, score: 0 };
  const mt = pts.reduce((a, p) => a + p.t, 0) / pts.length;
  const slope = (k: "x" | "y") => {
    const m = pts.reduce((a, p) => a + p[k], 0) / pts.length;
    let num = 0;
    let den = 0;
    for (const p of pts) {
      num += (p.t - mt) * (p[k] - m);
      den += (p.t - mt) ** 2;
    }
    return den > 0 ? num / den : 0;
  };
  const velocity = { x: slope("x"), y: slope("y") };
  const span = (track.length - 1) / fps;
  const dx = velocity.x * span;
  const dy = velocity.y * span;
  const major = Math.max(Math.abs(dx), Math.abs(dy));
  const minor = Math.min(Math.abs(dx), Math.abs(dy));
  if (major < STILL_DISPLACEMENT) {
    return { motion: "still", speed: undefined, velocity, score: clamp01(1 - major / STILL_DISPLACEMENT) };
  }
  const horizontal = Math.abs(dx) >= Math.abs(dy);
  const motion: Motion = horizontal ? (dx < 0 ? "left" : "right") : dy < 0 ? "up" : "down";
  const v = Math.abs(horizontal ? velocity.x : velocity.y);
  const speed: SpeedClass = v < (SPEED_OF.slow + SPEED_OF.fast) / 2 ? "slow" : "fast";
  const score = clamp01((major - STILL_DISPLACEMENT) / STILL_DISPLACEMENT) * (1 - minor / major);
  return { motion, speed, velocity, score };
}

export interface CaptionMatch {
  /** Per object the caption names: whether a detected object of its colour has its shape and motion. */
  objects: { colour: boolean; shape: boolean; motion: boolean }[];
  /** Every named attribute of every object was found. */
  ok: boolean;
}

/** Checks detections against a parsed caption (attributes it leaves out count as matched). */
export function matchCaption(found: readonly DetectedObject[], caption: ParsedCaption): CaptionMatch {
  const used = new Set<DetectedObject>();
  const objects = caption.objects.map((want) => {
    const d =
      found.find((o) => !used.has(o) && (want.colour === undefined || o.colour === want.colour)) ?? undefined;
    if (d) used.add(d);
    return {
      colour: d !== undefined,
      shape: d !== undefined && (want.shape === undefined || d.shape === want.shape),
      motion: d !== undefined && (want.motion === undefined || d.motion === want.motion),
    };
  });
  return { objects, ok: objects.every((o) => o.colour && o.shape && o.motion) };
}
