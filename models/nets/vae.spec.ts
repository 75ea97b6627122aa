import assert from "node:assert/strict";
import { test } from "node:test";
import * as ort from "onnxruntime-node";
import { GraphBuilder } from "../onnx/graph.ts";
import { serializeModel } from "../onnx/serialize.ts";
import { getPreset } from "../presets.ts";
import { buildVaeDecoder, buildVaeEncoder, downsample, splitMoments } from "./vae.ts";

const SESSION: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 2, interOpNumThreads: 1 };

async function session(g: GraphBuilder): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(serializeModel(g.toModel()).onnx, SESSION);
}

/** Deterministic standard-normal-ish values (sum of uniforms from a small LCG), times `scale`. */
function noise(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  return Float32Array.from(
    { length: n },
    () => (next() + next() + next() + next() - 2) * Math.sqrt(3) * scale,
  );
}

function stats(x: Float32Array): { mean: number; std: number; maxAbs: number } {
  let sum = 0;
  let sq = 0;
  let maxAbs = 0;
  for (const v of x) {
    assert.ok(Number.isFinite(v), "non-finite output");
    sum += v;
    sq += v * v;
    maxAbs = Math.max(maxAbs, Math.abs(v));
  }
  const mean = sum / x.length;
  return { mean, std: Math.sqrt(sq / x.length - mean * mean), maxAbs };
}

async function run(
  s: ort.InferenceSession,
  name: string,
  data: Float32Array,
  dims: number[],
): Promise<ort.Tensor> {
  const out = await s.run({ [name]: new ort.Tensor("float32", data, dims) });
  return Object.values(out)[0]!;
}

for (const name of ["tiny", "small"] as const) {
  const preset = getPreset(name);
  for (const kind of ["vae_decoder", "x4_vae_decoder"] as const) {
    const cfg = kind === "vae_decoder" ? preset.sdVae : preset.x4Vae;
    const f = kind === "vae_decoder" ? 8 : 4;
    test(`${name} ${kind}: x${f} shapes for 1 and 3 frames at 4x6 and 8x12, finite image-scale output`, async (t) => {
      const s = await session(buildVaeDecoder(cfg, { seed: 3 }, kind));
      assert.deepEqual(s.inputNames, ["latent_sample"]);
      assert.deepEqual(s.outputNames, ["sample"]);
      for (const [h, w] of [
        [4, 6],
        [8, 12],
      ] as const) {
        for (const n of [1, 3]) {
          // Latents as callers pass them: unit-scale latents divided by the scaling factor.
          const z = noise(n * 4 * h * w, 11 * n + h, 1 / cfg.scalingFactor);
          const t0 = performance.now();
          const y = await run(s, "latent_sample", z, [n, 4, h, w]);
          const ms = performance.now() - t0;
          assert.deepEqual(y.dims, [n, 3, f * h, f * w]);
          const st = stats(y.data as Float32Array);
          assert.ok(st.std > 0.05 && st.std < 2 && st.maxAbs < 10, JSON.stringify(st));
          t.diagnostic(`${name} ${kind} ${n}x4x${h}x${w}: ${ms.toFixed(1)} ms, std ${st.std.toFixed(3)}`);
        }
      }
    });

    test(`${name} ${kind}: decoding frame by frame equals decoding the batch`, async (t) => {
      const s = await session(buildVaeDecoder(cfg, { seed: 4 }, kind));
      const [n, h, w] = [3, 4, 6];
      const per = 4 * h * w;
      const z = noise(n * per, 99, 1 / cfg.scalingFactor);
      const all = (await run(s, "latent_sample", z, [n, 4, h, w])).data as Float32Array;
      const out = 3 * f * h * f * w;
      let maxDiff = 0;
      for (let i = 0; i < n; i++) {
        const one = (await run(s, "latent_sample", z.slice(i * per, (i + 1) * per), [1, 4, h, w]))
          .data as Float32Array;
        for (let j = 0; j < out; j++) maxDiff = Math.max(maxDiff, Math.abs(one[j]! - all[i * out + j]!));
      }
      t.diagnostic(`${name} ${kind}: max |frame-by-frame - batch| = ${maxDiff}`);
      assert.ok(maxDiff < 1e-5, `max difference ${maxDiff}`);
    });
  }

  test(`${name} vae_encoder: latent_parameters [N,8,H/8,W/8] at 32x48 and 64x96, finite`, async (t) => {
    const s = await session(buildVaeEncoder(preset.sdVae, { seed: 5 }));
    assert.deepEqual(s.inputNames, ["sample"]);
    assert.deepEqual(s.outputNames, ["latent_parameters"]);
    for (const [H, W] of [
      [32, 48],
      [64, 96],
    ] as const) {
      for (const n of [1, 3]) {
        const x = noise(n * 3 * H * W, H + n).map(Math.tanh); // images in [-1, 1]
        const t0 = performance.now();
        const y = await run(s, "sample", x, [n, 3, H, W]);
        const ms = performance.now() - t0;
        assert.deepEqual(y.dims, [n, 8, H / 8, W / 8]);
        const st = stats(y.data as Float32Array);
        assert.ok(st.std > 0.01 && st.maxAbs < 10, JSON.stringify(st));
        t.diagnostic(`${name} vae_encoder ${n}x3x${H}x${W}: ${ms.toFixed(1)} ms, std ${st.std.toFixed(3)}`);
      }
    }
    // Images are encoded independently of the rest of the batch.
    const [n, H, W] = [2, 32, 48];
    const x = noise(n * 3 * H * W, 7).map(Math.tanh);
    const all = (await run(s, "sample", x, [n, 3, H, W])).data as Float32Array;
    const second = (await run(s, "sample", x.slice(3 * H * W), [1, 3, H, W])).data as Float32Array;
    let maxDiff = 0;
    for (let j = 0; j < second.length; j++)
      maxDiff = Math.max(maxDiff, Math.abs(second[j]! - all[second.length + j]!));
    t.diagnostic(`${name} vae_encoder: max |single - batch| = ${maxDiff}`);
    assert.ok(maxDiff < 1e-5, `max difference ${maxDiff}`);
  });
}

