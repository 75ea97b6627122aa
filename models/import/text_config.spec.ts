import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { getPreset } from "../presets.ts";
import { readConfigJson } from "./json_fields.ts";
import { checkPositionIds, parseTextEncoderConfig, TEXT_ENCODER_IGNORE } from "./text_config.ts";

/** The fields of stable-diffusion-v1-4/text_encoder/config.json (CLIP ViT-L/14 text). */
const SD14_TEXT = {
  _name_or_path: "openai/clip-vit-large-patch14",
  architectures: ["CLIPTextModel"],
  attention_dropout: 0.0,
  bos_token_id: 0,
  dropout: 0.0,
  eos_token_id: 2,
  hidden_act: "quick_gelu",
  hidden_size: 768,
  initializer_factor: 1.0,
  initializer_range: 0.02,
  intermediate_size: 3072,
  layer_norm_eps: 1e-5,
  max_position_embeddings: 77,
  model_type: "clip_text_model",
  num_attention_heads: 12,
  num_hidden_layers: 12,
  pad_token_id: 1,
  projection_dim: 768,
  torch_dtype: "float32",
  transformers_version: "4.22.0.dev0",
  vocab_size: 49408,
};

/** The fields of stable-diffusion-x4-upscaler/text_encoder/config.json (OpenCLIP-H text, 23 layers). */
const X4_TEXT = {
  ...SD14_TEXT,
  hidden_act: "gelu",
  hidden_size: 1024,
  intermediate_size: 4096,
  num_attention_heads: 16,
  num_hidden_layers: 23,
  projection_dim: 512,
};

const FILE = "text_encoder/config.json";

function rejects(json: Record<string, unknown>, field: string, pattern: RegExp): void {
  assert.throws(
    () => parseTextEncoderConfig(json, FILE),
    (e: unknown) =>
      e instanceof LavieError &&
      e.code === "invalid_argument" &&
      e.field === field &&
      e.message.startsWith(`${FILE}: "${field}"`) &&
      pattern.test(e.message),
  );
}

test("the published SD 1.4 and x4-upscaler text configs give the lavie preset's encoders", () => {
  const lavie = getPreset("lavie");
  assert.deepEqual(parseTextEncoderConfig(SD14_TEXT, FILE), lavie.clipText);
  assert.deepEqual(parseTextEncoderConfig(X4_TEXT, FILE), lavie.vsrText);
});

test("absent fields take CLIPTextConfig's defaults; a CLIPConfig is read through text_config", () => {
  assert.deepEqual(parseTextEncoderConfig({}, FILE), {
    vocabSize: 49408,
    positions: 77,
    width: 512,
    layers: 12,
    heads: 8,
    mlp: 2048,
    activation: "quick_gelu",
    layerNormEps: 1e-5,
  });
  const full = { model_type: "clip", text_config: X4_TEXT, vision_config: {} };
  assert.deepEqual(parseTextEncoderConfig(full, FILE), getPreset("lavie").vsrText);
});

test("configs the graph cannot compute are refused, naming the file, the field and what is allowed", () => {
  rejects({ ...SD14_TEXT, hidden_act: "gelu_new" }, "hidden_act", /one of "quick_gelu", "gelu"/);
  rejects({ ...SD14_TEXT, max_position_embeddings: 248 }, "max_position_embeddings", /must be 77/);
  rejects({ ...SD14_TEXT, num_attention_heads: 5 }, "num_attention_heads", /must divide hidden_size \(768\)/);
  rejects({ ...SD14_TEXT, num_hidden_layers: 0 }, "num_hidden_layers", /positive integer/);
  rejects({ ...SD14_TEXT, hidden_size: "768" }, "hidden_size", /positive integer/);
  rejects({ ...SD14_TEXT, layer_norm_eps: -1 }, "layer_norm_eps", /positive number/);
  rejects({ ...SD14_TEXT, model_type: "bert" }, "model_type", /"clip_text_model"/);
  rejects({ model_type: "clip", text_config: [] }, "text_config", /JSON object/);
});

test("config files that are missing or not JSON objects are refused with their path", async () => {
  const dir = await mkdtemp(join(tmpdir(), "text-config-"));
  try {
    const good = join(dir, "config.json");
    await writeFile(good, JSON.stringify(SD14_TEXT));
    assert.deepEqual(parseTextEncoderConfig(await readConfigJson(good), good), getPreset("lavie").clipText);
    const bad = join(dir, "bad.json");
    await writeFile(bad, "{ not json");
    await assert.rejects(
      readConfigJson(bad),
      (e: unknown) => e instanceof LavieError && e.message.includes(bad),
    );
    await writeFile(bad, "[1, 2]");
    await assert.rejects(readConfigJson(bad), /must be a JSON object/);
    await assert.rejects(readConfigJson(join(dir, "absent.json")), (e: unknown) => {
      return e instanceof LavieError && e.code === "not_found";
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("position_ids: only 0..76 is accepted, and the buffer is the one ignored key", () => {
  checkPositionIds(
    "f.bin",
    BigInt64Array.from({ length: 77 }, (_, i) => BigInt(i)),
  );
  checkPositionIds(
    "f.bin",
    Float32Array.from({ length: 77 }, (_, i) => i),
  );
  const shifted = Float32Array.from({ length: 77 }, (_, i) => (i === 40 ? 40.0001 : i));
  assert.throws(() => checkPositionIds("f.bin", shifted), /f\.bin: "text_model\.embeddings\.position_ids"/);
  assert.throws(() => checkPositionIds("f.bin", new Float32Array(76)), /must be 0\.\.76/);
  assert.ok(TEXT_ENCODER_IGNORE.some((r) => r.test("text_model.embeddings.position_ids")));
  assert.ok(!TEXT_ENCODER_IGNORE.some((r) => r.test("text_model.embeddings.position_embedding.weight")));
});
