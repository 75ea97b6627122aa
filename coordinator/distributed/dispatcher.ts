/**
 * Dispatches ready tasks of all jobs to stage runners: one FIFO queue per stage; a task goes to a
 * runner that serves its stage and has a free slot, preferring runners that already hold its
 * networks (warm sessions), then the least loaded. A task whose runner fails or vanishes is retried
 * on another runner (same task, same position-keyed noise, same tile) up to `maxAttempts`; a task
 * that makes no progress for `progressTimeoutMs` is cancelled and moved.
 */
import { LavieError } from "../../core/errors.ts";
import type { StageName } from "../plan/types.ts";
import type { RunnerClient, RunnerDirectory, RunnerInfo, TaskCall, TensorRef } from "./ports.ts";

export interface DispatcherOptions {
  maxAttempts?: number;
  /** A task attempt with no progress event for this long is cancelled and retried elsewhere. */
  progressTimeoutMs?: number;
  /** A runner that failed a call at the connection level is avoided for this long. */
  suspectMs?: number;
  /** How often queued tasks look for runners again (runners may appear: scale from zero). */
  pollMs?: number;
}

type Submission = Omit<TaskCall, "attempt" | "signal"> & { signal: AbortSignal };

interface Item {
  sub: Submission;
  attempt: number;
  avoid: Set<string>;
  resolve: (ref: TensorRef) => void;
  reject: (err: LavieError) => void;
}

export interface DispatcherStats {
  queued: Record<string, number>;
  inFlight: number;
  dispatched: number;
  retried: number;
}

export class Dispatcher {
  private readonly queues = new Map<StageName, Item[]>();
  private readonly inFlight = new Map<string, number>();
  private readonly suspect = new Map<string, number>();
  private readonly opts: Required<DispatcherOptions>;
  private timer: NodeJS.Timeout | null = null;
  private dispatched = 0;
  private retried = 0;
  private closed = false;

  constructor(
    private readonly runners: RunnerDirectory,
    private readonly client: RunnerClient,
    opts: DispatcherOptions = {},
  ) {
    this.opts = {
      maxAttempts: opts.maxAttempts ?? 4,
      progressTimeoutMs: opts.progressTimeoutMs ?? 120_000,
      suspectMs: opts.suspectMs ?? 5_000,
      pollMs: opts.pollMs ?? 100,
    };
  }

  /** Queues a task; resolves with its output tile once some runner has produced it. */
  submit(sub: Submission): Promise<TensorRef> {
    return new Promise((resolve, reject) => {
      if (sub.signal.aborted) return reject(new LavieError("cancelled", "job cancelled"));
      const onAbort = () => this.dequeue(item);
      const settle = () => sub.signal.removeEventListener("abort", onAbort);
      const item: Item = {
        sub,
        attempt: 1,
        avoid: new Set(),
        resolve: (ref) => {
          settle();
          resolve(ref);
        },
        reject: (err) => {
          settle();
          reject(err);
        },
      };
      sub.signal.addEventListener("abort", onAbort, { once: true });
      this.enqueue(item, false);
      this.pump();
    });
  }

