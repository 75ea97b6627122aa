/**
 * Standard Stable Diffusion building blocks as ONNX subgraphs (see shared notes ARCHITECTURE.md).
 * Every function takes the GraphBuilder and the input Value and returns the output Value; parameters
 * are named by the current scope (g.scope("down.0.resnets.1", ...)), like diffusers' state dicts.
 *
 * Image tensors inside the networks are [N, C, H, W] with N = batch x frames ("frames folded into the
 * batch"): 2D convolutions then act per frame, as in LaVie; groupNorm acts per frame, groupNormFrames
 * (LaVie's resnets and conv_norm_out) over all frames of a clip.
 */
import { attr, type GraphBuilder, type Value } from "../onnx/graph.ts";

/** PyTorch's default init bound for a layer with this fan-in (kaiming-uniform with a = sqrt(5)). */
export function fanInBound(fanIn: number): number {
  return 1 / Math.sqrt(fanIn);
}

export function conv2d(
  g: GraphBuilder,
  name: string,
  x: Value,
  cin: number,
  cout: number,
  opts: { k?: number; stride?: number; bias?: boolean; scale?: number } = {},
): Value {
  const k = opts.k ?? 3;
  const stride = opts.stride ?? 1;
  const p = Math.floor(k / 2);
  return g.scope(name, () => {
    const bound = fanInBound(cin * k * k) * (opts.scale ?? 1);
    const w = g.param("weight", [cout, cin, k, k], { kind: "uniform", bound });
    const b = opts.bias === false ? null : g.param("bias", [cout], { kind: "uniform", bound });
    return g.op("Conv", b ? [x, w, b] : [x, w], {
      kernel_shape: attr.ints([k, k]),
      pads: attr.ints([p, p, p, p]),
      strides: attr.ints([stride, stride]),
    });
  });
}

/**
 * y = x W^T + b over the last axis. The weight is stored as PyTorch stores it, [dout, din], so that
 * checkpoints import unchanged; ONNX Runtime folds the constant Transpose when the session loads.
 */
export function linear(
  g: GraphBuilder,
  name: string,
  x: Value,
  din: number,
  dout: number,
  opts: { bias?: boolean; scale?: number } = {},
): Value {
  return g.scope(name, () => {
    const bound = fanInBound(din) * (opts.scale ?? 1);
    const w = g.param("weight", [dout, din], { kind: "uniform", bound });
    const y = g.op("MatMul", [x, transpose(g, w, [1, 0])]);
    if (opts.bias === false) return y;
    return g.op("Add", [y, g.param("bias", [dout], { kind: "uniform", bound })]);
  });
}

/**
 * GroupNorm (per-channel scale and bias) on [N, C, ...], as torch computes it: the variance is taken
 * of the centred values (two passes). ONNX Runtime's GroupNormalization kernel loses precision when a
 * group's mean is large against its spread (7.7e-3 error at mean/std = 100, against ~1e-6 here).
 */
export function groupNorm(
  g: GraphBuilder,
  name: string,
  x: Value,
  channels: number,
  groups: number,
  eps: number,
) {
  return g.scope(name, () => {
    const scale = g.param("weight", [channels], { kind: "ones" });
    const bias = g.param("bias", [channels], { kind: "zeros" });
    const grouped = reshape(g, x, [0, groups, -1]); // groups hold consecutive channels
    const axes = g.constI([2]);
    const centred = g.op("Sub", [grouped, g.op("ReduceMean", [grouped, axes], { keepdims: attr.i(1) })]);
    const variance = g.op("ReduceMean", [g.op("Mul", [centred, centred]), axes], { keepdims: attr.i(1) });
    const normed = g.op("Div", [centred, g.op("Sqrt", [g.op("Add", [variance, g.constF([eps], [])])])]);
    const perChannel = reshape(g, normed, [0, channels, -1]);
    const affine = g.op("Add", [
      g.op("Mul", [perChannel, g.op("Unsqueeze", [scale, g.constI([1])])]),
      g.op("Unsqueeze", [bias, g.constI([1])]),
    ]);
    return g.op("Reshape", [affine, dims(g, x, 0)]);
  });
}

/**
 * GroupNorm with statistics shared by all frames of a clip, as LaVie's 3-D resnets apply it to the
 * 5-D [B, C, F, H, W] tensor: x is [B*F, C, H, W] (frames folded, b-major), `frames` a 1-D int64 [1].
 */
