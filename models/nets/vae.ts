/**
 * Stable Diffusion AutoencoderKL (diffusers) decoder and encoder as ONNX graphs.
 *
 * Decoder (vae_decoder x8 with 4 levels, x4_vae_decoder x4 with 3 levels):
 *   latent_sample [N,4,h,w] -> post_quant_conv 1x1 -> conv_in 3x3 -> mid (resnet, attention, resnet)
 *     -> up blocks over reversed(blockChannels): (layersPerBlock + 1) resnets, nearest x2 + conv 3x3
 *        after all but the last -> GroupNorm -> SiLU -> conv_out 3x3 -> sample [N,3,f*h,f*w]
 * Encoder (vae_encoder, x8):
 *   sample [N,3,H,W] -> conv_in 3x3 -> down blocks: layersPerBlock resnets, stride-2 conv 3x3 with
 *     (0,1,0,1) padding after all but the last -> mid (resnet, attention, resnet) -> GroupNorm -> SiLU
 *     -> conv_out 3x3 to 2*latent -> quant_conv 1x1 -> latent_parameters [N,8,H/8,W/8] (mean, logvar)
 *
 * Resnets have no time embedding; every GroupNorm uses eps 1e-6. The mid attention is single-head
 * self-attention over all pixels of one image (GroupNorm, q/k/v/out Linear with bias, residual), so
 * images (frames) are decoded independently of the rest of the batch. Scaling factors are not applied
 * here: callers divide latents by scalingFactor before decoding and multiply the mean after encoding.
 *
 * Parameter names follow the diffusers state dict (decoder.up_blocks.0.resnets.1.conv1.weight, ...);
 * linear weights are stored [in, out].
 */
import type { BuildOptions, VaeConfig } from "../configs.ts";
import { contractFor } from "../contract.ts";
import { attr, GraphBuilder, type Value } from "../onnx/graph.ts";
import { sdpa } from "./attention.ts";
import {
  conv2d,
  fanInBound,
  fromTokens,
  groupNorm,
  linear,
  resnet,
  silu,
  toTokens,
  upsample2x,
} from "./layers.ts";

export type VaeDecoderKind = "vae_decoder" | "x4_vae_decoder";

const EPS = 1e-6;

/** Residual branches of seeded (untrained) networks are scaled down so activations stay near unit scale. */
const RESIDUAL_SCALE = 0.5;

/** Spatial factor fixed by the contract for each VAE network kind. */
export function vaeFactor(kind: VaeDecoderKind | "vae_encoder"): number {
  return kind === "x4_vae_decoder" ? 4 : 8;
}

function validate(cfg: VaeConfig, kind: VaeDecoderKind | "vae_encoder"): void {
  const factor = vaeFactor(kind);
  const levels = Math.log2(factor) + 1;
  if (cfg.blockChannels.length !== levels)
    throw new Error(
      `${kind}: blockChannels must have ${levels} levels for x${factor} scaling, got ${cfg.blockChannels.length}`,
    );
  if (cfg.latentChannels !== 4)
    throw new Error(`${kind}: latentChannels must be 4, got ${cfg.latentChannels}`);
  if (cfg.layersPerBlock < 1)
    throw new Error(`${kind}: layersPerBlock must be >= 1, got ${cfg.layersPerBlock}`);
  for (const c of cfg.blockChannels)
    if (c % cfg.groups !== 0)
      throw new Error(`${kind}: channels ${c} are not divisible by groups ${cfg.groups}`);
}

function newGraph(name: string, opts: BuildOptions, doc: string): GraphBuilder {
  return new GraphBuilder({ name, seed: opts.seed, materialize: opts.materialize ?? true, docString: doc });
}

function vaeResnet(
  g: GraphBuilder,
  name: string,
  x: Value,
  cin: number,
  cout: number,
  groups: number,
): Value {
  return resnet(g, name, x, null, cin, cout, { groups, eps: EPS, outScale: RESIDUAL_SCALE });
}

/** diffusers Attention in the VAE mid block: single head over all H*W tokens, biases everywhere. */
function vaeAttention(g: GraphBuilder, name: string, x: Value, channels: number, groups: number): Value {
  return g.scope(name, () => {
    const t = toTokens(g, groupNorm(g, "group_norm", x, channels, groups, EPS), channels); // [N, HW, C]
    const heads = (v: Value) => g.op("Unsqueeze", [v, g.constI([1])]); // [N, 1, HW, C]
    const q = heads(linear(g, "to_q", t, channels, channels));
    const k = heads(linear(g, "to_k", t, channels, channels));
    const v = heads(linear(g, "to_v", t, channels, channels));
    const o = sdpa(g, q, k, v, 1, channels);
    const out = linear(g, "to_out.0", o, channels, channels, { scale: RESIDUAL_SCALE });
    return g.op("Add", [x, fromTokens(g, out, x)]);
  });
}

