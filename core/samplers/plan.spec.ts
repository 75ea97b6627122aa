import assert from "node:assert/strict";
import { test } from "node:test";
import { applyStep, predictOriginal, scaleModelInput } from "./apply.ts";
import { planSampler } from "./plan.ts";
import { alphasCumprod, sigmaAt } from "./schedule.ts";
import type { SamplerConfigInput } from "./types.ts";

/** Deterministic standard normals (LCG + Box-Muller), for tests only. */
function normals(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 1) / 4294967297;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}
const N = 64;
const x0 = normals(N, 1).map((v) => Math.tanh(v));
const eps = normals(N, 2);
const ac = alphasCumprod({ numTrainTimesteps: 1000, betaSchedule: "linear", betaStart: 1e-4, betaEnd: 0.02 });
const noised = (t: number, e: Float32Array = eps) =>
  Float32Array.from(x0, (v, i) => Math.sqrt(ac[t]!) * v + Math.sqrt(1 - ac[t]!) * e[i]!);
function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
/** The model output a perfect model gives for sample x at alpha-bar ab (noise consistent with x0). */
function oracle(x: Float32Array, ab: number, v: boolean): Float32Array {
  return Float32Array.from(x, (xi, i) => {
    const e = (xi - Math.sqrt(ab) * x0[i]!) / Math.sqrt(1 - ab);
    return v ? Math.sqrt(ab) * e - Math.sqrt(1 - ab) * x0[i]! : e;
  });
}
const LAVIE_DDIM: SamplerConfigInput = { sampler: "ddim", stepsOffset: 1, setAlphaToOne: true };

for (const pt of ["epsilon", "v_prediction"] as const) {
  const v = pt === "v_prediction";
  test(`DDIM eta 0 (${pt}): one step from t=999 recovers x0`, () => {
    const plan = planSampler({
      sampler: "ddim",
      numInferenceSteps: 1,
      timestepSpacing: "trailing",
      predictionType: pt,
    });
    const step = plan.steps[0]!;
    assert.equal(step.timestep, 999);
    assert.equal(step.needsNoise, false);
    const xT = noised(999);
    assert.ok(maxDiff(applyStep(step.coef, xT, oracle(xT, ac[999]!, v)), x0) < 1e-4);
    assert.ok(maxDiff(predictOriginal(step.coef, xT, oracle(xT, ac[999]!, v)), x0) < 1e-4);
  });

  test(`DDIM eta 0 (${pt}): full trajectory stays on sqrt(ab)x0 + sqrt(1-ab)eps and ends at x0`, () => {
    const plan = planSampler({ ...LAVIE_DDIM, predictionType: pt });
    let x: Float32Array = noised(plan.timesteps[0]!);
    for (const step of plan.steps) {
      const t = step.timestep;
      const model = v ? oracle(x, ac[t]!, true) : eps; // epsilon: the true noise itself
      x = applyStep(step.coef, x, model);
      const next = plan.steps[step.index + 1];
      if (next) assert.ok(maxDiff(x, noised(next.timestep)) < 1e-4, `step ${step.index}`);
    }
    assert.ok(maxDiff(x, x0) < 1e-4);
  });

  test(`DDIM (${pt}) with setAlphaToOne false ends at x0 noised to t=0`, () => {
    const plan = planSampler({ ...LAVIE_DDIM, setAlphaToOne: false, predictionType: pt });
    let x: Float32Array = noised(981);
    for (const step of plan.steps) x = applyStep(step.coef, x, oracle(x, ac[step.timestep]!, v));
    assert.ok(maxDiff(x, noised(0)) < 1e-4);
  });

  test(`DDPM (${pt}) with a perfect model ends at x0; the variance term uses the caller's noise`, () => {
    // diffusers 0.16 DDPMScheduler has no steps_offset: 980..0, and the t = 0 step adds no noise
    const plan = planSampler({ sampler: "ddpm", stepsOffset: 1, predictionType: pt });
    assert.deepEqual([plan.timesteps[0], plan.timesteps.at(-1)], [980, 0]);
    let x: Float32Array = noised(980);
    for (const step of plan.steps) {
      assert.equal(step.needsNoise, step.timestep > 0);
      x = applyStep(step.coef, x, oracle(x, ac[step.timestep]!, v), normals(N, 100 + step.index));
    }
    assert.ok(maxDiff(x, x0) < 1e-4);
  });

  test(`Euler (${pt}) with a perfect denoiser reaches x0`, () => {
    const plan = planSampler({ sampler: "euler", predictionType: pt });
    assert.equal(plan.timesteps[0], 999);
    assert.equal(plan.initNoiseSigma, sigmaAt(ac, 999));
    let x: Float32Array = Float32Array.from(x0, (xi, i) => xi + plan.initNoiseSigma * eps[i]!);
    for (const step of plan.steps) {
      const sigma = sigmaAt(ac, step.timestep);
      assert.ok(Math.abs(step.inputScale - 1 / Math.sqrt(sigma * sigma + 1)) < 1e-15);
      // the UNet sees x/sqrt(sigma^2+1) = sqrt(ab)x0 + sqrt(1-ab)eps with ab = 1/(sigma^2+1)
      const model = oracle(scaleModelInput(step, x), 1 / (sigma * sigma + 1), v);
      x = applyStep(step.coef, x, model);
    }
    assert.ok(maxDiff(x, x0) < 1e-4);
  });
}

