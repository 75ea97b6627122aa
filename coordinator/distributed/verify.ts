/**
 * Output verification: a RunnerClient decorator that checks the ref a runner returns for a
 * completed task before the coordinator accepts it. A runner can be wrong in ways the task's own
 * success hides (a bad disk or memory, a buggy build, a half-written object): the ref must name the
 * task's output object, be float32, have the planned tile's shape and numel*4 bytes, and the store
 * must hold an object of that size and digest (object info only, nothing is downloaded).
 *
 * A mismatch is LavieError "data_loss" (retryable): the dispatcher fails the attempt, retries the
 * task on another runner and counts the failure against the runner (quarantine.ts).
 *
 *   const client = new VerifyingRunnerClient(new GrpcRunnerClient(), tensors, {
 *     outputShape: plannedOutputShape(planInfoOf(models)),
 *   });
 */
import { LavieError } from "../../core/errors.ts";
import { numel } from "../../core/tensor.ts";
import { type PlanModelInfo, planJob } from "../plan/plan.ts";
import type { ObjectStat, RunnerClient, RunnerInfo, TaskCall, TensorRef } from "./ports.ts";

export interface VerifyOptions {
  /**
   * The shape of the tile the call's task writes, or null when it cannot be known (then the
   * shape is not checked). Default: from `call.output` (the output tensor's plan) when given.
   */
  outputShape?: (call: TaskCall) => readonly number[] | null;
}

/** Why `ref` is not an acceptable output of `call`, or null when it is. Pure. */
export function refProblem(
  call: Pick<TaskCall, "outputObject">,
  ref: TensorRef,
  expectedShape: readonly number[] | null,
  stored: ObjectStat | null,
): string | null {
  if (ref.object !== call.outputObject)
    return `names object "${ref.object}", expected "${call.outputObject}"`;
  if (ref.dtype !== "float32") return `has dtype "${String(ref.dtype)}", expected float32`;
  const shape = ref.shape;
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0))
    return `has an invalid shape ${JSON.stringify(shape)}`;
  if (
    expectedShape &&
    (shape.length !== expectedShape.length || shape.some((d, i) => d !== expectedShape[i]))
  )
    return `has shape [${shape.join(",")}], the planned tile is [${expectedShape.join(",")}]`;
  const bytes = numel(shape) * 4;
  if (ref.bytes !== bytes) return `claims ${ref.bytes} bytes, shape [${shape.join(",")}] needs ${bytes}`;
  if (!stored) return "names an object the store does not hold";
  if (stored.bytes !== ref.bytes) return `claims ${ref.bytes} bytes, the store holds ${stored.bytes}`;
  if (stored.digest !== ref.digest) return `claims digest ${ref.digest}, the store holds ${stored.digest}`;
  if (stored.shape && (stored.shape.length !== shape.length || stored.shape.some((d, i) => d !== shape[i])))
    return `has shape [${shape.join(",")}], the stored object records [${stored.shape.join(",")}]`;
  return null;
}

/** The planned output tile's shape from `call.output`, or null when the call has no output plan. */
export function outputShapeOfCall(call: TaskCall): readonly number[] | null {
  return call.output?.tiles.tiles[call.task.output.tile]?.box.size ?? null;
}

/**
 * outputShape for VerifyOptions: `call.output` when the caller passed it, otherwise the job is
 * re-planned from its spec (pure, deterministic; cached for the last `cacheJobs` jobs).
 */
export function plannedOutputShape(
  info: PlanModelInfo,
  cacheJobs = 64,
): (call: TaskCall) => readonly number[] | null {
  // Per job: task id -> the planned shape of the tile it writes.
  const jobs = new Map<string, Map<string, readonly number[]>>();
  return (call) => {
    const direct = outputShapeOfCall(call);
    if (direct) return direct;
    let shapes = jobs.get(call.jobId);
    if (!shapes) {
      const plan = planJob(call.spec, info);
      shapes = new Map();
      for (const t of plan.tasks) {
        const size = plan.tensors[t.output.tensor]?.tiles.tiles[t.output.tile]?.box.size;
        if (size) shapes.set(`${t.id}\u0000${t.output.tensor}\u0000${t.output.tile}`, size);
      }
      jobs.set(call.jobId, shapes);
      if (jobs.size > cacheJobs) jobs.delete(jobs.keys().next().value!);
    }
    // A task the re-planned job does not have as such (planned differently): shape not checked.
    const { id, output } = call.task;
    return shapes.get(`${id}\u0000${output.tensor}\u0000${output.tile}`) ?? null;
  };
}

export class VerifyingRunnerClient implements RunnerClient {
  private readonly outputShape: (call: TaskCall) => readonly number[] | null;

  constructor(
    private readonly inner: RunnerClient,
    private readonly store: { stat(name: string): Promise<ObjectStat | null> },
    opts: VerifyOptions = {},
  ) {
    this.outputShape = opts.outputShape ?? outputShapeOfCall;
  }

  async execute(runner: RunnerInfo, call: TaskCall): Promise<TensorRef> {
    const ref = await this.inner.execute(runner, call);
    let expected: readonly number[] | null;
    try {
      expected = this.outputShape(call);
    } catch (err) {
      // A spec the coordinator cannot plan would have failed long before: not the runner's fault.
      throw new LavieError("internal", `task ${call.task.id}: cannot plan its output: ${String(err)}`);
    }
    // stat() failing (NATS unreachable) is "unavailable", retryable like any data-plane outage.
    const stored = typeof ref?.object === "string" ? await this.store.stat(ref.object) : null;
    const problem = refProblem(call, ref, expected, stored);
    if (problem) {
      throw new LavieError(
        "data_loss",
        `runner ${runner.id} returned a bad output for task ${call.task.id} (attempt ${call.attempt}): the ref ${problem}`,
      );
    }
    return ref;
  }
}
