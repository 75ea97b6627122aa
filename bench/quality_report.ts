/**
 * Scoring and tables of bench/quality.ts: what one scene measures (SceneScores) and the markdown
 * tables over all scenes, each learned stage next to its baseline from the same run.
 */

import type { DetectedObject } from "../world/detect.ts";
import { matchCaption } from "../world/detect.ts";
import type { ParsedCaption } from "../world/parse.ts";
import { COLOURS, MOTIONS, SHAPES } from "../world/scene.ts";

export type Attr = "colour" | "shape" | "motion" | "all";
export const ATTRS: readonly Attr[] = ["colour", "shape", "motion", "all"];
export type Adherence = Record<Attr, boolean>;

/** Whether every object the caption names has its colour / shape / motion among the detections. */
export function adherence(found: readonly DetectedObject[], caption: ParsedCaption): Adherence {
  const m = matchCaption(found, caption);
  return {
    colour: m.objects.every((o) => o.colour),
    shape: m.objects.every((o) => o.shape),
    motion: m.objects.every((o) => o.motion),
    all: m.ok,
  };
}

/**
 * Probability that uniformly random objects (colour, shape, motion) match the caption. As in
 * matchCaption, shape and motion are checked on the object of the named colour, so they need the
 * colour too: per object 1/7, 1/7 x 1/3, 1/7 x 1/5 and 1/105 for all three.
 */
export function chanceOf(caption: ParsedCaption): Record<Attr, number> {
  const n = caption.objects.length;
  const c = 1 / COLOURS.length;
  const s = 1 / SHAPES.length;
  const m = 1 / MOTIONS.length;
  return { colour: c ** n, shape: (c * s) ** n, motion: (c * m) ** n, all: (c * s * m) ** n };
}

export interface PairScore {
  /** Mean squared error on [-1, 1] values, PSNR of this scene (peak 2; Infinity when exact), SSIM. */
  mse: number;
  psnr: number;
  ssim: number;
}

export interface SceneScores {
  index: number;
  split: "heldout" | "train";
  caption: string;
  jobSeed: number;
  objects: number;
  /** Adherence of the detector on each clip to this scene's caption. */
  adherence: {
    generatedBase: Adherence;
    generatedFinal: Adherence;
    truthBase: Adherence;
    truthFinal: Adherence;
  };
  /** Empirical chance: the share of the OTHER scenes' base-size ground truths that match this caption. */
  otherTruth: Record<Attr, number>;
  chance: Record<Attr, number>;
  interpolation: {
    model: PairScore & { between: PairScore; tde: number };
    blend: PairScore & { between: PairScore; tde: number };
  };
  vsr: { model: PairScore & { tde: number }; bicubic: PairScore & { tde: number } };
  /** Flicker (mean |frame difference|, [-1, 1] units). */
  flicker: {
    generatedBase: number;
    truthBase: number;
    generatedFinal: number;
    truthFinal: number;
    interpolation: number;
    blend: number;
    truth61: number;
  };
  /** Range of the generated final video before clamping, and the share of samples outside [-1, 1]. */
  generatedRange: [number, number, number];
  ms: { generate: number; interpolation: number; vsr: number; metrics: number };
}

const mean = (xs: readonly number[]): number => xs.reduce((a, x) => a + x, 0) / Math.max(1, xs.length);
/** PSNR of the mean MSE over scenes (peak 2): the scenes pooled, finite unless every scene is exact. */
const pooledPsnr = (xs: readonly PairScore[]): number => {
  const m = mean(xs.map((x) => x.mse));
  return m === 0 ? Number.POSITIVE_INFINITY : 10 * Math.log10(4 / m);
};
const pct = (x: number): string =>
  Number.isNaN(x) ? "n/a" : `${(100 * x).toFixed(x > 0 && x < 0.01 ? 2 : 0)}%`;
const db = (x: number): string => (x === Number.POSITIVE_INFINITY ? "inf" : x.toFixed(2));
const f3 = (x: number): string => x.toFixed(3);
/** [-1, 1] units -> 8-bit levels. */
const lv = (x: number): string => (x * 127.5).toFixed(2);

const SPLIT_NAMES = { heldout: "held-out", train: "train" } as const;

function groups(rows: readonly SceneScores[]): [string, SceneScores[]][] {
  const out: [string, SceneScores[]][] = [];
  for (const s of ["heldout", "train"] as const) {
    const g = rows.filter((r) => r.split === s);
    if (g.length) out.push([`${SPLIT_NAMES[s]} (${g.length})`, g]);
  }
  return out;
}

