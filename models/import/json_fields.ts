/**
 * Typed field access for Hugging Face config.json files (transformers and diffusers configs), with
 * errors that name the file, the field and what is allowed. A missing field takes the library's
 * default, as `from_pretrained` does.
 */
import { readFile } from "node:fs/promises";
import { LavieError } from "../../core/errors.ts";

export type JsonObject = Record<string, unknown>;

export function configError(file: string, field: string, msg: string): LavieError {
  return new LavieError("invalid_argument", `${file}: "${field}" ${msg}`, { field });
}

/** Reads and parses a config.json; refuses anything but a JSON object. */
export async function readConfigJson(path: string): Promise<JsonObject> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new LavieError("not_found", `${path}: cannot read the config (${(err as Error).message})`, {
      field: path,
      cause: err,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new LavieError("invalid_argument", `${path}: not valid JSON (${(err as Error).message})`, {
      field: path,
      cause: err,
    });
  }
  return asObject(json, path, "(root)");
}

export function asObject(v: unknown, file: string, field: string): JsonObject {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw configError(file, field, `must be a JSON object, got ${describe(v)}`);
  return v as JsonObject;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === "object") return "an object";
  return String(v);
}

/** A positive integer field (or `def` when absent). */
export function positiveInt(o: JsonObject, file: string, field: string, def: number): number {
  const v = o[field] ?? def;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1)
    throw configError(file, field, `must be a positive integer, got ${describe(v)}`);
  return v;
}

/** A finite positive number field (or `def` when absent). */
export function positiveNumber(o: JsonObject, file: string, field: string, def: number): number {
  const v = o[field] ?? def;
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0)
    throw configError(file, field, `must be a positive number, got ${describe(v)}`);
  return v;
}

/** A string field that must be one of `allowed` (or `def` when absent). */
export function oneOf<T extends string>(
  o: JsonObject,
  file: string,
  field: string,
  allowed: readonly T[],
  def: T,
): T {
  const v = o[field] ?? def;
  if (typeof v !== "string" || !(allowed as readonly string[]).includes(v))
    throw configError(
      file,
      field,
      `must be one of ${allowed.map((a) => `"${a}"`).join(", ")}, got ${describe(v)}`,
    );
  return v as T;
}

/** An integer field that must equal `required` (or is absent, meaning `required`). */
export function fixedInt(o: JsonObject, file: string, field: string, required: number, why: string): number {
  const v = o[field] ?? required;
  if (v !== required) throw configError(file, field, `must be ${required} (${why}), got ${describe(v)}`);
  return required;
}

/** A list of positive integers (or `def` when absent). */
export function positiveInts(o: JsonObject, file: string, field: string, def: readonly number[]): number[] {
  const v = o[field] ?? def;
  if (
    !Array.isArray(v) ||
    v.length === 0 ||
    v.some((x) => typeof x !== "number" || !Number.isInteger(x) || x < 1)
  )
    throw configError(file, field, `must be a non-empty list of positive integers, got ${describe(v)}`);
  return [...(v as number[])];
}

/** A list of strings each equal to `required` (or `def` when absent). */
export function stringsAll(
  o: JsonObject,
  file: string,
  field: string,
  required: string,
  def: readonly string[],
): string[] {
  const v = o[field] ?? def;
  if (!Array.isArray(v) || v.some((x) => x !== required))
    throw configError(
      file,
      field,
      `must be a list of "${required}" (one per level), got ${JSON.stringify(v)}`,
    );
  return [...(v as string[])];
}
