import assert from "node:assert/strict";
import { test } from "node:test";
import { mulberry32 } from "../core/prng.ts";
import type { Tensor } from "../core/tensor.ts";
import {
  bicubicUpscale,
  blendFrames,
  clampClip,
  flicker,
  gaussianWindow,
  keysKernel,
  pickFrames,
  psnr,
  ssim,
  temporalDiffError,
} from "./metrics.ts";
import { renderClip } from "./render.ts";
import { sampleScenes } from "./sample.ts";

/** A [1, 3, F, H, W] clip with values f(c, t, i, j). */
function clipOf(F: number, H: number, W: number, f: (c: number, t: number, i: number, j: number) => number) {
  const data = new Float32Array(3 * F * H * W);
  for (let c = 0; c < 3; c++)
    for (let t = 0; t < F; t++)
      for (let i = 0; i < H; i++)
        for (let j = 0; j < W; j++) data[((c * F + t) * H + i) * W + j] = f(c, t, i, j);
  return { shape: [1, 3, F, H, W], data } satisfies Tensor;
}

const at = (t: Tensor, c: number, f: number, i: number, j: number): number => {
  const [, , F, H, W] = t.shape as [number, number, number, number, number];
  return t.data[((c * F + f) * H + i) * W + j]!;
};

function noisy(seed: number, F: number, H: number, W: number): Tensor {
  const rng = mulberry32(seed);
  return clipOf(F, H, W, () => rng() * 2 - 1);
}

test("identical clips: PSNR Infinity, SSIM 1", () => {
  const a = noisy(1, 2, 16, 20);
  assert.equal(psnr(a, a), Number.POSITIVE_INFINITY);
  assert.ok(Math.abs(ssim(a, a) - 1) < 1e-12);
});

test("a constant offset d gives PSNR 10 log10(4 / d^2) and SSIM (2xy + C1) / (x^2 + y^2 + C1) on flat frames", () => {
  const a = clipOf(2, 12, 12, () => 0.2);
  const b = clipOf(2, 12, 12, () => 0.3);
  assert.ok(Math.abs(psnr(a, b) - 10 * Math.log10(4 / 0.01)) < 1e-5); // 26.0206 dB
  // Flat frames: the variances and covariance are 0, so SSIM is the luminance term alone, on the
  // values mapped to [0, 1] with L = 1.
  const c1 = 0.01 ** 2;
  const x = (Math.fround(0.2) + 1) / 2;
  const y = (Math.fround(0.3) + 1) / 2;
  const want = (2 * x * y + c1) / (x * x + y * y + c1);
  assert.ok(Math.abs(ssim(a, b) - want) < 1e-9, `${ssim(a, b)} vs ${want}`);
  // A constant offset on a textured clip: PSNR is still set by the offset alone.
  const t = noisy(2, 1, 16, 16);
  const u = { shape: t.shape, data: t.data.map((v) => v + 0.05) };
  assert.ok(Math.abs(psnr(t, u) - 10 * Math.log10(4 / 0.0025)) < 1e-3);
  assert.ok(ssim(t, u) < 1 && ssim(t, u) > 0.99, `${ssim(t, u)}`);
  // The same clips as uint8-like values in [0, 255] with that range give the same SSIM.
  const to255 = (v: Tensor) => ({ shape: v.shape, data: v.data.map((z) => (z + 1) * 127.5) });
  assert.ok(Math.abs(ssim(to255(t), to255(u), { low: 0, high: 255 }) - ssim(t, u)) < 1e-6);
});

test("SSIM falls with noise and is symmetric; negated structure gives negative SSIM", () => {
  const a = noisy(3, 1, 24, 24);
  const rng = mulberry32(4);
  const b = { shape: a.shape, data: a.data.map((v) => v + (rng() - 0.5) * 0.4) };
  const c = { shape: a.shape, data: a.data.map((v) => v + (rng() - 0.5) * 1.2) };
  assert.ok(ssim(a, b) > ssim(a, c));
  assert.ok(Math.abs(ssim(a, b) - ssim(b, a)) < 1e-12);
  const neg = { shape: a.shape, data: a.data.map((v) => -v) };
  assert.ok(ssim(a, neg) < -0.5);
});

