/**
 * Defaults and validation of sampler configurations. Every rejection is invalidArgument(field, ...)
 * naming the field and what is allowed.
 *
 * Defaults are the diffusers class defaults, except clipSample (off; diffusers defaults it on, but every
 * LaVie/SD scheduler config turns it off):
 *   numTrainTimesteps 1000, betaSchedule "linear", betaStart 1e-4, betaEnd 0.02, numInferenceSteps 50,
 *   predictionType "epsilon", timestepSpacing "leading" (DDPM/DDIM), "linspace" (Euler, as diffusers 0.16)
 *   or "respaced" (respaced_ddim, its only spacing), stepsOffset 0, clipSample false, clipSampleRange 1,
 *   setAlphaToOne true, eta 0.
 * The LaVie stage presets (presets.ts) override these with the values LaVie inherits from its scheduler configs.
 */
import { invalidArgument } from "../errors.ts";
import type { SamplerConfig, SamplerConfigInput, SamplerName, TimestepSpacing } from "./types.ts";
import { BETA_SCHEDULES, PREDICTION_TYPES, SAMPLER_NAMES, TIMESTEP_SPACINGS } from "./types.ts";

export function oneOf<T extends string>(field: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value === "string" && (allowed as readonly string[]).includes(value)) return value as T;
  throw invalidArgument(
    field,
    `must be one of ${allowed.map((a) => `"${a}"`).join(", ")}; got ${show(value)}`,
  );
}

export function intInRange(field: string, value: unknown, min: number, max: number): number {
  if (typeof value === "number" && Number.isInteger(value) && value >= min && value <= max) return value;
  throw invalidArgument(field, `must be an integer in ${min}..${max}; got ${show(value)}`);
}

export function finiteInRange(
  field: string,
  value: unknown,
  min: number,
  max: number,
  what?: string,
): number {
  if (typeof value === "number" && Number.isFinite(value) && value >= min && value <= max) return value;
  throw invalidArgument(field, `must be ${what ?? `a number in [${min}, ${max}]`}; got ${show(value)}`);
}

const DEFAULT_SPACING: Readonly<Record<SamplerName, TimestepSpacing>> = {
  ddpm: "leading",
  ddim: "leading",
  euler: "linspace",
  respaced_ddim: "respaced",
};

function bool(field: string, value: unknown): boolean {
  if (typeof value === "boolean") return value;
  throw invalidArgument(field, `must be true or false; got ${show(value)}`);
}

function show(v: unknown): string {
  return typeof v === "string" ? `"${v}"` : String(v);
}

/** Fills defaults and validates. Throws invalidArgument naming the offending field. */
export function resolveSamplerConfig(input: SamplerConfigInput): SamplerConfig {
  const sampler: SamplerName = oneOf("sampler", input.sampler, SAMPLER_NAMES);
  const numTrainTimesteps = intInRange("numTrainTimesteps", input.numTrainTimesteps ?? 1000, 2, 100_000);
  const betaSchedule = oneOf("betaSchedule", input.betaSchedule ?? "linear", BETA_SCHEDULES);
  const betaStart = finiteInRange(
    "betaStart",
    input.betaStart ?? 1e-4,
    Number.MIN_VALUE,
    0.999,
    "in (0, 0.999]",
  );
  const betaEnd = finiteInRange("betaEnd", input.betaEnd ?? 0.02, betaStart, 0.999, `in [betaStart, 0.999]`);
  const numInferenceSteps = intInRange(
    "numInferenceSteps",
    input.numInferenceSteps ?? 50,
    1,
    numTrainTimesteps,
  );
  const predictionType = oneOf("predictionType", input.predictionType ?? "epsilon", PREDICTION_TYPES);
  const defaultSpacing = DEFAULT_SPACING[sampler];
  const timestepSpacing = oneOf(
    "timestepSpacing",
    input.timestepSpacing ?? defaultSpacing,
    TIMESTEP_SPACINGS,
  );
  if ((sampler === "respaced_ddim") !== (timestepSpacing === "respaced")) {
    throw invalidArgument(
      "timestepSpacing",
      sampler === "respaced_ddim"
        ? `must be "respaced" for sampler "respaced_ddim"; got "${timestepSpacing}"`
        : `"respaced" is only used by sampler "respaced_ddim"; "${sampler}" allows "leading", "trailing", "linspace"`,
    );
  }
  const stepsOffset = intInRange("stepsOffset", input.stepsOffset ?? 0, 0, numTrainTimesteps - 1);
  // Only DDIM applies the offset (diffusers 0.16 DDPMScheduler has none).
  if (sampler === "ddim" && timestepSpacing === "leading") {
    const top = (numInferenceSteps - 1) * Math.floor(numTrainTimesteps / numInferenceSteps) + stepsOffset;
    if (top > numTrainTimesteps - 1) {
      throw invalidArgument(
        "stepsOffset",
        `with ${numInferenceSteps} leading steps the largest timestep would be ${top}; it must be at most ${numTrainTimesteps - 1}`,
      );
    }
  }
  const clipSample = bool("clipSample", input.clipSample ?? false);
  const clipSampleRange = finiteInRange(
    "clipSampleRange",
    input.clipSampleRange ?? 1,
    Number.MIN_VALUE,
    Infinity,
    "a positive number",
  );
  if (clipSample && sampler === "euler") {
    throw invalidArgument("clipSample", 'is only supported by "ddpm", "ddim" and "respaced_ddim"');
  }
  const setAlphaToOne = bool("setAlphaToOne", input.setAlphaToOne ?? true);
  const eta = finiteInRange("eta", input.eta ?? 0, 0, 1);
  if (eta !== 0 && sampler !== "ddim" && sampler !== "respaced_ddim") {
    throw invalidArgument("eta", 'must be 0 unless sampler is "ddim" or "respaced_ddim"');
  }
  return {
    sampler,
    numTrainTimesteps,
    betaSchedule,
    betaStart,
    betaEnd,
    numInferenceSteps,
    predictionType,
    timestepSpacing,
    stepsOffset,
    clipSample,
    clipSampleRange,
    setAlphaToOne,
    eta,
  };
}
