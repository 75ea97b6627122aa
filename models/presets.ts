/**
 * Model presets. `lavie` is the published configuration (parameter counts only: its weights are
 * never materialized here); `small` is the demo/benchmark size; `tiny` runs the whole cascade in
 * seconds on 2 CPU cores for tests. All keep LaVie's structure and I/O contract.
 */
import { invalidArgument } from "../core/errors.ts";
import type {
  TemporalAttentionConfig,
  TextEncoderConfig,
  UNetConfig,
  VaeConfig,
  VsrUNetConfig,
} from "./configs.ts";

export type PresetName = "tiny" | "small" | "lavie";
export const PRESET_NAMES: readonly PresetName[] = ["tiny", "small", "lavie"];

export interface Preset {
  name: PresetName;
  /** Whether weights can be built and run on this kind of machine. */
  runnable: boolean;
  /** Base video size in pixels (the UNets accept other sizes that their downsampling allows). */
  base: { frames: number; height: number; width: number };
  clipText: TextEncoderConfig;
  baseUnet: UNetConfig;
  interpUnet: UNetConfig;
  vsrText: TextEncoderConfig;
  vsrUnet: VsrUNetConfig;
  sdVae: VaeConfig;
  x4Vae: VaeConfig;
  /** Default denoising steps per stage (LaVie: 50 each). */
  steps: { base: number; interpolation: number; vsr: number };
}

/**
 * The base UNet's temporal attention (base/models/attention.py TemporalAttention): before the
 * feed-forward, RotaryEmbedding(32) on q and k, RelativePositionBias(num_buckets 32, max_distance 32).
 */
export const BASE_TEMPORAL: TemporalAttentionConfig = {
  ropeDim: 32,
  biasBuckets: 32,
  biasMaxDistance: 32,
  placement: "before_ff",
};
/** The interpolation UNet's temporal attention: plain multi-head attention over frames, after the feed-forward. */
export const INTERP_TEMPORAL: TemporalAttentionConfig = {
  ropeDim: 0,
  biasBuckets: 0,
  biasMaxDistance: 0,
  placement: "after_ff",
};

function sdUnet(over: Partial<UNetConfig>): UNetConfig {
  return {
    inChannels: 4,
    outChannels: 4,
    blockChannels: [320, 640, 1280, 1280],
    attention: [true, true, true, false],
    layersPerBlock: 2,
    heads: [8, 8, 8, 8],
    crossAttentionDim: 768,
    groups: 32,
    timeEmbedDim: 1280,
    sparseCausal: false,
    temporal: BASE_TEMPORAL,
    normEps: 1e-5,
    ...over,
  };
}

/** The interpolation UNet: the base UNet with 8 input channels, sparse-causal attention, plain temporal attention. */
function interpOf(base: UNetConfig): UNetConfig {
  return { ...base, inChannels: 8, sparseCausal: true, temporal: INTERP_TEMPORAL };
}

/** LaVie's VSR UNet as vsr/configs/unet_3d_config.json and the official code define it. */
function vsrUnet(over: Partial<VsrUNetConfig>): VsrUNetConfig {
  return {
    inChannels: 7,
    outChannels: 4,
    blockChannels: [256, 512, 512, 1024],
    attention: [false, true, true, true],
    onlyCrossAttention: [true, true, true, false],
    heads: [8, 8, 8, 8],
    layersPerBlock: 2,
    crossAttentionDim: 1024,
    groups: 32,
    normEps: 1e-5,
    midBlockScaleFactor: 1,
    classEmbeddings: 1000,
    maxNoiseLevel: 350,
    flipSinToCos: true,
    freqShift: 0,
    centerInputSample: false,
    downTemporal: [true, true, true, true],
    midTemporal: true,
    upTemporal: [true, true, true, true],
    ropeDim: 32,
    temporalGroups: 32,
    ...over,
  };
}

const lavie: Preset = {
  name: "lavie",
  runnable: false,
  base: { frames: 16, height: 320, width: 512 },
  clipText: {
    vocabSize: 49408,
    positions: 77,
    width: 768,
    layers: 12,
    heads: 12,
    mlp: 3072,
    activation: "quick_gelu",
    layerNormEps: 1e-5,
  },
  baseUnet: sdUnet({}),
  interpUnet: interpOf(sdUnet({})),
  vsrText: {
    vocabSize: 49408,
    positions: 77,
    width: 1024,
    layers: 23,
    heads: 16,
    mlp: 4096,
    activation: "gelu",
    layerNormEps: 1e-5,
  },
  vsrUnet: vsrUnet({}),
  sdVae: {
    latentChannels: 4,
    blockChannels: [128, 256, 512, 512],
    layersPerBlock: 2,
    groups: 32,
    scalingFactor: 0.18215,
  },
  x4Vae: {
    latentChannels: 4,
    blockChannels: [128, 256, 512],
    layersPerBlock: 2,
    groups: 32,
    scalingFactor: 0.08333,
  },
  steps: { base: 50, interpolation: 50, vsr: 50 },
};

