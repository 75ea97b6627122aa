/**
 * Every stage's sampler against the reference vectors in test/golden/samplers (regenerate with
 * `python/.venv/bin/python -m lavie_ref.golden --only samplers`): base and VSR against diffusers 0.16.0,
 * interpolation against lavie_ref.respace (LaVie's respaced DDIM). Timesteps must match exactly; every
 * step's prev_sample and predicted x0 within the case's relative tolerance (of max(1, |reference|)).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import type * as ort from "onnxruntime-node";
import { GOLDEN_ROOT, listCases, loadCase, maxAbs, maxAbsDiff } from "../../test/support/golden.ts";
import { applyStep, predictOriginal } from "./apply.ts";
import { augmentLowRes } from "./augment.ts";
import { planSampler } from "./plan.ts";
import { stageSamplerConfig } from "./presets.ts";
import type { SamplerConfigInput } from "./types.ts";

const ROOT = join(GOLDEN_ROOT, "samplers");

interface StepCase {
  stage: string;
  overrides: SamplerConfigInput;
  reference: string;
  shape: number[];
  timesteps: number[];
  input_scales: number[];
  noise_used: boolean[];
  init_noise_sigma: number;
  tolerance: { relative: number };
}

interface LowResCase {
  noise_level: number;
  tolerance: { relative: number };
}

function floats(m: Map<string, ort.Tensor>, key: string): Float32Array {
  const t = m.get(key);
  assert.ok(t, `golden tensor "${key}" missing`);
  return t.data as Float32Array;
}

/** Step `i` of a [steps, ...] tensor. */
function row(a: Float32Array, steps: number, i: number): Float32Array {
  const n = a.length / steps;
  return a.subarray(i * n, (i + 1) * n);
}

function closeRel(got: number, want: number, rel: number, what: string): void {
  assert.ok(Math.abs(got - want) <= rel * Math.max(1, Math.abs(want)), `${what}: ${got} vs ${want}`);
}

test("sampler golden vectors: timesteps exact, every step within tolerance", async (t) => {
  const dirs = await listCases(ROOT);
  assert.ok(dirs.length >= 18, `expected the committed sampler cases under ${ROOT}, found ${dirs.length}`);
  let worst = 0;
  for (const dir of dirs) {
    const c = await loadCase(dir);
    if ("noise_level" in c.meta) {
      const meta = c.meta as unknown as LowResCase;
      await t.test(c.name, () => {
        const want = floats(c.outputs, "noisy");
        const got = augmentLowRes(floats(c.inputs, "image"), floats(c.inputs, "noise"), meta.noise_level);
        assert.ok(maxAbsDiff(got, want) <= meta.tolerance.relative * Math.max(1, maxAbs(want)));
      });
      continue;
    }
    const meta = c.meta as unknown as StepCase;
    await t.test(`${c.name} (${meta.reference})`, (st) => {
      let caseWorst = 0;
      const plan = planSampler(stageSamplerConfig(meta.stage, meta.overrides));
      assert.deepEqual(plan.timesteps, meta.timesteps);
      closeRel(plan.initNoiseSigma, meta.init_noise_sigma, 1e-6, "initNoiseSigma");
      const S = meta.timesteps.length;
      const [sample, model, noise] = ["sample", "model_output", "noise"].map((k) => floats(c.inputs, k));
      const [prev, x0] = ["prev_sample", "pred_original_sample"].map((k) => floats(c.outputs, k));
      const tol = meta.tolerance.relative;
      for (const step of plan.steps) {
        const i = step.index;
        assert.equal(step.needsNoise, meta.noise_used[i], `step ${i}: needsNoise`);
        closeRel(step.inputScale, meta.input_scales[i]!, 1e-6, `step ${i}: inputScale`);
        const s = row(sample!, S, i);
        const m = row(model!, S, i);
        const got = applyStep(step.coef, s, m, step.needsNoise ? row(noise!, S, i) : undefined);
        const gotX0 = predictOriginal(step.coef, s, m);
        for (const [name, g, w] of [
          ["prev_sample", got, row(prev!, S, i)],
          ["pred_original_sample", gotX0, row(x0!, S, i)],
        ] as const) {
          const rel = maxAbsDiff(g, w) / Math.max(1, maxAbs(w));
          caseWorst = Math.max(caseWorst, rel);
          assert.ok(rel <= tol, `step ${i} (t=${step.timestep}) ${name}: relative diff ${rel} > ${tol}`);
        }
      }
      worst = Math.max(worst, caseWorst);
      st.diagnostic(`largest relative difference ${caseWorst.toExponential(2)}`);
    });
  }
  t.diagnostic(`largest relative step difference: ${worst.toExponential(2)}`);
});
