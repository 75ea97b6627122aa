/**
 * The client API (lavie.v1.JobService) over grpc-js. Every call is authenticated first (the
 * Authenticator port: UNAUTHENTICATED without valid credentials); a principal acts only on its own
 * tenant's jobs (PERMISSION_DENIED otherwise, unless admin). Handlers translate wire messages, call
 * the JobManager, and map every error to a gRPC status in one place (transport/grpc/status.ts).
 */
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { SpanKind, trace } from "@opentelemetry/api";
import { LavieError } from "../../core/errors.ts";
import type { Principal } from "../../core/tenancy.ts";
import {
  CancelJobResponseSchema,
  FetchResultResponseSchema,
  GetJobResponseSchema,
  JobService,
  JobState,
  ListJobsResponseSchema,
  SubmitJobResponseSchema,
} from "../../gen/lavie/v1/jobs_pb.ts";
import { addService } from "../../transport/grpc/adapter.ts";
import { toGrpcError } from "../../transport/grpc/status.ts";
import { endSpan, extractMetadata, traceparentOf, tracer } from "../../transport/telemetry/propagation.ts";
import { type JobEvent, type JobManager, tenantOf } from "../distributed/jobs.ts";
import type { JobRecord, TensorStorePort } from "../distributed/ports.ts";
import { TERMINAL } from "../distributed/ports.ts";
import { type Authenticator, NO_AUTH } from "./auth.ts";
import { eventToMsg, jobRequestFromMsg, jobToMsg, stateToMsg, submitOptionsFromMsg } from "./convert.ts";

// Server-stream errors go out with call.emit("error", status): grpc-js 1.14 does not send the
// status of a stream ended with destroy(err), and the client would wait forever.
// biome-ignore lint/suspicious/noExplicitAny: grpc-js handler types are untyped at this boundary
type Call = any;
// biome-ignore lint/suspicious/noExplicitAny: see above
type Callback = (err: any, res?: any) => void;

function jobId(id: string): string {
  if (!id) throw new LavieError("invalid_argument", "job_id: is required", { field: "job_id" });
  if (id.length > 64)
    throw new LavieError("invalid_argument", "job_id: at most 64 characters", { field: "job_id" });
  if (!/^[A-Za-z0-9_-]+$/.test(id)) {
    // Never a job's id (they are UUIDs): refused without echoing control characters back.
    throw new LavieError("invalid_argument", "job_id: must be letters, digits, _ or - (a job's id)", {
      field: "job_id",
    });
  }
  return id;
}

