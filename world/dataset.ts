/**
 * Training sets of the toy world as one safetensors file (models/checkpoint/safetensors.ts):
 *
 *   video            [N, 3, F, H, W]            clips in [-1, 1] (F32 or F16), frame f at time f / fps
 *   video_fps4       [N, 3, 4(F-1)+1, H, W]     the same clips at 4x the frame rate (frame 4k = video frame k)
 *   video_res4       [N, 3, F, 4H, 4W]          at 4x the resolution (box-filtered by 4 = video)
 *   video_fps4_res4  [N, 3, 4(F-1)+1, 4H, 4W]   both (the super-resolution target of video_fps4)
 *   labels           I64 [N, 2, 5]              per object slot: colour, shape, motion, size class,
 *                                              speed class (indices into __metadata__.vocab; -1 for
 *                                              an absent second object, and speed -1 when still)
 *   objects          F32 [N, 2, 4]              per object slot: x, y, size, speed at t = 0 (zeros if absent)
 *
 * (the video_* variants only when asked for). Captions live in the header's __metadata__ (strings of
 * JSON), so a clip and its captions cannot get separated:
 *   format "lavie-world/1"; captions [[canonical, phrasing, ...] per clip]; scenes [Scene per clip];
 *   splits ["train" | "heldout" per clip]; vocab {colour, shape, motion, size, speed: names in index
 *   order}; held_out [Triple]; config {count, seed, height, width, frames, fps, split, twoObjects,
 *   captions, dtype, variants {name: {frames, fps, height, width}}}.
 * Scenes come from sampleScenes(seed, ...) and captions from a second stream seeded by seed, so the
 * same options give the same file.
 */
import { invalidArgument } from "../core/errors.ts";
import { mulberry32 } from "../core/prng.ts";
import { type WritableTensor, writeSafetensors } from "../models/checkpoint/safetensors.ts";
import { captionsOf } from "./captions.ts";
import { type ClipSpec, checkClipSpec, renderClipInto } from "./render.ts";
import { HELD_OUT, SPLITS, type Split, sampleScenes, splitOf } from "./sample.ts";
import {
  COLOURS,
  MOTIONS,
  type Scene,
  SHAPES,
  SIZE_CLASSES,
  SPEED_CLASSES,
  sizeClassOf,
  speedClassOf,
} from "./scene.ts";

export const VARIANTS = ["fps4", "res4", "fps4_res4"] as const;
export type Variant = (typeof VARIANTS)[number];

export interface DatasetOptions extends ClipSpec {
  count: number;
  seed: number;
  split: Split;
  /** Probability of a second object per clip. */
  twoObjects: number;
  /** Captions per clip: the canonical one and captions - 1 random phrasings. */
  captions: number;
  dtype: "F32" | "F16";
  variants: readonly Variant[];
}

/** Values all video tensors of one file may hold together (4 GiB as float32). */
export const MAX_VALUES = 2 ** 30;

/** The clip spec of a variant of the base spec. */
export function variantSpec(base: ClipSpec, v: Variant | "base"): ClipSpec {
  const t = v === "fps4" || v === "fps4_res4";
  const r = v === "res4" || v === "fps4_res4";
  return {
    frames: t ? 4 * (base.frames - 1) + 1 : base.frames,
    fps: t ? base.fps * 4 : base.fps,
    height: r ? base.height * 4 : base.height,
    width: r ? base.width * 4 : base.width,
  };
}

const tensorName = (v: Variant | "base") => (v === "base" ? "video" : `video_${v}`);

