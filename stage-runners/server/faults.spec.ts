import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { settle } from "../../core/clock.ts";
import { LavieError } from "../../core/errors.ts";
import type { Tensor } from "../../core/tensor.ts";
import type { TensorRef } from "../../transport/nats/tensors.ts";
import { FaultInjector, faultAtStart, faultyOutput, parseFaults } from "./faults.ts";

test("parseFaults reads kinds with probabilities, seed and after; empty is none", () => {
  assert.equal(parseFaults(""), null);
  assert.deepEqual(parseFaults("corrupt:0.5, hang:1,seed=7,after=2"), {
    rates: [
      ["corrupt", 0.5],
      ["hang", 1],
    ],
    seed: 7,
    after: 2,
  });
  assert.deepEqual(parseFaults("exit:.1"), { rates: [["exit", 0.1]] });
});

test("parseFaults refuses anything else, naming LAVIE_FAULTS and the grammar", () => {
  for (const bad of [
    "boom:1",
    "hang",
    "hang:2",
    "hang:-1",
    "hang:1,hang:0.5",
    "seed=1",
    "hang:1,seed=x",
    "hang:1;",
  ]) {
    assert.throws(
      () => parseFaults(bad),
      (e: unknown) =>
        e instanceof LavieError &&
        e.code === "invalid_argument" &&
        /^LAVIE_FAULTS: /.test(e.message) &&
        /hang, corrupt, shape, fail, exit/.test(e.message),
      bad,
    );
  }
});

test("the injector is repeatable with a seed, spares the first `after` tasks and counts", () => {
  const spec = parseFaults("corrupt:0.5,fail:0.5,seed=42,after=3")!;
  const a = new FaultInjector(spec);
  const b = new FaultInjector(spec);
  const seqA = Array.from({ length: 200 }, () => a.next());
  const seqB = Array.from({ length: 200 }, () => b.next());
  assert.deepEqual(seqA, seqB);
  assert.deepEqual(seqA.slice(0, 3), [null, null, null]);
  const corrupt = seqA.filter((k) => k === "corrupt").length;
  const fail = seqA.filter((k) => k === "fail").length;
  assert.ok(corrupt > 70 && corrupt < 130, `corrupt ${corrupt}`);
  assert.ok(fail > 20 && fail < 80, `fail ${fail} (half of the rest)`);
  assert.deepEqual(a.injected, { hang: 0, corrupt, shape: 0, fail, exit: 0 });
  const always = new FaultInjector(parseFaults("hang:1")!);
  assert.equal(always.next(), "hang");
});

test("hang waits for the cancel; fail throws a retryable internal error", async () => {
  const ac = new AbortController();
  let settled = false;
  const p = faultAtStart("hang", ac.signal).finally(() => {
    settled = true;
  });
  await settle(); // every callback that could end it without the cancel has run
  assert.equal(settled, false);
  ac.abort(new LavieError("cancelled", "stop"));
  await assert.rejects(p, (e: unknown) => (e as LavieError).code === "cancelled");
  await assert.rejects(
    faultAtStart("fail", ac.signal),
    (e: unknown) => e instanceof LavieError && e.code === "internal" && e.retryable,
  );
  await faultAtStart(null, ac.signal);
});

test("corrupt stores other bytes under the ref's digest; shape returns a wrong shape", async () => {
  const stored = new Map<string, Tensor>();
  const sha = (t: Tensor) =>
    `sha256:${createHash("sha256")
      .update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength))
      .digest("hex")}`;
  const store = {
    put: async (name: string, t: Tensor): Promise<TensorRef> => {
      stored.set(name, t);
      return {
        object: name,
        dtype: "float32",
        shape: [...t.shape],
        digest: sha(t),
        bytes: t.data.byteLength,
      };
    },
  };
  const out: Tensor = { shape: [1, 2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) };
  const good = await faultyOutput(null, store, "o", out);
  assert.equal(good.digest, sha(out));
  const bad = await faultyOutput("corrupt", store, "o", out);
  assert.equal(bad.digest, sha(out), "the ref claims the true output's digest");
  assert.notEqual(sha(stored.get("o")!), bad.digest, "but the store holds other bytes");
  const wrong = await faultyOutput("shape", store, "o", out);
  assert.deepEqual(wrong.shape, [3, 2, 1]);
  assert.equal(wrong.bytes, 24);
});

test("the runner's LAVIE_FAULTS is parsed once at start; a bad value is a configuration error naming it", async () => {
  const { readConfig } = await import("../main.ts");
  const base = { LAVIE_NATS_URL: "nats://127.0.0.1:4222" };
  assert.equal(readConfig(base).faults, null);
  assert.deepEqual(readConfig({ ...base, LAVIE_FAULTS: "shape:1,seed=3" }).faults, {
    rates: [["shape", 1]],
    seed: 3,
  });
  assert.throws(
    () => readConfig({ ...base, LAVIE_FAULTS: "explode:1" }),
    (e: unknown) =>
      e instanceof LavieError &&
      e.code === "invalid_argument" &&
      e.field === "LAVIE_FAULTS" &&
      /^LAVIE_FAULTS: unknown fault kind "explode"; expected comma-separated items/.test(
        (e as Error).message,
      ),
  );
});
