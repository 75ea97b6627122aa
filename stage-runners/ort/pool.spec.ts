import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Worker } from "node:worker_threads";
import * as ort from "onnxruntime-node";
import { attr, GraphBuilder } from "../../models/onnx/graph.ts";
import { serializeModel } from "../../models/onnx/serialize.ts";
import { type Feed, OrtWorkerPool } from "./pool.ts";

const dir = mkdtempSync(join(tmpdir(), "lavie-ort-pool-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** x [1,2,8,8] -> Conv -> Reshape [1,4,64] -> MatMul [64,16] = y; idx (int64) -> Cast * 2 = z. */
function smallModel(name: string, seed: number): string {
  const g = new GraphBuilder({ name, seed });
  const x = g.input("x", "float32", [1, 2, 8, 8]);
  const idx = g.input("idx", "int64", [3]);
  const w = g.param("conv.weight", [4, 2, 3, 3], { kind: "uniform", bound: 0.5 });
  const c = g.op("Conv", [x, w], { pads: attr.ints([1, 1, 1, 1]), kernel_shape: attr.ints([3, 3]) });
  const r = g.op("Reshape", [c, g.constI([1, 4, 64])]);
  const y = g.op("MatMul", [r, g.param("proj.weight", [64, 16], { kind: "normal", std: 0.1 })]);
  g.output(y, "y", "float32", [1, 4, 16]);
  const z = g.op("Mul", [g.op("Cast", [idx], { to: attr.i(1) }), g.constF([2], [])]);
  g.output(z, "z", "float32", [3]);
  const path = join(dir, `${name}.onnx`);
  writeFileSync(path, serializeModel(g.toModel()).onnx);
  return path;
}

/** A chain of 3x3 convs at [1,64,128,128] (~15 ms each on one core): a run of a few hundred ms. */
function heavyModel(convs: number): string {
  const g = new GraphBuilder({ name: "heavy", seed: 3 });
  let y = g.input("x", "float32", [1, 64, 128, 128]);
  const w = g.param("w", [64, 64, 3, 3], { kind: "uniform", bound: 0.03 });
  for (let i = 0; i < convs; i++) y = g.op("Conv", [y, w], { pads: attr.ints([1, 1, 1, 1]) });
  g.output(y, "y", "float32", [1, 64, 128, 128]);
  const path = join(dir, `heavy${convs}.onnx`);
  writeFileSync(path, serializeModel(g.toModel()).onnx);
  return path;
}

const small = smallModel("small", 1);
const heavy = heavyModel(20);
const heavyFeeds = (): Record<string, Feed> => ({
  x: { dtype: "float32", shape: [1, 64, 128, 128], data: new Float32Array(64 * 128 * 128).fill(0.5) },
});

function smallFeeds(k: number): Record<string, Feed> {
  return {
    x: {
      dtype: "float32",
      shape: [1, 2, 8, 8],
      data: Float32Array.from({ length: 128 }, (_, i) => Math.sin(i + k)),
    },
    idx: { dtype: "int64", shape: [3], data: BigInt64Array.from([1n, BigInt(k), -4n]) },
  };
}

async function direct(path: string, feeds: Record<string, Feed>): Promise<Record<string, Float32Array>> {
  const s = await ort.InferenceSession.create(path, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
    extra: { session: { intra_op: { allow_spinning: "0" } } },
  });
  const tensors: Record<string, ort.Tensor> = {};
  for (const [n, f] of Object.entries(feeds)) tensors[n] = new ort.Tensor(f.dtype, f.data.slice(), f.shape);
  const out = await s.run(tensors);
  await s.release();
  return Object.fromEntries(Object.entries(out).map(([n, t]) => [n, t.data as Float32Array]));
}

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const internals = (p: OrtWorkerPool) => p as unknown as { slots: { worker: Worker }[] };

test("results equal a direct in-thread session bitwise; inputs are copied unless transferred", async () => {
  const pool = new OrtWorkerPool({ intraOpThreads: 1 });
  try {
    const feeds = smallFeeds(3);
    const want = await direct(small, feeds);
    const got = await pool.run(small, feeds);
    assert.deepEqual(got.y!.shape, [1, 4, 16]);
    assert.deepEqual(got.z!.data, Float32Array.from([2, 6, -8]));
    assert.ok(got.y!.data instanceof Float32Array);
    assert.equal(Buffer.compare(bytes(got.y!.data), bytes(want.y!)), 0);
    assert.equal(feeds.x!.data.length, 128, "copied by default");

    const moved = smallFeeds(3);
    const again = await pool.run(small, moved, { transferInputs: true });
    assert.equal(moved.x!.data.length, 0, "transferred: the caller's buffer is detached");
    assert.equal(Buffer.compare(bytes(again.y!.data), bytes(want.y!)), 0);

    // A view into a larger buffer is sent compactly and gives the same answer.
    const big = new Float32Array(1000);
    big.set(smallFeeds(3).x!.data as Float32Array, 500);
    const view = {
      ...smallFeeds(3),
      x: { dtype: "float32", shape: [1, 2, 8, 8], data: big.subarray(500, 628) },
    };
    const viaView = await pool.run(small, view as Record<string, Feed>, { transferInputs: true });
    assert.equal(big.length, 1000);
    assert.equal(Buffer.compare(bytes(viaView.y!.data), bytes(want.y!)), 0);
  } finally {
    await pool.close();
  }
});

test("concurrent calls on 2 workers all complete, queueing beyond 2", async () => {
  const pool = new OrtWorkerPool({ workers: 2, intraOpThreads: 1 });
  try {
    const calls = Array.from({ length: 8 }, (_, k) => pool.run(small, smallFeeds(k)));
    const { workers, busy, queued } = pool.stats();
    assert.deepEqual([workers, busy, queued], [2, 2, 6]);
    const results = await Promise.all(calls);
    for (const [k, r] of results.entries()) {
      const want = await direct(small, smallFeeds(k));
      assert.equal(Buffer.compare(bytes(r.y!.data), bytes(want.y!)), 0, `call ${k}`);
    }
    const s = pool.stats();
    assert.deepEqual([s.busy, s.queued, s.sessionsLoaded], [0, 0, 2]);
    assert.equal(s.coldStarts, 2, "each worker loaded the model once");
  } finally {
    await pool.close();
  }
});

test("the event loop keeps running callbacks while a heavy model runs", async () => {
  const pool = new OrtWorkerPool({ intraOpThreads: 1 });
  try {
    await pool.warm(heavy);
    // A heartbeat: each beat that finds the run still in flight shows that the main thread was
    // free while the worker computed (a run on the main thread would let none through).
    let beatsWhileRunning = 0;
    let running = true;
    const heartbeat = setInterval(() => {
      if (running && pool.stats().busy === 1) beatsWhileRunning++;
    }, 1);
    const run = pool.run(heavy, heavyFeeds()).finally(() => {
      running = false;
    });
    assert.equal(pool.stats().busy, 1, "the run went to a worker");
    const out = await run;
    clearInterval(heartbeat);
    assert.deepEqual(out.y!.shape, [1, 64, 128, 128]);
    assert.ok(beatsWhileRunning >= 2, `heartbeats while the run was in flight: ${beatsWhileRunning}`);
  } finally {
    await pool.close();
  }
});

test("sessions are cached per worker (LRU) and warm() loads ahead of time", async () => {
  const other = smallModel("other", 2);
  const pool = new OrtWorkerPool({ intraOpThreads: 1 });
  try {
    for (let k = 0; k < 3; k++) await pool.run(small, smallFeeds(k));
    assert.equal(pool.stats().coldStarts, 1);
    await pool.warm(other);
    assert.deepEqual([pool.stats().coldStarts, pool.stats().sessionsLoaded], [2, 2]);
    await pool.run(other, smallFeeds(0));
    await pool.warm(other);
    assert.equal(pool.stats().coldStarts, 2, "warm model: no new session");
  } finally {
    await pool.close();
  }
  const lru = new OrtWorkerPool({ intraOpThreads: 1, maxCachedSessions: 1 });
  try {
    for (const m of [small, other, small]) await lru.run(m, smallFeeds(0));
    assert.deepEqual([lru.stats().coldStarts, lru.stats().sessionsLoaded], [3, 1]);
  } finally {
    await lru.close();
  }
});

test("cancellation while queued and while running rejects with 'cancelled'", async () => {
  const pool = new OrtWorkerPool({ intraOpThreads: 1 });
  try {
    await pool.warm(heavy);
    const running = pool.run(heavy, heavyFeeds());
    const ac = new AbortController();
    const queued = pool.run(small, smallFeeds(0), { signal: ac.signal });
    assert.equal(pool.stats().queued, 1);
    ac.abort();
    await assert.rejects(queued, { name: "LavieError", code: "cancelled" });
    assert.equal(pool.stats().queued, 0);
    assert.deepEqual((await running).y!.shape, [1, 64, 128, 128]);

    // Cancelled while running: the caller is answered at once, before the worker's run ends (the
    // worker stays busy until then, and only then takes the next call).
    const ac2 = new AbortController();
    const inFlight = pool.run(heavy, heavyFeeds(), { signal: ac2.signal });
    let nextDone = false;
    const after = pool.run(small, smallFeeds(1)).finally(() => {
      nextDone = true;
    });
    assert.equal(pool.stats().busy, 1);
    ac2.abort();
    await assert.rejects(inFlight, { code: "cancelled", message: /while running/ });
    assert.equal(pool.stats().busy, 1, "the worker finishes the cancelled run in the background");
    assert.equal(pool.stats().queued, 1, "the next call waits for that worker");
    assert.equal(nextDone, false);
    const next = await after;
    assert.deepEqual(next.y!.shape, [1, 4, 16]);

    await assert.rejects(pool.run(small, smallFeeds(0), { signal: AbortSignal.abort() }), {
      code: "cancelled",
    });
  } finally {
    await pool.close();
  }
});

test("bad requests and ORT errors become clear LavieErrors", async () => {
  const pool = new OrtWorkerPool({ intraOpThreads: 1 });
  try {
    const x = smallFeeds(0).x!;
    await assert.rejects(
      pool.run(small, { nope: x, idx: smallFeeds(0).idx! }),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, "invalid_argument");
        assert.ok(e.message.includes(small), e.message);
        assert.match(
          e.message,
          /unknown input\(s\) 'nope'; missing input\(s\) 'x' \(the model's inputs are x, idx\)/,
        );
        return true;
      },
    );
    const wrongShape = {
      ...smallFeeds(0),
      x: { dtype: "float32", shape: [1, 3, 8, 8], data: new Float32Array(192) },
    };
    await assert.rejects(pool.run(small, wrongShape as Record<string, Feed>), {
      code: "invalid_argument",
      message: /small\.onnx: onnxruntime: Got invalid dimensions for input: x/,
    });
    const badLength: Record<string, Feed> = {
      ...smallFeeds(0),
      x: { dtype: "float32", shape: [1, 2, 8, 8], data: new Float32Array(5) },
    };
    await assert.rejects(pool.run(small, badLength), { code: "invalid_argument", field: "feeds.x" });
    await assert.rejects(pool.run(join(dir, "missing.onnx"), smallFeeds(0)), { code: "not_found" });
    const after = await pool.run(small, smallFeeds(0));
    assert.deepEqual(after.z!.data, Float32Array.from([2, 0, -8]));
  } finally {
    await pool.close();
  }
});

