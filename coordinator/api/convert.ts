/** Wire messages (gen/lavie/v1) <-> the core's types, in one place. */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { invalidArgument } from "../../core/errors.ts";
import type { JobRequest, StageRequest } from "../../core/job.ts";
import { checkJobSeed } from "../../core/seed.ts";
import { DEFAULT_TENANT, type Priority } from "../../core/tenancy.ts";
import {
  type Job,
  JobPriority,
  type JobRequest as JobRequestMsg,
  JobRequestSchema,
  JobSchema,
  JobState,
  type StageOptions,
  type SubmitJobRequest,
  type WatchJobResponse,
  WatchJobResponseSchema,
} from "../../gen/lavie/v1/jobs_pb.ts";
import {
  type JobEvent,
  MAX_DEADLINE_MS,
  type StageProgress,
  type SubmitOptions,
} from "../distributed/jobs.ts";
import type { JobState as CoreState, JobRecord, VideoResult } from "../distributed/ports.ts";

function stage(o: StageOptions | undefined): StageRequest {
  const out: StageRequest = {};
  if (!o) return out;
  if (o.steps !== undefined) out.steps = o.steps;
  if (o.guidance !== undefined) out.guidance = o.guidance;
  if (o.sampler !== undefined) out.sampler = o.sampler;
  if (o.negativePrompt !== undefined) out.negativePrompt = o.negativePrompt;
  if (o.eta !== undefined) out.eta = o.eta;
  return out;
}

function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The wire request as the core's JobRequest (validated later by resolveJob). */
export function jobRequestFromMsg(m: JobRequestMsg | undefined): JobRequest {
  if (!m) throw invalidArgument("job", "is required");
  return {
    prompt: m.prompt,
    ...(m.seed !== undefined && { seed: checkJobSeed(m.seed) }),
    ...(m.stopAfter !== "" && { stopAfter: m.stopAfter }),
    ...defined({ height: m.height, width: m.width, frames: m.frames }),
    base: { ...stage(m.base), ...defined({ cfgParallel: m.base?.cfgParallel }) },
    interpolation: {
      ...stage(m.interpolation?.stage),
      ...defined({ chunkFrames: m.interpolation?.chunkFrames, chunkOverlap: m.interpolation?.chunkOverlap }),
    },
    vsr: {
      ...stage(m.vsr?.stage),
      ...defined({
        noiseLevel: m.vsr?.noiseLevel,
        chunkFrames: m.vsr?.chunkFrames,
        patch: m.vsr?.patch,
        patchOverlap: m.vsr?.patchOverlap,
      }),
    },
    decode: defined({
      baseFrames: m.decode?.baseFrames,
      vsrFrames: m.decode?.vsrFrames,
      vsrTile: m.decode?.vsrTile,
      vsrTileOverlap: m.decode?.vsrTileOverlap,
    }),
  };
}

const PRIORITY_FROM: Partial<Record<JobPriority, Priority>> = {
  [JobPriority.UNSPECIFIED]: "normal",
  [JobPriority.LOW]: "low",
  [JobPriority.NORMAL]: "normal",
  [JobPriority.HIGH]: "high",
};
const PRIORITY_TO: Record<Priority, JobPriority> = {
  low: JobPriority.LOW,
  normal: JobPriority.NORMAL,
  high: JobPriority.HIGH,
};

export function priorityToMsg(p: Priority): JobPriority {
  return PRIORITY_TO[p];
}

export function priorityFromMsg(p: JobPriority): Priority {
  const out = PRIORITY_FROM[p];
  if (!out)
    throw invalidArgument("priority", `unknown value ${p}; allowed: JOB_PRIORITY_LOW, _NORMAL, _HIGH`);
  return out;
}

