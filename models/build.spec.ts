import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { LavieError } from "../core/errors.ts";
import { buildModelDirectory, paramReport } from "./build.ts";
import { MANIFEST_FILE, parseManifest } from "./manifest.ts";
import { NETWORK_IDS } from "./networks.ts";

const root = mkdtempSync(join(tmpdir(), "lavie-build-"));
after(() => rmSync(root, { recursive: true, force: true }));

test("building tiny twice gives byte-identical directories (inline and external-data networks)", async () => {
  // 1 MiB threshold: the two SD-shaped UNets go external, everything else stays inline.
  const opts = { seed: 7, externalDataThreshold: 1 << 20 };
  const progress: string[] = [];
  const a = await buildModelDirectory("tiny", join(root, "a"), {
    ...opts,
    onProgress: (e) => progress.push(`${e.phase}:${e.id}`),
  });
  await buildModelDirectory("tiny", join(root, "b"), opts);
  const files = readdirSync(join(root, "a")).sort();
  assert.deepEqual(readdirSync(join(root, "b")).sort(), files);
  for (const f of files) {
    assert.ok(readFileSync(join(root, "a", f)).equals(readFileSync(join(root, "b", f))), `${f} differs`);
  }
  assert.ok(files.includes("base_unet.onnx.data") && files.includes("interp_unet.onnx.data"));
  assert.ok(!files.includes("clip_text.onnx.data"));
  assert.ok(!files.some((f) => f.includes(".tmp")), "no temporary files left");
  assert.equal(progress.length, 2 * NETWORK_IDS.length);

  const m = parseManifest(readFileSync(join(root, "a", MANIFEST_FILE), "utf8"), "manifest.json");
  assert.deepEqual(Object.keys(m.networks), [...NETWORK_IDS]);
  assert.equal(m.networks.base_unet?.externalData?.path, "base_unet.onnx.data");
  assert.equal(m.networks.clip_text?.externalData, null);
  assert.equal(m.stages.base?.latentScale, 0.18215);
  assert.equal(m.stages.vsr?.latentScale, 0.08333);
  assert.equal(m.stages.interpolation?.sampler.promptSuffix, ", 4k.");
  assert.equal(m.stages.vsr?.sampler.config.predictionType, "v_prediction");
  assert.equal(m.stages.vsr?.sampler.lowResNoise?.noiseLevel, 50);
  assert.equal(m.stages.interpolation?.output.frames, 61);
  assert.equal(a.networks.length, NETWORK_IDS.length);
  const sizes = files.filter((f) => f !== MANIFEST_FILE).map((f) => readFileSync(join(root, "a", f)).length);
  assert.equal(
    a.totalBytes,
    sizes.reduce((s, n) => s + n, 0),
  );
});

test("a different seed changes the weights but not the layout", async () => {
  await buildModelDirectory("tiny", join(root, "c"), { seed: 8, externalDataThreshold: 1 << 20 });
  const ma = parseManifest(readFileSync(join(root, "a", MANIFEST_FILE), "utf8"), "a");
  const mc = parseManifest(readFileSync(join(root, "c", MANIFEST_FILE), "utf8"), "c");
  assert.notEqual(ma.networks.base_unet?.externalData?.sha256, mc.networks.base_unet?.externalData?.sha256);
  assert.notEqual(ma.networks.clip_text?.file.sha256, mc.networks.clip_text?.file.sha256);
  assert.equal(ma.networks.clip_text?.parameters, mc.networks.clip_text?.parameters);
  assert.equal(ma.tokenizers[0]?.file.sha256, mc.tokenizers[0]?.file.sha256);
});

test("paramReport counts every network of the full-size preset without weights", () => {
  const r = paramReport("lavie");
  assert.deepEqual(
    r.rows.map((x) => x.id),
    [...NETWORK_IDS],
  );
  assert.equal(
    r.total,
    r.rows.reduce((s, x) => s + x.parameters, 0),
  );
  assert.ok(r.rows.every((x) => x.parameters > 1e6));
  assert.ok(r.total > 2e9);
});

test("unknown and non-runnable presets are rejected naming the preset and what is allowed", async () => {
  assert.throws(
    () => paramReport("nope"),
    (e: unknown) =>
      e instanceof LavieError && e.code === "invalid_argument" && /tiny, small, lavie/.test(e.message),
  );
  await assert.rejects(
    buildModelDirectory("lavie", join(root, "x")),
    (e: unknown) => e instanceof LavieError && e.field === "preset" && /allowed: tiny, small/.test(e.message),
  );
  await assert.rejects(
    buildModelDirectory("tiny", join(root, "x"), { seed: -1 }),
    /seed: must be an integer/,
  );
});
