/**
 * safetensors files: an 8-byte little-endian header length, a JSON header mapping tensor names to
 * {dtype, shape, data_offsets} (plus an optional "__metadata__" of strings), then the data region.
 * Every field is checked before anything is allocated, and tensor bytes are read range by range.
 */
import { open, rename, rm } from "node:fs/promises";
import { LavieError } from "../../core/errors.ts";
import {
  checkedNumel,
  contiguousStride,
  DTYPES,
  type Dtype,
  describe,
  f32ToF16Bits,
  ITEM_SIZE,
  isDtype,
  LITTLE_ENDIAN,
  readers,
  type TensorRecord,
} from "./dtypes.ts";
import { RangeFile } from "./file.ts";

/** The reference implementation refuses headers over 100 MB; so do we. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface SafetensorsContents {
  readonly tensors: Map<string, TensorRecord>;
  readonly metadata: Readonly<Record<string, string>> | undefined;
}

interface Span {
  key: string;
  begin: number;
  end: number;
}

export async function readSafetensors(path: string): Promise<SafetensorsContents> {
  const file = await RangeFile.open(path);
  const bad = (message: string) => file.corrupt(message);
  if (file.size < 8) {
    throw bad(`not a safetensors file: ${file.size} bytes, shorter than the 8-byte header length`);
  }
  const lenBig = new DataView((await file.read(0, 8)).buffer).getBigUint64(0, true);
  if (lenBig > BigInt(Math.min(file.size - 8, MAX_HEADER_BYTES))) {
    throw bad(
      `header length ${lenBig} exceeds the file (${file.size} bytes) or the ${MAX_HEADER_BYTES}-byte limit`,
    );
  }
  const headerLen = Number(lenBig);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(await file.read(8, headerLen)));
  } catch (err) {
    throw bad(`header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw bad(`header must be a JSON object, got ${describe(header)}`);
  }
  const dataStart = 8 + headerLen;
  const dataSize = file.size - dataStart;
  let metadata: Record<string, string> | undefined;
  const tensors = new Map<string, TensorRecord>();
  const spans: Span[] = [];
  for (const [key, entry] of Object.entries(header)) {
    if (key === "__metadata__") {
      metadata = checkMetadata(entry, bad);
      continue;
    }
    const what = `${path}: tensor "${key}"`;
    const fail = (message: string) =>
      new LavieError("data_loss", `${what}: ${message}`, { field: path, retryable: false });
    if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
      throw fail("entry must be an object");
    }
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (!isDtype(dtype)) throw fail(`dtype ${JSON.stringify(dtype)} is not one of ${DTYPES.join(", ")}`);
    const itemSize = ITEM_SIZE[dtype];
    const numel = checkedNumel(shape, itemSize, dataSize, what);
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => typeof o === "number" && Number.isSafeInteger(o) && o >= 0)
    ) {
      throw fail(
        `data_offsets must be [begin, end] with non-negative integers, got ${JSON.stringify(offsets)}`,
      );
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataSize) {
      throw fail(`data_offsets [${begin}, ${end}] lie outside the data region of ${dataSize} bytes`);
    }
    if (end - begin !== numel * itemSize) {
      throw fail(
        `data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} [${shape}] needs ${numel * itemSize}`,
      );
    }
    spans.push({ key, begin, end });
    const dims = (shape as number[]).slice();
    tensors.set(key, {
      dtype,
      shape: dims,
      stride: contiguousStride(dims),
      storageOffset: 0,
      numel,
      source: `${path}: ${key}`,
      ...readers(dtype, () => file.read(dataStart + begin, end - begin)),
    });
  }
  checkOverlaps(spans, path);
  // JSON object order is not reliable in JavaScript (integer-like keys come first): use data order.
  const order = spans.sort((a, b) => a.begin - b.begin || a.end - b.end || (a.key < b.key ? -1 : 1));
  return { tensors: new Map(order.map((s) => [s.key, tensors.get(s.key)!])), metadata };
}

function checkMetadata(entry: unknown, bad: (m: string) => LavieError): Record<string, string> {
  if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
    throw bad(`__metadata__ must be an object of strings, got ${describe(entry)}`);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v !== "string") throw bad(`__metadata__["${k}"] must be a string, got ${describe(v)}`);
    Object.defineProperty(out, k, { value: v, enumerable: true });
  }
  return out;
}

function checkOverlaps(spans: Span[], path: string): void {
  const filled = spans.filter((s) => s.end > s.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < filled.length; i++) {
    const prev = filled[i - 1]!;
    const cur = filled[i]!;
    if (cur.begin < prev.end) {
      throw new LavieError(
        "data_loss",
        `${path}: tensor "${cur.key}" bytes [${cur.begin}, ${cur.end}) overlap tensor "${prev.key}" [${prev.begin}, ${prev.end})`,
        { field: path, retryable: false },
      );
    }
  }
}

/** A tensor to write: F32/F16 take float32 values (F16 rounds to nearest even), I64 takes BigInt64Array. */
export interface WritableTensor {
  readonly dtype: "F32" | "F16" | "I64";
  readonly shape: readonly number[];
  readonly data: Float32Array | BigInt64Array;
}

/** Writes a safetensors file (via a temporary file renamed into place), tensors in map order. */
export async function writeSafetensors(
  path: string,
  tensors: ReadonlyMap<string, WritableTensor>,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const [key, t] of tensors) {
    if (key === "__metadata__") {
      throw new LavieError("invalid_argument", `${path}: "__metadata__" is not a tensor name`);
    }
    const numel = t.shape.reduce((a, b) => a * b, 1);
    const wantBig = t.dtype === "I64";
    if (
      !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0) ||
      t.data.length !== numel ||
      t.data instanceof BigInt64Array !== wantBig
    ) {
      throw new LavieError(
        "invalid_argument",
        `${path}: tensor "${key}": ${t.dtype} [${t.shape}] needs ${numel} values in a ${wantBig ? "BigInt64Array" : "Float32Array"}, got ${t.data.length} in ${t.data.constructor.name}`,
        { field: key },
      );
    }
    const size = numel * ITEM_SIZE[t.dtype];
    header[key] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8, "utf-8");
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, "w");
  try {
    await fh.write(head);
    for (const t of tensors.values()) await fh.write(encode(t));
    await fh.close();
    await rename(tmp, path);
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
}

function encode(t: WritableTensor): Uint8Array {
  const dtype: Dtype = t.dtype;
  if (LITTLE_ENDIAN && dtype !== "F16") {
    return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  }
  const out = Buffer.alloc(t.data.length * ITEM_SIZE[dtype]);
  if (t.data instanceof BigInt64Array) {
    for (let i = 0; i < t.data.length; i++) out.writeBigInt64LE(t.data[i]!, i * 8);
  } else if (dtype === "F16") {
    for (let i = 0; i < t.data.length; i++) out.writeUInt16LE(f32ToF16Bits(t.data[i]!), i * 2);
  } else {
    for (let i = 0; i < t.data.length; i++) out.writeFloatLE(t.data[i]!, i * 4);
  }
  return out;
}
