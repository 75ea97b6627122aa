import assert from "node:assert/strict";
import { test } from "node:test";
import * as ort from "onnxruntime-node";
import type { UNetConfig } from "../configs.ts";
import { contractFor } from "../contract.ts";
import { GraphBuilder, type WeightSource } from "../onnx/graph.ts";
import { serializeModel } from "../onnx/serialize.ts";
import { getPreset, unetDivisor } from "../presets.ts";
import { relativeBucketTable, rotaryFrequencies } from "./attention.ts";
import { groupNormFrames } from "./layers.ts";
import { sparseCausalAttention, temporalAttention } from "./transformer.ts";
import { buildUNet, type UNetKind } from "./unet.ts";

const SESSION = { intraOpNumThreads: 2, interOpNumThreads: 1 };
const tiny = getPreset("tiny");
const KINDS: [UNetKind, UNetConfig][] = [
  ["base_unet", tiny.baseUnet],
  ["interp_unet", tiny.interpUnet],
];

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  });
}

async function session(g: GraphBuilder): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(serializeModel(g.toModel()).onnx, SESSION);
}

const sessions = new Map<string, Promise<ort.InferenceSession>>();
function unet(kind: UNetKind, cfg: UNetConfig, temporalLayers = true): Promise<ort.InferenceSession> {
  const key = `${kind}/${temporalLayers}`;
  let s = sessions.get(key);
  if (!s) sessions.set(key, (s = session(buildUNet(kind, cfg, { seed: 11, temporalLayers }))));
  return s;
}

function feeds(cfg: UNetConfig, b: number, f: number, h: number, w: number, sample?: Float32Array) {
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
  };
}

function stats(d: Float32Array): { mean: number; std: number } {
  let m = 0;
  for (const x of d) m += x;
  m /= d.length;
  let v = 0;
  for (const x of d) v += (x - m) ** 2;
  return { mean: m, std: Math.sqrt(v / d.length) };
}

/** Max |a - b| over frame f of a [B, C, F, h, w] tensor (all batches and channels). */
function frameDiff(a: Float32Array, b: Float32Array, dims: readonly number[], f: number): number {
  const [B, C, F, h, w] = dims as [number, number, number, number, number];
  let m = 0;
  for (let i = 0; i < B * C; i++)
    for (let p = 0; p < h * w; p++) {
      const k = (i * F + f) * h * w + p;
      m = Math.max(m, Math.abs(a[k]! - b[k]!));
    }
  return m;
}

/** Sample with frame f of every batch/channel replaced by other values. */
function perturbFrame(x: Float32Array, dims: readonly number[], f: number): Float32Array {
  const [B, C, F, h, w] = dims as [number, number, number, number, number];
  const y = x.slice();
  const r = rand(h * w, 99);
  for (let i = 0; i < B * C; i++) for (let p = 0; p < h * w; p++) y[(i * F + f) * h * w + p] = r[p]!;
  return y;
}

test("tiny UNets return the contracted shape for many frame counts, sizes (uneven too) and batches", async () => {
  for (const [kind, cfg] of KINDS) {
    const s = await unet(kind, cfg);
    const c = contractFor(kind, { width: cfg.crossAttentionDim, inChannels: cfg.inChannels });
    assert.deepEqual(
      s.inputNames,
      c.inputs.map((i) => i.name),
    );
    assert.deepEqual(s.outputNames, ["out_sample"]);
    const dv = unetDivisor(cfg);
    const cases = [
      [1, 1, dv, dv],
      [2, 3, 2 * dv, 3 * dv],
      [1, 8, 3 * dv, 2 * dv],
      [2, 16, 2 * dv, 2 * dv],
      // Sizes the downsampling does not divide: each up block resizes to its skip connection's size.
      [1, 2, 2 * dv + 1, 3 * dv - 1],
    ] as const;
    for (const [b, f, h, w] of cases) {
      const out = (await s.run(feeds(cfg, b, f, h, w))).out_sample!;
      assert.deepEqual(out.dims, [b, 4, f, h, w], `${kind} ${b}x${f}x${h}x${w}`);
      const d = out.data as Float32Array;
      assert.ok(d.every(Number.isFinite), `${kind}: finite`);
      const { std } = stats(d);
      assert.ok(std > 0.05 && std < 5, `${kind}: healthy output std ${std}`);
    }
  }
});

