import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { deflateSync } from "node:zlib";
import { LavieError } from "../core/errors.ts";
import { byteToFloat, floatToByte, framesToTensor, tensorToFrames } from "./convert.ts";
import { decodePng, encodePng } from "./png.ts";
import { readPngFrames, writePngFrames } from "./png-frames.ts";
import type { Frames } from "./types.ts";

function pattern(width: number, height: number, seed: number): Uint8Array {
  const f = new Uint8Array(width * height * 3);
  for (let i = 0; i < f.length; i++) f[i] = (i * 7 + seed * 31 + ((i / 3) | 0)) & 0xff;
  return f;
}

test("PNG encode/decode round trip is lossless", () => {
  for (const [w, h] of [
    [1, 1],
    [5, 3],
    [64, 96],
  ] as const) {
    const rgb = pattern(w, h, w + h);
    const back = decodePng(encodePng(w, h, rgb));
    assert.deepEqual([back.width, back.height], [w, h]);
    assert.deepEqual(back.rgb, rgb);
  }
});

test("PNG reader handles RGBA and all five row filters", () => {
  const w = 4;
  const h = 5;
  const rgba = new Uint8Array(w * h * 4).map((_, i) => (i * 13) & 0xff);
  const stride = w * 4;
  // Encode each row with filter = row index (0 None .. 4 Paeth) by hand.
  const raw = Buffer.alloc((stride + 1) * h);
  for (let y = 0; y < h; y++) {
    raw[y * (stride + 1)] = y;
    for (let x = 0; x < stride; x++) {
      const a = x >= 4 ? rgba[y * stride + x - 4]! : 0;
      const b = y > 0 ? rgba[(y - 1) * stride + x]! : 0;
      const c = x >= 4 && y > 0 ? rgba[(y - 1) * stride + x - 4]! : 0;
      const p = a + b - c;
      const paeth =
        Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c)
          ? a
          : Math.abs(p - b) <= Math.abs(p - c)
            ? b
            : c;
      const pred = [0, a, b, (a + b) >> 1, paeth][y]!;
      raw[y * (stride + 1) + 1 + x] = (rgba[y * stride + x]! - pred) & 0xff;
    }
  }
  // Frame the chunks by hand (the writer only produces RGB with the Sub filter).
  const rgbPng = encodePng(1, 1, new Uint8Array(3));
  const sig = rgbPng.subarray(0, 8);
  const crcOf = (buf: Buffer) => decodeCrc(buf);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 6, 0, 0, 0], 8);
  const png = Buffer.concat([
    sig,
    mkChunk("IHDR", ihdr, crcOf),
    mkChunk("IDAT", deflateSync(raw), crcOf),
    mkChunk("IEND", Buffer.alloc(0), crcOf),
  ]);
  const out = decodePng(png);
  const expected = new Uint8Array(w * h * 3);
  for (let p = 0; p < w * h; p++) expected.set(rgba.subarray(p * 4, p * 4 + 3), p * 3);
  assert.deepEqual(out.rgb, expected);
});

function decodeCrc(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function mkChunk(type: string, data: Buffer, crc: (b: Buffer) => number): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const tail = Buffer.alloc(4);
  tail.writeUInt32BE(crc(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, tail]);
}

test("PNG frame directory round trip; bad frames give invalid_argument on input", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pngdir-"));
  const clip: Frames = { width: 6, height: 4, fps: 8, frames: [0, 1, 2].map((s) => pattern(6, 4, s)) };
  const paths = await writePngFrames(dir, clip);
  assert.deepEqual(
    paths.map((p) => p.slice(dir.length + 1)),
    ["frame_0000.png", "frame_0001.png", "frame_0002.png"],
  );
  assert.deepEqual(await readPngFrames(dir, 8), clip);
  writeFileSync(join(dir, "frame_0003.png"), "garbage");
  await assert.rejects(readPngFrames(dir, 8), (e: unknown) => {
    assert.ok(e instanceof LavieError && e.code === "invalid_argument" && e.field === "input");
    assert.match(e.message, /frame_0003\.png: not a PNG file/);
    return true;
  });
  await assert.rejects(readPngFrames(mkdtempSync(join(tmpdir(), "empty-")), 8), /no PNG frames/);
});

test("tensor <-> rgb24 conversions", () => {
  assert.deepEqual([-1, -0.999, 0, 1, 2, -5, Number.NaN].map(floatToByte), [0, 0, 128, 255, 255, 0, 0]);
  assert.equal(byteToFloat(0), -1);
  assert.equal(byteToFloat(255), 1);
  // [2,3,H=1,W=2]: frame 0 pixel 0 is (R,G,B) = (-1, 0, 1)
  const data = new Float32Array([-1, 1, 0, 0, 1, -1, 1, 1, 1, 1, 1, 1]);
  const frames = tensorToFrames({ shape: [2, 3, 1, 2], data });
  assert.deepEqual(Array.from(frames[0]!), [0, 128, 255, 255, 128, 0]);
  assert.deepEqual(Array.from(frames[1]!), [255, 255, 255, 255, 255, 255]);
  assert.equal(tensorToFrames({ shape: [3, 1, 2], data: data.subarray(0, 6) }).length, 1);
  const back = framesToTensor(frames, 1, 2);
  assert.deepEqual(back.shape, [2, 3, 1, 2]);
  for (let i = 0; i < data.length; i++) assert.ok(Math.abs(back.data[i]! - data[i]!) <= 1 / 127.5);
  assert.throws(() => tensorToFrames({ shape: [4, 1, 2], data: new Float32Array(8) }), /\[3,H,W\]/);
});
