/**
 * LaVie's video super-resolution UNet (vsr/models/unet.py UNet3DVSRModel): the x4 upscaler's UNet
 * inflated to video. 2D convolutions run per frame (frames folded into the batch); the resnets'
 * GroupNorms and conv_norm_out take statistics over the whole clip; every transformer mixes frames
 * (vsr_transformer.ts); a temporal module follows each whole down level (downsampler included), the
 * mid block and each whole up level (temporal_module.ts).
 *
 * I/O (contract.ts): sample [B, 7, F, h, w] = the latent (4) and the low-res video (3) concatenated on
 * channels, as the official forward does first; timestep [B] int64; encoder_hidden_states [B, 77, D];
 * class_labels [B] int64 (the low-res noise level, a row of class_embedding added to the time
 * embedding) -> out_sample [B, 4, F, h, w]. B, F, h, w are dynamic; h and w need not be multiples of
 * 2^(levels-1): like the official model, upsampling then resizes to the matching skip connection.
 *
 * Parameters are the official state-dict keys and shapes. The official state dict also lists the shared
 * rotary frequencies once per temporal attention (`...attn_temporal.rotary_emb.freqs`, all the same
 * tensor as `temporal_rotary_emb.freqs`): the graph takes the root key, VSR_UNET_ALIAS_KEYS matches the
 * copies.
 */
import type { BuildOptions, VsrUNetConfig } from "../configs.ts";
import { contractFor } from "../contract.ts";
import { attr, GraphBuilder, type Value, type WeightSource } from "../onnx/graph.ts";
import { rotaryFreqs } from "./attention.ts";
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
import { temporalModule } from "./temporal_module.ts";
import { type VsrTemporalOptions, vsrTransformer } from "./vsr_transformer.ts";

export interface VsrUNetBuildOptions extends BuildOptions {
  /** Parameter values from a checkpoint (official keys); seeded when absent. */
  weights?: WeightSource;
  /**
   * false: the 2D-only network the VSR UNet was inflated from (the x4 upscaler's UNet: no frame-axis
   * layers, per-frame GroupNorms). Default true.
   */
  temporalLayers?: boolean;
}

/** Official state-dict keys that are copies of `temporal_rotary_emb.freqs` (one per temporal attention). */
export const VSR_UNET_ALIAS_KEYS: readonly RegExp[] = [/\.attn_temporal\.rotary_emb\.freqs$/];

/** Text positions of encoder_hidden_states (CLIP). */
const TEXT_LEN = 77;

/** Throws unless the configuration can be built (widths, groups, heads, rotary dims, per-level lists). */
export function checkVsrUNetConfig(cfg: VsrUNetConfig): void {
  const n = cfg.blockChannels.length;
  const fail = (msg: string) => {
    throw new Error(`vsr_unet: ${msg}`);
  };
  if (n < 1) fail("blockChannels needs at least one level");
  for (const [k, v] of [
    ["attention", cfg.attention],
    ["onlyCrossAttention", cfg.onlyCrossAttention],
    ["heads", cfg.heads],
    ["downTemporal", cfg.downTemporal],
    ["upTemporal", cfg.upTemporal],
  ] as const) {
    if (v.length !== n) fail(`${k} needs one entry per level (${n}), has ${v.length}`);
  }
  if (cfg.blockChannels[0]! % 2)
    fail(`blockChannels[0] ${cfg.blockChannels[0]} must be even (timestep embedding)`);
  if (cfg.ropeDim < 2 || cfg.ropeDim % 2) fail(`ropeDim ${cfg.ropeDim} must be even and positive`);
  const checkHeads = (where: string, c: number, h: number) => {
    if (c % h || c / h < cfg.ropeDim)
      fail(
        `${where}: ${h} heads on width ${c} must split it into heads at least ropeDim ${cfg.ropeDim} wide`,
      );
  };
  cfg.blockChannels.forEach((c, l) => {
    if (c % cfg.groups || c % cfg.temporalGroups)
      fail(`width ${c} must be divisible by groups ${cfg.groups} and temporalGroups ${cfg.temporalGroups}`);
    if (cfg.attention[l]) checkHeads(`level ${l}`, c, cfg.heads[l]!);
  });
  checkHeads("mid block", cfg.blockChannels[n - 1]!, cfg.heads[n - 1]!);
}

