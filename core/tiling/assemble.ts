/**
 * Reading any box of a tensor that exists only as tiles (pieces written by different tasks):
 * every element is the weighted blend of the tiles that cover it, with the tile plan's weights.
 * Because weights depend only on the plan, any reader of any box sees the same values as a reader
 * of the whole tensor: this is what lets later tasks start from parts of an earlier stage's output.
 */
import { invalidArgument } from "../errors.ts";
import { type Box, sliceBox, type Tensor } from "../tensor.ts";
import { Blender } from "./blend.ts";
import type { TilePlan } from "./windows.ts";

function intersect(a: Box, b: Box): Box | null {
  const start: number[] = [];
  const size: number[] = [];
  for (let d = 0; d < a.start.length; d++) {
    const s = Math.max(a.start[d]!, b.start[d]!);
    const e = Math.min(a.start[d]! + a.size[d]!, b.start[d]! + b.size[d]!);
    if (e <= s) return null;
    start.push(s);
    size.push(e - s);
  }
  return { start, size };
}

/** Indices of the tiles of `plan` that intersect `box`. */
export function tilesCovering(plan: TilePlan, box: Box): number[] {
  const out: number[] = [];
  plan.tiles.forEach((t, i) => {
    if (intersect(t.box, box)) out.push(i);
  });
  return out;
}

/** Assembles `box` of the planned tensor from its tiles (getTile(i) returns tile i's data). */
export function assembleBox(plan: TilePlan, box: Box, getTile: (index: number) => Tensor): Tensor {
  if (box.start.length !== plan.shape.length) {
    throw invalidArgument(
      "box",
      `rank ${box.start.length} does not match the tensor rank ${plan.shape.length}`,
    );
  }
  const covering = tilesCovering(plan, box);
  // Fast path: the box lies inside one tile that no other tile overlaps there.
  if (covering.length === 1) {
    const t = plan.tiles[covering[0]!]!;
    const tile = getTile(covering[0]!);
    // The whole tile: hand it out as it is (no copy; callers treat tiles as read-only).
    if (box.start.every((s, d) => s === t.box.start[d] && box.size[d] === t.box.size[d])) return tile;
    const local = { start: box.start.map((s, d) => s - t.box.start[d]!), size: box.size };
    return sliceBox(tile, local);
  }
  const blender = new Blender(box.size);
  for (const i of covering) {
    const t = plan.tiles[i]!;
    const part = intersect(t.box, box)!;
    const inTile = { start: part.start.map((s, d) => s - t.box.start[d]!), size: part.size };
    const data = sliceBox(getTile(i), inTile);
    const weights = t.weights.map((w, d) => w?.subarray(inTile.start[d]!, inTile.start[d]! + part.size[d]!));
    blender.add(
      data,
      part.start.map((s, d) => s - box.start[d]!),
      weights,
    );
  }
  return blender.result();
}