test("lavie parameter counts: SD VAE decoder 49,490,199 + encoder 34,163,664 = 83,653,863; x4 decoder", () => {
  const lavie = getPreset("lavie");
  const o = { seed: 0, materialize: false };
  const dec = buildVaeDecoder(lavie.sdVae, o, "vae_decoder");
  const enc = buildVaeEncoder(lavie.sdVae, o);
  // Public: diffusers AutoencoderKL of SD 1.x has 83,653,863 parameters (encoder + quant_conv +
  // decoder + post_quant_conv). The split follows from the state dict.
  assert.equal(dec.parameterCount + enc.parameterCount, 83_653_863);
  assert.equal(dec.parameterCount, 49_490_199);
  assert.equal(enc.parameterCount, 34_163_664);
  // Derived from the x4 upscaler's VAE config (widths 128, 256, 512; 2 layers per block; same blocks).
  assert.equal(buildVaeDecoder(lavie.x4Vae, o, "x4_vae_decoder").parameterCount, 32_965_399);
  // diffusers 0.16.0 state dicts: SD VAE 248 keys (decoder half 140, encoder half 108), x4 VAE decoder half 114.
  assert.equal(dec.parameters.length, 140);
  assert.equal(enc.parameters.length, 108);
  assert.equal(buildVaeDecoder(lavie.x4Vae, o, "x4_vae_decoder").parameters.length, 114);
  const names = new Set(dec.parameters.map((p) => p.name));
  for (const n of [
    "post_quant_conv.weight",
    "decoder.conv_in.weight",
    "decoder.mid_block.attentions.0.query.bias",
    "decoder.mid_block.attentions.0.group_norm.weight",
    "decoder.mid_block.attentions.0.proj_attn.weight",
    "decoder.up_blocks.2.resnets.0.conv_shortcut.weight",
    "decoder.up_blocks.2.upsamplers.0.conv.weight",
    "decoder.conv_norm_out.weight",
  ])
    assert.ok(names.has(n), `missing parameter ${n}`);
  assert.ok(enc.parameters.some((p) => p.name === "encoder.down_blocks.0.downsamplers.0.conv.weight"));
  assert.ok(enc.parameters.some((p) => p.name === "quant_conv.bias"));
  assert.ok(enc.parameters.some((p) => p.name === "encoder.mid_block.attentions.0.proj_attn.bias"));
});

