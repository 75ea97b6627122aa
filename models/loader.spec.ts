import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import * as ort from "onnxruntime-node";
import { LavieError } from "../core/errors.ts";
import { buildModelDirectory } from "./build.ts";
import { sha256Hex } from "./files.ts";
import { loadModelDirectory } from "./loader.ts";
import { MANIFEST_FILE } from "./manifest.ts";
import { NETWORK_IDS } from "./networks.ts";
import { attr, type Dim, type DType, GraphBuilder } from "./onnx/graph.ts";
import { serializeModel } from "./onnx/serialize.ts";

const root = mkdtempSync(join(tmpdir(), "lavie-loader-"));
const good = join(root, "good");
let copies = 0;
before(async () => {
  await buildModelDirectory("tiny", good, { seed: 3, externalDataThreshold: 1 << 20 });
});
after(() => rmSync(root, { recursive: true, force: true }));

/** A fresh copy of the good directory to damage. */
function copy(): string {
  const dir = join(root, `copy${copies++}`);
  cpSync(good, dir, { recursive: true });
  return dir;
}

// biome-ignore lint/suspicious/noExplicitAny: the tests edit arbitrary manifest JSON
type Manifest = Record<string, any>;
const readManifest = (dir: string): Manifest => JSON.parse(readFileSync(join(dir, MANIFEST_FILE), "utf8"));
const writeManifest = (dir: string, m: Manifest) =>
  writeFileSync(join(dir, MANIFEST_FILE), JSON.stringify(m));