test("DDPM step matches the diffusers formula (fixed_small, caller noise)", () => {
  const plan = planSampler({ sampler: "ddpm", stepsOffset: 1 });
  const step = plan.steps[10]!;
  const [t, p] = [step.timestep, step.timestep - 20];
  const [ab, abp] = [ac[t]!, ac[p]!];
  const [s, m, z] = [normals(N, 3), normals(N, 4), normals(N, 5)];
  const got = applyStep(step.coef, s, m, z);
  const beta = 1 - ab / abp;
  const variance = ((1 - abp) / (1 - ab)) * beta;
  const want = Float32Array.from(s, (si, i) => {
    const x0p = (si - Math.sqrt(1 - ab) * m[i]!) / Math.sqrt(ab);
    const mean =
      ((Math.sqrt(abp) * beta) / (1 - ab)) * x0p + ((Math.sqrt(1 - beta) * (1 - abp)) / (1 - ab)) * si;
    return mean + Math.sqrt(variance) * z[i]!;
  });
  assert.ok(maxDiff(got, want) < 1e-5);
  assert.throws(() => applyStep(step.coef, s, m), { name: "LavieError", field: "noise" });
});

test("DDIM eta > 0 step matches the diffusers formula; eta 1 with perfect model still ends at x0", () => {
  const plan = planSampler({ ...LAVIE_DDIM, eta: 0.7, predictionType: "v_prediction" });
  const step = plan.steps[5]!;
  const [ab, abp] = [ac[step.timestep]!, ac[step.timestep - 20]!];
  const [s, m, z] = [normals(N, 6), normals(N, 7), normals(N, 8)];
  const std = 0.7 * Math.sqrt(((1 - abp) / (1 - ab)) * (1 - ab / abp));
  const want = Float32Array.from(s, (si, i) => {
    const x0p = Math.sqrt(ab) * si - Math.sqrt(1 - ab) * m[i]!;
    const e = Math.sqrt(ab) * m[i]! + Math.sqrt(1 - ab) * si;
    return Math.sqrt(abp) * x0p + Math.sqrt(1 - abp - std * std) * e + std * z[i]!;
  });
  assert.ok(step.needsNoise);
  assert.ok(maxDiff(applyStep(step.coef, s, m, z), want) < 1e-5);

  const plan1 = planSampler({ ...LAVIE_DDIM, eta: 1 });
  let x: Float32Array = noised(981);
  for (const st of plan1.steps)
    x = applyStep(st.coef, x, oracle(x, ac[st.timestep]!, false), normals(N, st.index));
  assert.ok(maxDiff(x, x0) < 1e-4);
});

