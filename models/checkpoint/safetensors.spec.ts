import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { appendFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { decode, f32ToF16Bits } from "./dtypes.ts";
import { readSafetensors, writeSafetensors } from "./safetensors.ts";

const dir = mkdtempSync(join(tmpdir(), "lavie-safetensors-"));
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
/** Writes a safetensors file from a header (object or raw string) and a data region. */
function file(header: unknown, data: Uint8Array = new Uint8Array(0), lengthField?: bigint): string {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthField ?? BigInt(json.length));
  const path = join(dir, `case${n++}.safetensors`);
  writeFileSync(path, Buffer.concat([len, json, data]));
  return path;
}

async function refused(path: string, pattern: RegExp): Promise<void> {
  await assert.rejects(readSafetensors(path), (err: unknown) => {
    assert.ok(err instanceof LavieError, `expected LavieError, got ${err}`);
    assert.equal(err.code, "data_loss");
    assert.ok(err.message.startsWith(path), err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

test("round trip: F32, F16 (rounded to nearest even), I64 and metadata", async () => {
  const path = join(dir, "roundtrip.safetensors");
  const f32 = Float32Array.from([1.5, -2.25, 1.2345678, 0, 1e-30, -1e30]);
  const f16 = Float32Array.from([1 / 3, 65504, 65520, 2 ** -24, 2 ** -25, -0.1]);
  const i64 = BigInt64Array.from([0n, -1n, 2n ** 62n]);
  await writeSafetensors(
    path,
    new Map([
      ["a.weight", { dtype: "F32", shape: [2, 3], data: f32 }],
      ["b", { dtype: "F16", shape: [6], data: f16 }],
      ["steps", { dtype: "I64", shape: [3, 1], data: i64 }],
      ["empty", { dtype: "F32", shape: [0, 4], data: new Float32Array(0) }],
    ] as const),
    { format: "pt" },
  );
  const { tensors, metadata } = await readSafetensors(path);
  assert.deepEqual(metadata, { format: "pt" });
  assert.deepEqual([...tensors.keys()], ["a.weight", "b", "steps", "empty"]);
  const a = tensors.get("a.weight")!;
  assert.deepEqual([a.dtype, a.shape, a.stride, a.numel], ["F32", [2, 3], [3, 1], 6]);
  assert.deepEqual(await a.read(), f32);
  const b = tensors.get("b")!;
  assert.equal(b.dtype, "F16");
  // 1/3 -> 0x3555, 65520 overflows to +inf, 2^-25 is a tie that rounds to even (zero).
  assert.deepEqual(
    [...(await b.readBytes())],
    [0x55, 0x35, 0xff, 0x7b, 0x00, 0x7c, 0x01, 0x00, 0x00, 0x00, 0x66, 0xae],
  );
  assert.deepEqual(
    await b.read(),
    Float32Array.from([0.333251953125, 65504, Infinity, 2 ** -24, 0, -0.0999755859375]),
  );
  assert.deepEqual(await tensors.get("steps")!.read(), i64);
  assert.deepEqual(await tensors.get("steps")!.readFloat32(), Float32Array.from([0, -1, 2 ** 62]));
  assert.equal((await tensors.get("empty")!.read()).length, 0);
});

test("f32ToF16Bits rounds ties to even and keeps NaN and signed zero", () => {
  assert.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00); // tie between 1 and 1+2^-10 -> even (1)
  assert.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie -> even (1+2^-9)
  assert.equal(f32ToF16Bits(-0), 0x8000);
  assert.equal(f32ToF16Bits(Number.NaN) & 0x7e00, 0x7e00);
  assert.equal(f32ToF16Bits(65519), 0x7bff);
  assert.equal(f32ToF16Bits(2 ** -14 - 2 ** -25), 0x0400); // rounds up into the normal range
});

test("BF16, F64 and small integer types decode to float32 / Int32Array / Uint8Array", async () => {
  const data = Buffer.alloc(2 * 2 + 8 + 2 + 1 + 2);
  data.writeUInt16LE(0x3fc0, 0); // bf16 1.5
  data.writeUInt16LE(0xc020, 2); // bf16 -2.5
  data.writeDoubleLE(0.1, 4);
  data.writeInt16LE(-300, 12);
  data.writeInt8(-5, 14);
  data.writeUInt8(7, 15);
  const path = file(
    {
      h: { dtype: "BF16", shape: [2], data_offsets: [0, 4] },
      d: { dtype: "F64", shape: [], data_offsets: [4, 12] },
      s: { dtype: "I16", shape: [1], data_offsets: [12, 14] },
      c: { dtype: "I8", shape: [1], data_offsets: [14, 15] },
      t: { dtype: "BOOL", shape: [1], data_offsets: [15, 16] },
    },
    data,
  );
  const { tensors } = await readSafetensors(path);
  assert.deepEqual(await tensors.get("h")!.read(), Float32Array.from([1.5, -2.5]));
  assert.deepEqual(await tensors.get("d")!.read(), Float32Array.from([0.1]));
  assert.deepEqual(tensors.get("d")!.shape, []);
  assert.deepEqual(await tensors.get("s")!.read(), Int32Array.from([-300]));
  assert.deepEqual(await tensors.get("c")!.read(), Int32Array.from([-5]));
  assert.deepEqual(await tensors.get("t")!.read(), Uint8Array.from([1]));
});

test("hostile headers are refused with the file and key named, before any allocation", async () => {
  const data = new Uint8Array(16);
  await refused(file("{}", data, 1n << 62n), /header length \d+ exceeds the file/);
  await refused(file("{}", data, 1000n), /header length 1000 exceeds/);
  await refused(file("{not json", data), /not valid UTF-8 JSON/);
  await refused(file("[1,2]", data), /must be a JSON object/);
  await refused(
    file({ w: { dtype: "F8", shape: [1], data_offsets: [0, 1] } }, data),
    /tensor "w": dtype "F8" is not one of/,
  );
  await refused(
    file({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, data),
    /tensor "w".*non-negative/,
  );
  await refused(
    file({ w: { dtype: "F32", shape: [1.5], data_offsets: [0, 4] } }, data),
    /tensor "w".*non-negative/,
  );
  await refused(
    file({ w: { dtype: "F32", shape: "4", data_offsets: [0, 4] } }, data),
    /tensor "w".*shape must be a list/,
  );
  const before = process.memoryUsage().arrayBuffers;
  await refused(
    file({ huge: { dtype: "F32", shape: [1e12, 1e12], data_offsets: [0, 16] } }, data),
    /tensor "huge": shape \[1000000000000, 1000000000000\] needs .* more than the 16 available/,
  );
  await refused(
    file({ huge: { dtype: "F32", shape: [2 ** 53, 2 ** 53], data_offsets: [0, 16] } }, data),
    /tensor "huge"/,
  );
  assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024);
  await refused(
    file({ w: { dtype: "F32", shape: [2], data_offsets: [8, 24] } }, data),
    /tensor "w": data_offsets \[8, 24\] lie outside/,
  );
  await refused(file({ w: { dtype: "F32", shape: [2], data_offsets: [8, 4] } }, data), /lie outside/);
  await refused(
    file({ w: { dtype: "F32", shape: [2], data_offsets: [0, 12] } }, data),
    /hold 12 bytes but F32 \[2\] needs 8/,
  );
  await refused(file({ w: { dtype: "F32", shape: [2], data_offsets: [0] } }, data), /data_offsets must be/);
  await refused(
    file(
      {
        a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
        b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
      },
      data,
    ),
    /tensor "b" bytes \[4, 12\) overlap tensor "a"/,
  );
  await refused(file({ __metadata__: { n: 1 } }, data), /__metadata__\["n"\] must be a string/);
  await refused(file({ w: null }, data), /tensor "w": entry must be an object/);
  const short = join(dir, "short.safetensors");
  writeFileSync(short, Buffer.from([1, 0, 0]));
  await refused(short, /shorter than the 8-byte header length/);
});

test("zero-size tensors may share an offset; a file changed after opening is refused on read", async () => {
  const path = file(
    {
      e1: { dtype: "F32", shape: [0], data_offsets: [4, 4] },
      e2: { dtype: "I64", shape: [3, 0], data_offsets: [4, 4] },
      w: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
    },
    new Uint8Array(4),
  );
  const { tensors } = await readSafetensors(path);
  assert.equal(tensors.size, 3);
  await appendFile(path, "x");
  await assert.rejects(tensors.get("w")!.read(), /changed after it was opened/);
});

test("writeSafetensors refuses data that does not match the shape or dtype", async () => {
  const path = join(dir, "bad-write.safetensors");
  await assert.rejects(
    writeSafetensors(path, new Map([["w", { dtype: "F32", shape: [3], data: new Float32Array(2) }]])),
    /tensor "w": F32 \[3\] needs 3 values in a Float32Array, got 2/,
  );
  await assert.rejects(
    writeSafetensors(path, new Map([["w", { dtype: "I64", shape: [2], data: new Float32Array(2) }]])),
    /needs 2 values in a BigInt64Array/,
  );
});

test("decode copies Buffer views at odd offsets instead of reading their pooled buffer", () => {
  const pooled = Buffer.alloc(9);
  pooled.writeFloatLE(1.5, 1);
  pooled.writeFloatLE(-2, 5);
  assert.deepEqual(decode(pooled.subarray(1), "F32"), Float32Array.from([1.5, -2]));
  assert.deepEqual(decode(pooled.subarray(1, 5), "F32", true), Float32Array.from([1.5]));
});

test("a tensor larger than one JavaScript buffer is refused on read, not crashed on", async () => {
  const size = 2 ** 32 + 8;
  const path = file({ big: { dtype: "U8", shape: [size], data_offsets: [0, size] } });
  truncateSync(path, statSync(path).size + size); // sparse: no disk space is used
  const { tensors } = await readSafetensors(path);
  await assert.rejects(tensors.get("big")!.read(), (err: unknown) => {
    assert.ok(err instanceof LavieError);
    assert.equal(err.code, "failed_precondition");
    assert.match(err.message, /a 4294967304-byte read is larger than one JavaScript buffer can hold/);
    return true;
  });
});
