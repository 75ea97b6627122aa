/**
 * Window planning: cover an axis of length N with windows of size S overlapping by O (stride S - O),
 * and tensors with the product of per-axis windows (frame chunks x spatial patches).
 *
 * Rules of `windows(N, S, O, multipleOf)`:
 *  - N <= S: one window [0, N).
 *  - otherwise windows start at 0, S-O, 2(S-O), ... and the last one is moved back to end at N
 *    (tail "shift", the default: every window has size S, the last overlap may exceed O) or cut at N
 *    (tail "shrink": the last window may be smaller; with O = 0 the windows do not overlap at all).
 *  - multipleOf m: N, S and O must all be multiples of m, so every start and size is one too.
 * Scaling N, S, O (and m) by the same factor scales every window by it (latent -> pixel plans).
 */
import { invalidArgument } from "../errors.ts";
import type { Box } from "../tensor.ts";
import { featherWeights } from "./weights.ts";

export interface Window {
  readonly start: number;
  readonly size: number;
}

export type Tail = "shift" | "shrink";

export interface WindowOptions {
  /** How the last window meets the end of the axis (default "shift"). */
  readonly tail?: Tail;
  /** Prefix for error fields, e.g. "vsr.patch_height" (default "tiling"). */
  readonly field?: string;
}

function checkInt(field: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < min) {
    throw invalidArgument(field, `must be an integer >= ${min}, got ${v}`);
  }
}

/** 1-D windows over [0, length); see the file header for the rules. */
export function windows(
  length: number,
  size: number,
  overlap = 0,
  multipleOf = 1,
  options: WindowOptions = {},
): Window[] {
  const f = options.field ?? "tiling";
  const tail = options.tail ?? "shift";
  checkInt(`${f}.length`, length, 1);
  checkInt(`${f}.size`, size, 1);
  checkInt(`${f}.overlap`, overlap, 0);
  checkInt(`${f}.multipleOf`, multipleOf, 1);
  if (overlap >= size) {
    throw invalidArgument(`${f}.overlap`, `must be smaller than the window size ${size}, got ${overlap}`);
  }
  for (const [name, v] of [
    ["length", length],
    ["size", size],
    ["overlap", overlap],
  ] as const) {
    if (v % multipleOf !== 0) {
      throw invalidArgument(`${f}.${name}`, `must be a multiple of ${multipleOf}, got ${v}`);
    }
  }
  if (tail !== "shift" && tail !== "shrink") {
    throw invalidArgument(`${f}.tail`, `must be "shift" or "shrink", got ${String(tail)}`);
  }
  if (length <= size) return [{ start: 0, size: length }];
  const stride = size - overlap;
  const out: Window[] = [];
  for (let start = 0; ; start += stride) {
    if (start + size >= length) {
      out.push(tail === "shift" ? { start: length - size, size } : { start, size: length - start });
      return out;
    }
    out.push({ start, size });
  }
}

/** How to split one tensor axis. */
export interface AxisSplit {
  readonly axis: number;
  readonly size: number;
  readonly overlap?: number;
  readonly multipleOf?: number;
  readonly tail?: Tail;
  /** Name used in error fields (default `axis<N>`). */
  readonly name?: string;
}

/** The windows chosen for one split axis. */
export interface AxisWindows {
  readonly axis: number;
  readonly windows: readonly Window[];
}

/** One tile of a plan: its box, its window index per split axis, and feather weights per tensor axis. */
export interface Tile {
  readonly box: Box;
  /** Window index along each split axis, in the plan's axis order. */
  readonly grid: readonly number[];
  /** 1-D blend weights per tensor axis (undefined = all ones), length = box.size[axis]. */
  readonly weights: readonly (Float32Array | undefined)[];
}

export interface TilePlan {
  readonly shape: readonly number[];
  readonly axes: readonly AxisWindows[];
  /** Row-major over the split axes in the order given (first split outermost). */
  readonly tiles: readonly Tile[];
}

function checkShape(shape: readonly number[]): void {
  for (let d = 0; d < shape.length; d++) checkInt(`shape[${d}]`, shape[d]!, 0);
}

