/**
 * The coordinator's job lifecycle: submit (validated once, idempotent by key per tenant, admitted
 * only while the bounded queues have room) -> queued (started by priority, then fairly between
 * tenants, then in submit order; at most `maxRunningJobs` running) -> running (the plan's tasks
 * dispatched as their inputs become ready; every finished tile's reference is persisted) ->
 * succeeded (MP4 stored) | failed (a task failed for good, or the job's deadline passed) | cancelled.
 * Job records live in the job store, so a restarted coordinator resumes unfinished jobs and reruns
 * only tasks whose outputs were not recorded.
 *
 * Admission control: at most `maxQueuedJobs` jobs wait in the queue, and at most
 * `maxQueuedPerTenant` of one tenant; past either, submit() throws resource_exhausted with a retry
 * hint (retryAfterMs: the expected time for a start slot, from recent job durations). A retried
 * submit with an idempotency key already accepted returns its job even when the queue is full.
 */
import { randomUUID } from "node:crypto";
import { setMaxListeners } from "node:events";
import { type Context, type Span, trace } from "@opentelemetry/api";
import { type Clock, systemClock, type Timer } from "../../core/clock.ts";
import { LavieError } from "../../core/errors.ts";
import type { JobRequest, ModelLimits } from "../../core/job.ts";
import { resolveJob } from "../../core/job.ts";
import { fairOrder } from "../../core/scheduling.ts";
import { DEFAULT_TENANT, PRIORITY_RANK, type Priority } from "../../core/tenancy.ts";
import { contextFromTraceparent, endSpan, tracer } from "../../core/tracing.ts";
import { type PlanModelInfo, planJob } from "../plan/plan.ts";
import { readsOf } from "../plan/reads.ts";
import type { Plan, StageName, Task } from "../plan/types.ts";
import type { Dispatcher } from "./dispatcher.ts";
import type { JobRecord, JobStorePort, TaskInput, TensorRef, TensorStorePort, VideoResult } from "./ports.ts";
import { TERMINAL } from "./ports.ts";
import { storeResultVideo } from "./result.ts";

export type JobEvent =
  | { type: "queued"; position: number }
  | { type: "stage_started"; stage: StageName }
  | { type: "stage_finished"; stage: StageName; ms: number }
  | { type: "task_progress"; taskId: string; stage: StageName; step: number; total: number }
  | { type: "done"; result: VideoResult }
  | { type: "failed"; reason: string }
  | { type: "cancelled" };

export interface StageProgress {
  stage: StageName;
  /** A task of the stage has been dispatched. */
  started: boolean;
  stepsDone: number;
  stepsTotal: number;
  tasksDone: number;
  tasksTotal: number;
}

export interface JobManagerOptions {
  maxRunningJobs?: number;
  /** Jobs waiting to start, all tenants together (default 1000). */
  maxQueuedJobs?: number;
  /** Jobs of one tenant waiting to start (default 100). */
  maxQueuedPerTenant?: number;
  /** Finished jobs whose progress stays readable in memory (default 256; older ones: the store's record). */
  recentFinished?: number;
  /** Keep a succeeded job's intermediate tiles in the data plane (debugging, tests). */
  keepTensors?: boolean;
  /** Operational log lines (a job record that could not be written); default none. */
  log?(line: string): void;
  /** Called when admission control refuses a submit (metrics); must not throw. */
  onRefused?(queue: "tenant" | "global"): void;
  /** Called once when a job reaches a terminal state, with its submit-to-end latency (metrics). */
  onJobFinished?(state: "succeeded" | "failed" | "cancelled", ms: number): void;
  /** Time and timers: record times, deadlines, the late sweep (default: the system clock). */
  clock?: Clock;
}

export interface SubmitOptions {
  /** Retrying a submit with the same key (same tenant) returns the same job. */
  idempotencyKey?: string;
  /** The submit span's context (W3C), kept in the record for the job's later spans. */
  traceparent?: string;
  tenant?: string;
  priority?: Priority;
  /** The job fails if not finished this many ms after submit (0 or absent: no deadline). */
  deadlineMs?: number;
}

