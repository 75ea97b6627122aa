/**
 * The distributed coordinator, wired: NATS (job records, runner registry, data plane) + the
 * dispatcher + the job manager + the gRPC client API. `main.ts` runs it as a process; tests and
 * `lavie cluster` start it the same way.
 */
import * as grpc from "@grpc/grpc-js";
import type { KubeConfig } from "@kubernetes/client-node";
import { LavieError } from "../core/errors.ts";
import { JobService } from "../gen/lavie/v1/jobs_pb.ts";
import { loadModelDirectory } from "../models/loader.ts";
import { GrpcRunnerClient, type GrpcRunnerClientOptions } from "../transport/grpc/runner-client.ts";
import { connectNats, type NatsAuth, type NatsClients } from "../transport/nats/connect.ts";
import { NatsJobStore } from "../transport/nats/kv.ts";
import { RunnerRegistry } from "../transport/nats/registry.ts";
import { NatsTensorStore } from "../transport/nats/tensors.ts";
import {
  admissionMetrics,
  countingStore,
  dispatchObserver,
  jobFinishedHook,
  watchDispatcher,
} from "../transport/telemetry/coordinator.ts";
import { instrumentServer, serverStopping, setServing } from "../transport/telemetry/health.ts";
import { type Authenticator, NO_AUTH } from "./api/auth.ts";
import { addJobService } from "./api/service.ts";
import type { Autoscaler } from "./autoscaler/kube.ts";
import type { StagePolicy } from "./autoscaler/policy.ts";
import type { EndpointSliceDirectory } from "./discovery/endpointslices.ts";
import {
  Dispatcher,
  type DispatcherLoad,
  type DispatcherOptions,
  type DispatcherStats,
} from "./distributed/dispatcher.ts";
import { JobManager } from "./distributed/jobs.ts";
import type { JobRecord, JobStorePort, RunnerDirectory, RunnerInfo } from "./distributed/ports.ts";
import { plannedOutputShape, VerifyingRunnerClient } from "./distributed/verify.ts";
import { limitsOf, planInfoOf } from "./engine.ts";

export interface CoordinatorOptions {
  natsUrl: string;
  /** NATS credentials and TLS (natsAuthFromEnv in main.ts); default none. */
  natsAuth?: NatsAuth;
  /** Model directory: only its manifest matters here (limits, plan parameters). */
  modelDir: string;
  host?: string;
  port?: number;
  maxRunningJobs?: number;
  /** Admission control: jobs waiting to start, in all (default 1000) and per tenant (default 100). */
  maxQueuedJobs?: number;
  maxQueuedPerTenant?: number;
  /** Finished jobs whose live state stays in memory (default 256). */
  recentFinishedJobs?: number;
  keepTensors?: boolean;
  /** Data-plane object store and runner registry buckets (must equal the runners'; default lavie-tensors, lavie-runners). */
  tensorBucket?: string;
  runnersBucket?: string;
  dispatcher?: DispatcherOptions;
  /**
   * Runner discovery: "nats" (default) the NATS registry only; "kubernetes" also the runner
   * EndpointSlices of `kube.namespace` (merged; the registry's entry wins for the same runner).
   */
  discovery?: "nats" | "kubernetes";
  /** Kubernetes API access for discovery=kubernetes and the autoscaler (default config: in-cluster/KUBECONFIG). */
  kube?: { config?: KubeConfig; namespace: string };
  /** Scales one Deployment per stage from the dispatcher's load (coordinator/autoscaler). */
  /** Client API authentication (transport/security/auth.ts; default NO_AUTH: everyone is the default tenant). */
  auth?: Authenticator;
  /** Client API server credentials: TLS / mTLS (transport/security/tls.ts; default plaintext). */
  serverCredentials?: grpc.ServerCredentials;
  /** How the coordinator calls runners: TLS channel credentials, server name override, runner token. */
  runnerTransport?: GrpcRunnerClientOptions;
  autoscaler?: {
    deployments: Record<string, string>;
    stages: Record<string, StagePolicy>;
    intervalMs?: number;
    log?: (line: string) => void;
  };
}

