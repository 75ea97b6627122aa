/**
 * OrtWorkerPool: runs ONNX models in worker threads so that callers never block the event loop
 * (onnxruntime-node's session.run is synchronous on the calling thread).
 *
 *   const pool = new OrtWorkerPool({ workers: 2 });
 *   await pool.warm("/models/unet.onnx");
 *   const { eps } = await pool.run("/models/unet.onnx", { x: { dtype: "float32", shape, data } }, { signal });
 *   await pool.close();
 *
 * - Each worker caches up to maxCachedSessions sessions (LRU by model path). A job goes to a free
 *   worker that already holds its model, else to any free worker, else waits in a FIFO queue.
 * - Cancellation: a queued call is removed and rejects with "cancelled". A running call rejects with
 *   "cancelled" at once and its result is discarded, but onnxruntime-node cannot interrupt a run
 *   (RunOptions.terminate is WebAssembly-only), so the worker finishes it in the background and
 *   stays busy (counted in stats().busy) until then.
 * - A worker that dies rejects its in-flight call with "unavailable" and is replaced.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { invalidArgument, LavieError } from "../../core/errors.ts";
import type {
  Feed,
  FromWorker,
  NetworkRunner,
  Outputs,
  RunOptions,
  ToWorker,
  WorkerConfig,
} from "./protocol.ts";
import { EXECUTION_PROVIDERS } from "./protocol.ts";

export type { Feed, NetworkRunner, Output, Outputs, RunOptions } from "./protocol.ts";

export interface OrtWorkerPoolOptions {
  /** Worker threads (default 1). */
  workers?: number;
  /** onnxruntime intra-op threads per worker (default max(1, floor(cores / workers))). */
  intraOpThreads?: number;
  /** Sessions kept per worker, least recently used evicted first (default 8). */
  maxCachedSessions?: number;
  /**
   * Execution providers in order of preference (default ["cpu"]); GPU images use ["cuda", "cpu"]
   * (the CUDA provider libraries must have been installed with onnxruntime-node).
   */
  executionProviders?: string[];
}

export interface OrtPoolStats {
  workers: number;
  /** Workers executing a job (including cancelled runs still finishing). */
  busy: number;
  queued: number;
  /** Sessions loaded, summed over workers. */
  sessionsLoaded: number;
  /** Session creations so far (a cache miss in some worker). */
  coldStarts: number;
}

interface Job {
  kind: "run" | "warm";
  modelPath: string;
  feeds: Record<string, Feed>;
  transfer: ArrayBuffer[];
  resolve: (o: Outputs) => void;
  reject: (e: LavieError) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

interface Slot {
  worker: Worker;
  /** Executing something (job may be undefined when its caller cancelled). */
  busy: boolean;
  job: Job | undefined;
  jobId: number;
  cached: string[];
  ready: boolean;
  lastError: Error | undefined;
}

/** How long close() waits for a busy worker to finish its run before terminating it. */
const CLOSE_GRACE_MS = 60_000;

const ENTRY = new URL("./worker-bootstrap.mjs", import.meta.url);

export class OrtWorkerPool implements NetworkRunner {
  private readonly config: WorkerConfig;
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private coldStarts = 0;
  private closed = false;
  /** Set when a worker dies before it ever started: the pool cannot work (e.g. a broken install). */
  private broken: LavieError | undefined;

  constructor(opts: OrtWorkerPoolOptions = {}) {
    const workers = opts.workers ?? 1;
    if (!Number.isInteger(workers) || workers < 1)
      throw invalidArgument("workers", "must be an integer >= 1");
    const intra = opts.intraOpThreads ?? Math.max(1, Math.floor(availableParallelism() / workers));
    if (!Number.isInteger(intra) || intra < 1)
      throw invalidArgument("intraOpThreads", "must be an integer >= 1");
    const cache = opts.maxCachedSessions ?? 8;
    if (!Number.isInteger(cache) || cache < 1)
      throw invalidArgument("maxCachedSessions", "must be an integer >= 1");
    const eps = opts.executionProviders ?? ["cpu"];
    const unknown = eps.find((e) => !(EXECUTION_PROVIDERS as readonly string[]).includes(e));
    if (eps.length === 0 || unknown !== undefined) {
      throw invalidArgument(
        "executionProviders",
        `${unknown === undefined ? "must not be empty" : `unknown provider "${unknown}"`}; allowed: ${EXECUTION_PROVIDERS.join(", ")}`,
      );
    }
    this.config = { intraOpThreads: intra, maxCachedSessions: cache, executionProviders: [...eps] };
    for (let i = 0; i < workers; i++) this.slots.push(this.spawn());
  }