/** Longest accepted job deadline: 7 days. */
export const MAX_DEADLINE_MS = 7 * 86_400_000;

/** Priority rank and tenant of a record (older records: normal, the default tenant). */
export const tenantOf = (r: JobRecord): string => r.tenant ?? DEFAULT_TENANT;
const rankOf = (r: JobRecord): number => PRIORITY_RANK[r.priority ?? "normal"];

interface Live {
  record: JobRecord;
  /** Submit order in this process (queue order ties). */
  seq: number;
  /** Position last announced to watchers (0: not queued). */
  position: number;
  deadlineTimer?: Timer;
  abort: AbortController;
  /** Set by cancel(): an abort that is not a failure. */
  cancelled: boolean;
  listeners: Set<(e: JobEvent) => void>;
  progress: Map<StageName, StageProgress & { startMs: number | null; taskSteps: Map<string, number> }>;
  saving: Promise<void>;
  /** The job's spans while it runs: "job" (child of the submit span) and one per started stage. */
  spans?: { job: Span; ctx: Context; stages: Map<StageName, Span> };
}

/** When a cancelled or failed job's objects are swept a second time. */
export const LATE_SWEEP_MS = 2_000;

export class JobManager {
  private readonly live = new Map<string, Live>();
  /** Queued job ids (insertion order = submit order). */
  private readonly queued = new Set<string>();
  /** Start order of the queued jobs, recomputed when the queue changes (null: stale). */
  private order: string[] | null = null;
  private running = 0;
  private readonly runningByTenant = new Map<string, number>();
  /** When each tenant last had a job started (a counter), for round-robin between tenants. */
  private readonly lastStarted = new Map<string, number>();
  private starts = 0;
  /** Submits between the admission check and the enqueue, per tenant (so concurrent submits count). */
  private readonly admitting = new Map<string, number>();
  private admittingTotal = 0;
  private seq = 0;
  /** Recent finished jobs' run time (ms, exponential average), for retry hints. */
  private jobMsAverage = 0;
  private readonly finished: string[] = [];
  private readonly maxRunning: number;
  private readonly maxQueued: number;
  private readonly maxQueuedPerTenant: number;
  private readonly recentFinished: number;
  private readonly keepTensors: boolean;
  private readonly onJobFinished: JobManagerOptions["onJobFinished"];
  private readonly onRefused: JobManagerOptions["onRefused"];
  private readonly log: (line: string) => void;
  private readonly clock: Clock;

  constructor(
    private readonly limits: ModelLimits,
    private readonly info: PlanModelInfo,
    private readonly jobs: JobStorePort,
    private readonly tensors: TensorStorePort,
    private readonly dispatcher: Dispatcher,
    opts: JobManagerOptions = {},
  ) {
    this.maxRunning = Math.max(1, opts.maxRunningJobs ?? 4);
    this.maxQueued = Math.max(0, opts.maxQueuedJobs ?? 1000);
    this.maxQueuedPerTenant = Math.max(0, opts.maxQueuedPerTenant ?? 100);
    this.recentFinished = Math.max(0, opts.recentFinished ?? 256);
    this.keepTensors = opts.keepTensors ?? false;
    this.onJobFinished = opts.onJobFinished;
    this.onRefused = opts.onRefused;
    this.log = opts.log ?? (() => {});
    this.clock = opts.clock ?? systemClock;
  }

  /** Loads unfinished jobs from the job store and queues them again (after a restart). */
  async resume(): Promise<number> {
    const records = (await this.jobs.list()).filter((r) => !TERMINAL.has(r.state));
    records.sort(
      (a, b) =>
        (a.state === "running" ? 0 : 1) - (b.state === "running" ? 0 : 1) || a.createdMs - b.createdMs,
    );
    for (const r of records) this.enqueue(r);
    return records.length;
  }

