import assert from "node:assert/strict";
import { test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { buildUNet } from "../nets/unet.ts";
import { getPreset } from "../presets.ts";
import { applyLora, loraPairs, parseLoraSpec } from "./lora.ts";
import type { FloatTensor } from "./weights.ts";

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

const tensor = (shape: number[], seed: number): FloatTensor => ({
  shape,
  data: rand(
    shape.reduce((a, b) => a * b, 1),
    seed,
  ),
});

/** The tiny base UNet's state dict (official key layout) with random values. */
function baseState(): Map<string, FloatTensor> {
  const g = buildUNet("base_unet", getPreset("tiny").baseUnet, { seed: 0, materialize: false });
  return new Map(g.parameters.map((p, i) => [p.name, tensor([...p.shape], i + 1)]));
}

/** (up @ down)[o, i] for up [out, r(,1,1)] and down [r, in(,kh,kw)] flattened. */
function product(up: FloatTensor, down: FloatTensor): Float64Array {
  const out = up.shape[0]!;
  const r = down.shape[0]!;
  const inner = down.data.length / r;
  const p = new Float64Array(out * inner);
  for (let o = 0; o < out; o++)
    for (let k = 0; k < r; k++)
      for (let i = 0; i < inner; i++) p[o * inner + i]! += up.data[o * r + k]! * down.data[k * inner + i]!;
  return p;
}

test("kohya LoRA: merged = base + scale * alpha/rank * (up @ down) for every target; nothing else changes", () => {
  const state = baseState();
  const before = new Map([...state].map(([k, v]) => [k, Float32Array.from(v.data)]));
  const targets = [...state.keys()].filter((k) =>
    /(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)\.weight$|proj_in\.weight$|ff\.net\.2\.weight$/.test(k),
  );
  assert.ok(targets.length >= 8, `tiny base UNet has spatial targets (${targets.length})`);
  const rank = 2;
  const lora = new Map<string, FloatTensor>();
  targets.forEach((k, i) => {
    const w = state.get(k)!;
    const name = `lora_unet_${k.slice(0, -".weight".length).replaceAll(".", "_")}`;
    const inner = w.data.length / w.shape[0]!;
    const downShape = w.shape.length === 4 ? [rank, w.shape[1]!, w.shape[2]!, w.shape[3]!] : [rank, inner];
    const upShape = w.shape.length === 4 ? [w.shape[0]!, rank, 1, 1] : [w.shape[0]!, rank];
    lora.set(`${name}.lora_down.weight`, tensor(downShape, 1000 + i));
    lora.set(`${name}.lora_up.weight`, tensor(upShape, 2000 + i));
    lora.set(`${name}.alpha`, { shape: [], data: Float32Array.of(1) });
  });
  const pairs = loraPairs("style.safetensors", lora, { unet: [...state.keys()], text_encoder: [] });
  const scale = 0.75;
  const changed = applyLora("style.safetensors", state, pairs, "unet", scale);
  assert.deepEqual(changed, [...targets].sort());
  for (const [k, v] of state) {
    const old = before.get(k)!;
    if (!targets.includes(k)) {
      assert.deepEqual(v.data, old, `${k} unchanged`);
      continue;
    }
    const name = `lora_unet_${k.slice(0, -".weight".length).replaceAll(".", "_")}`;
    const p = product(lora.get(`${name}.lora_up.weight`)!, lora.get(`${name}.lora_down.weight`)!);
    let worst = 0;
    for (let i = 0; i < p.length; i++)
      worst = Math.max(worst, Math.abs(v.data[i]! - (old[i]! + scale * (1 / rank) * p[i]!)));
    assert.ok(worst < 1e-5, `${k}: max error ${worst}`);
  }
  const temporal = [...state.keys()].filter((k) => /attn_temp|norm_temp/.test(k));
  assert.ok(temporal.length > 0);
  for (const k of temporal) assert.deepEqual(state.get(k)!.data, before.get(k)!);
});

test("diffusers attention-processor LoRA maps to_out_lora onto to_out.0", () => {
  const state = baseState();
  const key = [...state.keys()].find((k) => k.endsWith("attn2.to_out.0.weight"))!;
  const block = key.slice(0, -".to_out.0.weight".length);
  const w = state.get(key)!;
  const lora = new Map<string, FloatTensor>([
    [`${block}.processor.to_out_lora.down.weight`, tensor([1, w.shape[1]!], 5)],
    [`${block}.processor.to_out_lora.up.weight`, tensor([w.shape[0]!, 1], 6)],
  ]);
  const pairs = loraPairs("p.bin", lora, { unet: [...state.keys()], text_encoder: [] });
  assert.deepEqual(
    pairs.map((p) => [p.key, p.alphaScale]),
    [[key, 1]],
  );
});

test("LoRA keys that name no layer, a temporal layer, or lack a half are refused by name", () => {
  const state = baseState();
  const keys = { unet: [...state.keys()], text_encoder: [] };
  const temporalKey = [...state.keys()].find((k) => k.includes("attn_temp.to_q.weight"))!;
  const cases: [string, RegExp][] = [
    ["lora_unet_no_such_layer.lora_down.weight", /names no layer of the base UNet/],
    [`lora_unet_${temporalKey.slice(0, -7).replaceAll(".", "_")}.lora_down.weight`, /temporal layer/],
    ["something_else", /not a LoRA tensor/],
  ];
  for (const [name, re] of cases) {
    assert.throws(
      () => loraPairs("bad.safetensors", new Map([[name, tensor([1, 4], 1)]]), keys),
      (e: unknown) => e instanceof LavieError && re.test(e.message) && e.message.includes("bad.safetensors"),
    );
  }
  const half = `lora_unet_${[...state.keys()]
    .find((k) => k.endsWith("attn1.to_q.weight"))!
    .slice(0, -7)
    .replaceAll(".", "_")}`;
  assert.throws(
    () => loraPairs("half.safetensors", new Map([[`${half}.lora_down.weight`, tensor([1, 4], 1)]]), keys),
    /needs both a down and an up matrix/,
  );
});

test("--lora FILE[:SCALE] parsing", () => {
  assert.deepEqual(parseLoraSpec("a/b.safetensors"), { file: "a/b.safetensors", scale: 1 });
  assert.deepEqual(parseLoraSpec("a/b.safetensors:0.6"), { file: "a/b.safetensors", scale: 0.6 });
  assert.throws(() => parseLoraSpec(""), /FILE\[:SCALE\]/);
});
