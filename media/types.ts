/** Frame and video types shared by the media adapters, and their validation. */
import { invalidArgument } from "../core/errors.ts";

/** A clip of rgb24 frames: each frame is height*width*3 bytes, row-major, R G B interleaved. */
export interface Frames {
  width: number;
  height: number;
  fps: number;
  frames: Uint8Array[];
}

export interface VideoSpec {
  width: number;
  height: number;
  fps: number;
}

export const frameBytes = (width: number, height: number): number => width * height * 3;

/** Checks width/height/fps; `evenSize` for yuv420p H.264, which needs even dimensions. */
export function checkVideoSpec(spec: VideoSpec, evenSize: boolean): void {
  for (const field of ["width", "height"] as const) {
    const v = spec[field];
    if (!Number.isInteger(v) || v <= 0 || v > 16384) {
      throw invalidArgument(field, `must be an integer in [1, 16384], got ${v}`);
    }
    if (evenSize && v % 2 !== 0) {
      throw invalidArgument(
        field,
        `must be even for H.264 yuv420p output, got ${v} (crop or pad by one pixel)`,
      );
    }
  }
  if (!Number.isFinite(spec.fps) || spec.fps <= 0 || spec.fps > 1000) {
    throw invalidArgument("fps", `must be a number in (0, 1000], got ${spec.fps}`);
  }
}

export function checkFrame(frame: Uint8Array, spec: VideoSpec, index: number): void {
  const want = frameBytes(spec.width, spec.height);
  if (!(frame instanceof Uint8Array) || frame.length !== want) {
    throw invalidArgument(
      "frames",
      `frame ${index} has ${frame?.length} bytes, expected ${want} (rgb24 ${spec.width}x${spec.height}x3)`,
    );
  }
}