export function groupNormFrames(
  g: GraphBuilder,
  name: string,
  x: Value,
  frames: Value,
  channels: number,
  groups: number,
  eps: number,
): Value {
  const clip = unfoldFrames(g, x, frames, channels); // [B, C, F, H, W]
  return foldFrames(g, groupNorm(g, name, clip, channels, groups, eps), channels);
}

export function layerNorm(g: GraphBuilder, name: string, x: Value, dim: number, eps = 1e-5): Value {
  return g.scope(name, () => {
    const scale = g.param("weight", [dim], { kind: "ones" });
    const bias = g.param("bias", [dim], { kind: "zeros" });
    return g.op("LayerNormalization", [x, scale, bias], { axis: attr.i(-1), epsilon: attr.f(eps) });
  });
}

export function silu(g: GraphBuilder, x: Value): Value {
  return g.op("Mul", [x, g.op("Sigmoid", [x])]);
}

export function gelu(g: GraphBuilder, x: Value): Value {
  return g.op("Gelu", [x]);
}

/** CLIP's quick_gelu: x * sigmoid(1.702 x). */
export function quickGelu(g: GraphBuilder, x: Value): Value {
  return g.op("Mul", [x, g.op("Sigmoid", [g.op("Mul", [x, g.constF([1.702], [])])])]);
}

/** A 1-D int64 tensor holding dims [start, end) of x's shape. */
export function dims(g: GraphBuilder, x: Value, start: number, end?: number): Value {
  const a: Record<string, ReturnType<typeof attr.i>> = { start: attr.i(start) };
  if (end !== undefined) a.end = attr.i(end);
  return g.op("Shape", [x], a);
}

/** Concatenates 1-D int64 shape pieces: numbers become constants, Values are used as they are. */
export function shapeOf(g: GraphBuilder, parts: readonly (number | Value)[]): Value {
  const pieces: Value[] = [];
  let run: number[] = [];
  for (const p of parts) {
    if (typeof p === "number") run.push(p);
    else {
      if (run.length) pieces.push(g.constI(run));
      run = [];
      pieces.push(p);
    }
  }
  if (run.length) pieces.push(g.constI(run));
  if (pieces.length === 1) return pieces[0]!;
  return g.op("Concat", pieces, { axis: attr.i(0) });
}

export function reshape(g: GraphBuilder, x: Value, shape: readonly (number | Value)[]): Value {
  return g.op("Reshape", [x, shapeOf(g, shape)]);
}

export function transpose(g: GraphBuilder, x: Value, perm: readonly number[]): Value {
  return g.op("Transpose", [x], { perm: attr.ints(perm) });
}

/** [B, C, F, H, W] -> [B*F, C, H, W] (frames folded into the batch, b-major). */
export function foldFrames(g: GraphBuilder, x: Value, channels: number): Value {
  const hw = dims(g, x, 3, 5);
  return reshape(g, transpose(g, x, [0, 2, 1, 3, 4]), [-1, channels, hw]);
}

/** [B*F, C, H, W] -> [B, C, F, H, W], given F as a 1-D int64 Value. */
export function unfoldFrames(g: GraphBuilder, x: Value, frames: Value, channels: number): Value {
  const hw = dims(g, x, 2, 4);
  return transpose(g, reshape(g, x, [-1, frames, channels, hw]), [0, 2, 1, 3, 4]);
}

/** Repeats a per-batch tensor [B, ...rest] to per-frame [B*F, ...rest] (b-major, like foldFrames). */
export function repeatPerFrame(
  g: GraphBuilder,
  x: Value,
  frames: Value,
  rest: readonly (number | Value)[],
): Value {
  const withAxis = g.op("Unsqueeze", [x, g.constI([1])]); // [B, 1, ...rest]
  const expanded = g.op("Expand", [withAxis, shapeOf(g, [dims(g, x, 0, 1), frames, ...rest])]);
  return reshape(g, expanded, [-1, ...rest]);
}

/**
 * SD resnet block: GroupNorm -> SiLU -> conv3x3 -> + Linear(SiLU(temb)) -> GroupNorm -> SiLU -> conv3x3,
 * plus a 1x1 conv shortcut when channels change. `temb` is [N, tembDim] (per folded frame) or null.
 */