export function jobServiceImplementation(
  jobs: JobManager,
  tensors: TensorStorePort,
  auth: Authenticator = NO_AUTH,
): grpc.UntypedServiceImplementation {
  const msg = (r: JobRecord) => jobToMsg(r, jobs.progress(r.id), jobs.queuePosition(r.id));
  const unary = (fn: (req: Call, who: Principal) => Promise<unknown>) => (call: Call, cb: Callback) => {
    auth
      .authenticate(call.metadata)
      .then((who) => fn(call.request, who))
      .then(
        (res) => cb(null, res),
        (err) => cb(toGrpcError(err)),
      );
  };
  /** The job, if `who` may see it. */
  const owned = async (who: Principal, id: string): Promise<JobRecord> => {
    const r = await jobs.get(jobId(id));
    if (!who.admin && tenantOf(r) !== who.tenant) {
      throw new LavieError("permission_denied", `job ${r.id} belongs to another tenant`, { field: "job_id" });
    }
    return r;
  };
  return {
    submitJob: (call: Call, cb: Callback) => {
      // The job's trace: the client's context (traceparent metadata) continues here, or starts.
      const parent = extractMetadata(call.metadata);
      const span = tracer().startSpan("lavie.v1.JobService/SubmitJob", { kind: SpanKind.SERVER }, parent);
      const traceparent = traceparentOf(trace.setSpan(parent, span));
      unary(async (req, who) => {
        span.setAttribute("lavie.tenant", who.tenant);
        const { record, created } = await jobs.submit(jobRequestFromMsg(req.job), {
          ...submitOptionsFromMsg(req),
          tenant: who.tenant,
          traceparent,
        });
        span.setAttribute("lavie.job_id", record.id);
        span.setAttribute("lavie.created", created);
        return create(SubmitJobResponseSchema, { job: msg(record), created });
      })(call, (err, res) => {
        endSpan(span, err ?? undefined);
        cb(err, res);
      });
    },
    getJob: unary(async (req, who) =>
      create(GetJobResponseSchema, { job: msg(await owned(who, req.jobId)) }),
    ),
    listJobs: unary(async (req, who) => {
      if (req.allTenants && !who.admin) {
        throw new LavieError("permission_denied", "all_tenants: needs admin credentials", {
          field: "all_tenants",
        });
      }
      if (req.limit < 0) throw new LavieError("invalid_argument", "limit: must be >= 0", { field: "limit" });
      if (!(req.state in JobState))
        throw new LavieError("invalid_argument", `state: unknown JobState ${req.state}`, { field: "state" });
      const want = req.state as JobState;
      let all = await jobs.list(req.allTenants ? null : who.tenant);
      if (want) all = all.filter((r) => stateToMsg(r.state) === want);
      if (req.limit > 0) all = all.slice(-req.limit);
      return create(ListJobsResponseSchema, { jobs: all.map(msg) });
    }),
    cancelJob: unary(async (req, who) => {
      const r = await owned(who, req.jobId);
      return create(CancelJobResponseSchema, { job: msg(await jobs.cancel(r.id)) });
    }),
    watchJob: (call: Call) => {
      void (async () => {
        const who = await auth.authenticate(call.metadata);
        const record = await owned(who, call.request.jobId);
        const id = record.id;
        const send = (e: JobEvent) => call.write(eventToMsg(id, e));
        const terminal = (r: JobRecord): JobEvent | null =>
          r.state === "succeeded" && r.result
            ? { type: "done", result: r.result }
            : r.state === "failed"
              ? { type: "failed", reason: r.error }
              : r.state === "cancelled"
                ? { type: "cancelled" }
                : null;
        const end = terminal(record);
        if (end) {
          send(end);
          call.end();
          return;
        }
        let finished = false;
        const unsubscribe = jobs.subscribe(id, (e) => {
          if (finished) return;
          send(e);
          if (e.type === "done" || e.type === "failed" || e.type === "cancelled") {
            finished = true;
            unsubscribe();
            call.end();
          }
        });
        call.on("cancelled", () => {
          finished = true;
          unsubscribe();
        });
        // Snapshot after subscribing, so nothing between the two is lost.
        const now = await jobs.get(id);
        const endNow = terminal(now);
        if (endNow && !finished) {
          finished = true;
          unsubscribe();
          send(endNow);
          call.end();
          return;
        }
        if (now.state === "queued") send({ type: "queued", position: jobs.queuePosition(id) });
        for (const p of jobs.progress(id)) {
          if (p.started) send({ type: "stage_started", stage: p.stage });
        }
      })().catch((err) => call.emit("error", toGrpcError(err)));
    },
    fetchResult: (call: Call) => {
      void (async () => {
        const who = await auth.authenticate(call.metadata);
        const record = await owned(who, call.request.jobId);
        if (record.state !== "succeeded" || !record.result) {
          throw new LavieError(
            "failed_precondition",
            `job ${record.id} is ${record.state}${TERMINAL.has(record.state) ? "" : " (not finished yet)"}; only succeeded jobs have a result`,
          );
        }
        const total = BigInt(record.result.bytes);
        let offset = 0n;
        for await (const chunk of tensors.getBytes(record.result)) {
          if (call.cancelled) return;
          const ok = call.write(
            create(FetchResultResponseSchema, { data: chunk, offset, totalBytes: total }),
          );
          offset += BigInt(chunk.byteLength);
          if (!ok) await new Promise((r) => call.once("drain", r));
        }
        call.end();
      })().catch((err) => call.emit("error", toGrpcError(err)));
    },
  };
}

export function addJobService(
  server: grpc.Server,
  jobs: JobManager,
  tensors: TensorStorePort,
  auth: Authenticator = NO_AUTH,
): void {
  addService(server, JobService, jobServiceImplementation(jobs, tensors, auth)); // malformed: INVALID_ARGUMENT
}
