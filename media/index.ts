/**
 * Video and frame I/O: MP4 (H.264) through ffmpeg or the WebAssembly fallback, PNG frame directories,
 * and tensor <-> rgb24 conversions.
 *
 * @example
 * import { decodeVideo, encodeVideo, tensorToFrames } from "./media/index.ts";
 * const frames = tensorToFrames(video); // video: Tensor [F,3,H,W] in [-1,1]
 * const { encoder } = await encodeVideo("out.mp4", frames, { width: 512, height: 320, fps: 8 });
 * const clip = await decodeVideo("out.mp4"); // { width, height, fps, frames: Uint8Array[] }
 */
export {
  byteToFloat,
  chwToRgb24,
  floatToByte,
  framesToTensor,
  rgb24ToChw,
  tensorToFrames,
} from "./convert.ts";
export type { DecodeOptions } from "./decode.ts";
export { decodeVideo } from "./decode.ts";
export type { EncodeOptions, EncodeResult, FrameSource, VideoEncoderName } from "./encode.ts";
export { encodeVideo } from "./encode.ts";
export { findExecutable } from "./ffmpeg.ts";
export type { DecodedPng } from "./png.ts";
export { decodePng, encodePng } from "./png.ts";
export { pngFrameName, readPngFrames, writePngFrames } from "./png-frames.ts";
export type { Frames, VideoSpec } from "./types.ts";
export { checkFrame, checkVideoSpec, frameBytes } from "./types.ts";