export function adherenceTable(rows: readonly SceneScores[]): string {
  const lines = [
    "| clip scored by the detector | split (scenes) | colour | shape (and colour) | motion (and colour) | all three |",
    "|---|---|---|---|---|---|",
  ];
  const kinds: [keyof SceneScores["adherence"], string][] = [
    ["generatedBase", "**model**: generated base clip (16 frames)"],
    ["generatedFinal", "**model**: generated final video (61 frames, x4)"],
    ["truthBase", "baseline: ground-truth render, base size (16 frames)"],
    ["truthFinal", "baseline: ground-truth render, final size (61 frames, x4)"],
  ];
  for (const [label, g] of groups(rows)) {
    for (const [k, name] of kinds) {
      const cell = (a: Attr) => pct(mean(g.map((r) => (r.adherence[k][a] ? 1 : 0))));
      lines.push(`| ${name} | ${label} | ${ATTRS.map(cell).join(" | ")} |`);
    }
    const other = (a: Attr) => pct(mean(g.map((r) => r.otherTruth[a])));
    lines.push(
      `| baseline: the other scenes' ground truths (empirical chance) | ${label} | ${ATTRS.map(other).join(" | ")} |`,
    );
    const ch = (a: Attr) => pct(mean(g.map((r) => r.chance[a])));
    lines.push(`| baseline: chance (uniformly random objects) | ${label} | ${ATTRS.map(ch).join(" | ")} |`);
  }
  return lines.join("\n");
}

export function interpolationTable(rows: readonly SceneScores[]): string {
  const lines = [
    "| method | split (scenes) | PSNR dB (61 frames) | SSIM (61) | PSNR dB (45 in-between) | SSIM (in-between) | temporal-diff error (levels) |",
    "|---|---|---|---|---|---|---|",
  ];
  for (const [label, g] of groups(rows)) {
    for (const [k, name] of [
      ["model", "**model**: interpolation stage"],
      ["blend", "baseline: blend neighbouring frames"],
    ] as const) {
      const x = g.map((r) => r.interpolation[k]);
      lines.push(
        `| ${name} | ${label} | ${db(pooledPsnr(x))} | ${f3(mean(x.map((v) => v.ssim)))} | ${db(
          pooledPsnr(x.map((v) => v.between)),
        )} | ${f3(mean(x.map((v) => v.between.ssim)))} | ${lv(mean(x.map((v) => v.tde)))} |`,
      );
    }
  }
  return lines.join("\n");
}

export function vsrTable(rows: readonly SceneScores[]): string {
  const lines = [
    "| method | split (scenes) | PSNR dB | SSIM | temporal-diff error (levels) |",
    "|---|---|---|---|---|",
  ];
  for (const [label, g] of groups(rows)) {
    for (const [k, name] of [
      ["model", "**model**: VSR stage"],
      ["bicubic", "baseline: bicubic x4 (Keys a = -0.5)"],
    ] as const) {
      const x = g.map((r) => r.vsr[k]);
      lines.push(
        `| ${name} | ${label} | ${db(pooledPsnr(x))} | ${f3(mean(x.map((v) => v.ssim)))} | ${lv(
          mean(x.map((v) => v.tde)),
        )} |`,
      );
    }
  }
  return lines.join("\n");
}

export function flickerTable(rows: readonly SceneScores[]): string {
  const lines = [
    "| clip | split (scenes) | flicker (levels) | ground truth's flicker (levels) | excess (levels) |",
    "|---|---|---|---|---|",
  ];
  for (const [label, g] of groups(rows)) {
    const row = (name: string, a: (r: SceneScores) => number, b: (r: SceneScores) => number) => {
      const x = mean(g.map(a));
      const y = mean(g.map(b));
      lines.push(`| ${name} | ${label} | ${lv(x)} | ${lv(y)} | ${lv(x - y)} |`);
    };
    row(
      "**model**: generated base clip",
      (r) => r.flicker.generatedBase,
      (r) => r.flicker.truthBase,
    );
    row(
      "**model**: generated final video",
      (r) => r.flicker.generatedFinal,
      (r) => r.flicker.truthFinal,
    );
    row(
      "**model**: interpolation stage on the true base clip",
      (r) => r.flicker.interpolation,
      (r) => r.flicker.truth61,
    );
    row(
      "baseline: blend neighbouring frames",
      (r) => r.flicker.blend,
      (r) => r.flicker.truth61,
    );
  }
  return lines.join("\n");
}

/** Per-scene lines: caption, what the detector read on the generated final video, timings. */
export function sceneList(rows: readonly SceneScores[]): string {
  const yes = (a: Adherence) => ATTRS.map((k) => `${k[0]}${a[k] ? "+" : "-"}`).join(" ");
  return rows
    .map(
      (r) =>
        `- ${r.index} ${SPLIT_NAMES[r.split]}, seed ${r.jobSeed}: "${r.caption}": generated base ${yes(
          r.adherence.generatedBase,
        )}, final ${yes(r.adherence.generatedFinal)}; truth ${yes(r.adherence.truthBase)}; ` +
        `final range [${r.generatedRange[0].toFixed(2)}, ${r.generatedRange[1].toFixed(2)}] (${pct(r.generatedRange[2])} outside [-1, 1])`,
    )
    .join("\n");
}
