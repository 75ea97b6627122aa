import assert from "node:assert/strict";
import { test } from "node:test";
import * as ort from "onnxruntime-node";
import type { TextEncoderConfig } from "../configs.ts";
import { serializeModel } from "../onnx/serialize.ts";
import { getPreset } from "../presets.ts";
import { buildTextEncoder, causalMask, MASK_VALUE } from "./text_encoder.ts";

const SESSION: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 2, interOpNumThreads: 1 };

async function session(cfg: TextEncoderConfig, seed = 1): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(serializeModel(buildTextEncoder(cfg, { seed }).toModel()).onnx, SESSION);
}

/** Deterministic token ids in [0, vocab): a pattern that differs per row and position. */
function ids(batch: number, vocab: number, salt = 0): BigInt64Array {
  return BigInt64Array.from({ length: batch * 77 }, (_, i) => BigInt((i * 131 + salt * 17 + 7) % vocab));
}

async function encode(s: ort.InferenceSession, data: BigInt64Array): Promise<ort.Tensor> {
  const out = await s.run({ input_ids: new ort.Tensor("int64", data, [data.length / 77, 77]) });
  return out.last_hidden_state!;
}

function assertHealthy(x: Float32Array): void {
  let sum = 0;
  let sq = 0;
  for (const v of x) {
    assert.ok(Number.isFinite(v), "non-finite output");
    sum += v;
    sq += v * v;
  }
  const mean = sum / x.length;
  const std = Math.sqrt(sq / x.length - mean * mean);
  // The final LayerNorm (unit weight, zero bias when seeded) gives unit-scale states.
  assert.ok(Math.abs(mean) < 0.05 && std > 0.9 && std < 1.1, `mean ${mean} std ${std}`);
}

for (const name of ["tiny", "small"] as const) {
  const preset = getPreset(name);
  for (const [label, cfg] of [
    ["CLIP text", preset.clipText],
    ["VSR text", preset.vsrText],
  ] as const) {
    test(`${name} ${label} encoder: contracted shapes for batch 1 and 3, finite unit-scale output`, async (t) => {
      const s = await session(cfg);
      assert.deepEqual(s.inputNames, ["input_ids"]);
      assert.deepEqual(s.outputNames, ["last_hidden_state"]);
      for (const batch of [1, 3]) {
        const t0 = performance.now();
        const y = await encode(s, ids(batch, cfg.vocabSize));
        const ms = performance.now() - t0;
        assert.deepEqual(y.dims, [batch, 77, cfg.width]);
        assertHealthy(y.data as Float32Array);
        t.diagnostic(`${name} ${label} batch ${batch}: ${ms.toFixed(1)} ms (first run)`);
      }
    });
  }

  test(`${name} CLIP text encoder is causal: token 10 changes positions 10.. only`, async () => {
    const cfg = preset.clipText;
    const s = await session(cfg);
    const a = ids(2, cfg.vocabSize);
    const b = a.slice();
    for (const row of [0, 1]) b[row * 77 + 10] = BigInt((Number(a[row * 77 + 10]) + 5) % cfg.vocabSize);
    const ya = (await encode(s, a)).data as Float32Array;
    const yb = (await encode(s, b)).data as Float32Array;
    const D = cfg.width;
    for (let row = 0; row < 2; row++) {
      for (let pos = 0; pos < 77; pos++) {
        let diff = 0;
        for (let c = 0; c < D; c++) {
          const i = (row * 77 + pos) * D + c;
          diff = Math.max(diff, Math.abs(ya[i]! - yb[i]!));
        }
        if (pos < 10) assert.equal(diff, 0, `row ${row} position ${pos} changed by ${diff}`);
        else assert.ok(diff > 1e-4, `row ${row} position ${pos} did not change`);
      }
    }
  });
}

test("batch rows are encoded independently (a row alone equals the same row in a batch)", async (t) => {
  const cfg = getPreset("tiny").clipText;
  const s = await session(cfg);
  const batch = ids(3, cfg.vocabSize);
  const all = (await encode(s, batch)).data as Float32Array;
  const n = 77 * cfg.width;
  let maxDiff = 0;
  for (let r = 0; r < 3; r++) {
    const one = (await encode(s, batch.slice(r * 77, (r + 1) * 77))).data as Float32Array;
    for (let i = 0; i < n; i++) maxDiff = Math.max(maxDiff, Math.abs(one[i]! - all[r * n + i]!));
  }
  t.diagnostic(`tiny CLIP text: max |row alone - row in batch| = ${maxDiff}`);
  assert.ok(maxDiff < 1e-5, `max difference ${maxDiff}`);
});

test("the causal mask is 0 on and below the diagonal and a large finite negative above it", () => {
  const m = causalMask(4);
  assert.deepEqual(Array.from(m.slice(0, 4)), [0, MASK_VALUE, MASK_VALUE, MASK_VALUE]);
  assert.deepEqual(Array.from(m.slice(12, 16)), [0, 0, 0, 0]);
  assert.ok(Number.isFinite(MASK_VALUE) && MASK_VALUE <= -1e9);
});

test("lavie parameter counts: CLIP ViT-L/14 text 123,060,480; x4-upscaler (OpenCLIP-H, 23 layers) 340,387,840", () => {
  const lavie = getPreset("lavie");
  const clip = buildTextEncoder(lavie.clipText, { seed: 0, materialize: false });
  assert.equal(clip.parameterCount, 123_060_480);
  const vsr = buildTextEncoder(lavie.vsrText, { seed: 0, materialize: false });
  assert.equal(vsr.parameterCount, 340_387_840);
  // transformers 4.28.1 state dicts: 197 and 373 keys, of which text_model.embeddings.position_ids is a buffer.
  assert.equal(clip.parameters.length, 196);
  assert.equal(vsr.parameters.length, 372);
  const names = new Set(clip.parameters.map((p) => p.name));
  for (const n of [
    "text_model.embeddings.token_embedding.weight",
    "text_model.embeddings.position_embedding.weight",
    "text_model.encoder.layers.0.self_attn.q_proj.bias",
    "text_model.encoder.layers.11.mlp.fc2.weight",
    "text_model.encoder.layers.11.layer_norm2.bias",
    "text_model.final_layer_norm.weight",
  ])
    assert.ok(names.has(n), `missing parameter ${n}`);
});

test("the config's LayerNorm eps is used by every LayerNorm", async () => {
  const cfg = getPreset("tiny").clipText;
  const run = async (layerNormEps: number) => {
    const s = await ort.InferenceSession.create(
      serializeModel(buildTextEncoder({ ...cfg, layerNormEps }, { seed: 1 }).toModel()).onnx,
      SESSION,
    );
    return (await encode(s, ids(1, cfg.vocabSize))).data as Float32Array;
  };
  const [a, b] = [await run(1e-5), await run(1e-1)];
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
  assert.ok(diff > 1e-3, `eps 1e-5 vs 1e-1 changed the output by only ${diff}`);
});

test("invalid text encoder configs are rejected", () => {
  const cfg = getPreset("tiny").clipText;
  assert.throws(() => buildTextEncoder({ ...cfg, positions: 64 }, { seed: 0 }), /positions: must be 77/);
  assert.throws(() => buildTextEncoder({ ...cfg, heads: 3 }, { seed: 0 }), /not divisible/);
  assert.throws(
    () => buildTextEncoder({ ...cfg, layerNormEps: 0 }, { seed: 0 }),
    /layerNormEps: must be > 0/,
  );
});
