/** Types shared by the sampler module. Everything here is plain data: no I/O, no randomness. */

/**
 * ddpm, ddim, euler: diffusers 0.16.0 DDPMScheduler (fixed_small), DDIMScheduler, EulerDiscreteScheduler.
 * respaced_ddim: LaVie's interpolation sampler (guided-diffusion style): DDIM over a thinned chain of
 * kept timesteps whose alpha-bars are recomputed from the kept ones, ending at alpha-bar 1.
 */
export type SamplerName = "ddpm" | "ddim" | "euler" | "respaced_ddim";
export type BetaSchedule = "linear" | "scaled_linear";
export type PredictionType = "epsilon" | "v_prediction";
export type TimestepSpacing = "leading" | "trailing" | "linspace" | "respaced";

export const SAMPLER_NAMES: readonly SamplerName[] = ["ddpm", "ddim", "euler", "respaced_ddim"];
export const BETA_SCHEDULES: readonly BetaSchedule[] = ["linear", "scaled_linear"];
export const PREDICTION_TYPES: readonly PredictionType[] = ["epsilon", "v_prediction"];
export const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ["leading", "trailing", "linspace", "respaced"];

/** The training-time noise schedule (diffusers: num_train_timesteps, beta_schedule, beta_start, beta_end). */
export interface NoiseSchedule {
  readonly numTrainTimesteps: number;
  readonly betaSchedule: BetaSchedule;
  readonly betaStart: number;
  readonly betaEnd: number;
}

/** A fully resolved and validated sampler configuration. */
export interface SamplerConfig extends NoiseSchedule {
  readonly sampler: SamplerName;
  readonly numInferenceSteps: number;
  readonly predictionType: PredictionType;
  /** "respaced" is the spacing of (and only of) respaced_ddim; the diffusers samplers take the others. */
  readonly timestepSpacing: TimestepSpacing;
  /**
   * DDIM only: added to "leading" timesteps (diffusers 0.16 DDIMScheduler). Carried but unused by ddpm
   * (diffusers 0.16 DDPMScheduler has no steps_offset: 50 steps are 980..0), euler and respaced_ddim.
   */
  readonly stepsOffset: number;
  /** DDPM/DDIM/respaced_ddim: clamp the predicted x0 to [-clipSampleRange, clipSampleRange]. */
  readonly clipSample: boolean;
  readonly clipSampleRange: number;
  /**
   * DDIM only: alpha-bar used after the last step (true: 1, false: alphasCumprod[0]). respaced_ddim
   * always ends at alpha-bar 1 and ignores it.
   */
  readonly setAlphaToOne: boolean;
  /** DDIM/respaced_ddim only: 0 = deterministic DDIM, 1 = DDPM-like variance. Allowed range [0, 1]. */
  readonly eta: number;
}

/** Unvalidated input (e.g. from a request): any field may be missing or of the wrong kind. */
export type SamplerConfigInput = { readonly [K in keyof SamplerConfig]?: unknown };

/**
 * The per-step scalars of one sampler step. Every sampler step in this module has this form:
 *
 *   x0   = x0Sample * sample + x0Model * modelOutput          (then clamped to [-clip, clip] if clip !== null)
 *   prev = prevX0 * x0 + prevSample * sample + prevModel * modelOutput + noiseScale * noise
 *
 * Because the scalars do not depend on the data, a step is elementwise: running it on any sub-box of
 * a tensor gives exactly the values of running it on the whole tensor.
 */
export interface StepCoefficients {
  readonly x0Sample: number;
  readonly x0Model: number;
  readonly clip: number | null;
  readonly prevX0: number;
  readonly prevSample: number;
  readonly prevModel: number;
  /** 0 when the step is deterministic; then no noise is needed. */
  readonly noiseScale: number;
}

export interface SamplerStep {
  readonly index: number;
  /**
   * The timestep fed to the UNet: an integer for DDPM/DDIM, possibly fractional for Euler; for
   * respaced_ddim the ORIGINAL 0..N-1 timestep of the kept step (not its index in the thinned chain).
   */
  readonly timestep: number;
  /** scale_model_input: the UNet gets sample * inputScale (1 for DDPM/DDIM, 1/sqrt(sigma^2+1) for Euler). */
  readonly inputScale: number;
  readonly coef: StepCoefficients;
  /** True when coef.noiseScale !== 0: the caller must pass this step's noise to applyStep. */
  readonly needsNoise: boolean;
}

export interface SamplerPlan {
  readonly config: SamplerConfig;
  readonly timesteps: readonly number[];
  readonly steps: readonly SamplerStep[];
  /** The initial latent is noise * initNoiseSigma (1 for DDPM/DDIM). */
  readonly initNoiseSigma: number;
}
