/**
 * A generation job: what the user asked for (JobRequest, every field optional but the prompt) and
 * the validated, defaults-filled form every other module uses (JobSpec). Validation happens once,
 * here, before any work starts; errors name the field and what is allowed.
 *
 *   const spec = resolveJob({ prompt: "a panda playing guitar", seed: 7 }, limitsOf(manifest));
 */
import { invalidArgument } from "./errors.ts";
import { SAMPLER_NAMES, type SamplerName, stagePreset, validateGuidanceScale } from "./samplers/index.ts";
import { checkJobSeed } from "./seed.ts";
import { windows } from "./tiling/index.ts";

export type StopAfter = "base" | "interpolation" | "vsr";
export const STOP_AFTER: readonly StopAfter[] = ["base", "interpolation", "vsr"];

/** What the models allow: filled from the model directory's manifest. */
export interface ModelLimits {
  preset: string;
  /** Default base video size in pixels and frames. */
  base: { frames: number; height: number; width: number };
  /** Spatial divisor of each UNet on its own input (latent for base/interp, low-res pixels for VSR). */
  divisor: { base: number; interpolation: number; vsr: number };
  /** VAE pixel/latent factors. */
  vaeFactor: number;
  vsrScale: number;
  defaultSteps: { base: number; interpolation: number; vsr: number };
  /** Max tokens per prompt including start/end tokens (77). */
  maxTokens: number;
}

export interface StageRequest {
  steps?: number;
  guidance?: number;
  sampler?: string;
  negativePrompt?: string;
  eta?: number;
}

export interface JobRequest {
  prompt: string;
  seed?: number;
  stopAfter?: string;
  height?: number;
  width?: number;
  frames?: number;
  /**
   * cfgParallel: run the base stage's CFG branches (unconditional, conditional) as two tasks on two
   * runners at once, exchanging noise predictions each step; the result equals the batched run.
   */
  base?: StageRequest & { cfgParallel?: boolean };
  interpolation?: StageRequest & { chunkFrames?: number; chunkOverlap?: number };
  vsr?: StageRequest & { noiseLevel?: number; chunkFrames?: number; patch?: number; patchOverlap?: number };
  decode?: { baseFrames?: number; vsrFrames?: number; vsrTile?: number; vsrTileOverlap?: number };
}

export interface StageSpec {
  steps: number;
  guidance: number;
  sampler: SamplerName;
  eta: number;
  negativePrompt: string;
  /** Appended to the prompt for this stage (interpolation: ", 4k."). */
  promptSuffix: string;
}

export interface JobSpec {
  prompt: string;
  seed: number;
  preset: string;
  stopAfter: StopAfter;
  frames: number;
  height: number;
  width: number;
  /** cfgParallel: the CFG branches as a gang of two tasks (see JobRequest.base). */
  base: StageSpec & { cfgParallel: boolean };
  /** chunkFrames 0 = the whole sequence in one task (the official behaviour). */
  interpolation: StageSpec & { chunkFrames: number; chunkOverlap: number };
  /** patch 0 = whole frames; sizes in low-res pixels. */
  vsr: StageSpec & { noiseLevel: number; chunkFrames: number; patch: number; patchOverlap: number };
  decode: { baseFrames: number; vsrFrames: number; vsrTile: number; vsrTileOverlap: number };
}

export const MAX_PROMPT_CHARS = 2000;
/** Bounds of a job's size, shared with the runners' request checks. */
export const MAX_FRAMES = 64;
export const MAX_SIDE = 4096;
export const MAX_STEPS = 1000;
/**
 * Tasks one job's plan may have: refused up front (naming the chunk, patch or tile setting that
 * makes most of them), so an absurd split never reaches the planner or the queue.
 */
export const MAX_TASKS_PER_JOB = 10_000;
/** Low-res frames larger than this (pixels) are VAE-decoded in spatial tiles unless a tile is given. */
export const AUTO_TILE_PIXELS = 4096;

