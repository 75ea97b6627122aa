/**
 * Element types of checkpoint tensors, the record every reader returns, and the conversions from
 * on-disk bytes (always little-endian) to JavaScript typed arrays.
 */
import { LavieError } from "../../core/errors.ts";

/** Element types as safetensors spells them; torch storages map onto the same set. */
export type Dtype = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

export const ITEM_SIZE: Readonly<Record<Dtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export const DTYPES = Object.keys(ITEM_SIZE) as Dtype[];

export function isDtype(v: unknown): v is Dtype {
  return typeof v === "string" && Object.hasOwn(ITEM_SIZE, v);
}

/**
 * Decoded tensor values: floats (F64/F32/F16/BF16) as Float32Array, I64 as BigInt64Array,
 * I32/I16/I8/U8 as Int32Array, BOOL as Uint8Array (0 or 1).
 */
export type TensorData = Float32Array | BigInt64Array | Int32Array | Uint8Array;

/** One tensor of a checkpoint, located but not yet read. */
export interface TensorRecord {
  /** Element type on disk. */
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  /** Strides in elements (row-major contiguous for safetensors). */
  readonly stride: readonly number[];
  /** Offset in elements into the underlying storage (0 for safetensors). */
  readonly storageOffset: number;
  readonly numel: number;
  /** Where the data lives, for messages: "<file>: <key or storage>". */
  readonly source: string;
  /** The values in row-major order, decoded as described by TensorData. */
  read(): Promise<TensorData>;
  /** The values in row-major order as float32 (integers converted). */
  readFloat32(): Promise<Float32Array>;
  /** The values in row-major order as little-endian bytes of `dtype` (no conversion). */
  readBytes(): Promise<Uint8Array>;
}

/**
 * Number of elements of `shape`, refusing anything that is not a list of non-negative safe integers
 * or whose byte size would exceed `maxBytes` (so no caller ever allocates more than a file holds).
 */
export function checkedNumel(shape: unknown, itemSize: number, maxBytes: number, what: string): number {
  if (!Array.isArray(shape)) throw dataLoss(what, `shape must be a list of integers, got ${describe(shape)}`);
  let n = 1;
  for (const d of shape) {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
      throw dataLoss(what, `shape [${shape.join(", ")}] must hold non-negative integers`);
    }
    n *= d;
  }
  if (n === 0) return 0;
  // The product is computed in doubles; overflowing it only makes it larger, so it still fails here.
  if (n * itemSize > maxBytes) {
    throw dataLoss(
      what,
      `shape [${shape.join(", ")}] needs ${n * itemSize} bytes, more than the ${maxBytes} available`,
    );
  }
  return n;
}

/** Row-major strides in elements (the project's one definition, core/tensor.ts). */
export { stridesOf as contiguousStride } from "../../core/tensor.ts";

export function dataLoss(field: string, message: string): LavieError {
  return new LavieError("data_loss", `${field}: ${message}`, { field, retryable: false });
}

export function describe(v: unknown): string {
  if (v === null) return "None";
  if (Array.isArray(v)) return Object.isFrozen(v) ? "a tuple" : "a list";
  if (v instanceof Map) return "a dict";
  if (v instanceof Uint8Array) return "bytes";
  if (typeof v === "object") return (v as object).constructor?.name ?? "an object";
  return `${typeof v} ${String(v).slice(0, 40)}`;
}

const F16_TABLE = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24;
    else if (exp === 31) t[h] = frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return t;
})();

/** Rounds a float32 to the nearest float16 (ties to even), returning its bits. */
const SCRATCH_F32 = new Float32Array(1);
const SCRATCH_U32 = new Uint32Array(SCRATCH_F32.buffer);

export function f32ToF16Bits(x: number): number {
  SCRATCH_F32[0] = x;
  const bits = SCRATCH_U32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rest > half || (rest === half && h & 1)) h++;
    return sign | h;
  }
  let h = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) {
    h++;
    if (h === 0x400) {
      h = 0;
      e++;
      if (e >= 31) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | h;
}

export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * `bytes` as a native-endian buffer of its own: a copy (byte-swapped on big-endian hosts), or, when
 * the caller hands over a freshly read array that spans its whole buffer, that buffer itself.
 */
function nativeBuffer(bytes: Uint8Array, itemSize: number, owned: boolean): ArrayBuffer {
  if (owned && LITTLE_ENDIAN && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) {
    return bytes.buffer as ArrayBuffer;
  }
  const copy = new Uint8Array(bytes); // a copy in its own buffer (Buffer#slice would be a view)
  if (!LITTLE_ENDIAN && itemSize > 1) {
    for (let i = 0; i < copy.length; i += itemSize) copy.subarray(i, i + itemSize).reverse();
  }
  return copy.buffer;
}

/**
 * Decodes little-endian bytes of `dtype` (length a multiple of the item size). With `owned`, the
 * result may share memory with `bytes` (for arrays the caller will not use again).
 */
export function decode(bytes: Uint8Array, dtype: Dtype, owned = false): TensorData {
  const buf = nativeBuffer(bytes, ITEM_SIZE[dtype], owned);
  switch (dtype) {
    case "F32":
      return new Float32Array(buf);
    case "F64":
      return Float32Array.from(new Float64Array(buf));
    case "F16": {
      const src = new Uint16Array(buf);
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = F16_TABLE[src[i]!]!;
      return out;
    }
    case "BF16": {
      const src = new Uint16Array(buf);
      const out = new Float32Array(src.length);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < src.length; i++) u[i] = src[i]! << 16;
      return out;
    }
    case "I64":
      return new BigInt64Array(buf);
    case "I32":
      return new Int32Array(buf);
    case "I16":
      return Int32Array.from(new Int16Array(buf));
    case "I8":
      return Int32Array.from(new Int8Array(buf));
    case "U8":
      return Int32Array.from(new Uint8Array(buf));
    case "BOOL":
      return Uint8Array.from(new Uint8Array(buf), (b) => (b ? 1 : 0));
  }
}

export function toFloat32(data: TensorData): Float32Array {
  if (data instanceof Float32Array) return data;
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = Number(data[i]!);
  return out;
}

/** Builds the three read methods of a TensorRecord from a function returning fresh raw bytes on each call. */
export function readers(
  dtype: Dtype,
  readBytes: () => Promise<Uint8Array>,
): Pick<TensorRecord, "read" | "readFloat32" | "readBytes"> {
  return {
    readBytes,
    read: async () => decode(await readBytes(), dtype, true),
    readFloat32: async () => toFloat32(decode(await readBytes(), dtype, true)),
  };
}