  /** Runs modelPath on feeds in a worker; outputs come back as float32 (buffers moved, not copied). */
  run(modelPath: string, feeds: Record<string, Feed>, opts: RunOptions = {}): Promise<Outputs> {
    try {
      checkRequest(modelPath, feeds);
    } catch (err) {
      return Promise.reject(err);
    }
    const sent: Record<string, Feed> = {};
    const transfer = new Set<ArrayBuffer>();
    for (const [name, f] of Object.entries(feeds)) {
      const whole = f.data.byteOffset === 0 && f.data.byteLength === f.data.buffer.byteLength;
      // Cloning a view clones its whole buffer: send a compact copy of partial views instead.
      const data = whole ? f.data : f.data.slice();
      sent[name] = { ...f, data } as Feed;
      if (opts.transferInputs && whole && f.data.buffer instanceof ArrayBuffer) transfer.add(f.data.buffer);
    }
    return this.submit("run", modelPath, sent, [...transfer], opts.signal);
  }

  /** Loads modelPath's session in one worker ahead of time (no-op when a worker holds it already). */
  async warm(modelPath: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    checkRequest(modelPath, {});
    if (this.slots.some((s) => s.cached.includes(modelPath))) return;
    await this.submit("warm", modelPath, {}, [], opts.signal);
  }

  stats(): OrtPoolStats {
    return {
      workers: this.slots.length,
      busy: this.slots.filter((s) => s.busy).length,
      queued: this.queue.length,
      sessionsLoaded: this.slots.reduce((n, s) => n + s.cached.length, 0),
      coldStarts: this.coldStarts,
    };
  }

