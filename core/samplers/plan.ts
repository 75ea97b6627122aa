/**
 * planSampler: the per-step scalar coefficients of DDPM, DDIM and Euler discrete, following the step()
 * functions of diffusers 0.16 (DDPMScheduler with variance_type "fixed_small", DDIMScheduler,
 * EulerDiscreteScheduler with s_churn = 0), and of LaVie's respaced DDIM (interpolation stage).
 * The data-dependent part is applyStep in apply.ts. Checked against test/golden/samplers (golden.spec.ts).
 */
import { resolveSamplerConfig } from "./config.ts";
import { alphasCumprod, respacedAlphasCumprod, sigmaAt, spacedTimesteps } from "./schedule.ts";
import type {
  SamplerConfig,
  SamplerConfigInput,
  SamplerPlan,
  SamplerStep,
  StepCoefficients,
} from "./types.ts";

/** x0 from (sample, modelOutput) at alpha-bar `ab`: epsilon or v-prediction. */
function x0Coefs(c: SamplerConfig, ab: number): { x0Sample: number; x0Model: number; clip: number | null } {
  const sa = Math.sqrt(ab);
  const sb = Math.sqrt(1 - ab);
  const clip = c.clipSample ? c.clipSampleRange : null;
  return c.predictionType === "epsilon"
    ? { x0Sample: 1 / sa, x0Model: -sb / sa, clip }
    : { x0Sample: sa, x0Model: -sb, clip };
}

function ddpmStep(c: SamplerConfig, ac: Float64Array, t: number): StepCoefficients {
  const prevT = t - Math.floor(c.numTrainTimesteps / c.numInferenceSteps);
  const ab = ac[t]!;
  const abPrev = prevT >= 0 ? ac[prevT]! : 1;
  const betaProd = 1 - ab;
  const betaProdPrev = 1 - abPrev;
  const curAlpha = ab / abPrev;
  const curBeta = 1 - curAlpha;
  // fixed_small: posterior variance, clamped at 1e-20; noise is added whenever t > 0.
  const variance = Math.max((betaProdPrev / betaProd) * curBeta, 1e-20);
  return {
    ...x0Coefs(c, ab),
    prevX0: (Math.sqrt(abPrev) * curBeta) / betaProd,
    prevSample: (Math.sqrt(curAlpha) * betaProdPrev) / betaProd,
    prevModel: 0,
    noiseScale: t > 0 ? Math.sqrt(variance) : 0,
  };
}

function ddimStep(c: SamplerConfig, ac: Float64Array, t: number): StepCoefficients {
  const prevT = t - Math.floor(c.numTrainTimesteps / c.numInferenceSteps);
  const ab = ac[t]!;
  const abPrev = prevT >= 0 ? ac[prevT]! : c.setAlphaToOne ? 1 : ac[0]!;
  const variance = ((1 - abPrev) / (1 - ab)) * (1 - ab / abPrev);
  const std = c.eta * Math.sqrt(variance);
  // predicted epsilon (from the unclipped model output, use_clipped_model_output = false)
  const epsSample = c.predictionType === "epsilon" ? 0 : Math.sqrt(1 - ab);
  const epsModel = c.predictionType === "epsilon" ? 1 : Math.sqrt(ab);
  const dir = Math.sqrt(Math.max(0, 1 - abPrev - std * std));
  return {
    ...x0Coefs(c, ab),
    prevX0: Math.sqrt(abPrev),
    prevSample: dir * epsSample,
    prevModel: dir * epsModel,
    noiseScale: c.eta > 0 ? std : 0,
  };
}

/**
 * LaVie's respaced DDIM step between chain alpha-bars ab -> abPrev (1 after the last kept step). As in
 * the reference, the direction term uses epsilon re-derived from the (possibly clipped) x0, so
 *   prev = sqrt(abPrev) x0 + dir (sample - sqrt(ab) x0) / sqrt(1 - ab) + sigma noise,
 *   sigma = eta sqrt((1 - abPrev) / (1 - ab)) sqrt(1 - ab / abPrev),  dir = sqrt(1 - abPrev - sigma^2);
 * without clipping this equals sqrt(abPrev) x0 + dir eps.
 */
