/**
 * Quality of a model directory against the toy world's exact ground truth (world/), each learned
 * stage next to a baseline computed in the same run.
 *
 *   node --import tsx bench/quality.ts [--model-dir DIR | --preset small] [--scenes 6]
 *       [--train-scenes 2] [--seed 2026] [--steps N] [--vsr-frames 16] [--threads 2]
 *       [--cache-dir /tmp/lavie-bench-cache] [--out bench/results/quality.<preset>.json]
 *
 * Scenes: --scenes from sampleScenes(seed, n, { split: "heldout" }) (every one has a held-out
 * colour + shape + motion triple) and --train-scenes from sampleScenes(seed + 1, m, { split: "train" });
 * the prompt is the scene's canonical caption (captionOf), job seed = seed + scene index. Sizes are the
 * model directory's base size H x W (16 frames), the 61-frame clip at 32 fps and x4 (4H x 4W).
 *
 *  1. Prompt adherence: the cascade in-process (LocalEngine): the base stage (stopAfter "base"), then
 *     the rest from those base frames (start base_frames; the same as one whole run). The detector
 *     (world/detect.ts) on the generated base clip (8 fps) and final video (61 frames read at 32 fps,
 *     the world's time line) against the parsed caption: per attribute, all objects named must match.
 *     Baselines: the detector on the ground-truth renders at both sizes; each caption against every
 *     OTHER scene's base-size ground truth (empirical chance under the scene distribution); analytic
 *     chance (a uniformly random object per caption object: 1/7 colour, 1/7 x 1/3 colour and shape,
 *     1/7 x 1/5 colour and motion, 1/105 all three; matchCaption checks shape and motion on the object
 *     of the named colour).
 *  2. Interpolation: the interpolation stage alone on the ground-truth base clip (16 frames) ->
 *     61 frames, against the true 61-frame render: PSNR / SSIM over all 61 frames and over the 45
 *     in-between ones; baseline: blend neighbouring frames (world/metrics.ts blendFrames).
 *  3. VSR: the VSR stage alone on the first --vsr-frames frames (default 16, to keep it cheap; 61 =
 *     the whole clip) of the ground-truth 61-frame 32 fps clip at H x W (what the VSR stage sees in the
 *     cascade), against the true render at 4H x 4W; baseline: bicubic x4 of the same input.
 *  4. Temporal consistency: flicker (mean |frame difference|) of the generated clips vs their ground
 *     truth's, and the temporal-difference error of the interpolation / VSR outputs.
 * Every clip is clamped to [-1, 1] (what the video shows) before it is scored. PSNR (peak 2 on
 * [-1, 1]) is that of the MSE averaged over scenes (a still scene's blend is exact, its own PSNR
 * Infinity); SSIM (per channel, 11x11 Gaussian, on [0, 1]) is averaged over scenes.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { LocalEngine } from "../coordinator/engine.ts";
import type { JobRequest } from "../core/job.ts";
import { mse } from "../core/metrics.ts";
import type { Tensor } from "../core/tensor.ts";
import { ensureModels } from "../models/cache.ts";
import { captionOf } from "../world/captions.ts";
import { type DetectedObject, detectObjects } from "../world/detect.ts";
import {
  bicubicUpscale,
  blendFrames,
  clampClip,
  flicker,
  pickFrames,
  psnr,
  ssim,
  temporalDiffError,
} from "../world/metrics.ts";
import { parseCaption } from "../world/parse.ts";
import { BASE_CLIP, INTERP_CLIP, renderClip } from "../world/render.ts";
import { sampleScenes } from "../world/sample.ts";
import { type Scene, WORLD_ASPECT } from "../world/scene.ts";
import {
  ATTRS,
  adherence,
  adherenceTable,
  chanceOf,
  flickerTable,
  interpolationTable,
  type SceneScores,
  sceneList,
  vsrTable,
} from "./quality_report.ts";

interface Options {
  scenes: number;
  trainScenes: number;
  seed: number;
  steps: number | undefined;
  vsrFrames: number;
}

const say = (s: string): void => void process.stderr.write(`${s}\n`);
const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);

function int(name: string, v: string | undefined, lo: number, hi: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < lo || n > hi) throw new Error(`--${name} must be an integer in [${lo}, ${hi}]`);
  return n;
}

function outOfRange(t: Tensor): [number, number, number] {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  let out = 0;
  for (const v of t.data) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
    if (v < -1 || v > 1) out++;
  }
  return [lo, hi, out / t.data.length];
}

/** Scores one scene: four engine runs (base, rest of the cascade, interpolation, VSR) + metrics. */
async function scoreScene(
  engine: LocalEngine,
  o: Options,
  item: { index: number; split: "heldout" | "train"; scene: Scene },
): Promise<{ scores: SceneScores; truthFound: DetectedObject[] }> {
  const { height: H, width: W, frames: F } = engine.limits().base;
  const caption = captionOf(item.scene);
  const parsed = parseCaption(caption);
  const jobSeed = o.seed + item.index;
  const steps = o.steps === undefined ? {} : { steps: o.steps };
  const req: JobRequest = {
    prompt: caption,
    seed: jobSeed,
    frames: F,
    height: H,
    width: W,
    base: { ...steps },
    interpolation: { ...steps },
    vsr: { ...steps },
  };
  const at = { base: { ...BASE_CLIP, height: H, width: W }, fps4: { ...INTERP_CLIP, height: H, width: W } };
  const truth = {
    base: renderClip(item.scene, at.base),
    fps4: renderClip(item.scene, at.fps4),
    final: renderClip(item.scene, { ...INTERP_CLIP, height: 4 * H, width: 4 * W }),
  };

  let t = performance.now();
  const base = await engine.generate(engine.resolve({ ...req, stopAfter: "base" }));
  const finalRaw = await engine.generate(engine.resolve(req), {
    start: { from: "base_frames" },
    inputs: { "base.frames": base.frames },
  });
  const msGenerate = performance.now() - t;

  t = performance.now();
  const interpRaw = await engine.generate(engine.resolve({ ...req, stopAfter: "interpolation" }), {
    start: { from: "base_frames" },
    inputs: { "base.frames": truth.base },
  });
  const msInterp = performance.now() - t;

  t = performance.now();
  const n = Math.min(o.vsrFrames, INTERP_CLIP.frames);
  const lowRes = pickFrames(truth.fps4, range(n));
  const vsrRaw = await engine.generate(engine.resolve(req), {
    start: { from: "lowres_frames", frames: n },
    inputs: { "input.frames": lowRes },
  });
  const msVsr = performance.now() - t;

  t = performance.now();
  const gen = { base: clampClip(base.frames), final: clampClip(finalRaw.frames) };
  const detectAt = (clip: Tensor, fps: number) => detectObjects(clip, { fps });
  const interp = clampClip(interpRaw.frames);
  const blend = blendFrames(truth.base, 4);
  const between = range(INTERP_CLIP.frames).filter((j) => j % 4 !== 0);
  const pair = (x: Tensor, y: Tensor) => ({ mse: mse(x, y), psnr: psnr(x, y), ssim: ssim(x, y) });
  const interpScore = (x: Tensor) => ({
    ...pair(x, truth.fps4),
    between: pair(pickFrames(x, between), pickFrames(truth.fps4, between)),
    tde: temporalDiffError(x, truth.fps4),
  });
  const vsrTruth = pickFrames(truth.final, range(n));
  const vsrScore = (x: Tensor) => ({
    ...pair(x, vsrTruth),
    tde: n > 1 ? temporalDiffError(x, vsrTruth) : 0,
  });
  const truthFound = detectAt(truth.base, BASE_CLIP.fps);
  const scores: SceneScores = {
    index: item.index,
    split: item.split,
    caption,
    jobSeed,
    objects: item.scene.objects.length,
    adherence: {
      generatedBase: adherence(detectAt(gen.base, BASE_CLIP.fps), parsed),
      generatedFinal: adherence(detectAt(gen.final, INTERP_CLIP.fps), parsed),
      truthBase: adherence(truthFound, parsed),
      truthFinal: adherence(detectAt(truth.final, INTERP_CLIP.fps), parsed),
    },
    otherTruth: { colour: 0, shape: 0, motion: 0, all: 0 },
    chance: chanceOf(parsed),
    interpolation: { model: interpScore(interp), blend: interpScore(blend) },
    vsr: {
      model: vsrScore(clampClip(vsrRaw.frames)),
      bicubic: vsrScore(clampClip(bicubicUpscale(lowRes, 4))),
    },
    flicker: {
      generatedBase: flicker(gen.base),
      truthBase: flicker(truth.base),
      generatedFinal: flicker(gen.final),
      truthFinal: flicker(truth.final),
      interpolation: flicker(interp),
      blend: flicker(blend),
      truth61: flicker(truth.fps4),
    },
    generatedRange: outOfRange(finalRaw.frames),
    ms: { generate: msGenerate, interpolation: msInterp, vsr: msVsr, metrics: 0 },
  };
  scores.ms.metrics = performance.now() - t;
  return { scores, truthFound };
}