function checkOptions(o: DatasetOptions): void {
  checkClipSpec(o);
  if (!Number.isInteger(o.count) || o.count < 1)
    throw invalidArgument("count", `must be a positive integer; got ${o.count}`);
  if (!Number.isInteger(o.captions) || o.captions < 1 || o.captions > 16)
    throw invalidArgument("captions", `must be an integer in [1, 16]; got ${o.captions}`);
  if (!SPLITS.includes(o.split)) throw invalidArgument("split", `must be one of ${SPLITS.join(", ")}`);
  for (const v of o.variants) {
    if (!VARIANTS.includes(v))
      throw invalidArgument("variants", `unknown variant "${v}"; allowed: ${VARIANTS.join(", ")}`);
  }
  const perClip = (["base", ...o.variants] as const).reduce((a, v) => {
    const s = variantSpec(o, v);
    return a + 3 * s.frames * s.height * s.width;
  }, 0);
  const most = Math.floor(MAX_VALUES / perClip);
  if (o.count > most) {
    throw invalidArgument(
      "count",
      `at most ${most} clips of this size fit in one file (${perClip} values per clip, limit ${MAX_VALUES}); ` +
        "write several files with different seeds",
    );
  }
}

export interface Dataset {
  tensors: Map<string, WritableTensor>;
  metadata: Record<string, string>;
  scenes: Scene[];
  captions: string[][];
}

/** Renders the clips and labels of a dataset in memory. */
export function buildDataset(o: DatasetOptions): Dataset {
  checkOptions(o);
  const N = o.count;
  const scenes = sampleScenes(o.seed, N, { split: o.split, twoObjects: o.twoObjects });
  const capRng = mulberry32((o.seed ^ 0x9e3779b9) >>> 0);
  const captions = scenes.map((s) => captionsOf(s, o.captions, capRng));
  const tensors = new Map<string, WritableTensor>();
  const variants: Record<string, ClipSpec> = {};
  // Variants in VARIANTS order, each once, so that the option's order does not change the file.
  for (const v of ["base", ...VARIANTS.filter((x) => o.variants.includes(x))] as const) {
    const spec = variantSpec(o, v);
    const per = 3 * spec.frames * spec.height * spec.width;
    const data = new Float32Array(N * per);
    for (const [n, s] of scenes.entries()) renderClipInto(s, spec, data, n * per);
    tensors.set(tensorName(v), { dtype: o.dtype, shape: [N, 3, spec.frames, spec.height, spec.width], data });
    variants[tensorName(v)] = spec;
  }
  const labels = new BigInt64Array(N * 2 * 5).fill(-1n);
  const objects = new Float32Array(N * 2 * 4);
  scenes.forEach((s, n) => {
    s.objects.forEach((ob, k) => {
      const speed = speedClassOf(ob);
      const l = [
        COLOURS.indexOf(ob.colour),
        SHAPES.indexOf(ob.shape),
        MOTIONS.indexOf(ob.motion),
        SIZE_CLASSES.indexOf(sizeClassOf(ob.size)),
        speed === undefined ? -1 : SPEED_CLASSES.indexOf(speed),
      ];
      labels.set(l.map(BigInt), (n * 2 + k) * 5);
      objects.set([ob.x, ob.y, ob.size, ob.speed], (n * 2 + k) * 4);
    });
  });
  tensors.set("labels", { dtype: "I64", shape: [N, 2, 5], data: labels });
  tensors.set("objects", { dtype: "F32", shape: [N, 2, 4], data: objects });
  const metadata: Record<string, string> = {
    format: "lavie-world/1",
    captions: JSON.stringify(captions),
    scenes: JSON.stringify(scenes),
    splits: JSON.stringify(scenes.map(splitOf)),
    vocab: JSON.stringify({
      colour: COLOURS,
      shape: SHAPES,
      motion: MOTIONS,
      size: SIZE_CLASSES,
      speed: SPEED_CLASSES,
    }),
    held_out: JSON.stringify(HELD_OUT),
    config: JSON.stringify({
      count: N,
      seed: o.seed,
      height: o.height,
      width: o.width,
      frames: o.frames,
      fps: o.fps,
      split: o.split,
      twoObjects: o.twoObjects,
      captions: o.captions,
      dtype: o.dtype,
      variants,
    }),
  };
  return { tensors, metadata, scenes, captions };
}

/** Builds a dataset and writes it to `path` (safetensors). */
export async function writeDataset(path: string, o: DatasetOptions): Promise<Dataset> {
  const d = buildDataset(o);
  await writeSafetensors(path, d.tensors, d.metadata);
  return d;
}