test("a worker that dies rejects its call with 'unavailable' and is replaced", async () => {
  const pool = new OrtWorkerPool({ intraOpThreads: 1 });
  try {
    await pool.warm(heavy);
    // The worker's next message makes it exit, so the call below is in flight when it dies.
    internals(pool).slots[0]!.worker.postMessage({ type: "exit" });
    const call = pool.run(heavy, heavyFeeds());
    await assert.rejects(call, { code: "unavailable", retryable: true });
    assert.equal(pool.stats().workers, 1);
    assert.deepEqual((await pool.run(small, smallFeeds(2))).z!.data, Float32Array.from([2, 4, -8]));
  } finally {
    await pool.close();
  }
});

test("close() terminates the workers and fails pending and later calls", async () => {
  const pool = new OrtWorkerPool({ workers: 2, intraOpThreads: 1 });
  const workers = internals(pool).slots.map((s) => s.worker);
  await pool.run(small, smallFeeds(0));
  const pending = assert.rejects(pool.run(small, smallFeeds(0)), { code: "unavailable" });
  await pool.close();
  await pending;
  assert.equal(pool.stats().workers, 0);
  for (const w of workers) assert.equal(w.threadId, -1, "worker thread has exited");
  await assert.rejects(pool.run(small, smallFeeds(0)), { code: "unavailable" });
});