test("SSIM equals scikit-image's Gaussian SSIM (sigma 1.5, population covariance, data_range 1) on [0, 1]", () => {
  // skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
  // use_sample_covariance=False, data_range=1.0) on x = (a + 1) / 2, y = (b + 1) / 2 (scikit-image 0.26).
  const a = clipOf(1, 14, 17, (c, _t, i, j) => (c === 0 ? Math.sin(i * 0.7 + j * 1.3) : 0));
  const b = clipOf(1, 14, 17, (c, _t, i, j) =>
    c === 0
      ? Math.min(1, Math.max(-1, Math.fround(Math.sin(i * 0.7 + j * 1.3)) + 0.3 * Math.cos(i * j * 0.9)))
      : 0,
  );
  const one = { shape: [1, 1, 1, 14, 17], data: a.data.subarray(0, 14 * 17) };
  const two = { shape: [1, 1, 1, 14, 17], data: b.data.subarray(0, 14 * 17) };
  assert.ok(Math.abs(ssim(one, two) - 0.9595436911899604) < 1e-6, `${ssim(one, two)}`);
});

test("the SSIM window is the normalised Gaussian of sigma 1.5 over 11 taps", () => {
  const w = gaussianWindow();
  assert.equal(w.length, 11);
  assert.ok(Math.abs(w.reduce((s, v) => s + v, 0) - 1) < 1e-12);
  assert.ok(Math.abs(w[5]! / w[6]! - Math.exp(1 / (2 * 1.5 * 1.5))) < 1e-12);
});

test("SSIM refuses frames smaller than the window and mismatched shapes", () => {
  assert.throws(() => ssim(noisy(1, 1, 10, 20), noisy(2, 1, 10, 20)), /at least 11x11/);
  assert.throws(() => psnr(noisy(1, 1, 12, 12), noisy(2, 1, 12, 13)), /differs/);
});

test("flicker: a still clip has 0, a clip alternating by d has d; temporalDiffError ignores a constant error", () => {
  assert.equal(flicker(clipOf(5, 4, 4, (c, _t, i, j) => c * 0.1 + i * 0.01 - j * 0.02)), 0);
  const alt = clipOf(6, 4, 4, (_c, t) => (t % 2 === 0 ? -0.25 : 0.25));
  assert.ok(Math.abs(flicker(alt) - 0.5) < 1e-7);
  const ramp = clipOf(4, 3, 3, (_c, t) => t * 0.1);
  assert.ok(Math.abs(flicker(ramp) - 0.1) < 1e-6);
  const shifted = clipOf(4, 3, 3, (_c, t) => t * 0.1 + 0.3);
  assert.ok(temporalDiffError(shifted, ramp) < 1e-6);
  assert.ok(
    Math.abs(
      temporalDiffError(
        alt,
        clipOf(6, 4, 4, () => 0),
      ) - 0.5,
    ) < 1e-7,
  );
  assert.throws(() => flicker(clipOf(1, 2, 2, () => 0)), /at least 2 frames/);
});

test("flicker of a ground-truth render grows with the motion; a still scene's is 0", () => {
  const [scene] = sampleScenes(7, 1, { twoObjects: 0 });
  const moving = {
    ...scene!,
    objects: scene!.objects.map((o) => ({ ...o, motion: "right" as const, speed: 0.15 })),
  };
  const fast = { ...moving, objects: moving.objects.map((o) => ({ ...o, speed: 0.3 })) };
  const still = {
    ...scene!,
    objects: scene!.objects.map((o) => ({ ...o, motion: "still" as const, speed: 0 })),
  };
  const spec = { height: 32, width: 48, frames: 16, fps: 8 };
  assert.equal(flicker(renderClip(still, spec)), 0);
  assert.ok(flicker(renderClip(fast, spec)) > flicker(renderClip(moving, spec)));
});