test("the frame axis matters: changing one frame changes the other frames' outputs", async () => {
  for (const [kind, cfg] of KINDS) {
    const s = await unet(kind, cfg);
    const dv = unetDivisor(cfg);
    const dims = [1, cfg.inChannels, 5, 2 * dv, 2 * dv];
    const x = rand(
      dims.reduce((a, b) => a * b),
      5,
    );
    const run = async (sample: Float32Array) =>
      (await s.run(feeds(cfg, 1, 5, 2 * dv, 2 * dv, sample))).out_sample!;
    const a = await run(x);
    const b = await run(perturbFrame(x, dims, 2));
    for (const f of [0, 1, 3, 4]) {
      const diff = frameDiff(a.data as Float32Array, b.data as Float32Array, a.dims, f);
      assert.ok(diff > 1e-5, `${kind}: frame ${f} should depend on frame 2 (diff ${diff})`);
    }
  }
});

test("2D-only UNets (per-frame norms, no temporal layers): frames are independent, except sparse-causal attention", async () => {
  for (const [kind, cfg] of KINDS) {
    const s = await unet(kind, cfg, false);
    const dv = unetDivisor(cfg);
    const dims = [2, cfg.inChannels, 5, 2 * dv, 2 * dv];
    const x = rand(
      dims.reduce((a, b) => a * b),
      6,
    );
    const run = async (sample: Float32Array) =>
      (await s.run(feeds(cfg, 2, 5, 2 * dv, 2 * dv, sample))).out_sample!;
    const a = await run(x);
    const b = await run(perturbFrame(x, dims, 2));
    const diff = (f: number) => frameDiff(a.data as Float32Array, b.data as Float32Array, a.dims, f);
    // Frame 2 itself changes; frames 0 and 1 never see frame 2 (keys/values are frames 0 and i-1).
    assert.ok(diff(2) > 1e-3);
    for (const f of [0, 1]) assert.ok(diff(f) < 1e-6, `${kind}: frame ${f} diff ${diff(f)}`);
    // Sparse-causal: frame 3 attends to frame 2; frame 4 attends to frames 0 and 3 (which changed).
    const coupled = kind === "interp_unet";
    for (const f of [3, 4]) assert.equal(diff(f) > 1e-5, coupled, `${kind}: frame ${f} diff ${diff(f)}`);
  }
});

// ---- block tests against plain float64 TypeScript ----------------------------------------------

function weights(g: GraphBuilder): Map<string, Float32Array> {
  const m = new Map<string, Float32Array>();
  for (const t of g.toModel().graph!.initializer) m.set(t.name, new Float32Array(t.rawData.slice().buffer));
  return m;
}

/** x [L, din] times W^T, W [dout, din] as PyTorch stores it (+ b), in float64. */
function matmul(x: number[][], w: Float32Array, dout: number, b?: Float32Array): number[][] {
  return x.map((row) =>
    Array.from({ length: dout }, (_, o) =>
      row.reduce((acc, v, i) => acc + v * w[o * row.length + i]!, b ? b[o]! : 0),
    ),
  );
}

/** LaVie/T5 relative position bucket for relative_position = key - query. */
function t5Bucket(relativePosition: number, numBuckets: number, maxDistance: number): number {
  let n = -relativePosition;
  const nb = numBuckets / 2;
  let ret = n < 0 ? nb : 0;
  n = Math.abs(n);
  const maxExact = nb / 2;
  if (n < maxExact) return ret + n;
  const large =
    maxExact + Math.trunc((Math.log(n / maxExact) / Math.log(maxDistance / maxExact)) * (nb - maxExact));
  ret += Math.min(large, nb - 1);
  return ret;
}

