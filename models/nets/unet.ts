/**
 * LaVie's base and interpolation UNets (UNet3DConditionModel in the official base/ and interpolation/
 * models): diffusers' SD1.x UNet2DConditionModel inflated to video. 2D convolutions see one frame at a
 * time (frames folded into the batch, layers.ts); every transformer adds temporal attention
 * (transformer.ts). The VSR UNet has its own builder (unet_vsr.ts).
 *
 *   base_unet   SD1.4 UNet + temporal attention (RoPE + relative position bias) before the FF
 *   interp_unet SD1.4 UNet, 8 input channels, sparse-causal spatial attention, plain temporal
 *               attention after the FF
 *
 * What the official modules compute, and so these graphs:
 * - resnets: GroupNorm -> SiLU -> conv3x3 -> + time_emb_proj(SiLU(temb)) -> GroupNorm -> SiLU ->
 *   conv3x3, + (1x1 conv) shortcut. Their GroupNorms (norm1, norm2) and conv_norm_out normalise the
 *   5-D clip [B, C, F, H, W], so each group's statistics span all frames of the clip; the
 *   transformers' GroupNorm (eps 1e-6) is per frame.
 * - time embedding: sinusoidal [cos | sin] of width block_out_channels[0] -> linear_1 -> SiLU ->
 *   linear_2, per batch element, added to every frame.
 * - downsampling: conv3x3 stride 2 pad 1; upsampling: nearest to the size of the skip connection the
 *   up block meets next (x2 when the input divides evenly), then conv3x3.
 *
 * I/O follows contract.ts: sample [B,C,F,h,w], timestep [B] int64, encoder_hidden_states [B,77,D]
 * -> out_sample [B,4,F,h,w]; B, F, h, w are dynamic. Parameter names and shapes are the official
 * state-dict keys (down_blocks.0.resnets.1.conv1.weight, ...), so `weights` (an imported
 * checkpoint) fills them key for key.
 */
import type { BuildOptions, UNetConfig } from "../configs.ts";
import { contractFor } from "../contract.ts";
import { attr, GraphBuilder, type Value } from "../onnx/graph.ts";
import {
  conv2d,
  dims,
  foldFrames,
  groupNorm,
  groupNormFrames,
  linear,
  repeatPerFrame,
  resnet,
  silu,
  timestepEmbedding,
  unfoldFrames,
  upsampleNearestLike,
} from "./layers.ts";
import { type TransformerOptions, transformer3d } from "./transformer.ts";

export type UNetKind = "base_unet" | "interp_unet";

export interface UNetBuildOptions extends BuildOptions {
  /**
   * false: build the 2D-only network, exactly the Stable Diffusion UNet the video model was inflated
   * from, applied to every frame (no temporal attention; GroupNorms per frame). Default true.
   */
  temporalLayers?: boolean;
}

/** GroupNorm eps of the resnets and conv_norm_out when the config does not say (diffusers' norm_eps). */
export const DEFAULT_NORM_EPS = 1e-5;

/** Text positions of encoder_hidden_states (CLIP). */
const TEXT_LEN = 77;

/** Throws unless the config describes a network this builder can make. */
export function checkUNetConfig(kind: UNetKind, cfg: UNetConfig): void {
  const levels = cfg.blockChannels.length;
  if (cfg.attention.length !== levels || cfg.heads.length !== levels)
    throw new Error(`${kind}: attention and heads need one entry per level (${levels})`);
  // The base UNet rotates the first ropeDim channels of every head (rotary_embedding_torch asserts they fit).
  const ropeDim = kind === "base_unet" ? cfg.temporal.ropeDim : 0;
  cfg.blockChannels.forEach((ch, l) => {
    if (ch % cfg.groups !== 0)
      throw new Error(`${kind}: width ${ch} must be divisible by groups ${cfg.groups}`);
    // Heads matter where there are transformers: the cross-attention levels and the mid block (last level).
    if (!cfg.attention[l] && l !== levels - 1) return;
    const h = cfg.heads[l]!;
    if (ch % h !== 0) throw new Error(`${kind}: width ${ch} must be divisible by its ${h} heads`);
    if (ropeDim > ch / h || ropeDim % 2 !== 0)
      throw new Error(
        `${kind}: rotary embedding of ${ropeDim} dims needs an even count <= every head width (${ch}/${h})`,
      );
  });
}

