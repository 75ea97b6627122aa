import assert from "node:assert/strict";
import { test } from "node:test";
import * as ort from "onnxruntime-node";
import type { VsrUNetConfig } from "../configs.ts";
import { contractFor } from "../contract.ts";
import type { GraphBuilder, WeightSource } from "../onnx/graph.ts";
import { serializeModel } from "../onnx/serialize.ts";
import { getPreset } from "../presets.ts";
import { buildVsrUNet, VSR_UNET_ALIAS_KEYS } from "./unet_vsr.ts";

const SESSION = { intraOpNumThreads: 2, interOpNumThreads: 1 };
const tiny = getPreset("tiny").vsrUnet;

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  });
}

async function run(g: GraphBuilder, f: Record<string, ort.Tensor>): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(serializeModel(g.toModel()).onnx, SESSION);
  try {
    return (await s.run(f)).out_sample!.data as Float32Array;
  } finally {
    await s.release();
  }
}

function feeds(cfg: VsrUNetConfig, dims: [number, number, number, number], sample?: Float32Array) {
  const [b, f, h, w] = dims;
  const c = cfg.inChannels;
  const d = cfg.crossAttentionDim;
  return {
    sample: new ort.Tensor("float32", sample ?? rand(b * c * f * h * w, 1), [b, c, f, h, w]),
    timestep: new ort.Tensor(
      "int64",
      BigInt64Array.from({ length: b }, (_, i) => BigInt(999 - 300 * i)),
      [b],
    ),
    encoder_hidden_states: new ort.Tensor("float32", rand(b * 77 * d, 2), [b, 77, d]),
    class_labels: new ort.Tensor(
      "int64",
      BigInt64Array.from({ length: b }, (_, i) => BigInt(50 + i)),
      [b],
    ),
  };
}

/** Max |a - b| over frame f of batch element bi of a [B, C, F, h, w] tensor. */
function sliceDiff(a: Float32Array, b: Float32Array, dims: readonly number[], bi: number, f: number): number {
  const [, C, F, h, w] = dims as [number, number, number, number, number];
  let m = 0;
  for (let c = 0; c < C; c++)
    for (let p = 0; p < h * w; p++) {
      const k = ((bi * C + c) * F + f) * h * w + p;
      m = Math.max(m, Math.abs(a[k]! - b[k]!));
    }
  return m;
}

/** The sample with frame f of batch element bi replaced by other values. */
function perturb(x: Float32Array, dims: readonly number[], bi: number, f: number): Float32Array {
  const [, C, F, h, w] = dims as [number, number, number, number, number];
  const y = x.slice();
  const r = rand(C * h * w, 99);
  for (let c = 0; c < C; c++)
    for (let p = 0; p < h * w; p++) y[((bi * C + c) * F + f) * h * w + p] = r[c * h * w + p]!;
  return y;
}

/** The seeded parameter values of a built graph, by name (a WeightSource over them, with overrides). */
function seededWeights(
  g: GraphBuilder,
  override: (name: string, v: Float32Array) => Float32Array = (_, v) => v,
) {
  const values = new Map<string, Float32Array>();
  for (const t of g.toModel().graph!.initializer) {
    const raw = t.rawData;
    values.set(t.name, new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)));
  }
  const src: WeightSource = {
    take: (name) => {
      const v = values.get(name);
      if (!v) throw new Error(`no value for ${name}`);
      return override(name, v);
    },
  };
  return src;
}

test("tiny and small VSR UNets return the contracted shape for frame counts, sizes (uneven too) and batches", async () => {
  for (const [preset, cases] of [
    [
      "tiny",
      [
        [1, 1, 4, 4],
        [2, 3, 8, 12],
        [1, 5, 6, 10],
        [1, 9, 5, 7],
      ],
    ],
    ["small", [[1, 4, 8, 8]]],
  ] as const) {
    const cfg = getPreset(preset).vsrUnet;
    const g = buildVsrUNet(cfg, { seed: 3 });
    const s = await ort.InferenceSession.create(serializeModel(g.toModel()).onnx, SESSION);
    const contract = contractFor("vsr_unet", { width: cfg.crossAttentionDim, inChannels: cfg.inChannels });
    assert.deepEqual(
      s.inputNames,
      contract.inputs.map((i) => i.name),
    );
    for (const [b, f, h, w] of cases) {
      const out = (await s.run(feeds(cfg, [b, f, h, w]))).out_sample!;
      assert.deepEqual(out.dims, [b, 4, f, h, w], `${preset} ${[b, f, h, w]}`);
      assert.ok((out.data as Float32Array).every(Number.isFinite));
    }
    await s.release();
  }
});

test("frames mix in the video UNet, stay independent in the 2D-only one; batch elements never mix", async () => {
  const shape = [2, tiny.inChannels, 3, 8, 8];
  const base = rand(2 * tiny.inChannels * 3 * 8 * 8, 5);
  const changed = perturb(base, shape, 0, 2);
  for (const temporalLayers of [true, false]) {
    const g = buildVsrUNet(tiny, { seed: 4, temporalLayers });
    const a = await run(g, feeds(tiny, [2, 3, 8, 8], base));
    const b = await run(g, feeds(tiny, [2, 3, 8, 8], changed));
    const out = [2, 4, 3, 8, 8];
    assert.ok(sliceDiff(a, b, out, 0, 2) > 1e-3, "the changed frame's output changes");
    for (const f of [0, 1]) {
      const d = sliceDiff(a, b, out, 0, f);
      if (temporalLayers) assert.ok(d > 1e-4, `frame ${f} sees frame 2 (diff ${d})`);
      else assert.equal(d, 0, `2D-only: frame ${f} is independent`);
    }
    for (const f of [0, 1, 2])
      assert.equal(sliceDiff(a, b, out, 1, f), 0, "the other batch element is unchanged");
  }
});

