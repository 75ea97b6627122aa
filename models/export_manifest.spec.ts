import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { LavieError } from "../core/errors.ts";
import { buildModelDirectory } from "./build.ts";
import { writeExportManifest } from "./export_manifest.ts";
import { loadModelDirectory } from "./loader.ts";
import { MANIFEST_FILE, parseManifest } from "./manifest.ts";

const root = mkdtempSync(join(tmpdir(), "lavie-export-"));
after(() => rmSync(root, { recursive: true, force: true }));

test("a manifest written for exported files describes them like the builder's and loads", async () => {
  const dir = join(root, "tiny");
  const built = await buildModelDirectory("tiny", dir, { seed: 9, externalDataThreshold: 1 << 20 });
  unlinkSync(join(dir, MANIFEST_FILE));
  // Without the VSR UNet the directory offers only the base and interpolation stages.
  unlinkSync(join(dir, "vsr_unet.onnx"));
  const m = await writeExportManifest(dir, "tiny");
  assert.deepEqual(Object.keys(m.stages), ["base", "interpolation"]);
  assert.equal(m.seed, null);
  assert.deepEqual(m.networks.base_unet?.externalData, built.manifest.networks.base_unet?.externalData);
  assert.deepEqual(m.networks.clip_text?.file, built.manifest.networks.clip_text?.file);
  // Float constants count as initializers: close to, at least, the builder's parameter count.
  const p = m.networks.base_unet!.parameters;
  assert.ok(
    p >= built.manifest.networks.base_unet!.parameters &&
      p < 1.01 * built.manifest.networks.base_unet!.parameters,
  );
  assert.deepEqual(parseManifest(readFileSync(join(dir, MANIFEST_FILE), "utf8"), "m"), m);
  const loaded = await loadModelDirectory(dir);
  assert.throws(() => loaded.stage("vsr"), /no "vsr" stage/);
});

test("a directory without any complete stage is refused", async () => {
  await assert.rejects(
    writeExportManifest(join(root, "nothing-here"), "lavie"),
    (e: unknown) => e instanceof LavieError && e.code === "failed_precondition" && /no stage/.test(e.message),
  );
});
