import assert from "node:assert/strict";
import { test } from "node:test";
import { planSampler } from "./plan.ts";
import { STAGE_PRESETS, stagePreset, stageSamplerConfig } from "./presets.ts";

test("base: DDPM linear 1e-4..0.02, epsilon, 50 steps 980..0 (no steps_offset in diffusers 0.16 DDPM)", () => {
  const c = stageSamplerConfig("base");
  assert.equal(c.sampler, "ddpm");
  assert.deepEqual(
    [c.betaSchedule, c.betaStart, c.betaEnd, c.predictionType],
    ["linear", 1e-4, 0.02, "epsilon"],
  );
  assert.deepEqual([c.numInferenceSteps, c.stepsOffset, c.clipSample], [50, 1, false]);
  const ts = planSampler(c).timesteps;
  assert.deepEqual([ts[0], ts[1], ts.at(-1)], [980, 960, 0]);
  // switching the base stage to DDIM applies SD1.4's steps_offset 1
  const d = planSampler(stageSamplerConfig("base", { sampler: "ddim" })).timesteps;
  assert.deepEqual([d[0], d[1], d.at(-1)], [981, 961, 1]);
  assert.equal(STAGE_PRESETS.base.guidanceScale, 7.5);
  assert.equal(STAGE_PRESETS.base.negativePrompt, "");
});

test("interpolation: LaVie's respaced DDIM eta 0, guidance 4, negative prompt 'None', suffix ', 4k.'", () => {
  const p = stagePreset("interpolation");
  const c = stageSamplerConfig("interpolation");
  assert.deepEqual(
    [c.sampler, c.timestepSpacing, c.eta, c.betaSchedule, c.numInferenceSteps, c.clipSample],
    ["respaced_ddim", "respaced", 0, "linear", 50, false],
  );
  const ts = planSampler(c).timesteps;
  assert.deepEqual([ts[0], ts[1], ts[2], ts.at(-2), ts.at(-1)], [999, 979, 958, 20, 0]);
  // overriding the sampler falls back to that sampler's own spacing
  assert.equal(stageSamplerConfig("interpolation", { sampler: "ddim" }).timestepSpacing, "leading");
  assert.deepEqual([p.guidanceScale, p.negativePrompt, p.promptSuffix], [4, "None", ", 4k."]);
});

test("vsr: DDIM v-prediction, guidance 5, 'blur, worst quality', noise level 50 scaled_linear", () => {
  const p = stagePreset("vsr");
  const c = stageSamplerConfig("vsr");
  assert.deepEqual(
    [c.sampler, c.predictionType, c.betaSchedule, c.betaStart, c.betaEnd],
    ["ddim", "v_prediction", "linear", 1e-4, 0.02],
  );
  assert.deepEqual([p.guidanceScale, p.negativePrompt, c.numInferenceSteps], [5, "blur, worst quality", 50]);
  assert.equal(p.lowResNoise?.noiseLevel, 50);
  assert.equal(p.lowResNoise?.schedule.betaSchedule, "scaled_linear");
});

test("overrides: base with Euler uses linspace (diffusers 0.16); errors name the field", () => {
  const e = stageSamplerConfig("base", { sampler: "euler", numInferenceSteps: 25, eta: undefined });
  assert.deepEqual([e.sampler, e.timestepSpacing, e.numInferenceSteps], ["euler", "linspace", 25]);
  assert.throws(() => stagePreset("upscale"), { name: "LavieError", field: "stage" });
  assert.throws(() => stageSamplerConfig("base", { numInferenceSteps: 0 }), { field: "numInferenceSteps" });
});
