/**
 * Putting tiles back together: `Blender` accumulates weighted overlapping tiles and normalises
 * (sum w*x / sum w); `stitch` places non-overlapping pieces that exactly cover a tensor.
 * With all weights 1 (no overlap) blending is plain stitching, bit for bit.
 */
import { invalidArgument, LavieError } from "../errors.ts";
import type { Box, Tensor } from "../tensor.ts";
import { numel, stridesOf, tensor, writeBox } from "../tensor.ts";
import type { Tile } from "./windows.ts";

function checkPlacement(
  what: string,
  shape: readonly number[],
  size: readonly number[],
  start: readonly number[],
) {
  if (size.length !== shape.length || start.length !== shape.length) {
    throw invalidArgument(what, `rank ${size.length} does not match the output rank ${shape.length}`);
  }
  for (let d = 0; d < shape.length; d++) {
    const s = start[d]!;
    if (!Number.isInteger(s) || s < 0 || s + size[d]! > shape[d]!) {
      throw invalidArgument(what, `[${s}, ${s + size[d]!}) is outside dimension ${d} of size ${shape[d]}`);
    }
  }
}

export class Blender {
  readonly shape: readonly number[];
  private readonly acc: Float32Array;
  private readonly wsum: Float32Array;
  private done = false;

  constructor(shape: readonly number[]) {
    this.shape = [...shape];
    this.acc = new Float32Array(numel(shape));
    this.wsum = new Float32Array(this.acc.length);
  }

  /** Adds a tile produced for `tile` (data.shape must equal tile.box.size) with the tile's weights. */
  addTile(tile: Tile, data: Tensor): void {
    const size = tile.box.size;
    if (data.shape.length !== size.length || data.shape.some((n, d) => n !== size[d])) {
      throw invalidArgument("tile", `shape [${data.shape}] does not match box size [${size}]`);
    }
    this.add(data, tile.box.start, tile.weights);
  }

  /**
   * Adds `data` at `start`, weighted by the product over axes of weights[axis][coordinate in tile]
   * (undefined or missing = 1).
   */
  add(data: Tensor, start: readonly number[], weights: readonly (Float32Array | undefined)[] = []): void {
    if (this.done) throw new LavieError("internal", "Blender: add after result()");
    const shape = this.shape;
    const size = data.shape;
    checkPlacement("tile", shape, size, start);
    const rank = shape.length;
    for (let d = 0; d < rank; d++) {
      const w = weights[d];
      if (w && w.length !== size[d]) {
        throw invalidArgument("weights", `axis ${d} has ${w.length} weights for a tile of size ${size[d]}`);
      }
    }
    if (data.data.length === 0) return;
    const { acc, wsum } = this;
    const src = data.data;
    if (rank === 0) {
      acc[0]! += src[0]!;
      wsum[0]! += 1;
      return;
    }
    const st = stridesOf(shape);
    const run = size[rank - 1]!;
    const inner = weights[rank - 1];
    const outer = src.length / run;
    const idx = new Array<number>(rank - 1).fill(0);
    for (let o = 0; o < outer; o++) {
      let off = start[rank - 1]!;
      let w0 = 1;
      for (let d = 0; d < rank - 1; d++) {
        off += (start[d]! + idx[d]!) * st[d]!;
        const wd = weights[d];
        if (wd) w0 *= wd[idx[d]!]!;
      }
      const s0 = o * run;
      if (inner) {
        for (let k = 0; k < run; k++) {
          const w = w0 * inner[k]!;
          acc[off + k]! += w * src[s0 + k]!;
          wsum[off + k]! += w;
        }
      } else {
        for (let k = 0; k < run; k++) {
          acc[off + k]! += w0 * src[s0 + k]!;
          wsum[off + k]! += w0;
        }
      }
      for (let d = rank - 2; d >= 0; d--) {
        idx[d]!++;
        if (idx[d]! < size[d]!) break;
        idx[d] = 0;
      }
    }
  }

  /** A copy of the accumulated weight sums (before normalisation). */
  weightSums(): Tensor {
    return tensor(this.shape, this.wsum.slice());
  }

  /** Normalises in place and returns the blended tensor; every element must have been covered. */
  result(): Tensor {
    if (this.done) throw new LavieError("internal", "Blender: result() called twice");
    const { acc, wsum } = this;
    for (let i = 0; i < acc.length; i++) {
      const w = wsum[i]!;
      if (!(w > 0)) throw new LavieError("internal", `Blender: element ${i} is not covered by any tile`);
      if (w !== 1) acc[i] = acc[i]! / w;
    }
    this.done = true;
    return { shape: [...this.shape], data: acc };
  }
}

/** A piece for stitch: its data and where it goes. */
export interface Piece {
  readonly data: Tensor;
  readonly start: readonly number[];
}

function disjoint(a: Box, b: Box): boolean {
  for (let d = 0; d < a.start.length; d++) {
    if (a.start[d]! + a.size[d]! <= b.start[d]! || b.start[d]! + b.size[d]! <= a.start[d]!) return true;
  }
  return false;
}

/** Assembles non-overlapping pieces that exactly cover a tensor of `shape`. */
export function stitch(shape: readonly number[], pieces: readonly Piece[]): Tensor {
  const out = tensor(shape);
  const placed: Box[] = [];
  let covered = 0;
  for (const p of pieces) {
    checkPlacement("piece", shape, p.data.shape, p.start);
    const box = { start: p.start, size: p.data.shape };
    const clash = placed.find((b) => !disjoint(b, box) && numel(box.size) > 0 && numel(b.size) > 0);
    if (clash) {
      throw invalidArgument("piece", `at [${p.start}] overlaps the piece at [${clash.start}]; use Blender`);
    }
    placed.push(box);
    covered += numel(box.size);
    writeBox(out, p.data, p.start);
  }
  if (covered !== out.data.length) {
    throw invalidArgument(
      "pieces",
      `cover ${covered} of ${out.data.length} elements; they must cover the tensor`,
    );
  }
  return out;
}
