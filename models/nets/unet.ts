/**
 * LaVie's video UNets: diffusers' UNet2DConditionModel inflated to video, frames folded into the
 * batch for the 2D convolutions and norms (layers.ts), temporal layers in every transformer
 * (transformer.ts) and, for VSR, a temporal module after every transformer (temporal_module.ts).
 *
 *   base_unet   SD1.4 UNet + temporal attention (RoPE + relative position bias) before the FF
 *   interp_unet SD1.4 UNet, 8 input channels, sparse-causal spatial attention, plain temporal
 *               attention after the FF
 *   vsr_unet    x4-upscaler UNet (7 input channels, noise-level class embedding, linear projections,
 *               cross-attention-only attn1 on the higher-resolution levels) + temporal attention
 *               + temporal modules
 *
 * I/O follows contract.ts: sample [B,C,F,h,w], timestep [B] int64, encoder_hidden_states [B,77,D]
 * (+ class_labels [B] int64 for VSR) -> out_sample [B,4,F,h,w]; B, F, h, w are dynamic.
 * Parameter names follow the diffusers/LaVie state dicts (down_blocks.0.resnets.1.conv1.weight, ...).
 */
import type { BuildOptions, UNetConfig } from "../configs.ts";
import { contractFor } from "../contract.ts";
import { attr, GraphBuilder, type Value } from "../onnx/graph.ts";
import {
  conv2d,
  dims,
  foldFrames,
  groupNorm,
  linear,
  repeatPerFrame,
  resnet,
  silu,
  timestepEmbedding,
  unfoldFrames,
  upsample2x,
} from "./layers.ts";
import { temporalModule } from "./temporal_module.ts";
import { type TransformerOptions, transformer3d } from "./transformer.ts";

export type UNetKind = "base_unet" | "interp_unet" | "vsr_unet";

export interface UNetBuildOptions extends BuildOptions {
  /**
   * false: build the 2D-only network (no temporal attention, no temporal modules), i.e. exactly
   * the Stable Diffusion / x4-upscaler UNet the video model was inflated from. Default true.
   */
  temporalLayers?: boolean;
}

/** Text positions of encoder_hidden_states (CLIP). */
const TEXT_LEN = 77;

export function buildUNet(kind: UNetKind, cfg: UNetConfig, opts: UNetBuildOptions): GraphBuilder {
  const levels = cfg.blockChannels.length;
  if (cfg.attention.length !== levels || cfg.onlyCrossAttention.length !== levels)
    throw new Error(`${kind}: attention/onlyCrossAttention need one entry per level (${levels})`);
  if ((kind === "vsr_unet") !== cfg.classEmbeddings > 0)
    throw new Error(`${kind}: class embeddings are used by (and only by) the VSR UNet`);
  for (const ch of cfg.blockChannels) {
    if (ch % cfg.groups !== 0 || ch % cfg.heads !== 0)
      throw new Error(
        `${kind}: width ${ch} must be divisible by groups ${cfg.groups} and heads ${cfg.heads}`,
      );
  }
  const temporalOn = opts.temporalLayers ?? true;
  const g = new GraphBuilder({
    name: kind,
    seed: opts.seed,
    ...(opts.materialize === undefined ? {} : { materialize: opts.materialize }),
    docString: `lavie-serve ${kind}${temporalOn ? "" : " (2D-only)"}`,
  });
  const contract = contractFor(kind, { width: cfg.crossAttentionDim, inChannels: cfg.inChannels });
  const inputs = new Map<string, Value>();
  for (const s of contract.inputs) inputs.set(s.name, g.input(s.name, s.dtype, s.shape));
  const need = (n: string): Value => {
    const v = inputs.get(n);
    if (!v) throw new Error(`contract input ${n} missing`);
    return v;
  };
  const sample = need("sample");

  const ch = cfg.blockChannels;
  const ch0 = ch[0]!;
  const T = cfg.timeEmbedDim;
  const frames = dims(g, sample, 2, 3);

  // Time (+ class) embedding per batch element, then repeated per frame.
  let emb = g.scope("time_embedding", () => {
    const h = linear(g, "linear_1", timestepEmbedding(g, need("timestep"), ch0), ch0, T);
    return linear(g, "linear_2", silu(g, h), T, T);
  });
  if (kind === "vsr_unet") {
    const table = g.param("class_embedding.weight", [cfg.classEmbeddings, T], { kind: "normal", std: 1 });
    emb = g.op("Add", [emb, g.op("Gather", [table, need("class_labels")])]);
  }
  const temb = repeatPerFrame(g, emb, frames, [T]);
  const ctx = repeatPerFrame(g, need("encoder_hidden_states"), frames, [TEXT_LEN, cfg.crossAttentionDim]);

  const temporal = temporalOn ? cfg.temporal : null;
  const modules = temporalOn && cfg.temporalModules;
  const res = (name: string, x: Value, cin: number, cout: number): Value =>
    resnet(g, name, x, temb, cin, cout, { groups: cfg.groups, eps: 1e-5, tembDim: T });
  /** Transformer (+ VSR temporal module) at `prefix`.attentions.j / .temporal_modules.j. */
  const attn = (prefix: string, j: number, x: Value, c: number, onlyCross: boolean): Value => {
    const o: TransformerOptions = {
      channels: c,
      heads: cfg.heads,
      contextDim: cfg.crossAttentionDim,
      groups: cfg.groups,
      linearProjection: cfg.linearProjection,
      onlyCrossAttention: onlyCross,
      sparseCausal: cfg.sparseCausal,
      temporal,
      frames,
    };
    let h = transformer3d(g, `${prefix}.attentions.${j}`, x, ctx, o);
    if (modules)
      h = temporalModule(g, `${prefix}.temporal_modules.${j}`, h, {
        channels: c,
        groups: cfg.groups,
        frames,
        temb,
        tembDim: T,
      });
    return h;
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
      if (cfg.attention[l]) x = attn(p, j, x, c, cfg.onlyCrossAttention[l]!);
      skips.push({ v: x, c });
    }
    if (l < levels - 1) {
      x = conv2d(g, `${p}.downsamplers.0.conv`, x, c, c, { stride: 2 });
      skips.push({ v: x, c });
    }
  }

  // Mid block: resnet -> transformer (always self + cross attention) -> resnet.
  x = res("mid_block.resnets.0", x, c, c);
  x = attn("mid_block", 0, x, c, false);
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
      if (cfg.attention[l]) x = attn(p, j, x, c, cfg.onlyCrossAttention[l]!);
    }
    if (l > 0) x = conv2d(g, `${p}.upsamplers.0.conv`, upsample2x(g, x), c, c);
  }
  if (skips.length) throw new Error(`unused skips: ${skips.length}`);

  x = silu(g, groupNorm(g, "conv_norm_out", x, c, cfg.groups, 1e-5));
  x = conv2d(g, "conv_out", x, c, cfg.outChannels);
  const out = contract.outputs[0]!;
  g.output(unfoldFrames(g, x, frames, cfg.outChannels), out.name, out.dtype, out.shape);
  return g;
}
