/**
 * Beta schedules, alpha-bar, timestep spacing and sigma interpolation, following diffusers but in float64
 * (diffusers computes the tables in float32; differences are at float32 rounding level).
 */
import type { NoiseSchedule, TimestepSpacing } from "./types.ts";

/** betas[i], i = 0..N-1. linear: betaStart..betaEnd; scaled_linear: linear in sqrt space, then squared. */
export function betas(s: NoiseSchedule): Float64Array {
  const n = s.numTrainTimesteps;
  const out = new Float64Array(n);
  const sq = s.betaSchedule === "scaled_linear";
  const a = sq ? Math.sqrt(s.betaStart) : s.betaStart;
  const b = sq ? Math.sqrt(s.betaEnd) : s.betaEnd;
  for (let i = 0; i < n; i++) {
    const v = n === 1 ? a : a + ((b - a) * i) / (n - 1);
    out[i] = sq ? v * v : v;
  }
  return out;
}

/** alphasCumprod[t] = prod_{i<=t} (1 - betas[i]), in float64. */
export function alphasCumprod(s: NoiseSchedule): Float64Array {
  const b = betas(s);
  const out = new Float64Array(b.length);
  let acc = 1;
  for (let i = 0; i < b.length; i++) {
    acc *= 1 - b[i]!;
    out[i] = acc;
  }
  return out;
}

/** numpy's round (half to even). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Descending timesteps, as diffusers computes them for `spacing` (N = numTrainTimesteps, n = steps):
 * - "leading":  (arange(n) * (N // n)) reversed, + stepsOffset                  (DDPM/DDIM default)
 * - "trailing": round(arange(N, 0, -N / n)) - 1                                  (offset not applied)
 * - "linspace": linspace(0, N - 1, n) reversed; rounded when `integer`, else kept fractional
 *               (diffusers 0.16 EulerDiscreteScheduler keeps fractional timesteps)  (offset not applied)
 * - "respaced": respacedTimesteps(N, n) reversed (LaVie's interpolation sampler)   (offset not applied)
 */
export function spacedTimesteps(
  numTrainTimesteps: number,
  numInferenceSteps: number,
  spacing: TimestepSpacing,
  stepsOffset: number,
  integer: boolean,
): number[] {
  const N = numTrainTimesteps;
  const n = numInferenceSteps;
  const out: number[] = [];
  if (spacing === "respaced") return respacedTimesteps(N, n).reverse();
  if (spacing === "leading") {
    const ratio = Math.floor(N / n);
    for (let i = n - 1; i >= 0; i--) out.push(i * ratio + stepsOffset);
  } else if (spacing === "trailing") {
    const ratio = N / n;
    for (let k = 0; k < n; k++) out.push(roundHalfEven(N - k * ratio) - 1);
  } else {
    const step = n === 1 ? 0 : (N - 1) / (n - 1);
    for (let i = n - 1; i >= 0; i--) {
      const t = i === n - 1 && n > 1 ? N - 1 : i * step;
      out.push(integer ? roundHalfEven(t) : t);
    }
  }
  return out;
}

/**
 * Ascending timesteps kept when thinning an N-step chain to n steps (guided-diffusion's single-section
 * respacing, which LaVie's interpolation stage uses): the i-th is round-half-even of a position that
 * grows by (N - 1) / (n - 1) per step by repeated float addition (not i * stride: the two differ at
 * exact halves, e.g. for n = 21). N = 1000, n = 50: 0, 20, 41, 61, 82, ..., 979, 999.
 */
export function respacedTimesteps(numTrainTimesteps: number, numInferenceSteps: number): number[] {
  const n = numInferenceSteps;
  const stride = n <= 1 ? 1 : (numTrainTimesteps - 1) / (n - 1);
  const out: number[] = [];
  let position = 0;
  for (let i = 0; i < n; i++) {
    out.push(roundHalfEven(position));
    position += stride;
  }
  return out;
}

/**
 * Alpha-bars of the thinned chain over `kept` (ascending): its betas are 1 - ab[k] / ab[previous kept]
 * (previous = 1 before the first), and its alpha-bars the running product of (1 - beta), in the same
 * float64 operations as the reference, so the chain equals ab[kept] only up to rounding.
 */
export function respacedAlphasCumprod(ac: Float64Array, kept: readonly number[]): Float64Array {
  const out = new Float64Array(kept.length);
  let previous = 1;
  let acc = 1;
  kept.forEach((t, k) => {
    const beta = 1 - ac[t]! / previous;
    previous = ac[t]!;
    acc *= 1 - beta;
    out[k] = acc;
  });
  return out;
}

/** sigma(t) = sqrt((1 - ab[t]) / ab[t]), linearly interpolated at fractional t (numpy interp). */
export function sigmaAt(ac: Float64Array, t: number): number {
  const sig = (i: number): number => {
    const a = ac[i]!;
    return Math.sqrt((1 - a) / a);
  };
  const lo = Math.floor(t);
  const f = t - lo;
  if (f === 0 || lo + 1 >= ac.length) return sig(Math.min(lo, ac.length - 1));
  return (1 - f) * sig(lo) + f * sig(lo + 1);
}
