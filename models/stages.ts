/**
 * The stage section of a project-built manifest: which networks each stage uses, latent scaling,
 * sizes and sampler defaults (LaVie's, core/samplers/presets.ts, with the preset's step counts).
 *
 * Frame rates: the base stage's 16 frames are written at 8 fps and the interpolated 61 frames at
 * 24 fps (as LaVie's scripts do); VSR keeps its input's frame rate, 24 fps for the default
 * (interpolated) input.
 */
import { VSR_NOISE_AUG_SCHEDULE, VSR_NOISE_LEVEL } from "../core/samplers/augment.ts";
import { STAGE_PRESETS, stageSamplerConfig } from "../core/samplers/presets.ts";
import type { StageEntry, StageName, StageSamplerDefaults } from "./manifest.ts";
import { type Preset, unetDivisor } from "./presets.ts";

export const BASE_FPS = 8;
export const INTERPOLATED_FPS = 24;
/** Interpolation inserts 3 frames between neighbours: 16 -> 61. */
export const INTERPOLATION_FACTOR = 4;
/** VSR upsamples height and width by 4 (x4-upscaler VAE). */
export const VSR_FACTOR = 4;
/** Pixels per latent of the SD VAE. */
export const SD_VAE_FACTOR = 8;

function samplerDefaults(stage: StageName, steps: number): StageSamplerDefaults {
  const p = STAGE_PRESETS[stage];
  const out: StageSamplerDefaults = {
    config: stageSamplerConfig(stage, { numInferenceSteps: steps }),
    guidanceScale: p.guidanceScale,
    negativePrompt: p.negativePrompt,
    promptSuffix: p.promptSuffix,
  };
  if (stage === "vsr")
    out.lowResNoise = { noiseLevel: VSR_NOISE_LEVEL, schedule: { ...VSR_NOISE_AUG_SCHEDULE } };
  return out;
}

/** The tokenizer file of each text network: one file when both encoders share the vocabulary. */
export function tokenizerFiles(preset: Preset): { clip: string; vsr: string } {
  return {
    clip: "tokenizer.json",
    vsr: preset.vsrText.vocabSize === preset.clipText.vocabSize ? "tokenizer.json" : "vsr_tokenizer.json",
  };
}

export function stageEntries(
  preset: Preset,
  tok: { clip: string; vsr: string } = tokenizerFiles(preset),
): Record<StageName, StageEntry> {
  const { frames, height, width } = preset.base;
  const interpFrames = (frames - 1) * INTERPOLATION_FACTOR + 1;
  return {
    base: {
      networks: { text: "clip_text", unet: "base_unet", vaeDecoder: "sd_vae_decoder" },
      tokenizer: tok.clip,
      latentScale: preset.sdVae.scalingFactor,
      vaeFactor: SD_VAE_FACTOR,
      spatialDivisor: SD_VAE_FACTOR * unetDivisor(preset.baseUnet),
      input: null,
      output: { frames, height, width, fps: BASE_FPS },
      sampler: samplerDefaults("base", preset.steps.base),
    },
    interpolation: {
      networks: {
        text: "clip_text",
        unet: "interp_unet",
        vaeDecoder: "sd_vae_decoder",
        vaeEncoder: "sd_vae_encoder",
      },
      tokenizer: tok.clip,
      latentScale: preset.sdVae.scalingFactor,
      vaeFactor: SD_VAE_FACTOR,
      spatialDivisor: SD_VAE_FACTOR * unetDivisor(preset.interpUnet),
      input: { frames, height, width },
      output: { frames: interpFrames, height, width, fps: INTERPOLATED_FPS },
      sampler: samplerDefaults("interpolation", preset.steps.interpolation),
    },
    vsr: {
      networks: { text: "vsr_text", unet: "vsr_unet", vaeDecoder: "x4_vae_decoder" },
      tokenizer: tok.vsr,
      latentScale: preset.x4Vae.scalingFactor,
      vaeFactor: VSR_FACTOR,
      // The VSR latent has the low-res frame size: the UNet's downsampling alone constrains it.
      spatialDivisor: unetDivisor(preset.vsrUnet),
      input: { frames: interpFrames, height, width },
      output: {
        frames: interpFrames,
        height: height * VSR_FACTOR,
        width: width * VSR_FACTOR,
        fps: INTERPOLATED_FPS,
      },
      sampler: samplerDefaults("vsr", preset.steps.vsr),
    },
  };
}