// Heads at least 32 wide everywhere: the base UNet's rotary embedding rotates 32 channels per head.
const SMALL_BASE = sdUnet({
  blockChannels: [64, 128, 192],
  attention: [true, true, false],
  layersPerBlock: 1,
  heads: [2, 2, 2],
  crossAttentionDim: 256,
  groups: 16,
  timeEmbedDim: 256,
});

const small: Preset = {
  name: "small",
  runnable: true,
  base: { frames: 16, height: 64, width: 96 },
  clipText: {
    vocabSize: 4096,
    positions: 77,
    width: 256,
    layers: 4,
    heads: 4,
    mlp: 1024,
    activation: "quick_gelu",
    layerNormEps: 1e-5,
  },
  baseUnet: SMALL_BASE,
  interpUnet: interpOf(SMALL_BASE),
  vsrText: {
    vocabSize: 4096,
    positions: 77,
    width: 320,
    layers: 4,
    heads: 4,
    mlp: 1280,
    activation: "gelu",
    layerNormEps: 1e-5,
  },
  // Heads at least ropeDim wide; widths divisible by groups and temporalGroups.
  vsrUnet: vsrUnet({
    blockChannels: [16, 32, 64],
    attention: [false, true, true],
    onlyCrossAttention: [true, true, false],
    heads: [1, 2, 2],
    layersPerBlock: 1,
    crossAttentionDim: 320,
    groups: 8,
    downTemporal: [true, true, true],
    upTemporal: [true, true, true],
    ropeDim: 16,
    temporalGroups: 8,
  }),
  sdVae: {
    latentChannels: 4,
    blockChannels: [32, 64, 64, 64],
    layersPerBlock: 1,
    groups: 16,
    scalingFactor: 0.18215,
  },
  x4Vae: {
    latentChannels: 4,
    blockChannels: [16, 32, 64],
    layersPerBlock: 1,
    groups: 8,
    scalingFactor: 0.08333,
  },
  steps: { base: 20, interpolation: 10, vsr: 10 },
};

const TINY_BASE = sdUnet({
  blockChannels: [32, 64],
  attention: [true, false],
  layersPerBlock: 1,
  heads: [1, 1],
  crossAttentionDim: 32,
  groups: 8,
  timeEmbedDim: 64,
});

const tiny: Preset = {
  name: "tiny",
  runnable: true,
  base: { frames: 16, height: 32, width: 48 },
  clipText: {
    vocabSize: 1024,
    positions: 77,
    width: 32,
    layers: 2,
    heads: 2,
    mlp: 64,
    activation: "quick_gelu",
    layerNormEps: 1e-5,
  },
  baseUnet: TINY_BASE,
  interpUnet: interpOf(TINY_BASE),
  vsrText: {
    vocabSize: 1024,
    positions: 77,
    width: 48,
    layers: 2,
    heads: 2,
    mlp: 96,
    activation: "gelu",
    layerNormEps: 1e-5,
  },
  vsrUnet: vsrUnet({
    blockChannels: [8, 16, 16],
    attention: [false, true, true],
    onlyCrossAttention: [true, true, false],
    heads: [1, 2, 2],
    layersPerBlock: 1,
    crossAttentionDim: 48,
    groups: 4,
    downTemporal: [true, true, true],
    upTemporal: [true, true, true],
    ropeDim: 8,
    temporalGroups: 4,
  }),
  sdVae: {
    latentChannels: 4,
    blockChannels: [8, 16, 16, 16],
    layersPerBlock: 1,
    groups: 4,
    scalingFactor: 0.18215,
  },
  x4Vae: {
    latentChannels: 4,
    blockChannels: [8, 16, 16],
    layersPerBlock: 1,
    groups: 4,
    scalingFactor: 0.08333,
  },
  steps: { base: 6, interpolation: 4, vsr: 4 },
};

const PRESETS: Record<PresetName, Preset> = { tiny, small, lavie };

export function getPreset(name: string): Preset {
  const p = PRESETS[name as PresetName];
  if (!p) throw invalidArgument("preset", `unknown preset "${name}"; allowed: ${PRESET_NAMES.join(", ")}`);
  return p;
}

/** Spatial divisor a UNet needs on its latent/low-res input: 2^(levels-1). */
export function unetDivisor(c: { readonly blockChannels: readonly number[] }): number {
  return 2 ** (c.blockChannels.length - 1);
}
