/**
 * Autoscaling stage runners on Kubernetes: one Deployment per stage, scaled through its `scale`
 * subresource (GET/PUT /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale), with the policy of
 * ./policy.ts applied every `intervalMs` to the dispatcher's load and the runner directory.
 *
 * Busy runners are never removed: before lowering a Deployment's replicas, its pods are annotated
 * with `controller.kubernetes.io/pod-deletion-cost` (BUSY_COST for pods whose runner has tasks in
 * flight, IDLE_COST for the others), so the ReplicaSet deletes idle pods first; the policy never asks
 * for fewer replicas than busy runners. A runner told to stop (SIGTERM) drains: it refuses new tasks
 * and finishes the ones in flight (a task dispatched to it in the short race before the annotation
 * takes effect still completes, or is retried elsewhere as UNAVAILABLE).
 *
 * Cold start: the time from a scale-from-zero decision for a stage to the first runner of that stage
 * appearing in the runner directory, recorded in `coldStarts` and logged.
 */
import * as k8s from "@kubernetes/client-node";
import { LavieError } from "../../core/errors.ts";
import type { DispatcherLoad } from "../distributed/dispatcher.ts";
import type { RunnerDirectory, RunnerInfo } from "../distributed/ports.ts";
import {
  type Decision,
  decide,
  initialState,
  type StagePolicy,
  type StageState,
  validatePolicy,
} from "./policy.ts";

export const DELETION_COST = "controller.kubernetes.io/pod-deletion-cost";
export const BUSY_COST = "10000";
export const IDLE_COST = "-10000";

/** Where replicas live; the Kubernetes adapter below, or a fake in unit tests. */
export interface ScaleTarget {
  /** spec.replicas of the stage's workload, and a version for optimistic concurrency. */
  getReplicas(stage: string): Promise<{ replicas: number; version: string | undefined }>;
  /** Sets spec.replicas (fails on a version conflict when version is given). */
  setReplicas(stage: string, replicas: number, version: string | undefined): Promise<void>;
  /** Marks the stage's pods so that the busy ones are the last to be deleted on scale-down. */
  rankPods(stage: string, busy: BusyRunners): Promise<PodRank[]>;
}

/** Runners with tasks in flight: by id and by gRPC address (host:port). */
export interface BusyRunners {
  ids: ReadonlySet<string>;
  addresses: ReadonlySet<string>;
}

export interface PodRank {
  pod: string;
  busy: boolean;
  cost: string;
}

export interface KubeScaleTargetOptions {
  namespace: string;
  /** Deployment name per stage, e.g. { base: "lavie-runner-base", ... }. */
  deployments: Record<string, string>;
  /** Label selector of a stage's runner pods (default: component=runner + lavie.dev/stage). */
  podSelector?: (stage: string) => string;
}

export const RUNNER_COMPONENT_SELECTOR = "app.kubernetes.io/component=runner";
export const STAGE_LABEL = "lavie.dev/stage";

function codeOf(err: unknown): number | undefined {
  const c = (err as { code?: unknown }).code;
  return typeof c === "number" ? c : undefined;
}

export class KubeScaleTarget implements ScaleTarget {
  private readonly apps: k8s.AppsV1Api;
  private readonly core: k8s.CoreV1Api;
  private readonly podSelector: (stage: string) => string;

  constructor(
    kc: k8s.KubeConfig,
    private readonly opts: KubeScaleTargetOptions,
  ) {
    this.apps = kc.makeApiClient(k8s.AppsV1Api);
    this.core = kc.makeApiClient(k8s.CoreV1Api);
    this.podSelector =
      opts.podSelector ?? ((stage) => `${RUNNER_COMPONENT_SELECTOR},${STAGE_LABEL}=${stage}`);
  }

  private deployment(stage: string): string {
    const name = this.opts.deployments[stage];
    if (!name) throw new LavieError("failed_precondition", `no Deployment configured for stage ${stage}`);
    return name;
  }

  async getReplicas(stage: string): Promise<{ replicas: number; version: string | undefined }> {
    const s = await this.apps.readNamespacedDeploymentScale({
      name: this.deployment(stage),
      namespace: this.opts.namespace,
    });
    return { replicas: s.spec?.replicas ?? 0, version: s.metadata?.resourceVersion };
  }

  async setReplicas(stage: string, replicas: number, version: string | undefined): Promise<void> {
    const name = this.deployment(stage);
    await this.apps.replaceNamespacedDeploymentScale({
      name,
      namespace: this.opts.namespace,
      body: {
        apiVersion: "autoscaling/v1",
        kind: "Scale",
        metadata: {
          name,
          namespace: this.opts.namespace,
          ...(version !== undefined && { resourceVersion: version }),
        },
        spec: { replicas },
      },
    });
  }

  async rankPods(stage: string, busy: BusyRunners): Promise<PodRank[]> {
    const pods = await this.core.listNamespacedPod({
      namespace: this.opts.namespace,
      labelSelector: this.podSelector(stage),
    });
    const ipCount = new Map<string, number>();
    for (const p of pods.items) {
      const ip = p.status?.podIP;
      if (ip) ipCount.set(ip, (ipCount.get(ip) ?? 0) + 1);
    }
    const busyHosts = new Set([...busy.addresses].map((a) => a.slice(0, a.lastIndexOf(":"))));
    const ranks: PodRank[] = [];
    for (const p of pods.items) {
      const name = p.metadata?.name;
      if (!name || p.metadata?.deletionTimestamp) continue;
      const ip = p.status?.podIP;
      // A runner registers with its pod name as id (LAVIE_RUNNER_ID from the downward API) or is
      // found by its pod IP (when no other pod shares it).
      const isBusy = busy.ids.has(name) || (ip !== undefined && ipCount.get(ip) === 1 && busyHosts.has(ip));
      const cost = isBusy ? BUSY_COST : IDLE_COST;
      ranks.push({ pod: name, busy: isBusy, cost });
      if (p.metadata?.annotations?.[DELETION_COST] === cost) continue;
      try {
        await this.core.patchNamespacedPod(
          {
            name,
            namespace: this.opts.namespace,
            body: { metadata: { annotations: { [DELETION_COST]: cost } } },
          },
          k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
        );
      } catch (err) {
        if (codeOf(err) !== 404) throw err; // a pod that is already gone needs no rank
      }
    }
    return ranks;
  }
}

