/**
 * A fake Kubernetes API server over plain HTTP (node:http), for tests: the few paths lavie-serve
 * uses, with the real API's JSON shapes, resourceVersion and watch semantics.
 *
 *   GET        /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale      -> autoscaling/v1 Scale
 *   PUT        /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale      (409 on a stale resourceVersion)
 *   PATCH      /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale      (merge / strategic merge)
 *   GET        /api/v1/namespaces/{ns}/pods[?labelSelector=]               -> v1 PodList
 *   GET/PATCH  /api/v1/namespaces/{ns}/pods/{name}                         (merge / strategic merge)
 *   GET        /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices[?labelSelector=][&watch=true
 *              &resourceVersion=&allowWatchBookmarks=]  -> EndpointSliceList, or newline-delimited
 *              WatchEvents (ADDED/MODIFIED/DELETED/BOOKMARK; ERROR 410 for a compacted version)
 * Errors are v1 Status objects (404 NotFound, 409 Conflict, 415, 422, 405).
 *
 * Test controls: addDeployment (with a simulated Deployment controller: raising replicas creates
 * pods after `startDelayMs` through the `startPod` callback - e.g. a real runner process - and adds
 * them as ready endpoints to the stage's EndpointSlice; lowering replicas picks pods the way a
 * ReplicaSet does - not-ready first, then lowest pod-deletion-cost, then youngest - marks their
 * endpoints terminating, and calls `stopPod`), setEndpoints, scaleLog, deletedPods, compact().
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import * as k8s from "@kubernetes/client-node";

type Obj = Record<string, unknown> & { metadata: Meta };
interface Meta {
  name: string;
  namespace: string;
  uid: string;
  resourceVersion: string;
  creationTimestamp: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  generation?: number;
  deletionTimestamp?: string;
  [k: string]: unknown;
}

export interface StartedPod {
  /** Pod IP and the gRPC port the runner listens on. */
  ip: string;
  port: number;
}

export interface DeploymentSpec {
  name: string;
  namespace?: string;
  /** Labels of its pods (and its EndpointSlice), e.g. component=runner + lavie.dev/stage. */
  podLabels: Record<string, string>;
  replicas?: number;
  /** Delay from a replica increase to the pod starting (scheduling, image pull). */
  startDelayMs?: number;
  /** Starts the pod's container; resolves when it is ready. */
  startPod?: (podName: string) => Promise<StartedPod>;
  /** Stops it (SIGTERM: the runner drains); resolves when it has exited. */
  stopPod?: (podName: string) => Promise<void>;
  /** EndpointSlice annotations (e.g. lavie.dev/slots). */
  sliceAnnotations?: Record<string, string>;
}

export interface ScaleChange {
  deployment: string;
  from: number;
  to: number;
  atMs: number;
}

export interface DeletedPod {
  deployment: string;
  pod: string;
  cost: number;
  atMs: number;
}

interface Deployment {
  spec: DeploymentSpec;
  namespace: string;
  meta: Meta;
  replicas: number;
  /** Pods by name, in creation order. */
  pods: Map<string, { ready: boolean; terminating: boolean; port: number }>;
  /** Pods created but not started yet (cancellable while waiting for startDelayMs) or starting. */
  starting: { cancelled: boolean; launched: boolean }[];
  seq: number;
}

interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED";
  object: Obj;
  rv: number;
}

interface Watcher {
  res: ServerResponse;
  namespace: string;
  selector: Selector;
}

type Selector = (labels: Record<string, string> | undefined) => boolean;

/** Label selectors: k=v, k==v, k!=v, k, !k, k in (a,b), k notin (a,b), comma-separated. */
export function parseSelector(text: string | null): Selector {
  if (!text) return () => true;
  const parts: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of text) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(cur);
      cur = "";
    } else cur += ch;
  }
  parts.push(cur);
  const reqs = parts.map((raw) => {
    const p = raw.trim();
    let m = /^(\S+?)\s+(in|notin)\s+\((.*)\)$/.exec(p);
    if (m) {
      const [, key, op, vals] = m;
      const set = new Set(vals!.split(",").map((v) => v.trim()));
      return (l: Record<string, string>) =>
        op === "in"
          ? l[key!] !== undefined && set.has(l[key!]!)
          : l[key!] === undefined || !set.has(l[key!]!);
    }
    m = /^([^!=\s]+)\s*(!=|==|=)\s*(.*)$/.exec(p);
    if (m) {
      const [, key, op, val] = m;
      return (l: Record<string, string>) => (op === "!=" ? l[key!] !== val : l[key!] === val);
    }
    if (p.startsWith("!")) return (l: Record<string, string>) => l[p.slice(1)] === undefined;
    return (l: Record<string, string>) => l[p] !== undefined;
  });
  return (labels) => reqs.every((r) => r(labels ?? {}));
}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    target && typeof target === "object" && !Array.isArray(target)
      ? { ...(target as Record<string, unknown>) }
      : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

