/**
 * Attention subgraphs: multi-head attention over token sequences, LaVie's temporal attention with
 * rotary position embedding (RoPE) and a T5-style relative position bias, and the helpers that move
 * between the spatial token layout [B*F, HW, C] and the temporal one [B*HW, F, C].
 */
import { attr, type GraphBuilder, type Value } from "../onnx/graph.ts";
import { dims, linear, reshape, transpose } from "./layers.ts";

export interface AttentionOptions {
  heads: number;
  /** Width of the query stream. */
  dim: number;
  /** Width of the key/value source (text for cross-attention); defaults to dim. */
  kvDim?: number;
  /** Rotary embedding on q and k over the sequence axis (rotary dims per head). */
  ropeDim?: number;
  /** Additive bias [heads, Lq, Lk] on the logits. */
  bias?: Value;
  /** The output projection's init scale (small values keep seeded networks well-conditioned). */
  outScale?: number;
}

/** Splits [N, L, heads*d] into heads: [N, heads, L, d]. */
export function splitHeads(g: GraphBuilder, x: Value, heads: number, d: number): Value {
  return transpose(g, reshape(g, x, [0, 0, heads, d]), [0, 2, 1, 3]);
}

/**
 * Scaled dot-product attention on head-split tensors q [N,h,Lq,d], k,v [N,h,Lk,d] -> [N, Lq, h*d].
 */
export function sdpa(
  g: GraphBuilder,
  q: Value,
  k: Value,
  v: Value,
  heads: number,
  d: number,
  bias?: Value,
): Value {
  const qs = g.op("Mul", [q, g.constF([1 / Math.sqrt(d)], [])]);
  let logits = g.op("MatMul", [qs, transpose(g, k, [0, 1, 3, 2])]);
  if (bias) logits = g.op("Add", [logits, bias]);
  const p = g.op("Softmax", [logits], { axis: attr.i(-1) });
  const o = g.op("MatMul", [p, v]); // [N, h, Lq, d]
  return reshape(g, transpose(g, o, [0, 2, 1, 3]), [0, 0, heads * d]);
}

/**
 * Multi-head attention (diffusers Attention): q/k/v projections without bias, output with bias.
 * x: [N, Lq, dim]; context: [N, Lk, kvDim] or null for self-attention.
 */
export function attention(
  g: GraphBuilder,
  name: string,
  x: Value,
  context: Value | null,
  opts: AttentionOptions,
): Value {
  const d = opts.dim / opts.heads;
  const kvDim = opts.kvDim ?? opts.dim;
  return g.scope(name, () => {
    const src = context ?? x;
    let q = splitHeads(g, linear(g, "to_q", x, opts.dim, opts.dim, { bias: false }), opts.heads, d);
    let k = splitHeads(g, linear(g, "to_k", src, kvDim, opts.dim, { bias: false }), opts.heads, d);
    const v = splitHeads(g, linear(g, "to_v", src, kvDim, opts.dim, { bias: false }), opts.heads, d);
    if (opts.ropeDim) {
      q = rope(g, q, d, opts.ropeDim);
      k = rope(g, k, d, opts.ropeDim);
    }
    const o = sdpa(g, q, k, v, opts.heads, d, opts.bias);
    return linear(g, "to_out.0", o, opts.dim, opts.dim, { scale: opts.outScale ?? 1 });
  });
}

/** Positions 0..L-1 as float32 [L] for a sequence axis of x. */
function positions(g: GraphBuilder, length: Value): Value {
  const n = g.op("Squeeze", [length, g.constI([0])]);
  return g.op("Cast", [g.op("Range", [g.constI([0], []), n, g.constI([1], [])])], { to: attr.i(1) });
}

/**
 * Rotary embedding (rotary_embedding_torch, as LaVie uses it): the first `rotDim` channels of each
 * head rotate in interleaved pairs (x0,x1),(x2,x3)... by angle pos * theta^(-2i/rotDim), theta 10000.
 * x: [N, h, L, d] with the sequence on axis 2.
 */