test("splitMoments: mean as is, log-variance clamped to [-30, 20], per image", () => {
  // [N=2, 2*latent=4, 1, 2]: image 0 = mean [1,2,3,4], logvar [-50,50,19.5,-29.5]; image 1 = ...
  const moments = Float32Array.from([1, 2, 3, 4, -50, 50, 19.5, -29.5, 5, 6, 7, 8, 0, -1, 20, -30]);
  const { mean, logvar, shape } = splitMoments(moments, [2, 4, 1, 2]);
  assert.deepEqual(shape, [2, 2, 1, 2]);
  assert.deepEqual(Array.from(mean), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(Array.from(logvar), [-30, 20, 19.5, -29.5, 0, -1, 20, -30]);
  assert.throws(
    () => splitMoments(moments, [2, 3, 1, 2]),
    /latent_parameters: expected \[N, 2\*latent, h, w\]/,
  );
  assert.throws(() => splitMoments(moments, [1, 4, 1, 2]), /got shape \[1,4,1,2\]/);
});

test("VAE configs whose level count does not match the contracted factor are rejected", () => {
  const lavie = getPreset("lavie");
  const o = { seed: 0, materialize: false };
  assert.throws(() => buildVaeDecoder(lavie.x4Vae, o, "vae_decoder"), /4 levels for x8/);
  assert.throws(() => buildVaeDecoder(lavie.sdVae, o, "x4_vae_decoder"), /3 levels for x4/);
  assert.throws(() => buildVaeEncoder(lavie.x4Vae, o), /4 levels for x8/);
  assert.throws(() => buildVaeEncoder({ ...lavie.sdVae, latentChannels: 8 }, o), /latentChannels must be 4/);
  assert.throws(() => buildVaeEncoder({ ...lavie.sdVae, groups: 48 }, o), /not divisible by groups/);
});

test("the encoder's stride-2 downsample pads one row/column at the bottom/right only (diffusers)", async () => {
  const g = new GraphBuilder({ name: "down", seed: 9 });
  const x = g.input("x", "float32", [1, 1, 4, 4]);
  g.output(downsample(g, "conv", x, 1), "y", "float32", [1, 1, 2, 2]);
  const init = g.toModel().graph!.initializer;
  const tensor = (n: string) => new Float32Array(init.find((t) => t.name === n)!.rawData.slice().buffer);
  const w = tensor("conv.weight");
  const b = tensor("conv.bias")[0]!;
  const xs = Float32Array.from({ length: 16 }, (_, i) => Math.cos(i * 0.7));
  const y = (await (await session(g)).run({ x: new ort.Tensor("float32", xs, [1, 1, 4, 4]) })).y!
    .data as Float32Array;
  for (let oy = 0; oy < 2; oy++)
    for (let ox = 0; ox < 2; ox++) {
      let acc = b;
      for (let ky = 0; ky < 3; ky++)
        for (let kx = 0; kx < 3; kx++) {
          const [iy, ix] = [2 * oy + ky, 2 * ox + kx]; // no top/left padding
          if (iy < 4 && ix < 4) acc += xs[iy * 4 + ix]! * w[ky * 3 + kx]!;
        }
      assert.ok(Math.abs(y[oy * 2 + ox]! - acc) < 1e-5, `(${oy}, ${ox}): ${y[oy * 2 + ox]} vs ${acc}`);
    }
});
