import assert from "node:assert/strict";
import { test } from "node:test";
import { LavieError } from "./errors.ts";
import { type ModelLimits, resolveJob } from "./job.ts";
import { checkJobSeed, jobSeedProblem, MAX_JOB_SEED } from "./seed.ts";

const limits: ModelLimits = {
  preset: "tiny",
  base: { frames: 4, height: 32, width: 32 },
  divisor: { base: 4, interpolation: 4, vsr: 4 },
  vaeFactor: 8,
  vsrScale: 4,
  defaultSteps: { base: 2, interpolation: 2, vsr: 2 },
  maxTokens: 77,
};

test("a job seed is an integer in 0..2^53 - 1, as a number or a bigint", () => {
  assert.equal(MAX_JOB_SEED, 2 ** 53 - 1);
  for (const ok of [0, 1, 4294967296, MAX_JOB_SEED]) assert.equal(checkJobSeed(ok), ok);
  assert.equal(checkJobSeed(BigInt(MAX_JOB_SEED)), MAX_JOB_SEED);
  assert.equal(checkJobSeed(7n), 7);
  const cases: [unknown, string][] = [
    [-1, "-1"],
    [2 ** 53, "9007199254740992"],
    [2n ** 64n - 1n, "18446744073709551615"],
    [-1n, "-1"],
    [1.5, "1.5"],
    [Number.NaN, "NaN"],
    ["7", '"7"'],
    [null, "null"],
    [undefined, "undefined"],
    [{}, "object"],
  ];
  for (const [v, shown] of cases) {
    assert.equal(jobSeedProblem(v), `must be an integer in 0..9007199254740991, got ${shown}`);
    assert.throws(
      () => checkJobSeed(v, "x.seed"),
      (e: unknown) =>
        e instanceof LavieError &&
        e.code === "invalid_argument" &&
        e.field === "x.seed" &&
        e.message === `x.seed: must be an integer in 0..9007199254740991, got ${shown}`,
    );
  }
});

test("resolveJob refuses an out-of-range seed with the one message", () => {
  assert.equal(resolveJob({ prompt: "a panda", seed: MAX_JOB_SEED }, limits).seed, MAX_JOB_SEED);
  assert.equal(resolveJob({ prompt: "a panda" }, limits).seed, 0);
  assert.throws(() => resolveJob({ prompt: "a panda", seed: 2 ** 53 }, limits), {
    code: "invalid_argument",
    field: "seed",
    message: "seed: must be an integer in 0..9007199254740991, got 9007199254740992",
  });
  assert.throws(() => resolveJob({ prompt: "a panda", seed: -1 }, limits), {
    message: "seed: must be an integer in 0..9007199254740991, got -1",
  });
});