function midBlock(g: GraphBuilder, x: Value, channels: number, groups: number): Value {
  return g.scope("mid_block", () => {
    x = vaeResnet(g, "resnets.0", x, channels, channels, groups);
    x = vaeAttention(g, "attentions.0", x, channels, groups);
    return vaeResnet(g, "resnets.1", x, channels, channels, groups);
  });
}

/** GroupNorm -> SiLU -> conv 3x3 (conv_norm_out, conv_out). */
function outHead(g: GraphBuilder, x: Value, cin: number, cout: number, groups: number): Value {
  return conv2d(g, "conv_out", silu(g, groupNorm(g, "conv_norm_out", x, cin, groups, EPS)), cin, cout);
}

/** diffusers Downsample2D (padding 0): pad right/bottom by one, then a stride-2 3x3 conv. */
export function downsample(g: GraphBuilder, name: string, x: Value, channels: number): Value {
  return g.scope(name, () => {
    const bound = fanInBound(channels * 9);
    const w = g.param("weight", [channels, channels, 3, 3], { kind: "uniform", bound });
    const b = g.param("bias", [channels], { kind: "uniform", bound });
    return g.op("Conv", [x, w, b], {
      kernel_shape: attr.ints([3, 3]),
      pads: attr.ints([0, 0, 1, 1]), // [top, left, bottom, right] = F.pad(x, (0, 1, 0, 1))
      strides: attr.ints([2, 2]),
    });
  });
}

/** Builds the VAE decoder: latent_sample [N,4,h,w] -> sample [N,3,f*h,f*w], f = 8 or 4 by kind. */
export function buildVaeDecoder(cfg: VaeConfig, opts: BuildOptions, kind: VaeDecoderKind): GraphBuilder {
  validate(cfg, kind);
  const contract = contractFor(kind);
  const input = contract.inputs[0]!;
  const output = contract.outputs[0]!;
  const factor = vaeFactor(kind);
  const g = newGraph(kind, opts, `AutoencoderKL decoder x${factor}: widths ${cfg.blockChannels.join(",")}`);
  const z = g.input(input.name, "float32", input.shape);
  const L = cfg.latentChannels;
  const { groups } = cfg;
  const rev = [...cfg.blockChannels].reverse();
  const top = rev[0]!;
  let x = conv2d(g, "post_quant_conv", z, L, L, { k: 1 });
  x = g.scope("decoder", () => {
    let h = conv2d(g, "conv_in", x, L, top);
    h = midBlock(g, h, top, groups);
    let prev = top;
    rev.forEach((ch, i) => {
      h = g.scope(`up_blocks.${i}`, () => {
        let u = h;
        for (let j = 0; j <= cfg.layersPerBlock; j++) {
          u = vaeResnet(g, `resnets.${j}`, u, j === 0 ? prev : ch, ch, groups);
        }
        if (i < rev.length - 1) u = conv2d(g, "upsamplers.0.conv", upsample2x(g, u), ch, ch);
        return u;
      });
      prev = ch;
    });
    return outHead(g, h, prev, 3, groups);
  });
  g.output(x, output.name, "float32", output.shape);
  return g;
}

/** Builds the VAE encoder: sample [N,3,H,W] -> latent_parameters [N,8,H/8,W/8] (mean, logvar). */
export function buildVaeEncoder(cfg: VaeConfig, opts: BuildOptions): GraphBuilder {
  validate(cfg, "vae_encoder");
  const contract = contractFor("vae_encoder");
  const input = contract.inputs[0]!;
  const output = contract.outputs[0]!;
  const g = newGraph("vae_encoder", opts, `AutoencoderKL encoder x8: widths ${cfg.blockChannels.join(",")}`);
  const img = g.input(input.name, "float32", input.shape);
  const L2 = 2 * cfg.latentChannels;
  const { groups, blockChannels } = cfg;
  const moments = g.scope("encoder", () => {
    let h = conv2d(g, "conv_in", img, 3, blockChannels[0]!);
    let prev = blockChannels[0]!;
    blockChannels.forEach((ch, i) => {
      h = g.scope(`down_blocks.${i}`, () => {
        let d = h;
        for (let j = 0; j < cfg.layersPerBlock; j++) {
          d = vaeResnet(g, `resnets.${j}`, d, j === 0 ? prev : ch, ch, groups);
        }
        if (i < blockChannels.length - 1) d = downsample(g, "downsamplers.0.conv", d, ch);
        return d;
      });
      prev = ch;
    });
    h = midBlock(g, h, prev, groups);
    return outHead(g, h, prev, L2, groups);
  });
  const params = conv2d(g, "quant_conv", moments, L2, L2, { k: 1 });
  g.output(params, output.name, "float32", output.shape);
  return g;
}
