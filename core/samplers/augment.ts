/**
 * VSR low-res noise augmentation (diffusers DDPMScheduler.add_noise with the x4-upscaler's low_res_scheduler):
 *   noisy = sqrt(ab[t]) * x + sqrt(1 - ab[t]) * noise,  t = noise_level, ab from a scaled_linear 1e-4..0.02 schedule.
 * Elementwise, with caller-supplied noise.
 */
import { invalidArgument } from "../errors.ts";
import { intInRange } from "./config.ts";
import { alphasCumprod } from "./schedule.ts";
import type { NoiseSchedule } from "./types.ts";

export const VSR_NOISE_AUG_SCHEDULE: NoiseSchedule = {
  numTrainTimesteps: 1000,
  betaSchedule: "scaled_linear",
  betaStart: 1e-4,
  betaEnd: 0.02,
};

export const VSR_NOISE_LEVEL = 50;

export interface NoiseCoefficients {
  readonly signal: number;
  readonly noise: number;
}

/** sqrt(ab[t]) and sqrt(1 - ab[t]) for timestep (noise level) t. */
export function noiseCoefficients(schedule: NoiseSchedule, t: number): NoiseCoefficients {
  intInRange("noiseLevel", t, 0, schedule.numTrainTimesteps - 1);
  const ab = alphasCumprod(schedule)[t]!;
  return { signal: Math.sqrt(ab), noise: Math.sqrt(1 - ab) };
}

/** out = signal * x + noise * noise (elementwise). */
export function addNoise(
  coef: NoiseCoefficients,
  x: Float32Array,
  noise: Float32Array,
  out?: Float32Array,
): Float32Array {
  const n = x.length;
  if (noise.length !== n)
    throw invalidArgument("noise", `must have ${n} elements like the input; got ${noise.length}`);
  if (out !== undefined && out.length !== n)
    throw invalidArgument("out", `must have ${n} elements; got ${out.length}`);
  const dst = out ?? new Float32Array(n);
  for (let i = 0; i < n; i++) dst[i] = coef.signal * x[i]! + coef.noise * noise[i]!;
  return dst;
}

/** Noises low-res frames (in [-1, 1]) to `noiseLevel` with the VSR augmentation schedule. */
export function augmentLowRes(
  lowRes: Float32Array,
  noise: Float32Array,
  noiseLevel: number = VSR_NOISE_LEVEL,
  out?: Float32Array,
): Float32Array {
  return addNoise(noiseCoefficients(VSR_NOISE_AUG_SCHEDULE, noiseLevel), lowRes, noise, out);
}
