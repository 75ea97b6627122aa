/**
 * Test helpers that build archives and pickles byte by byte, so the specs can hand the readers
 * exactly the (often hostile) files they need.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { crc32, deflateRawSync } from "node:zlib";
import type { TensorData } from "./dtypes.ts";

/** test/golden/checkpoint_fixtures, written by python/lavie_ref/golden/checkpoint_fixtures.py. */
export const FIXTURES = join(
  dirname(fileURLToPath(import.meta.url)),
  "..",
  "..",
  "test",
  "golden",
  "checkpoint_fixtures",
);

export interface Expected {
  dtype: string;
  shape: number[];
  /** Row-major values as float32 numbers; int64 as decimal strings. */
  values: (number | string)[];
}

/** expected.json: file -> key -> Expected (nested files: file -> entry -> key -> Expected). */
export function expected(): Record<string, Record<string, Expected & Record<string, Expected>>> {
  return JSON.parse(readFileSync(join(FIXTURES, "expected.json"), "utf-8"));
}

/** Decoded values in the form expected.json uses. */
export function valuesOf(data: TensorData): (number | string)[] {
  return Array.from(data as ArrayLike<number | bigint>, (v) => (typeof v === "bigint" ? String(v) : v));
}

export interface ZipInput {
  name: string;
  data: Uint8Array;
  /** 0 = stored (default), 8 = deflate. */
  method?: 0 | 8;
}

/** A ZIP archive; with zip64 the end record defers to a ZIP64 record and every size sits in an extra field. */
export function buildZip(inputs: readonly ZipInput[], opts: { zip64?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const e of inputs) {
    const name = Buffer.from(e.name);
    const method = e.method ?? 0;
    const body = method === 8 ? deflateRawSync(e.data) : Buffer.from(e.data);
    const crc = crc32(e.data) >>> 0;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(opts.zip64 ? 45 : 20, 4);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(e.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    parts.push(local, name, body);
    const extra = Buffer.alloc(opts.zip64 ? 28 : 0);
    if (opts.zip64) {
      extra.writeUInt16LE(1, 0);
      extra.writeUInt16LE(24, 2);
      extra.writeBigUInt64LE(BigInt(e.data.length), 4);
      extra.writeBigUInt64LE(BigInt(body.length), 12);
      extra.writeBigUInt64LE(BigInt(offset), 20);
    }
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(opts.zip64 ? 45 : 20, 4);
    c.writeUInt16LE(opts.zip64 ? 45 : 20, 6);
    c.writeUInt16LE(method, 10);
    c.writeUInt32LE(crc, 16);
    c.writeUInt32LE(opts.zip64 ? 0xffffffff : body.length, 20);
    c.writeUInt32LE(opts.zip64 ? 0xffffffff : e.data.length, 24);
    c.writeUInt16LE(name.length, 28);
    c.writeUInt16LE(extra.length, 30);
    c.writeUInt32LE(opts.zip64 ? 0xffffffff : offset, 42);
    central.push(c, name, extra);
    offset += local.length + name.length + body.length;
  }
  const cd = Buffer.concat(central);
  const end: Buffer[] = [];
  if (opts.zip64) {
    const rec = Buffer.alloc(56);
    rec.writeUInt32LE(0x06064b50, 0);
    rec.writeBigUInt64LE(44n, 4);
    rec.writeUInt16LE(45, 12);
    rec.writeUInt16LE(45, 14);
    rec.writeBigUInt64LE(BigInt(inputs.length), 24);
    rec.writeBigUInt64LE(BigInt(inputs.length), 32);
    rec.writeBigUInt64LE(BigInt(cd.length), 40);
    rec.writeBigUInt64LE(BigInt(offset), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(offset + cd.length), 8);
    loc.writeUInt32LE(1, 16);
    end.push(rec, loc);
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(opts.zip64 ? 0xffff : inputs.length, 8);
  eocd.writeUInt16LE(opts.zip64 ? 0xffff : inputs.length, 10);
  eocd.writeUInt32LE(opts.zip64 ? 0xffffffff : cd.length, 12);
  eocd.writeUInt32LE(opts.zip64 ? 0xffffffff : offset, 16);
  return Buffer.concat([...parts, cd, ...end, eocd]);
}

/** Assembles a pickle opcode by opcode (protocol 2 unless changed). */
export class PickleWriter {
  private readonly parts: Buffer[] = [Buffer.from([0x80, 2])];

  op(...bytes: number[]): this {
    this.parts.push(Buffer.from(bytes));
    return this;
  }

  str(s: string): this {
    const b = Buffer.from(s);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    return this.op(0x58).raw(len).raw(b);
  }

  /** BININT, or LONG1 with 8 bytes beyond 32 bits. */
  int(n: number): this {
    if (n >= -(2 ** 31) && n < 2 ** 31) {
      const b = Buffer.alloc(4);
      b.writeInt32LE(n);
      return this.op(0x4a).raw(b);
    }
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(BigInt(n));
    return this.op(0x8a, 8).raw(b);
  }

  /** GLOBAL module\nname\n */
  global(module: string, name: string): this {
    return this.op(0x63).raw(Buffer.from(`${module}\n${name}\n`));
  }

  /** MARK, the items, TUPLE */
  tuple(fill: (w: this) => void): this {
    this.op(0x28);
    fill(this);
    return this.op(0x74);
  }

  /** A tuple of ints. */
  ints(values: readonly number[]): this {
    return this.tuple((w) => {
      for (const v of values) w.int(v);
    });
  }

  raw(b: Uint8Array): this {
    this.parts.push(Buffer.from(b));
    return this;
  }

  /** STOP and the bytes. */
  done(): Buffer {
    return Buffer.concat([...this.parts, Buffer.from([0x2e])]);
  }
}
