/**
 * A stage runner: serves lavie.v1.StageRunnerService over gRPC and executes plan tasks of the
 * stages it serves, with the same executeTask() as the in-process engine, so a task gives the same
 * tile bit for bit wherever it runs.
 *
 *   const runner = new StageRunner({ id: "r1", stages: ["base"], modelDir, tensors, registry });
 *   const address = await runner.start("127.0.0.1", 0); // "127.0.0.1:40123"
 *   ...
 *   await runner.drain(); // finish in-flight tasks, refuse new ones, deregister
 *   await runner.stop();
 *
 * ExecuteTask: the request is validated first (INVALID_ARGUMENT naming the field); then a slot is
 * taken (RESOURCE_EXHAUSTED, retryable, when all are busy; UNAVAILABLE while draining). Inputs are
 * read from the data plane (NATS object store) as the tiles covering each read box, assembled with
 * the TileSet's windows and blending weights; the output tile is written to `output_object` and its
 * TensorRef returned in `completed`. Cancelling the call aborts the task at its next step (a
 * network run in flight is abandoned at once; its ORT worker finishes it in the background).
 *
 * Slots = ORT worker threads; the sessions of a network stay loaded across tasks (LRU of 8 per
 * worker, more than the 8 networks of a model directory).
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { type Context, type Span, SpanKind, trace } from "@opentelemetry/api";
import {
  BASE_LATENT_TENSOR,
  type NetworkId,
  type Plan,
  type StageName,
  type Task,
  type TensorPlan,
} from "../../coordinator/plan/types.ts";
import { invalidArgument, LavieError } from "../../core/errors.ts";
import type { JobSpec } from "../../core/job.ts";
import type { Tensor } from "../../core/tensor.ts";
import { assembleBox, planFromWindows, tilesCovering } from "../../core/tiling/index.ts";
import {
  type DescribeRequest,
  type DescribeResponse,
  DescribeResponseSchema,
  type ExecuteTaskRequest,
  type ExecuteTaskResponse,
  ExecuteTaskResponseSchema,
  StageRunnerService,
} from "../../gen/lavie/v1/runner_pb.ts";
import { loadModelDirectory, type ModelDirectory } from "../../models/loader.ts";
import type { ClipTokenizer } from "../../models/tokenizer/index.ts";
import { addService } from "../../transport/grpc/adapter.ts";
import { toGrpcError } from "../../transport/grpc/status.ts";
import type { NatsCfgExchange } from "../../transport/nats/cfg-exchange.ts";
import type { Registration, RunnerRegistry } from "../../transport/nats/registry.ts";
import type { NatsTensorStore, TensorRef } from "../../transport/nats/tensors.ts";
import { refuseRunnerCall } from "../../transport/security/runner-auth.ts";
import { instrumentServer, serverStopping, setServing } from "../../transport/telemetry/health.ts";
import { metrics, record } from "../../transport/telemetry/metrics.ts";
import { endSpan, extractMetadata, tracer } from "../../transport/telemetry/propagation.ts";
import { OrtNetworks } from "../networks.ts";
import { OrtWorkerPool } from "../ort/pool.ts";
import { executeTask, type TaskContext } from "../tasks/execute.ts";
import { FaultInjector, type FaultSpec, faultAtStart, faultyOutput } from "./faults.ts";
import { STAGES, toProtoRef, type ValidatedRequest, validateRequest } from "./request.ts";

export interface StageRunnerOptions {
  /** Runner id ([A-Za-z0-9_-], the registry key). */
  id: string;
  /** Stages whose tasks this runner accepts (default all three). */
  stages?: readonly StageName[];
  /** Model directory; validated (loadModelDirectory) by start(). */
  modelDir: string;
  /** Tasks in flight = ORT worker threads (default 1). */
  slots?: number;
  /** onnxruntime intra-op threads per worker (default cores / slots). */
  intraOpThreads?: number;
  /** ONNX Runtime execution providers (default ["cpu"]). */
  executionProviders?: string[];
  /** The data plane. */
  tensors: NatsTensorStore;
  /** When given, start() registers the runner and heartbeats its free slots and loaded networks. */
  registry?: RunnerRegistry;
  /** Heartbeat interval in ms (default: the registry's, 1000). */
  heartbeatMs?: number;
  /** Check model file hashes at start (default true). */
  verifyHashes?: boolean;
  /** Load the sessions of the served stages' networks at start (default false). */
  warm?: boolean;
  /**
   * The CFG exchange (transport/nats/cfg-exchange.ts) for the members of a CFG gang (a job with
   * base.cfgParallel); a runner without one fails such tasks with failed_precondition.
   */
  cfgExchange?: Pick<NatsCfgExchange, "member">;
  /** Diagnostics (heartbeat failures, task failures); default none. */
  log?: (msg: string) => void;
  /** Fault injection for tests and chaos drills (LAVIE_FAULTS; faults.ts); default none. */
  faults?: FaultSpec | null;
  /** Server credentials: TLS, or mTLS with a client CA (transport/security/tls.ts); default plaintext. */
  credentials?: grpc.ServerCredentials;
  /**
   * Client certificate names (CN or DNS SAN) allowed to call ExecuteTask/Describe (needs mTLS
   * credentials): another certificate gets PERMISSION_DENIED. Default: any caller.
   */
  allowedClients?: readonly string[];
  /** Accepted runner tokens ("authorization: Bearer"; missing/wrong: UNAUTHENTICATED). Default: none needed. */
  tokens?: () => readonly string[];
}

