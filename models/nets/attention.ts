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
  /** Rotary embedding on q and k over the sequence axis (rotary dims per head, fixed frequencies). */
  ropeDim?: number;
  /**
   * Rotary embedding with these frequencies (a parameter [rotDim/2], see rotaryFreqs): q is scaled
   * first, then q and k rotate, as LaVie's temporal attention does. Takes precedence over ropeDim.
   */
  ropeFreqs?: { freqs: Value; rotDim: number };
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
  /** Logit scale; defaults to 1/sqrt(d). 1 skips the multiplication (q already scaled). */
  scale: number = 1 / Math.sqrt(d),
): Value {
  const qs = scale === 1 ? q : g.op("Mul", [q, g.constF([scale], [])]);
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
    let scale = 1 / Math.sqrt(d);
    if (opts.ropeFreqs) {
      const { freqs, rotDim } = opts.ropeFreqs;
      q = rope(g, g.op("Mul", [q, g.constF([scale], [])]), d, rotDim, freqs);
      k = rope(g, k, d, rotDim, freqs);
      scale = 1;
    } else if (opts.ropeDim) {
      q = rope(g, q, d, opts.ropeDim);
      k = rope(g, k, d, opts.ropeDim);
    }
    const o = sdpa(g, q, k, v, opts.heads, d, opts.bias, scale);
    return linear(g, "to_out.0", o, opts.dim, opts.dim, { scale: opts.outScale ?? 1 });
  });
}

/** Positions 0..L-1 as float32 [L] for a sequence axis of x. */
function positions(g: GraphBuilder, length: Value): Value {
  const n = g.op("Squeeze", [length, g.constI([0])]);
  return g.op("Cast", [g.op("Range", [g.constI([0], []), n, g.constI([1], [])])], { to: attr.i(1) });
}

/**
 * The frequencies of rotary_embedding_torch's RotaryEmbedding(rotDim) ("lang" variant, theta 10000):
 * freqs_i = 1 / 10000^(2i / rotDim), i < rotDim/2, computed in float32 as torch does.
 */
export function rotaryFrequencies(rotDim: number): Float32Array {
  const f = Math.fround;
  return Float32Array.from({ length: Math.floor(rotDim / 2) }, (_, i) =>
    f(1 / f(10000 ** f((2 * i) / rotDim))),
  );
}

/**
 * The rotary embedding's frequencies as a parameter `<name>.freqs` [rotDim/2] (LaVie saves them in its
 * checkpoints, e.g. attn_temp.rotary_emb.freqs); seeded builds start from rotaryFrequencies(rotDim).
 */
export function rotaryFreqs(g: GraphBuilder, name: string, rotDim: number): Value {
  if (rotDim <= 0 || rotDim % 2 !== 0)
    throw new Error(`${name}: rotary dims must be even and > 0, got ${rotDim}`);
  return g.scope(name, () =>
    g.param("freqs", [rotDim / 2], { kind: "values", values: rotaryFrequencies(rotDim) }),
  );
}

/**
 * Rotary embedding as rotary_embedding_torch 0.2.3's rotate_queries_or_keys applies it (LaVie): the
 * first `rotDim` channels of each head rotate in interleaved pairs (x0,x1),(x2,x3)... by the angle
 * pos * freqs_i (pos = 0..L-1 on axis 2); channels past rotDim pass unchanged.
 * x: [N, h, L, d]. With `freqs` (a Value [rotDim/2]) the angles use it and rotDim must fit in d (as
 * the library asserts); without, fixed frequencies 10000^(-2i/rd) with rd = rotDim clamped to d.
 */
export function rope(g: GraphBuilder, x: Value, d: number, rotDim: number, freqs?: Value): Value {
  if (freqs && (rotDim > d || rotDim % 2 !== 0))
    throw new Error(`rotary embedding: ${rotDim} rotated dims do not fit a head of ${d} (even and <= ${d})`);
  // Rotated channels come in pairs: an odd head width keeps its last channel unrotated.
  const rd = freqs ? rotDim : 2 * Math.floor(Math.min(rotDim, d) / 2);
  if (rd === 0) return x;
  const half = rd / 2;
  const f = freqs ?? g.constF(rotaryFrequencies(rd), [half]);
  const pos = positions(g, dims(g, x, 2, 3)); // [L]
  const ang = g.op("Mul", [g.op("Unsqueeze", [pos, g.constI([1])]), g.op("Unsqueeze", [f, g.constI([0])])]); // [L, half]
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
 * T5 bucket of every |n| = |query - key| in 0..maxDistance, as LaVie's RelativePositionBias computes
 * it in float32: |n| < exact keeps |n|; otherwise min(half - 1, exact + trunc(ln(|n|/exact) /
 * ln(maxDistance/exact) * (half - exact))), half = buckets/2, exact = half/2. From maxDistance on the
 * bucket is half - 1, so the table covers every distance (index min(|n|, maxDistance)).
 */
export function relativeBucketTable(buckets: number, maxDistance: number): number[] {
  const f = Math.fround;
  const half = Math.floor(buckets / 2);
  const exact = Math.floor(half / 2);
  if (exact < 1 || maxDistance <= exact)
    throw new Error(`relative position bias: needs buckets >= 4 and maxDistance > ${exact} (buckets/4)`);
  const logRange = f(Math.log(maxDistance / exact));
  return Array.from({ length: maxDistance + 1 }, (_, n) => {
    if (n < exact) return n;
    const scaled = f(f(f(Math.log(f(n / exact))) / logRange) * (half - exact));
    return Math.min(half - 1, exact + Math.trunc(scaled));
  });
}

/**
 * T5-style relative position bias over a sequence of length L (LaVie's RelativePositionBias): for
 * query i and key j, n = i - j; keys after the query (n < 0) use the upper half of the buckets; the
 * bucket of |n| comes from relativeBucketTable. A learned table [buckets, heads] -> bias [heads, L, L].
 */
export function relativePositionBias(
  g: GraphBuilder,
  name: string,
  length: Value,
  heads: number,
  buckets = 32,
  maxDistance = 32,
): Value {
  const table = relativeBucketTable(buckets, maxDistance);
  return g.scope(name, () => {
    const weight = g.param("relative_attention_bias.weight", [buckets, heads], { kind: "normal", std: 0.02 });
    const n = g.op("Squeeze", [length, g.constI([0])]);
    const idx = g.op("Range", [g.constI([0], []), n, g.constI([1], [])]); // [L] int64
    // n = query - key: rows are queries i, columns keys j
    const rel = g.op("Sub", [
      g.op("Unsqueeze", [idx, g.constI([1])]),
      g.op("Unsqueeze", [idx, g.constI([0])]),
    ]);
    const neg = g.op("Cast", [g.op("Less", [rel, g.constI([0], [])])], { to: attr.i(7) });
    const base = g.op("Mul", [neg, g.constI([Math.floor(buckets / 2)], [])]);
    const dist = g.op("Min", [g.op("Abs", [rel]), g.constI([maxDistance], [])]);
    const bucket = g.op("Add", [base, g.op("Gather", [g.constI(table), dist], { axis: attr.i(0) })]); // [L, L]
    const values = g.op("Gather", [weight, bucket], { axis: attr.i(0) }); // [L, L, heads]
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