export function rope(g: GraphBuilder, x: Value, d: number, rotDim: number): Value {
  // Rotated channels come in pairs: an odd head width keeps its last channel unrotated.
  const rd = 2 * Math.floor(Math.min(rotDim, d) / 2);
  if (rd === 0) return x;
  const half = rd / 2;
  const invFreq = Array.from({ length: half }, (_, i) => 1 / 10000 ** ((2 * i) / rd));
  const pos = positions(g, dims(g, x, 2, 3)); // [L]
  const ang = g.op("Mul", [g.op("Unsqueeze", [pos, g.constI([1])]), g.constF(invFreq, [1, half])]); // [L, half]
  // Repeat each frequency twice (interleaved): [L, half, 1] -> [L, half, 2] -> [L, rd]
  const ang2 = reshape(g, g.op("Expand", [g.op("Unsqueeze", [ang, g.constI([2])]), g.constI([1, 1, 2])]), [
    0,
    rd,
  ]);
  const cos = g.op("Cos", [ang2]);
  const sin = g.op("Sin", [ang2]);
  let xr = x;
  let xpass: Value | null = null;
  if (rd < d) {
    const parts = g.opN("Split", [x, g.constI([rd, d - rd])], 2, { axis: attr.i(-1) });
    xr = parts[0]!;
    xpass = parts[1]!;
  }
  // rotate_half on interleaved pairs: (a, b) -> (-b, a)
  const pairs = reshape(g, xr, [0, 0, 0, half, 2]);
  const [a, b] = g.opN("Split", [pairs, g.constI([1, 1])], 2, { axis: attr.i(-1) });
  const rotated = reshape(g, g.op("Concat", [g.op("Neg", [b!]), a!], { axis: attr.i(-1) }), [0, 0, 0, rd]);
  const out = g.op("Add", [g.op("Mul", [xr, cos]), g.op("Mul", [rotated, sin])]);
  return xpass ? g.op("Concat", [out, xpass], { axis: attr.i(-1) }) : out;
}

/**
 * T5-style relative position bias over a sequence of length L (LaVie's RelativePositionBias):
 * bucket(j - i) into `buckets` buckets (half per direction, exact below buckets/4, log-spaced up to
 * maxDistance), then a learned table [buckets, heads] -> bias [heads, L, L].
 */
export function relativePositionBias(
  g: GraphBuilder,
  name: string,
  length: Value,
  heads: number,
  buckets = 32,
  maxDistance = 32,
): Value {
  return g.scope(name, () => {
    const table = g.param("relative_attention_bias.weight", [buckets, heads], { kind: "normal", std: 0.02 });
    const n = g.op("Squeeze", [length, g.constI([0])]);
    const idx = g.op("Range", [g.constI([0], []), n, g.constI([1], [])]); // [L] int64
    // n = -(k - q) = q - k: rows are queries i, columns keys j
    const rel = g.op("Sub", [
      g.op("Unsqueeze", [idx, g.constI([1])]),
      g.op("Unsqueeze", [idx, g.constI([0])]),
    ]);
    const nb = buckets / 2;
    const maxExact = nb / 2;
    const neg = g.op("Cast", [g.op("Less", [rel, g.constI([0], [])])], { to: attr.i(7) });
    const base = g.op("Mul", [neg, g.constI([nb], [])]);
    const absN = g.op("Abs", [rel]);
    const isSmall = g.op("Less", [absN, g.constI([maxExact], [])]);
    const nf = g.op("Cast", [g.op("Max", [absN, g.constI([1], [])])], { to: attr.i(1) });
    const logPart = g.op("Mul", [
      g.op("Log", [g.op("Div", [nf, g.constF([maxExact], [])])]),
      g.constF([(nb - maxExact) / Math.log(maxDistance / maxExact)], []),
    ]);
    const large = g.op("Add", [
      g.constI([maxExact], []),
      g.op("Cast", [g.op("Floor", [logPart])], { to: attr.i(7) }),
    ]);
    const largeClamped = g.op("Min", [large, g.constI([nb - 1], [])]);
    const bucket = g.op("Add", [base, g.op("Where", [isSmall, absN, largeClamped])]); // [L, L]
    const values = g.op("Gather", [table, bucket], { axis: attr.i(0) }); // [L, L, heads]
    return transpose(g, values, [2, 0, 1]);
  });
}

/** Spatial tokens [B*F, HW, C] -> temporal tokens [B*HW, F, C]. */
export function spatialToTemporal(g: GraphBuilder, x: Value, frames: Value, channels: number): Value {
  const hw = dims(g, x, 1, 2);
  const bfhw = reshape(g, x, [-1, frames, hw, channels]);
  return reshape(g, transpose(g, bfhw, [0, 2, 1, 3]), [-1, frames, channels]);
}

/** Temporal tokens [B*HW, F, C] -> spatial tokens [B*F, HW, C], with HW taken from `likeSpatial`. */
export function temporalToSpatial(g: GraphBuilder, x: Value, likeSpatial: Value, channels: number): Value {
  const hw = dims(g, likeSpatial, 1, 2);
  const frames = dims(g, x, 1, 2);
  const bhwf = reshape(g, x, [-1, hw, frames, channels]);
  return reshape(g, transpose(g, bhwf, [0, 2, 1, 3]), [-1, hw, channels]);
}