function int(field: string, v: unknown, lo: number, hi: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) {
    throw invalidArgument(field, `must be an integer in ${lo}..${hi}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function str(field: string, v: unknown, max: number): string {
  if (typeof v !== "string") throw invalidArgument(field, `must be a string, got ${typeof v}`);
  if (v.length > max) throw invalidArgument(field, `must be at most ${max} characters, got ${v.length}`);
  return v;
}

function stage(
  name: "base" | "interpolation" | "vsr",
  r: StageRequest | undefined,
  defaultSteps: number,
): StageSpec {
  const p = stagePreset(name);
  const req = r ?? {};
  const sampler = req.sampler ?? (p.sampler.sampler as string);
  if (!(SAMPLER_NAMES as readonly string[]).includes(sampler)) {
    throw invalidArgument(
      `${name}.sampler`,
      `unknown sampler "${sampler}"; allowed: ${SAMPLER_NAMES.join(", ")}`,
    );
  }
  let guidance: number;
  try {
    guidance = validateGuidanceScale(req.guidance ?? p.guidanceScale);
  } catch (e) {
    throw invalidArgument(`${name}.guidance`, (e as Error).message.replace(/^[^:]*: /, ""));
  }
  const eta = req.eta ?? 0;
  if (typeof eta !== "number" || !(eta >= 0 && eta <= 1)) {
    throw invalidArgument(`${name}.eta`, `must be a number in [0, 1], got ${JSON.stringify(eta)}`);
  }
  if (eta > 0 && sampler !== "ddim" && sampler !== "respaced_ddim")
    throw invalidArgument(`${name}.eta`, "eta > 0 is only allowed with the ddim and respaced_ddim samplers");
  return {
    steps: int(`${name}.steps`, req.steps ?? defaultSteps, 1, MAX_STEPS),
    guidance,
    sampler: sampler as SamplerName,
    eta,
    negativePrompt: str(`${name}.negativePrompt`, req.negativePrompt ?? p.negativePrompt, MAX_PROMPT_CHARS),
    promptSuffix: p.promptSuffix,
  };
}

function multiple(field: string, v: number, m: number, unit: string): void {
  if (v % m !== 0)
    throw invalidArgument(field, `must be a multiple of ${m} ${unit} for these models, got ${v}`);
}

function cfgParallel(r: JobRequest["base"]): boolean {
  const v = r?.cfgParallel ?? false;
  if (typeof v !== "boolean") throw invalidArgument("base.cfgParallel", `must be a boolean, got ${typeof v}`);
  return v;
}

/** Validates a request against the model limits and fills defaults. Throws before any work starts. */
export function resolveJob(req: JobRequest, limits: ModelLimits): JobSpec {
  if (req === null || typeof req !== "object") throw invalidArgument("request", "must be an object");
  const prompt = str("prompt", req.prompt, MAX_PROMPT_CHARS);
  if (prompt.trim().length === 0) throw invalidArgument("prompt", "must not be empty");
  const seed = checkJobSeed(req.seed ?? 0);
  const stopAfter = (req.stopAfter ?? "vsr") as StopAfter;
  if (!STOP_AFTER.includes(stopAfter)) {
    throw invalidArgument("stopAfter", `unknown stage "${req.stopAfter}"; allowed: ${STOP_AFTER.join(", ")}`);
  }
  const frames = int("frames", req.frames ?? limits.base.frames, 2, MAX_FRAMES);
  const height = int("height", req.height ?? limits.base.height, 8, MAX_SIDE);
  const width = int("width", req.width ?? limits.base.width, 8, MAX_SIDE);
  const px = limits.vaeFactor * limits.divisor.base;
  multiple("height", height, px, "pixels");
  multiple("width", width, px, "pixels");
  multiple("height", height, limits.vaeFactor * limits.divisor.interpolation, "pixels");
  multiple("width", width, limits.vaeFactor * limits.divisor.interpolation, "pixels");
  multiple("height", height, limits.divisor.vsr, "pixels");
  multiple("width", width, limits.divisor.vsr, "pixels");

  const outFrames = (frames - 1) * 4 + 1;
  const interp = req.interpolation ?? {};
  const chunkFrames = int("interpolation.chunkFrames", interp.chunkFrames ?? 0, 0, outFrames);
  if (chunkFrames !== 0 && chunkFrames < 2)
    throw invalidArgument("interpolation.chunkFrames", "must be 0 (whole) or >= 2");
  const chunkOverlap = int(
    "interpolation.chunkOverlap",
    interp.chunkOverlap ?? 0,
    0,
    Math.max(0, chunkFrames - 1),
  );

  const v = req.vsr ?? {};
  const vsrChunk = int("vsr.chunkFrames", v.chunkFrames ?? 8, 1, outFrames);
  const maxSide = Math.max(height, width);
  const patch = int("vsr.patch", v.patch ?? 0, 0, maxSide);
  if (patch !== 0) multiple("vsr.patch", patch, limits.divisor.vsr, "low-res pixels");
  const patchOverlap = int("vsr.patchOverlap", v.patchOverlap ?? 0, 0, Math.max(0, patch - 1));
  if (patch !== 0) multiple("vsr.patchOverlap", patchOverlap, limits.divisor.vsr, "low-res pixels");
  const noiseLevel = int("vsr.noiseLevel", v.noiseLevel ?? 50, 0, 999);

  const d = req.decode ?? {};
  // The x4 VAE decoder's mid-block attention is quadratic in the latent's pixels: past
  // AUTO_TILE_PIXELS the default decodes in overlapping spatial tiles (32 px, overlap 8).
  const autoTile = d.vsrTile === undefined && height * width > AUTO_TILE_PIXELS;
  const vsrTile = int("decode.vsrTile", d.vsrTile ?? (autoTile ? 32 : 0), 0, maxSide);
  const vsrTileOverlap = int(
    "decode.vsrTileOverlap",
    d.vsrTileOverlap ?? (autoTile ? 8 : 0),
    0,
    Math.max(0, vsrTile - 1),
  );

  const spec: JobSpec = {
    prompt,
    seed,
    preset: limits.preset,
    stopAfter,
    frames,
    height,
    width,
    base: { ...stage("base", req.base, limits.defaultSteps.base), cfgParallel: cfgParallel(req.base) },
    interpolation: {
      ...stage("interpolation", interp, limits.defaultSteps.interpolation),
      chunkFrames,
      chunkOverlap,
    },
    vsr: {
      ...stage("vsr", v, limits.defaultSteps.vsr),
      noiseLevel,
      chunkFrames: vsrChunk,
      patch,
      patchOverlap,
    },
    decode: {
      baseFrames: int("decode.baseFrames", d.baseFrames ?? 4, 1, frames),
      vsrFrames: int("decode.vsrFrames", d.vsrFrames ?? 4, 1, outFrames),
      vsrTile,
      vsrTileOverlap,
    },
  };
  checkTaskCount(spec);
  return spec;
}

/** Windows of size `size` (0 = whole) over `length`, as coordinator/plan/plan.ts splits axes. */
function count(length: number, size: number, overlap: number, tail: "shift" | "shrink" = "shift"): number {
  if (size <= 0 || size >= length) return 1;
  return windows(length, size, overlap, 1, { tail }).length;
}

/**
 * The number of tasks planJob makes for `spec` (from the prompt), per setting that multiplies
 * them; refuses more than MAX_TASKS_PER_JOB, naming the setting that makes most of them.
 */
export function planTaskCount(spec: JobSpec): { total: number; by: Record<string, number> } {
  const F = spec.frames;
  const F2 = (F - 1) * 4 + 1;
  const d = spec.decode;
  const baseDecode = count(F, d.baseFrames, 0, "shrink");
  // base: text, denoise (two with cfgParallel), decode in frame groups
  let total = 1 + (spec.base.cfgParallel ? 2 : 1) + baseDecode;
  const by: Record<string, number> = { "decode.baseFrames": baseDecode };
  if (spec.stopAfter === "base") return { total, by };
  // interpolation: encode (base frame groups), text, frame chunks, decode in frame groups
  const ip = spec.interpolation;
  const chunks = count(F2, ip.chunkFrames, ip.chunkOverlap);
  const interpDecode = count(F2, d.baseFrames, 0, "shrink");
  total += baseDecode + 1 + chunks + interpDecode;
  by["decode.baseFrames"] = 2 * baseDecode + interpDecode;
  by["interpolation.chunkFrames"] = chunks;
  if (spec.stopAfter === "interpolation") return { total, by };
  // vsr: text, frame chunks x spatial patches, decode in frame groups x spatial tiles
  const v = spec.vsr;
  const vsrChunks = count(F2, v.chunkFrames, 0, "shrink");
  const patches = count(spec.height, v.patch, v.patchOverlap) * count(spec.width, v.patch, v.patchOverlap);
  const groups = count(F2, d.vsrFrames, 0, "shrink");
  const tiles =
    count(spec.height, d.vsrTile, d.vsrTileOverlap) * count(spec.width, d.vsrTile, d.vsrTileOverlap);
  total += 1 + vsrChunks * patches + groups * tiles;
  by["vsr.chunkFrames"] = vsrChunks;
  by["vsr.patch"] = vsrChunks * patches;
  by["decode.vsrFrames"] = groups;
  by["decode.vsrTile"] = groups * tiles;
  return { total, by };
}

function checkTaskCount(spec: JobSpec): void {
  const { total, by } = planTaskCount(spec);
  if (total <= MAX_TASKS_PER_JOB) return;
  const [field, n] = Object.entries(by).sort((a, b) => b[1] - a[1])[0]!;
  throw invalidArgument(
    field,
    `the plan would have ${total} tasks (${n} of them from this setting); at most ${MAX_TASKS_PER_JOB} are allowed: use larger chunks, patches or tiles`,
  );
}