  stats(): DispatcherStats {
    const queued: Record<string, number> = {};
    for (const [stage, q] of this.queues) queued[stage] = q.length;
    let inFlight = 0;
    for (const n of this.inFlight.values()) inFlight += n;
    return { queued, inFlight, dispatched: this.dispatched, retried: this.retried };
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private enqueue(item: Item, front: boolean): void {
    const stage = item.sub.task.stage;
    const q = this.queues.get(stage) ?? [];
    if (front) q.unshift(item);
    else q.push(item);
    this.queues.set(stage, q);
    if (!this.timer && !this.closed) {
      this.timer = setInterval(() => this.pump(), this.opts.pollMs);
      this.timer.unref();
    }
  }

  private dequeue(item: Item): void {
    const q = this.queues.get(item.sub.task.stage);
    const i = q?.indexOf(item) ?? -1;
    if (q && i >= 0) {
      q.splice(i, 1);
      item.reject(new LavieError("cancelled", "job cancelled"));
    }
  }

  private pick(item: Item, live: RunnerInfo[]): RunnerInfo | null {
    const now = Date.now();
    const t = item.sub.task;
    const candidates = live.filter(
      (r) =>
        r.stages.includes(t.stage) &&
        (this.inFlight.get(r.id) ?? 0) < r.slots &&
        (this.suspect.get(r.id) ?? 0) < now,
    );
    // Avoid runners this task already failed on, unless they are the only ones left.
    const fresh = candidates.filter((r) => !item.avoid.has(r.id));
    const pool = fresh.length > 0 ? fresh : candidates;
    let best: RunnerInfo | null = null;
    let bestScore = -Infinity;
    for (const r of pool) {
      const warm = t.networks.every((n) => r.models.includes(n)) ? 1 : 0;
      const load = (this.inFlight.get(r.id) ?? 0) / Math.max(1, r.slots);
      const score = warm * 10 - load;
      if (score > bestScore) {
        best = r;
        bestScore = score;
      }
    }
    return best;
  }

  private pump(): void {
    if (this.closed) return;
    const live = this.runners.list();
    let queuedTotal = 0;
    for (const q of this.queues.values()) {
      for (let i = 0; i < q.length; ) {
        const item = q[i]!;
        const runner = this.pick(item, live);
        if (!runner) {
          i++;
          continue;
        }
        q.splice(i, 1);
        this.start(item, runner);
      }
      queuedTotal += q.length;
    }
    if (queuedTotal === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  private start(item: Item, runner: RunnerInfo): void {
    this.inFlight.set(runner.id, (this.inFlight.get(runner.id) ?? 0) + 1);
    this.dispatched++;
    const attemptAbort = new AbortController();
    const onJobAbort = () => attemptAbort.abort();
    item.sub.signal.addEventListener("abort", onJobAbort, { once: true });
    let stalled = false;
    let watchdog: NodeJS.Timeout;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        stalled = true;
        attemptAbort.abort();
      }, this.opts.progressTimeoutMs);
    };
    arm();
    const call: TaskCall = {
      ...item.sub,
      attempt: item.attempt,
      signal: attemptAbort.signal,
      onProgress: (done, total) => {
        arm();
        item.sub.onProgress(done, total);
      },
    };
    this.client.execute(runner, call).then(
      (ref) => {
        this.finish(runner, watchdog, item, onJobAbort);
        item.resolve(ref);
      },
      (err: unknown) => {
        this.finish(runner, watchdog, item, onJobAbort);
        if (item.sub.signal.aborted) return item.reject(new LavieError("cancelled", "job cancelled"));
        let e = LavieError.from(err);
        if (stalled) {
          e = new LavieError(
            "deadline_exceeded",
            `task ${item.sub.task.id} made no progress on runner ${runner.id}`,
          );
        }
        if (e.code === "unavailable" || stalled)
          this.suspect.set(runner.id, Date.now() + this.opts.suspectMs);
        if (e.retryable && item.attempt < this.opts.maxAttempts) {
          this.retried++;
          item.attempt++;
          item.avoid.add(runner.id);
          this.enqueue(item, true);
          this.pump();
          return;
        }
        item.reject(
          new LavieError(
            e.code,
            `task ${item.sub.task.id} failed after ${item.attempt} attempt(s): ${e.message}`,
            {
              retryable: false,
            },
          ),
        );
      },
    );
  }

  private finish(runner: RunnerInfo, watchdog: NodeJS.Timeout, item: Item, onJobAbort: () => void): void {
    clearTimeout(watchdog);
    item.sub.signal.removeEventListener("abort", onJobAbort);
    this.inFlight.set(runner.id, Math.max(0, (this.inFlight.get(runner.id) ?? 1) - 1));
    queueMicrotask(() => this.pump());
  }
}
