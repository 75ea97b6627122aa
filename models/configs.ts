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
}
