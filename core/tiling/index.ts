/**
 * Chunk/patch planning and blending. Example: VSR latents [B, C, F, H, W] in non-overlapping
 * 8-frame chunks x 16x16 spatial patches overlapping by 8 (multiples of 8 latent pixels):
 *
 *   import { Blender, planTiles } from "../tiling/index.ts";
 *   const plan = planTiles([1, 4, 61, 40, 64], [
 *     { axis: 2, size: 8, tail: "shrink", name: "frames" },
 *     { axis: 3, size: 16, overlap: 8, multipleOf: 8, name: "height" },
 *     { axis: 4, size: 16, overlap: 8, multipleOf: 8, name: "width" },
 *   ]);
 *   const blender = new Blender(plan.shape);
 *   for (const tile of plan.tiles) blender.addTile(tile, run(sliceBox(latents, tile.box)));
 *   const out = blender.result(); // sum w*x / sum w; plain stitching where tiles do not overlap
 *
 * For outputs at another resolution (VAE decode x8), scalePlan(plan, pixelShape, [1, 1, 1, 8, 8]).
 */

export { assembleBox, tilesCovering } from "./assemble.ts";
export type { Piece } from "./blend.ts";
export { Blender, stitch } from "./blend.ts";
export { featherWeights } from "./weights.ts";
export type { AxisSplit, AxisWindows, Tail, Tile, TilePlan, Window, WindowOptions } from "./windows.ts";
export { boxes, planFromWindows, planTiles, scalePlan, windows } from "./windows.ts";
