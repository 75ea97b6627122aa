/**
 * LavieClient: the coordinator's client API (lavie.v1.JobService) as plain TypeScript values.
 * Requests are the core's JobRequest; jobs, events and results come back as plain objects (numbers,
 * not bigints; snake_case event types as in the coordinator). Every failure is a LavieError
 * (transport/grpc/status.ts), so `err.code` is one of the project's codes ("invalid_argument",
 * "not_found", "unavailable", ...) and `err.field` names the request field a validation error is about.
 *
 * Safety of retries: submit() always sends an idempotency key (a random one unless given), so the
 * retries it makes on transient errors never create a second job. watch() reconnects on transient
 * errors (a restarted coordinator) for up to `reconnectMs`.
 */
import { createHash, randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type * as grpc from "@grpc/grpc-js";
import { context, SpanKind, trace } from "@opentelemetry/api";
import { jobRequestFromMsg, jobRequestToMsg, priorityToMsg } from "../../coordinator/api/convert.ts";
import { LavieError } from "../../core/errors.ts";
import type { JobRequest } from "../../core/job.ts";
import type { Priority } from "../../core/tenancy.ts";
import {
  type Job as JobMsg,
  JobPriority,
  JobService,
  JobState,
  type VideoResult as VideoResultMsg,
  type WatchJobResponse,
} from "../../gen/lavie/v1/jobs_pb.ts";
import type { TensorRef } from "../../gen/lavie/v1/tensor_pb.ts";
import { type CallOptions, createClient, serverStream, unary } from "../../transport/grpc/adapter.ts";
import { fromGrpcError } from "../../transport/grpc/status.ts";
import {
  contextFromTraceparent,
  endSpan,
  injectMetadata,
  tracer,
} from "../../transport/telemetry/propagation.ts";
import { type ClientCredentialOptions, connectionOf } from "./credentials.ts";

export type JobStateName = "unspecified" | "queued" | "running" | "succeeded" | "failed" | "cancelled";

export const TERMINAL_STATES: ReadonlySet<JobStateName> = new Set(["succeeded", "failed", "cancelled"]);

export interface StageProgress {
  stage: string;
  stepsDone: number;
  stepsTotal: number;
  tasksDone: number;
  tasksTotal: number;
}

export interface VideoResult {
  /** Object name of the MP4 in the data plane. */
  object: string;
  bytes: number;
  frames: number;
  width: number;
  height: number;
  fps: number;
  contentType: string;
  /** "sha256:<hex>" of the MP4. */
  digest: string;
}

export interface Job {
  id: string;
  state: JobStateName;
  request: JobRequest;
  /** Per-stage steps and tasks; empty until the job starts running. */
  progress: StageProgress[];
  result: VideoResult | null;
  /** Why the job failed (state "failed"). */
  error: string;
  createdMs: number;
  updatedMs: number;
  /** Place in the start order (state "queued"; 1 = next); 0 otherwise. */
  queuePosition: number;
  /** The tenant that submitted it ("default" without authentication). */
  tenant: string;
  priority: Priority;
  /** When its deadline passes (epoch ms); 0 = none. */
  deadlineMs: number;
}

/** One event of a job, as streamed by watch(). The last one is "done", "failed" or "cancelled". */
export type JobEvent =
  | { type: "queued"; jobId: string; position: number }
  | { type: "stage_started"; jobId: string; stage: string }
  | { type: "stage_finished"; jobId: string; stage: string; millis: number }
  | { type: "task_progress"; jobId: string; taskId: string; stage: string; step: number; total: number }
  | { type: "preview"; jobId: string; stage: string; frames: TensorRef | null }
  | { type: "done"; jobId: string; result: VideoResult }
  | { type: "failed"; jobId: string; reason: string }
  | { type: "cancelled"; jobId: string };

export interface LavieClientOptions extends ClientCredentialOptions {
  /**
   * Default: insecure (plain TCP), for loopback and private networks; `tls` builds TLS credentials,
   * `apiKey` / `token` add "authorization: Bearer" to every call (credentials.ts).
   */
  credentials?: grpc.ChannelCredentials;
  /** Extra grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
  /** Deadline of each unary call in ms (default 30000). */
  timeoutMs?: number;
  /** Attempts of a submit on transient errors (default 4; same idempotency key every time). */
  submitAttempts?: number;
  /** How long watch() keeps reconnecting after a transient error, in ms (default 30000; 0 = never). */
  reconnectMs?: number;
}

export interface SubmitOptions {
  /** At most 128 characters. Default: a random UUID (the submit's own retries stay idempotent). */
  idempotencyKey?: string;
  signal?: AbortSignal;
  /**
   * W3C traceparent the job's trace continues (default: the active OpenTelemetry context, if any).
   * The submit call's span (a no-op without an SDK) and the job's spans on the server join it.
   */
  traceparent?: string;
  /** Queued jobs start by priority (default "normal"), then fairly between tenants. */
  priority?: Priority;
  /** The job fails if not finished this many seconds after submit (default none). */
  deadlineSeconds?: number;
  /**
   * When the coordinator's queues are full (resource_exhausted), wait as its retry hint says and
   * submit again, for at most this long in ms (default 0: throw the error, err.retryAfterMs set).
   */
  admissionWaitMs?: number;
}

const PRIORITY_NAME: Partial<Record<JobPriority, Priority>> = {
  [JobPriority.LOW]: "low",
  [JobPriority.NORMAL]: "normal",
  [JobPriority.HIGH]: "high",
};

const STATE_NAME: Record<JobState, JobStateName> = {
  [JobState.UNSPECIFIED]: "unspecified",
  [JobState.QUEUED]: "queued",
  [JobState.RUNNING]: "running",
  [JobState.SUCCEEDED]: "succeeded",
  [JobState.FAILED]: "failed",
  [JobState.CANCELLED]: "cancelled",
};

const STATE_ENUM: Record<Exclude<JobStateName, "unspecified">, JobState> = {
  queued: JobState.QUEUED,
  running: JobState.RUNNING,
  succeeded: JobState.SUCCEEDED,
  failed: JobState.FAILED,
  cancelled: JobState.CANCELLED,
};

function resultOf(r: VideoResultMsg): VideoResult {
  return {
    object: r.object,
    bytes: Number(r.bytes),
    frames: r.frames,
    width: r.width,
    height: r.height,
    fps: r.fps,
    contentType: r.contentType,
    digest: r.digest,
  };
}

function jobOf(m: JobMsg | undefined): Job {
  if (!m) throw new LavieError("internal", "the coordinator answered without a job");
  return {
    id: m.id,
    state: STATE_NAME[m.state] ?? "unspecified",
    request: m.request ? jobRequestFromMsg(m.request) : { prompt: "" },
    progress: m.progress.map((p) => ({
      stage: p.stage,
      stepsDone: p.stepsDone,
      stepsTotal: p.stepsTotal,
      tasksDone: p.tasksDone,
      tasksTotal: p.tasksTotal,
    })),
    result: m.result ? resultOf(m.result) : null,
    error: m.error,
    createdMs: Number(m.createdUnixMs),
    updatedMs: Number(m.updatedUnixMs),
    queuePosition: m.queuePosition,
    tenant: m.tenant,
    priority: PRIORITY_NAME[m.priority] ?? "normal",
    deadlineMs: Number(m.deadlineUnixMs),
  };
}

function eventOf(m: WatchJobResponse): JobEvent | null {
  const jobId = m.jobId;
  const e = m.event;
  switch (e.case) {
    case "queued":
      return { type: "queued", jobId, position: e.value.position };
    case "stageStarted":
      return { type: "stage_started", jobId, stage: e.value.stage };
    case "stageFinished":
      return { type: "stage_finished", jobId, stage: e.value.stage, millis: e.value.millis };
    case "taskProgress":
      return {
        type: "task_progress",
        jobId,
        taskId: e.value.taskId,
        stage: e.value.stage,
        step: e.value.step,
        total: e.value.total,
      };
    case "preview":
      return { type: "preview", jobId, stage: e.value.stage, frames: e.value.frames ?? null };
    case "done":
      if (!e.value.result) throw new LavieError("internal", `job ${jobId}: done event without a result`);
      return { type: "done", jobId, result: resultOf(e.value.result) };
    case "failed":
      return { type: "failed", jobId, reason: e.value.reason };
    case "cancelled":
      return { type: "cancelled", jobId };
    default:
      return null; // an event type newer than this client
  }
}

function aborted(signal: AbortSignal): LavieError {
  const r: unknown = signal.reason;
  return new LavieError("cancelled", r instanceof Error ? r.message : "the operation was aborted", {
    cause: r,
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(aborted(signal));
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(aborted(signal!));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export class LavieClient {
  readonly address: string;
  private readonly client: grpc.Client;
  private readonly timeoutMs: number;
  private readonly submitAttempts: number;
  private readonly reconnectMs: number;

  /** `address` is host:port of a coordinator (e.g. "127.0.0.1:50051"). Connects lazily. */
  constructor(address: string, opts: LavieClientOptions = {}) {
    this.address = address;
    const connection = connectionOf(opts);
    this.client = createClient(JobService, address, connection.credentials, connection.options);
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.submitAttempts = Math.max(1, opts.submitAttempts ?? 4);
    this.reconnectMs = Math.max(0, opts.reconnectMs ?? 30_000);
  }

  private callOpts(signal?: AbortSignal): CallOptions {
    return { deadline: Date.now() + this.timeoutMs, ...(signal && { signal }) };
  }

  private async call<T>(fn: (o: CallOptions) => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) throw aborted(signal);
    try {
      return await fn(this.callOpts(signal));
    } catch (err) {
      if (signal?.aborted) throw aborted(signal);
      throw fromGrpcError(err);
    }
  }

  /**
   * Creates a job, or returns the one already created with the same idempotency key
   * (`created` false). Retries transient errors with the same key.
   */
  async submit(req: JobRequest, opts: SubmitOptions = {}): Promise<{ job: Job; created: boolean }> {
    const idempotencyKey = opts.idempotencyKey ?? randomUUID();
    const job = jobRequestToMsg(req);
    const parent = opts.traceparent ? contextFromTraceparent(opts.traceparent) : context.active();
    const span = tracer().startSpan("lavie.v1.JobService/SubmitJob", { kind: SpanKind.CLIENT }, parent);
    const spanCtx = trace.setSpan(parent, span);
    const scheduling = {
      ...(opts.priority && { priority: priorityToMsg(opts.priority) }),
      ...(opts.deadlineSeconds !== undefined && { deadlineSeconds: opts.deadlineSeconds }),
    };
    const admissionDeadline = Date.now() + (opts.admissionWaitMs ?? 0);
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await this.call(
          (o) =>
            unary(
              this.client,
              JobService,
              "submitJob",
              { job, idempotencyKey, ...scheduling },
              { ...o, metadata: injectMetadata(undefined, spanCtx) },
            ),
          opts.signal,
        );
        span.setAttribute("lavie.job_id", res.job?.id ?? "");
        endSpan(span);
        return { job: jobOf(res.job), created: res.created };
      } catch (err) {
        const e = LavieError.from(err);
        if (e.code === "resource_exhausted") {
          // Admission control: wait as hinted while the caller allows, else report it.
          const wait = e.retryAfterMs ?? 1000;
          if (Date.now() + wait > admissionDeadline) {
            endSpan(span, e);
            throw e;
          }
          await sleep(wait, opts.signal);
          attempt--;
          continue;
        }
        if (!e.retryable || attempt >= this.submitAttempts) {
          endSpan(span, e);
          throw e;
        }
        await sleep(Math.min(2000, 100 * 2 ** attempt), opts.signal);
      }
    }
  }

  async get(jobId: string, opts: { signal?: AbortSignal } = {}): Promise<Job> {
    const res = await this.call((o) => unary(this.client, JobService, "getJob", { jobId }, o), opts.signal);
    return jobOf(res.job);
  }

  /**
   * The caller's tenant's jobs, oldest first; `limit` keeps the newest that many; `allTenants`
   * (admin credentials only) lists every tenant's.
   */
  async list(
    opts: { state?: Exclude<JobStateName, "unspecified">; limit?: number; allTenants?: boolean } = {},
  ): Promise<Job[]> {
    const res = await this.call((o) =>
      unary(
        this.client,
        JobService,
        "listJobs",
        {
          state: opts.state ? STATE_ENUM[opts.state] : JobState.UNSPECIFIED,
          limit: opts.limit ?? 0,
          allTenants: opts.allTenants ?? false,
        },
        o,
      ),
    );
    return res.jobs.map(jobOf);
  }

  /** Stops the job's tasks and deletes its intermediates; a finished job is returned unchanged. */
  async cancel(jobId: string): Promise<Job> {
    const res = await this.call((o) => unary(this.client, JobService, "cancelJob", { jobId }, o));
    return jobOf(res.job);
  }

  /**
   * The job's events from its current state until it ends (the last event is "done", "failed" or
   * "cancelled"). After a reconnect the coordinator repeats a snapshot (queued / stage_started), so
   * consumers should treat stage_started as idempotent. Aborting the signal ends the iteration with a
   * LavieError "cancelled" (the job itself keeps running; see cancel()).
   */
  async *watch(jobId: string, opts: { signal?: AbortSignal } = {}): AsyncGenerator<JobEvent> {
    const signal = opts.signal;
    let failingSince: number | null = null;
    let delay = 100;
    for (;;) {
      if (signal?.aborted) throw aborted(signal);
      let failure: LavieError;
      try {
        const stream = serverStream(this.client, JobService, "watchJob", { jobId }, signal ? { signal } : {});
        for await (const m of stream) {
          failingSince = null;
          delay = 100;
          const e = eventOf(m);
          if (!e) continue;
          yield e;
          if (e.type === "done" || e.type === "failed" || e.type === "cancelled") return;
        }
        failure = new LavieError("unavailable", `watch of job ${jobId} ended before the job did`);
      } catch (err) {
        if (signal?.aborted) throw aborted(signal);
        failure = fromGrpcError(err);
      }
      const now = Date.now();
      failingSince ??= now;
      if (!failure.retryable || now - failingSince >= this.reconnectMs) throw failure;
      await sleep(delay, signal);
      delay = Math.min(2000, delay * 2);
    }
  }

  /** The finished video (MP4) in chunks, in order. The job must have succeeded (else failed_precondition). */
  async *fetchResult(jobId: string, opts: { signal?: AbortSignal } = {}): AsyncGenerator<Uint8Array> {
    const signal = opts.signal;
    let offset = 0n;
    let total: bigint | null = null;
    try {
      const stream = serverStream(
        this.client,
        JobService,
        "fetchResult",
        { jobId },
        signal ? { signal } : {},
      );
      for await (const m of stream) {
        if (m.offset !== offset) {
          throw new LavieError(
            "internal",
            `result of job ${jobId}: chunk at offset ${m.offset}, expected ${offset}`,
          );
        }
        total = m.totalBytes;
        offset += BigInt(m.data.byteLength);
        yield m.data;
      }
    } catch (err) {
      if (signal?.aborted) throw aborted(signal);
      throw fromGrpcError(err);
    }
    if (total !== null && offset !== total) {
      throw new LavieError(
        "unavailable",
        `result of job ${jobId}: stream ended at ${offset} of ${total} bytes`,
      );
    }
  }

  /**
   * Writes the job's MP4 to `path` (parent directories created), verifying its size and sha256 digest;
   * the file appears only when complete (written to a temporary name, then renamed).
   */
  async fetchResultToFile(
    jobId: string,
    path: string,
    opts: { signal?: AbortSignal } = {},
  ): Promise<{ path: string; bytes: number; result: VideoResult }> {
    const job = await this.get(jobId, opts);
    if (job.state !== "succeeded" || !job.result) {
      throw new LavieError(
        "failed_precondition",
        `job ${jobId} is ${job.state}; only succeeded jobs have a result`,
      );
    }
    const result = job.result;
    await mkdir(dirname(path), { recursive: true });
    const tmp = join(dirname(path), `.${basename(path)}.${randomUUID().slice(0, 8)}.part`);
    const hash = createHash("sha256");
    let bytes = 0;
    try {
      const out = createWriteStream(tmp);
      const done = new Promise<void>((resolve, reject) => {
        out.once("error", reject);
        out.once("finish", resolve);
      });
      done.catch(() => {}); // awaited below; a write error also surfaces through the loop
      try {
        for await (const chunk of this.fetchResult(jobId, opts)) {
          hash.update(chunk);
          bytes += chunk.byteLength;
          if (!out.write(chunk)) {
            await new Promise<void>((resolve, reject) => {
              out.once("drain", resolve);
              out.once("error", reject);
            });
          }
        }
      } finally {
        out.end();
      }
      await done;
      if (bytes !== result.bytes) {
        throw new LavieError(
          "internal",
          `result of job ${jobId}: got ${bytes} bytes, expected ${result.bytes}`,
        );
      }
      const digest = `sha256:${hash.digest("hex")}`;
      if (result.digest.startsWith("sha256:") && digest !== result.digest) {
        throw new LavieError(
          "internal",
          `result of job ${jobId}: digest ${digest}, expected ${result.digest}`,
        );
      }
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw LavieError.from(err);
    }
    return { path, bytes, result };
  }

  /** Closes the channel; calls in flight fail. */
  close(): void {
    this.client.close();
  }
}