  async submit(
    request: JobRequest,
    opts: SubmitOptions = {},
  ): Promise<{ record: JobRecord; created: boolean }> {
    const idempotencyKey = opts.idempotencyKey ?? "";
    if (idempotencyKey.length > 128) {
      throw new LavieError("invalid_argument", "idempotency_key: must be at most 128 characters", {
        field: "idempotency_key",
      });
    }
    const deadlineMs = opts.deadlineMs ?? 0;
    if (!Number.isFinite(deadlineMs) || deadlineMs < 0 || deadlineMs > MAX_DEADLINE_MS) {
      throw new LavieError(
        "invalid_argument",
        `deadline_seconds: must be 0 (none) or a number of seconds up to ${MAX_DEADLINE_MS / 1000}`,
        { field: "deadline_seconds" },
      );
    }
    const tenant = opts.tenant ?? DEFAULT_TENANT;
    const spec = resolveJob(request, this.limits);
    const id = randomUUID();
    // Keys are per tenant: another tenant's key never returns (or reveals) someone else's job.
    const key = !idempotencyKey
      ? ""
      : tenant === DEFAULT_TENANT
        ? idempotencyKey
        : `${tenant}\u0000${idempotencyKey}`;
    const refusal = this.admissionRefusal(tenant);
    if (refusal) {
      try {
        this.onRefused?.(refusal.scope);
      } catch {
        // metrics never affect admission
      }
      // A retry of a submit accepted earlier still gets its job.
      if (key) {
        const existing = await this.jobs.claim(key, id);
        if (existing) return { record: await this.waitForRecord(existing), created: false };
        await this.jobs.release(key).catch(() => {});
      }
      throw refusal.error;
    }
    this.admitting.set(tenant, (this.admitting.get(tenant) ?? 0) + 1);
    this.admittingTotal++;
    let reserved = true;
    try {
      if (key) {
        const existing = await this.jobs.claim(key, id);
        if (existing) {
          const record = await this.waitForRecord(existing);
          return { record, created: false };
        }
      }
      const now = this.clock.now();
      const record: JobRecord = {
        id,
        state: "queued",
        request,
        spec,
        idempotencyKey,
        createdMs: now,
        updatedMs: now,
        done: {},
        result: null,
        error: "",
        tenant,
        priority: opts.priority ?? "normal",
        ...(deadlineMs > 0 && { deadlineUnixMs: now + deadlineMs }),
        ...(opts.traceparent ? { traceparent: opts.traceparent } : {}),
      };
      await this.jobs.put(record);
      reserved = false;
      this.release(tenant);
      this.enqueue(record);
      return { record, created: true };
    } finally {
      if (reserved) this.release(tenant);
    }
  }

  private release(tenant: string): void {
    const n = (this.admitting.get(tenant) ?? 0) - 1;
    if (n > 0) this.admitting.set(tenant, n);
    else this.admitting.delete(tenant);
    this.admittingTotal = Math.max(0, this.admittingTotal - 1);
  }

  /** Why a submit of `tenant` is refused now (which queue is full, and the error), or null. */
  private admissionRefusal(tenant: string): { scope: "tenant" | "global"; error: LavieError } | null {
    const total = this.queued.size + this.admittingTotal;
    let mine = this.admitting.get(tenant) ?? 0;
    for (const id of this.queued) if (tenantOf(this.live.get(id)!.record) === tenant) mine++;
    const hint = (ahead: number) => {
      // The expected wait for a start slot: jobs ahead / parallel slots x recent job time.
      const per = this.jobMsAverage > 0 ? this.jobMsAverage : 10_000;
      return Math.round(Math.min(300_000, Math.max(1_000, (per * Math.max(1, ahead)) / this.maxRunning)));
    };
    if (total >= this.maxQueued) {
      const ms = hint(total - this.maxQueued + 1);
      const error = new LavieError(
        "resource_exhausted",
        `the coordinator's queue is full (${total} jobs waiting, limit ${this.maxQueued}); retry in ${Math.ceil(ms / 1000)} s`,
        { retryable: true, retryAfterMs: ms },
      );
      return { scope: "global", error };
    }
    if (mine >= this.maxQueuedPerTenant) {
      const ms = hint(mine - this.maxQueuedPerTenant + 1);
      const error = new LavieError(
        "resource_exhausted",
        `tenant "${tenant}" has ${mine} jobs waiting (limit ${this.maxQueuedPerTenant}); retry in ${Math.ceil(ms / 1000)} s`,
        { retryable: true, retryAfterMs: ms },
      );
      return { scope: "tenant", error };
    }
    return null;
  }