/** SubmitJobRequest's scheduling fields as JobManager submit options (validated). */
export function submitOptionsFromMsg(m: SubmitJobRequest): Omit<SubmitOptions, "tenant" | "traceparent"> {
  const d = m.deadlineSeconds;
  if (d !== undefined && (!Number.isFinite(d) || d < 0 || d * 1000 > MAX_DEADLINE_MS)) {
    throw invalidArgument(
      "deadline_seconds",
      `must be 0 (none) or a number of seconds up to ${MAX_DEADLINE_MS / 1000}`,
    );
  }
  return {
    idempotencyKey: m.idempotencyKey,
    priority: priorityFromMsg(m.priority),
    ...(d ? { deadlineMs: Math.round(d * 1000) } : {}),
  };
}

/** The core request back as a wire message (for Job.request). */
export function jobRequestToMsg(r: JobRequest): JobRequestMsg {
  return create(JobRequestSchema, {
    prompt: r.prompt,
    ...(r.seed !== undefined && { seed: BigInt(r.seed) }),
    stopAfter: r.stopAfter ?? "",
    ...defined({ height: r.height, width: r.width, frames: r.frames }),
    base: { ...(r.base ?? {}), ...defined({ cfgParallel: r.base?.cfgParallel }) },
    interpolation: {
      stage: r.interpolation ?? {},
      ...defined({ chunkFrames: r.interpolation?.chunkFrames, chunkOverlap: r.interpolation?.chunkOverlap }),
    },
    vsr: {
      stage: r.vsr ?? {},
      ...defined({
        noiseLevel: r.vsr?.noiseLevel,
        chunkFrames: r.vsr?.chunkFrames,
        patch: r.vsr?.patch,
        patchOverlap: r.vsr?.patchOverlap,
      }),
    },
    decode: r.decode ?? {},
  });
}

const STATE: Record<CoreState, JobState> = {
  queued: JobState.QUEUED,
  running: JobState.RUNNING,
  succeeded: JobState.SUCCEEDED,
  failed: JobState.FAILED,
  cancelled: JobState.CANCELLED,
};

export function stateToMsg(s: CoreState): JobState {
  return STATE[s];
}

function resultMsg(r: VideoResult) {
  return {
    object: r.object,
    bytes: BigInt(r.bytes),
    frames: r.frames,
    width: r.width,
    height: r.height,
    fps: r.fps,
    contentType: r.contentType,
    digest: r.digest,
  };
}

export function jobToMsg(r: JobRecord, progress: StageProgress[], queuePosition: number): Job {
  return create(JobSchema, {
    id: r.id,
    state: STATE[r.state],
    request: jobRequestToMsg(r.request),
    progress,
    ...(r.result && { result: resultMsg(r.result) }),
    error: r.error,
    createdUnixMs: BigInt(r.createdMs),
    updatedUnixMs: BigInt(r.updatedMs),
    queuePosition,
    tenant: r.tenant ?? DEFAULT_TENANT,
    priority: PRIORITY_TO[r.priority ?? "normal"],
    deadlineUnixMs: BigInt(r.deadlineUnixMs ?? 0),
  });
}

type WatchJobResponseInit = MessageInitShape<typeof WatchJobResponseSchema>;

export function eventToMsg(jobId: string, e: JobEvent): WatchJobResponse {
  const event = ((): WatchJobResponseInit["event"] => {
    switch (e.type) {
      case "queued":
        return { case: "queued" as const, value: { position: e.position } };
      case "stage_started":
        return { case: "stageStarted" as const, value: { stage: e.stage } };
      case "stage_finished":
        return { case: "stageFinished" as const, value: { stage: e.stage, millis: e.ms } };
      case "task_progress":
        return {
          case: "taskProgress" as const,
          value: { taskId: e.taskId, stage: e.stage, step: e.step, total: e.total },
        };
      case "done":
        return { case: "done" as const, value: { result: resultMsg(e.result) } };
      case "failed":
        return { case: "failed" as const, value: { reason: e.reason } };
      case "cancelled":
        return { case: "cancelled" as const, value: {} };
    }
  })();
  return create(WatchJobResponseSchema, { jobId, event });
}
