/**
 * `lavie world ...`: the toy world (world/): ground-truth clips from captions, training sets and a
 * detector that reads what a clip shows.
 *
 *   lavie world render "a red circle moving right" --out clip.mp4 [--size 64x96 --frames 16 --fps 8]
 *   lavie world dataset --count 1000 --seed 1 --size 64x96 --frames 16 --out train.safetensors [--also fps4,res4]
 *   lavie world detect clip.mp4 [--prompt "a red circle moving right"]
 *   lavie world heldout
 */
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { type Command, InvalidArgumentError, Option } from "commander";
import { LavieError } from "../../../core/errors.ts";
import { mulberry32 } from "../../../core/prng.ts";
import { decodeVideo, encodeVideo } from "../../../media/index.ts";
import { captionOf } from "../../../world/captions.ts";
import { VARIANTS, type Variant, writeDataset } from "../../../world/dataset.ts";
import { clipOfFrames, detectObjects, matchCaption } from "../../../world/detect.ts";
import { parseCaption } from "../../../world/parse.ts";
import { renderClip, rgbFrames } from "../../../world/render.ts";
import { HELD_OUT, SPLITS, type Split, sceneFromCaption } from "../../../world/sample.ts";
import { formatBytes, table } from "../format.ts";
import { parseSeed } from "../options.ts";

const stdout = (s: string) => {
  process.stdout.write(`${s}\n`);
};

/** Dataset option fields -> the CLI options that set them, so errors name what the user typed. */
const OPTION_OF: Record<string, string> = {
  count: "--count",
  height: "--size",
  width: "--size",
  frames: "--frames",
  fps: "--fps",
};

async function naming<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    const e = LavieError.from(err);
    const opt = e.field ? OPTION_OF[e.field] : undefined;
    if (e.code !== "invalid_argument" || !opt || !e.field || !e.message.startsWith(`${e.field}: `)) throw e;
    const msg = `${opt}: ${e.field === "height" || e.field === "width" ? `${e.field} ` : ""}${e.message.slice(e.field.length + 2)}`;
    throw new LavieError("invalid_argument", msg, { field: e.field });
  }
}

/** "64x96" -> height 64, width 96. */
export function parseSize(value: string): { height: number; width: number } {
  const m = /^(\d+)x(\d+)$/.exec(value.trim());
  const height = m ? Number(m[1]) : 0;
  const width = m ? Number(m[2]) : 0;
  if (!m || height < 1 || width < 1 || height > 4096 || width > 4096) {
    throw new InvalidArgumentError(
      `must be HEIGHTxWIDTH in pixels, each 1..4096 (e.g. 64x96: 64 high, 96 wide); got "${value}"`,
    );
  }
  return { height, width };
}

function intIn(lo: number, hi: number) {
  return (value: string): number => {
    const n = /^\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
    if (!Number.isInteger(n) || n < lo || n > hi)
      throw new InvalidArgumentError(`must be an integer in ${lo}..${hi}; got "${value}"`);
    return n;
  };
}

function numberIn(lo: number, hi: number, openLow: boolean) {
  return (value: string): number => {
    const n = value.trim() === "" ? Number.NaN : Number(value);
    if (!Number.isFinite(n) || (openLow ? n <= lo : n < lo) || n > hi)
      throw new InvalidArgumentError(
        `must be a number in ${openLow ? "(" : "["}${lo}, ${hi}]; got "${value}"`,
      );
    return n;
  };
}

function oneOf<T extends string>(allowed: readonly T[]) {
  return (value: string): T => {
    if (!(allowed as readonly string[]).includes(value))
      throw new InvalidArgumentError(`must be one of ${allowed.join(", ")}; got "${value}"`);
    return value as T;
  };
}

/** "fps4,res4" -> variants; each must be one of VARIANTS. */
export function parseVariants(value: string): Variant[] {
  const parts = value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  for (const p of parts) {
    if (!(VARIANTS as readonly string[]).includes(p))
      throw new InvalidArgumentError(
        `unknown variant "${p}"; allowed (comma-separated): ${VARIANTS.join(", ")}`,
      );
  }
  return [...new Set(parts)] as Variant[];
}

const sizeOption = () =>
  new Option("--size <HxW>", "frame size, height x width in pixels (the world is laid out for 3:2)")
    .argParser(parseSize)
    .default({ height: 64, width: 96 }, "64x96");
const framesOption = () =>
  new Option("--frames <n>", "frames per clip (frame f shows time f / fps)")
    .argParser(intIn(1, 1024))
    .default(16);
const fpsOption = () =>
  new Option("--fps <r>", "frames per second (8: base clip; 32 with 61 frames: 4x frame rate)")
    .argParser(numberIn(0, 1000, true))
    .default(8);

interface RenderOpts {
  out: string;
  size: { height: number; width: number };
  frames: number;
  fps: number;
  seed: number;
}

interface DatasetOpts extends RenderOpts {
  count: number;
  split: Split;
  twoObjects: number;
  captions: number;
  dtype: "f32" | "f16";
  also: Variant[];
}