export interface LoadSource {
  load(): DispatcherLoad;
}

export interface AutoscalerOptions {
  /** The stages to scale and their policies (stages not listed are left alone). */
  stages: Record<string, StagePolicy>;
  /**
   * Tasks per stage that the given running jobs still have to run, ready or not (the coordinator:
   * JobManager.progress); what exceeds the dispatcher's queued + in flight is "upcoming" work.
   */
  remaining?: (jobIds: string[]) => Record<string, number>;
  intervalMs?: number;
  now?: () => number;
  log?: (line: string) => void;
}

export interface ScaleEvent {
  atMs: number;
  stage: string;
  from: number;
  to: number;
  reason: Decision["reason"];
  queued: number;
  inFlight: number;
  upcoming: number;
  /** Pods ranked before a scale-down. */
  ranked?: PodRank[];
}

export interface ColdStart {
  stage: string;
  /** From the scale-from-zero decision to the first runner of the stage in the directory. */
  ms: number;
  atMs: number;
}

export class Autoscaler {
  readonly events: ScaleEvent[] = [];
  readonly coldStarts: ColdStart[] = [];
  private readonly states = new Map<string, StageState>();
  private readonly pendingCold = new Map<string, number>();
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly log: (line: string) => void;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;

  constructor(
    private readonly target: ScaleTarget,
    private readonly loadSource: LoadSource,
    private readonly directory: RunnerDirectory,
    private readonly opts: AutoscalerOptions,
  ) {
    for (const [stage, p] of Object.entries(opts.stages)) validatePolicy(p, `autoscaler.${stage}`);
    this.intervalMs = opts.intervalMs ?? 1_000;
    this.now = opts.now ?? Date.now;
    this.log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
  }

  start(): void {
    if (this.timer || this.stopped) return;
    const loop = () => {
      if (this.stopped) return;
      this.running = this.tick().finally(() => {
        this.running = null;
        if (!this.stopped) this.timer = setTimeout(loop, this.intervalMs);
      });
    };
    this.timer = setTimeout(loop, 0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  /** One pass over all stages (errors are logged; the next tick tries again). */
  async tick(): Promise<void> {
    const load = this.loadSource.load();
    const runners = this.directory.list();
    let remaining: Record<string, number> = {};
    try {
      remaining = this.opts.remaining?.(load.jobs) ?? {};
    } catch (err) {
      this.log(`autoscaler: remaining work: ${err instanceof Error ? err.message : String(err)}`);
    }
    for (const [stage, policy] of Object.entries(this.opts.stages)) {
      try {
        await this.tickStage(stage, policy, load, runners, remaining[stage] ?? 0);
      } catch (err) {
        this.log(`autoscaler: ${stage}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }

  private async tickStage(
    stage: string,
    policy: StagePolicy,
    load: DispatcherLoad,
    runners: RunnerInfo[],
    remaining: number,
  ): Promise<void> {
    const now = this.now();
    const mine = runners.filter((r) => r.stages.includes(stage));
    const started = this.pendingCold.get(stage);
    if (started !== undefined && mine.length > 0) {
      this.pendingCold.delete(stage);
      const ms = now - started;
      this.coldStarts.push({ stage, ms, atMs: now });
      this.log(`autoscaler: ${stage}: cold start ${ms} ms (scale from zero -> first runner registered)`);
    }
    const busy = mine.filter((r) => (load.inFlightByRunner[r.id] ?? 0) > 0);
    const slots = mine.length > 0 ? Math.max(...mine.map((r) => r.slots)) : policy.slotsPerRunner;
    const queued = load.queued[stage] ?? 0;
    const inFlight = load.inFlight[stage] ?? 0;
    const gang = load.queuedGang[stage] ?? 0;
    const { replicas: current, version } = await this.target.getReplicas(stage);
    const d = decide(
      { ...policy, slotsPerRunner: slots },
      {
        queued,
        inFlight,
        busyRunners: busy.length,
        minRunners: gang > 0 ? 2 : 0,
        upcoming: Math.max(0, remaining - queued - inFlight),
      },
      current,
      this.states.get(stage) ?? initialState(),
      now,
    );
    this.states.set(stage, d.state);
    if (d.replicas === current) return;
    const upcoming = Math.max(0, remaining - queued - inFlight);
    const event: ScaleEvent = {
      atMs: now,
      stage,
      from: current,
      to: d.replicas,
      reason: d.reason,
      queued,
      inFlight,
      upcoming,
    };
    if (d.replicas < current) {
      event.ranked = await this.target.rankPods(stage, {
        ids: new Set(busy.map((r) => r.id)),
        addresses: new Set(busy.map((r) => r.address)),
      });
    }
    await this.target.setReplicas(stage, d.replicas, version);
    if (current === 0 && mine.length === 0 && !this.pendingCold.has(stage)) this.pendingCold.set(stage, now);
    if (d.replicas === 0) this.pendingCold.delete(stage);
    this.events.push(event);
    this.log(
      `autoscaler: ${stage}: ${current} -> ${d.replicas} (${d.reason}; queued ${queued}, in flight ${inFlight}, upcoming ${upcoming}, busy runners ${busy.length})`,
    );
  }
}
