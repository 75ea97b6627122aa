import assert from "node:assert/strict";
import { test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { type JobSpec, type ModelLimits, resolveJob } from "../../core/job.ts";
import { planFromWindows } from "../../core/tiling/index.ts";
import { type PlanModelInfo, planJob } from "../plan/plan.ts";
import type { DecodeTask } from "../plan/types.ts";
import type { ObjectStat, RunnerClient, RunnerInfo, TaskCall, TensorRef } from "./ports.ts";
import { plannedOutputShape, refProblem, VerifyingRunnerClient } from "./verify.ts";

const runner: RunnerInfo = {
  id: "r1",
  address: "r1:1",
  stages: ["base"],
  models: [],
  slots: 1,
  freeSlots: 1,
};
const task: DecodeTask = {
  id: "frames#1",
  kind: "vae_decode",
  stage: "base",
  deps: [],
  output: { tensor: "frames", tile: 1 },
  units: 1,
  networks: ["sd_vae_decoder"],
  input: { tensor: "latent", box: { start: [0, 0, 0, 0, 0], size: [1, 4, 2, 4, 6] } },
  scalingFactor: 0.18,
};
// frames [1, 3, 4, 8, 12] in two frame chunks of 2: tile 1 is [1, 3, 2, 8, 12].
const output = {
  name: "frames",
  tiles: planFromWindows(
    [1, 3, 4, 8, 12],
    [
      {
        axis: 2,
        windows: [
          { start: 0, size: 2 },
          { start: 2, size: 2 },
        ],
      },
    ],
  ),
};
const call = (): TaskCall => ({
  jobId: "j",
  attempt: 1,
  task,
  spec: {} as JobSpec,
  inputs: [],
  outputObject: "j/frames/1",
  output,
  onProgress: () => {},
  signal: new AbortController().signal,
});
const good: TensorRef = {
  object: "j/frames/1",
  dtype: "float32",
  shape: [1, 3, 2, 8, 12],
  digest: "sha256:aa",
  bytes: 1 * 3 * 2 * 8 * 12 * 4,
};
const stat = (r: TensorRef): ObjectStat => ({
  object: r.object,
  bytes: r.bytes,
  digest: r.digest,
  shape: r.shape,
});

test("refProblem accepts the planned tile and names each kind of mismatch", () => {
  const shape = good.shape;
  assert.equal(refProblem(call(), good, shape, stat(good)), null);
  const cases: [Partial<TensorRef>, ObjectStat | null, RegExp][] = [
    [{ object: "j/frames/0" }, stat(good), /names object "j\/frames\/0", expected "j\/frames\/1"/],
    [{ dtype: "float16" as "float32" }, stat(good), /dtype "float16"/],
    [{ shape: [12, 8, 2, 3, 1] }, stat(good), /shape \[12,8,2,3,1\], the planned tile is \[1,3,2,8,12\]/],
    [{ bytes: good.bytes - 4 }, stat(good), /claims 2300 bytes, shape .* needs 2304/],
    [{}, null, /does not hold/],
    [{}, { ...stat(good), bytes: 4 }, /the store holds 4/],
    [{}, { ...stat(good), digest: "sha256:bb" }, /claims digest sha256:aa, the store holds sha256:bb/],
    [{}, { ...stat(good), shape: [2, 3, 1, 8, 12] }, /the stored object records/],
  ];
  for (const [patch, stored, re] of cases) {
    assert.match(refProblem(call(), { ...good, ...patch }, shape, stored) ?? "accepted", re);
  }
});

test("VerifyingRunnerClient passes good refs and turns bad ones into retryable data_loss", async () => {
  let answer = good;
  const objects = new Map<string, ObjectStat>([[good.object, stat(good)]]);
  const inner: RunnerClient = { execute: async () => answer };
  const client = new VerifyingRunnerClient(inner, { stat: async (n) => objects.get(n) ?? null });
  assert.deepEqual(await client.execute(runner, call()), good);
  objects.set(good.object, { ...stat(good), digest: "sha256:corrupt" });
  await assert.rejects(
    client.execute(runner, call()),
    (e: unknown) =>
      e instanceof LavieError &&
      e.code === "data_loss" &&
      e.retryable &&
      /runner r1 .* task frames#1 .*digest/.test(e.message),
  );
  objects.set(good.object, stat(good));
  answer = { ...good, shape: [2, 3, 1, 8, 12] };
  await assert.rejects(client.execute(runner, call()), /planned tile is \[1,3,2,8,12\]/);
  // Without an output plan nor an outputShape option, the shape is not checked (the rest is).
  const noPlan = { ...call() };
  delete noPlan.output;
  answer = { ...good, shape: [2, 3, 1, 8, 12] };
  await assert.rejects(client.execute(runner, noPlan), /the stored object records/);
  // Errors of the call itself pass through unchanged.
  const failing = new VerifyingRunnerClient(
    { execute: async () => Promise.reject(new LavieError("unavailable", "gone")) },
    { stat: async () => null },
  );
  await assert.rejects(
    failing.execute(runner, call()),
    (e: unknown) => (e as LavieError).code === "unavailable",
  );
});

test("plannedOutputShape: the call's output plan, else the re-planned job's tile; unknown tasks unchecked", () => {
  const limits: ModelLimits = {
    preset: "tiny",
    base: { frames: 16, height: 32, width: 48 },
    divisor: { base: 2, interpolation: 2, vsr: 4 },
    vaeFactor: 8,
    vsrScale: 4,
    defaultSteps: { base: 3, interpolation: 2, vsr: 2 },
    maxTokens: 77,
  };
  const info: PlanModelInfo = {
    clipWidth: 32,
    vsrTextWidth: 48,
    sdScaling: 0.18215,
    x4Scaling: 0.08333,
    vaeFactor: 8,
    vsrScale: 4,
    divisor: { vsr: 4 },
  };
  const spec = resolveJob({ prompt: "a panda", seed: 1 }, limits);
  const plan = planJob(spec, info);
  const shapeOf = plannedOutputShape(info);
  const base = { ...call(), spec };
  delete base.output;
  for (const t of plan.tasks) {
    assert.deepEqual(
      shapeOf({ ...base, task: t }),
      plan.tensors[t.output.tensor]!.tiles.tiles[t.output.tile]!.box.size,
      t.id,
    );
  }
  assert.equal(shapeOf({ ...base, task: { ...task, id: "no-such-task" } }), null);
  assert.deepEqual(shapeOf(call()), [1, 3, 2, 8, 12], "call.output wins");
});
