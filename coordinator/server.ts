/**
 * The distributed coordinator, wired: NATS (job records, runner registry, data plane) + the
 * dispatcher + the job manager + the gRPC client API. `main.ts` runs it as a process; tests and
 * `lavie cluster` start it the same way.
 */
import * as grpc from "@grpc/grpc-js";
import { LavieError } from "../core/errors.ts";
import { loadModelDirectory } from "../models/loader.ts";
import { GrpcRunnerClient } from "../transport/grpc/runner-client.ts";
import { connectNats, type NatsClients } from "../transport/nats/connect.ts";
import { NatsJobStore } from "../transport/nats/kv.ts";
import { RunnerRegistry } from "../transport/nats/registry.ts";
import { NatsTensorStore } from "../transport/nats/tensors.ts";
import { addJobService } from "./api/service.ts";
import { Dispatcher, type DispatcherOptions } from "./distributed/dispatcher.ts";
import { JobManager } from "./distributed/jobs.ts";
import type { JobRecord, JobStorePort, RunnerDirectory, RunnerInfo } from "./distributed/ports.ts";
import { limitsOf, planInfoOf } from "./engine.ts";

export interface CoordinatorOptions {
  natsUrl: string;
  /** Model directory: only its manifest matters here (limits, plan parameters). */
  modelDir: string;
  host?: string;
  port?: number;
  maxRunningJobs?: number;
  keepTensors?: boolean;
  dispatcher?: DispatcherOptions;
}

class KvJobStore implements JobStorePort {
  constructor(private readonly kv: NatsJobStore) {}
  async get(id: string): Promise<JobRecord | null> {
    if (!/^[A-Za-z0-9_-]{1,128}$/.test(id)) return null;
    return (await this.kv.get<JobRecord>(id))?.value ?? null;
  }
  async put(record: JobRecord): Promise<void> {
    await this.kv.put(record.id, record);
  }
  async list(): Promise<JobRecord[]> {
    return (await this.kv.list<JobRecord>()).map((r) => r.value);
  }
  claim(key: string, jobId: string): Promise<string | null> {
    return this.kv.claimIdempotencyKey(key, jobId);
  }
}

class WatchedRunners implements RunnerDirectory {
  runners: RunnerInfo[] = [];
  list(): RunnerInfo[] {
    return this.runners;
  }
}

export class Coordinator {
  private constructor(
    readonly address: string,
    readonly jobs: JobManager,
    private readonly server: grpc.Server,
    private readonly nats: NatsClients,
    private readonly dispatcher: Dispatcher,
    private readonly client: GrpcRunnerClient,
    private readonly watch: { stop(): void },
    readonly resumed: number,
  ) {}

  static async start(opts: CoordinatorOptions): Promise<Coordinator> {
    const models = await loadModelDirectory(opts.modelDir, { verifyHashes: false });
    const nats = await connectNats(opts.natsUrl, { name: "lavie-coordinator" });
    const tensors = await NatsTensorStore.open(nats.objm);
    const kv = await NatsJobStore.open(nats.kvm);
    const registry = await RunnerRegistry.open(nats.kvm);
    const directory = new WatchedRunners();
    const watch = await registry.watchRunners((rs) => {
      directory.runners = rs;
    });
    const client = new GrpcRunnerClient();
    const dispatcher = new Dispatcher(directory, client, opts.dispatcher);
    const jobs = new JobManager(
      limitsOf(models),
      planInfoOf(models),
      new KvJobStore(kv),
      tensors,
      dispatcher,
      {
        ...(opts.maxRunningJobs !== undefined && { maxRunningJobs: opts.maxRunningJobs }),
        ...(opts.keepTensors !== undefined && { keepTensors: opts.keepTensors }),
      },
    );
    const server = new grpc.Server({ "grpc.max_receive_message_length": 4 * 1024 * 1024 });
    addJobService(server, jobs, tensors);
    const address = await new Promise<string>((resolve, reject) => {
      const host = opts.host ?? "127.0.0.1";
      server.bindAsync(`${host}:${opts.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, port) =>
        err
          ? reject(new LavieError("unavailable", `cannot listen on ${host}:${opts.port}: ${err.message}`))
          : resolve(`${host}:${port}`),
      );
    });
    const resumed = await jobs.resume();
    return new Coordinator(address, jobs, server, nats, dispatcher, client, watch, resumed);
  }

  async stop(): Promise<void> {
    // Open watch streams would hold a graceful shutdown forever: give them a moment, then force.
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 1_000);
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    this.watch.stop();
    this.dispatcher.close();
    this.client.close();
    await this.nats.close();
  }
}
