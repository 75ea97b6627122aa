import assert from "node:assert/strict";
import { hostname } from "node:os";
import { test } from "node:test";
import { LavieError } from "../core/errors.ts";
import { readConfig } from "./main.ts";

const NATS = { LAVIE_NATS_URL: "nats://127.0.0.1:4222" };

test("defaults: all stages, tiny preset, loopback, any port, one slot, hostname-pid id", () => {
  const c = readConfig(NATS);
  assert.deepEqual(c.natsUrl, ["nats://127.0.0.1:4222"]);
  assert.deepEqual(c.stages, ["base", "interpolation", "vsr"]);
  assert.equal(c.modelDir, undefined);
  assert.equal(c.preset, "tiny");
  assert.equal(c.host, "127.0.0.1");
  assert.equal(c.port, 0);
  assert.equal(c.slots, 1);
  assert.equal(c.ortThreads, undefined);
  assert.equal(c.warm, false);
  assert.match(c.id, /^[A-Za-z0-9_-]+$/);
  assert.ok(c.id.endsWith(`-${process.pid}`));
  assert.ok(
    c.id.startsWith(
      hostname()
        .replace(/[^A-Za-z0-9_-]/g, "-")
        .slice(0, 8),
    ),
  );
});

test("explicit values", () => {
  const c = readConfig({
    LAVIE_NATS_URL: "nats://a:1, nats://b:2",
    LAVIE_RUNNER_STAGES: "vsr, base",
    LAVIE_MODEL_DIR: "/models/x",
    LAVIE_RUNNER_PORT: "5001",
    LAVIE_RUNNER_SLOTS: "2",
    LAVIE_ORT_THREADS: "3",
    LAVIE_RUNNER_ID: "r_1",
    LAVIE_RUNNER_WARM: "1",
    LAVIE_ORT_PROVIDERS: "cuda, cpu",
  });
  assert.deepEqual(c.ortProviders, ["cuda", "cpu"]);
  assert.deepEqual(c.natsUrl, ["nats://a:1", "nats://b:2"]);
  assert.deepEqual(c.stages, ["vsr", "base"]);
  assert.equal(c.modelDir, "/models/x");
  assert.equal(c.port, 5001);
  assert.equal(c.slots, 2);
  assert.equal(c.ortThreads, 3);
  assert.equal(c.id, "r_1");
  assert.equal(c.warm, true);
});

test("errors name the variable", () => {
  const bad: [Record<string, string>, string][] = [
    [{}, "LAVIE_NATS_URL"],
    [{ LAVIE_NATS_URL: "http//x" }, "LAVIE_NATS_URL"],
    [{ ...NATS, LAVIE_RUNNER_STAGES: "base,audio" }, "LAVIE_RUNNER_STAGES"],
    [{ ...NATS, LAVIE_PRESET: "huge" }, "LAVIE_PRESET"],
    [{ ...NATS, LAVIE_RUNNER_PORT: "70000" }, "LAVIE_RUNNER_PORT"],
    [{ ...NATS, LAVIE_RUNNER_SLOTS: "0" }, "LAVIE_RUNNER_SLOTS"],
    [{ ...NATS, LAVIE_RUNNER_SLOTS: "1.5" }, "LAVIE_RUNNER_SLOTS"],
    [{ ...NATS, LAVIE_ORT_THREADS: "x" }, "LAVIE_ORT_THREADS"],
    [{ ...NATS, LAVIE_RUNNER_ID: "a.b" }, "LAVIE_RUNNER_ID"],
    [{ ...NATS, LAVIE_RUNNER_WARM: "yes" }, "LAVIE_RUNNER_WARM"],
    [{ ...NATS, LAVIE_ORT_PROVIDERS: "cuda,tpu" }, "LAVIE_ORT_PROVIDERS"],
    [{ ...NATS, LAVIE_METRICS_PORT: "99999" }, "LAVIE_METRICS_PORT"],
    [{ ...NATS, LAVIE_FAULTS: "explode:1" }, "LAVIE_FAULTS"],
  ];
  for (const [env, variable] of bad) {
    assert.throws(
      () => readConfig(env),
      (err: unknown) =>
        err instanceof LavieError &&
        err.code === "invalid_argument" &&
        err.field === variable &&
        err.message.startsWith(`${variable}: `),
      variable,
    );
  }
});
