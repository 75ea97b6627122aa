/**
 * rgb24 frames -> MP4 (H.264). Uses ffmpeg (libx264, yuv420p) when it is on PATH, streaming frames to its
 * stdin with back-pressure; otherwise the WebAssembly h264-mp4-encoder (H.264 baseline), also fed frame by
 * frame (it keeps the compressed output in memory until finalize).
 */
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { rm, writeFile } from "node:fs/promises";
import { invalidArgument, LavieError } from "../core/errors.ts";
import { findExecutable, TailBuffer } from "./ffmpeg.ts";
import type { VideoSpec } from "./types.ts";
import { checkFrame, checkVideoSpec } from "./types.ts";

export type VideoEncoderName = "ffmpeg" | "h264-mp4-encoder";

export interface EncodeOptions extends VideoSpec {
  /** Only H.264 in MP4 for now. */
  codec?: "h264";
  /** "auto" (default): ffmpeg when on PATH, else h264-mp4-encoder. */
  encoder?: "auto" | VideoEncoderName;
  /** x264 constant rate factor (default 18); the wasm encoder maps it to its quantizer. */
  crf?: number;
}

export interface EncodeResult {
  path: string;
  encoder: VideoEncoderName;
  frameCount: number;
}

export type FrameSource = Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/** Encodes `frames` (rgb24, width*height*3 bytes each) into an MP4 file at `path`. */
export async function encodeVideo(
  path: string,
  frames: FrameSource,
  opts: EncodeOptions,
): Promise<EncodeResult> {
  checkVideoSpec(opts, true);
  if (opts.codec !== undefined && opts.codec !== "h264") {
    throw invalidArgument("codec", `unsupported codec ${String(opts.codec)}; accepted: "h264"`);
  }
  const crf = opts.crf ?? 18;
  if (!Number.isInteger(crf) || crf < 0 || crf > 51)
    throw invalidArgument("crf", `must be an integer in [0, 51]`);
  const choice = opts.encoder ?? "auto";
  const ffmpeg = choice === "h264-mp4-encoder" ? undefined : await findExecutable("ffmpeg");
  if (choice === "ffmpeg" && ffmpeg === undefined) {
    throw new LavieError("failed_precondition", "encoder ffmpeg was requested but ffmpeg is not on PATH");
  }
  try {
    const frameCount =
      ffmpeg !== undefined
        ? await encodeWithFfmpeg(ffmpeg, path, frames, opts, crf)
        : await encodeWithWasm(path, frames, opts, crf);
    return { path, encoder: ffmpeg !== undefined ? "ffmpeg" : "h264-mp4-encoder", frameCount };
  } catch (err) {
    await rm(path, { force: true }); // no half-written files
    throw err;
  }
}

async function encodeWithFfmpeg(
  bin: string,
  path: string,
  frames: FrameSource,
  spec: VideoSpec,
  crf: number,
): Promise<number> {
  // biome-ignore format: one flag per line pair reads better
  const args = [
    "-hide_banner", "-loglevel", "error", "-y",
    "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", `${spec.width}x${spec.height}`, "-r", String(spec.fps), "-i", "-",
    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-crf", String(crf),
    "-movflags", "+faststart", "-f", "mp4", path,
  ];
  const child: ChildProcessWithoutNullStreams = spawn(bin, args, { stdio: ["pipe", "pipe", "pipe"] });
  const stderr = new TailBuffer();
  child.stderr.on("data", (c: Buffer) => stderr.push(c));
  child.stdout.resume();
  child.stdin.on("error", () => {}); // EPIPE when ffmpeg dies early: reported through the exit code below
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve(code));
  });
  exited.catch(() => {}); // observed below; avoids an unhandled rejection while frames are still produced
  const failed = (code: number | null) =>
    new LavieError(
      "internal",
      `ffmpeg failed to encode ${path} (exit code ${code}): ${stderr.toString() || "no output"}`,
    );
  let count = 0;
  try {
    for await (const frame of frames) {
      checkFrame(frame, spec, count);
      // Copy: the producer may reuse its buffer once we return, while the pipe still holds this one.
      if (!child.stdin.write(Buffer.from(frame))) {
        const done = await Promise.race([
          once(child.stdin, "drain").then(() => false),
          exited.then(() => true),
        ]);
        if (done) throw failed(child.exitCode);
      }
      count++;
    }
    if (count === 0) throw invalidArgument("frames", "no frames to encode");
  } catch (err) {
    child.kill("SIGKILL");
    await exited.catch(() => {});
    throw err;
  }
  child.stdin.end();
  const code = await exited;
  if (code !== 0) throw failed(code);
  return count;
}

