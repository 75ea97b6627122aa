/**
 * Pure conversions between model tensors and rgb24 frames (no I/O).
 * Model side: float32 [3,H,W] or [F,3,H,W], values in [-1,1]. Frame side: Uint8Array H*W*3 (RGB interleaved).
 */
import type { Tensor } from "../core/tensor.ts";

/** [-1,1] -> 0..255: round((x+1)*127.5), clamped; NaN -> 0. */
export function floatToByte(x: number): number {
  const v = Math.round((x + 1) * 127.5);
  return v >= 0 ? Math.min(v, 255) : 0; // NaN fails v >= 0
}

/** 0..255 -> [-1,1]. */
export const byteToFloat = (b: number): number => b / 127.5 - 1;

/** One planar CHW float frame starting at `offset` in `data` -> interleaved rgb24. */
export function chwToRgb24(data: Float32Array, height: number, width: number, offset = 0): Uint8Array {
  const plane = height * width;
  if (offset < 0 || offset + 3 * plane > data.length) {
    throw new RangeError(`chwToRgb24: need ${3 * plane} values at offset ${offset}, data has ${data.length}`);
  }
  const out = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    const base = offset + c * plane;
    for (let p = 0; p < plane; p++) out[p * 3 + c] = floatToByte(data[base + p]!);
  }
  return out;
}

/** Interleaved rgb24 -> planar CHW float32 in [-1,1], written into `out` at `offset` (allocated if omitted). */
export function rgb24ToChw(
  frame: Uint8Array,
  height: number,
  width: number,
  out?: Float32Array,
  offset = 0,
): Float32Array {
  const plane = height * width;
  if (frame.length !== plane * 3) {
    throw new RangeError(
      `rgb24ToChw: frame has ${frame.length} bytes, ${width}x${height} needs ${plane * 3}`,
    );
  }
  const dst = out ?? new Float32Array(3 * plane);
  if (offset < 0 || offset + 3 * plane > dst.length) throw new RangeError("rgb24ToChw: output too small");
  for (let p = 0; p < plane; p++) {
    dst[offset + p] = byteToFloat(frame[p * 3]!);
    dst[offset + plane + p] = byteToFloat(frame[p * 3 + 1]!);
    dst[offset + 2 * plane + p] = byteToFloat(frame[p * 3 + 2]!);
  }
  return dst;
}

/** [3,H,W] -> one frame, [F,3,H,W] -> F frames. */
export function tensorToFrames(t: Tensor): Uint8Array[] {
  const s = t.shape;
  const [frames, channels, height, width] = s.length === 3 ? [1, s[0], s[1], s[2]] : [s[0], s[1], s[2], s[3]];
  if ((s.length !== 3 && s.length !== 4) || channels !== 3) {
    throw new RangeError(`tensorToFrames: expected shape [3,H,W] or [F,3,H,W], got [${s.join(",")}]`);
  }
  const per = 3 * height! * width!;
  if (t.data.length !== frames! * per)
    throw new RangeError("tensorToFrames: data length does not match shape");
  return Array.from({ length: frames! }, (_, f) => chwToRgb24(t.data, height!, width!, f * per));
}

/** rgb24 frames -> [F,3,H,W] float32 tensor in [-1,1]. */
export function framesToTensor(frames: readonly Uint8Array[], height: number, width: number): Tensor {
  const per = 3 * height * width;
  const data = new Float32Array(frames.length * per);
  for (const [i, f] of frames.entries()) rgb24ToChw(f, height, width, data, i * per);
  return { shape: [frames.length, 3, height, width], data };
}
