/**
 * An ORT worker thread: owns an LRU cache of InferenceSessions (by model path) and runs one job at
 * a time (the pool never sends a second job before the first is answered). session.run() blocks
 * this thread, not the parent's event loop.
 */
import { parentPort, workerData } from "node:worker_threads";
import * as ort from "onnxruntime-node";
import { type ErrorCode, LavieError } from "../../core/errors.ts";
import type { Feed, FromWorker, Outputs, ToWorker, WorkerConfig } from "./protocol.ts";

const port = parentPort;
if (!port) throw new Error("stage-runners/ort/worker.ts must run in a worker thread");
const cfg = workerData as WorkerConfig;

/** Insertion order = recency: the first key is the least recently used session. */
const sessions = new Map<string, ort.InferenceSession>();

function sessionOptions(): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: cfg.executionProviders,
    graphOptimizationLevel: "all",
    intraOpNumThreads: cfg.intraOpThreads,
    interOpNumThreads: 1,
    extra: { session: { intra_op: { allow_spinning: "0" } } },
  };
}

/** Set when the current job created a session (reported with errors too). */
let coldThisJob = false;

async function getSession(modelPath: string): Promise<{ session: ort.InferenceSession; cold: boolean }> {
  const hit = sessions.get(modelPath);
  if (hit) {
    sessions.delete(modelPath);
    sessions.set(modelPath, hit);
    return { session: hit, cold: false };
  }
  let session: ort.InferenceSession;
  try {
    // By path, so external-data files next to the model are found.
    session = await ort.InferenceSession.create(modelPath, sessionOptions());
  } catch (err) {
    const msg = errorMessage(err);
    const missing = /no such file|does not exist|doesn't exist|ENOENT|NO_SUCHFILE/i.test(msg);
    throw new LavieError(
      missing ? "not_found" : "failed_precondition",
      `cannot load model ${modelPath}: ${msg}`,
      { field: "modelPath" },
    );
  }
  sessions.set(modelPath, session);
  coldThisJob = true;
  while (sessions.size > cfg.maxCachedSessions) {
    const [oldest, s] = sessions.entries().next().value as [string, ort.InferenceSession];
    sessions.delete(oldest);
    await s.release();
  }
  return { session, cold: true };
}

function checkFeeds(modelPath: string, session: ort.InferenceSession, feeds: Record<string, Feed>): void {
  const expected = session.inputNames;
  const given = Object.keys(feeds);
  const unknown = given.filter((n) => !expected.includes(n));
  const missing = expected.filter((n) => !given.includes(n));
  if (unknown.length === 0 && missing.length === 0) return;
  const parts = [
    unknown.length ? `unknown input(s) ${unknown.map((n) => `'${n}'`).join(", ")}` : "",
    missing.length ? `missing input(s) ${missing.map((n) => `'${n}'`).join(", ")}` : "",
  ].filter(Boolean);
  throw new LavieError(
    "invalid_argument",
    `feeds: model ${modelPath}: ${parts.join("; ")} (the model's inputs are ${expected.join(", ")})`,
    { field: "feeds" },
  );
}

/** ORT's messages for bad inputs (shape, rank, type); anything else from a run is internal. */
const BAD_INPUT =
  /invalid (dimensions|rank|input|feed)|unexpected input data type|input .* is missing|data type|expected|shape/i;

async function runJob(modelPath: string, feeds: Record<string, Feed>): Promise<[Outputs, boolean]> {
  const { session, cold } = await getSession(modelPath);
  checkFeeds(modelPath, session, feeds);
  const tensors: Record<string, ort.Tensor> = {};
  for (const [name, f] of Object.entries(feeds)) tensors[name] = new ort.Tensor(f.dtype, f.data, f.shape);
  let results: ort.InferenceSession.ReturnType;
  try {
    results = await session.run(tensors);
  } catch (err) {
    const msg = errorMessage(err);
    const code: ErrorCode = BAD_INPUT.test(msg) ? "invalid_argument" : "internal";
    throw new LavieError(code, `model ${modelPath}: onnxruntime: ${msg}`, { field: "feeds" });
  }
  const outputs: Outputs = {};
  for (const [name, t] of Object.entries(results)) {
    outputs[name] = { shape: [...t.dims], data: toFloat32(modelPath, name, t) };
  }
  return [outputs, cold];
}

function toFloat32(modelPath: string, name: string, t: ort.Tensor): Float32Array {
  const d = t.data;
  if (d instanceof Float32Array) return d;
  if (t.type === "float16" || typeof d[0] === "string" || Array.isArray(d)) {
    throw new LavieError(
      "failed_precondition",
      `model ${modelPath}: output '${name}' is ${t.type}, not float32`,
    );
  }
  const out = new Float32Array(d.length);
  for (let i = 0; i < d.length; i++) out[i] = Number(d[i]);
  return out;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function reply(msg: FromWorker, transfer: ArrayBuffer[] = []): void {
  try {
    port!.postMessage(msg, transfer);
  } catch {
    port!.postMessage(msg); // a buffer that cannot be transferred is copied instead
  }
}

async function handle(msg: Exclude<ToWorker, { type: "exit" }>): Promise<void> {
  coldThisJob = false;
  try {
    if (msg.type === "warm") {
      const { cold } = await getSession(msg.modelPath);
      reply({ type: "done", id: msg.id, outputs: {}, cold, cached: [...sessions.keys()] });
      return;
    }
    const [outputs, cold] = await runJob(msg.modelPath, msg.feeds);
    const buffers = new Set<ArrayBuffer>();
    for (const o of Object.values(outputs)) {
      if (o.data.buffer instanceof ArrayBuffer) buffers.add(o.data.buffer);
    }
    reply({ type: "done", id: msg.id, outputs, cold, cached: [...sessions.keys()] }, [...buffers]);
  } catch (err) {
    const e = LavieError.from(err);
    reply({
      type: "error",
      id: msg.id,
      code: e.code,
      message: e.message,
      cold: coldThisJob,
      cached: [...sessions.keys()],
    });
  }
}

let chain: Promise<void> = Promise.resolve();
port.on("message", (msg: ToWorker) => {
  if (msg.type === "exit") {
    chain = chain.then(async () => {
      for (const s of sessions.values()) await s.release().catch(() => {});
      sessions.clear();
      process.exit(0);
    });
    return;
  }
  chain = chain.then(() => handle(msg));
});
reply({ type: "ready" });
