/**
 * The job seed: one range and one check for every way a seed comes in (the CLI's --seed, the client
 * API's uint64, resolveJob, the runner's spec_json, the keyed noise). A job seed is an integer in
 * 0..MAX_JOB_SEED: 2^53 - 1, the largest integer a JSON number (the spec on the wire) and a JS
 * number carry exactly. (The model-weight seed of models/build.ts is a different thing.)
 *
 *   const seed = checkJobSeed(req.seed ?? 0);            // throws invalid_argument naming "seed"
 *   const why = jobSeedProblem(10n ** 20n);               // "must be an integer in 0..9007199254740991, got ..."
 */
import { invalidArgument } from "./errors.ts";

export const MAX_JOB_SEED = Number.MAX_SAFE_INTEGER;

function describe(v: unknown): string {
  if (typeof v === "bigint" || typeof v === "number") return String(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (v === null || v === undefined) return String(v);
  return typeof v;
}

/** What is wrong with `value` as a job seed (the message every entry point gives), or null. */
export function jobSeedProblem(value: unknown): string | null {
  const ok =
    typeof value === "bigint"
      ? value >= 0n && value <= BigInt(MAX_JOB_SEED)
      : typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= MAX_JOB_SEED;
  return ok ? null : `must be an integer in 0..${MAX_JOB_SEED}, got ${describe(value)}`;
}

/** The job seed as a number; an invalid_argument error naming `field` when it is out of range. */
export function checkJobSeed(value: unknown, field = "seed"): number {
  const problem = jobSeedProblem(value);
  if (problem !== null) throw invalidArgument(field, problem);
  return Number(value);
}