/** rotary_embedding_torch on one head vector at position pos: interleaved pairs, the first 2*freqs.length dims. */
function ropeVec(v: number[], pos: number, freqs: ArrayLike<number>): number[] {
  const out = v.slice();
  for (let p = 0; p < freqs.length; p++) {
    const ang = pos * freqs[p]!;
    const a = v[2 * p]!;
    const b = v[2 * p + 1]!;
    out[2 * p] = a * Math.cos(ang) - b * Math.sin(ang);
    out[2 * p + 1] = b * Math.cos(ang) + a * Math.sin(ang);
  }
  return out;
}

/** Multi-head attention in float64 (q rows at positions 0.., k rows at positions 0..). */
function mhaRef(
  w: Map<string, Float32Array>,
  p: string,
  xq: number[][],
  xkv: number[][],
  c: number,
  heads: number,
  extra: { freqs?: ArrayLike<number>; bias?: (h: number, i: number, j: number) => number } = {},
): number[][] {
  const d = c / heads;
  const q = matmul(xq, w.get(`${p}.to_q.weight`)!, c);
  const k = matmul(xkv, w.get(`${p}.to_k.weight`)!, c);
  const v = matmul(xkv, w.get(`${p}.to_v.weight`)!, c);
  const o = xq.map(() => new Array<number>(c).fill(0));
  for (let h = 0; h < heads; h++) {
    const head = (m: number[][], i: number) => {
      const hv = m[i]!.slice(h * d, h * d + d);
      return extra.freqs ? ropeVec(hv, i, extra.freqs) : hv;
    };
    for (let i = 0; i < xq.length; i++) {
      const qi = head(q, i);
      const logits = xkv.map((_, j) => {
        const kj = head(k, j);
        return (
          qi.reduce((a, x, t) => a + x * kj[t]!, 0) / Math.sqrt(d) + (extra.bias ? extra.bias(h, i, j) : 0)
        );
      });
      const mx = Math.max(...logits);
      const e = logits.map((l) => Math.exp(l - mx));
      const z = e.reduce((a, b) => a + b, 0);
      for (let j = 0; j < xkv.length; j++)
        for (let t = 0; t < d; t++) o[i]![h * d + t]! += (e[j]! / z) * v[j]![h * d + t]!;
    }
  }
  return matmul(o, w.get(`${p}.to_out.0.weight`)!, c, w.get(`${p}.to_out.0.bias`)!);
}

function maxAbsDiff(ref: number[][][], got: Float32Array): number {
  const flat = ref.flat(2);
  assert.equal(flat.length, got.length);
  return flat.reduce((m, v, i) => Math.max(m, Math.abs(v - got[i]!)), 0);
}

/** A WeightSource serving a built graph's initializers, some replaced. */
function weightsFrom(w: Map<string, Float32Array>, replace: Record<string, Float32Array> = {}): WeightSource {
  return { take: (name) => replace[name] ?? w.get(name)! };
}