interface Running {
  readonly task: Task;
  readonly abort: AbortController;
  readonly done: Promise<void>;
}

type Call = grpc.ServerWritableStream<ExecuteTaskRequest, ExecuteTaskResponse>;
type TaskEvent = NonNullable<MessageInitShape<typeof ExecuteTaskResponseSchema>["event"]>;

/** Networks each stage's tasks use (loaded by `warm`). */
function stageNetworks(md: ModelDirectory, stage: StageName): NetworkId[] {
  const s = md.stage(stage);
  const ids = [s.text.id, s.unet.id, s.vaeDecoder.id];
  if (s.vaeEncoder) ids.push(s.vaeEncoder.id);
  return ids;
}

/** How long shutdown waits for the registry entry to be removed (it expires by TTL anyway). */
const DEREGISTER_TIMEOUT_MS = 2_000;

export class StageRunner {
  readonly id: string;
  readonly stages: readonly StageName[];
  readonly slots: number;
  private readonly stageSet: ReadonlySet<StageName>;
  private models: ModelDirectory | undefined;
  private pool: OrtWorkerPool | undefined;
  private networks: OrtNetworks | undefined;
  private server: grpc.Server | undefined;
  private registration: Registration | undefined;
  private readonly running = new Set<Running>();
  /** Networks that have run (or been warmed) here: their sessions are loaded. */
  private readonly loaded = new Set<NetworkId>();
  private draining = false;
  private stopped = false;
  private addr = "";
  /** Test/chaos fault injection (faults.ts): its hooks are in run() only. */
  private readonly faults: FaultInjector | undefined;

  constructor(private readonly opts: StageRunnerOptions) {
    if (!/^[A-Za-z0-9_-]{1,128}$/.test(opts.id)) {
      throw invalidArgument("id", `"${opts.id}" must be 1-128 characters of [A-Za-z0-9_-]`);
    }
    const stages = opts.stages ?? STAGES;
    if (stages.length === 0) throw invalidArgument("stages", "must name at least one stage");
    for (const s of stages) {
      if (!STAGES.includes(s))
        throw invalidArgument("stages", `unknown stage "${s}"; allowed: ${STAGES.join(", ")}`);
    }
    const slots = opts.slots ?? 1;
    if (!Number.isInteger(slots) || slots < 1)
      throw invalidArgument("slots", `must be an integer >= 1, got ${slots}`);
    this.id = opts.id;
    this.stages = [...new Set(stages)];
    this.stageSet = new Set(this.stages);
    this.slots = slots;
    this.faults = opts.faults ? new FaultInjector(opts.faults) : undefined;
  }

