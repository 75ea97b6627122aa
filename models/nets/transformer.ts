/**
 * LaVie's Transformer3DModel (base/ and interpolation/models/attention.py) on frames folded into the
 * batch: GroupNorm (per frame, eps 1e-6) -> 1x1-conv proj_in -> one BasicTransformerBlock -> 1x1-conv
 * proj_out -> + input. The block, each sublayer pre-normed by a LayerNorm (eps 1e-5) and residual:
 *   base:          attn1 (self) -> attn2 (text) -> attn_temp (RoPE + relative bias) -> ff (GEGLU)
 *   interpolation: attn1 (sparse-causal) -> attn2 (text) -> ff (GEGLU) -> attn_temp (plain)
 * Parameter names are the official state-dict keys.
 *
 * Spatial tokens are [B*F, HW, C]; temporal attention moves them to [B*HW, F, C] (attention.ts).
 */
import type { TemporalAttentionConfig } from "../configs.ts";
import { attr, type GraphBuilder, type Value } from "../onnx/graph.ts";
import {
  type AttentionOptions,
  attention,
  relativePositionBias,
  rotaryFreqs,
  sdpa,
  spatialToTemporal,
  splitHeads,
  temporalToSpatial,
} from "./attention.ts";
import { conv2d, dims, fromTokens, gelu, groupNorm, layerNorm, linear, reshape, toTokens } from "./layers.ts";

export interface TransformerOptions {
  channels: number;
  heads: number;
  /** Width of the text states. */
  contextDim: number;
  groups: number;
  /** attn1 is Tune-A-Video's sparse-causal attention (interpolation UNet). */
  sparseCausal: boolean;
  /** Temporal attention, or null for a 2D-only block. */
  temporal: TemporalAttentionConfig | null;
  /** Frames per video as a 1-D int64 Value [1] (the F of the folded batch B*F). */
  frames: Value;
  /**
   * Where temporal attention's RoPE frequencies come from: "own" = a parameter per block,
   * attn_temp.rotary_emb.freqs (LaVie base UNet's checkpoint keys); a Value = one shared parameter;
   * absent = fixed frequencies, no parameter.
   */
  ropeFreqs?: "own" | Value;
}

/**
 * Temporal self-attention over frames at each spatial position (LaVie's TemporalAttention):
 * x [B*HW, F, C] -> [B*HW, F, C]. RoPE on q/k when cfg.ropeDim > 0 (q scaled by 1/sqrt(d) first,
 * then q and k rotated by frame index), a learned T5-style relative position bias added to the
 * logits when cfg.biasBuckets > 0. `ropeFreqs` as in TransformerOptions.
 */
export function temporalAttention(
  g: GraphBuilder,
  name: string,
  x: Value,
  channels: number,
  heads: number,
  cfg: TemporalAttentionConfig,
  ropeFreqs?: "own" | Value,
): Value {
  const bias =
    cfg.biasBuckets > 0
      ? g.scope(name, () =>
          relativePositionBias(
            g,
            "time_rel_pos_bias",
            dims(g, x, 1, 2),
            heads,
            cfg.biasBuckets,
            cfg.biasMaxDistance,
          ),
        )
      : undefined;
  let rope: Pick<AttentionOptions, "ropeDim" | "ropeFreqs"> = {};
  if (cfg.ropeDim > 0 && ropeFreqs) {
    const freqs =
      ropeFreqs === "own" ? g.scope(name, () => rotaryFreqs(g, "rotary_emb", cfg.ropeDim)) : ropeFreqs;
    rope = { ropeFreqs: { freqs, rotDim: cfg.ropeDim } };
  } else if (cfg.ropeDim > 0) rope = { ropeDim: cfg.ropeDim };
  return attention(g, name, x, null, { heads, dim: channels, ...rope, ...(bias ? { bias } : {}) });
}

/**
 * Tune-A-Video's SparseCausalAttention on spatial tokens x [B*F, HW, C]: queries are frame i's
 * tokens; keys/values are frame 0's tokens followed by frame i-1's (frame 0 uses frame 0 twice).
 */