test("temporal attention (RoPE from attn_temp.rotary_emb.freqs, relative position bias) matches a float64 reference", async () => {
  const configs = [
    { c: 64, heads: 2, frames: 20, buckets: 32, maxDist: 32 }, // LaVie's values, heads exactly 32 wide
    { c: 80, heads: 2, frames: 40, buckets: 32, maxDist: 32 }, // heads 40 wide (as 320/8): 8 channels pass; past maxDist
    { c: 24, heads: 2, frames: 13, buckets: 8, maxDist: 6, ropeDim: 4 }, // partial RoPE, clamped log buckets
  ];
  for (const k of configs) {
    const cfg = {
      ropeDim: k.ropeDim ?? 32,
      biasBuckets: k.buckets,
      biasMaxDistance: k.maxDist,
      placement: "before_ff" as const,
    };
    const build = (weights?: WeightSource) => {
      const g = new GraphBuilder({ name: "temporal", seed: 5, ...(weights ? { weights } : {}) });
      const x = g.input("x", "float32", ["N", "F", k.c]);
      g.output(temporalAttention(g, "attn_temp", x, k.c, k.heads, cfg, "own"), "y", "float32", [
        "N",
        "F",
        k.c,
      ]);
      return g;
    };
    const seeded = weights(build());
    const freqsKey = "attn_temp.rotary_emb.freqs";
    assert.deepEqual(
      seeded.get(freqsKey),
      rotaryFrequencies(cfg.ropeDim),
      "seeded freqs: the library's defaults",
    );
    // Imported frequencies are the ones used: scale them.
    const freqs = seeded.get(freqsKey)!.map((f) => f * 1.7);
    const g = build(weightsFrom(seeded, { [freqsKey]: freqs }));
    const w = weights(g);
    const table = w.get("attn_temp.time_rel_pos_bias.relative_attention_bias.weight")!;
    const n = 2;
    const xd = rand(n * k.frames * k.c, 3);
    const y = (await (await session(g)).run({ x: new ort.Tensor("float32", xd, [n, k.frames, k.c]) })).y!;
    const ref = Array.from({ length: n }, (_, b) => {
      const tokens = Array.from({ length: k.frames }, (_, f) =>
        Array.from(xd.subarray((b * k.frames + f) * k.c, (b * k.frames + f + 1) * k.c)),
      );
      const bias = (h: number, i: number, j: number) =>
        table[t5Bucket(j - i, k.buckets, k.maxDist) * k.heads + h]!;
      return mhaRef(w, "attn_temp", tokens, tokens, k.c, k.heads, { freqs, bias });
    });
    const err = maxAbsDiff(ref, y.data as Float32Array);
    assert.ok(err < 1e-4, `max error ${err}`);
  }
});

test("relative position buckets are LaVie's for every distance (|n| beyond max_distance share the last bucket)", () => {
  // RelativePositionBias(num_buckets 32, max_distance 32)._relative_position_bucket of n = 0..32, from torch 2.0.1.
  const lavie = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 12, 12, 13, 13, 13, 14, 14, 14, 14, 15, 15,
    15, 15, 15, 15,
  ];
  const table = relativeBucketTable(32, 32);
  assert.deepEqual(table, lavie);
  // The float64 T5 formula agrees at every distance, far past max_distance too.
  for (let n = 0; n <= 200; n++) assert.equal(table[Math.min(n, 32)], t5Bucket(-n, 32, 32), `|n| = ${n}`);
});

test("groupNormFrames takes each group's statistics over all frames of a clip (float64 reference)", async () => {
  const [B, C, F, H, W, groups, eps] = [2, 4, 3, 2, 3, 2, 1e-5];
  const g = new GraphBuilder({ name: "gn", seed: 3 });
  const x = g.input("x", "float32", ["N", C, H, W]);
  const fr = g.input("frames", "int64", [1]);
  g.output(groupNormFrames(g, "norm", x, fr, C, groups, eps), "y", "float32", ["N", C, H, W]);
  const xd = rand(B * F * C * H * W, 21).map((v, i) => v + (i % 7) * 0.3);
  const y = (
    await (
      await session(g)
    ).run({
      x: new ort.Tensor("float32", xd, [B * F, C, H, W]),
      frames: new ort.Tensor("int64", BigInt64Array.from([BigInt(F)]), [1]),
    })
  ).y!.data as Float32Array;
  const at = (b: number, f: number, c: number, p: number) => ((b * F + f) * C + c) * H * W + p;
  let err = 0;
  const cg = C / groups;
  for (let b = 0; b < B; b++)
    for (let grp = 0; grp < groups; grp++) {
      const idx: number[] = [];
      for (let f = 0; f < F; f++)
        for (let c = grp * cg; c < (grp + 1) * cg; c++)
          for (let p = 0; p < H * W; p++) idx.push(at(b, f, c, p));
      const mean = idx.reduce((a, i) => a + xd[i]!, 0) / idx.length;
      const variance = idx.reduce((a, i) => a + (xd[i]! - mean) ** 2, 0) / idx.length;
      for (const i of idx) err = Math.max(err, Math.abs((xd[i]! - mean) / Math.sqrt(variance + eps) - y[i]!));
    }
  assert.ok(err < 1e-5, `max error ${err}`);
});

