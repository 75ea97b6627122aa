/**
 * Dispatches ready tasks of all jobs to stage runners: one FIFO queue per stage; a task goes to a
 * runner that serves its stage and has a free slot, preferring runners that already hold its
 * networks (warm sessions), then the least loaded. A task whose runner fails or vanishes is retried
 * on another runner (same task, same position-keyed noise, same tile) up to `maxAttempts`; a task
 * that makes no progress for `progressTimeoutMs` is cancelled and moved.
 *
 * CFG gangs (BaseDenoiseTask.cfg, a job with base.cfgParallel): the two members exchange their
 * UNet outputs every step, so they are started together, only when two DISTINCT runners serving the
 * stage have a free slot each; until then both wait in the queue (a cluster with a single base
 * runner keeps such a job's base stage queued, it does not deadlock or fail; it runs as soon as a
 * second base runner registers). If either member's attempt fails, the other is cancelled and both
 * are retried together under a new attempt number (new exchange subjects); a member's output is
 * handed on only once both have succeeded.
 *
 * Quarantine (quarantine.ts): a runner whose attempts keep failing in ways that point at the runner
 * (bad outputs, internal errors, stalls) gets no new tasks for a while; see DispatcherOptions.quarantine.
 */
import { ROOT_CONTEXT, SpanKind, trace } from "@opentelemetry/api";
import { type Clock, systemClock, type Timer } from "../../core/clock.ts";
import { LavieError } from "../../core/errors.ts";
import { fairOrder } from "../../core/scheduling.ts";
import { endSpan, tracer } from "../../core/tracing.ts";
import type { StageName } from "../plan/types.ts";
import type { RunnerClient, RunnerDirectory, RunnerInfo, TaskCall, TensorRef } from "./ports.ts";
import { type QuarantineOptions, QuarantinePolicy, type RunnerFault, runnerFault } from "./quarantine.ts";

export interface DispatcherOptions {
  maxAttempts?: number;
  /** A task attempt with no progress event for this long is cancelled and retried elsewhere. */
  progressTimeoutMs?: number;
  /** A runner that failed a call at the connection level is avoided for this long. */
  suspectMs?: number;
  /** How often queued tasks look for runners again (runners may appear: scale from zero). */
  pollMs?: number;
  /** Told when each task attempt starts and ends (metrics); must not throw. */
  observer?: DispatchObserver;
  /** When a runner that keeps failing gets no new tasks (default: 3 failures in 60 s -> 30 s). */
  quarantine?: QuarantineOptions;
  /** Operational log lines (a runner quarantined); default none. */
  log?: (line: string) => void;
  /** Time and timers: polls, progress deadlines, suspicion and quarantine (default: the system clock). */
  clock?: Clock;
}

/** Hooks for metrics: called synchronously by the dispatcher; exceptions are ignored. */
export interface DispatchObserver {
  attemptStarted?(stage: StageName): void;
  attemptFinished?(stage: StageName, outcome: "ok" | "error" | "cancelled", ms: number): void;
  /** A runner was quarantined (called once per quarantine). */
  runnerQuarantined?(runnerId: string, reason: RunnerFault): void;
}

type Submission = Omit<TaskCall, "attempt" | "signal"> & {
  signal: AbortSignal;
  /** Fair share: tasks of tenants with fewer tasks running go first (default: one shared tenant). */
  tenant?: string;
  /** The job's priority rank (higher first; default 1 = normal). */
  rank?: number;
};

interface Item {
  sub: Submission;
  /** Submit order (ties of the start order; a retried task keeps its place). */
  seq: number;
  /** Calls that never reached their runner (not counted as attempts, but bounded). */
  undelivered: number;
  attempt: number;
  avoid: Set<string>;
  resolve: (ref: TensorRef) => void;
  reject: (err: LavieError) => void;
  gang?: Gang;
}

/** Calls that never reached a runner a task may make per allowed attempt before they count. */
const MAX_UNDELIVERED_PER_ATTEMPT = 5;

