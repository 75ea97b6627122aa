/**
 * Types shared by the pool (parent thread) and its ONNX worker threads. Tensors cross the thread
 * boundary as plain `{ dtype, shape, data }` records (typed arrays survive structured cloning and
 * can be moved with a transfer list).
 */
import type { ErrorCode } from "../../core/errors.ts";

export type Feed =
  | { dtype: "float32"; shape: number[]; data: Float32Array }
  | { dtype: "int64"; shape: number[]; data: BigInt64Array };

export interface Output {
  shape: number[];
  data: Float32Array;
}

export type Outputs = Record<string, Output>;

export interface RunOptions {
  /** Aborting rejects the call with LavieError("cancelled") (see OrtWorkerPool.run for running calls). */
  signal?: AbortSignal;
  /**
   * Move the feeds' buffers to the worker instead of copying them (zero-copy). The caller's arrays
   * are detached afterwards (length 0). Default false: inputs are copied, which is cheap next to a run.
   */
  transferInputs?: boolean;
}

/** What executors depend on: something that runs an ONNX model file on named tensors. */
export interface NetworkRunner {
  run(modelPath: string, feeds: Record<string, Feed>, opts?: RunOptions): Promise<Outputs>;
}

/** workerData of every worker. */
export interface WorkerConfig {
  intraOpThreads: number;
  maxCachedSessions: number;
  /** ONNX Runtime execution providers in order of preference, e.g. ["cuda", "cpu"]. */
  executionProviders: string[];
}

/** Execution providers a runner may ask for (onnxruntime-node names). */
export const EXECUTION_PROVIDERS = ["cpu", "cuda", "tensorrt", "webgpu"] as const;

export type ToWorker =
  | { type: "run"; id: number; modelPath: string; feeds: Record<string, Feed> }
  | { type: "warm"; id: number; modelPath: string }
  /** Finish what is running, release the sessions and end the thread (a clean alternative to
   * Worker.terminate(), which can abort the whole process when it lands inside a native ORT call). */
  | { type: "exit" };

export type FromWorker =
  | { type: "ready" }
  | { type: "done"; id: number; outputs: Outputs; cold: boolean; cached: string[] }
  | { type: "error"; id: number; code: ErrorCode; message: string; cold: boolean; cached: string[] };
