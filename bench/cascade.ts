/**
 * Whole-cascade benchmark on the in-process engine (LocalEngine: one ORT worker, 2 intra-op threads).
 *
 *   node --import tsx bench/cascade.ts [--preset small] [--split-preset tiny] [--part all|stages|splits]
 *       [--cache-dir /tmp/lavie-bench-cache] [--out bench/results/cascade.json]
 *
 * (a) stages: one full cascade of --preset (default small) at its default sizes and steps; the
 *     task_finished events' ms summed by stage/kind (first task of each network includes its ORT
 *     session creation), the generate() wall time, and the model build time when not cached.
 * (b) splits: with --split-preset (default tiny, fast), the reference plan (official behaviour:
 *     whole-sequence interpolation, whole-frame VSR in chunks of 8 frames, whole-frame x4 decode,
 *     VAE decode/encode in groups of 4 frames) against variants. PSNR twice: on the raw float frames
 *     with peak 2 (the [-1, 1] range: 10 log10(4 / MSE), no clamping; seeded models overshoot the
 *     range), and on the uint8 frames as written to video (media/convert.ts floatToByte) with peak
 *     255; plus the max abs diff on each scale:
 *       - a control: the reference run again (run-to-run determinism);
 *       - exact splits, which must give Infinity dB: VAE frame groups decode.baseFrames 1 / 16 and
 *         decode.vsrFrames 1 / 16 (frames are decoded independently);
 *       - approximate splits per overlap: interpolation chunks of 16 frames (chunkOverlap 0, 4, 8) vs
 *         the whole sequence, compared at the interpolation output (stopAfter "interpolation") and at
 *         the final frames; VSR spatial patches (vsr.patch = half the low-res height, patchOverlap
 *         0, 4, 8) and x4 VAE decode tiles (decode.vsrTile = half the low-res height, vsrTileOverlap
 *         0, 4, 8) vs whole frames, compared at the final frames.
 * The seeded-weight models produce patterns, not scenes: PSNR measures how much a split changes the
 * computation, not visual quality.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { LocalEngine } from "../coordinator/engine.ts";
import type { ExecutorEvent } from "../coordinator/executor/local.ts";
import type { JobRequest } from "../core/job.ts";
import { maxAbsDiff, psnr } from "../core/metrics.ts";
import type { Tensor } from "../core/tensor.ts";
import { floatToByte } from "../media/convert.ts";
import { ensureModels, modelCacheDir } from "../models/cache.ts";
import { loadModelDirectory } from "../models/loader.ts";
import { getPreset, unetDivisor } from "../models/presets.ts";

const PROMPT = "a panda playing guitar on a beach";
const SEED = 1;

interface StageRow {
  stage: string;
  kind: string;
  tasks: number;
  units: number;
  ms: number;
}

interface RunResult {
  frames: Tensor;
  /** The frames as written to video: round((x+1)*127.5) clamped to 0..255 (media/convert.ts). */
  bytes: Uint8Array;
  tasks: number;
  wallMs: number;
  byKind: Map<string, StageRow>;
}

async function ensure(
  preset: string,
  cacheDir: string,
): Promise<{ dir: string; cached: boolean; ms: number }> {
  const t = performance.now();
  const cached = await loadModelDirectory(modelCacheDir(preset, { cacheDir }), { verifyHashes: false }).then(
    () => true,
    () => false,
  );
  const dir = await ensureModels(preset, { cacheDir });
  return { dir, cached, ms: performance.now() - t };
}

async function run(engine: LocalEngine, req: JobRequest): Promise<RunResult> {
  const spec = engine.resolve(req);
  const byKind = new Map<string, StageRow>();
  const onEvent = (e: ExecutorEvent): void => {
    if (e.type !== "task_finished") return;
    const key = `${e.task.stage}/${e.task.kind}`;
    const row = byKind.get(key) ?? { stage: e.task.stage, kind: e.task.kind, tasks: 0, units: 0, ms: 0 };
    row.tasks++;
    row.units += e.task.units;
    row.ms += e.ms;
    byKind.set(key, row);
  };
  const t = performance.now();
  const r = await engine.generate(spec, { onEvent });
  const bytes = Uint8Array.from(r.frames.data, floatToByte);
  return { frames: r.frames, bytes, tasks: r.plan.tasks.length, wallMs: performance.now() - t, byKind };
}

const s = (ms: number): string => (ms / 1000).toFixed(1);
const db = (x: number): string => (x === Number.POSITIVE_INFINITY ? "Infinity" : x.toFixed(2));
const inf = (x: number): number | string => (x === Number.POSITIVE_INFINITY ? "Infinity" : x);
const sci = (x: number): string => (x === 0 ? "0" : x.toExponential(2));