  /** A key claimed by a concurrent submit may point at a record not written yet: wait briefly. */
  private async waitForRecord(id: string): Promise<JobRecord> {
    for (let i = 0; i < 50; i++) {
      const r = this.live.get(id)?.record ?? (await this.jobs.get(id));
      if (r) return r;
      await this.clock.sleep(20);
    }
    throw new LavieError("unavailable", `job ${id} for this idempotency key is not readable yet; retry`);
  }

  async get(id: string): Promise<JobRecord> {
    const r = this.live.get(id)?.record ?? (await this.jobs.get(id));
    if (!r) throw new LavieError("not_found", `job_id: no job "${id}"`, { field: "job_id" });
    return r;
  }

  /** Jobs of `tenant` (all tenants when null), oldest first. */
  async list(tenant: string | null = null): Promise<JobRecord[]> {
    const stored = await this.jobs.list();
    return stored
      .map((r) => this.live.get(r.id)?.record ?? r)
      .filter((r) => tenant === null || tenantOf(r) === tenant)
      .sort((a, b) => a.createdMs - b.createdMs);
  }

  /** 1-based place in the start order while queued; 0 otherwise. */
  queuePosition(id: string): number {
    if (!this.queued.has(id)) return 0;
    return this.startOrder().indexOf(id) + 1;
  }

  /** Queue and running counts (metrics, admission tests). */
  queueStats(): { queued: number; running: number; queuedByTenant: Record<string, number> } {
    const queuedByTenant: Record<string, number> = {};
    for (const id of this.queued) {
      const t = tenantOf(this.live.get(id)!.record);
      queuedByTenant[t] = (queuedByTenant[t] ?? 0) + 1;
    }
    return { queued: this.queued.size, running: this.running, queuedByTenant };
  }

  private startOrder(): string[] {
    if (!this.order) {
      const entries = [...this.queued].map((id) => {
        const l = this.live.get(id)!;
        return { id, tenant: tenantOf(l.record), rank: rankOf(l.record), seq: l.seq };
      });
      this.order = fairOrder(entries, this.runningByTenant, this.lastStarted).map((e) => e.id);
    }
    return this.order;
  }

  progress(id: string): StageProgress[] {
    const l = this.live.get(id);
    if (!l) return [];
    return [...l.progress.values()].map(
      ({ stage, startMs, stepsDone, stepsTotal, tasksDone, tasksTotal }) => ({
        stage,
        started: startMs !== null,
        stepsDone,
        stepsTotal,
        tasksDone,
        tasksTotal,
      }),
    );
  }

  async cancel(id: string): Promise<JobRecord> {
    const record = await this.get(id);
    if (TERMINAL.has(record.state)) return record;
    const l = this.live.get(id);
    this.dequeue(id);
    if (l) {
      l.cancelled = true;
      l.abort.abort();
    }
    await this.finish(record, "cancelled", "");
    return record;
  }

  /** Subscribes to a job's events; returns an unsubscribe function. */
  subscribe(id: string, fn: (e: JobEvent) => void): () => void {
    const l = this.live.get(id);
    if (!l) return () => {};
    l.listeners.add(fn);
    return () => l.listeners.delete(fn);
  }