export function resnet(
  g: GraphBuilder,
  name: string,
  x: Value,
  temb: Value | null,
  cin: number,
  cout: number,
  opts: {
    groups?: number;
    eps?: number;
    tembDim?: number;
    outScale?: number;
    /** Frames per clip: norm1/norm2 take statistics over the whole clip (LaVie's ResnetBlock3D). */
    frames?: Value;
  } = {},
): Value {
  const groups = opts.groups ?? 32;
  const eps = opts.eps ?? 1e-5;
  const norm = (n: string, v: Value, c: number): Value =>
    opts.frames ? groupNormFrames(g, n, v, opts.frames, c, groups, eps) : groupNorm(g, n, v, c, groups, eps);
  return g.scope(name, () => {
    let h = silu(g, norm("norm1", x, cin));
    h = conv2d(g, "conv1", h, cin, cout);
    if (temb && opts.tembDim) {
      const t = linear(g, "time_emb_proj", silu(g, temb), opts.tembDim, cout);
      h = g.op("Add", [h, g.op("Unsqueeze", [t, g.constI([2, 3])])]);
    }
    h = silu(g, norm("norm2", h, cout));
    h = conv2d(g, "conv2", h, cout, cout, { scale: opts.outScale ?? 1 });
    const skip = cin === cout ? x : conv2d(g, "conv_shortcut", x, cin, cout, { k: 1 });
    return g.op("Add", [skip, h]);
  });
}

/**
 * Sinusoidal timestep embedding (diffusers' Timesteps): [B] -> [B, dim], angle_i = t * exp(-ln(10000) *
 * i / (dim/2 - freqShift)), i < dim/2; [cos | sin] with flipSinToCos (SD: true, shift 0), else
 * [sin | cos]. The frequencies are rounded step by step in float32, as torch computes them.
 */
export function timestepEmbedding(
  g: GraphBuilder,
  t: Value,
  dim: number,
  opts: { flipSinToCos?: boolean; freqShift?: number } = {},
): Value {
  if (dim % 2 !== 0) throw new Error(`timestep embedding: odd width ${dim} is not supported`);
  const half = dim / 2;
  const f = Math.fround;
  const c = f(-Math.log(10000));
  const shift = opts.freqShift ?? 0;
  const freqs = Array.from({ length: half }, (_, i) => f(Math.exp(f(f(c * i) / (half - shift)))));
  const tf = g.op("Cast", [t], { to: attr.i(1) }); // float32
  const args = g.op("Mul", [g.op("Unsqueeze", [tf, g.constI([1])]), g.constF(freqs, [1, half])]);
  const [cos, sin] = [g.op("Cos", [args]), g.op("Sin", [args])];
  return g.op("Concat", (opts.flipSinToCos ?? true) ? [cos, sin] : [sin, cos], { axis: attr.i(1) });
}

/** Tokens view of an image tensor: [N, C, H, W] -> [N, H*W, C]. */
export function toTokens(g: GraphBuilder, x: Value, channels: number): Value {
  return transpose(g, reshape(g, x, [0, channels, -1]), [0, 2, 1]);
}

/** Back from tokens: [N, H*W, C] -> [N, C, H, W] with the spatial size taken from `like`. */
export function fromTokens(g: GraphBuilder, x: Value, like: Value): Value {
  return g.op("Reshape", [transpose(g, x, [0, 2, 1]), dims(g, like, 0)]);
}

/**
 * Nearest-neighbour resize of x [N, C, H, W] to the spatial size of `like` [*, *, H', W'] (source
 * index floor(dst * in / out), PyTorch's "nearest"): diffusers' Upsample2D with an output size, which
 * equals x2 upsampling whenever the skip connection is exactly twice as large.
 */
export function upsampleNearestLike(g: GraphBuilder, x: Value, like: Value): Value {
  const sizes = g.op("Concat", [dims(g, x, 0, 2), dims(g, like, 2, 4)], { axis: attr.i(0) });
  return g.op("Resize", [x, null, null, sizes], {
    mode: attr.s("nearest"),
    coordinate_transformation_mode: attr.s("asymmetric"),
    nearest_mode: attr.s("floor"),
  });
}

/** Nearest x2 upsampling on [N, C, H, W]. */
export function upsample2x(g: GraphBuilder, x: Value): Value {
  return g.op("Resize", [x, null, g.constF([1, 1, 2, 2])], { mode: attr.s("nearest") });
}
