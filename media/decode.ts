/**
 * Video file or PNG-frame directory -> rgb24 Frames. Files are probed with ffprobe and decoded by ffmpeg
 * (rawvideo rgb24 on stdout, frames cut as they stream in).
 */
import { spawn } from "node:child_process";
import { stat } from "node:fs/promises";
import { invalidArgument } from "../core/errors.ts";
import { findExecutable, run, TailBuffer } from "./ffmpeg.ts";
import { readPngFrames } from "./png-frames.ts";
import type { Frames } from "./types.ts";
import { frameBytes } from "./types.ts";

const ACCEPTED =
  "accepted: a video file ffmpeg can decode (e.g. MP4/H.264, WebM) or a directory of PNG frames " +
  "(frame_0000.png, frame_0001.png, ... 8-bit RGB/RGBA)";

export interface DecodeOptions {
  /** Frame rate for PNG directories, which carry none (default 8, LaVie's base rate). */
  fps?: number;
  /** Refuse inputs with more frames than this (default 1024): decoded frames are held in memory. */
  maxFrames?: number;
}

/** Decodes a video file (needs ffmpeg + ffprobe on PATH) or a PNG frame directory. */
export async function decodeVideo(path: string, opts: DecodeOptions = {}): Promise<Frames> {
  const maxFrames = opts.maxFrames ?? 1024;
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw invalidArgument(
      "input",
      `${path} ${code === "ENOENT" ? "does not exist" : `cannot be read (${code})`}; ${ACCEPTED}`,
    );
  }
  if (isDir) {
    const frames = await readPngFrames(path, opts.fps ?? 8);
    if (frames.frames.length > maxFrames) throw tooMany(path, maxFrames);
    return frames;
  }
  const ffmpeg = await findExecutable("ffmpeg");
  const ffprobe = await findExecutable("ffprobe");
  if (ffmpeg === undefined || ffprobe === undefined) {
    throw invalidArgument(
      "input",
      `${path}: decoding video files needs ffmpeg and ffprobe on PATH, which were not found; install ffmpeg ` +
        "or pass a directory of PNG frames (frame_0000.png, ...)",
    );
  }
  const { width, height, fps } = await probe(ffprobe, path);
  const frames = await readRawFrames(ffmpeg, path, width, height, maxFrames);
  return { width, height, fps, frames };
}

const tooMany = (path: string, max: number) =>
  invalidArgument("input", `${path} has more than ${max} frames (the limit for one request)`);

function parseRate(rate: unknown): number {
  const m = /^(\d+)(?:\/(\d+))?$/.exec(String(rate ?? ""));
  if (!m) return 0;
  const den = m[2] === undefined ? 1 : Number(m[2]);
  return den > 0 ? Number(m[1]) / den : 0;
}

async function probe(ffprobe: string, path: string): Promise<{ width: number; height: number; fps: number }> {
  // biome-ignore format: flag/value pairs
  const res = await run(ffprobe, [
    "-v", "error", "-select_streams", "v:0",
    "-show_entries", "stream=width,height,avg_frame_rate,r_frame_rate", "-of", "json", path,
  ]);
  const notVideo = (why: string) =>
    invalidArgument("input", `${path} is not a readable video (${why}); ${ACCEPTED}`);
  if (res.code !== 0) throw notVideo(`ffprobe: ${res.stderr || `exit code ${res.code}`}`);
  let stream:
    | { width?: unknown; height?: unknown; avg_frame_rate?: unknown; r_frame_rate?: unknown }
    | undefined;
  try {
    stream = JSON.parse(res.stdout).streams?.[0];
  } catch {
    throw notVideo("ffprobe output is not JSON");
  }
  const width = Number(stream?.width);
  const height = Number(stream?.height);
  if (!stream || !(width > 0) || !(height > 0)) throw notVideo("no video stream");
  const fps = parseRate(stream.avg_frame_rate) || parseRate(stream.r_frame_rate);
  if (!(fps > 0)) throw notVideo("no frame rate");
  return { width, height, fps };
}

function readRawFrames(
  ffmpeg: string,
  path: string,
  width: number,
  height: number,
  max: number,
): Promise<Uint8Array[]> {
  // biome-ignore format: flag/value pairs
  const args = [
    "-hide_banner", "-loglevel", "error", "-noautorotate", "-i", path,
    "-map", "0:v:0", "-vsync", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
  ];
  const size = frameBytes(width, height);
  return new Promise((resolve, reject) => {
    const child = spawn(ffmpeg, args, { stdio: ["ignore", "pipe", "pipe"] });
    const stderr = new TailBuffer();
    const frames: Uint8Array[] = [];
    let current = new Uint8Array(size);
    let filled = 0;
    let error: Error | undefined;
    child.stderr.on("data", (c: Buffer) => stderr.push(c));
    child.stdout.on("data", (chunk: Buffer) => {
      let off = 0;
      while (off < chunk.length && error === undefined) {
        const n = Math.min(size - filled, chunk.length - off);
        current.set(chunk.subarray(off, off + n), filled);
        filled += n;
        off += n;
        if (filled === size) {
          frames.push(current);
          current = new Uint8Array(size);
          filled = 0;
          if (frames.length > max) {
            error = tooMany(path, max);
            child.kill("SIGKILL");
          }
        }
      }
    });
    child.on("error", reject);
    child.on("close", (code) => {
      if (error) return reject(error);
      if (code !== 0 || frames.length === 0) {
        return reject(
          invalidArgument(
            "input",
            `${path} could not be decoded (ffmpeg: ${stderr.toString() || "no frames"}); ${ACCEPTED}`,
          ),
        );
      }
      resolve(frames);
    });
  });
}
