/**
 * What the distributed coordinator needs from the outside world, as small interfaces: the data
 * plane (tensors and blobs by reference), durable job records, runner discovery, and a way to run
 * one task on a given runner. Adapters: transport/nats (stores, registry), transport/grpc (runners).
 */
import type { Context } from "@opentelemetry/api";
import type { JobRequest, JobSpec } from "../../core/job.ts";
import type { Priority } from "../../core/tenancy.ts";
import type { Tensor } from "../../core/tensor.ts";
import type { Task, TensorPlan } from "../plan/types.ts";

export interface TensorRef {
  readonly object: string;
  readonly dtype: "float32";
  readonly shape: number[];
  readonly digest: string;
  readonly bytes: number;
}

export interface BlobRef {
  readonly object: string;
  readonly digest: string;
  readonly bytes: number;
}

export interface TensorStorePort {
  put(name: string, t: Tensor): Promise<TensorRef>;
  get(ref: TensorRef): Promise<Tensor>;
  putBytes(name: string, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<BlobRef>;
  getBytes(ref: BlobRef): AsyncIterable<Uint8Array>;
  deletePrefix(prefix: string): Promise<number>;
  /**
   * What the store holds under `name` (size, SHA-256, shape metadata) without reading the bytes;
   * null when there is no such object. Used to check a runner's output ref before accepting it.
   */
  stat(name: string): Promise<ObjectStat | null>;
}

/** The stored object behind a ref, as the store recorded it (object info; no download). */
export interface ObjectStat {
  readonly object: string;
  readonly bytes: number;
  /** "sha256:<hex>", like TensorRef.digest. */
  readonly digest: string;
  /** The shape the writer recorded in the object's metadata, when it did. */
  readonly shape?: number[];
}

export type JobState = "queued" | "running" | "succeeded" | "failed" | "cancelled";
export const TERMINAL: ReadonlySet<JobState> = new Set(["succeeded", "failed", "cancelled"]);

export interface VideoResult extends BlobRef {
  frames: number;
  width: number;
  height: number;
  fps: number;
  contentType: string;
}

/** The durable record of a job (JSON in the job store). The plan is recomputed from the spec. */
export interface JobRecord {
  id: string;
  state: JobState;
  request: JobRequest;
  spec: JobSpec;
  idempotencyKey: string;
  createdMs: number;
  updatedMs: number;
  /** Output tiles of finished tasks: a restarted coordinator does not rerun them. */
  done: Record<string, TensorRef>;
  result: VideoResult | null;
  error: string;
  /** W3C traceparent of the job's submit span: spans after submit (also after a restart) join its trace. */
  traceparent?: string;
  /** The submitting tenant (absent in records written before tenancy: the default tenant). */
  tenant?: string;
  /** Start order among queued jobs (absent: normal). */
  priority?: Priority;
  /** Epoch ms after which an unfinished job fails (absent or 0: no deadline). */
  deadlineUnixMs?: number;
}

export interface JobStorePort {
  get(id: string): Promise<JobRecord | null>;
  put(record: JobRecord): Promise<void>;
  list(): Promise<JobRecord[]>;
  /** Atomically binds an idempotency key to a job id; returns the id already bound, or null. */
  claim(key: string, jobId: string): Promise<string | null>;
  /** Frees a key claimed for a job that was then not created (refused by admission control). */
  release(key: string): Promise<void>;
}

export interface RunnerInfo {
  id: string;
  address: string;
  stages: string[];
  /** Networks whose sessions are loaded (warm). */
  models: string[];
  slots: number;
  freeSlots: number;
}

export interface RunnerDirectory {
  /** Live runners right now. */
  list(): RunnerInfo[];
}

export interface TaskInput {
  readonly tensor: TensorPlan;
  /** One per tile in tile order; null for tiles the task does not read (not produced yet). */
  readonly tiles: readonly (TensorRef | null)[];
}

export interface TaskCall {
  jobId: string;
  attempt: number;
  task: Task;
  spec: JobSpec;
  inputs: TaskInput[];
  outputObject: string;
  /**
   * The plan of the tensor the task writes a tile of (task.output.tensor): the coordinator checks
   * the returned ref's shape against its tile. Optional: without it the verifier re-plans the job.
   */
  output?: TensorPlan;
  onProgress(done: number, total: number): void;
  /** Called with the runner's own measure of the task (ms) when it completes (metrics, benchmarks). */
  onCompleted?(runnerMillis: number): void;
  signal: AbortSignal;
  /** Trace context of the call (the dispatch attempt's span): runner clients propagate it. */
  traceContext?: Context;
}

/** Runs one task on one runner and resolves to its output tile's reference. */
export interface RunnerClient {
  execute(runner: RunnerInfo, call: TaskCall): Promise<TensorRef>;
}
