/**
 * Position-keyed Gaussian noise: every value is a pure function of
 * (seed, stage, step, global flat index in the full tensor), so any split of a tensor into boxes,
 * in any order, on any machine, draws exactly the noise of the matching slice of the whole tensor.
 *
 * Exact derivation (reproducible in any language):
 *  1. h = FNV-1a-64 over the bytes  UTF-8(stage) || 0x00 || u64_le(step)
 *     (offset basis 0xcbf29ce484222325, prime 0x100000001b3, arithmetic mod 2^64).
 *     The 9-byte fixed-length suffix makes the encoding injective.
 *  2. Philox4x32-10 key  = (k0, k1) = (seed mod 2^32, floor(seed / 2^32))
 *     [seed: a job seed, 0..2^53 - 1 (core/seed.ts); the derivation itself is defined up to 2^64]
 *  3. For the element with row-major flat index i in the FULL tensor (i < 2^53):
 *       j = floor(i / 4), counter = (j mod 2^32, floor(j / 2^32), h mod 2^32, floor(h / 2^32))
 *       (x0, x1, x2, x3) = Philox4x32-10(counter, key)
 *  4. Box-Muller in float64, pair p = floor((i mod 4) / 2) uses (a, b) = (x_{2p}, x_{2p+1}):
 *       r = sqrt(-2 * ln((a + 1) * 2^-32)),  theta = 2 * pi * (b * 2^-32)
 *       value = r * cos(theta) if i is even, r * sin(theta) if i is odd; stored as float32.
 * The (stage, step) hash lives in the counter rather than being mixed (e.g. XORed) into the key, so
 * distinct (seed, stage, step) never share a (key, counter) pair unless the 64-bit hash collides.
 * V8's Math.log/cos/sin are fdlibm ports; other libms may differ by 1 ulp in float64, which almost
 * never survives the rounding to float32.
 */
import { invalidArgument } from "../errors.ts";
import { checkJobSeed } from "../seed.ts";
import type { Box, Tensor } from "../tensor.ts";
import { numel, stridesOf } from "../tensor.ts";
import { philoxBlock, philoxRoundKeys } from "./philox.ts";

export interface NoiseKey {
  /** The job seed: an integer in 0..MAX_JOB_SEED (core/seed.ts). */
  readonly seed: number;
  /** Stage name, e.g. "base", "interp", "vsr". */
  readonly stage: string;
  /** Sampler step index (a non-negative integer); use a distinct step for initial latents. */
  readonly step: number;
}

const MASK64 = (1n << 64n) - 1n;
const INV32 = 2 ** -32;
const TWO_PI = 2 * Math.PI;

/** FNV-1a-64 of UTF-8(stage) || 0x00 || u64_le(step), as a bigint. */
export function stageStepHash(stage: string, step: number): bigint {
  const text = new TextEncoder().encode(stage);
  const bytes = new Uint8Array(text.length + 9);
  bytes.set(text, 0);
  new DataView(bytes.buffer).setBigUint64(text.length + 1, BigInt(step), true);
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) h = ((h ^ BigInt(b)) * 0x100000001b3n) & MASK64;
  return h;
}

/** The resolved generator state for one key: Philox round keys and counter words 2-3. */
export interface NoiseStream {
  readonly roundKeys: Uint32Array;
  readonly h0: number;
  readonly h1: number;
}

/** Validates a key and derives its stream (see the file header). */
export function noiseStream(key: NoiseKey): NoiseStream {
  const { stage, step } = key;
  const seed = checkJobSeed(key.seed);
  if (typeof stage !== "string") throw invalidArgument("stage", "must be a string");
  if (!Number.isSafeInteger(step) || step < 0) {
    throw invalidArgument("step", `must be a non-negative integer, got ${step}`);
  }
  const h = stageStepHash(stage, step);
  return {
    roundKeys: philoxRoundKeys(seed % 2 ** 32, Math.floor(seed / 2 ** 32)),
    h0: Number(h & 0xffffffffn),
    h1: Number(h >> 32n),
  };
}

/**
 * Writes the normals for flat indices [flatStart, flatStart + len) of the full tensor into
 * out[outOffset .. outOffset + len).
 */
