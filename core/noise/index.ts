/**
 * Position-keyed Gaussian noise (Philox4x32-10 + Box-Muller). Every value depends only on
 * (seed, stage, step, global coordinate), so chunks and patches can be drawn anywhere, in any order:
 *
 *   import { noiseBox, noiseFull } from "../noise/index.ts";
 *   const key = { seed: 42, stage: "vsr", step: 0 };
 *   const full = noiseFull(key, [1, 4, 61, 320, 512]);
 *   const chunk = noiseBox(key, [1, 4, 61, 320, 512], { start: [0, 0, 8, 0, 0], size: [1, 4, 8, 320, 512] });
 *   // chunk equals sliceBox(full, thatBox), bit for bit.
 */
export type { NoiseKey, NoiseStream } from "./keyed.ts";
export { fillNormals, noiseBox, noiseFull, noiseStream, stageStepHash } from "./keyed.ts";
export { PHILOX_ROUNDS, philox4x32, philoxBlock, philoxRoundKeys } from "./philox.ts";