export function buildUNet(kind: UNetKind, cfg: UNetConfig, opts: UNetBuildOptions): GraphBuilder {
  checkUNetConfig(kind, cfg);
  const levels = cfg.blockChannels.length;
  const temporalOn = opts.temporalLayers ?? true;
  const g = new GraphBuilder({
    name: kind,
    seed: opts.seed,
    ...(opts.materialize === undefined ? {} : { materialize: opts.materialize }),
    ...(opts.weights ? { weights: opts.weights } : {}),
    ...(opts.weightDtype ? { weightDtype: opts.weightDtype } : {}),
    docString: `lavie-serve ${kind}${temporalOn ? "" : " (2D-only)"}`,
  });
  const contract = contractFor(kind, { width: cfg.crossAttentionDim, inChannels: cfg.inChannels });
  const [sampleSpec, timestepSpec, textSpec] = contract.inputs;
  if (!sampleSpec || !timestepSpec || !textSpec) throw new Error(`${kind}: contract inputs missing`);
  const sample = g.input(sampleSpec.name, sampleSpec.dtype, sampleSpec.shape);
  const timestep = g.input(timestepSpec.name, timestepSpec.dtype, timestepSpec.shape);
  const text = g.input(textSpec.name, textSpec.dtype, textSpec.shape);

  const ch = cfg.blockChannels;
  const ch0 = ch[0]!;
  const T = cfg.timeEmbedDim;
  const frames = dims(g, sample, 2, 3);

  // Time embedding per batch element, then repeated per frame (as is the text).
  const emb = g.scope("time_embedding", () => {
    const h = linear(g, "linear_1", timestepEmbedding(g, timestep, ch0, { flipSinToCos: true }), ch0, T);
    return linear(g, "linear_2", silu(g, h), T, T);
  });
  const temb = repeatPerFrame(g, emb, frames, [T]);
  const ctx = repeatPerFrame(g, text, frames, [TEXT_LEN, cfg.crossAttentionDim]);

  // LaVie normalises the clip (statistics over all frames); the 2D-only network is SD on each frame.
  const clipNorms = temporalOn;
  const eps = cfg.normEps ?? DEFAULT_NORM_EPS;
  const norm = (name: string, x: Value, c: number): Value =>
    clipNorms
      ? groupNormFrames(g, name, x, frames, c, cfg.groups, eps)
      : groupNorm(g, name, x, c, cfg.groups, eps);
  const res = (name: string, x: Value, cin: number, cout: number): Value =>
    resnet(g, name, x, temb, cin, cout, {
      groups: cfg.groups,
      eps,
      tembDim: T,
      ...(clipNorms ? { frames } : {}),
    });
  const attn = (name: string, x: Value, c: number, heads: number): Value => {
    const o: TransformerOptions = {
      channels: c,
      heads,
      contextDim: cfg.crossAttentionDim,
      groups: cfg.groups,
      sparseCausal: cfg.sparseCausal,
      temporal: temporalOn ? cfg.temporal : null,
      frames,
      // The base UNet saves its rotary frequencies in every temporal attention (attn_temp.rotary_emb.freqs).
      ...(kind === "base_unet" ? { ropeFreqs: "own" as const } : {}),
    };
    return transformer3d(g, name, x, ctx, o);
  };

  let x = conv2d(g, "conv_in", foldFrames(g, sample, cfg.inChannels), cfg.inChannels, ch0);
  // Skip connections with their channel counts, exactly as diffusers' down_block_res_samples.
  const skips: { v: Value; c: number }[] = [{ v: x, c: ch0 }];
  let c = ch0;
  for (let l = 0; l < levels; l++) {
    const p = `down_blocks.${l}`;
    const cout = ch[l]!;
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      x = res(`${p}.resnets.${j}`, x, c, cout);
      c = cout;
      if (cfg.attention[l]) x = attn(`${p}.attentions.${j}`, x, c, cfg.heads[l]!);
      skips.push({ v: x, c });
    }
    if (l < levels - 1) {
      x = conv2d(g, `${p}.downsamplers.0.conv`, x, c, c, { stride: 2 });
      skips.push({ v: x, c });
    }
  }

  // Mid block: resnet -> transformer -> resnet.
  x = res("mid_block.resnets.0", x, c, c);
  x = attn("mid_block.attentions.0", x, c, cfg.heads[levels - 1]!);
  x = res("mid_block.resnets.1", x, c, c);

  for (let i = 0; i < levels; i++) {
    const l = levels - 1 - i;
    const p = `up_blocks.${i}`;
    const cout = ch[l]!;
    for (let j = 0; j <= cfg.layersPerBlock; j++) {
      const skip = skips.pop();
      if (!skip) throw new Error("skip stack underflow");
      x = g.op("Concat", [x, skip.v], { axis: attr.i(1) });
      x = res(`${p}.resnets.${j}`, x, c + skip.c, cout);
      c = cout;
      if (cfg.attention[l]) x = attn(`${p}.attentions.${j}`, x, c, cfg.heads[l]!);
    }
    if (l > 0) {
      const next = skips.at(-1);
      if (!next) throw new Error("skip stack underflow");
      x = conv2d(g, `${p}.upsamplers.0.conv`, upsampleNearestLike(g, x, next.v), c, c);
    }
  }
  if (skips.length) throw new Error(`unused skips: ${skips.length}`);

  x = conv2d(g, "conv_out", silu(g, norm("conv_norm_out", x, c)), c, cfg.outChannels);
  const out = contract.outputs[0]!;
  g.output(unfoldFrames(g, x, frames, cfg.outChannels), out.name, out.dtype, out.shape);
  return g;
}