/** How long a job record write is retried while NATS is unreachable. */
const PUT_RETRY_MS = 60_000;

/** Job records in the NATS KV bucket (exported for its spec). */
export class KvJobStore implements JobStorePort {
  constructor(
    private readonly kv: NatsJobStore,
    /** True once the coordinator closed its NATS connection: writes are not retried then. */
    private readonly closed: () => boolean = () => false,
  ) {}
  async get(id: string): Promise<JobRecord | null> {
    if (!/^[A-Za-z0-9_-]{1,128}$/.test(id)) return null;
    return (await this.kv.get<JobRecord>(id))?.value ?? null;
  }
  /**
   * Retries while NATS is unreachable (a server restart): a lost write of a finished task or of
   * the terminal state would otherwise leave the record behind the job (JobManager saves in order).
   */
  async put(record: JobRecord): Promise<void> {
    const deadline = Date.now() + PUT_RETRY_MS;
    for (let wait = 100; ; wait = Math.min(wait * 2, 1_000)) {
      try {
        await this.kv.put(record.id, record);
        return;
      } catch (err) {
        if (!LavieError.from(err).retryable || this.closed() || Date.now() + wait > deadline) throw err;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }
  async list(): Promise<JobRecord[]> {
    return (await this.kv.list<JobRecord>()).map((r) => r.value);
  }
  claim(key: string, jobId: string): Promise<string | null> {
    return this.kv.claimIdempotencyKey(key, jobId);
  }
  release(key: string): Promise<void> {
    return this.kv.releaseIdempotencyKey(key);
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
    readonly autoscaler: Autoscaler | null = null,
    private readonly discovery: { stop(): void } | null = null,
  ) {}

  static async start(opts: CoordinatorOptions): Promise<Coordinator> {
    const models = await loadModelDirectory(opts.modelDir, { verifyHashes: false });
    const nats = await connectNats(opts.natsUrl, {
      name: "lavie-coordinator",
      ...(opts.natsAuth && { auth: opts.natsAuth }),
    });
    const tensors = countingStore(
      await NatsTensorStore.open(nats.objm, opts.tensorBucket ? { bucket: opts.tensorBucket } : {}),
    );
    const kv = await NatsJobStore.open(nats.kvm);
    const registry = await RunnerRegistry.open(
      nats.kvm,
      opts.runnersBucket ? { bucket: opts.runnersBucket } : {},
    );
    const directory = new WatchedRunners();
    const watch = await registry.watchRunners((rs) => {
      directory.runners = rs;
    });
    // The Kubernetes client is loaded only when discovery or the autoscaler need it.
    let kubeConfig: KubeConfig | null = null;
    const kube = async () => {
      if (!kubeConfig) {
        kubeConfig = opts.kube?.config ?? null;
        if (!kubeConfig) {
          const k8s = await import("@kubernetes/client-node");
          kubeConfig = new k8s.KubeConfig();
          kubeConfig.loadFromDefault();
        }
      }
      return kubeConfig;
    };
    let runners: RunnerDirectory = directory;
    let slices: EndpointSliceDirectory | null = null;
    if (opts.discovery === "kubernetes") {
      const d = await import("./discovery/endpointslices.ts");
      slices = await d.EndpointSliceDirectory.start(await kube(), {
        namespace: opts.kube?.namespace ?? "default",
      });
      runners = new d.MergedDirectory([directory, slices]);
    }
    const client = new GrpcRunnerClient(opts.runnerTransport);
    // Every completed task's output ref is checked against the plan and the store (data_loss).
    const verified = new VerifyingRunnerClient(client, tensors, {
      outputShape: plannedOutputShape(planInfoOf(models)),
    });
    const log = (line: string) => process.stderr.write(`${new Date().toISOString()} coordinator: ${line}\n`);
    const dispatcher = new Dispatcher(runners, verified, {
      log,
      ...opts.dispatcher,
      observer: opts.dispatcher?.observer ?? dispatchObserver(),
    });
    const admission = admissionMetrics();
    const jobs = new JobManager(
      limitsOf(models),
      planInfoOf(models),
      new KvJobStore(kv, () => nats.nc.isClosed()),
      tensors,
      dispatcher,
      {
        ...(opts.maxRunningJobs !== undefined && { maxRunningJobs: opts.maxRunningJobs }),
        ...(opts.maxQueuedJobs !== undefined && { maxQueuedJobs: opts.maxQueuedJobs }),
        ...(opts.maxQueuedPerTenant !== undefined && { maxQueuedPerTenant: opts.maxQueuedPerTenant }),
        ...(opts.recentFinishedJobs !== undefined && { recentFinished: opts.recentFinishedJobs }),
        ...(opts.keepTensors !== undefined && { keepTensors: opts.keepTensors }),
        onJobFinished: jobFinishedHook(),
        onRefused: admission.onRefused,
        log,
      },
    );
    const server = new grpc.Server({ "grpc.max_receive_message_length": 4 * 1024 * 1024 });
    addJobService(server, jobs, tensors, opts.auth ?? NO_AUTH);
    // grpc.health.v1 (NOT_SERVING until jobs are resumed) and server reflection.
    instrumentServer(server, [JobService], "NOT_SERVING", [
      watchDispatcher(dispatcher, runners),
      admission.watch(jobs),
    ]);
    const address = await new Promise<string>((resolve, reject) => {
      const host = opts.host ?? "127.0.0.1";
      server.bindAsync(
        `${host}:${opts.port ?? 0}`,
        opts.serverCredentials ?? grpc.ServerCredentials.createInsecure(),
        (err, port) =>
          err
            ? reject(new LavieError("unavailable", `cannot listen on ${host}:${opts.port}: ${err.message}`))
            : resolve(`${host}:${port}`),
      );
    });
    const resumed = await jobs.resume();
    setServing(server, "SERVING");
    let autoscaler: Autoscaler | null = null;
    if (opts.autoscaler) {
      const { Autoscaler, KubeScaleTarget } = await import("./autoscaler/kube.ts");
      const target = new KubeScaleTarget(await kube(), {
        namespace: opts.kube?.namespace ?? "default",
        deployments: opts.autoscaler.deployments,
      });
      autoscaler = new Autoscaler(target, dispatcher, runners, {
        stages: opts.autoscaler.stages,
        remaining: (ids) => {
          const out: Record<string, number> = {};
          for (const id of ids) {
            for (const p of jobs.progress(id))
              out[p.stage] = (out[p.stage] ?? 0) + p.tasksTotal - p.tasksDone;
          }
          return out;
        },
        ...(opts.autoscaler.intervalMs !== undefined && { intervalMs: opts.autoscaler.intervalMs }),
        ...(opts.autoscaler.log && { log: opts.autoscaler.log }),
      });
      autoscaler.start();
    }
    return new Coordinator(
      address,
      jobs,
      server,
      nats,
      dispatcher,
      client,
      watch,
      resumed,
      autoscaler,
      slices,
    );
  }

  /** The dispatcher's counters: queued, in flight, dispatched, retried, quarantined runners. */
  dispatcherStats(): DispatcherStats {
    return this.dispatcher.stats();
  }

  /** The dispatcher's load per stage and per runner (what the autoscaler reads). */
  load(): DispatcherLoad {
    return this.dispatcher.load();
  }

  async stop(): Promise<void> {
    serverStopping(this.server);
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
    await this.autoscaler?.stop();
    this.discovery?.stop();
    this.watch.stop();
    this.dispatcher.close();
    this.client.close();
    await this.nats.close();
  }
}