  private emit(l: Live, e: JobEvent): void {
    for (const fn of l.listeners) {
      try {
        fn(e);
      } catch {
        // a failing watcher never affects the job
      }
    }
  }

  private enqueue(record: JobRecord): void {
    const abort = new AbortController();
    // Every queued and running task of the job listens to this signal: often more than 10.
    setMaxListeners(0, abort.signal);
    const l: Live = {
      record,
      seq: this.seq++,
      position: 0,
      abort,
      cancelled: false,
      listeners: new Set(),
      progress: new Map(),
      saving: Promise.resolve(),
    };
    this.live.set(record.id, l);
    if (record.deadlineUnixMs) {
      const left = record.deadlineUnixMs - this.clock.now();
      l.deadlineTimer = this.clock.setTimeout(() => void this.expire(l), Math.max(0, left)).unref();
    }
    this.queued.add(record.id);
    this.order = null;
    this.startNext();
  }

  private dequeue(id: string): void {
    if (this.queued.delete(id)) {
      this.order = null;
      this.announcePositions();
    }
  }

  /** The deadline passed: a queued or running job fails (its tasks are stopped). */
  private async expire(l: Live): Promise<void> {
    const r = l.record;
    if (TERMINAL.has(r.state)) return;
    this.dequeue(r.id);
    l.cancelled = true; // run() must not record the aborted tasks' errors as the reason
    l.abort.abort();
    const secs = ((r.deadlineUnixMs ?? 0) - r.createdMs) / 1000;
    await this.finish(
      r,
      "failed",
      `deadline exceeded: the job did not finish within ${secs} s of its submission`,
    );
  }

  private startNext(): void {
    let started = false;
    while (this.running < this.maxRunning && this.queued.size > 0) {
      const id = this.startOrder()[0]!;
      this.queued.delete(id);
      this.order = null;
      const l = this.live.get(id);
      if (!l || TERMINAL.has(l.record.state)) continue;
      started = true;
      l.position = 0;
      const tenant = tenantOf(l.record);
      this.running++;
      this.runningByTenant.set(tenant, (this.runningByTenant.get(tenant) ?? 0) + 1);
      this.lastStarted.set(tenant, this.starts++);
      const t0 = this.clock.now();
      void this.run(l).finally(() => {
        this.running--;
        const n = (this.runningByTenant.get(tenant) ?? 1) - 1;
        if (n > 0) this.runningByTenant.set(tenant, n);
        else this.runningByTenant.delete(tenant);
        const ms = this.clock.now() - t0;
        this.jobMsAverage = this.jobMsAverage === 0 ? ms : 0.8 * this.jobMsAverage + 0.2 * ms;
        this.order = null;
        this.startNext();
      });
    }
    if (started || this.queued.size > 0) this.announcePositions();
  }

  /** Tells each queued job's watchers its place in the start order when it changed. */
  private announcePositions(): void {
    const order = this.startOrder();
    for (const [i, id] of order.entries()) {
      const l = this.live.get(id);
      if (l && l.position !== i + 1) {
        l.position = i + 1;
        this.emit(l, { type: "queued", position: i + 1 });
      }
    }
  }

  private save(l: Live): Promise<void> {
    l.record.updatedMs = this.clock.now();
    const snapshot = structuredClone(l.record);
    // The job goes on from memory; a later save carries this one's content. A record that cannot
    // be written at all (e.g. over the NATS message limit) would not survive a restart: say so.
    l.saving = l.saving
      .then(() => this.jobs.put(snapshot))
      .catch((err: unknown) => {
        const e = LavieError.from(err);
        this.log(`job ${snapshot.id}: record not saved (${e.code}): ${e.message}`);
      });
    return l.saving;
  }