test("sparse-causal attention: frame i attends to frames 0 and i-1 (float64 reference)", async () => {
  const [c, heads, frames, hw, batch] = [16, 2, 4, 3, 2];
  const g = new GraphBuilder({ name: "sparse", seed: 8 });
  const x = g.input("x", "float32", ["N", "L", c]);
  const fr = g.input("frames", "int64", [1]);
  g.output(sparseCausalAttention(g, "attn1", x, fr, c, heads), "y", "float32", ["N", "L", c]);
  const w = weights(g);
  const s = await session(g);
  const xd = rand(batch * frames * hw * c, 4);
  const run = async (data: Float32Array) =>
    (
      await s.run({
        x: new ort.Tensor("float32", data, [batch * frames, hw, c]),
        frames: new ort.Tensor("int64", BigInt64Array.from([BigInt(frames)]), [1]),
      })
    ).y!.data as Float32Array;
  const tok = (data: Float32Array, b: number, f: number) =>
    Array.from({ length: hw }, (_, p) =>
      Array.from(data.subarray(((b * frames + f) * hw + p) * c, ((b * frames + f) * hw + p + 1) * c)),
    );
  const ref = Array.from({ length: batch * frames }, (_, bf) => {
    const [b, f] = [Math.floor(bf / frames), bf % frames];
    return mhaRef(w, "attn1", tok(xd, b, f), [...tok(xd, b, 0), ...tok(xd, b, Math.max(f - 1, 0))], c, heads);
  });
  const y = await run(xd);
  assert.ok(maxAbsDiff(ref, y) < 1e-4);
  // Changing frame 2 leaves frames 0 and 1 unchanged and changes frames 2 and 3.
  const x2 = xd.slice();
  for (let b = 0; b < batch; b++) x2.fill(0.5, (b * frames + 2) * hw * c, (b * frames + 3) * hw * c);
  const y2 = await run(x2);
  const frameMax = (f: number) => {
    let m = 0;
    for (let b = 0; b < batch; b++)
      for (let i = (b * frames + f) * hw * c; i < (b * frames + f + 1) * hw * c; i++)
        m = Math.max(m, Math.abs(y[i]! - y2[i]!));
    return m;
  };
  assert.equal(frameMax(0), 0);
  assert.equal(frameMax(1), 0);
  assert.ok(frameMax(2) > 1e-4 && frameMax(3) > 1e-4);
});

test("lavie parameter counts: SD1.4's 2D UNet, and every key of the official LaVie UNets", () => {
  const lavie = getPreset("lavie");
  const count = (kind: UNetKind, cfg: UNetConfig, temporalLayers: boolean) =>
    buildUNet(kind, cfg, { seed: 0, materialize: false, temporalLayers }).parameterCount;
  // diffusers: UNet2DConditionModel (SD1.x) num_parameters() == 859,520,964
  assert.equal(count("base_unet", lavie.baseUnet, false), 859_520_964);
  // Interpolation: SD1.4 with conv_in taking 8 channels (+4 x 320 x 3 x 3).
  assert.equal(count("interp_unet", lavie.interpUnet, false), 859_520_964 + 4 * 320 * 9);
  // The official UNet3DConditionModels (SD1.4 config, LaVie's overrides), summed over their state dicts.
  // The base UNet's 16 temporal attentions share one RotaryEmbedding, whose freqs [16] the state dict
  // (and so the checkpoint) holds under every block's key: parameters() counts it once (909,124,116).
  assert.equal(count("base_unet", lavie.baseUnet, true), 909_124_356);
  assert.equal(count("interp_unet", lavie.interpUnet, true), 909_131_524);
});
