import assert from "node:assert/strict";
import { test } from "node:test";
import { ManualClock } from "../../core/clock.ts";
import { LavieError } from "../../core/errors.ts";
import type { JobSpec } from "../../core/job.ts";
import type { BaseDenoiseTask } from "../plan/types.ts";
import { Dispatcher } from "./dispatcher.ts";
import type { RunnerClient, RunnerInfo, TaskCall, TensorRef } from "./ports.ts";

const runner = (id: string): RunnerInfo => ({
  id,
  address: `${id}:1`,
  stages: ["base"],
  models: [],
  slots: 1,
  freeSlots: 1,
});

const member = (branch: "uncond" | "cond"): BaseDenoiseTask => ({
  id: branch === "cond" ? "base.latent#0" : "base.cfg_peer#0",
  kind: "base_denoise",
  stage: "base",
  deps: [],
  output: { tensor: branch === "cond" ? "base.latent" : "base.cfg_peer", tile: 0 },
  units: 2,
  networks: ["base_unet"],
  text: { tensor: "text.base", box: { start: [0, 0, 0], size: [2, 77, 8] } },
  cfg: { branch, gang: "base_cfg" },
});

interface Started {
  runner: string;
  call: TaskCall;
  resolve: (r: TensorRef) => void;
  reject: (e: unknown) => void;
}

function fakeClient(): RunnerClient & { started: Started[] } {
  const started: Started[] = [];
  return {
    started,
    execute: (r, call) =>
      new Promise<TensorRef>((resolve, reject) => {
        started.push({ runner: r.id, call, resolve, reject });
        call.signal.addEventListener("abort", () => reject(new LavieError("cancelled", "aborted")));
      }),
  };
}

const ref = (object: string): TensorRef => ({ object, dtype: "float32", shape: [1], digest: "d", bytes: 4 });

function submitGang(d: Dispatcher, signal = new AbortController().signal) {
  return (["uncond", "cond"] as const).map((b) =>
    d.submit({
      jobId: "job-1",
      task: member(b),
      spec: {} as JobSpec,
      inputs: [],
      outputObject: `job-1/${b}`,
      onProgress: () => {},
      signal,
    }),
  );
}

test("a CFG gang waits for two distinct runners with free slots, then starts on both at once", async () => {
  const live = [runner("a")];
  const client = fakeClient();
  const clock = new ManualClock();
  const d = new Dispatcher({ list: () => live }, client, { clock, pollMs: 10 });
  const [pu, pc] = submitGang(d);
  await clock.advance(1_000);
  assert.equal(client.started.length, 0, "one runner: the gang waits");
  assert.deepEqual(d.stats().queued, { base: 2 });
  live.push(runner("b"));
  await clock.advance(9);
  assert.equal(client.started.length, 0, "the queue is looked at again at the next poll");
  await clock.advance(1);
  assert.equal(client.started.length, 2);
  assert.notEqual(client.started[0]!.runner, client.started[1]!.runner);
  client.started[0]!.resolve(ref("u"));
  client.started[1]!.resolve(ref("c"));
  assert.deepEqual(
    (await Promise.all([pu!, pc!])).map((r) => r.object),
    ["u", "c"],
  );
  d.close();
});

test("a failed member cancels its peer and both retry together under a new attempt", async () => {
  const live = [runner("a"), runner("b"), runner("c")];
  const client = fakeClient();
  const clock = new ManualClock();
  const d = new Dispatcher({ list: () => live }, client, { clock, pollMs: 10 });
  const [pu, pc] = submitGang(d);
  await clock.advance(0);
  assert.equal(client.started.length, 2);
  assert.deepEqual(
    client.started.map((s) => s.call.attempt),
    [1, 1],
  );
  client.started[0]!.reject(new LavieError("unavailable", "runner died"));
  await clock.advance(10);
  assert.ok(client.started[1]!.call.signal.aborted, "the peer attempt is cancelled");
  assert.equal(client.started.length, 4, "both members started again");
  const retry = client.started.slice(2);
  assert.deepEqual(
    retry.map((s) => s.call.attempt),
    [2, 2],
  );
  assert.notEqual(retry[0]!.runner, retry[1]!.runner);
  retry[0]!.resolve(ref("u2"));
  retry[1]!.resolve(ref("c2"));
  assert.deepEqual(
    (await Promise.all([pu!, pc!])).map((r) => r.object),
    ["u2", "c2"],
  );
  assert.equal(d.stats().retried, 1);
  d.close();
});

test("a non-retryable member failure fails both members; a cancelled job rejects a waiting gang", async () => {
  const live = [runner("a"), runner("b")];
  const client = fakeClient();
  const clock = new ManualClock();
  const d = new Dispatcher({ list: () => live }, client, { clock, pollMs: 10 });
  const [pu, pc] = submitGang(d);
  await clock.advance(0);
  client.started[1]!.reject(new LavieError("internal", "bad"));
  for (const p of [pu!, pc!]) await assert.rejects(p, /CFG gang base_cfg.*bad/);

  live.pop();
  const job = new AbortController();
  const waiting = submitGang(d, job.signal);
  await clock.advance(100);
  assert.deepEqual(d.stats().queued, { base: 2 }, "one runner: waiting");
  job.abort();
  for (const p of waiting) await assert.rejects(p, (e: unknown) => (e as LavieError).code === "cancelled");
  d.close();
});
