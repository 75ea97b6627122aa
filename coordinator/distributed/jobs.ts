/**
 * The coordinator's job lifecycle: submit (validated once, idempotent by key) -> queued (FIFO, at
 * most `maxRunningJobs` running) -> running (the plan's tasks dispatched as their inputs become
 * ready; every finished tile's reference is persisted) -> succeeded (MP4 stored) | failed | cancelled.
 * Job records live in the job store, so a restarted coordinator resumes unfinished jobs and reruns
 * only tasks whose outputs were not recorded.
 */
import { randomUUID } from "node:crypto";
import { setMaxListeners } from "node:events";
import { type Context, type Span, trace } from "@opentelemetry/api";
import { LavieError } from "../../core/errors.ts";
import type { JobRequest, ModelLimits } from "../../core/job.ts";
import { resolveJob } from "../../core/job.ts";
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
  /** Keep a succeeded job's intermediate tiles in the data plane (debugging, tests). */
  keepTensors?: boolean;
  /** Called once when a job reaches a terminal state, with its submit-to-end latency (metrics). */
  onJobFinished?(state: "succeeded" | "failed" | "cancelled", ms: number): void;
}

interface Live {
  record: JobRecord;
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
  private readonly queue: string[] = [];
  private running = 0;
  private readonly maxRunning: number;
  private readonly keepTensors: boolean;
  private readonly onJobFinished: JobManagerOptions["onJobFinished"];

  constructor(
    private readonly limits: ModelLimits,
    private readonly info: PlanModelInfo,
    private readonly jobs: JobStorePort,
    private readonly tensors: TensorStorePort,
    private readonly dispatcher: Dispatcher,
    opts: JobManagerOptions = {},
  ) {
    this.maxRunning = Math.max(1, opts.maxRunningJobs ?? 4);
    this.keepTensors = opts.keepTensors ?? false;
    this.onJobFinished = opts.onJobFinished;
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

  /** `traceparent`: the submit span's context (W3C), kept in the record for the job's later spans. */
  async submit(
    request: JobRequest,
    idempotencyKey = "",
    traceparent = "",
  ): Promise<{ record: JobRecord; created: boolean }> {
    if (idempotencyKey.length > 128) {
      throw new LavieError("invalid_argument", "idempotency_key: must be at most 128 characters", {
        field: "idempotency_key",
      });
    }
    const spec = resolveJob(request, this.limits);
    const id = randomUUID();
    if (idempotencyKey) {
      const existing = await this.jobs.claim(idempotencyKey, id);
      if (existing) {
        const record = await this.waitForRecord(existing);
        return { record, created: false };
      }
    }
    const now = Date.now();
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
      ...(traceparent ? { traceparent } : {}),
    };
    await this.jobs.put(record);
    this.enqueue(record);
    return { record, created: true };
  }

  /** A key claimed by a concurrent submit may point at a record not written yet: wait briefly. */
  private async waitForRecord(id: string): Promise<JobRecord> {
    for (let i = 0; i < 50; i++) {
      const r = this.live.get(id)?.record ?? (await this.jobs.get(id));
      if (r) return r;
      await new Promise((res) => setTimeout(res, 20));
    }
    throw new LavieError("unavailable", `job ${id} for this idempotency key is not readable yet; retry`);
  }

  async get(id: string): Promise<JobRecord> {
    const r = this.live.get(id)?.record ?? (await this.jobs.get(id));
    if (!r) throw new LavieError("not_found", `job_id: no job "${id}"`, { field: "job_id" });
    return r;
  }

  async list(): Promise<JobRecord[]> {
    const stored = await this.jobs.list();
    return stored.map((r) => this.live.get(r.id)?.record ?? r).sort((a, b) => a.createdMs - b.createdMs);
  }

  queuePosition(id: string): number {
    const i = this.queue.indexOf(id);
    return i < 0 ? 0 : i + 1;
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
    const qi = this.queue.indexOf(id);
    if (qi >= 0) this.queue.splice(qi, 1);
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
      abort,
      cancelled: false,
      listeners: new Set(),
      progress: new Map(),
      saving: Promise.resolve(),
    };
    this.live.set(record.id, l);
    this.queue.push(record.id);
    this.emit(l, { type: "queued", position: this.queue.length });
    this.startNext();
  }

  private startNext(): void {
    while (this.running < this.maxRunning && this.queue.length > 0) {
      const id = this.queue.shift()!;
      const l = this.live.get(id);
      if (!l || TERMINAL.has(l.record.state)) continue;
      this.running++;
      this.queue.forEach((qid, i) => {
        const ql = this.live.get(qid);
        if (ql) this.emit(ql, { type: "queued", position: i + 1 });
      });
      void this.run(l).finally(() => {
        this.running--;
        this.startNext();
      });
    }
  }

  private save(l: Live): Promise<void> {
    l.record.updatedMs = Date.now();
    const snapshot = structuredClone(l.record);
    l.saving = l.saving.then(() => this.jobs.put(snapshot)).catch(() => {});
    return l.saving;
  }

  private async finish(
    record: JobRecord,
    state: "succeeded" | "failed" | "cancelled",
    error: string,
  ): Promise<void> {
    if (TERMINAL.has(record.state)) return;
    const l = this.live.get(record.id);
    record.state = state;
    record.error = error;
    try {
      this.onJobFinished?.(state, Date.now() - record.createdMs);
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
    } else {
      record.updatedMs = Date.now();
      await this.jobs.put(record);
    }
    if (state === "succeeded" && this.keepTensors) return;
    const prefix = `${record.id}/`;
    await this.tensors.deletePrefix(prefix).catch(() => 0);
    if (state !== "succeeded") {
      // Attempts cancelled mid-write may still store an output tile: sweep again once they settle.
      setTimeout(() => void this.tensors.deletePrefix(prefix).catch(() => 0), LATE_SWEEP_MS).unref();
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
