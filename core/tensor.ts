/**
 * A minimal dense float32 tensor (row-major) and the box operations that plans use to cut tensors
 * into frame chunks and spatial patches and to put them back together.
 */
import { LavieError } from "./errors.ts";

export interface Tensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

export function tensor(shape: readonly number[], data?: Float32Array): Tensor {
  const n = numel(shape);
  if (data && data.length !== n) {
    throw new LavieError(
      "internal",
      `tensor: data has ${data.length} elements, shape [${shape.join(",")}] needs ${n}`,
    );
  }
  return { shape: [...shape], data: data ?? new Float32Array(n) };
}

/** An axis-aligned box: start offset and size per dimension. */
export interface Box {
  readonly start: readonly number[];
  readonly size: readonly number[];
}

function checkBox(shape: readonly number[], box: Box, what: string): void {
  if (box.start.length !== shape.length || box.size.length !== shape.length) {
    throw new LavieError(
      "internal",
      `${what}: box rank ${box.start.length} does not match tensor rank ${shape.length}`,
    );
  }
  for (let i = 0; i < shape.length; i++) {
    const s = box.start[i]!;
    const z = box.size[i]!;
    if (s < 0 || z < 0 || s + z > shape[i]!) {
      throw new LavieError(
        "internal",
        `${what}: box [${s}, ${s + z}) outside dimension ${i} of size ${shape[i]}`,
      );
    }
  }
}

/**
 * Calls fn(srcOffset, dstOffset, runLength) for every contiguous innermost run of a box inside a
 * tensor of shape `shape`, with dst offsets in the box's own row-major layout.
 */
function forEachRun(
  shape: readonly number[],
  box: Box,
  fn: (tensorOffset: number, boxOffset: number, len: number) => void,
): void {
  const rank = shape.length;
  if (rank === 0) {
    fn(0, 0, 1);
    return;
  }
  const st = stridesOf(shape);
  const run = box.size[rank - 1]!;
  const outer = numel(box.size.slice(0, rank - 1));
  if (run === 0 || outer === 0) return;
  const idx = new Array<number>(rank - 1).fill(0);
  for (let o = 0; o < outer; o++) {
    let off = box.start[rank - 1]!;
    for (let d = 0; d < rank - 1; d++) off += (box.start[d]! + idx[d]!) * st[d]!;
    fn(off, o * run, run);
    for (let d = rank - 2; d >= 0; d--) {
      idx[d]!++;
      if (idx[d]! < box.size[d]!) break;
      idx[d] = 0;
    }
  }
}

/** Copies a box out of a tensor. */
export function sliceBox(t: Tensor, box: Box): Tensor {
  checkBox(t.shape, box, "sliceBox");
  const out = new Float32Array(numel(box.size));
  forEachRun(t.shape, box, (src, dst, len) => out.set(t.data.subarray(src, src + len), dst));
  return { shape: [...box.size], data: out };
}

/** Writes `src` into `dst` at `start` (src's shape is the box size). */
export function writeBox(dst: Tensor, src: Tensor, start: readonly number[]): void {
  const box = { start, size: src.shape };
  checkBox(dst.shape, box, "writeBox");
  forEachRun(dst.shape, box, (d, s, len) => dst.data.set(src.data.subarray(s, s + len), d));
}

/** Concatenates tensors along one axis (all other dimensions equal). */
export function concat(parts: readonly Tensor[], axis: number): Tensor {
  const first = parts[0];
  if (!first) throw new LavieError("internal", "concat: no tensors");
  const shape = [...first.shape];
  let total = 0;
  for (const p of parts) {
    if (p.shape.length !== shape.length) throw new LavieError("internal", "concat: rank mismatch");
    for (let i = 0; i < shape.length; i++) {
      if (i !== axis && p.shape[i] !== shape[i])
        throw new LavieError("internal", `concat: dimension ${i} differs`);
    }
    total += p.shape[axis]!;
  }
  shape[axis] = total;
  const out = tensor(shape);
  let at = 0;
  for (const p of parts) {
    const start = new Array<number>(shape.length).fill(0);
    start[axis] = at;
    writeBox(out, p, start);
    at += p.shape[axis]!;
  }
  return out;
}