test("Keys kernel: 1 at 0, 0 at the other integers, sums to 1 at any phase", () => {
  for (const a of [-0.5, -0.75]) {
    assert.equal(keysKernel(0, a), 1);
    for (const x of [1, -1, 2, -2, 3]) assert.ok(Math.abs(keysKernel(x, a)) < 1e-15);
    for (const t of [0.125, 0.375, 0.6]) {
      const s = keysKernel(t + 1, a) + keysKernel(t, a) + keysKernel(1 - t, a) + keysKernel(2 - t, a);
      assert.ok(Math.abs(s - 1) < 1e-12);
    }
  }
});

test("bicubic x4 of a linear ramp is exact in the interior; a = -0.5 also reproduces a quadratic", () => {
  const H = 8;
  const W = 10;
  const f = 4;
  const ramp = clipOf(1, H, W, (c, _t, i, j) => 0.1 * i - 0.07 * j + 0.05 * c - 0.3);
  const quad = clipOf(1, H, W, (_c, _t, i, j) => 0.01 * i * i - 0.02 * j * j + 0.03 * i * j);
  const ups = { ramp: bicubicUpscale(ramp, f), quad: bicubicUpscale(quad, f) };
  assert.deepEqual(ups.ramp.shape, [1, 3, 1, H * f, W * f]);
  // Interior: output rows whose four taps lie inside the input (source position in [1, n - 2)).
  let checked = 0;
  for (let i = 0; i < H * f; i++) {
    const y = (i + 0.5) / f - 0.5;
    if (y < 1 || y >= H - 2) continue;
    for (let j = 0; j < W * f; j++) {
      const x = (j + 0.5) / f - 0.5;
      if (x < 1 || x >= W - 2) continue;
      for (let c = 0; c < 3; c++) {
        const want = 0.1 * y - 0.07 * x + 0.05 * c - 0.3;
        assert.ok(Math.abs(at(ups.ramp, c, 0, i, j) - want) < 1e-6);
      }
      const wantQ = 0.01 * y * y - 0.02 * x * x + 0.03 * y * x;
      assert.ok(Math.abs(at(ups.quad, 0, 0, i, j) - wantQ) < 1e-5);
      checked++;
    }
  }
  assert.ok(checked > 300);
  // With a = -0.75 a quadratic is not reproduced.
  const q75 = bicubicUpscale(quad, f, -0.75);
  const y = (4 * f + 1 + 0.5) / f - 0.5;
  const x = (5 * f + 1 + 0.5) / f - 0.5;
  assert.ok(
    Math.abs(at(q75, 0, 0, 4 * f + 1, 5 * f + 1) - (0.01 * y * y - 0.02 * x * x + 0.03 * y * x)) > 1e-4,
  );
});

test("bicubic with a = -0.75 equals PyTorch F.interpolate(bicubic, align_corners=False), edges included", () => {
  // Measured with torch 2.0.1 (float64) on this 3x4 input, scale 2.
  const input = [
    [-0.5, 0.2, -0.2, 0.5],
    [0.1, -0.3, 0.4, 0.0],
    [-0.4, 0.3, -0.1, -0.5],
  ];
  const torch = [
    [
      -0.6493453979, -0.3602615356, 0.1222793579, 0.1932006836, -0.2037475586, -0.1328262329, 0.3497146606,
      0.6387985229,
    ],
    [
      -0.3899490356, -0.2491744995, -0.0159194946, 0.0678421021, -0.0541397095, 0.0438217163, 0.2982254028,
      0.45184021,
    ],
    [
      0.0449356079, -0.0635757446, -0.2493331909, -0.1444229126, 0.1949050903, 0.342414856, 0.2201034546,
      0.150112915,
    ],
    [
      0.0781387329, -0.0303726196, -0.2161300659, -0.0983795166, 0.2666290283, 0.2928695679, -0.0291793823,
      -0.2204391479,
    ],
    [
      -0.3090896606, -0.1683151245, 0.0649398804, 0.1799713135, 0.1205291748, -0.0768356323, -0.3088516235,
      -0.4505630493,
    ],
    [
      -0.5387985229, -0.2497146606, 0.2328262329, 0.3464981079, 0.0350509644, -0.2977828979, -0.4802505493,
      -0.594921875,
    ],
  ];
  const t = { shape: [3, 4], data: Float32Array.from(input.flat()) };
  const up = bicubicUpscale(t, 2, -0.75);
  assert.deepEqual(up.shape, [6, 8]);
  const want = torch.flat();
  for (let k = 0; k < want.length; k++)
    assert.ok(Math.abs(up.data[k]! - want[k]!) < 1e-6, `${k}: ${up.data[k]} vs ${want[k]}`);
});

