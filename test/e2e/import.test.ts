/**
 * `lavie models import` end to end on a directory laid out like the official download
 * (test/golden/download/pretrained_models: random weights, the real file names, formats and keys),
 * then the imported directory through the whole cascade in-process and on a local cluster, and the
 * import refusing broken or hostile files with errors that name the file and the key.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { type Cluster, startCluster } from "../../client/cluster/index.ts";
import { decodeVideo } from "../../media/index.ts";
import { readSafetensors, writeSafetensors } from "../../models/checkpoint/index.ts";
import { buildZip, PickleWriter } from "../../models/checkpoint/testing.ts";
import type { Manifest } from "../../models/manifest.ts";

const exec = promisify(execFile);
const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const lavie = join(repo, "bin", "lavie.js");
const fixture = join(repo, "test", "golden", "download");
const download = join(fixture, "pretrained_models");
const vsrConfig = join(fixture, "vsr_unet_config.json");
const dir = mkdtempSync(join(tmpdir(), "lavie-import-test-"));
const modelDir = join(dir, "model");

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[], timeout = 120_000): Promise<Run> {
  try {
    const r = await exec(process.execPath, [lavie, ...args], { cwd: repo, timeout });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

const generateArgs = ["--height", "64", "--width", "64", "--steps", "1", "--seed", "5"];

before(async () => {
  const r = await cli([
    "models",
    "import",
    "--from",
    download,
    "--vsr-unet-config",
    vsrConfig,
    "--out",
    modelDir,
  ]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
});

after(() => rmSync(dir, { recursive: true, force: true }));

test("the download imports into a model directory with every network, both tokenizers and no seed", async () => {
  const m = JSON.parse(readFileSync(join(modelDir, "manifest.json"), "utf8")) as Manifest;
  assert.equal(m.seed, null);
  assert.deepEqual(Object.keys(m.networks).sort(), [
    "base_unet",
    "clip_text",
    "interp_unet",
    "sd_vae_decoder",
    "sd_vae_encoder",
    "vsr_text",
    "vsr_unet",
    "x4_vae_decoder",
  ]);
  for (const n of Object.values(m.networks)) assert.equal(n!.seed, null);
  assert.deepEqual(
    m.tokenizers.map((t) => t.file.path),
    ["tokenizer.json", "vsr_tokenizer.json"],
  );
  // SD 1.4's tokenizer pads with <|endoftext|>, the x4 upscaler's with "!" (id 0).
  const pad = (f: string) =>
    (JSON.parse(readFileSync(join(modelDir, f), "utf8")) as { padding: { pad_id: number } }).padding.pad_id;
  assert.equal(pad("tokenizer.json"), 1013);
  assert.equal(pad("vsr_tokenizer.json"), 0);
  const v = await cli(["models", "verify", modelDir]);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, /contracts match/);
});

test("the imported directory runs the cascade in-process and on a local cluster, with identical frames", {
  timeout: 240_000,
}, async () => {
  const local = join(dir, "local.mp4");
  const r = await cli([
    "generate",
    "a red circle moving right",
    "--model-dir",
    modelDir,
    ...generateArgs,
    "--out",
    local,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /wrote .*local\.mp4: 61 frames 256x256 @ 24 fps/);

  let cluster: Cluster | undefined;
  const logs: string[] = [];
  try {
    cluster = await startCluster({
      modelDir,
      runners: "all=1",
      log: (name, line) => void logs.push(`[${name}] ${line}`),
    });
    const remote = join(dir, "remote.mp4");
    const c = await cli(
      [
        "generate",
        "a red circle moving right",
        "--server",
        cluster.address,
        ...generateArgs,
        "--out",
        remote,
      ],
      180_000,
    );
    assert.equal(c.code, 0, `${c.stderr}\n${logs.slice(-30).join("\n")}`);
    const [a, b] = [await decodeVideo(local), await decodeVideo(remote)];
    assert.equal(a.frames.length, 61);
    assert.deepEqual([a.width, a.height], [256, 256]);
    assert.equal(b.frames.length, 61);
    for (let i = 0; i < 61; i++) assert.deepEqual(b.frames[i], a.frames[i], `frame ${i} differs`);
  } finally {
    await cluster?.stop();
  }
});

/** A copy of the download to break one file of. */
function copyDownload(name: string): string {
  const d = join(dir, name);
  cpSync(download, d, { recursive: true });
  return d;
}

async function importFails(from: string, ...expect: RegExp[]): Promise<void> {
  const out = join(dir, `out-${Math.random().toString(36).slice(2)}`);
  const r = await cli(["models", "import", "--from", from, "--vsr-unet-config", vsrConfig, "--out", out]);
  assert.notEqual(r.code, 0, "import should fail");
  for (const re of expect) assert.match(r.stderr, re);
  assert.equal(existsSync(join(out, "manifest.json")), false, "no manifest for a failed import");
}

test("a missing, unexpected or misshapen key is refused naming the file and the key", async () => {
  const vaeOf = (d: string) => join(d, "stable-diffusion-v1-4", "vae");
  const original = await readSafetensorsFromBin(vaeOf(download));

  const missing = copyDownload("missing");
  const dropped = new Map(original);
  dropped.delete("decoder.conv_out.bias");
  await writeSafetensors(join(vaeOf(missing), "diffusion_pytorch_model.safetensors"), dropped);
  await importFails(missing, /diffusion_pytorch_model\.safetensors: missing key "decoder\.conv_out\.bias"/);

  const extra = copyDownload("extra");
  const more = new Map(original);
  more.set("decoder.not_a_layer.weight", { dtype: "F32", shape: [2], data: new Float32Array(2) });
  await writeSafetensors(join(vaeOf(extra), "diffusion_pytorch_model.safetensors"), more);
  await importFails(extra, /unexpected key "decoder\.not_a_layer\.weight"/);

  const shape = copyDownload("shape");
  const bent = new Map(original);
  const w = bent.get("decoder.conv_out.weight")!;
  bent.set("decoder.conv_out.weight", {
    ...w,
    shape: [w.shape[0]!, w.shape[1]!, w.shape[2]! * w.shape[3]!, 1],
  });
  await writeSafetensors(join(vaeOf(shape), "diffusion_pytorch_model.safetensors"), bent);
  await importFails(
    shape,
    /key "decoder\.conv_out\.weight" has shape \[3,\d+,9,1\], the network needs \[3,\d+,3,3\]/,
  );
});