/** Fills each scene's otherTruth: its caption against every other scene's base-size ground truth. */
function crossMatch(rows: SceneScores[], found: readonly DetectedObject[][]): void {
  rows.forEach((r, i) => {
    if (rows.length < 2) {
      for (const a of ATTRS) r.otherTruth[a] = Number.NaN; // no other scene
      return;
    }
    const parsed = parseCaption(r.caption);
    for (const a of ATTRS) r.otherTruth[a] = 0;
    found.forEach((f, j) => {
      if (j === i) return;
      const m = adherence(f, parsed);
      for (const a of ATTRS) r.otherTruth[a] += (m[a] ? 1 : 0) / (rows.length - 1);
    });
  });
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      "model-dir": { type: "string" },
      preset: { type: "string", default: "small" },
      scenes: { type: "string", default: "6" },
      "train-scenes": { type: "string", default: "2" },
      seed: { type: "string", default: "2026" },
      steps: { type: "string" },
      "vsr-frames": { type: "string", default: "16" },
      threads: { type: "string", default: "2" },
      "cache-dir": { type: "string", default: "/tmp/lavie-bench-cache" },
      out: { type: "string" },
    },
  });
  const o: Options = {
    scenes: int("scenes", v.scenes, 1, 1000)!,
    trainScenes: int("train-scenes", v["train-scenes"], 0, 1000)!,
    seed: int("seed", v.seed, 0, 2 ** 31)!,
    steps: int("steps", v.steps, 1, 1000),
    vsrFrames: int("vsr-frames", v["vsr-frames"], 1, INTERP_CLIP.frames)!,
  };
  const threads = int("threads", v.threads, 1, 256)!;
  const dir = v["model-dir"] ?? (await ensureModels(v.preset, { cacheDir: v["cache-dir"] }));
  const engine = await LocalEngine.open(dir, { workers: 1, intraOpThreads: threads, verifyHashes: false });
  const t0 = performance.now();
  const load0 = loadavg()[0]!;
  const rows: SceneScores[] = [];
  try {
    const lim = engine.limits();
    const { height: H, width: W, frames: F } = lim.base;
    if (F !== BASE_CLIP.frames) throw new Error(`the model's base clip has ${F} frames; the world's has 16`);
    if (Math.abs(W / H - WORLD_ASPECT) > 1e-9)
      say(`note: ${H}x${W} is not the world's 3:2 aspect; objects may leave the frame`);
    const items = [
      ...sampleScenes(o.seed, o.scenes, { split: "heldout" }).map((scene) => ({
        split: "heldout" as const,
        scene,
      })),
      ...sampleScenes(o.seed + 1, o.trainScenes, { split: "train" }).map((scene) => ({
        split: "train" as const,
        scene,
      })),
    ].map((x, index) => ({ ...x, index }));
    const found: DetectedObject[][] = [];
    for (const item of items) {
      const { scores: r, truthFound } = await scoreScene(engine, o, item);
      rows.push(r);
      found.push(truthFound);
      say(
        `${r.index + 1}/${items.length} ${r.split} "${r.caption}": final all=${r.adherence.generatedFinal.all}, ` +
          `interp ${r.interpolation.model.psnr.toFixed(2)} dB (blend ${r.interpolation.blend.psnr.toFixed(2)}), ` +
          `vsr ${r.vsr.model.psnr.toFixed(2)} dB (bicubic ${r.vsr.bicubic.psnr.toFixed(2)}); ` +
          `${((r.ms.generate + r.ms.interpolation + r.ms.vsr + r.ms.metrics) / 1000).toFixed(1)} s`,
      );
    }
    crossMatch(rows, found);
    const wallS = (performance.now() - t0) / 1000;
    const spec = engine.resolve({ prompt: "x" });
    const stepsUsed = {
      base: o.steps ?? spec.base.steps,
      interpolation: o.steps ?? spec.interpolation.steps,
      vsr: o.steps ?? spec.vsr.steps,
    };
    const head = [
      `Model directory ${dir} (preset ${lim.preset}): base ${F} frames ${H}x${W}, final 61 frames ${4 * H}x${4 * W}; ` +
        `steps base ${stepsUsed.base}, interpolation ${stepsUsed.interpolation}, vsr ${stepsUsed.vsr}; ` +
        `${o.scenes} held-out + ${o.trainScenes} train scenes, seed ${o.seed}; VSR on the first ${o.vsrFrames} frames ` +
        `of the 61-frame clip; 1 ORT worker x ${threads} threads on ${cpus().length} cores; ` +
        `${wallS.toFixed(0)} s, load average ${load0.toFixed(1)} -> ${loadavg()[0]!.toFixed(1)}.`,
    ].join("");
    const md = [
      head,
      "",
      "Prompt adherence: % of scenes where the detector finds, for every object the caption names, an object of its colour (and, in the shape / motion columns, that object has the named shape / motion; world/detect.ts matchCaption):",
      "",
      adherenceTable(rows),
      "",
      "Interpolation (the stage alone on the ground-truth base clip; against the true 61-frame render):",
      "",
      interpolationTable(rows),
      "",
      `Super-resolution (the stage alone on the ground-truth ${o.vsrFrames}-frame low-res clip; against the true x4 render):`,
      "",
      vsrTable(rows),
      "",
      "Temporal consistency (flicker = mean |frame-to-frame difference|, 8-bit levels; excess = clip - its ground truth):",
      "",
      flickerTable(rows),
      "",
      "Scenes (a = all three, c/s/m = colour/shape/motion; + matched):",
      "",
      sceneList(rows),
    ].join("\n");
    console.log(md);
    const out = v.out ?? `bench/results/quality.${lim.preset}.json`;
    await mkdir(dirname(out), { recursive: true });
    const inf = (_k: string, x: unknown) => (x === Number.POSITIVE_INFINITY ? "Infinity" : x);
    const json = {
      date: new Date().toISOString(),
      dir,
      preset: lim.preset,
      base: lim.base,
      options: o,
      steps: stepsUsed,
      threads,
      cores: cpus().length,
      loadavg: [load0, loadavg()[0]],
      wallS,
      rows,
    };
    await writeFile(out, `${JSON.stringify(json, inf, 2)}\n`);
    say(`wrote ${out}`);
  } finally {
    await engine.close();
  }
}

await main();