async function stages(preset: string, cacheDir: string): Promise<{ md: string; json: unknown }> {
  const build = await ensure(preset, cacheDir);
  const engine = await LocalEngine.open(build.dir, { workers: 1, intraOpThreads: 2, verifyHashes: false });
  try {
    const spec = engine.resolve({ prompt: PROMPT, seed: SEED });
    const r = await run(engine, { prompt: PROMPT, seed: SEED });
    const rows = [...r.byKind.values()];
    const taskMs = rows.reduce((a, x) => a + x.ms, 0);
    const lines = [
      `Preset ${preset}: ${spec.frames} frames ${spec.height}x${spec.width} -> ${r.frames.shape.join("x")}; steps base ${spec.base.steps}, interpolation ${spec.interpolation.steps}, vsr ${spec.vsr.steps}; 1 ORT worker x 2 intra-op threads; ${r.tasks} tasks. Splits (the resolved defaults): VSR chunks of ${spec.vsr.chunkFrames} frames, patch ${spec.vsr.patch || "whole frame"}; VAE frame groups ${spec.decode.baseFrames} (SD) / ${spec.decode.vsrFrames} (x4); x4 decode tile ${spec.decode.vsrTile ? `${spec.decode.vsrTile} latent px, overlap ${spec.decode.vsrTileOverlap}` : "whole frame"}.`,
      "",
      "| stage | kind | tasks | units (steps) | task time s | share of task time |",
      "|---|---|---|---|---|---|",
    ];
    const stageTotals = new Map<string, number>();
    for (const x of rows) {
      stageTotals.set(x.stage, (stageTotals.get(x.stage) ?? 0) + x.ms);
      lines.push(
        `| ${x.stage} | ${x.kind} | ${x.tasks} | ${x.units} | ${s(x.ms)} | ${((100 * x.ms) / taskMs).toFixed(1)}% |`,
      );
    }
    for (const [stage, ms] of stageTotals) {
      lines.push(`| **${stage}** | all | | | **${s(ms)}** | **${((100 * ms) / taskMs).toFixed(1)}%** |`);
    }
    lines.push(
      "",
      `Sum of task times ${s(taskMs)} s; generate() wall time ${s(r.wallMs)} s; model directory ${
        build.cached ? `cached (check + load ${s(build.ms)} s)` : `built in ${s(build.ms)} s`
      }.`,
    );
    return {
      md: lines.join("\n"),
      json: { preset, build, wallMs: r.wallMs, taskMs, tasks: r.tasks, rows },
    };
  } finally {
    await engine.close();
  }
}

interface SplitRow {
  group: string;
  variant: string;
  compared: string;
  tasks: number;
  wallMs: number;
  psnr: number;
  maxAbs: number;
  psnr8: number;
  maxAbs8: number;
  expectExact: boolean;
}

