/**
 * Stable Diffusion AutoencoderKL, as diffusers 0.16.0 computes it, as ONNX graphs (decoder and encoder).
 *
 * Decoder (vae_decoder x8 with 4 levels, x4_vae_decoder x4 with 3 levels) = AutoencoderKL.decode(z).sample:
 *   latent_sample [N,4,h,w] -> post_quant_conv 1x1 -> conv_in 3x3 -> mid (resnet, attention, resnet)
 *     -> up blocks over reversed(blockChannels): (layersPerBlock + 1) resnets, nearest x2 + conv 3x3
 *        after all but the last -> GroupNorm -> SiLU -> conv_out 3x3 -> sample [N,3,f*h,f*w]
 * Encoder (vae_encoder, x8) = AutoencoderKL.encode(x).latent_dist.parameters:
 *   sample [N,3,H,W] -> conv_in 3x3 -> down blocks: layersPerBlock resnets, stride-2 conv 3x3 with
 *     (0,1,0,1) padding after all but the last -> mid (resnet, attention, resnet) -> GroupNorm -> SiLU
 *     -> conv_out 3x3 to 2*latent -> quant_conv 1x1 -> latent_parameters [N,8,H/8,W/8], the moments
 *     (mean ‖ raw log-variance, as optimum exports it). diffusers' DiagonalGaussianDistribution clamps the
 *     log-variance to [-30, 20] before use: splitMoments does that for callers (LaVie's interpolation
 *     stage then samples mean + exp(logvar / 2) * noise; it does not take the mean).
 *
 * Resnets have no time embedding; every GroupNorm uses eps 1e-6. The mid attention is single-head
 * self-attention over all pixels of one image (GroupNorm, q/k/v/out Linear with bias, scale
 * 1/sqrt(channels), residual, output factor 1), so images (frames) are decoded independently of the
 * rest of the batch. The x4 upscaler's VAE (LaVie's vsr/models/autoencoder_kl.py is diffusers' class
 * re-indented, built from vsr/configs/vae_config.json) is the same decoder with 3 levels. Scaling factors
 * are not applied here: callers divide latents by scalingFactor before decoding and multiply after encoding.
 *
 * Parameter names and shapes are the state-dict keys that diffusers 0.16.0 writes and that the published
 * SD 1.4 and x4-upscaler vae/diffusion_pytorch_model.bin hold (decoder.up_blocks.0.resnets.1.conv1.weight,
 * ...). The mid-block attention uses that era's names: attentions.0.{group_norm, query, key, value,
 * proj_attn}; later diffusers write to_q / to_k / to_v / to_out.0 instead (models/import/vae_config.ts
 * renames those).
 */
import { invalidArgument } from "../../core/errors.ts";
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

/** diffusers DiagonalGaussianDistribution clamps the log-variance to this range. */
export const LOGVAR_MIN = -30;
export const LOGVAR_MAX = 20;

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
    throw invalidArgument(
      `${kind} blockChannels`,
      `must have ${levels} levels for x${factor} scaling, got ${cfg.blockChannels.length}`,
    );
  if (cfg.latentChannels !== 4)
    throw invalidArgument(`${kind} latentChannels`, `latentChannels must be 4, got ${cfg.latentChannels}`);
  if (cfg.layersPerBlock < 1)
    throw invalidArgument(`${kind} layersPerBlock`, `must be >= 1, got ${cfg.layersPerBlock}`);
  for (const c of cfg.blockChannels)
    if (cfg.groups < 1 || c % cfg.groups !== 0)
      throw invalidArgument(`${kind} groups`, `channels ${c} are not divisible by groups ${cfg.groups}`);
}

function newGraph(name: string, opts: BuildOptions, doc: string): GraphBuilder {
  return new GraphBuilder({
    name,
    seed: opts.seed,
    materialize: opts.materialize ?? true,
    weights: opts.weights,
    weightDtype: opts.weightDtype ?? "float32",
    docString: doc,
  });
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

/**
 * diffusers 0.16 AttentionBlock in the VAE mid block: GroupNorm, single head over all H*W tokens,
 * q/k/v/out Linear with bias, scale 1/sqrt(channels), residual.
 */
function vaeAttention(g: GraphBuilder, name: string, x: Value, channels: number, groups: number): Value {
  return g.scope(name, () => {
    const t = toTokens(g, groupNorm(g, "group_norm", x, channels, groups, EPS), channels); // [N, HW, C]
    const heads = (v: Value) => g.op("Unsqueeze", [v, g.constI([1])]); // [N, 1, HW, C]
    const q = heads(linear(g, "query", t, channels, channels));
    const k = heads(linear(g, "key", t, channels, channels));
    const v = heads(linear(g, "value", t, channels, channels));
    const o = sdpa(g, q, k, v, 1, channels);
    const out = linear(g, "proj_attn", o, channels, channels, { scale: RESIDUAL_SCALE });
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

/**
 * The posterior of an encoder output, as diffusers' DiagonalGaussianDistribution derives it: moments
 * [N, 2*latent, h, w] (row-major) -> mean and log-variance [N, latent, h, w], the log-variance clamped
 * to [LOGVAR_MIN, LOGVAR_MAX]. Idempotent on the log-variance, so it also suits exporters that clamp.
 */
export function splitMoments(
  moments: Float32Array,
  shape: readonly number[],
): { mean: Float32Array; logvar: Float32Array; shape: number[] } {
  const [n, c2, h, w] = shape as [number, number, number, number];
  if (shape.length !== 4 || c2 % 2 !== 0 || moments.length !== n * c2 * h * w)
    throw invalidArgument("latent_parameters", `expected [N, 2*latent, h, w] moments, got shape [${shape}]`);
  const block = (c2 / 2) * h * w;
  const mean = new Float32Array(n * block);
  const logvar = new Float32Array(n * block);
  for (let i = 0; i < n; i++) {
    mean.set(moments.subarray(2 * i * block, (2 * i + 1) * block), i * block);
    const lv = moments.subarray((2 * i + 1) * block, (2 * i + 2) * block);
    for (let k = 0; k < block; k++)
      logvar[i * block + k] = Math.min(LOGVAR_MAX, Math.max(LOGVAR_MIN, lv[k]!));
  }
  return { mean, logvar, shape: [n, c2 / 2, h, w] };
}

/** Builds the VAE encoder: sample [N,3,H,W] -> latent_parameters [N,8,H/8,W/8] (moments: mean ‖ logvar). */
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