const clone = <T>(v: T): T => structuredClone(v);

export class FakeKubeApiServer {
  readonly scaleLog: ScaleChange[] = [];
  readonly deletedPods: DeletedPod[] = [];
  /** Every request, "METHOD path" (for assertions on what the client did). */
  readonly requests: string[] = [];
  private rv = 1;
  private readonly deployments = new Map<string, Deployment>();
  private readonly pods = new Map<string, Obj>();
  private readonly slices = new Map<string, Obj>();
  private readonly history: WatchEvent[] = [];
  private compactedBefore = 0;
  private readonly watchers = new Set<Watcher>();
  private readonly pending = new Set<Promise<unknown>>();
  private bookmarkTimer: NodeJS.Timeout | null = null;
  private uidSeq = 0;

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(opts: { bookmarkMs?: number } = {}): Promise<FakeKubeApiServer> {
    let self: FakeKubeApiServer | null = null;
    const server = createServer((req, res) => {
      self!.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) self!.status(res, 500, "InternalError", String(err));
        else res.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    self = new FakeKubeApiServer(server, `http://127.0.0.1:${port}`);
    const fake = self;
    fake.bookmarkTimer = setInterval(() => fake.bookmarks(), opts.bookmarkMs ?? 5_000);
    fake.bookmarkTimer.unref();
    return fake;
  }

  /** A client-node KubeConfig pointing at this server (plain HTTP, no credentials). */
  kubeConfig(): k8s.KubeConfig {
    const kc = new k8s.KubeConfig();
    kc.loadFromString(
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "fake", cluster: { server: this.url, "insecure-skip-tls-verify": true } }],
        users: [{ name: "fake", user: {} }],
        contexts: [{ name: "fake", context: { cluster: "fake", user: "fake", namespace: "default" } }],
        "current-context": "fake",
      }),
    );
    return kc;
  }

  async stop(): Promise<void> {
    if (this.bookmarkTimer) clearInterval(this.bookmarkTimer);
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Waits for the simulated controller's pod starts and stops under way. */
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  // ---- test controls --------------------------------------------------------------------------

  addDeployment(spec: DeploymentSpec): void {
    const namespace = spec.namespace ?? "default";
    const d: Deployment = {
      spec,
      namespace,
      meta: this.meta(spec.name, namespace, { generation: 1 }),
      replicas: 0,
      pods: new Map(),
      starting: [],
      seq: 0,
    };
    this.deployments.set(`${namespace}/${spec.name}`, d);
    if (spec.replicas) this.setReplicas(d, spec.replicas);
  }

  replicas(name: string, namespace = "default"): number {
    return this.deployment(namespace, name)?.replicas ?? 0;
  }

  /** Pods of a deployment that exist (started, not deleted), with their annotations. */
  podsOf(name: string, namespace = "default"): { name: string; annotations: Record<string, string> }[] {
    const d = this.deployment(namespace, name);
    if (!d) return [];
    return [...d.pods.keys()].map((p) => ({
      name: p,
      annotations: { ...(this.pods.get(`${namespace}/${p}`)?.metadata.annotations ?? {}) },
    }));
  }

  /** Replaces a slice's endpoints directly (tests of discovery without a controller). */
  setEndpoints(
    sliceName: string,
    labels: Record<string, string>,
    port: number,
    endpoints: { ip: string; pod?: string; ready?: boolean }[],
    opts: { namespace?: string; annotations?: Record<string, string> } = {},
  ): void {
    const namespace = opts.namespace ?? "default";
    const key = `${namespace}/${sliceName}`;
    const prev = this.slices.get(key);
    const obj: Obj = {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: this.meta(sliceName, namespace, {
        labels: { ...labels },
        ...(opts.annotations && { annotations: { ...opts.annotations } }),
        ...(prev && { uid: prev.metadata.uid, creationTimestamp: prev.metadata.creationTimestamp }),
      }),
      addressType: "IPv4",
      ports: [{ name: "grpc", port, protocol: "TCP" }],
      endpoints: endpoints.map((e) => ({
        addresses: [e.ip],
        conditions: { ready: e.ready ?? true, serving: e.ready ?? true, terminating: false },
        ...(e.pod && { targetRef: { kind: "Pod", name: e.pod, namespace } }),
      })),
    };
    this.slices.set(key, obj);
    this.emit(prev ? "MODIFIED" : "ADDED", obj);
  }

  deleteSlice(sliceName: string, namespace = "default"): void {
    const key = `${namespace}/${sliceName}`;
    const prev = this.slices.get(key);
    if (!prev) return;
    this.slices.delete(key);
    const obj = clone(prev);
    obj.metadata.resourceVersion = String(++this.rv);
    this.emit("DELETED", obj);
  }

  /** Ends every open watch (as an API server restart or a load balancer timeout does). */
  dropWatches(): void {
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
  }

  /** Drops watch history: watches from older resourceVersions get 410 Gone. */
  compact(): void {
    this.compactedBefore = this.rv + 1;
    this.history.length = 0;
  }

  // ---- the simulated Deployment controller -----------------------------------------------------

  private setReplicas(d: Deployment, to: number): void {
    const from = d.replicas;
    if (to === from) return;
    d.replicas = to;
    d.meta.resourceVersion = String(++this.rv);
    d.meta.generation = (d.meta.generation ?? 1) + 1;
    this.scaleLog.push({ deployment: d.spec.name, from, to, atMs: Date.now() });
    this.reconcile(d);
  }

  private reconcile(d: Deployment): void {
    const live = [...d.pods.entries()].filter(([, p]) => !p.terminating);
    const have = live.length + d.starting.length;
    for (let i = have; i < d.replicas; i++) this.track(this.createPod(d));
    if (have > d.replicas) {
      let excess = have - d.replicas;
      // Pods not started yet go first (a ReplicaSet deletes pending pods before running ones).
      for (const s of [...d.starting].reverse()) {
        if (excess === 0 || s.launched) continue;
        s.cancelled = true;
        d.starting.splice(d.starting.indexOf(s), 1);
        excess--;
      }
      // Pods whose container is starting right now are reconciled once they run (createPod).
      excess -= d.starting.length;
      if (excess > 0) {
        const ranked = live
          .map(([name, p], index) => ({ name, p, index, cost: this.costOf(d.namespace, name) }))
          .sort((a, b) => Number(a.p.ready) - Number(b.p.ready) || a.cost - b.cost || b.index - a.index);
        for (const victim of ranked.slice(0, excess)) this.track(this.deletePod(d, victim.name, victim.cost));
      }
    }
  }

  private track(p: Promise<unknown>): void {
    this.pending.add(p);
    p.finally(() => this.pending.delete(p)).catch(() => {});
  }

  private costOf(namespace: string, pod: string): number {
    const v = this.pods.get(`${namespace}/${pod}`)?.metadata.annotations?.[
      "controller.kubernetes.io/pod-deletion-cost"
    ];
    const n = v === undefined ? 0 : Number(v);
    return Number.isFinite(n) ? n : 0;
  }

  private async createPod(d: Deployment): Promise<void> {
    const token = { cancelled: false, launched: false };
    d.starting.push(token);
    const name = `${d.spec.name}-${(++d.seq).toString().padStart(5, "0")}`;
    await new Promise((r) => setTimeout(r, d.spec.startDelayMs ?? 0));
    if (token.cancelled) return; // deleted by a scale-down before it started
    token.launched = true;
    let started: StartedPod;
    try {
      started = d.spec.startPod ? await d.spec.startPod(name) : { ip: "127.0.0.1", port: 50052 };
    } finally {
      d.starting.splice(d.starting.indexOf(token), 1);
    }
    const pod: Obj = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: this.meta(name, d.namespace, { labels: { ...d.spec.podLabels } }),
      spec: { containers: [{ name: "runner", ports: [{ name: "grpc", containerPort: started.port }] }] },
      status: {
        phase: "Running",
        podIP: started.ip,
        podIPs: [{ ip: started.ip }],
        conditions: [{ type: "Ready", status: "True" }],
      },
    };
    this.pods.set(`${d.namespace}/${name}`, pod);
    d.pods.set(name, { ready: true, terminating: false, port: started.port });
    this.upsertSlice(d, started.port, (eps) => {
      eps.push({
        addresses: [started.ip],
        conditions: { ready: true, serving: true, terminating: false },
        targetRef: { kind: "Pod", name, namespace: d.namespace },
      });
    });
    // Replicas may have been lowered while it started.
    if ([...d.pods.values()].filter((p) => !p.terminating).length > d.replicas) this.reconcile(d);
  }

  private async deletePod(d: Deployment, name: string, cost: number): Promise<void> {
    const state = d.pods.get(name);
    if (!state) return;
    state.terminating = true;
    state.ready = false;
    this.deletedPods.push({ deployment: d.spec.name, pod: name, cost, atMs: Date.now() });
    const key = `${d.namespace}/${name}`;
    const pod = this.pods.get(key);
    if (pod) {
      pod.metadata.deletionTimestamp = new Date().toISOString();
      pod.metadata.resourceVersion = String(++this.rv);
    }
    this.upsertSlice(d, state.port, (eps) => {
      for (const e of eps) {
        if ((e.targetRef as { name?: string } | undefined)?.name === name) {
          e.conditions = { ready: false, serving: true, terminating: true };
        }
      }
    });
    try {
      await d.spec.stopPod?.(name);
    } finally {
      d.pods.delete(name);
      this.pods.delete(key);
      this.upsertSlice(d, state.port, (eps) => {
        const i = eps.findIndex((e) => (e.targetRef as { name?: string } | undefined)?.name === name);
        if (i >= 0) eps.splice(i, 1);
      });
    }
  }

  /**
   * The EndpointSlice of the deployment's pods listening on `port`, changed by `edit`. As the
   * EndpointSlice controller does, endpoints are grouped by their resolved ports (here every runner
   * listens on its own port on 127.0.0.1, so each port gets a slice); an emptied slice is deleted.
   */
  private upsertSlice(d: Deployment, port: number, edit: (eps: Record<string, unknown>[]) => void): void {
    const sliceName = `${d.spec.name}-p${port}`;
    const key = `${d.namespace}/${sliceName}`;
    const prev = this.slices.get(key);
    const eps = clone((prev?.endpoints as Record<string, unknown>[] | undefined) ?? []);
    edit(eps);
    if (eps.length === 0) {
      if (prev) this.deleteSlice(sliceName, d.namespace);
      return;
    }
    const obj: Obj = {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: this.meta(sliceName, d.namespace, {
        labels: { ...d.spec.podLabels, "kubernetes.io/service-name": d.spec.name },
        ...(d.spec.sliceAnnotations && { annotations: { ...d.spec.sliceAnnotations } }),
        ...(prev && { uid: prev.metadata.uid, creationTimestamp: prev.metadata.creationTimestamp }),
      }),
      addressType: "IPv4",
      ports: [{ name: "grpc", port, protocol: "TCP" }],
      endpoints: eps,
    };
    this.slices.set(key, obj);
    this.emit(prev ? "MODIFIED" : "ADDED", obj);
  }

  // ---- HTTP -------------------------------------------------------------------------------------

  private meta(name: string, namespace: string, extra: Partial<Meta> = {}): Meta {
    return {
      name,
      namespace,
      uid: `00000000-0000-4000-8000-${(++this.uidSeq).toString(16).padStart(12, "0")}`,
      creationTimestamp: new Date().toISOString(),
      ...extra,
      resourceVersion: String(++this.rv),
    };
  }

  private deployment(namespace: string, name: string): Deployment | undefined {
    return this.deployments.get(`${namespace}/${name}`);
  }

  private emit(type: WatchEvent["type"], object: Obj): void {
    const ev: WatchEvent = { type, object: clone(object), rv: Number(object.metadata.resourceVersion) };
    this.history.push(ev);
    for (const w of this.watchers) this.send(w, ev);
  }

  private send(w: Watcher, ev: WatchEvent): void {
    if (ev.object.metadata.namespace !== w.namespace || !w.selector(ev.object.metadata.labels)) return;
    w.res.write(`${JSON.stringify({ type: ev.type, object: this.publicSlice(ev.object) })}\n`);
  }

  private publicSlice(o: Obj): Obj {
    return clone(o);
  }

  private bookmarks(): void {
    for (const w of this.watchers) {
      w.res.write(
        `${JSON.stringify({
          type: "BOOKMARK",
          object: {
            apiVersion: "discovery.k8s.io/v1",
            kind: "EndpointSlice",
            metadata: { resourceVersion: String(this.rv) },
          },
        })}\n`,
      );
    }
  }

  private json(res: ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
    res.end(text);
  }

  private status(
    res: ServerResponse,
    code: number,
    reason: string,
    message: string,
    details?: { name?: string; group?: string; kind?: string },
  ): void {
    this.json(res, code, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message,
      reason,
      ...(details && { details }),
      code,
    });
  }

  private async body(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    return text ? JSON.parse(text) : {};
  }

  private scaleOf(d: Deployment): Obj {
    return {
      kind: "Scale",
      apiVersion: "autoscaling/v1",
      metadata: { ...clone(d.meta) },
      spec: { replicas: d.replicas },
      status: {
        replicas: [...d.pods.values()].filter((p) => !p.terminating).length,
        selector: Object.entries(d.spec.podLabels)
          .map(([k, v]) => `${k}=${v}`)
          .join(","),
      },
    };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.url);
    const method = req.method ?? "GET";
    this.requests.push(`${method} ${url.pathname}${url.search}`);
    const path = url.pathname;
    let m = /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/deployments\/([^/]+)\/scale$/.exec(path);
    if (m) return this.handleScale(req, res, method, decodeURIComponent(m[1]!), decodeURIComponent(m[2]!));
    m = /^\/api\/v1\/namespaces\/([^/]+)\/pods(?:\/([^/]+))?$/.exec(path);
    if (m)
      return this.handlePods(
        req,
        res,
        method,
        url,
        decodeURIComponent(m[1]!),
        m[2] && decodeURIComponent(m[2]),
      );
    m = /^\/apis\/discovery\.k8s\.io\/v1\/namespaces\/([^/]+)\/endpointslices$/.exec(path);
    if (m) return this.handleSlices(req, res, method, url, decodeURIComponent(m[1]!));
    this.status(res, 404, "NotFound", "the server could not find the requested resource");
  }

  private async handleScale(
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    namespace: string,
    name: string,
  ): Promise<void> {
    const d = this.deployment(namespace, name);
    if (!d) {
      return this.status(res, 404, "NotFound", `deployments.apps "${name}" not found`, {
        name,
        group: "apps",
        kind: "deployments",
      });
    }
    if (method === "GET") return this.json(res, 200, this.scaleOf(d));
    if (method === "PUT") {
      const body = (await this.body(req)) as {
        metadata?: { resourceVersion?: string };
        spec?: { replicas?: unknown };
      };
      const rv = body.metadata?.resourceVersion;
      if (rv && rv !== d.meta.resourceVersion) {
        return this.status(
          res,
          409,
          "Conflict",
          `Operation cannot be fulfilled on deployments.apps "${name}": the object has been modified; please apply your changes to the latest version and try again`,
          { name, group: "apps", kind: "deployments" },
        );
      }
      const replicas = body.spec?.replicas ?? 0;
      if (!Number.isInteger(replicas) || (replicas as number) < 0) {
        return this.status(
          res,
          422,
          "Invalid",
          `Scale.autoscaling "${name}" is invalid: spec.replicas: Invalid value`,
        );
      }
      this.setReplicas(d, replicas as number);
      return this.json(res, 200, this.scaleOf(d));
    }
    if (method === "PATCH") {
      const ct = (req.headers["content-type"] ?? "").split(";")[0]!.trim();
      if (ct !== "application/merge-patch+json" && ct !== "application/strategic-merge-patch+json") {
        return this.status(
          res,
          415,
          "UnsupportedMediaType",
          `the body of the request was in an unknown format: ${ct}`,
        );
      }
      const patched = mergePatch(this.scaleOf(d), await this.body(req)) as { spec?: { replicas?: unknown } };
      const replicas = patched.spec?.replicas;
      if (!Number.isInteger(replicas) || (replicas as number) < 0) {
        return this.status(
          res,
          422,
          "Invalid",
          `Scale.autoscaling "${name}" is invalid: spec.replicas: Invalid value`,
        );
      }
      this.setReplicas(d, replicas as number);
      return this.json(res, 200, this.scaleOf(d));
    }
    this.status(
      res,
      405,
      "MethodNotAllowed",
      `the server does not allow this method on the requested resource`,
    );
  }

  private async handlePods(
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    url: URL,
    namespace: string,
    name: string | undefined,
  ): Promise<void> {
    if (!name) {
      if (method !== "GET") return this.status(res, 405, "MethodNotAllowed", "method not allowed");
      const sel = parseSelector(url.searchParams.get("labelSelector"));
      const items = [...this.pods.values()].filter(
        (p) => p.metadata.namespace === namespace && sel(p.metadata.labels),
      );
      return this.json(res, 200, {
        kind: "PodList",
        apiVersion: "v1",
        metadata: { resourceVersion: String(this.rv) },
        items: clone(items),
      });
    }
    const key = `${namespace}/${name}`;
    const pod = this.pods.get(key);
    if (!pod) return this.status(res, 404, "NotFound", `pods "${name}" not found`, { name, kind: "pods" });
    if (method === "GET") return this.json(res, 200, pod);
    if (method === "PATCH") {
      const ct = (req.headers["content-type"] ?? "").split(";")[0]!.trim();
      if (ct !== "application/merge-patch+json" && ct !== "application/strategic-merge-patch+json") {
        return this.status(
          res,
          415,
          "UnsupportedMediaType",
          `the body of the request was in an unknown format: ${ct}`,
        );
      }
      const patch = (await this.body(req)) as { metadata?: Record<string, unknown> };
      // Only metadata (labels, annotations) is mutable here, as for most of a running pod.
      const meta = mergePatch(pod.metadata, { ...(patch.metadata ?? {}) }) as Meta;
      meta.name = pod.metadata.name;
      meta.namespace = pod.metadata.namespace;
      meta.uid = pod.metadata.uid;
      meta.resourceVersion = String(++this.rv);
      pod.metadata = meta;
      return this.json(res, 200, pod);
    }
    this.status(res, 405, "MethodNotAllowed", "method not allowed");
  }

  private handleSlices(
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    url: URL,
    namespace: string,
  ): void {
    if (method !== "GET") {
      this.status(res, 405, "MethodNotAllowed", "method not allowed");
      return;
    }
    const selector = parseSelector(url.searchParams.get("labelSelector"));
    const items = [...this.slices.values()].filter(
      (s) => s.metadata.namespace === namespace && selector(s.metadata.labels),
    );
    if (url.searchParams.get("watch") !== "true" && url.searchParams.get("watch") !== "1") {
      this.json(res, 200, {
        kind: "EndpointSliceList",
        apiVersion: "discovery.k8s.io/v1",
        metadata: { resourceVersion: String(this.rv) },
        items: items.map((s) => this.publicSlice(s)),
      });
      return;
    }
    res.writeHead(200, { "Content-Type": "application/json", "Transfer-Encoding": "chunked" });
    const w: Watcher = { res, namespace, selector };
    const from = url.searchParams.get("resourceVersion");
    if (from && from !== "0") {
      const n = Number(from);
      if (!Number.isInteger(n) || n < this.compactedBefore - 1) {
        res.end(
          `${JSON.stringify({
            type: "ERROR",
            object: {
              kind: "Status",
              apiVersion: "v1",
              metadata: {},
              status: "Failure",
              message: `too old resource version: ${from} (${this.compactedBefore})`,
              reason: "Expired",
              code: 410,
            },
          })}\n`,
        );
        return;
      }
      for (const ev of this.history) if (ev.rv > n) this.send(w, ev);
    } else {
      // No version (or "0"): synthetic ADDED events for the current state, then changes.
      for (const s of items)
        w.res.write(`${JSON.stringify({ type: "ADDED", object: this.publicSlice(s) })}\n`);
    }
    this.watchers.add(w);
    const drop = () => this.watchers.delete(w);
    req.on("close", drop);
    res.on("close", drop);
    const timeout = Number(url.searchParams.get("timeoutSeconds") ?? "0");
    if (timeout > 0) setTimeout(() => res.end(), timeout * 1000).unref();
  }
}
