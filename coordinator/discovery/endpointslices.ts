/**
 * Runner discovery from Kubernetes EndpointSlices (discovery.k8s.io/v1): list, then watch from the
 * list's resourceVersion, of the slices matching `app.kubernetes.io/component=runner` in one
 * namespace. Each ready endpoint of a slice is a runner:
 *
 * - id: the endpoint's targetRef name (the pod name), else its first address;
 * - address: `<endpoint address>:<port named "grpc">` of the slice;
 * - stages: the slice's label `lavie.dev/stage` (comma-separated for runners serving several);
 * - slots: the slice's annotation `lavie.dev/slots`, else `defaultSlots` (1).
 *
 * Endpoints that are not ready (e.g. terminating, i.e. draining) are left out. A watch that ends is
 * resumed from the last resourceVersion seen; a 410 Gone (history compacted) relists.
 * `MergedDirectory` joins this with the NATS registry (see coordinator/server.ts).
 */
import * as k8s from "@kubernetes/client-node";
import type { RunnerDirectory, RunnerInfo } from "../distributed/ports.ts";

export const RUNNER_SELECTOR = "app.kubernetes.io/component=runner";
export const STAGE_LABEL = "lavie.dev/stage";
export const SLOTS_ANNOTATION = "lavie.dev/slots";

export interface EndpointSliceDirectoryOptions {
  namespace: string;
  labelSelector?: string;
  portName?: string;
  defaultSlots?: number;
  /** Delay before re-watching after a watch ends with an error. */
  retryMs?: number;
  onChange?: (runners: RunnerInfo[]) => void;
  log?: (line: string) => void;
}

/** The runners of one EndpointSlice (pure). */
export function runnersOfSlice(
  slice: k8s.V1EndpointSlice,
  portName = "grpc",
  defaultSlots = 1,
): RunnerInfo[] {
  const stageLabel = slice.metadata?.labels?.[STAGE_LABEL];
  if (!stageLabel) return [];
  const stages = stageLabel
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const port = slice.ports?.find((p) => p.name === portName)?.port;
  if (port === undefined || port === null) return [];
  const slotsText = slice.metadata?.annotations?.[SLOTS_ANNOTATION];
  const parsed = slotsText !== undefined ? Number(slotsText) : Number.NaN;
  const slots = Number.isInteger(parsed) && parsed >= 1 ? parsed : defaultSlots;
  const out: RunnerInfo[] = [];
  for (const ep of slice.endpoints ?? []) {
    // ready unset means "unknown", which consumers should treat as ready (API docs).
    if (ep.conditions?.ready === false || ep.conditions?.terminating === true) continue;
    const ip = ep.addresses[0];
    if (!ip) continue;
    const host = ip.includes(":") ? `[${ip}]` : ip;
    out.push({
      id: ep.targetRef?.name ?? ip,
      address: `${host}:${port}`,
      stages,
      models: [],
      slots,
      freeSlots: slots,
    });
  }
  return out;
}

export class EndpointSliceDirectory implements RunnerDirectory {
  private readonly slices = new Map<string, k8s.V1EndpointSlice>();
  private runners: RunnerInfo[] = [];
  private resourceVersion = "";
  private abort: AbortController | null = null;
  private retry: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly api: k8s.DiscoveryV1Api;
  private readonly watcher: k8s.Watch;
  private readonly selector: string;
  private readonly log: (line: string) => void;

  private constructor(
    kc: k8s.KubeConfig,
    private readonly opts: EndpointSliceDirectoryOptions,
  ) {
    this.api = kc.makeApiClient(k8s.DiscoveryV1Api);
    this.watcher = new k8s.Watch(kc);
    this.selector = opts.labelSelector ?? RUNNER_SELECTOR;
    this.log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
  }

  /** Lists the slices (fails if the API server is unreachable), then keeps watching. */
  static async start(
    kc: k8s.KubeConfig,
    opts: EndpointSliceDirectoryOptions,
  ): Promise<EndpointSliceDirectory> {
    const d = new EndpointSliceDirectory(kc, opts);
    await d.relist();
    await d.watch();
    return d;
  }

  list(): RunnerInfo[] {
    return this.runners;
  }

  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    this.abort?.abort();
  }

  private rebuild(): void {
    const rs: RunnerInfo[] = [];
    for (const s of this.slices.values())
      rs.push(...runnersOfSlice(s, this.opts.portName, this.opts.defaultSlots));
    this.runners = rs;
    this.opts.onChange?.(rs);
  }

  private async relist(): Promise<void> {
    const list = await this.api.listNamespacedEndpointSlice({
      namespace: this.opts.namespace,
      labelSelector: this.selector,
    });
    this.slices.clear();
    for (const s of list.items) if (s.metadata?.name) this.slices.set(s.metadata.name, s);
    this.resourceVersion = list.metadata?.resourceVersion ?? "";
    this.rebuild();
  }

  private async watch(): Promise<void> {
    if (this.stopped) return;
    let gone = false;
    this.abort = await this.watcher.watch(
      `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(this.opts.namespace)}/endpointslices`,
      {
        labelSelector: this.selector,
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
      },
      (type: string, obj: k8s.V1EndpointSlice & { code?: number }) => {
        if (type === "ERROR") {
          if (obj.code === 410) gone = true;
          return;
        }
        const rv = obj.metadata?.resourceVersion;
        if (rv) this.resourceVersion = rv;
        if (type === "BOOKMARK") return;
        const name = obj.metadata?.name;
        if (!name) return;
        if (type === "DELETED") this.slices.delete(name);
        else this.slices.set(name, obj);
        this.rebuild();
      },
      (err: unknown) => {
        if (this.stopped) return;
        if (err) this.log(`endpointslices: watch ended: ${err instanceof Error ? err.message : String(err)}`);
        this.retry = setTimeout(
          () => {
            this.retry = null;
            const next = gone ? this.relist().then(() => this.watch()) : this.watch();
            next.catch((e: unknown) => {
              this.log(`endpointslices: ${e instanceof Error ? e.message : String(e)}`);
              gone = true;
              this.scheduleRetry();
            });
          },
          err ? (this.opts.retryMs ?? 1_000) : 0,
        );
      },
    );
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.relist()
        .then(() => this.watch())
        .catch(() => this.scheduleRetry());
    }, this.opts.retryMs ?? 1_000);
  }
}

/**
 * Runners from several sources (the NATS registry first): one entry per runner, matched by id and
 * by address; the first source's entry wins (the registry's has warm models and free slots).
 */
export class MergedDirectory implements RunnerDirectory {
  constructor(private readonly sources: RunnerDirectory[]) {}
  list(): RunnerInfo[] {
    const ids = new Set<string>();
    const addresses = new Set<string>();
    const out: RunnerInfo[] = [];
    for (const src of this.sources) {
      for (const r of src.list()) {
        if (ids.has(r.id) || addresses.has(r.address)) continue;
        ids.add(r.id);
        addresses.add(r.address);
        out.push(r);
      }
    }
    return out;
  }
}