export function sparseCausalAttention(
  g: GraphBuilder,
  name: string,
  x: Value,
  frames: Value,
  channels: number,
  heads: number,
): Value {
  const d = channels / heads;
  return g.scope(name, () => {
    const q = splitHeads(g, linear(g, "to_q", x, channels, channels, { bias: false }), heads, d);
    const n = g.op("Squeeze", [frames, g.constI([0])]);
    const idx = g.op("Range", [g.constI([0], []), n, g.constI([1], [])]);
    const former = g.op("Max", [g.op("Sub", [idx, g.constI([1], [])]), g.constI([0], [])]);
    const gatherKv = (v: Value): Value => {
      const byFrame = reshape(g, v, [-1, frames, dims(g, v, 1, 3)]); // [B, F, HW, C]
      const first = g.op("Expand", [
        g.op("Slice", [byFrame, g.constI([0]), g.constI([1]), g.constI([1])]),
        dims(g, byFrame, 0),
      ]);
      const prev = g.op("Gather", [byFrame, former], { axis: attr.i(1) });
      const both = g.op("Concat", [first, prev], { axis: attr.i(2) }); // [B, F, 2HW, C]
      return splitHeads(g, reshape(g, both, [-1, dims(g, both, 2, 4)]), heads, d);
    };
    const k = gatherKv(linear(g, "to_k", x, channels, channels, { bias: false }));
    const v = gatherKv(linear(g, "to_v", x, channels, channels, { bias: false }));
    const o = sdpa(g, q, k, v, heads, d);
    return linear(g, "to_out.0", o, channels, channels);
  });
}

/** GEGLU feed-forward: Linear d -> 8d, split into (a, gate), a * gelu(gate), Linear 4d -> d. */
export function gegluFeedForward(g: GraphBuilder, name: string, x: Value, dim: number): Value {
  return g.scope(name, () => {
    const inner = 4 * dim;
    const h = linear(g, "net.0.proj", x, dim, 2 * inner);
    const [a, gate] = g.opN("Split", [h, g.constI([inner, inner])], 2, { axis: attr.i(-1) });
    return linear(g, "net.2", g.op("Mul", [a!, gelu(g, gate!)]), inner, dim);
  });
}

/** BasicTransformerBlock (LaVie's 3D variant) on spatial tokens [B*F, HW, C]. */
export function transformerBlock(
  g: GraphBuilder,
  name: string,
  x: Value,
  ctx: Value,
  o: TransformerOptions,
): Value {
  const c = o.channels;
  const add = (a: Value, b: Value) => g.op("Add", [a, b]);
  return g.scope(name, () => {
    const temporalSublayer = (h: Value): Value => {
      if (!o.temporal) return h;
      const cfg = o.temporal;
      const t = spatialToTemporal(g, h, o.frames, c);
      const y = temporalAttention(
        g,
        "attn_temp",
        layerNorm(g, "norm_temp", t, c),
        c,
        o.heads,
        cfg,
        o.ropeFreqs,
      );
      return temporalToSpatial(g, add(t, y), h, c);
    };
    let h = x;
    const n1 = layerNorm(g, "norm1", h, c);
    const a1 = o.sparseCausal
      ? sparseCausalAttention(g, "attn1", n1, o.frames, c, o.heads)
      : attention(g, "attn1", n1, null, { heads: o.heads, dim: c });
    h = add(h, a1);
    const n2 = layerNorm(g, "norm2", h, c);
    h = add(h, attention(g, "attn2", n2, ctx, { heads: o.heads, dim: c, kvDim: o.contextDim }));
    if (o.temporal?.placement === "before_ff") h = temporalSublayer(h);
    h = add(h, gegluFeedForward(g, "ff", layerNorm(g, "norm3", h, c), c));
    if (o.temporal?.placement === "after_ff") h = temporalSublayer(h);
    return h;
  });
}

/** Transformer3DModel: x [B*F, C, H, W], ctx [B*F, 77, D] -> [B*F, C, H, W]. */
export function transformer3d(
  g: GraphBuilder,
  name: string,
  x: Value,
  ctx: Value,
  o: TransformerOptions,
): Value {
  const c = o.channels;
  return g.scope(name, () => {
    const normed = groupNorm(g, "norm", x, c, o.groups, 1e-6);
    let h = toTokens(g, conv2d(g, "proj_in", normed, c, c, { k: 1 }), c);
    h = transformerBlock(g, "transformer_blocks.0", h, ctx, o);
    const out = conv2d(g, "proj_out", fromTokens(g, h, x), c, c, { k: 1 });
    return g.op("Add", [out, x]);
  });
}