  private async finish(
    record: JobRecord,
    state: "succeeded" | "failed" | "cancelled",
    error: string,
  ): Promise<void> {
    if (TERMINAL.has(record.state)) return;
    const l = this.live.get(record.id);
    l?.deadlineTimer?.cancel();
    record.state = state;
    record.error = error;
    try {
      this.onJobFinished?.(state, this.clock.now() - record.createdMs);
    } catch {
      // metrics never affect the job
    }
    if (l?.spans) {
      const failure = state === "failed" ? new Error(error) : undefined;
      for (const sp of l.spans.stages.values()) endSpan(sp, failure);
      l.spans.stages.clear();
      l.spans.job.setAttribute("lavie.state", state);
      endSpan(l.spans.job, failure);
    }
    if (l) {
      await this.save(l);
      this.emit(
        l,
        state === "succeeded"
          ? { type: "done", result: record.result! }
          : state === "failed"
            ? { type: "failed", reason: error }
            : { type: "cancelled" },
      );
      l.listeners.clear();
      this.forget(record.id);
    } else {
      record.updatedMs = this.clock.now();
      await this.jobs.put(record);
    }
    if (state === "succeeded" && this.keepTensors) return;
    const prefix = `${record.id}/`;
    await this.tensors.deletePrefix(prefix).catch(() => 0);
    if (state !== "succeeded") {
      // Attempts cancelled mid-write may still store an output tile: sweep again once they settle.
      this.clock
        .setTimeout(() => void this.tensors.deletePrefix(prefix).catch(() => 0), LATE_SWEEP_MS)
        .unref();
    }
  }

  /** A finished job leaves memory once `recentFinished` newer ones have finished (memory stays bounded). */
  private forget(id: string): void {
    this.finished.push(id);
    while (this.finished.length > this.recentFinished) {
      const old = this.finished.shift()!;
      const l = this.live.get(old);
      if (l && TERMINAL.has(l.record.state)) this.live.delete(old);
    }
  }

  private async run(l: Live): Promise<void> {
    const record = l.record;
    const parent = contextFromTraceparent(record.traceparent);
    const jobSpan = tracer().startSpan("job", { attributes: { "lavie.job_id": record.id } }, parent);
    const jobCtx = trace.setSpan(parent, jobSpan);
    l.spans = { job: jobSpan, ctx: jobCtx, stages: new Map() };
    const planSpan = tracer().startSpan("plan", { attributes: { "lavie.job_id": record.id } }, jobCtx);
    let plan: Plan;
    try {
      plan = planJob(record.spec, this.info);
      planSpan.setAttribute("lavie.tasks", plan.tasks.length);
      endSpan(planSpan);
    } catch (err) {
      endSpan(planSpan, err);
      throw err;
    }
    // A CFG gang's members run only together: if a restart recorded one but not the other, both
    // run again (their peer exchange needs both).
    const gangs = new Map<string, Task[]>();
    for (const t of plan.tasks) {
      if (t.kind === "base_denoise" && t.cfg) gangs.set(t.cfg.gang, [...(gangs.get(t.cfg.gang) ?? []), t]);
    }
    for (const members of gangs.values()) {
      if (members.some((t) => record.done[t.id]) && !members.every((t) => record.done[t.id])) {
        for (const t of members) delete record.done[t.id];
      }
    }
    record.state = "running";
    await this.save(l);
    const tileTask = new Map<string, string[]>(); // tensor -> task id per tile
    for (const t of plan.tasks) {
      const ids = tileTask.get(t.output.tensor) ?? [];
      ids[t.output.tile] = t.id;
      tileTask.set(t.output.tensor, ids);
    }
    for (const t of plan.tasks) {
      const p = l.progress.get(t.stage) ?? {
        stage: t.stage,
        started: false,
        stepsDone: 0,
        stepsTotal: 0,
        tasksDone: 0,
        tasksTotal: 0,
        startMs: null,
        taskSteps: new Map<string, number>(),
      };
      p.stepsTotal += t.units;
      p.tasksTotal++;
      if (record.done[t.id]) {
        p.tasksDone++;
        p.stepsDone += t.units;
      }
      l.progress.set(t.stage, p);
    }
    try {
      await this.runTasks(l, plan, tileTask);
      const refs = (tile: number) => record.done[tileTask.get(plan.result)![tile]!]!;
      record.result = await storeResultVideo(plan, refs, this.tensors, `results/${record.id}.mp4`);
      await this.finish(record, "succeeded", "");
    } catch (err) {
      if (l.cancelled) return; // cancel() finished the record
      const e = LavieError.from(err);
      await this.finish(record, "failed", e.message);
    }
  }

