/**
 * Diffusion samplers for the LaVie cascade: pure math, no I/O, no randomness (noise is always passed in).
 *
 * Usage (one denoising run over a latent `x`, or over any chunk/patch of it: steps are elementwise):
 *
 *   const plan = planSampler(stageSamplerConfig("base"));            // DDPM, 50 steps, t = 980 .. 0
 *   const { guidanceScale } = stagePreset("base");
 *   let x = scale(initialNoise, plan.initNoiseSigma);
 *   for (const step of plan.steps) {
 *     const input = scaleModelInput(step, x);                          // UNet input, batch it as [x, x]
 *     const eps = cfgCombineBatched(await unet(input, step.timestep), guidanceScale);
 *     const noise = step.needsNoise ? noiseFor(step.index) : undefined; // caller's position-keyed noise
 *     x = applyStep(step.coef, x, eps, noise, x);                      // in place
 *   }
 */

export { applyStep, predictOriginal, scale, scaleModelInput } from "./apply.ts";
export type { NoiseCoefficients } from "./augment.ts";
export {
  addNoise,
  augmentLowRes,
  noiseCoefficients,
  VSR_NOISE_AUG_SCHEDULE,
  VSR_NOISE_LEVEL,
} from "./augment.ts";
export { resolveSamplerConfig } from "./config.ts";
export { cfgCombine, cfgCombineBatched, validateGuidanceScale } from "./guidance.ts";
export { planSampler } from "./plan.ts";
export { samplePosterior } from "./posterior.ts";
export type { StageName, StagePreset } from "./presets.ts";
export { STAGE_NAMES, STAGE_PRESETS, stagePreset, stageSamplerConfig } from "./presets.ts";
export {
  alphasCumprod,
  betas,
  respacedAlphasCumprod,
  respacedTimesteps,
  sigmaAt,
  spacedTimesteps,
} from "./schedule.ts";
export type {
  BetaSchedule,
  NoiseSchedule,
  PredictionType,
  SamplerConfig,
  SamplerConfigInput,
  SamplerName,
  SamplerPlan,
  SamplerStep,
  StepCoefficients,
  TimestepSpacing,
} from "./types.ts";
export { BETA_SCHEDULES, PREDICTION_TYPES, SAMPLER_NAMES, TIMESTEP_SPACINGS } from "./types.ts";
