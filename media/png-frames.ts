/** Directories of PNG frames (frame_0000.png, frame_0001.png, ...) as a video container. */
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { invalidArgument } from "../core/errors.ts";
import { decodePng, encodePng } from "./png.ts";
import type { Frames } from "./types.ts";
import { checkFrame, checkVideoSpec } from "./types.ts";

const FRAME_RE = /^frame_(\d+)\.png$/;

export const pngFrameName = (index: number): string => `frame_${String(index).padStart(4, "0")}.png`;

/** Writes frames as dir/frame_0000.png ... (creates dir). Returns the file paths. */
export async function writePngFrames(dir: string, frames: Frames): Promise<string[]> {
  checkVideoSpec(frames, false);
  for (const [i, f] of frames.frames.entries()) checkFrame(f, frames, i);
  await mkdir(dir, { recursive: true });
  const paths: string[] = [];
  for (const [i, frame] of frames.frames.entries()) {
    const path = join(dir, pngFrameName(i));
    await writeFile(path, encodePng(frames.width, frames.height, frame));
    paths.push(path);
  }
  return paths;
}

/** Reads dir/frame_NNNN.png in numeric order. A PNG directory carries no frame rate: pass `fps`. */
export async function readPngFrames(dir: string, fps: number): Promise<Frames> {
  const names = (await readdir(dir))
    .map((name) => ({ name, m: FRAME_RE.exec(name) }))
    .filter((e) => e.m !== null)
    .sort((a, b) => Number(a.m![1]) - Number(b.m![1]))
    .map((e) => e.name);
  if (names.length === 0) {
    throw invalidArgument(
      "input",
      `directory ${dir} has no PNG frames; expected frame_0000.png, frame_0001.png, ...`,
    );
  }
  const out: Frames = { width: 0, height: 0, fps, frames: [] };
  for (const name of names) {
    const path = join(dir, name);
    let png: ReturnType<typeof decodePng>;
    try {
      png = decodePng(await readFile(path));
    } catch (err) {
      throw invalidArgument("input", `${path}: ${(err as Error).message}`);
    }
    if (out.frames.length === 0) {
      out.width = png.width;
      out.height = png.height;
    } else if (png.width !== out.width || png.height !== out.height) {
      throw invalidArgument(
        "input",
        `${path} is ${png.width}x${png.height} but earlier frames are ${out.width}x${out.height}; all frames must match`,
      );
    }
    out.frames.push(png.rgb);
  }
  return out;
}