/** The VAE folder's weights as writable tensors (via a safetensors round trip of the .bin's values). */
async function readSafetensorsFromBin(vaeDir: string) {
  const { readDiffusersFolder } = await import("../../models/checkpoint/index.ts");
  const records = await readDiffusersFolder(vaeDir);
  const out = new Map<string, { dtype: "F32"; shape: readonly number[]; data: Float32Array }>();
  for (const [k, r] of records) out.set(k, { dtype: "F32", shape: r.shape, data: await r.readFloat32() });
  // Round trip once so a reader bug shows here rather than as a confusing import error.
  const probe = join(dir, "probe.safetensors");
  await writeSafetensors(probe, out);
  assert.equal((await readSafetensors(probe)).tensors.size, out.size);
  return out;
}

test("a checkpoint whose pickle names os.system is refused and nothing runs", async () => {
  const hostile = copyDownload("hostile");
  const marker = join(dir, "pwned");
  const pickle = new PickleWriter()
    .global("os", "system")
    .str(`touch ${marker}`)
    .op(0x85, 0x52) // TUPLE1, REDUCE
    .done();
  writeFileSync(join(hostile, "lavie_base.pt"), buildZip([{ name: "archive/data.pkl", data: pickle }]));
  await importFails(hostile, /lavie_base\.pt/, /os\.system/);
  assert.equal(existsSync(marker), false);
});

test("a truncated checkpoint and a missing file are refused with their paths", async () => {
  const cut = copyDownload("truncated");
  const vsr = join(cut, "lavie_vsr.pt");
  const bytes = readFileSync(vsr);
  writeFileSync(vsr, bytes.subarray(0, Math.floor(bytes.length / 2)));
  await importFails(cut, /lavie_vsr\.pt/);

  const gone = copyDownload("gone");
  rmSync(join(gone, "stable-diffusion-x4-upscaler", "tokenizer"), { recursive: true });
  await importFails(gone, /stable-diffusion-x4-upscaler\/tokenizer: missing \(tokenizer folder\)/);
});

test("--lora merges a kohya LoRA into the base UNet: the written weight is base + scale * alpha/rank * up @ down", {
  timeout: 120_000,
}, async () => {
  const { readStateDict } = await import("../../models/checkpoint/index.ts");
  const { fromBinary } = await import("@bufbuild/protobuf");
  const { ModelProtoSchema } = await import("../../gen/third_party/onnx/onnx_pb.ts");
  const base = await readStateDict(join(download, "lavie_base.pt"), { preferEntry: "ema" });
  const key = [...base.keys()].find((k) => k.endsWith("attn1.to_q.weight"))!;
  const w = base.get(key)!;
  const [out, inn] = w.shape as [number, number];
  const rank = 2;
  const down = Float32Array.from({ length: rank * inn }, (_, i) => Math.sin(i + 1) / 4);
  const up = Float32Array.from({ length: out * rank }, (_, i) => Math.cos(i + 1) / 4);
  const name = `lora_unet_${key.slice(0, -".weight".length).replaceAll(".", "_")}`;
  const loraFile = join(dir, "style.safetensors");
  await writeSafetensors(
    loraFile,
    new Map([
      [`${name}.lora_down.weight`, { dtype: "F32" as const, shape: [rank, inn], data: down }],
      [`${name}.lora_up.weight`, { dtype: "F32" as const, shape: [out, rank], data: up }],
      [`${name}.alpha`, { dtype: "F32" as const, shape: [], data: Float32Array.of(1) }],
    ]),
  );
  const merged = join(dir, "lora-model");
  const r = await cli([
    "models",
    "import",
    "--from",
    download,
    "--vsr-unet-config",
    vsrConfig,
    "--out",
    merged,
    "--lora",
    `${loraFile}:0.5`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /LoRA merged into base_unet: 1 weights/);
  const model = fromBinary(ModelProtoSchema, readFileSync(join(merged, "base_unet.onnx")));
  const init = model.graph!.initializer.find((t) => t.name === key)!;
  const got = new Float32Array(new Uint8Array(init.rawData).buffer); // a copy: rawData may view the file
  const orig = await w.readFloat32();
  let worst = 0;
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inn; i++) {
      let p = 0;
      for (let k = 0; k < rank; k++) p += up[o * rank + k]! * down[k * inn + i]!;
      worst = Math.max(worst, Math.abs(got[o * inn + i]! - (orig[o * inn + i]! + 0.5 * (1 / rank) * p)));
    }
  assert.ok(worst < 1e-6, `merged weight off by ${worst}`);
  // No other weight moved: the interpolation UNet and a temporal weight of the base UNet are unchanged.
  const plain = fromBinary(ModelProtoSchema, readFileSync(join(modelDir, "base_unet.onnx")));
  const temporal = plain.graph!.initializer.find((t) => t.name.includes("attn_temp.to_q.weight"))!;
  const same = model.graph!.initializer.find((t) => t.name === temporal.name)!;
  assert.deepEqual(Buffer.from(same.rawData), Buffer.from(temporal.rawData));
});
