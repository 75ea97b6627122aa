import assert from "node:assert/strict";
import { test } from "node:test";
import {
  alphasCumprod,
  betas,
  respacedAlphasCumprod,
  respacedTimesteps,
  roundHalfEven,
  sigmaAt,
  spacedTimesteps,
} from "./schedule.ts";
import type { NoiseSchedule } from "./types.ts";

const LINEAR: NoiseSchedule = {
  numTrainTimesteps: 1000,
  betaSchedule: "linear",
  betaStart: 1e-4,
  betaEnd: 0.02,
};
const SCALED: NoiseSchedule = { ...LINEAR, betaSchedule: "scaled_linear" };
const close = (a: number, b: number, tol: number, msg?: string) =>
  assert.ok(Math.abs(a - b) <= tol, `${msg ?? ""} ${a} vs ${b} (tol ${tol})`);

test("linear betas and alpha-bar", () => {
  const b = betas(LINEAR);
  close(b[0]!, 1e-4, 1e-18);
  close(b[999]!, 0.02, 1e-17);
  const ac = alphasCumprod(LINEAR);
  close(ac[0]!, 0.9999, 1e-15);
  const beta1 = 1e-4 + (0.02 - 1e-4) / 999;
  close(ac[1]!, 0.9999 * (1 - beta1), 1e-15);
  // independent: exp(sum log(1 - beta_i)) for t = 500 and t = 999
  for (const t of [500, 999]) {
    let logSum = 0;
    for (let i = 0; i <= t; i++) logSum += Math.log1p(-(1e-4 + (i * 0.0199) / 999));
    close(ac[t]!, Math.exp(logSum), 1e-12 * Math.exp(logSum) + 1e-15, `ab[${t}]`);
  }
  // published anchor for the DDPM linear schedule: alpha-bar_T ~ 4.04e-5
  close(ac[999]!, 4.04e-5, 0.01e-5);
});

test("scaled_linear betas are linear in sqrt space", () => {
  const b = betas(SCALED);
  close(b[0]!, 1e-4, 1e-18);
  close(b[999]!, 0.02, 1e-16);
  const s = Math.sqrt(1e-4) + (500 / 999) * (Math.sqrt(0.02) - Math.sqrt(1e-4));
  close(b[500]!, s * s, 1e-17);
  close(alphasCumprod(SCALED)[0]!, 0.9999, 1e-15);
});

test("leading spacing with offset 1: 981, 961, ..., 1", () => {
  const ts = spacedTimesteps(1000, 50, "leading", 1, true);
  assert.equal(ts.length, 50);
  assert.deepEqual(
    ts,
    Array.from({ length: 50 }, (_, i) => 981 - 20 * i),
  );
  assert.deepEqual(spacedTimesteps(1000, 50, "leading", 0, true).slice(0, 2), [980, 960]);
  assert.deepEqual(spacedTimesteps(1000, 3, "leading", 0, true), [666, 333, 0]);
});

test("trailing spacing (numpy round half to even)", () => {
  assert.deepEqual(spacedTimesteps(1000, 50, "trailing", 1, true).slice(0, 3), [999, 979, 959]);
  assert.equal(spacedTimesteps(1000, 50, "trailing", 0, true).at(-1), 19);
  // ratio 62.5: 1000, 937.5 -> 938, 875, 812.5 -> 812, then - 1
  assert.deepEqual(spacedTimesteps(1000, 16, "trailing", 0, true).slice(0, 4), [999, 937, 874, 811]);
  assert.equal(roundHalfEven(2.5), 2);
  assert.equal(roundHalfEven(3.5), 4);
  assert.equal(roundHalfEven(-0.4), -0);
});

test("linspace spacing: fractional for Euler, rounded otherwise", () => {
  const ts = spacedTimesteps(1000, 50, "linspace", 1, false);
  assert.equal(ts[0], 999);
  close(ts[1]!, 999 - 999 / 49, 1e-12);
  assert.equal(ts[49], 0);
  assert.deepEqual(spacedTimesteps(1000, 4, "linspace", 0, true), [999, 666, 333, 0]);
  assert.deepEqual(spacedTimesteps(1000, 1, "linspace", 0, false), [0]);
});

test("sigmaAt interpolates sigma linearly between integer timesteps", () => {
  const ac = alphasCumprod(LINEAR);
  const sig = (t: number) => Math.sqrt((1 - ac[t]!) / ac[t]!);
  close(sigmaAt(ac, 10), sig(10), 0);
  close(sigmaAt(ac, 10.25), 0.75 * sig(10) + 0.25 * sig(11), 1e-15);
  close(sigmaAt(ac, 999), sig(999), 0);
});

test("respaced timesteps (LaVie interpolation): accumulated stride, half to even", () => {
  const ts50 = respacedTimesteps(1000, 50);
  assert.deepEqual(ts50.slice(0, 6), [0, 20, 41, 61, 82, 102]);
  assert.deepEqual(ts50.slice(-3), [958, 979, 999]);
  // stride 41.625: 166.5 -> 166 and 499.5 -> 500 (exact halves, half to even)
  const ts25 = respacedTimesteps(1000, 25);
  assert.deepEqual([ts25[4], ts25[12], ts25.at(-1)], [166, 500, 999]);
  // stride 49.95: ten additions give 499.49999..., not 10 * 49.95 = 499.5 (which would round to 500)
  assert.equal(respacedTimesteps(1000, 21)[10], 499);
  assert.deepEqual(respacedTimesteps(1000, 4), [0, 333, 666, 999]);
  assert.deepEqual(respacedTimesteps(1000, 1), [0]);
  assert.deepEqual(spacedTimesteps(1000, 4, "respaced", 1, true), [999, 666, 333, 0]);
});

test("respaced alpha-bars are the kept alpha-bars, recomputed through the thinned chain", () => {
  const ac = alphasCumprod(LINEAR);
  const kept = respacedTimesteps(1000, 50);
  const chain = respacedAlphasCumprod(ac, kept);
  for (const [k, t] of kept.entries()) close(chain[k]!, ac[t]!, 1e-14 * ac[t]!, `chain[${k}]`);
  const all = respacedAlphasCumprod(
    ac,
    Array.from({ length: 1000 }, (_, i) => i),
  );
  close(all[999]!, ac[999]!, 1e-12 * ac[999]!);
});