export function fillNormals(
  stream: NoiseStream,
  flatStart: number,
  out: Float32Array,
  outOffset: number,
  len: number,
): void {
  if (len <= 0) return;
  const { roundKeys, h0, h1 } = stream;
  const x = new Uint32Array(4);
  const v = new Float64Array(4);
  const end = flatStart + len;
  let j = Math.floor(flatStart / 4);
  const jEnd = Math.floor((end - 1) / 4);
  for (; j <= jEnd; j++) {
    const jLo = j >>> 0;
    philoxBlock(jLo, (j - jLo) * INV32, h0, h1, roundKeys, x);
    const r0 = Math.sqrt(-2 * Math.log((x[0]! + 1) * INV32));
    const t0 = TWO_PI * (x[1]! * INV32);
    const r1 = Math.sqrt(-2 * Math.log((x[2]! + 1) * INV32));
    const t1 = TWO_PI * (x[3]! * INV32);
    const base = 4 * j;
    if (base >= flatStart && base + 4 <= end) {
      const o = outOffset + (base - flatStart);
      out[o] = r0 * Math.cos(t0);
      out[o + 1] = r0 * Math.sin(t0);
      out[o + 2] = r1 * Math.cos(t1);
      out[o + 3] = r1 * Math.sin(t1);
    } else {
      v[0] = r0 * Math.cos(t0);
      v[1] = r0 * Math.sin(t0);
      v[2] = r1 * Math.cos(t1);
      v[3] = r1 * Math.sin(t1);
      const lo = Math.max(base, flatStart);
      const hi = Math.min(base + 4, end);
      for (let i = lo; i < hi; i++) out[outOffset + (i - flatStart)] = v[i - base]!;
    }
  }
}

function checkShape(fullShape: readonly number[]): void {
  for (let d = 0; d < fullShape.length; d++) {
    const n = fullShape[d]!;
    if (!Number.isSafeInteger(n) || n < 0) {
      throw invalidArgument("shape", `dimension ${d} must be a non-negative integer, got ${n}`);
    }
  }
  if (numel(fullShape) > Number.MAX_SAFE_INTEGER) {
    throw invalidArgument("shape", "has more than 2^53 elements");
  }
}

function checkBox(fullShape: readonly number[], box: Box): void {
  const rank = fullShape.length;
  if (box.start.length !== rank || box.size.length !== rank) {
    throw invalidArgument(
      "box",
      `rank ${box.start.length}/${box.size.length} does not match shape rank ${rank}`,
    );
  }
  for (let d = 0; d < rank; d++) {
    const s = box.start[d]!;
    const z = box.size[d]!;
    if (!Number.isInteger(s) || !Number.isInteger(z) || s < 0 || z < 0 || s + z > fullShape[d]!) {
      throw invalidArgument("box", `[${s}, ${s + z}) is outside dimension ${d} of size ${fullShape[d]}`);
    }
  }
}

/** The noise of `box` inside a tensor of shape `fullShape` (equals sliceBox(noiseFull(...), box)). */
export function noiseBox(key: NoiseKey, fullShape: readonly number[], box: Box): Tensor {
  checkShape(fullShape);
  checkBox(fullShape, box);
  const stream = noiseStream(key);
  const rank = fullShape.length;
  const out = new Float32Array(numel(box.size));
  if (out.length === 0) return { shape: [...box.size], data: out };
  if (rank === 0) {
    fillNormals(stream, 0, out, 0, 1);
    return { shape: [], data: out };
  }
  const st = stridesOf(fullShape);
  const run = box.size[rank - 1]!;
  const outer = out.length / run;
  const idx = new Array<number>(rank - 1).fill(0);
  for (let o = 0; o < outer; o++) {
    let off = box.start[rank - 1]!;
    for (let d = 0; d < rank - 1; d++) off += (box.start[d]! + idx[d]!) * st[d]!;
    fillNormals(stream, off, out, o * run, run);
    for (let d = rank - 2; d >= 0; d--) {
      idx[d]!++;
      if (idx[d]! < box.size[d]!) break;
      idx[d] = 0;
    }
  }
  return { shape: [...box.size], data: out };
}

/** The noise of a whole tensor of shape `shape`. */
export function noiseFull(key: NoiseKey, shape: readonly number[]): Tensor {
  checkShape(shape);
  const stream = noiseStream(key);
  const out = new Float32Array(numel(shape));
  fillNormals(stream, 0, out, 0, out.length);
  return { shape: [...shape], data: out };
}