  /** Rejects queued and in-flight calls with "unavailable" and terminates the workers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = () => new LavieError("unavailable", "ORT worker pool closed");
    for (const job of this.queue.splice(0)) this.settle(job, err());
    const slots = this.slots.splice(0);
    for (const s of slots) if (s.job) this.settle(s.job, err());
    // Ask each worker to exit after its current run: terminating a thread inside a native ORT call
    // can abort the process. Terminate only those that do not exit in time.
    await Promise.all(
      slots.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.worker.threadId === -1) return resolve();
            const timer = setTimeout(() => void s.worker.terminate().then(() => resolve()), CLOSE_GRACE_MS);
            s.worker.once("exit", () => {
              clearTimeout(timer);
              resolve();
            });
            s.worker.postMessage({ type: "exit" } satisfies ToWorker);
          }),
      ),
    );
  }

  private submit(
    kind: Job["kind"],
    modelPath: string,
    feeds: Record<string, Feed>,
    transfer: ArrayBuffer[],
    signal: AbortSignal | undefined,
  ): Promise<Outputs> {
    if (this.closed) return Promise.reject(new LavieError("unavailable", "ORT worker pool closed"));
    if (this.broken) return Promise.reject(this.broken);
    if (signal?.aborted) return Promise.reject(cancelled(modelPath, "before it started"));
    return new Promise<Outputs>((resolve, reject) => {
      const job: Job = { kind, modelPath, feeds, transfer, resolve, reject, signal, onAbort: undefined };
      if (signal) {
        job.onAbort = () => this.cancel(job);
        signal.addEventListener("abort", job.onAbort, { once: true });
      }
      this.queue.push(job);
      this.dispatch();
    });
  }

  private cancel(job: Job): void {
    const i = this.queue.indexOf(job);
    if (i >= 0) {
      this.queue.splice(i, 1);
      this.settle(job, cancelled(job.modelPath, "while queued"));
      return;
    }
    const slot = this.slots.find((s) => s.job === job);
    if (!slot) return;
    slot.job = undefined; // the worker's answer will be dropped; the slot stays busy until it comes
    this.settle(
      job,
      cancelled(job.modelPath, "while running (the worker finishes the run in the background)"),
    );
  }

  private settle(job: Job, result: LavieError | Outputs): void {
    if (job.onAbort) job.signal?.removeEventListener("abort", job.onAbort);
    job.onAbort = undefined;
    if (result instanceof LavieError) job.reject(result);
    else job.resolve(result);
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      const free = this.slots.filter((s) => !s.busy);
      if (free.length === 0) return;
      const job = this.queue.shift()!;
      const slot = free.find((s) => s.cached.includes(job.modelPath)) ?? free[0]!;
      slot.busy = true;
      slot.job = job;
      slot.jobId = this.nextId++;
      slot.worker.ref();
      const msg: ToWorker =
        job.kind === "warm"
          ? { type: "warm", id: slot.jobId, modelPath: job.modelPath }
          : { type: "run", id: slot.jobId, modelPath: job.modelPath, feeds: job.feeds };
      slot.worker.postMessage(msg, job.transfer);
    }
  }

  private spawn(): Slot {
    // execArgv is inherited so flags like --enable-source-maps or --conditions carry over.
    const worker = new Worker(ENTRY, { workerData: this.config, execArgv: process.execArgv });
    const slot: Slot = {
      worker,
      busy: false,
      job: undefined,
      jobId: 0,
      cached: [],
      ready: false,
      lastError: undefined,
    };
    worker.unref(); // an idle pool does not keep the process alive; dispatch() refs busy workers
    worker.on("message", (msg: FromWorker) => this.onMessage(slot, msg));
    worker.on("error", (err) => {
      slot.lastError = err;
    });
    worker.on("exit", (code) => this.onExit(slot, code));
    return slot;
  }

  private onMessage(slot: Slot, msg: FromWorker): void {
    if (msg.type === "ready") {
      slot.ready = true;
      return;
    }
    if (msg.id !== slot.jobId) return;
    const job = slot.job;
    slot.busy = false;
    slot.job = undefined;
    slot.cached = msg.cached;
    slot.worker.unref();
    if (msg.cold) this.coldStarts++;
    if (job) {
      if (msg.type === "done") this.settle(job, msg.outputs);
      else this.settle(job, new LavieError(msg.code, msg.message, { field: fieldOf(msg.code) }));
    }
    this.dispatch();
  }

  private onExit(slot: Slot, code: number): void {
    const i = this.slots.indexOf(slot);
    if (this.closed || i < 0) return;
    const why = slot.lastError ? `: ${slot.lastError.message}` : ` with code ${code}`;
    const err = new LavieError("unavailable", `ORT worker exited${why}`, { cause: slot.lastError });
    if (slot.job) this.settle(slot.job, err);
    if (!slot.ready) {
      // It never started: replacing it would loop. Fail everything now and later.
      this.broken = err;
      this.slots.splice(i, 1);
      for (const job of this.queue.splice(0)) this.settle(job, err);
      return;
    }
    this.slots[i] = this.spawn();
    this.dispatch();
  }
}

function cancelled(modelPath: string, when: string): LavieError {
  return new LavieError("cancelled", `run of ${modelPath} cancelled ${when}`);
}

function fieldOf(code: string): string | undefined {
  return code === "invalid_argument" ? "feeds" : code === "not_found" ? "modelPath" : undefined;
}

function checkRequest(modelPath: string, feeds: Record<string, Feed>): void {
  if (typeof modelPath !== "string" || modelPath === "")
    throw invalidArgument("modelPath", "must be a file path");
  for (const [name, f] of Object.entries(feeds)) {
    const field = `feeds.${name}`;
    if (!Array.isArray(f.shape) || !f.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw invalidArgument(field, `shape must be non-negative integers, got ${JSON.stringify(f.shape)}`);
    }
    const want = f.dtype === "float32" ? Float32Array : f.dtype === "int64" ? BigInt64Array : undefined;
    if (!want) throw invalidArgument(field, `dtype must be float32 or int64, got ${String(f.dtype)}`);
    if (!(f.data instanceof want))
      throw invalidArgument(field, `data must be a ${want.name} for dtype ${f.dtype}`);
    const n = f.shape.reduce((a, b) => a * b, 1);
    if (f.data.length !== n) {
      throw invalidArgument(
        field,
        `data has ${f.data.length} elements, shape [${f.shape.join(", ")}] needs ${n}`,
      );
    }
  }
}
