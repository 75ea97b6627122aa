/**
 * Network configurations: the knobs that distinguish the `tiny`, `small` and `lavie` presets.
 * The `lavie` values are the published LaVie / Stable Diffusion configurations (shared notes
 * LAVIE.md and ARCHITECTURE.md); smaller presets keep the same structure with fewer channels,
 * levels, layers and heads.
 */

export interface TextEncoderConfig {
  vocabSize: number;
  /** Token positions (77 for CLIP). */
  positions: number;
  width: number;
  layers: number;
  heads: number;
  mlp: number;
  activation: "quick_gelu" | "gelu";
}

export interface TemporalAttentionConfig {
  /** Rotary dims per head (LaVie: 32); 0 disables RoPE (interpolation UNet). */
  ropeDim: number;
  /** T5-style relative position bias buckets (LaVie: 32); 0 disables the bias. */
  biasBuckets: number;
  biasMaxDistance: number;
  /** "before_ff": spatial -> cross -> temporal -> FF (base, VSR); "after_ff": temporal after FF (interpolation). */
  placement: "before_ff" | "after_ff";
}

export interface UNetConfig {
  /** Channels of the `sample` input: 4 (base), 8 (interpolation: 4 noisy + 4 conditioning), 7 (VSR: 4 + RGB). */
  inChannels: number;
  outChannels: number;
  /** Widths per level, e.g. SD (320, 640, 1280, 1280); a stride-2 downsample after every level but the last. */
  blockChannels: number[];
  /** Per level: does the level have transformer blocks (cross-attention blocks)? */
  attention: boolean[];
  /** Per level: transformer blocks use cross-attention in place of spatial self-attention (x4 upscaler). */
  onlyCrossAttention: boolean[];
  /** Resnets per down level (up levels have one more). */
  layersPerBlock: number;
  heads: number;
  /** Width of the text states (768 CLIP, 1024 OpenCLIP-H). */
  crossAttentionDim: number;
  groups: number;
  /** Time embedding width (SD: 4 x blockChannels[0]). */
  timeEmbedDim: number;
  /** Linear (true, x4 upscaler) or 1x1-conv (false, SD1.x) transformer projections. */
  linearProjection: boolean;
  /** Spatial self-attention keys/values from frame 0 and frame i-1 (interpolation). */
  sparseCausal: boolean;
  temporal: TemporalAttentionConfig;
  /** Noise-level class embedding table size (VSR: 1000), 0 for none. */
  classEmbeddings: number;
  /** VSR temporal module (temporal convs 5x1x1 and 3x1x1 + spatial resnet) after every transformer. */
  temporalModules: boolean;
}

export interface VaeConfig {
  latentChannels: number;
  /** Encoder widths low -> high; the decoder runs them in reverse. Upsampling = 2^(levels-1). */
  blockChannels: number[];
  /** Resnets per encoder level (decoder levels have one more). */
  layersPerBlock: number;
  groups: number;
  /** Latents are multiplied by this after encoding and divided by it before decoding. */
  scalingFactor: number;
}

/** Options every network builder takes. */
export interface BuildOptions {
  /** Seed of the project-built weights (each parameter is seeded by this and its name). */
  seed: number;
  /** false: count parameters only (no weights allocated; the full-size preset). */
  materialize?: boolean;
}
