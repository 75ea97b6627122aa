/** Option parsers shared by CLI commands. Each rejects with a message saying what is allowed. */
import { InvalidArgumentError } from "commander";
import { jobSeedProblem } from "../../core/seed.ts";
import { getPreset, PRESET_NAMES } from "../../models/presets.ts";

/** Any preset name (tiny, small, lavie). */
export function parsePreset(value: string): string {
  if (!(PRESET_NAMES as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`unknown preset "${value}"; allowed: ${PRESET_NAMES.join(", ")}`);
  }
  return value;
}

/** A preset whose weights can be built here. */
export function parseRunnablePreset(value: string): string {
  parsePreset(value);
  if (!getPreset(value).runnable) {
    const ok = PRESET_NAMES.filter((n) => getPreset(n).runnable);
    throw new InvalidArgumentError(
      `preset "${value}" has parameter counts only (its weights are not built here); allowed: ${ok.join(", ")}`,
    );
  }
  return value;
}

/**
 * A job seed (--seed of generate, interpolate, upscale): the range and message of core/seed.ts,
 * the same as the client API, resolveJob and the runners give.
 */
export function parseJobSeed(value: string): number {
  const text = value.trim();
  const v: unknown = /^-?\d+$/.test(text) ? BigInt(text) : value;
  const problem = jobSeedProblem(v);
  if (problem !== null) throw new InvalidArgumentError(problem);
  return Number(v);
}

/** A 32-bit seed of local generators (model weights, toy-world layouts): not the job seed. */
export function parseSeed(value: string): number {
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n > 0xffffffff) {
    throw new InvalidArgumentError(`must be an integer in 0..4294967295; got "${value}"`);
  }
  return n;
}

const UNITS: Record<string, number> = { "": 1, k: 1 << 10, m: 1 << 20, g: 1 << 30 };

/** Bytes with an optional K/M/G suffix (binary units): "1G", "512M", "4096". */
export function parseBytes(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?$/i.exec(value.trim());
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new InvalidArgumentError(
      `must be a size in bytes, optionally with K, M or G (e.g. 512M); got "${value}"`,
    );
  }
  return Math.round(Number(m[1]) * unit);
}
