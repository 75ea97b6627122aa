/**
 * The elementwise half of a sampler step. Each output element depends only on the same element of the
 * inputs and on per-step scalars, so any chunk/patch of a tensor can be stepped independently and gives
 * bit-identical results to stepping the whole tensor. `out` may alias `sample` (in-place update).
 */
import { invalidArgument } from "../errors.ts";
import type { SamplerStep, StepCoefficients } from "./types.ts";

function checkLen(field: string, a: Float32Array, n: number): void {
  if (a.length !== n)
    throw invalidArgument(field, `must have ${n} elements (the sample's length); got ${a.length}`);
}

function output(out: Float32Array | undefined, n: number): Float32Array {
  if (out === undefined) return new Float32Array(n);
  checkLen("out", out, n);
  return out;
}

/** One sampler step: returns prev_sample. `noise` is required when coef.noiseScale !== 0. */
export function applyStep(
  coef: StepCoefficients,
  sample: Float32Array,
  modelOutput: Float32Array,
  noise?: Float32Array,
  out?: Float32Array,
): Float32Array {
  const n = sample.length;
  checkLen("modelOutput", modelOutput, n);
  const { x0Sample, x0Model, clip, prevX0, prevSample, prevModel, noiseScale } = coef;
  if (noiseScale !== 0) {
    if (noise === undefined) throw invalidArgument("noise", "this step is stochastic: pass the step's noise");
    checkLen("noise", noise, n);
  }
  const dst = output(out, n);
  const lo = clip === null ? -Infinity : -clip;
  const hi = clip === null ? Infinity : clip;
  for (let i = 0; i < n; i++) {
    const s = sample[i]!;
    const m = modelOutput[i]!;
    let x0 = x0Sample * s + x0Model * m;
    if (x0 < lo) x0 = lo;
    else if (x0 > hi) x0 = hi;
    let v = prevX0 * x0 + prevSample * s + prevModel * m;
    if (noiseScale !== 0) v += noiseScale * noise![i]!;
    dst[i] = v;
  }
  return dst;
}

/** The step's predicted x0 (after clipping, if configured): e.g. for previews. */
export function predictOriginal(
  coef: StepCoefficients,
  sample: Float32Array,
  modelOutput: Float32Array,
  out?: Float32Array,
): Float32Array {
  const n = sample.length;
  checkLen("modelOutput", modelOutput, n);
  const dst = output(out, n);
  const lo = coef.clip === null ? -Infinity : -coef.clip;
  const hi = coef.clip === null ? Infinity : coef.clip;
  for (let i = 0; i < n; i++) {
    const x0 = coef.x0Sample * sample[i]! + coef.x0Model * modelOutput[i]!;
    dst[i] = Math.min(hi, Math.max(lo, x0));
  }
  return dst;
}

/** out = x * s (elementwise). */
export function scale(x: Float32Array, s: number, out?: Float32Array): Float32Array {
  const dst = output(out, x.length);
  for (let i = 0; i < x.length; i++) dst[i] = x[i]! * s;
  return dst;
}

/** scheduler.scale_model_input: the UNet input for this step. */
export function scaleModelInput(step: SamplerStep, sample: Float32Array, out?: Float32Array): Float32Array {
  return scale(sample, step.inputScale, out);
}