function respacedDdimStep(c: SamplerConfig, ab: number, abPrev: number): StepCoefficients {
  const sigma = c.eta * Math.sqrt((1 - abPrev) / (1 - ab)) * Math.sqrt(1 - ab / abPrev);
  const dir = Math.sqrt(Math.max(0, 1 - abPrev - sigma * sigma));
  const sb = Math.sqrt(1 - ab);
  return {
    ...x0Coefs(c, ab),
    prevX0: Math.sqrt(abPrev) - (dir * Math.sqrt(ab)) / sb,
    prevSample: dir / sb,
    prevModel: 0,
    noiseScale: sigma,
  };
}

/** Euler in sigma space: x0 = sample - sigma*eps (or the v form); prev = sample + (sample - x0)/sigma * dt. */
function eulerStep(c: SamplerConfig, sigma: number, sigmaNext: number): StepCoefficients {
  const s2 = sigma * sigma + 1;
  const x0 =
    c.predictionType === "epsilon"
      ? { x0Sample: 1, x0Model: -sigma, clip: null }
      : { x0Sample: 1 / s2, x0Model: -sigma / Math.sqrt(s2), clip: null };
  const r = sigmaNext / sigma;
  return { ...x0, prevX0: 1 - r, prevSample: r, prevModel: 0, noiseScale: 0 };
}

/** Resolves (validating) the config and computes every step's timestep and coefficients. */
export function planSampler(input: SamplerConfigInput): SamplerPlan {
  const config = resolveSamplerConfig(input);
  const ac = alphasCumprod(config);
  const isEuler = config.sampler === "euler";
  const timesteps = spacedTimesteps(
    config.numTrainTimesteps,
    config.numInferenceSteps,
    config.timestepSpacing,
    config.sampler === "ddim" ? config.stepsOffset : 0,
    !isEuler,
  );
  const steps: SamplerStep[] = [];
  let initNoiseSigma = 1;
  if (isEuler) {
    const sigmas = timesteps.map((t) => sigmaAt(ac, t));
    const maxSigma = Math.max(...sigmas);
    // diffusers: max sigma, or sqrt(max^2 + 1) for "leading" spacing (added after 0.16).
    initNoiseSigma = config.timestepSpacing === "leading" ? Math.sqrt(maxSigma * maxSigma + 1) : maxSigma;
    sigmas.forEach((sigma, i) => {
      const coef = eulerStep(config, sigma, sigmas[i + 1] ?? 0);
      steps.push({
        index: i,
        timestep: timesteps[i]!,
        inputScale: 1 / Math.sqrt(sigma * sigma + 1),
        coef,
        needsNoise: false,
      });
    });
  } else if (config.sampler === "respaced_ddim") {
    // timesteps are the kept ones, descending; the chain index of step i is n - 1 - i.
    const chain = respacedAlphasCumprod(ac, [...timesteps].reverse());
    const n = timesteps.length;
    timesteps.forEach((t, i) => {
      const k = n - 1 - i;
      const coef = respacedDdimStep(config, chain[k]!, k > 0 ? chain[k - 1]! : 1);
      steps.push({ index: i, timestep: t, inputScale: 1, coef, needsNoise: coef.noiseScale !== 0 });
    });
  } else {
    timesteps.forEach((t, i) => {
      const coef = config.sampler === "ddpm" ? ddpmStep(config, ac, t) : ddimStep(config, ac, t);
      steps.push({ index: i, timestep: t, inputScale: 1, coef, needsNoise: coef.noiseScale !== 0 });
    });
  }
  return { config, timesteps, steps, initNoiseSigma };
}
