/**
 * The coordinator's side of the runner API: runs a task on a runner over gRPC (ExecuteTask server
 * stream), forwarding progress, and turns the runner's answer into the output tile's reference.
 */
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import type { RunnerClient, RunnerInfo, TaskCall, TensorRef } from "../../coordinator/distributed/ports.ts";
import { LavieError } from "../../core/errors.ts";
import { ExecuteTaskRequestSchema, StageRunnerService, TileSetSchema } from "../../gen/lavie/v1/runner_pb.ts";
import { type TensorRef as TensorRefMsg, TensorRefSchema } from "../../gen/lavie/v1/tensor_pb.ts";
import { injectMetadata } from "../telemetry/propagation.ts";
import { createClient, serverStream } from "./adapter.ts";
import { fromGrpcError } from "./status.ts";

export function toRefMsg(r: TensorRef | null): TensorRefMsg {
  if (!r) return create(TensorRefSchema, {});
  return create(TensorRefSchema, {
    object: r.object,
    dtype: r.dtype,
    shape: r.shape.map(BigInt),
    digest: r.digest,
    bytes: BigInt(r.bytes),
  });
}

export function fromRefMsg(m: TensorRefMsg): TensorRef {
  if (m.dtype !== "float32")
    throw new LavieError("internal", `tensor ${m.object}: unsupported dtype "${m.dtype}"`);
  return {
    object: m.object,
    dtype: "float32",
    shape: m.shape.map(Number),
    digest: m.digest,
    bytes: Number(m.bytes),
  };
}

/** How the coordinator reaches runners (transport/security/env.ts builds it from the environment). */
export interface GrpcRunnerClientOptions {
  /** TLS / mTLS channel credentials (default: plaintext). */
  credentials?: grpc.ChannelCredentials;
  /** Extra channel options, e.g. grpc.ssl_target_name_override when runner certificates name a service. */
  channelOptions?: grpc.ChannelOptions;
  /** The runner token (LAVIE_RUNNER_TOKEN_FILE), sent as "authorization: Bearer <token>" on every call. */
  token?: () => string;
}

export class GrpcRunnerClient implements RunnerClient {
  private readonly clients = new Map<string, grpc.Client>();

  constructor(private readonly opts: GrpcRunnerClientOptions = {}) {}

  private client(address: string): grpc.Client {
    let c = this.clients.get(address);
    if (!c) {
      c = createClient(StageRunnerService, address, this.opts.credentials, this.opts.channelOptions);
      this.clients.set(address, c);
    }
    return c;
  }

  async execute(runner: RunnerInfo, call: TaskCall): Promise<TensorRef> {
    const req = create(ExecuteTaskRequestSchema, {
      jobId: call.jobId,
      attempt: call.attempt,
      taskJson: JSON.stringify(call.task),
      specJson: JSON.stringify(call.spec),
      outputObject: call.outputObject,
      inputs: call.inputs.map((i) =>
        create(TileSetSchema, {
          tensor: i.tensor.name,
          shape: i.tensor.tiles.shape.map(BigInt),
          axes: i.tensor.tiles.axes.map((a) => ({
            axis: a.axis,
            windows: a.windows.map((w) => ({ start: BigInt(w.start), size: BigInt(w.size) })),
          })),
          tiles: i.tiles.map(toRefMsg),
        }),
      ),
    });
    try {
      for await (const ev of serverStream(
        this.client(runner.address),
        StageRunnerService,
        "executeTask",
        req,
        {
          signal: call.signal,
          metadata: this.metadata(call),
        },
      )) {
        const e = ev.event;
        if (e.case === "progress") call.onProgress(e.value.done, e.value.total);
        else if (e.case === "completed" && e.value.output) {
          call.onCompleted?.(e.value.millis);
          return fromRefMsg(e.value.output);
        }
      }
    } catch (err) {
      if (call.signal.aborted) throw new LavieError("cancelled", `task ${call.task.id} cancelled`);
      throw fromGrpcError(err);
    }
    if (call.signal.aborted) throw new LavieError("cancelled", `task ${call.task.id} cancelled`);
    throw new LavieError("unavailable", `runner ${runner.id} ended task ${call.task.id} without a result`);
  }

  private metadata(call: TaskCall): grpc.Metadata {
    const md = call.traceContext ? injectMetadata(undefined, call.traceContext) : new grpc.Metadata();
    if (this.opts.token) md.set("authorization", `Bearer ${this.opts.token()}`);
    return md;
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