test("lavie: the official UNet3DVSRModel's parameters, key for key (counts measured on the official module)", () => {
  const g = buildVsrUNet(getPreset("lavie").vsrUnet, { seed: 0, materialize: false });
  assert.equal(g.parameterCount, 691_036_436);
  assert.equal(g.parameters.length, 1142); // + 16 alias keys of the rotary frequencies = 1158 state-dict keys
  const shapes = new Map(g.parameters.map((p) => [p.name, p.shape]));
  const expect: [string, number[]][] = [
    ["temporal_rotary_emb.freqs", [16]],
    ["class_embedding.weight", [1000, 1024]],
    ["time_embedding.linear_1.weight", [1024, 256]],
    ["down_blocks.1.attentions.0.resblock_temporal.conv1.weight", [512, 512, 3, 1, 1]],
    ["down_blocks.1.attentions.0.resblock_temporal.norm2.weight", [512]],
    ["down_blocks.1.attentions.0.proj_in.weight", [512, 512]],
    ["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.weight", [512, 1024]],
    ["down_blocks.3.attentions.1.transformer_blocks.0.attn1.to_k.weight", [1024, 1024]],
    ["mid_block.attentions.0.transformer_blocks.0.attn1.to_k.weight", [1024, 1024]],
    [
      "up_blocks.0.attentions.2.transformer_blocks.0.attn_temporal.time_rel_pos_bias.relative_attention_bias.weight",
      [32, 8],
    ],
    ["up_blocks.2.attentions.0.transformer_blocks.0.norm_temporal.weight", [512]],
    ["down_temporal_blocks.0.resblocks_3d_t.conv1.weight", [256, 256, 5, 1, 1]],
    ["down_temporal_blocks.0.resblocks_3d_t.conv2.weight", [256, 256, 3, 1, 1]],
    ["down_temporal_blocks.0.resblocks_3d_t.time_emb_proj.weight", [256, 1024]],
    ["down_temporal_blocks.0.resblocks_3d_s.conv1.weight", [256, 256, 3, 3]],
    ["mid_temporal_block.shift_conv.weight", [1024, 1024, 1, 1]],
    ["up_temporal_blocks.3.shift_conv.bias", [256]],
    ["up_blocks.3.resnets.2.conv_shortcut.weight", [256, 512, 1, 1]],
  ];
  for (const [name, shape] of expect) assert.deepEqual(shapes.get(name), shape, name);
  for (const name of shapes.keys()) assert.ok(!VSR_UNET_ALIAS_KEYS.some((r) => r.test(name)), name);
  assert.ok(
    VSR_UNET_ALIAS_KEYS.some((r) =>
      r.test("mid_block.attentions.0.transformer_blocks.0.attn_temporal.rotary_emb.freqs"),
    ),
  );
  // Without the frame-axis layers it is the x4 upscaler's UNet (diffusers UNet2DConditionModel).
  const flat = buildVsrUNet(getPreset("lavie").vsrUnet, {
    seed: 0,
    materialize: false,
    temporalLayers: false,
  });
  assert.equal(flat.parameterCount, 473_398_020);
});

test("weights from a source: the seeded values reproduce the seeded graph; the rotary frequencies are honoured", async () => {
  const seeded = buildVsrUNet(tiny, { seed: 6 });
  const f = feeds(tiny, [1, 5, 8, 8]);
  const want = await run(seeded, f);
  assert.deepEqual(await run(buildVsrUNet(tiny, { seed: 0, weights: seededWeights(seeded) }), f), want);
  const halved = seededWeights(seeded, (n, v) =>
    n === "temporal_rotary_emb.freqs" ? v.map((x) => x / 2) : v,
  );
  const got = await run(buildVsrUNet(tiny, { seed: 0, weights: halved }), f);
  assert.ok(
    got.some((x, i) => Math.abs(x - want[i]!) > 1e-5),
    "other frequencies, other output",
  );
});

test("a temporal module whose shift_conv is zero (the official init) is the identity", async () => {
  const seeded = buildVsrUNet(tiny, { seed: 8 });
  const zeroShift = seededWeights(seeded, (n, v) =>
    /temporal_block.*\.shift_conv\./.test(n) ? v.map(() => 0) : v,
  );
  const withModules = buildVsrUNet(tiny, { seed: 0, weights: zeroShift });
  const none = tiny.blockChannels.map(() => false);
  const without = buildVsrUNet(
    { ...tiny, downTemporal: none, upTemporal: none, midTemporal: false },
    { seed: 0, weights: zeroShift },
  );
  const f = feeds(tiny, [2, 4, 8, 4]);
  assert.deepEqual(await run(withModules, f), await run(without, f));
});

test("configurations that cannot be built are refused with the reason", () => {
  const bad: [Partial<VsrUNetConfig>, RegExp][] = [
    [{ heads: [1, 4, 2] }, /level 1: 4 heads on width 16/],
    [{ ropeDim: 16 }, /heads at least ropeDim 16 wide/],
    [{ temporalGroups: 3 }, /divisible by groups 4 and temporalGroups 3/],
    [{ upTemporal: [true] }, /upTemporal needs one entry per level \(3\)/],
  ];
  for (const [over, msg] of bad) assert.throws(() => buildVsrUNet({ ...tiny, ...over }, { seed: 0 }), msg);
});