  private inputsOf(plan: Plan, task: Task, record: JobRecord, tileTask: Map<string, string[]>): TaskInput[] {
    const names = [...new Set(readsOf(task).map((r) => r.tensor))];
    return names.map((name) => ({
      tensor: plan.tensors[name]!,
      tiles: (tileTask.get(name) ?? []).map((id) => record.done[id] ?? null),
    }));
  }

  private runTasks(l: Live, plan: Plan, tileTask: Map<string, string[]>): Promise<void> {
    const record = l.record;
    const signal = l.abort.signal;
    const launched = new Set(Object.keys(record.done));
    let remaining = plan.tasks.filter((t) => !record.done[t.id]).length;
    return new Promise<void>((resolve, reject) => {
      if (remaining === 0) return resolve();
      const launch = () => {
        for (const task of plan.tasks) {
          if (launched.has(task.id) || !task.deps.every((d) => record.done[d])) continue;
          launched.add(task.id);
          const p = l.progress.get(task.stage)!;
          if (p.startMs === null) {
            p.startMs = performance.now();
            if (l.spans) {
              const attributes = { "lavie.job_id": record.id, "lavie.stage": task.stage };
              l.spans.stages.set(
                task.stage,
                tracer().startSpan(`stage ${task.stage}`, { attributes }, l.spans.ctx),
              );
            }
            this.emit(l, { type: "stage_started", stage: task.stage });
          }
          const stageSpan = l.spans?.stages.get(task.stage);
          this.dispatcher
            .submit({
              jobId: record.id,
              task,
              spec: record.spec,
              inputs: this.inputsOf(plan, task, record, tileTask),
              outputObject: `${record.id}/${task.output.tensor}/${task.output.tile}`,
              output: plan.tensors[task.output.tensor]!,
              tenant: tenantOf(record),
              rank: rankOf(record),
              ...(l.spans && stageSpan ? { traceContext: trace.setSpan(l.spans.ctx, stageSpan) } : {}),
              onProgress: (done, total) => {
                const prev = p.taskSteps.get(task.id) ?? 0;
                p.stepsDone += Math.max(0, done - prev);
                p.taskSteps.set(task.id, Math.max(prev, done));
                this.emit(l, {
                  type: "task_progress",
                  taskId: task.id,
                  stage: task.stage,
                  step: done,
                  total,
                });
              },
              signal,
            })
            .then(
              (ref: TensorRef) => {
                if (signal.aborted) return;
                record.done[task.id] = ref;
                p.stepsDone += Math.max(0, task.units - (p.taskSteps.get(task.id) ?? 0));
                p.taskSteps.set(task.id, task.units);
                p.tasksDone++;
                if (p.tasksDone === p.tasksTotal) {
                  if (stageSpan) endSpan(stageSpan);
                  l.spans?.stages.delete(task.stage);
                  this.emit(l, {
                    type: "stage_finished",
                    stage: task.stage,
                    ms: performance.now() - (p.startMs ?? 0),
                  });
                }
                void this.save(l);
                remaining--;
                if (remaining === 0) resolve();
                else launch();
              },
              (err: unknown) => {
                if (!signal.aborted) l.abort.abort();
                reject(err);
              },
            );
        }
      };
      launch();
    });
  }
}