/** Registers `world` on the program; `out` prints one line (stdout by default; tests capture it). */
export function registerWorldCommands(program: Command, out: (line: string) => void = stdout): void {
  const world = program
    .command("world")
    .description("the toy world: ground-truth clips of captions, training sets, a detector");

  world
    .command("render")
    .description('render the ground truth of a caption (e.g. "a red circle moving right") as MP4')
    .argument("<caption>", "one or two objects: colour, shape, motion; optionally size, speed, background")
    .addOption(new Option("--out <file>", "output MP4 file").makeOptionMandatory())
    .addOption(sizeOption())
    .addOption(framesOption())
    .addOption(fpsOption())
    .addOption(new Option("--seed <n>", "layout seed, integer 0..4294967295").argParser(parseSeed).default(0))
    .action(async (caption: string, o: RenderOpts) => {
      const parsed = parseCaption(caption);
      const scene = sceneFromCaption(parsed, mulberry32(o.seed));
      const { height, width } = o.size;
      const clip = renderClip(scene, { height, width, frames: o.frames, fps: o.fps });
      await mkdir(dirname(o.out), { recursive: true });
      const r = await naming(() => encodeVideo(o.out, rgbFrames(clip), { height, width, fps: o.fps }));
      if (parsed.unknown.length > 0) out(`ignored words: ${parsed.unknown.join(" ")}`);
      out(`wrote ${o.out}: ${o.frames} frames ${height}x${width} (HxW) @ ${o.fps} fps (${r.encoder})`);
      out(`scene: ${captionOf(scene)}`);
    });

  world
    .command("dataset")
    .description("write seeded clips, captions and labels to a safetensors file (see world/dataset.ts)")
    .addOption(
      new Option("--count <n>", "number of clips").argParser(intIn(1, 1_000_000)).makeOptionMandatory(),
    )
    .addOption(new Option("--out <file>", "output .safetensors file").makeOptionMandatory())
    .addOption(new Option("--seed <n>", "scene seed, integer 0..4294967295").argParser(parseSeed).default(0))
    .addOption(sizeOption())
    .addOption(framesOption())
    .addOption(fpsOption())
    .addOption(
      new Option("--split <name>", "train (no held-out combination), heldout or any")
        .argParser(oneOf(SPLITS))
        .default("train"),
    )
    .addOption(
      new Option("--two-objects <p>", "probability of a second object")
        .argParser(numberIn(0, 1, false))
        .default(0.3),
    )
    .addOption(
      new Option("--captions <k>", "captions per clip: the canonical one, then random phrasings")
        .argParser(intIn(1, 16))
        .default(3),
    )
    .addOption(
      new Option("--dtype <t>", "video dtype: f32 or f16")
        .argParser(oneOf(["f32", "f16"] as const))
        .default("f32"),
    )
    .addOption(
      new Option(
        "--also <variants>",
        `also store the clips at 4x the frame rate and/or resolution, comma-separated: ${VARIANTS.join(", ")}`,
      )
        .argParser(parseVariants)
        .default([]),
    )
    .action(async (o: DatasetOpts) => {
      await mkdir(dirname(o.out), { recursive: true });
      const d = await naming(() =>
        writeDataset(o.out, {
          count: o.count,
          seed: o.seed,
          height: o.size.height,
          width: o.size.width,
          frames: o.frames,
          fps: o.fps,
          split: o.split,
          twoObjects: o.twoObjects,
          captions: o.captions,
          dtype: o.dtype === "f16" ? "F16" : "F32",
          variants: o.also,
        }),
      );
      let bytes = 0;
      for (const [name, t] of d.tensors) {
        bytes += t.data.length * (t.dtype === "F16" ? 2 : t.dtype === "I64" ? 8 : 4);
        out(`  ${name.padEnd(16)} ${t.dtype} [${t.shape.join(", ")}]`);
      }
      out(`wrote ${o.out}: ${o.count} clips (${o.split}), ~${formatBytes(bytes)} of tensors`);
      out(`  e.g. "${d.captions[0]![0]}"`);
    });

  world
    .command("detect")
    .description("detect the coloured objects of a clip: colour, shape, motion (and check a caption)")
    .argument("<input>", "video file or directory of PNG frames")
    .addOption(new Option("--prompt <caption>", "check the detections against this caption"))
    .addOption(
      new Option("--fps <r>", "frame rate (default: the file's; 8 for PNG frames)").argParser(
        numberIn(0, 1000, true),
      ),
    )
    .action(async (input: string, o: { prompt?: string; fps?: number }) => {
      const v = await decodeVideo(input, o.fps !== undefined ? { fps: o.fps } : {});
      const fps = o.fps ?? v.fps;
      const found = detectObjects(clipOfFrames(v), { fps });
      out(`${input}: ${v.frames.length} frames ${v.height}x${v.width} (HxW) @ ${fps} fps`);
      out(
        table(
          ["colour", "shape", "motion", "speed", "size", "confidence"],
          found.map((d) => [
            d.colour,
            d.shape,
            d.motion,
            d.speed ?? "-",
            d.size.toFixed(2),
            d.confidence.toFixed(2),
          ]),
          [4, 5],
        ),
      );
      if (o.prompt !== undefined) {
        const m = matchCaption(found, parseCaption(o.prompt));
        out(`caption ${m.ok ? "matches" : "does not match"}: ${JSON.stringify(m.objects)}`);
      }
    });

  world
    .command("heldout")
    .description("list the colour + shape + motion combinations that training sets leave out")
    .action(() => {
      out(
        table(
          ["colour", "shape", "motion"],
          HELD_OUT.map((h) => [h.colour, h.shape, h.motion]),
        ),
      );
    });
}
