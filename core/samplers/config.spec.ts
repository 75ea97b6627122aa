import assert from "node:assert/strict";
import { test } from "node:test";
import { LavieError } from "../errors.ts";
import { resolveSamplerConfig } from "./config.ts";
import { planSampler } from "./plan.ts";
import type { SamplerConfigInput } from "./types.ts";

function rejects(input: SamplerConfigInput, field: string, mentions: string): void {
  assert.throws(
    () => resolveSamplerConfig(input),
    (e: unknown) =>
      e instanceof LavieError &&
      e.code === "invalid_argument" &&
      e.field === field &&
      e.message.includes(mentions),
    `${JSON.stringify(input)} should reject ${field}`,
  );
}

test("defaults follow diffusers (clipSample off); Euler defaults to linspace", () => {
  const d = resolveSamplerConfig({ sampler: "ddim" });
  assert.deepEqual(d, {
    sampler: "ddim",
    numTrainTimesteps: 1000,
    betaSchedule: "linear",
    betaStart: 1e-4,
    betaEnd: 0.02,
    numInferenceSteps: 50,
    predictionType: "epsilon",
    timestepSpacing: "leading",
    stepsOffset: 0,
    clipSample: false,
    clipSampleRange: 1,
    setAlphaToOne: true,
    eta: 0,
  });
  assert.equal(resolveSamplerConfig({ sampler: "euler" }).timestepSpacing, "linspace");
  assert.equal(planSampler({ sampler: "ddpm", numInferenceSteps: 1000 }).steps.length, 1000);
  const r = resolveSamplerConfig({ sampler: "respaced_ddim", eta: 0.3 });
  assert.deepEqual([r.timestepSpacing, r.eta], ["respaced", 0.3]);
  // resolving a resolved config is the identity (manifests store resolved configs)
  assert.deepEqual(resolveSamplerConfig(r), r);
  // offsets only matter to DDIM: DDPM ignores it, so 1000 DDPM steps with offset 1 are fine
  assert.equal(planSampler({ sampler: "ddpm", numInferenceSteps: 1000, stepsOffset: 1 }).timesteps[0], 999);
});

test("invalid configs throw invalidArgument naming the field and what is allowed", () => {
  rejects({}, "sampler", '"ddpm", "ddim", "euler"');
  rejects({ sampler: "pndm" }, "sampler", '"ddpm", "ddim", "euler"');
  rejects({ sampler: "ddim", numInferenceSteps: 0 }, "numInferenceSteps", "1..1000");
  rejects({ sampler: "ddim", numInferenceSteps: 1001 }, "numInferenceSteps", "1..1000");
  rejects({ sampler: "ddim", numInferenceSteps: 2.5 }, "numInferenceSteps", "integer");
  rejects({ sampler: "ddim", eta: -0.1 }, "eta", "[0, 1]");
  rejects({ sampler: "ddim", eta: 1.5 }, "eta", "[0, 1]");
  rejects({ sampler: "ddpm", eta: 0.5 }, "eta", "ddim");
  rejects({ sampler: "respaced_ddim", timestepSpacing: "leading" }, "timestepSpacing", '"respaced"');
  rejects({ sampler: "ddim", timestepSpacing: "respaced" }, "timestepSpacing", '"respaced_ddim"');
  rejects({ sampler: "ddim", betaSchedule: "cosine" }, "betaSchedule", '"linear", "scaled_linear"');
  rejects({ sampler: "ddim", predictionType: "sample" }, "predictionType", '"epsilon", "v_prediction"');
  rejects({ sampler: "ddim", timestepSpacing: "karras" }, "timestepSpacing", '"leading"');
  rejects({ sampler: "ddim", betaStart: 0.03 }, "betaEnd", "betaStart");
  rejects({ sampler: "ddim", betaStart: 0 }, "betaStart", "(0, 0.999]");
  rejects({ sampler: "ddim", numInferenceSteps: 1000, stepsOffset: 1 }, "stepsOffset", "at most 999");
  rejects({ sampler: "euler", clipSample: true }, "clipSample", "ddim");
  rejects({ sampler: "ddim", setAlphaToOne: "yes" }, "setAlphaToOne", "true or false");
  assert.throws(() => planSampler({ sampler: "ddim", eta: -1 }), { name: "LavieError", field: "eta" });
});