test("clipSample clamps the predicted x0", () => {
  const step = planSampler({ sampler: "ddim", clipSample: true, clipSampleRange: 0.5 }).steps[0]!;
  const x0p = predictOriginal(step.coef, normals(N, 9), normals(N, 10));
  assert.ok(x0p.every((v) => Math.abs(v) <= 0.5) && x0p.some((v) => Math.abs(v) === 0.5));
});

test("chunk equivalence: stepping halves (in place) == stepping the whole, bit for bit", () => {
  const M = 1001;
  const configs: SamplerConfigInput[] = [
    { sampler: "ddpm", stepsOffset: 1, clipSample: true },
    { sampler: "ddim", eta: 0.5, predictionType: "v_prediction" },
    { sampler: "euler" },
  ];
  for (const cfg of configs) {
    const plan = planSampler({ ...cfg, numInferenceSteps: 10 });
    const whole = normals(M, 11);
    const parts = whole.slice();
    for (const step of plan.steps) {
      const model = normals(M, 20 + step.index);
      const noise = normals(M, 40 + step.index);
      applyStep(step.coef, whole, model, noise, whole);
      for (const [a, b] of [
        [0, 377],
        [377, M],
      ] as const) {
        const chunk = parts.subarray(a, b);
        applyStep(step.coef, chunk, model.subarray(a, b), noise.subarray(a, b), chunk);
      }
    }
    assert.deepEqual(parts, whole, String(cfg.sampler));
  }
});

test("respaced DDIM (LaVie interpolation): original timesteps, exact trajectory, ends at x0", () => {
  const plan = planSampler({ sampler: "respaced_ddim" });
  assert.deepEqual(plan.timesteps.slice(0, 3), [999, 979, 958]);
  assert.deepEqual(plan.timesteps.slice(-2), [20, 0]);
  assert.equal(plan.initNoiseSigma, 1);
  let x: Float32Array = noised(999);
  for (const step of plan.steps) {
    assert.equal(step.needsNoise, false);
    assert.equal(step.inputScale, 1);
    x = applyStep(step.coef, x, eps); // the true noise: every step lands on the next kept timestep
    const next = plan.steps[step.index + 1];
    if (next) assert.ok(maxDiff(x, noised(next.timestep)) < 1e-4, `step ${step.index}`);
  }
  assert.ok(maxDiff(x, x0) < 1e-4); // the step from t = 0 goes to alpha-bar 1: x0 itself
});

test("respaced DDIM with clipping re-derives eps from the clipped x0; eta adds noise except at t = 0", () => {
  const plan = planSampler({ sampler: "respaced_ddim", numInferenceSteps: 4, clipSample: true, eta: 0.5 });
  assert.deepEqual(plan.timesteps, [999, 666, 333, 0]);
  assert.deepEqual(
    plan.steps.map((s) => s.needsNoise),
    [true, true, true, false],
  );
  const step = plan.steps[1]!;
  const [ab, abp] = [ac[666]!, ac[333]!]; // equal to the chain's alpha-bars up to rounding
  const sigma = 0.5 * Math.sqrt((1 - abp) / (1 - ab)) * Math.sqrt(1 - ab / abp);
  const [s, m, z] = [normals(N, 12), normals(N, 13), normals(N, 14)];
  const want = Float32Array.from(s, (si, i) => {
    const x0c = Math.min(1, Math.max(-1, (si - Math.sqrt(1 - ab) * m[i]!) / Math.sqrt(ab)));
    const e = (si - Math.sqrt(ab) * x0c) / Math.sqrt(1 - ab);
    return Math.sqrt(abp) * x0c + Math.sqrt(1 - abp - sigma * sigma) * e + sigma * z[i]!;
  });
  assert.ok(maxDiff(applyStep(step.coef, s, m, z), want) < 1e-5);
  const last = plan.steps[3]!;
  assert.deepEqual(applyStep(last.coef, s, m), predictOriginal(last.coef, s, m));
});