/** Asserts loading fails with failed_precondition, field = `file` (relative to dir), message matching all patterns. */
async function rejects(dir: string, file: string, ...patterns: RegExp[]): Promise<void> {
  await assert.rejects(loadModelDirectory(dir), (e: unknown) => {
    assert.ok(e instanceof LavieError, String(e));
    assert.equal(e.code, "failed_precondition");
    assert.equal(e.field, join(dir, file));
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

/** Inverts one byte of a file (same size); returns the new contents. */
function flip(path: string, offset: number): Buffer {
  const bytes = readFileSync(path);
  bytes.writeUInt8(bytes.readUInt8(offset) ^ 0xff, offset);
  writeFileSync(path, bytes);
  return bytes;
}

/** Replaces the VAE decoder by a 1x1 conv whose latent input has the given name/dtype/dims, with a valid hash. */
function replaceDecoder(dir: string, input: { name?: string; dtype?: DType; dims?: Dim[] }): void {
  const g = new GraphBuilder({ name: "wrong", seed: 1 });
  const x = g.input(
    input.name ?? "latent_sample",
    input.dtype ?? "float32",
    input.dims ?? ["N", 4, "h", "w"],
  );
  const w = g.param("w", [3, 4, 1, 1], { kind: "uniform", bound: 1 });
  const y = g.op("Conv", [x, w], { kernel_shape: attr.ints([1, 1]) });
  g.output(y, "sample", "float32", ["N", 3, "8h", "8w"]);
  const bytes = serializeModel(g.toModel()).onnx;
  writeFileSync(join(dir, "sd_vae_decoder.onnx"), bytes);
  const m = readManifest(dir);
  m.networks.sd_vae_decoder.file.bytes = bytes.length;
  m.networks.sd_vae_decoder.file.sha256 = sha256Hex(bytes);
  writeManifest(dir, m);
}

test("the loader accepts a built directory and every network loads in onnxruntime", async () => {
  const m = await loadModelDirectory(good);
  assert.deepEqual(Object.keys(m.networks), [...NETWORK_IDS]);
  const interp = m.stage("interpolation");
  assert.equal(interp.unet.id, "interp_unet");
  assert.equal(interp.vaeEncoder?.id, "sd_vae_encoder");
  assert.equal(m.stage("vsr").latentScale, 0.08333);
  assert.equal(m.stage("base").tokenizer.encode("a cat").ids.length, 77);
  assert.equal(m.networks.base_unet?.externalDataPath, join(good, "base_unet.onnx.data"));
  for (const id of NETWORK_IDS) {
    const net = m.networks[id]!;
    // Loading (not optimizing) is what is under test; graph optimization of the UNets takes seconds.
    const s = await ort.InferenceSession.create(net.path, {
      graphOptimizationLevel: "disabled",
      intraOpNumThreads: 1,
    });
    assert.deepEqual([...s.inputNames].sort(), net.contract.inputs.map((t) => t.name).sort(), id);
    assert.deepEqual(
      [...s.outputNames],
      net.contract.outputs.map((t) => t.name),
      id,
    );
    await s.release();
  }
  const text = await ort.InferenceSession.create(m.stage("base").text.path);
  const ids = m.stage("base").tokenizer.encode("a dog running").ids;
  const out = await text.run({ input_ids: new ort.Tensor("int64", ids, [1, 77]) });
  assert.deepEqual(out.last_hidden_state?.dims, [1, 77, 32]);
  await text.release();
});

test("a missing model file, external-data file or manifest is named", async () => {
  const d1 = copy();
  unlinkSync(join(d1, "vsr_unet.onnx"));
  await rejects(d1, "vsr_unet.onnx", /"vsr_unet\.onnx" listed in manifest\.json is missing/);
  const d2 = copy();
  unlinkSync(join(d2, "base_unet.onnx.data"));
  await rejects(d2, "base_unet.onnx.data", /missing/);
  const d3 = copy();
  unlinkSync(join(d3, MANIFEST_FILE));
  await rejects(d3, MANIFEST_FILE, /missing: not a model directory/);
  await assert.rejects(loadModelDirectory(join(root, "nowhere")), /does not exist/);
});

test("corrupted bytes fail the hash check, naming file, expected and actual hash", async () => {
  const dir = copy();
  const path = join(dir, "x4_vae_decoder.onnx");
  const bytes = flip(path, readFileSync(path).length >> 1);
  const expected = readManifest(dir).networks.x4_vae_decoder.file.sha256;
  await rejects(
    dir,
    "x4_vae_decoder.onnx",
    /hash mismatch/,
    new RegExp(`expected sha256 ${expected}`),
    new RegExp(`actual ${sha256Hex(bytes)}`),
  );
  const d2 = copy();
  flip(join(d2, "interp_unet.onnx.data"), 100);
  await rejects(d2, "interp_unet.onnx.data", /hash mismatch/);
  const d3 = copy();
  writeFileSync(join(d3, "tokenizer.json"), readFileSync(join(d3, "tokenizer.json")).subarray(1));
  await rejects(d3, "tokenizer.json", /size \d+ bytes; manifest\.json lists/);
});

test("ONNX inputs that break the contract are caught even with a valid hash", async () => {
  const cases: [Parameters<typeof replaceDecoder>[1], RegExp][] = [
    [{ name: "latents" }, /input "latent_sample" is missing; the model's inputs are "latents"/],
    [{ dtype: "int64" }, /input "latent_sample" has dtype int64; the contract requires float32/],
    [
      { dims: ["N", 4, "F", "h", "w"] },
      /input "latent_sample" has rank 5 \[N,4,F,h,w\]; the contract requires rank 4/,
    ],
    [{ dims: ["N", 3, "h", "w"] }, /input "latent_sample" dim 1 is 3 .*requires 4/],
    [{ dims: [1, 4, "h", "w"] }, /input "latent_sample" dim 0 is fixed to 1 .*axis "N" must be dynamic/],
  ];
  for (const [input, pattern] of cases) {
    const dir = copy();
    replaceDecoder(dir, input);
    await rejects(dir, "sd_vae_decoder.onnx", pattern);
  }
  // Control: the same construction with the right input passes.
  const ok = copy();
  replaceDecoder(ok, {});
  await loadModelDirectory(ok);
  const garbage = copy();
  writeFileSync(join(garbage, "clip_text.onnx"), Buffer.from("not a protobuf at all \xff\xff\xff"));
  const m = readManifest(garbage);
  const bytes = readFileSync(join(garbage, "clip_text.onnx"));
  Object.assign(m.networks.clip_text.file, { bytes: bytes.length, sha256: sha256Hex(bytes) });
  writeManifest(garbage, m);
  await rejects(garbage, "clip_text.onnx", /not a valid ONNX model/);
});

test("a malformed manifest names the offending field", async () => {
  const edits: [(m: Manifest) => void, RegExp][] = [
    [
      (m) => (m.networks.base_unet.file.sha256 = 123),
      /field "networks\.base_unet\.file\.sha256" must be a string; got 123/,
    ],
    [
      (m) => delete m.stages.base.latentScale,
      /field "stages\.base\.latentScale" must be a number > 0; missing/,
    ],
    [(m) => (m.formatVersion = 9), /field "formatVersion" must be 1/],
    [(m) => (m.networks.unet3 = m.networks.base_unet), /field "networks\.unet3" must be one of clip_text, /],
    [
      (m) => (m.stages.vsr.networks.unet = "base_unet"),
      /"stages\.vsr\.networks\.unet" must be a network of kind vsr_unet/,
    ],
    [
      (m) => (m.stages.base.sampler.config.sampler = "plms"),
      /"stages\.base\.sampler\.config\.sampler" must be/,
    ],
    [
      (m) => (m.networks.base_unet.inputs[0].name = "x"),
      /"networks\.base_unet\.inputs" does not match the base_unet contract/,
    ],
    [
      (m) => {
        m.networks.clip_text.config.width = 64;
        m.networks.clip_text.outputs[0].shape[2] = 64;
      },
      /stages\.base: text encoder clip_text has width 64/,
    ],
  ];
  for (const [edit, pattern] of edits) {
    const dir = copy();
    const m = readManifest(dir);
    edit(m);
    writeManifest(dir, m);
    await rejects(dir, MANIFEST_FILE, pattern);
  }
  const dir = copy();
  writeFileSync(join(dir, MANIFEST_FILE), "{ not json");
  await rejects(dir, MANIFEST_FILE, /not valid JSON/);
});
