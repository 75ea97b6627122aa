/**
 * Network configurations: the knobs that distinguish the `tiny`, `small` and `lavie` presets.
 * The `lavie` values are the published LaVie / Stable Diffusion configurations (shared notes
 * LAVIE.md and ARCHITECTURE.md); smaller presets keep the same structure with fewer channels,
 * levels, layers and heads.
 */

import type { WeightSource } from "./onnx/graph.ts";

/** Hugging Face CLIPTextModel (transformers CLIPTextConfig); field names in the comments. */
export interface TextEncoderConfig {
  /** vocab_size */
  vocabSize: number;
  /** max_position_embeddings: token positions (77 for CLIP; the contract fixes 77). */
  positions: number;
  /** hidden_size */
  width: number;
  /** num_hidden_layers */
  layers: number;
  /** num_attention_heads */
  heads: number;
  /** intermediate_size */
  mlp: number;
  /** hidden_act: quick_gelu (CLIP ViT-L/14, SD 1.x) or exact erf gelu (OpenCLIP-H, SD 2.x / x4 upscaler). */
  activation: "quick_gelu" | "gelu";
  /** layer_norm_eps of every LayerNorm (1e-5 in both published encoders). */
  layerNormEps: number;
}

export interface TemporalAttentionConfig {
  /**
   * Rotary dims per head (LaVie: 32, rotating the first 32 channels of every head, so heads must be
   * at least that wide); 0 disables RoPE (interpolation UNet).
   */
  ropeDim: number;
  /** T5-style relative position bias buckets (LaVie: 32); 0 disables the bias. */
  biasBuckets: number;
  biasMaxDistance: number;
  /** "before_ff": spatial -> cross -> temporal -> FF (base, VSR); "after_ff": temporal after FF (interpolation). */
  placement: "before_ff" | "after_ff";
}

/**
 * LaVie's base and interpolation UNets (SD1.x UNet2DConditionModel inflated to video); the names of
 * the diffusers config.json (models/import/unet_config.ts) in the comments.
 */
export interface UNetConfig {
  /** in_channels of `sample`: 4 (base), 8 (interpolation: 4 noisy + 4 conditioning latent). */
  inChannels: number;
  /** out_channels (4). */
  outChannels: number;
  /** block_out_channels, e.g. SD (320, 640, 1280, 1280); a stride-2 downsample after every level but the last. */
  blockChannels: number[];
  /** Per level: CrossAttnDownBlock (resnets + transformers, true) or DownBlock (false); up blocks mirror. */
  attention: boolean[];
  /** layers_per_block: resnets per down level (up levels have one more). */
  layersPerBlock: number;
  /**
   * attention_head_dim (diffusers 0.16's name for the number of heads) per level; the up blocks mirror
   * the down blocks and the mid block takes the last level's.
   */
  heads: number[];
  /** cross_attention_dim: width of the text states (768, CLIP ViT-L/14). */
  crossAttentionDim: number;
  /** norm_num_groups of the resnets, transformers and conv_norm_out. */
  groups: number;
  /** Time embedding width (4 x blockChannels[0]). */
  timeEmbedDim: number;
  /** use_first_frame: spatial self-attention keys/values from frame 0 and frame i-1 (interpolation). */
  sparseCausal: boolean;
  temporal: TemporalAttentionConfig;
  /** norm_eps: GroupNorm eps of the resnets and conv_norm_out; default 1e-5 (SD). */
  normEps?: number;
}

/** diffusers AutoencoderKL (DownEncoderBlock2D / UpDecoderBlock2D, SiLU); config.json names in the comments. */
export interface VaeConfig {
  /** latent_channels (4; the contract fixes 4). */
  latentChannels: number;
  /** block_out_channels: encoder widths low -> high; the decoder runs them in reverse. Upsampling = 2^(levels-1). */
  blockChannels: number[];
  /** layers_per_block: resnets per encoder level (decoder levels have one more). */
  layersPerBlock: number;
  /** norm_num_groups of every GroupNorm (eps is fixed at 1e-6 in diffusers' Encoder/Decoder). */
  groups: number;
  /**
   * Latents are multiplied by this after encoding and divided by it before decoding: 0.18215 for the
   * SD VAE (LaVie's base and interpolation code hard-code it), 0.08333 for the x4 upscaler's VAE.
   */
  scalingFactor: number;
}

/** Options every network builder takes. */
export interface BuildOptions {
  /** Seed of the project-built weights (each parameter is seeded by this and its name). */
  seed: number;
  /** false: count parameters only (no weights allocated; the full-size preset). */
  materialize?: boolean;
  /** Parameter values from an imported checkpoint (official state-dict keys); seeded when absent. */
  weights?: WeightSource;
  /** Storage type of the parameters in the ONNX file (float16 halves it; computed in float32). */
  weightDtype?: "float32" | "float16";
}

/**
 * LaVie's video super-resolution UNet (the official UNet3DVSRModel: the x4 upscaler's UNet inflated to
 * video). Names of the official unet_3d_config.json in the comments; models/import/vsr_config.ts reads
 * that format. `ropeDim` and `temporalGroups` are constants of the official code (32 each), settable
 * here so that the small presets keep the structure at small widths.
 */
export interface VsrUNetConfig {
  /** in_channels: latent (4) + low-res RGB (3); the caller concatenates them into `sample`. */
  inChannels: number;
  /** out_channels */
  outChannels: number;
  /** block_out_channels; a stride-2 downsample after every level but the last. Time embedding: 4x the first. */
  blockChannels: number[];
  /** Per level: CrossAttnDownBlock3D (true) or DownBlock3D; up_block_types mirror it. */
  attention: boolean[];
  /** only_cross_attention per level: attn1 attends to the text instead of the frame. */
  onlyCrossAttention: boolean[];
  /** attention_head_dim per level (the official name of the number of heads); the mid block uses the last. */
  heads: number[];
  /** layers_per_block: resnets per down level (up levels have one more). */
  layersPerBlock: number;
  /** cross_attention_dim: width of the text states. */
  crossAttentionDim: number;
  /** norm_num_groups of the block resnets, the transformers' GroupNorm and conv_norm_out. */
  groups: number;
  /** norm_eps of the block resnets and conv_norm_out (the other norms' eps are fixed: 1e-6, LayerNorm 1e-5). */
  normEps: number;
  /** mid_block_scale_factor: the mid block's resnet outputs are divided by it. */
  midBlockScaleFactor: number;
  /** num_class_embeds: rows of the noise-level table added to the time embedding (0: no table). */
  classEmbeddings: number;
  /** max_noise_level: the official model refuses class labels above it. */
  maxNoiseLevel: number;
  /** flip_sin_to_cos and freq_shift of the sinusoidal timestep embedding. */
  flipSinToCos: boolean;
  freqShift: number;
  /** center_input_sample: the 7-channel input becomes 2x - 1. */
  centerInputSample: boolean;
  /** down_temporal_idx as a flag per down level: a temporal module after the whole level. */
  downTemporal: boolean[];
  /** mid_temporal */
  midTemporal: boolean;
  /** up_temporal_idx as a flag per up block (up block i works at level L-1-i). */
  upTemporal: boolean[];
  /** Rotary dims of the temporal attention (official: RotaryEmbedding(32)); heads must be at least this wide. */
  ropeDim: number;
  /** GroupNorm groups of the frame-axis resnets (resblock_temporal, temporal modules; official: 32). */
  temporalGroups: number;
}