export function buildVsrUNet(cfg: VsrUNetConfig, opts: VsrUNetBuildOptions): GraphBuilder {
  checkVsrUNetConfig(cfg);
  const temporalOn = opts.temporalLayers ?? true;
  const g = new GraphBuilder({
    name: "vsr_unet",
    seed: opts.seed,
    ...(opts.materialize === undefined ? {} : { materialize: opts.materialize }),
    ...(opts.weights ? { weights: opts.weights } : {}),
    ...(opts.weightDtype ? { weightDtype: opts.weightDtype } : {}),
    docString: `lavie-serve vsr_unet${temporalOn ? "" : " (2D-only)"}`,
  });
  const contract = contractFor("vsr_unet", { width: cfg.crossAttentionDim, inChannels: cfg.inChannels });
  const inputs = new Map<string, Value>();
  for (const s of contract.inputs) inputs.set(s.name, g.input(s.name, s.dtype, s.shape));
  const need = (n: string): Value => {
    const v = inputs.get(n);
    if (!v) throw new Error(`contract input ${n} missing`);
    return v;
  };
  let sample = need("sample");
  if (cfg.centerInputSample)
    sample = g.op("Sub", [g.op("Mul", [sample, g.constF([2], [])]), g.constF([1], [])]);

  const ch = cfg.blockChannels;
  const levels = ch.length;
  const ch0 = ch[0]!;
  const T = 4 * ch0;
  const frames = dims(g, sample, 2, 3);

  let emb = g.scope("time_embedding", () => {
    const t = timestepEmbedding(g, need("timestep"), ch0, {
      flipSinToCos: cfg.flipSinToCos,
      freqShift: cfg.freqShift,
    });
    return linear(g, "linear_2", silu(g, linear(g, "linear_1", t, ch0, T)), T, T);
  });
  if (cfg.classEmbeddings > 0) {
    const table = g.param("class_embedding.weight", [cfg.classEmbeddings, T], { kind: "normal", std: 1 });
    emb = g.op("Add", [emb, g.op("Gather", [table, need("class_labels")], { axis: attr.i(0) })]);
  }
  const temb = repeatPerFrame(g, emb, frames, [T]);
  const ctx = repeatPerFrame(g, need("encoder_hidden_states"), frames, [TEXT_LEN, cfg.crossAttentionDim]);

  let temporal: VsrTemporalOptions | null = null;
  if (temporalOn) {
    const freqs = rotaryFreqs(g, "temporal_rotary_emb", cfg.ropeDim);
    temporal = { freqs, ropeDim: cfg.ropeDim, groups: cfg.temporalGroups };
  }

  const res = (name: string, x: Value, cin: number, cout: number): Value =>
    resnet(g, name, x, temb, cin, cout, {
      groups: cfg.groups,
      eps: cfg.normEps,
      tembDim: T,
      ...(temporalOn ? { frames } : {}),
    });
  const attn = (name: string, x: Value, c: number, heads: number, onlyCross: boolean): Value =>
    vsrTransformer(g, name, x, ctx, {
      channels: c,
      heads,
      contextDim: cfg.crossAttentionDim,
      groups: cfg.groups,
      onlyCrossAttention: onlyCross,
      frames,
      temporal,
    });
  const tmod = (name: string, x: Value, c: number, on: boolean): Value =>
    temporalOn && on
      ? temporalModule(g, name, x, {
          channels: c,
          groups: cfg.temporalGroups,
          frames,
          clipTemb: emb,
          frameTemb: temb,
          tembDim: T,
        })
      : x;

  let x = conv2d(g, "conv_in", foldFrames(g, sample, cfg.inChannels), cfg.inChannels, ch0);
  // Skip connections with their widths, as the official down_block_res_samples (taken before the
  // level's temporal module).
  const skips: { v: Value; c: number }[] = [{ v: x, c: ch0 }];
  let c = ch0;
  for (let l = 0; l < levels; l++) {
    const p = `down_blocks.${l}`;
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      x = res(`${p}.resnets.${j}`, x, c, ch[l]!);
      c = ch[l]!;
      if (cfg.attention[l]) x = attn(`${p}.attentions.${j}`, x, c, cfg.heads[l]!, cfg.onlyCrossAttention[l]!);
      skips.push({ v: x, c });
    }
    if (l < levels - 1) {
      x = conv2d(g, `${p}.downsamplers.0.conv`, x, c, c, { stride: 2 });
      skips.push({ v: x, c });
    }
    x = tmod(`down_temporal_blocks.${l}`, x, c, cfg.downTemporal[l]!);
  }

  const midScale = (v: Value) =>
    cfg.midBlockScaleFactor === 1 ? v : g.op("Div", [v, g.constF([cfg.midBlockScaleFactor], [])]);
  x = midScale(res("mid_block.resnets.0", x, c, c));
  x = attn("mid_block.attentions.0", x, c, cfg.heads[levels - 1]!, false);
  x = midScale(res("mid_block.resnets.1", x, c, c));
  x = tmod("mid_temporal_block", x, c, cfg.midTemporal);

  for (let i = 0; i < levels; i++) {
    const l = levels - 1 - i;
    const p = `up_blocks.${i}`;
    for (let j = 0; j <= cfg.layersPerBlock; j++) {
      const skip = skips.pop();
      if (!skip) throw new Error("skip stack underflow");
      x = g.op("Concat", [x, skip.v], { axis: attr.i(1) });
      x = res(`${p}.resnets.${j}`, x, c + skip.c, ch[l]!);
      c = ch[l]!;
      if (cfg.attention[l]) x = attn(`${p}.attentions.${j}`, x, c, cfg.heads[l]!, cfg.onlyCrossAttention[l]!);
    }
    if (l > 0) {
      const next = skips[skips.length - 1];
      if (!next) throw new Error("skip stack underflow");
      x = conv2d(g, `${p}.upsamplers.0.conv`, upsampleNearestLike(g, x, next.v), c, c);
    }
    x = tmod(`up_temporal_blocks.${i}`, x, c, cfg.upTemporal[i]!);
  }
  if (skips.length) throw new Error(`unused skips: ${skips.length}`);

  x = temporalOn
    ? groupNormFrames(g, "conv_norm_out", x, frames, c, cfg.groups, cfg.normEps)
    : groupNorm(g, "conv_norm_out", x, c, cfg.groups, cfg.normEps);
  x = conv2d(g, "conv_out", silu(g, x), c, cfg.outChannels);
  const out = contract.outputs[0]!;
  g.output(unfoldFrames(g, x, frames, cfg.outChannels), out.name, out.dtype, out.shape);
  return g;
}