interface WasmEncoder {
  outputFilename: string;
  width: number;
  height: number;
  frameRate: number;
  quantizationParameter: number;
  speed: number;
  initialize(): void;
  addFrameRgba(buffer: Uint8Array): void;
  finalize(): void;
  delete(): void;
  FS: { readFile(path: string): Uint8Array; unlink(path: string): void };
}

let wasmModule: Promise<() => Promise<WasmEncoder>> | undefined;

/** Loads h264-mp4-encoder once, removing the process-wide handlers its Emscripten runtime installs. */
function loadWasm(): Promise<() => Promise<WasmEncoder>> {
  wasmModule ??= (async () => {
    const events: string[] = ["uncaughtException", "unhandledRejection"];
    const listeners = (e: string) => (process.listeners as (e: string) => unknown[])(e);
    const before = events.map((e) => new Set(listeners(e)));
    // CommonJS webpack bundle: depending on the loader's interop the factory is a named or a default export.
    type Api = { createH264MP4Encoder?: () => Promise<WasmEncoder> };
    const mod = (await import("h264-mp4-encoder")) as unknown as Api & { default?: Api };
    const create = mod.createH264MP4Encoder ?? mod.default?.createH264MP4Encoder;
    if (create === undefined)
      throw new LavieError("internal", "h264-mp4-encoder exports no createH264MP4Encoder");
    events.forEach((e, i) => {
      for (const l of listeners(e)) {
        if (!before[i]!.has(l)) process.removeListener(e, l as (...args: unknown[]) => void);
      }
    });
    return create;
  })();
  return wasmModule;
}

let wasmSeq = 0;

async function encodeWithWasm(
  path: string,
  frames: FrameSource,
  spec: VideoSpec,
  crf: number,
): Promise<number> {
  const create = await loadWasm();
  // The encoder is created on the first valid frame and always finalized before delete(): deleting an
  // unfinished encoder aborts the Emscripten runtime, which is shared by every later encode.
  let enc: WasmEncoder | undefined;
  let count = 0;
  let finished = false;
  try {
    const rgba = new Uint8Array(spec.width * spec.height * 4);
    for await (const frame of frames) {
      checkFrame(frame, spec, count);
      if (enc === undefined) {
        enc = await create();
        enc.outputFilename = `lavie-${process.pid}-${wasmSeq++}.mp4`;
        enc.width = spec.width;
        enc.height = spec.height;
        enc.frameRate = spec.fps;
        enc.quantizationParameter = Math.min(51, Math.max(10, crf + 5));
        enc.speed = 8;
        enc.initialize();
      }
      for (let p = 0, q = 0; q < frame.length; p += 4, q += 3) {
        rgba[p] = frame[q]!;
        rgba[p + 1] = frame[q + 1]!;
        rgba[p + 2] = frame[q + 2]!;
        rgba[p + 3] = 255;
      }
      enc.addFrameRgba(rgba);
      count++;
    }
    if (enc === undefined) throw invalidArgument("frames", "no frames to encode");
    enc.finalize();
    finished = true;
    await writeFile(path, enc.FS.readFile(enc.outputFilename));
    return count;
  } finally {
    if (enc !== undefined) {
      try {
        if (!finished) enc.finalize();
      } catch {
        // the original error matters more
      }
      try {
        enc.FS.unlink(enc.outputFilename);
      } catch {
        // never written
      }
      enc.delete();
    }
  }
}