test("bicubic x1 is the identity; x4 of a constant is the constant", () => {
  const a = noisy(5, 2, 5, 7);
  assert.deepEqual(bicubicUpscale(a, 1).data, a.data);
  const k = bicubicUpscale(
    clipOf(1, 3, 3, () => 0.4),
    4,
  );
  for (const v of k.data) assert.ok(Math.abs(v - 0.4) < 1e-6);
});

test("blendFrames: 16 -> 61 frames, frame 4k is base frame k, t = 0.5 is the mean of the two frames", () => {
  const base = noisy(6, 16, 3, 5);
  const up = blendFrames(base, 4);
  assert.deepEqual(up.shape, [1, 3, 61, 3, 5]);
  for (let k = 0; k < 16; k++)
    for (let c = 0; c < 3; c++) assert.equal(at(up, c, 4 * k, 1, 2), at(base, c, k, 1, 2));
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 5; j++) {
        const mean = (at(base, c, 3, i, j) + at(base, c, 4, i, j)) / 2;
        assert.ok(Math.abs(at(up, c, 14, i, j) - mean) < 1e-6);
        const quarter = 0.75 * at(base, c, 3, i, j) + 0.25 * at(base, c, 4, i, j);
        assert.ok(Math.abs(at(up, c, 13, i, j) - quarter) < 1e-6);
      }
    }
  }
  const two = blendFrames(noisy(7, 2, 2, 2), 2);
  assert.equal(two.shape[2], 3);
});

test("blendFrames of a render equals the true render at the base frames; in between it is close but not exact", () => {
  const [scene] = sampleScenes(11, 1, { twoObjects: 0 });
  const moving = {
    ...scene!,
    objects: scene!.objects.map((o) => ({ ...o, motion: "down" as const, speed: 0.3 })),
  };
  const base = renderClip(moving, { height: 32, width: 48, frames: 16, fps: 8 });
  const truth = renderClip(moving, { height: 32, width: 48, frames: 61, fps: 32 });
  const blend = blendFrames(base, 4);
  const keyFrames = Array.from({ length: 16 }, (_, k) => 4 * k);
  const between = Array.from({ length: 61 }, (_, j) => j).filter((j) => j % 4 !== 0);
  assert.ok(psnr(pickFrames(blend, keyFrames), pickFrames(truth, keyFrames)) > 100);
  const p = psnr(pickFrames(blend, between), pickFrames(truth, between));
  assert.ok(p > 15 && p < 60, `${p}`);
});

test("pickFrames and clampClip", () => {
  const a = clipOf(4, 2, 2, (c, t) => c + t * 10);
  const p = pickFrames(a, [3, 1]);
  assert.deepEqual(p.shape, [1, 3, 2, 2, 2]);
  assert.equal(at(p, 2, 0, 1, 1), 32);
  assert.equal(at(p, 1, 1, 0, 0), 11);
  assert.throws(() => pickFrames(a, [4]), /\[0, 3\]/);
  const c = clampClip({ shape: [3], data: Float32Array.from([-1.5, 0.25, 2]) });
  assert.deepEqual([...c.data], [-1, 0.25, 1]);
});