async function splits(preset: string, cacheDir: string): Promise<{ md: string; json: unknown }> {
  const p = getPreset(preset);
  const build = await ensure(preset, cacheDir);
  const engine = await LocalEngine.open(build.dir, { workers: 1, intraOpThreads: 2, verifyHashes: false });
  const rows: SplitRow[] = [];
  try {
    // Whole-frame x4 decode spelled out: core/job.ts auto-tiles it above AUTO_TILE_PIXELS low-res pixels.
    const wholeDecode = { vsrTile: 0, vsrTileOverlap: 0 };
    const base: JobRequest = { prompt: PROMPT, seed: SEED, decode: wholeDecode };
    const half = p.base.height / 2;
    const div = unetDivisor(p.vsrUnet);
    if (half % div !== 0) throw new Error(`half the low-res height (${half}) is not a multiple of ${div}`);

    const ref = await run(engine, base);
    const refInterp = await run(engine, { ...base, stopAfter: "interpolation" });
    const add = async (
      group: string,
      variant: string,
      req: JobRequest,
      expectExact: boolean,
      against: "final" | "interpolation",
    ): Promise<RunResult> => {
      const r = await run(engine, req);
      const cmp = against === "final" ? ref : refInterp;
      rows.push({
        group,
        variant,
        compared: against === "final" ? `final ${r.frames.shape.slice(2).join("x")}` : "interpolation output",
        tasks: r.tasks,
        wallMs: r.wallMs,
        psnr: psnr(r.frames, cmp.frames, 2),
        maxAbs: maxAbsDiff(r.frames, cmp.frames),
        psnr8: psnr(r.bytes, cmp.bytes, 255),
        maxAbs8: maxAbsDiff(r.bytes, cmp.bytes),
        expectExact,
      });
      console.error(`${group} ${variant}: ${db(rows.at(-1)!.psnr)} dB (${s(r.wallMs)} s)`);
      return r;
    };

    await add("control", "reference again", base, true, "final");
    await add(
      "control",
      "reference again (stopAfter interpolation)",
      { ...base, stopAfter: "interpolation" },
      true,
      "interpolation",
    );
    for (const n of [1, p.base.frames]) {
      await add(
        "exact: SD VAE frame groups",
        `decode.baseFrames ${n} (ref 4)`,
        { ...base, decode: { ...wholeDecode, baseFrames: n } },
        true,
        "final",
      );
    }
    for (const n of [1, 16]) {
      await add(
        "exact: x4 VAE frame groups",
        `decode.vsrFrames ${n} (ref 4)`,
        { ...base, decode: { ...wholeDecode, vsrFrames: n } },
        true,
        "final",
      );
    }
    for (const ov of [0, 4, 8]) {
      const interpolation = { chunkFrames: 16, chunkOverlap: ov };
      await add(
        "interpolation chunks",
        `chunkFrames 16, chunkOverlap ${ov}`,
        { ...base, stopAfter: "interpolation", interpolation },
        false,
        "interpolation",
      );
      await add(
        "interpolation chunks",
        `chunkFrames 16, chunkOverlap ${ov}`,
        { ...base, interpolation },
        false,
        "final",
      );
    }
    // The VSR UNet's GroupNorms take statistics over all frames of the clip (as LaVie's do), so the
    // official 8-frame chunks and whole-sequence VSR differ.
    for (const n of [4, 61]) {
      await add(
        "VSR frame chunks",
        `vsr.chunkFrames ${n} (ref 8)`,
        { ...base, vsr: { chunkFrames: n } },
        false,
        "final",
      );
    }
    for (const ov of [0, 4, 8]) {
      await add(
        "VSR spatial patches",
        `vsr.patch ${half}, patchOverlap ${ov}`,
        { ...base, vsr: { patch: half, patchOverlap: ov } },
        false,
        "final",
      );
    }
    for (const ov of [0, 4, 8]) {
      await add(
        "x4 VAE decode tiles",
        `decode.vsrTile ${half}, vsrTileOverlap ${ov}`,
        { ...base, decode: { vsrTile: half, vsrTileOverlap: ov } },
        false,
        "final",
      );
    }

    let lo = Number.POSITIVE_INFINITY;
    let hi = Number.NEGATIVE_INFINITY;
    let outside = 0;
    for (const v of ref.frames.data) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
      if (v < -1 || v > 1) outside++;
    }
    const outsidePct = (100 * outside) / ref.frames.data.length;
    const lines = [
      `Preset ${preset}: ${p.base.frames} frames ${p.base.height}x${p.base.width}, final ${ref.frames.shape.join("x")}; prompt "${PROMPT}", seed ${SEED}. Reference: ${ref.tasks} tasks, ${s(ref.wallMs)} s (stopAfter interpolation: ${refInterp.tasks} tasks, ${s(refInterp.wallMs)} s). Reference frames range [${lo.toFixed(3)}, ${hi.toFixed(3)}], ${outsidePct.toFixed(1)}% of samples outside [-1, 1].`,
      "float: PSNR on the raw float frames with peak 2 (the [-1, 1] range; no clamping or rounding), max |diff| on that scale. uint8: the frames as written to video (round((x+1)*127.5) clamped to 0..255), peak 255, max |diff| in levels.",
      "",
      "| split | variant | compared at | tasks | wall s | float PSNR dB | float max abs diff | uint8 PSNR dB | uint8 max abs diff | expected |",
      "|---|---|---|---|---|---|---|---|---|---|",
      ...rows.map(
        (r) =>
          `| ${r.group} | ${r.variant} | ${r.compared} | ${r.tasks} | ${s(r.wallMs)} | ${db(r.psnr)} | ${sci(r.maxAbs)} | ${db(r.psnr8)} | ${r.maxAbs8} | ${
            r.expectExact
              ? r.psnr === Number.POSITIVE_INFINITY
                ? "exact: ok"
                : "exact: **NOT EXACT**"
              : "approximate"
          } |`,
      ),
    ];
    return {
      md: lines.join("\n"),
      json: {
        preset,
        build,
        reference: { tasks: ref.tasks, wallMs: ref.wallMs, range: [lo, hi], outsidePct },
        rows: rows.map((r) => ({ ...r, psnr: inf(r.psnr), psnr8: inf(r.psnr8) })),
      },
    };
  } finally {
    await engine.close();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      preset: { type: "string", default: "small" },
      "split-preset": { type: "string", default: "tiny" },
      part: { type: "string", default: "all" },
      "cache-dir": { type: "string", default: "/tmp/lavie-bench-cache" },
      out: { type: "string", default: "bench/results/cascade.json" },
    },
  });
  const part = values.part;
  if (!["all", "stages", "splits"].includes(part)) throw new Error("--part must be all, stages or splits");
  const cacheDir = values["cache-dir"];
  const json: Record<string, unknown> = { date: new Date().toISOString() };
  if (part === "all" || part === "stages") {
    const r = await stages(values.preset, cacheDir);
    console.log(`## Per-stage wall times (${values.preset})\n\n${r.md}\n`);
    json.stages = r.json;
  }
  if (part === "all" || part === "splits") {
    const r = await splits(values["split-preset"], cacheDir);
    console.log(`## Split vs unsplit (${values["split-preset"]})\n\n${r.md}\n`);
    json.splits = r.json;
  }
  if (values.out) {
    const out = part === "all" ? values.out : values.out.replace(/\.json$/, `.${part}.json`);
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, `${JSON.stringify(json, null, 2)}\n`);
    console.error(`wrote ${out}`);
  }
}

await main();
