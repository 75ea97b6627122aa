/**
 * The builder version recorded in manifests and in cache directory names: a hand-bumped format number
 * plus a fingerprint of the sources that decide a built directory's bytes (network builders, ONNX
 * writer, tokenizer generator, presets, stage/sampler defaults). Editing any of them changes the
 * version, so cached directories of older builders are not reused.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { sha256Hex } from "./files.ts";

/** Bump when the directory layout or manifest meaning changes. */
export const BUILDER_FORMAT = 1;

const MODELS = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(MODELS);
const SOURCE_DIRS = ["models/nets", "models/onnx", "models/tokenizer"];
const SOURCE_FILES = [
  "models/configs.ts",
  "models/contract.ts",
  "models/presets.ts",
  "models/networks.ts",
  "models/build.ts",
  "models/stages.ts",
  "models/manifest.ts",
  "core/samplers/presets.ts",
  "core/samplers/config.ts",
  "core/samplers/augment.ts",
];

let cached: string | undefined;

/** E.g. "1.3fa2b9c1". Falls back to the bare format number when the sources are not on disk. */
export function builderVersion(): string {
  if (cached !== undefined) return cached;
  const files = [...SOURCE_FILES];
  for (const d of SOURCE_DIRS) {
    try {
      for (const f of readdirSync(join(ROOT, d)).sort()) {
        if (f.endsWith(".ts") && !f.endsWith(".spec.ts")) files.push(`${d}/${f}`);
      }
    } catch {
      // missing directory: fingerprint what exists
    }
  }
  const parts: string[] = [];
  for (const f of files) {
    try {
      parts.push(`${f}\0${sha256Hex(readFileSync(join(ROOT, f)))}`);
    } catch {
      parts.push(`${f}\0missing`);
    }
  }
  cached = `${BUILDER_FORMAT}.${sha256Hex(parts.join("\n")).slice(0, 8)}`;
  return cached;
}