test("workers load TypeScript in a script started with `node --import tsx`", async () => {
  const poolUrl = new URL("./pool.ts", import.meta.url).href;
  const script = `import { OrtWorkerPool } from ${JSON.stringify(poolUrl)};
    const pool = new OrtWorkerPool({ intraOpThreads: 1 });
    const x = { dtype: "float32", shape: [1, 2, 8, 8], data: new Float32Array(128) };
    const idx = { dtype: "int64", shape: [3], data: new BigInt64Array([1n, 2n, 3n]) };
    const out = await pool.run(${JSON.stringify(small)}, { x, idx });
    console.log(JSON.stringify(Array.from(out.z.data)));
    await pool.close();`;
  const file = join(dir, "script.mts");
  writeFileSync(file, script);
  const cwd = fileURLToPath(new URL("../..", import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", file], {
    cwd,
    timeout: 15_000,
  });
  assert.equal(stdout.trim(), "[2,4,6]");
});

test("execution providers are validated and passed to the sessions", async () => {
  assert.throws(() => new OrtWorkerPool({ executionProviders: ["tpu"] }), {
    code: "invalid_argument",
    field: "executionProviders",
    message: /unknown provider "tpu"; allowed: cpu, cuda, tensorrt, webgpu/,
  });
  // No CUDA provider libraries on this machine: asking for CUDA alone must fail when the session
  // is created, which shows the option reaches onnxruntime.
  const gpuOnly = new OrtWorkerPool({ executionProviders: ["cuda"], intraOpThreads: 1 });
  try {
    await assert.rejects(gpuOnly.run(small, smallFeeds(0)));
  } finally {
    await gpuOnly.close();
  }
  const cpu = new OrtWorkerPool({ executionProviders: ["cpu"], intraOpThreads: 1 });
  try {
    assert.deepEqual((await cpu.run(small, smallFeeds(2))).z!.data, Float32Array.from([2, 4, -8]));
  } finally {
    await cpu.close();
  }
});