  /** host:port the server listens on (after start()). */
  get address(): string {
    return this.addr;
  }

  get freeSlots(): number {
    return this.draining || this.stopped ? 0 : Math.max(0, this.slots - this.running.size);
  }

  get preset(): string {
    return this.models?.manifest.preset ?? "";
  }

  networksLoaded(): NetworkId[] {
    return [...this.loaded].sort();
  }

  /** Validates the model directory, starts the ORT workers and the gRPC server, registers. */
  async start(host = "127.0.0.1", port = 0): Promise<string> {
    if (this.server) throw new LavieError("failed_precondition", `runner ${this.id} already started`);
    const md = await loadModelDirectory(this.opts.modelDir, { verifyHashes: this.opts.verifyHashes ?? true });
    for (const s of this.stages) md.stage(s); // failed_precondition when the directory lacks it
    this.models = md;
    const pool = new OrtWorkerPool({
      workers: this.slots,
      ...(this.opts.intraOpThreads === undefined ? {} : { intraOpThreads: this.opts.intraOpThreads }),
      ...(this.opts.executionProviders ? { executionProviders: this.opts.executionProviders } : {}),
    });
    this.pool = pool;
    const paths: Partial<Record<NetworkId, string>> = {};
    for (const [id, n] of Object.entries(md.networks)) paths[id as NetworkId] = n.path;
    const tokenizers: Partial<Record<NetworkId, ClipTokenizer>> = {};
    for (const s of Object.values(md.stages)) tokenizers[s.text.id] = s.tokenizer;
    this.networks = new OrtNetworks(pool, paths, tokenizers);
    record(() => metrics.slots.set(this.slots));
    this.updateBusy();
    try {
      const server = new grpc.Server();
      // Malformed requests (undecodable protobuf) are answered INVALID_ARGUMENT before a handler runs.
      addService(server, StageRunnerService, {
        executeTask: (call: Call) => this.onExecuteTask(call),
        describe: (
          call: grpc.ServerUnaryCall<DescribeRequest, DescribeResponse>,
          cb: grpc.sendUnaryData<DescribeResponse>,
        ) => this.onDescribe(call, cb),
      });
      // grpc.health.v1: NOT_SERVING until the served stages' sessions are loaded (warm), and
      // again from drain(); plus server reflection.
      instrumentServer(server, [StageRunnerService], "NOT_SERVING");
      const bindHost = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
      const bound = await new Promise<number>((resolve, reject) =>
        server.bindAsync(
          `${bindHost}:${port}`,
          this.opts.credentials ?? grpc.ServerCredentials.createInsecure(),
          (err, p) =>
            err
              ? reject(new LavieError("unavailable", `cannot listen on ${bindHost}:${port}: ${err.message}`))
              : resolve(p),
        ),
      );
      this.server = server;
      this.addr = `${bindHost}:${bound}`;
      if (this.opts.warm) {
        for (const id of new Set(this.stages.flatMap((s) => stageNetworks(md, s)))) {
          const span = tracer().startSpan("model load", {
            attributes: { "lavie.network": id, "lavie.warm": true },
          });
          try {
            await pool.warm(md.networks[id]!.path);
            endSpan(span);
          } catch (err) {
            endSpan(span, err);
            throw err;
          }
          this.loaded.add(id);
          record(() => metrics.coldStarts.inc({ stage: stageOf(md, id), network: id }));
        }
      }
      if (!this.draining) setServing(server, "SERVING");
      if (this.opts.registry) {
        this.registration = await this.opts.registry.register(
          {
            id: this.id,
            address: this.addr,
            stages: [...this.stages],
            models: this.networksLoaded(),
            slots: this.slots,
            freeSlots: this.freeSlots,
          },
          {
            ...(this.opts.heartbeatMs === undefined ? {} : { intervalMs: this.opts.heartbeatMs }),
            update: () => ({ freeSlots: this.freeSlots, models: this.networksLoaded() }),
            onError: (err) =>
              this.opts.log?.(`runner ${this.id}: heartbeat failed: ${LavieError.from(err).message}`),
          },
        );
      }
      return this.addr;
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /**
   * Refuses new tasks (UNAVAILABLE, retryable; the registry sees free_slots 0 at once), waits for
   * the tasks in flight, then deregisters. The server keeps answering Describe until stop().
   */
  async drain(): Promise<void> {
    this.draining = true;
    if (this.server) setServing(this.server, "NOT_SERVING");
    await this.pulse();
    await Promise.allSettled([...this.running].map((r) => r.done));
    await this.deregister();
  }

  /** Cancels tasks in flight, closes the server and the ORT workers, deregisters. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.draining = true;
    for (const r of this.running) r.abort.abort(new LavieError("unavailable", `runner ${this.id} stopping`));
    const server = this.server;
    this.server = undefined;
    if (server) serverStopping(server);
    if (server) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2_000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    await Promise.allSettled([...this.running].map((r) => r.done));
    await this.deregister().catch(() => {});
    await this.pool?.close();
    this.pool = undefined;
  }

  private async deregister(): Promise<void> {
    const reg = this.registration;
    this.registration = undefined;
    if (!reg) return;
    // With NATS unreachable the delete would wait for a reconnect that may never come; the entry
    // expires by its TTL anyway, so shutting down never waits on it for long.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      reg.deregister().catch(() => {}),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, DEREGISTER_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Publishes a heartbeat now (free slots changed), ignoring failures. */
  private async pulse(): Promise<void> {
    await this.registration?.heartbeat().catch((err: unknown) => {
      this.opts.log?.(`runner ${this.id}: heartbeat failed: ${LavieError.from(err).message}`);
    });
  }

  /** Why a caller may not call this runner (only the coordinator may), or null (runner-auth.ts). */
  private refused(call: Pick<Call, "metadata" | "getAuthContext" | "getPeer">): LavieError | null {
    const { allowedClients, tokens } = this.opts;
    if (!allowedClients && !tokens) return null;
    const refused = refuseRunnerCall(
      { ...(allowedClients && { allowedClients }), ...(tokens && { tokens }) },
      call,
    );
    if (refused) {
      this.opts.log?.(`runner ${this.id}: refused a call from ${call.getPeer()}: ${refused.message}`);
    }
    return refused;
  }

  private onDescribe(
    call: grpc.ServerUnaryCall<DescribeRequest, DescribeResponse>,
    cb: grpc.sendUnaryData<DescribeResponse>,
  ): void {
    const refused = this.refused(call);
    if (refused) {
      cb(toGrpcError(refused));
      return;
    }
    cb(
      null,
      create(DescribeResponseSchema, {
        runner: {
          id: this.id,
          stages: [...this.stages],
          networksLoaded: this.networksLoaded(),
          slots: this.slots,
          freeSlots: this.freeSlots,
          preset: this.preset,
        },
      }),
    );
  }

  private onExecuteTask(call: Call): void {
    const refused = this.refused(call);
    if (refused) {
      call.emit("error", toGrpcError(refused));
      return;
    }
    let finished = false;
    const abort = new AbortController();
    const parent = extractMetadata(call.metadata);
    const span = tracer().startSpan(
      "lavie.v1.StageRunnerService/ExecuteTask",
      {
        kind: SpanKind.SERVER,
        attributes: {
          "lavie.runner_id": this.id,
          "lavie.job_id": call.request.jobId,
          "lavie.attempt": call.request.attempt,
        },
      },
      parent,
    );
    const spanCtx = trace.setSpan(parent, span);
    const t0 = performance.now();
    let stageLabel = "unknown";
    const ended = (outcome: "ok" | "error" | "cancelled", err?: unknown) => {
      record(() => {
        metrics.taskDuration.observe(
          { stage: stageLabel, outcome, side: "runner" },
          (performance.now() - t0) / 1000,
        );
        metrics.tasks.inc({ stage: stageLabel, outcome, side: "runner" });
      });
      endSpan(span, outcome === "error" ? err : undefined);
    };
    // grpc-js also emits "cancelled" after a normal end: only a call not yet finished is a cancel.
    call.on("cancelled", () => {
      if (!finished) abort.abort(new LavieError("cancelled", "task cancelled by the caller"));
    });
    const fail = (err: unknown) => {
      if (finished) return;
      finished = true;
      ended(LavieError.from(err).code === "cancelled" ? "cancelled" : "error", err);
      // Not call.destroy(err): grpc-js 1.14 then never sends the status (the client waits
      // forever). Its ServerWritableStream turns an "error" event into the call's status.
      call.emit("error", toGrpcError(err));
    };
    let req: ValidatedRequest;
    try {
      req = validateRequest(call.request, this.stageSet);
      if (req.spec.preset !== this.preset) {
        throw new LavieError(
          "failed_precondition",
          `spec_json.preset: the job is for preset "${req.spec.preset}", this runner has "${this.preset}"`,
          { field: "spec_json.preset" },
        );
      }
      this.checkOutputBox(req);
    } catch (err) {
      fail(err);
      return;
    }
    stageLabel = req.task.stage;
    span.setAttribute("lavie.task_id", req.task.id);
    span.setAttribute("lavie.stage", req.task.stage);
    if (this.draining || !this.networks) {
      fail(new LavieError("unavailable", `runner ${this.id} is draining`));
      return;
    }
    if (this.running.size >= this.slots) {
      fail(
        new LavieError("resource_exhausted", `runner ${this.id}: all ${this.slots} slots are busy`, {
          retryable: true,
        }),
      );
      return;
    }
    const send = (event: TaskEvent) => {
      if (!finished && !abort.signal.aborted) call.write(create(ExecuteTaskResponseSchema, { event }));
    };
    const entry: Running = {
      task: req.task,
      abort,
      done: this.run(req, abort.signal, send, spanCtx).then(
        (out) => {
          this.running.delete(entry);
          this.updateBusy();
          if (finished) return;
          send({ case: "completed", value: { output: toProtoRef(out.ref), millis: out.millis } });
          finished = true;
          ended("ok");
          call.end();
        },
        (err: unknown) => {
          this.running.delete(entry);
          this.updateBusy();
          const e = abort.signal.aborted && !(err instanceof LavieError) ? abort.signal.reason : err;
          if (LavieError.from(e).code !== "cancelled") {
            this.opts.log?.(`runner ${this.id}: task ${req.task.id} failed: ${LavieError.from(e).message}`);
          }
          fail(e);
        },
      ),
    };
    this.running.add(entry);
    this.updateBusy();
    void this.pulse();
    entry.done.finally(() => void this.pulse());
  }

  /** Denoise tasks: the output tensor's shape must be whole and the task's box inside it. */
  private checkOutputBox(req: ValidatedRequest): void {
    const t = req.task;
    if (t.kind === "base_denoise" || t.kind === "interp_denoise") {
      const vf = this.models!.stage("base").vaeFactor;
      for (const k of ["height", "width"] as const) {
        if (req.spec[k] % vf !== 0) {
          throw invalidArgument(`spec_json.${k}`, `must be a multiple of ${vf} pixels, got ${req.spec[k]}`);
        }
      }
    }
    if (t.kind !== "interp_denoise" && t.kind !== "vsr_denoise") return;
    const shape = this.outputShape(req);
    if (!shape) return;
    if (t.box.start.length !== shape.length) {
      throw invalidArgument(
        "task_json.box",
        `rank ${t.box.start.length} does not match the output rank ${shape.length}`,
      );
    }
    for (let d = 0; d < shape.length; d++) {
      if (t.box.start[d]! + t.box.size[d]! > shape[d]!) {
        throw invalidArgument("task_json.box", `axis ${d} ends past the output tensor's size ${shape[d]}`);
      }
    }
  }

  /**
   * The full shape of the tensor a denoise task writes a tile of (its noise is keyed by position in
   * it): base [1, 4, F, h, w], interpolation [1, 4, 4(F-1)+1, h, w], VSR [1, 4, <low-res frames, H, W>].
   */
  private outputShape(req: ValidatedRequest): number[] | null {
    const t = req.task;
    const spec: JobSpec = req.spec;
    const vf = this.models!.stage("base").vaeFactor;
    const h = spec.height / vf;
    const w = spec.width / vf;
    if (t.kind === "base_denoise") return [1, 4, spec.frames, h, w];
    if (t.kind === "interp_denoise") return [1, 4, (spec.frames - 1) * 4 + 1, h, w];
    if (t.kind === "vsr_denoise") {
      const low = req.inputs.get(t.lowRes.tensor)!.plan.shape;
      return [1, 4, ...low.slice(2)];
    }
    return null;
  }

  private updateBusy(): void {
    record(() => {
      metrics.busySlots.set(this.running.size);
      metrics.utilization.set(Math.min(1, this.running.size / this.slots));
    });
  }

  /** Runs fn inside a child span of ctx named name; the span ends (with the error) when it settles. */
  private async spanned<T>(
    ctx: Context,
    name: string,
    attributes: Record<string, string | number | boolean>,
    fn: (span: Span) => Promise<T>,
  ): Promise<T> {
    const span = tracer().startSpan(name, { attributes }, ctx);
    try {
      const v = await fn(span);
      endSpan(span);
      return v;
    } catch (err) {
      endSpan(span, err);
      throw err;
    }
  }

  private async run(
    req: ValidatedRequest,
    signal: AbortSignal,
    send: (event: TaskEvent) => void,
    traceCtx: Context,
  ): Promise<{ ref: TensorRef; millis: number }> {
    const t0 = performance.now();
    const { task } = req;
    const networks = this.networks!;
    send({ case: "started", value: { runnerId: this.id } });
    const fault = this.faults?.next() ?? null;
    if (fault) {
      this.opts.log?.(`runner ${this.id}: injecting fault "${fault}" into task ${task.id} (LAVIE_FAULTS)`);
      await faultAtStart(fault, signal);
    }

    // A plan holding what executeTask looks up: the read tensors' tilings and the output's shape.
    const tensors: Record<string, TensorPlan> = {};
    for (const [name, input] of req.inputs) tensors[name] = { name, tiles: input.plan };
    const outShape = this.outputShape(req);
    if (outShape) {
      // A base task's noise is keyed by position in the latent, whichever tensor it writes (the
      // uncond member of a CFG gang writes a marker).
      const name = task.kind === "base_denoise" ? BASE_LATENT_TENSOR : task.output.tensor;
      tensors[name] = { name, tiles: planFromWindows(outShape, []) };
    }
    let cfg: TaskContext["cfg"];
    if (task.kind === "base_denoise" && task.cfg) {
      if (!this.opts.cfgExchange) {
        throw new LavieError(
          "failed_precondition",
          `runner ${this.id} has no CFG exchange for task ${task.id} (a cfgParallel job)`,
        );
      }
      cfg = this.opts.cfgExchange.member({
        jobId: req.jobId,
        gang: task.cfg.gang,
        attempt: req.attempt,
        branch: task.cfg.branch,
      });
    }
    const plan: Plan = { tensors, tasks: [task], result: task.output.tensor, fps: 0 };

    let stepMark = performance.now();
    const fetched = new Map<string, Promise<Tensor>>();
    const tile = (name: string, i: number): Promise<Tensor> => {
      const ref = req.inputs.get(name)!.tiles[i];
      if (!ref) return Promise.reject(new LavieError("internal", `tile ${i} of ${name} has no reference`));
      let p = fetched.get(ref.object);
      if (!p) {
        p = this.opts.tensors.get(ref);
        p.then((t) =>
          record(() => metrics.dataplaneBytes.inc({ direction: "get" }, t.data.byteLength)),
        ).catch(() => {});
        p.catch(() => {}); // observed by whoever awaits it
        fetched.set(ref.object, p);
      }
      return p;
    };
    const ctx: TaskContext = {
      spec: req.spec,
      plan,
      read: async (r) => {
        const input = req.inputs.get(r.tensor);
        if (!input)
          throw new LavieError("internal", `task ${task.id} read ${r.tensor}, which has no TileSet`);
        const idx = tilesCovering(input.plan, r.box);
        const data = new Map<number, Tensor>();
        const got = await this.spanned(
          traceCtx,
          "input fetch",
          { "lavie.tensor": r.tensor, "lavie.tiles": idx.length },
          () => abortable(Promise.all(idx.map(async (i) => [i, await tile(r.tensor, i)] as const)), signal),
        );
        for (const [i, d] of got) data.set(i, d);
        const box = assembleBox(input.plan, r.box, (i) => data.get(i)!);
        stepMark = performance.now();
        return box;
      },
      run: async (n, feeds, s) => {
        const path = this.models?.networks[n]?.path;
        if (!this.loaded.has(n) && path && this.pool) {
          // Cold start: load the session first (its own span), then run.
          const pool = this.pool;
          await this.spanned(traceCtx, "model load", { "lavie.network": n }, () =>
            pool.warm(path, s ? { signal: s } : {}),
          );
          record(() => metrics.coldStarts.inc({ stage: task.stage, network: n }));
          stepMark = performance.now();
        }
        const out = await networks.run(n, feeds, s);
        this.loaded.add(n);
        return out;
      },
      tokenize: (n, text) => networks.tokenize(n, text),
      progress: (done) => {
        // One span per denoising step: from the previous step's end (or the inputs) to now.
        const now = performance.now();
        try {
          const start = performance.timeOrigin + stepMark;
          const step = tracer().startSpan(
            "denoise step",
            {
              startTime: start,
              attributes: { "lavie.step": done, "lavie.steps": task.units, "lavie.stage": task.stage },
            },
            traceCtx,
          );
          step.end(performance.timeOrigin + now);
        } catch {
          // telemetry never fails a task
        }
        record(() => metrics.stepDuration.observe({ stage: task.stage }, (now - stepMark) / 1000));
        stepMark = now;
        send({ case: "progress", value: { done, total: task.units } });
      },
      signal,
      ...(cfg ? { cfg } : {}),
    };
    const out = await executeTask(task, ctx);
    if (signal.aborted) throw LavieError.from(signal.reason);
    const ref = await this.spanned(
      traceCtx,
      "output write",
      { "lavie.object": req.outputObject },
      async (span) => {
        const r = await abortable(faultyOutput(fault, this.opts.tensors, req.outputObject, out), signal);
        span.setAttribute("lavie.bytes", r.bytes);
        record(() => metrics.dataplaneBytes.inc({ direction: "put" }, r.bytes));
        return r;
      },
    );
    return { ref, millis: performance.now() - t0 };
  }
}

/** The first stage (of the directory) whose tasks use network id (metrics label). */
function stageOf(md: ModelDirectory, id: NetworkId): string {
  for (const s of STAGES) {
    try {
      if (stageNetworks(md, s).includes(id)) return s;
    } catch {
      // a directory without this stage
    }
  }
  return "unknown";
}

/** Resolves like p, or rejects with the signal's reason as soon as it aborts. */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(LavieError.from(signal.reason));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(LavieError.from(signal.reason));
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
