/** Classifier-free guidance: eps = u + g * (c - u), elementwise. */
import { invalidArgument } from "../errors.ts";
import { finiteInRange } from "./config.ts";

export function validateGuidanceScale(g: unknown): number {
  return finiteInRange("guidanceScale", g, 0, 100);
}

/** Combines separate unconditional and conditional model outputs. */
export function cfgCombine(
  uncond: Float32Array,
  cond: Float32Array,
  guidanceScale: number,
  out?: Float32Array,
): Float32Array {
  const g = validateGuidanceScale(guidanceScale);
  const n = uncond.length;
  if (cond.length !== n)
    throw invalidArgument("cond", `must have ${n} elements like uncond; got ${cond.length}`);
  if (out !== undefined && out.length !== n)
    throw invalidArgument("out", `must have ${n} elements; got ${out.length}`);
  const dst = out ?? new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = uncond[i]!;
    dst[i] = u + g * (cond[i]! - u);
  }
  return dst;
}

/** Combines a batched [uncond, cond] model output (first half unconditional, second half conditional). */
export function cfgCombineBatched(
  batched: Float32Array,
  guidanceScale: number,
  out?: Float32Array,
): Float32Array {
  if (batched.length % 2 !== 0) {
    throw invalidArgument(
      "modelOutput",
      `a batched [uncond, cond] output needs an even length; got ${batched.length}`,
    );
  }
  const half = batched.length / 2;
  return cfgCombine(batched.subarray(0, half), batched.subarray(half), guidanceScale, out);
}
