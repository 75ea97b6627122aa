/**
 * LaVie's per-stage sampling defaults (checked against the reference schedulers by golden.spec.ts).
 * - base: diffusers 0.16 schedulers from SD1.4's scheduler_config.json (steps_offset 1, set_alpha_to_one
 *   false, clip_sample false) with LaVie's linear 1e-4..0.02 betas. DDPM is the default and ignores the
 *   offset (50 steps: 980, 960, ..., 0); switching to "ddim" applies it (981, ..., 1); "euler" uses
 *   diffusers 0.16 linspace timesteps (999, 978.61..., ..., 0, fractional).
 * - interpolation: LaVie's own respaced DDIM (no diffusers scheduler): kept timesteps 999, 979, 958, ...,
 *   20, 0 of a linear 1e-4..0.02 chain, eta 0, no clipping, ending at alpha-bar 1.
 * - vsr: diffusers 0.16 DDIMScheduler from the x4 upscaler's config with beta_schedule set to linear
 *   (steps_offset 1, set_alpha_to_one false, clip_sample false, v-prediction): 981, 961, ..., 1.
 * timestepSpacing is left to the sampler's default so that overriding the sampler stays coherent.
 */

import { VSR_NOISE_AUG_SCHEDULE, VSR_NOISE_LEVEL } from "./augment.ts";
import { oneOf, resolveSamplerConfig } from "./config.ts";
import type { NoiseSchedule, SamplerConfig, SamplerConfigInput } from "./types.ts";

export type StageName = "base" | "interpolation" | "vsr";
export const STAGE_NAMES: readonly StageName[] = ["base", "interpolation", "vsr"];

export interface StagePreset {
  readonly stage: StageName;
  /** Sampler fields; resolve with stageSamplerConfig (which fills the remaining defaults). */
  readonly sampler: SamplerConfigInput;
  readonly guidanceScale: number;
  /** The unconditional prompt of classifier-free guidance ("" = empty prompt). */
  readonly negativePrompt: string;
  /** Appended to the user's prompt. */
  readonly promptSuffix: string;
  /** VSR only: low-res conditioning noise augmentation (also passed to the UNet as class label). */
  readonly lowResNoise?: { readonly noiseLevel: number; readonly schedule: NoiseSchedule };
}

const SD_SCHEDULER = { stepsOffset: 1, setAlphaToOne: false, clipSample: false } as const;
const LINEAR = { numTrainTimesteps: 1000, betaSchedule: "linear", betaStart: 1e-4, betaEnd: 0.02 } as const;

export const STAGE_PRESETS: Readonly<Record<StageName, StagePreset>> = {
  base: {
    stage: "base",
    sampler: {
      sampler: "ddpm",
      ...LINEAR,
      ...SD_SCHEDULER,
      predictionType: "epsilon",
      numInferenceSteps: 50,
    },
    guidanceScale: 7.5,
    negativePrompt: "",
    promptSuffix: "",
  },
  interpolation: {
    stage: "interpolation",
    sampler: {
      sampler: "respaced_ddim",
      ...LINEAR,
      clipSample: false,
      predictionType: "epsilon",
      numInferenceSteps: 50,
      eta: 0,
    },
    guidanceScale: 4.0,
    negativePrompt: "None",
    promptSuffix: ", 4k.",
  },
  vsr: {
    stage: "vsr",
    sampler: {
      sampler: "ddim",
      ...LINEAR,
      ...SD_SCHEDULER,
      predictionType: "v_prediction",
      numInferenceSteps: 50,
      eta: 0,
    },
    guidanceScale: 5.0,
    negativePrompt: "blur, worst quality",
    promptSuffix: "",
    lowResNoise: { noiseLevel: VSR_NOISE_LEVEL, schedule: VSR_NOISE_AUG_SCHEDULE },
  },
};

export function stagePreset(stage: unknown): StagePreset {
  return STAGE_PRESETS[oneOf("stage", stage, STAGE_NAMES)];
}

/** The stage's sampler config with optional overrides (e.g. { numInferenceSteps: 25 } or { sampler: "euler" }). */
export function stageSamplerConfig(stage: unknown, overrides: SamplerConfigInput = {}): SamplerConfig {
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  return resolveSamplerConfig({ ...stagePreset(stage).sampler, ...defined });
}
