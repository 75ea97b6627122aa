/**
 * The transformer of LaVie's VSR UNet (vsr/models/attention.py Transformer3DModel and
 * BasicTransformerBlock) on frames folded into the batch, x [B*F, C, H, W]:
 *
 *   x = resblock_temporal(x)               frame-axis resnet, kernel (3,1,1), no time embedding
 *   h = proj_in(GroupNorm(x)) as tokens    GroupNorm per frame, eps 1e-6; linear projections
 *   h += attn1(norm1(h))                   self-attention, or text cross-attention (only_cross_attention)
 *   h += attn2(norm2(h), text)
 *   h += attn_temporal(norm_temporal(h))   over frames at each position: RoPE + relative position bias
 *   h += ff(norm3(h))                      GEGLU
 *   out = proj_out(h) + x
 *
 * The 2D-only variant (temporal: null) is exactly the x4 upscaler's Transformer2DModel.
 * Parameter names and shapes are the official state-dict keys.
 */
import type { GraphBuilder, Value } from "../onnx/graph.ts";
import { attention, relativePositionBias, spatialToTemporal, temporalToSpatial } from "./attention.ts";
import {
  dims,
  foldFrames,
  fromTokens,
  groupNorm,
  layerNorm,
  linear,
  toTokens,
  unfoldFrames,
} from "./layers.ts";
import { frameResnet } from "./temporal_module.ts";
import { gegluFeedForward } from "./transformer.ts";

/** Relative position bias of the temporal attention: buckets and maximum distance (official: 32, 32). */
export const BIAS_BUCKETS = 32;
export const BIAS_MAX_DISTANCE = 32;

/** Init scale of attn_temporal.to_out.0 in seeded builds (official: zero weight). */
export const TEMPORAL_OUT_INIT_SCALE = 0.1;

export interface VsrTemporalOptions {
  /** The shared rotary frequencies (root `temporal_rotary_emb.freqs`), [ropeDim / 2]. */
  freqs: Value;
  ropeDim: number;
  /** GroupNorm groups of resblock_temporal. */
  groups: number;
}

export interface VsrTransformerOptions {
  channels: number;
  heads: number;
  /** Width of the text states. */
  contextDim: number;
  /** GroupNorm groups of `norm`. */
  groups: number;
  /** attn1 attends to the text instead of the frame. */
  onlyCrossAttention: boolean;
  /** Frames per clip as a 1-D int64 Value [1]. */
  frames: Value;
  /** Frame-axis resnet and temporal attention, or null for the 2D-only transformer. */
  temporal: VsrTemporalOptions | null;
}

/**
 * TemporalAttention over frames, x [B*HW, F, C]: q scaled by d^-0.5, then q and k rotated by frame
 * index with the shared frequencies, logits plus the relative position bias (bucketed query - key
 * offset); q/k/v without bias, to_out.0 with bias.
 */
export function vsrTemporalAttention(
  g: GraphBuilder,
  name: string,
  x: Value,
  c: number,
  heads: number,
  t: VsrTemporalOptions,
): Value {
  const length = dims(g, x, 1, 2);
  const bias = g.scope(name, () =>
    relativePositionBias(g, "time_rel_pos_bias", length, heads, BIAS_BUCKETS, BIAS_MAX_DISTANCE),
  );
  return attention(g, name, x, null, {
    heads,
    dim: c,
    ropeFreqs: { freqs: t.freqs, rotDim: t.ropeDim },
    bias,
    outScale: TEMPORAL_OUT_INIT_SCALE,
  });
}

/** BasicTransformerBlock of the VSR UNet on spatial tokens [B*F, HW, C]. */
function transformerBlock(
  g: GraphBuilder,
  name: string,
  x: Value,
  ctx: Value,
  o: VsrTransformerOptions,
): Value {
  const c = o.channels;
  const add = (a: Value, b: Value) => g.op("Add", [a, b]);
  return g.scope(name, () => {
    const n1 = layerNorm(g, "norm1", x, c);
    const a1 = o.onlyCrossAttention
      ? attention(g, "attn1", n1, ctx, { heads: o.heads, dim: c, kvDim: o.contextDim })
      : attention(g, "attn1", n1, null, { heads: o.heads, dim: c });
    let h = add(x, a1);
    h = add(
      h,
      attention(g, "attn2", layerNorm(g, "norm2", h, c), ctx, {
        heads: o.heads,
        dim: c,
        kvDim: o.contextDim,
      }),
    );
    if (o.temporal) {
      const t = spatialToTemporal(g, h, o.frames, c);
      const y = vsrTemporalAttention(
        g,
        "attn_temporal",
        layerNorm(g, "norm_temporal", t, c),
        c,
        o.heads,
        o.temporal,
      );
      h = temporalToSpatial(g, add(t, y), h, c);
    }
    return add(h, gegluFeedForward(g, "ff", layerNorm(g, "norm3", h, c), c));
  });
}

/** Transformer3DModel of the VSR UNet: x [B*F, C, H, W], ctx [B*F, L, contextDim] -> [B*F, C, H, W]. */
export function vsrTransformer(
  g: GraphBuilder,
  name: string,
  x: Value,
  ctx: Value,
  o: VsrTransformerOptions,
): Value {
  const c = o.channels;
  return g.scope(name, () => {
    let input = x;
    if (o.temporal) {
      const clip = unfoldFrames(g, x, o.frames, c);
      input = foldFrames(
        g,
        frameResnet(g, "resblock_temporal", clip, c, { groups: o.temporal.groups, kernel: 3 }),
        c,
      );
    }
    const normed = groupNorm(g, "norm", input, c, o.groups, 1e-6);
    let h = linear(g, "proj_in", toTokens(g, normed, c), c, c);
    h = transformerBlock(g, "transformer_blocks.0", h, ctx, o);
    return g.op("Add", [fromTokens(g, linear(g, "proj_out", h, c, c), input), input]);
  });
}
