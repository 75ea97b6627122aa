/**
 * Minimal PNG codec on node:zlib (no dependency): writes 8-bit RGB, reads 8-bit RGB/RGBA non-interlaced
 * (what writePngFrames produces and what most tools export). Alpha is dropped on read.
 */
import { deflateSync, inflateSync } from "node:zlib";

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(parts: readonly Uint8Array[]): number {
  let c = 0xffffffff;
  for (const buf of parts) for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32([head.subarray(4), data]), 0);
  return Buffer.concat([head, data, crc]);
}

/** rgb24 pixels -> PNG bytes (8-bit RGB, "Sub" filter on every row). */
export function encodePng(width: number, height: number, rgb: Uint8Array): Buffer {
  if (rgb.length !== width * height * 3) {
    throw new RangeError(
      `encodePng: ${rgb.length} bytes for ${width}x${height} rgb24 (need ${width * height * 3})`,
    );
  }
  const stride = width * 3;
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    const o = y * (stride + 1);
    raw[o] = 1; // Sub
    for (let x = 0; x < stride; x++) {
      const cur = rgb[y * stride + x]!;
      raw[o + 1 + x] = (cur - (x >= 3 ? rgb[y * stride + x - 3]! : 0)) & 0xff;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // bit depth 8, colour type RGB, deflate, adaptive filtering, no interlace
  return Buffer.concat([
    SIGNATURE,
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", new Uint8Array(0)),
  ]);
}

export interface DecodedPng {
  width: number;
  height: number;
  /** rgb24 pixels. */
  rgb: Uint8Array;
}

/** PNG bytes -> rgb24. Throws Error with a precise reason for anything outside 8-bit RGB/RGBA non-interlaced. */
export function decodePng(png: Uint8Array): DecodedPng {
  const buf = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  if (buf.length < 8 || !buf.subarray(0, 8).equals(SIGNATURE))
    throw new Error("not a PNG file (bad signature)");
  let pos = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  for (;;) {
    if (pos + 12 > buf.length) throw new Error("truncated PNG (no IEND chunk)");
    const len = buf.readUInt32BE(pos);
    const type = buf.toString("latin1", pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    if (data.length !== len || pos + 12 + len > buf.length) throw new Error(`truncated PNG chunk ${type}`);
    if (buf.readUInt32BE(pos + 8 + len) !== crc32([buf.subarray(pos + 4, pos + 8), data])) {
      throw new Error(`PNG chunk ${type} has a bad CRC`);
    }
    pos += 12 + len;
    if (type === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const [depth, colorType, , , interlace] = [data[8], data[9], data[10], data[11], data[12]];
      if (depth !== 8 || (colorType !== 2 && colorType !== 6) || interlace !== 0) {
        throw new Error(
          `unsupported PNG format (bit depth ${depth}, colour type ${colorType}, interlace ${interlace}); ` +
            "accepted: 8-bit RGB or RGBA, non-interlaced",
        );
      }
      channels = colorType === 2 ? 3 : 4;
    } else if (type === "IDAT") idat.push(data);
    else if (type === "IEND") break;
  }
  if (channels === 0 || width === 0 || height === 0) throw new Error("PNG without a valid IHDR chunk");
  let raw: Buffer;
  try {
    raw = inflateSync(Buffer.concat(idat));
  } catch (err) {
    throw new Error(`PNG image data does not inflate (${(err as Error).message})`);
  }
  const stride = width * channels;
  if (raw.length < (stride + 1) * height) throw new Error("PNG image data is shorter than the image");
  const px = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const src = y * (stride + 1) + 1;
    const row = y * stride;
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? px[row + x - channels]! : 0;
      const b = y > 0 ? px[row - stride + x]! : 0;
      const c = x >= channels && y > 0 ? px[row - stride + x - channels]! : 0;
      let pred: number;
      if (filter === 0) pred = 0;
      else if (filter === 1) pred = a;
      else if (filter === 2) pred = b;
      else if (filter === 3) pred = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else throw new Error(`PNG row ${y} has unknown filter type ${filter}`);
      px[row + x] = (raw[src + x]! + pred) & 0xff;
    }
  }
  if (channels === 3) return { width, height, rgb: px };
  const rgb = new Uint8Array(width * height * 3);
  for (let p = 0, q = 0; p < px.length; p += 4, q += 3) {
    rgb[q] = px[p]!;
    rgb[q + 1] = px[p + 1]!;
    rgb[q + 2] = px[p + 2]!;
  }
  return { width, height, rgb };
}