/** Members of a CFG gang: one per branch (uncond, cond). */
const GANG_SIZE = 2;

type Outcome = { ok: true; ref: TensorRef } | { ok: false; err: LavieError };

interface Gang {
  key: string;
  /** Members submitted so far; the gang starts once all GANG_SIZE are here. */
  members: Item[];
  attempt: number;
  /** Attempt aborts of the members running now. */
  aborts: AbortController[];
  outcomes: Map<Item, Outcome>;
  /** The first failure of the current attempt (the others are cancellations it caused). */
  failure: LavieError | null;
}

export interface DispatcherStats {
  queued: Record<string, number>;
  inFlight: number;
  dispatched: number;
  retried: number;
  /** Runners quarantined now (no new tasks). */
  quarantined: string[];
  /** Quarantines started since the dispatcher started. */
  quarantines: number;
}

/** Per-stage and per-runner load, read by the autoscaler (coordinator/autoscaler). */
export interface DispatcherLoad {
  /** Tasks waiting for a runner, per stage. */
  queued: Record<string, number>;
  /** Queued tasks that belong to a CFG gang (they need distinct runners), per stage. */
  queuedGang: Record<string, number>;
  /** Tasks running now, per stage. */
  inFlight: Record<string, number>;
  /** Tasks running now, per runner id (runners with none are absent). */
  inFlightByRunner: Record<string, number>;
  /** Jobs with tasks queued or running here. */
  jobs: string[];
  /** Quarantined runners (no new tasks) -> epoch ms their quarantine ends. */
  quarantined?: Record<string, number>;
}

