/**
 * LaVie's per-stage sampling defaults. The scheduler fields not set in LaVie's own code come from the
 * scheduler_config.json it loads (SD1.4 for base/interpolation, x4-upscaler for VSR): steps_offset 1,
 * set_alpha_to_one false, clip_sample false. timestepSpacing is left to the sampler's default, so switching
 * the base stage to "euler" gives diffusers 0.16 Euler (linspace, offset unused).
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
      sampler: "ddim",
      ...LINEAR,
      ...SD_SCHEDULER,
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
