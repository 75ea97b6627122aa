/**
 * Project-built model directories, built on demand and cached.
 *
 *   const dir = await ensureModels("tiny", { seed: 0 }); // builds once, then reuses
 *
 * Location: <root>/<preset>-s<seed>-v<builderVersion>, root = options.cacheDir, else $LAVIE_MODEL_CACHE,
 * else <repo>/.cache/models. builderVersion fingerprints the builder sources (version.ts), so editing a
 * network builder gives a new directory instead of reusing stale weights.
 *
 * Concurrency: each process builds into its own temporary directory under the root and renames it into
 * place (an atomic directory rename); a process that loses the race validates and uses the winner's
 * directory. A cached directory that fails validation (corrupt, half-deleted) is moved aside and rebuilt.
 */
import { mkdir, mkdtemp, readdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { LavieError } from "../core/errors.ts";
import { type BuildProgress, buildModelDirectory, checkSeed, runnablePreset } from "./build.ts";
import { loadModelDirectory } from "./loader.ts";
import { builderVersion } from "./version.ts";

export const MODEL_CACHE_ENV = "LAVIE_MODEL_CACHE";
const REPO_ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
/** Temporary build directories older than this are left-overs of killed processes. */
const STALE_BUILD_MS = 24 * 3600 * 1000;

export interface EnsureModelsOptions {
  /** Default 0. */
  seed?: number;
  /** Cache root; default $LAVIE_MODEL_CACHE, else <repo>/.cache/models. */
  cacheDir?: string;
  externalDataThreshold?: number;
  onProgress?: (e: BuildProgress) => void;
}

export function modelCacheRoot(cacheDir?: string): string {
  return cacheDir ?? (process.env[MODEL_CACHE_ENV] || join(REPO_ROOT, ".cache", "models"));
}

/** Where ensureModels keeps (preset, seed) for the current builder version. */
export function modelCacheDir(preset: string, opts: { seed?: number; cacheDir?: string } = {}): string {
  const seed = checkSeed(opts.seed ?? 0);
  return join(modelCacheRoot(opts.cacheDir), `${preset}-s${seed}-v${builderVersion()}`);
}

/** True when `dir` is a complete, valid directory of this preset and seed. */
async function isValid(dir: string, preset: string, seed: number): Promise<boolean> {
  try {
    const m = await loadModelDirectory(dir);
    return m.manifest.preset === preset && m.manifest.seed === seed;
  } catch (err) {
    if (err instanceof LavieError && err.code === "failed_precondition") return false;
    throw err;
  }
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null)) !== null;
}

/** Returns the cached directory of (preset, seed), building it first when absent or invalid. */
export async function ensureModels(preset: string, opts: EnsureModelsOptions = {}): Promise<string> {
  const p = runnablePreset(preset);
  const seed = checkSeed(opts.seed ?? 0);
  const root = modelCacheRoot(opts.cacheDir);
  const final = modelCacheDir(p.name, { seed, cacheDir: root });
  if ((await exists(final)) && (await isValid(final, p.name, seed))) return final;

  await mkdir(root, { recursive: true });
  await removeStaleBuilds(root);
  const tmp = await mkdtemp(join(root, `.build-${p.name}-s${seed}-`));
  try {
    await buildModelDirectory(p.name, tmp, {
      seed,
      ...(opts.externalDataThreshold === undefined
        ? {}
        : { externalDataThreshold: opts.externalDataThreshold }),
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    });
    for (let attempt = 0; ; attempt++) {
      try {
        await rename(tmp, final);
        return final;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== "ENOTEMPTY" && code !== "EEXIST" && code !== "EPERM") throw err;
        // Another process got there first: use its directory if it is good...
        if (await isValid(final, p.name, seed)) return final;
        if (attempt >= 3) throw err;
        // ...otherwise move the bad one aside (someone else may have already) and retry.
        const aside = `${final}.stale-${process.pid}-${attempt}`;
        await rename(final, aside).catch(() => undefined);
        await rm(aside, { recursive: true, force: true });
      }
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function removeStaleBuilds(root: string): Promise<void> {
  const now = Date.now();
  for (const name of await readdir(root).catch(() => [] as string[])) {
    if (!name.startsWith(".build-")) continue;
    const path = join(root, name);
    const st = await stat(path).catch(() => null);
    if (st && now - st.mtimeMs > STALE_BUILD_MS) await rm(path, { recursive: true, force: true });
  }
}
