import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { LavieError } from "../core/errors.ts";
import { ensureModels, MODEL_CACHE_ENV, modelCacheDir, modelCacheRoot } from "./cache.ts";
import { loadModelDirectory } from "./loader.ts";
import { builderVersion } from "./version.ts";

const root = mkdtempSync(join(tmpdir(), "lavie-cache-"));
after(() => rmSync(root, { recursive: true, force: true }));

test("cache location: option, then $LAVIE_MODEL_CACHE, then <repo>/.cache/models", () => {
  const saved = process.env[MODEL_CACHE_ENV];
  try {
    delete process.env[MODEL_CACHE_ENV];
    const repo = dirname(dirname(fileURLToPath(import.meta.url)));
    assert.equal(modelCacheRoot(), join(repo, ".cache", "models"));
    process.env[MODEL_CACHE_ENV] = "/srv/models";
    assert.equal(modelCacheRoot(), "/srv/models");
    assert.equal(modelCacheRoot("/x"), "/x");
    assert.equal(modelCacheDir("tiny", { seed: 4 }), `/srv/models/tiny-s4-v${builderVersion()}`);
  } finally {
    if (saved === undefined) delete process.env[MODEL_CACHE_ENV];
    else process.env[MODEL_CACHE_ENV] = saved;
  }
  assert.match(builderVersion(), /^\d+\.[0-9a-f]{8}$/);
});

test("ensureModels builds once, reuses, and rebuilds a corrupted directory", async () => {
  let builds = 0;
  const opts = {
    seed: 1,
    cacheDir: root,
    onProgress: (e: { phase: string; index: number }) => {
      if (e.phase === "start" && e.index === 0) builds++;
    },
  };
  const dir = await ensureModels("tiny", opts);
  assert.equal(dir, modelCacheDir("tiny", { seed: 1, cacheDir: root }));
  assert.equal(builds, 1);
  const mtime = statSync(join(dir, "manifest.json")).mtimeMs;
  assert.equal(await ensureModels("tiny", opts), dir);
  assert.equal(builds, 1, "second call reuses the cache");
  assert.equal(statSync(join(dir, "manifest.json")).mtimeMs, mtime);

  const f = join(dir, "vsr_text.onnx");
  const bytes = readFileSync(f);
  bytes.writeUInt8(bytes.readUInt8(10) ^ 0xff, 10);
  writeFileSync(f, bytes);
  assert.equal(await ensureModels("tiny", opts), dir);
  assert.equal(builds, 2, "a corrupted cache entry is rebuilt");
  await loadModelDirectory(dir);
  assert.deepEqual(
    readdirSync(root).filter((n) => n.startsWith(".build-") || n.includes(".stale-")),
    [],
  );
});

test("concurrent ensureModels calls agree on one valid directory", async () => {
  const opts = { seed: 2, cacheDir: root };
  const [a, b, c] = await Promise.all([
    ensureModels("tiny", opts),
    ensureModels("tiny", opts),
    ensureModels("tiny", opts),
  ]);
  assert.equal(a, b);
  assert.equal(b, c);
  const m = await loadModelDirectory(a);
  assert.equal(m.manifest.seed, 2);
  assert.deepEqual(
    readdirSync(root).filter((n) => n.startsWith(".build-")),
    [],
  );
});

test("ensureModels rejects presets that cannot be built here", async () => {
  await assert.rejects(
    ensureModels("lavie", { cacheDir: root }),
    (e: unknown) => e instanceof LavieError && e.code === "invalid_argument" && e.field === "preset",
  );
});