/** A plan from explicit per-axis windows (e.g. windows scaled from a latent plan). */
export function planFromWindows(shape: readonly number[], axes: readonly AxisWindows[]): TilePlan {
  checkShape(shape);
  const seen = new Set<number>();
  for (const { axis, windows: ws } of axes) {
    if (!Number.isInteger(axis) || axis < 0 || axis >= shape.length) {
      throw invalidArgument("tiling.axis", `must be in [0, ${shape.length}), got ${axis}`);
    }
    if (seen.has(axis)) throw invalidArgument("tiling.axis", `axis ${axis} is split twice`);
    seen.add(axis);
    if (ws.length === 0) throw invalidArgument("tiling.windows", `axis ${axis} has no windows`);
    for (const w of ws) {
      if (!Number.isInteger(w.start) || !Number.isInteger(w.size) || w.start < 0 || w.size < 1) {
        throw invalidArgument("tiling.windows", `axis ${axis}: bad window [${w.start}, +${w.size})`);
      }
      if (w.start + w.size > shape[axis]!) {
        throw invalidArgument("tiling.windows", `axis ${axis}: window ends past ${shape[axis]}`);
      }
    }
  }
  const axisWeights = axes.map((a) => a.windows.map((_, i) => featherWeights(a.windows, i)));
  const tiles: Tile[] = [];
  const grid = new Array<number>(axes.length).fill(0);
  const count = axes.reduce((n, a) => n * a.windows.length, 1);
  for (let t = 0; t < count; t++) {
    const start = shape.map(() => 0);
    const size = [...shape];
    const weights = new Array<Float32Array | undefined>(shape.length).fill(undefined);
    axes.forEach((a, k) => {
      const w = a.windows[grid[k]!]!;
      start[a.axis] = w.start;
      size[a.axis] = w.size;
      weights[a.axis] = axisWeights[k]![grid[k]!];
    });
    tiles.push({ box: { start, size }, grid: [...grid], weights });
    for (let k = axes.length - 1; k >= 0; k--) {
      grid[k]!++;
      if (grid[k]! < axes[k]!.windows.length) break;
      grid[k] = 0;
    }
  }
  return { shape: [...shape], axes, tiles };
}

/** Tiles a tensor of `shape` by the product of per-axis windows; unsplit axes are taken whole. */
export function planTiles(shape: readonly number[], splits: readonly AxisSplit[]): TilePlan {
  checkShape(shape);
  const axes = splits.map((s) => {
    const name = s.name ?? `axis${s.axis}`;
    if (!Number.isInteger(s.axis) || s.axis < 0 || s.axis >= shape.length) {
      throw invalidArgument(`tiling.${name}.axis`, `must be in [0, ${shape.length}), got ${s.axis}`);
    }
    const opts: WindowOptions = { field: `tiling.${name}`, ...(s.tail ? { tail: s.tail } : {}) };
    return {
      axis: s.axis,
      windows: windows(shape[s.axis]!, s.size, s.overlap ?? 0, s.multipleOf ?? 1, opts),
    };
  });
  return planFromWindows(shape, axes);
}

/** Just the boxes of planTiles. */
export function boxes(shape: readonly number[], splits: readonly AxisSplit[]): Box[] {
  return planTiles(shape, splits).tiles.map((t) => t.box);
}

/**
 * The same plan on a tensor whose split axes are `factors[axis]` times larger (e.g. x8 for VAE decode
 * of latent patches, x4 for VSR): windows scale exactly; `shape` is the new tensor's shape.
 */
export function scalePlan(plan: TilePlan, shape: readonly number[], factors: readonly number[]): TilePlan {
  const axes = plan.axes.map((a) => {
    const f = factors[a.axis] ?? 1;
    checkInt(`tiling.factors[${a.axis}]`, f, 1);
    if (shape[a.axis] !== plan.shape[a.axis]! * f) {
      throw invalidArgument(
        "tiling.shape",
        `axis ${a.axis} must be ${plan.shape[a.axis]} x ${f}, got ${shape[a.axis]}`,
      );
    }
    return { axis: a.axis, windows: a.windows.map((w) => ({ start: w.start * f, size: w.size * f })) };
  });
  return planFromWindows(shape, axes);
}