export class Dispatcher {
  private readonly queues = new Map<StageName, Item[]>();
  private readonly inFlight = new Map<string, number>();
  private readonly inFlightStage = new Map<string, number>();
  private readonly inFlightJob = new Map<string, number>();
  private readonly inFlightTenant = new Map<string, number>();
  private readonly lastStarted = new Map<string, number>();
  private seq = 0;
  private readonly suspect = new Map<string, number>();
  private readonly gangs = new Map<string, Gang>();
  private readonly opts: Required<Omit<DispatcherOptions, "observer" | "quarantine" | "log" | "clock">>;
  private readonly quarantine: QuarantinePolicy;
  private readonly log: (line: string) => void;
  private readonly observer: DispatchObserver;
  private readonly clock: Clock;
  /** The next poll of the queues (set while tasks are queued). */
  private timer: Timer | null = null;
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
    this.observer = opts.observer ?? {};
    this.quarantine = new QuarantinePolicy(opts.quarantine);
    this.log = opts.log ?? (() => {});
    this.clock = opts.clock ?? systemClock;
  }

  /** Queues a task; resolves with its output tile once some runner has produced it. */
  submit(sub: Submission): Promise<TensorRef> {
    return new Promise((resolve, reject) => {
      if (sub.signal.aborted) return reject(new LavieError("cancelled", "job cancelled"));
      const onAbort = () => this.dequeue(item);
      const settle = () => sub.signal.removeEventListener("abort", onAbort);
      const item: Item = {
        sub,
        seq: this.seq++,
        undelivered: 0,
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
      const t = sub.task;
      if (t.kind === "base_denoise" && t.cfg) {
        const key = `${sub.jobId}\u0000${t.cfg.gang}`;
        let gang = this.gangs.get(key);
        if (!gang) {
          gang = { key, members: [], attempt: 1, aborts: [], outcomes: new Map(), failure: null };
          this.gangs.set(key, gang);
        }
        gang.members.push(item);
        item.gang = gang;
      }
      this.enqueue(item, false);
      this.pump();
    });
  }

  stats(): DispatcherStats {
    const queued: Record<string, number> = {};
    for (const [stage, q] of this.queues) queued[stage] = q.length;
    let inFlight = 0;
    for (const n of this.inFlight.values()) inFlight += n;
    return {
      queued,
      inFlight,
      dispatched: this.dispatched,
      retried: this.retried,
      quarantined: this.quarantine.list(this.clock.now()).map((q) => q.id),
      quarantines: this.quarantine.total,
    };
  }

  /** A read-only snapshot of the load per stage and per runner. */
  load(): DispatcherLoad {
    const out: DispatcherLoad = { queued: {}, queuedGang: {}, inFlight: {}, inFlightByRunner: {}, jobs: [] };
    const jobs = new Set<string>();
    for (const [stage, q] of this.queues) {
      out.queued[stage] = q.length;
      out.queuedGang[stage] = q.filter((i) => i.gang).length;
      for (const i of q) jobs.add(i.sub.jobId);
    }
    for (const [stage, n] of this.inFlightStage) if (n > 0) out.inFlight[stage] = n;
    for (const [id, n] of this.inFlight) if (n > 0) out.inFlightByRunner[id] = n;
    for (const [id, n] of this.inFlightJob) if (n > 0) jobs.add(id);
    out.jobs = [...jobs];
    out.quarantined = Object.fromEntries(
      this.quarantine.list(this.clock.now()).map((q) => [q.id, q.untilMs]),
    );
    return out;
  }

  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.timer = null;
  }

  private enqueue(item: Item, front: boolean): void {
    const stage = item.sub.task.stage;
    const q = this.queues.get(stage) ?? [];
    if (front) q.unshift(item);
    else q.push(item);
    this.queues.set(stage, q);
    this.poll();
  }

  /** Queued tasks look for runners again every pollMs while any wait (runners may appear). */
  private poll(): void {
    if (this.timer || this.closed) return;
    this.timer = this.clock
      .setTimeout(() => {
        this.timer = null;
        this.pump();
      }, this.opts.pollMs)
      .unref();
  }

  private dequeue(item: Item): void {
    const q = this.queues.get(item.sub.task.stage);
    const i = q?.indexOf(item) ?? -1;
    if (q && i >= 0) {
      q.splice(i, 1);
      if (item.gang) this.gangs.delete(item.gang.key);
      item.reject(new LavieError("cancelled", "job cancelled"));
    }
  }

  /** Distinct runners for all members of a gang, or null when there are not enough free ones. */
  private pickGang(members: readonly Item[], live: RunnerInfo[]): RunnerInfo[] | null {
    const chosen: RunnerInfo[] = [];
    for (const m of members) {
      const r = this.pick(
        m,
        live.filter((x) => !chosen.some((c) => c.id === x.id)),
      );
      if (!r) return null;
      chosen.push(r);
    }
    return chosen;
  }

  private pick(item: Item, live: RunnerInfo[]): RunnerInfo | null {
    const now = this.clock.now();
    const t = item.sub.task;
    const candidates = live.filter(
      (r) =>
        r.stages.includes(t.stage) &&
        (this.inFlight.get(r.id) ?? 0) < r.slots &&
        (this.suspect.get(r.id) ?? 0) < now &&
        !this.quarantine.isQuarantined(r.id, now),
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
    for (const [stage, unordered] of this.queues) {
      // Start order: priority, then fair share between tenants, then submit order (core/scheduling).
      const q = fairOrder(
        unordered.map((item) => ({
          item,
          tenant: item.sub.tenant ?? "",
          rank: item.sub.rank ?? 1,
          seq: item.seq,
        })),
        this.inFlightTenant,
        this.lastStarted,
      ).map((e) => e.item);
      this.queues.set(stage, q);
      for (let i = 0; i < q.length; ) {
        const item = q[i]!;
        const gang = item.gang;
        if (gang) {
          const runners = gang.members.length === GANG_SIZE ? this.pickGang(gang.members, live) : null;
          if (!runners) {
            i++;
            continue;
          }
          for (const m of gang.members) {
            const j = q.indexOf(m);
            if (j < 0) continue;
            q.splice(j, 1);
            if (j < i) i--;
          }
          gang.aborts = [];
          gang.outcomes.clear();
          gang.failure = null;
          for (const [k, m] of gang.members.entries()) this.start(m, runners[k]!);
          continue;
        }
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
    if (queuedTotal > 0) this.poll();
    else {
      this.timer?.cancel();
      this.timer = null;
    }
  }

  private start(item: Item, runner: RunnerInfo): void {
    this.inFlight.set(runner.id, (this.inFlight.get(runner.id) ?? 0) + 1);
    const stage = item.sub.task.stage;
    this.inFlightStage.set(stage, (this.inFlightStage.get(stage) ?? 0) + 1);
    this.inFlightJob.set(item.sub.jobId, (this.inFlightJob.get(item.sub.jobId) ?? 0) + 1);
    const tenant = item.sub.tenant ?? "";
    this.inFlightTenant.set(tenant, (this.inFlightTenant.get(tenant) ?? 0) + 1);
    this.lastStarted.set(tenant, this.dispatched);
    this.dispatched++;
    const attemptAbort = new AbortController();
    item.gang?.aborts.push(attemptAbort);
    const onJobAbort = () => attemptAbort.abort();
    item.sub.signal.addEventListener("abort", onJobAbort, { once: true });
    let stalled = false;
    let watchdog: Timer | undefined;
    const t0 = performance.now();
    this.observe(() => this.observer.attemptStarted?.(stage));
    const parent = item.sub.traceContext ?? ROOT_CONTEXT;
    const span = tracer().startSpan(
      `dispatch ${stage} task`,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          "lavie.job_id": item.sub.jobId,
          "lavie.task_id": item.sub.task.id,
          "lavie.stage": stage,
          "lavie.attempt": item.attempt,
          "lavie.runner_id": runner.id,
        },
      },
      parent,
    );
    const settled = (outcome: "ok" | "error" | "cancelled", err?: unknown) => {
      this.observe(() => this.observer.attemptFinished?.(stage, outcome, performance.now() - t0));
      if (outcome === "cancelled") span.setAttribute("lavie.cancelled", true);
      endSpan(span, outcome === "error" ? err : undefined);
    };
    const arm = () => {
      watchdog?.cancel();
      watchdog = this.clock.setTimeout(() => {
        stalled = true;
        attemptAbort.abort();
      }, this.opts.progressTimeoutMs);
    };
    arm();
    const call: TaskCall = {
      ...item.sub,
      // One object per attempt: an abandoned attempt that still writes late (a stalled or
      // cancelled runner) can never replace an output already checked and accepted.
      outputObject: `${item.sub.outputObject}.${item.attempt}`,
      attempt: item.attempt,
      signal: attemptAbort.signal,
      traceContext: trace.setSpan(parent, span),
      onProgress: (done, total) => {
        arm();
        item.sub.onProgress(done, total);
      },
    };
    this.client.execute(runner, call).then(
      (ref) => {
        settled("ok");
        this.quarantine.success(runner.id);
        this.finish(runner, watchdog, item, onJobAbort);
        if (item.gang) return this.gangSettled(item, { ok: true, ref });
        item.resolve(ref);
      },
      (err: unknown) => {
        settled(attemptAbort.signal.aborted && !stalled ? "cancelled" : "error", err);
        this.finish(runner, watchdog, item, onJobAbort);
        if (item.gang?.failure) {
          // Cancelled because its peer failed: that failure decides the gang's retry.
          return this.gangSettled(item, { ok: false, err: LavieError.from(err) });
        }
        if (item.sub.signal.aborted) {
          if (item.gang) return this.gangSettled(item, { ok: false, err: LavieError.from(err) });
          return item.reject(new LavieError("cancelled", "job cancelled"));
        }
        let e = LavieError.from(err);
        if (stalled) {
          e = new LavieError(
            "deadline_exceeded",
            `task ${item.sub.task.id} made no progress on runner ${runner.id}`,
          );
        }
        if (e.code === "unavailable" || stalled)
          this.suspect.set(runner.id, this.clock.now() + this.opts.suspectMs);
        this.runnerFailed(runner, e, stalled);
        if (
          !item.gang &&
          !stalled &&
          e.undelivered &&
          item.undelivered++ < MAX_UNDELIVERED_PER_ATTEMPT * this.opts.maxAttempts
        ) {
          // The runner was gone before the call reached it: not an attempt of the task (bounded, so
          // a runner listed but never reachable cannot keep a task forever).
          item.avoid.add(runner.id);
          this.enqueue(item, true);
          this.pump();
          return;
        }
        if (item.gang) {
          item.avoid.add(runner.id);
          return this.gangSettled(item, { ok: false, err: e });
        }
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

  /** One gang member's attempt ended; once all have, the gang succeeds, retries or fails together. */
  private gangSettled(item: Item, outcome: Outcome): void {
    const gang = item.gang!;
    gang.outcomes.set(item, outcome);
    if (!outcome.ok && !gang.failure) {
      gang.failure = outcome.err;
      for (const a of gang.aborts) a.abort(); // the peers would wait for this member's outputs
    }
    if (gang.outcomes.size < gang.members.length) return;
    const failure = gang.failure;
    if (!failure) {
      this.gangs.delete(gang.key);
      for (const m of gang.members) {
        const o = gang.outcomes.get(m)!;
        if (o.ok) m.resolve(o.ref);
      }
      return;
    }
    if (gang.members.some((m) => m.sub.signal.aborted)) {
      this.gangs.delete(gang.key);
      for (const m of gang.members) m.reject(new LavieError("cancelled", "job cancelled"));
      return;
    }
    if (failure.retryable && gang.attempt < this.opts.maxAttempts) {
      this.retried++;
      gang.attempt++;
      const avoid = new Set(gang.members.flatMap((m) => [...m.avoid]));
      for (const m of [...gang.members].reverse()) {
        m.attempt = gang.attempt;
        m.avoid = new Set(avoid);
        this.enqueue(m, true);
      }
      this.pump();
      return;
    }
    this.gangs.delete(gang.key);
    for (const m of gang.members) {
      m.reject(
        new LavieError(
          failure.code,
          `task ${m.sub.task.id} (CFG gang ${m.gang!.key.split("\u0000")[1]}) failed after ${gang.attempt} attempt(s): ${failure.message}`,
          { retryable: false },
        ),
      );
    }
  }

  /** Counts an attempt failure against its runner when it points at the runner; may quarantine it. */
  private runnerFailed(runner: RunnerInfo, e: LavieError, stalled: boolean): void {
    const fault = runnerFault(e.code, stalled);
    if (!fault) return;
    const q = this.quarantine.failure(runner.id, fault, this.clock.now());
    if (!q) return;
    this.log(
      `runner ${runner.id} quarantined for ${this.quarantine.quarantineMs} ms after ${this.quarantine.failures} failures (last: ${fault}: ${e.message})`,
    );
    this.observe(() => this.observer.runnerQuarantined?.(runner.id, fault));
  }

  private observe(fn: () => void): void {
    try {
      fn();
    } catch {
      // an observer never affects dispatching
    }
  }

  private finish(runner: RunnerInfo, watchdog: Timer | undefined, item: Item, onJobAbort: () => void): void {
    watchdog?.cancel();
    item.sub.signal.removeEventListener("abort", onJobAbort);
    this.inFlight.set(runner.id, Math.max(0, (this.inFlight.get(runner.id) ?? 1) - 1));
    const stage = item.sub.task.stage;
    this.inFlightStage.set(stage, Math.max(0, (this.inFlightStage.get(stage) ?? 1) - 1));
    const jobLeft = (this.inFlightJob.get(item.sub.jobId) ?? 1) - 1;
    if (jobLeft > 0) this.inFlightJob.set(item.sub.jobId, jobLeft);
    else this.inFlightJob.delete(item.sub.jobId);
    const tenant = item.sub.tenant ?? "";
    const tenantLeft = (this.inFlightTenant.get(tenant) ?? 1) - 1;
    if (tenantLeft > 0) this.inFlightTenant.set(tenant, tenantLeft);
    else this.inFlightTenant.delete(tenant);
    queueMicrotask(() => this.pump());
  }
}
