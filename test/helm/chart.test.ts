/**
 * The Helm chart (helm/lavie-serve), offline: helm lint --strict, helm template for several value
 * sets with every rendered manifest validated against kubernetes-models, the properties that
 * matter per value set, and values.schema.json rejecting bad values with the field named.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { Role, RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1";
import { ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount } from "kubernetes-models/v1";
import { helmLint, helmTemplate, parseYamlDocuments, REPO_ROOT } from "../support/helm.ts";

const STAGES = ["base", "interpolation", "vsr"] as const;
const RELEASE = "lavie-lavie-serve";

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
}
interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  readOnlyRootFilesystem?: boolean;
  allowPrivilegeEscalation?: boolean;
  capabilities?: { drop?: string[] };
}
interface Probe {
  grpc?: { port: number };
  tcpSocket?: { port: number };
}
interface Container {
  name: string;
  image: string;
  env?: EnvVar[];
  securityContext?: SecurityContext;
  resources?: { limits?: Record<string, string | number>; requests?: Record<string, string | number> };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
}
interface PodSpec {
  securityContext?: SecurityContext;
  containers: Container[];
  initContainers?: Container[];
  volumes?: { name: string; emptyDir?: unknown; persistentVolumeClaim?: { claimName: string } }[];
  tolerations?: { key?: string }[];
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  rules?: { apiGroups: string[]; resources: string[]; resourceNames?: string[]; verbs: string[] }[];
}

type Model = new (data: never) => { validate(): void };
const MODELS: Record<string, Model> = {
  "v1/ConfigMap": ConfigMap,
  "v1/PersistentVolumeClaim": PersistentVolumeClaim,
  "v1/Secret": Secret,
  "v1/Service": Service,
  "v1/ServiceAccount": ServiceAccount,
  "apps/v1/Deployment": Deployment,
  "apps/v1/StatefulSet": StatefulSet,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "rbac.authorization.k8s.io/v1/Role": Role,
  "rbac.authorization.k8s.io/v1/RoleBinding": RoleBinding,
};

/** The value sets rendered and validated. */
const VALUE_SETS: Record<string, Record<string, unknown>> = {
  "default (CPU)": {},
  gpu: {
    runners: {
      base: { gpu: { enabled: true, count: 1 }, nodeSelector: { "nvidia.com/gpu.present": "true" } },
      vsr: { gpu: { enabled: true, count: 2 }, resources: { limits: { memory: "16Gi" } } },
    },
  },
  "scale-to-zero": {
    runners: {
      base: { replicas: 0, minReplicas: 0, maxReplicas: 2 },
      interpolation: { replicas: 0, minReplicas: 0, maxReplicas: 2 },
      vsr: { replicas: 0, minReplicas: 0, maxReplicas: 4 },
    },
  },
  "external NATS, existing model claim": {
    nats: { url: "nats://nats.messaging.svc:4222" },
    models: { storage: { type: "existingClaim", existingClaim: "lavie-models" }, build: { enabled: false } },
  },
  "security: TLS from Secrets, API keys, JWT": {
    auth: {
      apiKeys: { existingSecret: "lavie-api-keys" },
      jwt: {
        existingSecret: "lavie-jwt",
        secretKey: "hs256",
        publicKeyKey: "keys.pem",
        issuer: "https://id.example.com",
        audience: "lavie",
        tenantClaim: "org",
      },
    },
    tls: {
      enabled: true,
      coordinator: { existingSecret: "coord-tls" },
      clientApi: { requireClientCert: true },
      runner: {
        existingSecret: "runner-tls",
        serverName: "runners.lavie.internal",
        allowedClients: ["coord-a", "coord-b"],
      },
    },
    nats: { auth: { existingSecret: "nats-passwords", admin: { enabled: true } } },
  },
  "security: cert-manager, external NATS with creds and TLS": {
    tls: { enabled: true, certManager: { issuerRef: { name: "lavie-ca", kind: "ClusterIssuer" } } },
    nats: {
      url: "tls://nats.messaging.svc:4222",
      external: {
        credsSecret: "nats-creds",
        tls: { caSecret: "nats-ca", clientCertSecret: "nats-client" },
        inboxPrefix: { coordinator: "_INBOX_coordinator", runner: "_INBOX_runner" },
      },
    },
  },
  "KEDA, OTEL, PVC models": {
    keda: { enabled: true },
    autoscaler: { enabled: true },
    otel: { endpoint: "http://otel-collector.observability:4318", env: { OTEL_TRACES_SAMPLER: "always_on" } },
    models: { storage: { type: "pvc" }, build: { preset: "small" } },
    runners: { vsr: { minReplicas: 0, replicas: 0 } },
  },
};

function render(values: Record<string, unknown>): Manifest[] {
  const r = helmTemplate(values);
  assert.equal(r.status, 0, `helm template failed: ${r.stderr}`);
  return parseYamlDocuments(r.stdout) as unknown as Manifest[];
}

const rendered = new Map<string, Manifest[]>();
function manifests(set: string): Manifest[] {
  let m = rendered.get(set);
  if (!m) {
    const values = VALUE_SETS[set];
    assert.ok(values, `no value set ${set}`);
    m = render(values);
    rendered.set(set, m);
  }
  return m;
}

function find(ms: Manifest[], kind: string, name: string): Manifest {
  const m = ms.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(
    m,
    `${kind} ${name} not rendered (have: ${ms.map((x) => `${x.kind}/${x.metadata.name}`).join(", ")})`,
  );
  return m;
}

function podSpec(m: Manifest): PodSpec {
  const spec = (m.spec?.template as { spec: PodSpec } | undefined)?.spec;
  assert.ok(spec, `${m.kind} ${m.metadata.name} has no pod template`);
  return spec;
}

function env(c: Container): Map<string, EnvVar> {
  return new Map((c.env ?? []).map((e) => [e.name, e]));
}

function mainContainer(ms: Manifest[], deployment: string): Container {
  const c = podSpec(find(ms, "Deployment", deployment)).containers[0];
  assert.ok(c);
  return c;
}

/** LAVIE_* and OTEL_* variables in the environment table at the top of a main.ts. */
function documentedVariables(file: string): Set<string> {
  const src = readFileSync(join(REPO_ROOT, file), "utf8");
  const header = src.slice(0, src.indexOf("*/"));
  return new Set(header.match(/\b(LAVIE|OTEL)_[A-Z0-9_]*[A-Z0-9]/g) ?? []);
}

function pick(
  labels: Record<string, string> | undefined,
  like: Record<string, string>,
): Record<string, string> {
  return Object.fromEntries(Object.keys(like).map((k) => [k, labels?.[k] ?? ""]));
}

describe("helm chart lavie-serve", () => {
  test("helm lint --strict passes for every value set", () => {
    for (const [name, values] of Object.entries(VALUE_SETS)) {
      const r = helmLint(values);
      assert.equal(r.status, 0, `${name}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /0 chart\(s\) failed/);
    }
  });

  for (const set of Object.keys(VALUE_SETS)) {
    test(`renders and validates against kubernetes-models: ${set}`, () => {
      const ms = manifests(set);
      assert.ok(ms.length > 10);
      for (const m of ms) {
        const where = `${set}: ${m.kind} ${m.metadata?.name}`;
        if (m.apiVersion === "cert-manager.io/v1" && m.kind === "Certificate") {
          const spec = m.spec as { secretName?: string; issuerRef?: { name?: string }; dnsNames?: string[] };
          assert.equal(spec.secretName, m.metadata.name, where);
          assert.equal(typeof spec.issuerRef?.name, "string", where);
          assert.ok((spec.dnsNames ?? []).length > 0, where);
          continue;
        }
        if (m.apiVersion === "keda.sh/v1alpha1" && m.kind === "ScaledObject") {
          const spec = m.spec as { scaleTargetRef?: { name?: string }; triggers?: { type?: string }[] };
          assert.equal(typeof spec.scaleTargetRef?.name, "string", where);
          assert.ok(
            (spec.triggers ?? []).length > 0 && spec.triggers?.every((t) => typeof t.type === "string"),
          );
          continue;
        }
        const model = MODELS[`${m.apiVersion}/${m.kind}`];
        assert.ok(model, `${where}: no kubernetes-models class for ${m.apiVersion}/${m.kind}`);
        assert.doesNotThrow(() => new model(m as never).validate(), where);
        assert.match(m.metadata.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, where);
        assert.ok(m.metadata.name.length <= 63, where);
      }
      // Every container: non-root, read-only root filesystem, no capabilities, writable /tmp.
      for (const m of ms.filter((x) => x.kind === "Deployment" || x.kind === "StatefulSet")) {
        const pod = podSpec(m);
        assert.equal(pod.securityContext?.runAsNonRoot, true, `${m.metadata.name}: pod runAsNonRoot`);
        for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
          const where = `${set}: ${m.metadata.name}/${c.name}`;
          const sc = c.securityContext;
          assert.equal(sc?.runAsNonRoot, true, `${where}: runAsNonRoot`);
          assert.ok((sc?.runAsUser ?? 1) > 0, `${where}: runAsUser`);
          assert.equal(sc?.readOnlyRootFilesystem, true, `${where}: readOnlyRootFilesystem`);
          assert.equal(sc?.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation`);
          assert.deepEqual(sc?.capabilities?.drop, ["ALL"], `${where}: capabilities`);
          const tmp = c.volumeMounts?.find((v) => v.mountPath === "/tmp");
          assert.ok(tmp, `${where}: /tmp mount`);
          assert.ok(pod.volumes?.find((v) => v.name === tmp.name)?.emptyDir, `${where}: /tmp is an emptyDir`);
        }
      }
    });
  }

  test("default: coordinator, one runner Deployment + headless Service per stage, bundled NATS", () => {
    const ms = manifests("default (CPU)");
    const coord = mainContainer(ms, `${RELEASE}-coordinator`);
    assert.deepEqual(coord.readinessProbe?.grpc, { port: 50051 });
    assert.deepEqual(coord.livenessProbe?.grpc, { port: 50051 });
    const svc = find(ms, "Service", `${RELEASE}-coordinator`).spec as { ports: { port: number }[] };
    assert.equal(svc.ports[0]?.port, 50051);
    const cenv = env(coord);
    assert.equal(cenv.get("LAVIE_NATS_URL")?.value, `nats://${RELEASE}-nats.lavie.svc:4222`);
    assert.equal(cenv.get("LAVIE_GRPC_HOST")?.value, "0.0.0.0");
    assert.equal(cenv.get("LAVIE_MODEL_DIR")?.value, "/models/tiny");
    assert.equal(cenv.get("LAVIE_DISCOVERY")?.value, "kubernetes");
    assert.equal(
      cenv.get("LAVIE_AUTOSCALE_DEPLOYMENTS")?.value,
      STAGES.map((s) => `${s}=${RELEASE}-runner-${s}`).join(","),
    );
    assert.equal(cenv.get("LAVIE_AUTOSCALE_MIN")?.value, "base=1,interpolation=1,vsr=1");
    assert.equal(cenv.get("LAVIE_AUTOSCALE_MAX")?.value, "base=4,interpolation=4,vsr=8");
    assert.equal(cenv.get("LAVIE_METRICS_PORT")?.value, "9464");
    for (const stage of STAGES) {
      const name = `${RELEASE}-runner-${stage}`;
      const pod = podSpec(find(ms, "Deployment", name));
      const c = pod.containers[0]!;
      assert.match(c.image, /runner-cpu/);
      assert.equal(c.resources?.limits?.["nvidia.com/gpu"], undefined);
      const e = env(c);
      assert.equal(e.get("LAVIE_RUNNER_STAGES")?.value, stage);
      assert.deepEqual(e.get("LAVIE_RUNNER_HOST")?.valueFrom, { fieldRef: { fieldPath: "status.podIP" } });
      assert.equal(e.get("LAVIE_RUNNER_PORT")?.value, "50061");
      assert.deepEqual(c.readinessProbe?.grpc, { port: 50061 });
      const models = c.volumeMounts?.find((v) => v.mountPath === "/models");
      assert.equal(models?.readOnly, true);
      assert.equal(pod.initContainers?.[0]?.name, "build-models");
      // Discovery and the autoscaler select runners by these labels (coordinator/discovery,
      // coordinator/autoscaler): the headless Service's labels are copied to its EndpointSlices.
      const labels = { "app.kubernetes.io/component": "runner", "lavie.dev/stage": stage };
      const service = find(ms, "Service", name);
      const headless = service.spec as { clusterIP?: string; ports: { name: string }[] };
      assert.equal(headless.clusterIP, "None");
      assert.equal(headless.ports[0]?.name, "grpc");
      assert.deepEqual(pick(service.metadata.labels, labels), labels);
      const tpl = find(ms, "Deployment", name).spec?.template as {
        metadata: { labels: Record<string, string> };
      };
      assert.deepEqual(pick(tpl.metadata.labels, labels), labels);
      find(ms, "PodDisruptionBudget", name);
    }
    const sts = find(ms, "StatefulSet", `${RELEASE}-nats`);
    assert.match(podSpec(sts).containers[0]!.image, /^nats:2\.10-alpine$/);
    assert.equal((sts.spec?.volumeClaimTemplates as unknown[] | undefined)?.length, 1);
    find(ms, "Service", `${RELEASE}-nats`);
  });

  test("the chart sets only variables documented in the main.ts tables, and the runner accepts them", async () => {
    const coordTable = documentedVariables("coordinator/main.ts");
    const runnerTable = documentedVariables("stage-runners/main.ts");
    for (const set of Object.keys(VALUE_SETS)) {
      const ms = manifests(set);
      const passthrough = new Set(
        Object.keys((VALUE_SETS[set]?.otel as { env?: object } | undefined)?.env ?? {}),
      );
      const check = (c: Container, table: Set<string>) => {
        for (const name of env(c).keys()) {
          if (passthrough.has(name)) continue;
          assert.ok(table.has(name), `${set}: ${c.name} sets ${name}, which its main.ts does not document`);
        }
      };
      check(mainContainer(ms, `${RELEASE}-coordinator`), coordTable);
      for (const stage of STAGES) check(mainContainer(ms, `${RELEASE}-runner-${stage}`), runnerTable);
    }
    // The runner's own configuration parser accepts what the chart renders (fieldRefs filled in).
    const { readConfig } = await import("../../stage-runners/main.ts");
    for (const stage of STAGES) {
      const c = mainContainer(manifests("default (CPU)"), `${RELEASE}-runner-${stage}`);
      const vars: NodeJS.ProcessEnv = {};
      for (const e of c.env ?? [])
        vars[e.name] = e.value ?? (e.name === "LAVIE_RUNNER_HOST" ? "10.1.2.3" : "pod-abc-1");
      const cfg = readConfig(vars);
      assert.deepEqual(cfg.stages, [stage]);
      assert.equal(cfg.port, 50061);
      assert.equal(cfg.host, "10.1.2.3");
      assert.equal(cfg.warm, true);
      assert.equal(cfg.modelDir, "/models/tiny");
    }
  });

  test("RBAC: endpointslices read, scale of its own stage Deployments only", () => {
    const ms = manifests("default (CPU)");
    const role = find(ms, "Role", `${RELEASE}-coordinator`);
    const rules = role.rules ?? [];
    const slices = rules.find((r) => r.resources.includes("endpointslices"));
    assert.deepEqual(slices?.apiGroups, ["discovery.k8s.io"]);
    assert.deepEqual(slices?.verbs, ["get", "list", "watch"]);
    const scale = rules.find((r) => r.resources.includes("deployments/scale"));
    assert.deepEqual(scale?.apiGroups, ["apps"]);
    assert.deepEqual(scale?.verbs, ["get", "patch", "update"]);
    assert.deepEqual(
      scale?.resourceNames,
      STAGES.map((s) => `${RELEASE}-runner-${s}`),
    );
    const pods = rules.find((r) => r.resources.includes("pods"));
    assert.deepEqual(pods?.apiGroups, [""]);
    assert.deepEqual(pods?.verbs, ["get", "list", "patch"]);
    assert.equal(rules.length, 4);
    for (const r of rules) assert.ok(!r.verbs.includes("*") && !r.resources.includes("*"));
    // Runners get their own account without a token.
    const runnerPod = podSpec(find(ms, "Deployment", `${RELEASE}-runner-base`)) as PodSpec & {
      automountServiceAccountToken?: boolean;
    };
    assert.equal(runnerPod.automountServiceAccountToken, false);
  });

  test("NetworkPolicies: runners only from the coordinator, NATS only from coordinator and runners", () => {
    const ms = manifests("default (CPU)");
    const coordinatorSelector = { matchLabels: podSpecLabels(ms, `${RELEASE}-coordinator`) };
    for (const stage of STAGES) {
      const np = find(ms, "NetworkPolicy", `${RELEASE}-runner-${stage}`).spec as {
        podSelector: unknown;
        ingress: { from?: { podSelector?: unknown }[]; ports: { port: string | number }[] }[];
      };
      assert.deepEqual(np.podSelector, { matchLabels: podSpecLabels(ms, `${RELEASE}-runner-${stage}`) });
      const grpc = np.ingress.find((r) => r.ports.some((p) => p.port === "grpc"));
      assert.deepEqual(grpc?.from, [{ podSelector: coordinatorSelector }]);
      // The only rule without `from` is the metrics port.
      for (const r of np.ingress.filter((x) => !x.from))
        assert.deepEqual(r.ports, [{ port: "metrics", protocol: "TCP" }]);
    }
    const nats = find(ms, "NetworkPolicy", `${RELEASE}-nats`).spec as {
      ingress: { from: { podSelector: { matchExpressions: { key: string; values: string[] }[] } }[] }[];
    };
    const components = nats.ingress[0]?.from[0]?.podSelector.matchExpressions.find(
      (e) => e.key === "app.kubernetes.io/component",
    );
    assert.deepEqual(components?.values, ["coordinator", "runner"]);
    const coordNp = find(ms, "NetworkPolicy", `${RELEASE}-coordinator`).spec as {
      ingress: { from?: unknown; ports: { port: string }[] }[];
    };
    assert.ok(coordNp.ingress.some((r) => r.from === undefined && r.ports.some((p) => p.port === "grpc")));
  });

  test("GPU stages request nvidia.com/gpu and use the GPU image; CPU stages do not", () => {
    const ms = manifests("gpu");
    for (const [stage, count] of [
      ["base", 1],
      ["vsr", 2],
    ] as const) {
      const pod = podSpec(find(ms, "Deployment", `${RELEASE}-runner-${stage}`));
      const c = pod.containers[0]!;
      assert.equal(c.resources?.limits?.["nvidia.com/gpu"], count, stage);
      assert.equal(c.resources?.requests?.["nvidia.com/gpu"], count, stage);
      assert.match(c.image, /runner-gpu/);
      assert.ok(pod.tolerations?.some((t) => t.key === "nvidia.com/gpu"));
      assert.equal(
        env(c).get("LAVIE_ORT_PROVIDERS")?.value,
        "cuda,cpu",
        `${stage} runs on the CUDA provider`,
      );
    }
    const vsr = mainContainer(ms, `${RELEASE}-runner-vsr`);
    assert.equal(vsr.resources?.limits?.memory, "16Gi");
    const interp = mainContainer(ms, `${RELEASE}-runner-interpolation`);
    assert.equal(interp.resources?.limits?.["nvidia.com/gpu"], undefined);
    assert.match(interp.image, /runner-cpu/);
    assert.equal(env(interp).get("LAVIE_ORT_PROVIDERS")?.value, "cpu");
  });

  test("scale to zero: minReplicas 0 renders zero replicas and 0 minimums for the autoscaler", () => {
    const ms = manifests("scale-to-zero");
    for (const stage of STAGES) {
      assert.equal(find(ms, "Deployment", `${RELEASE}-runner-${stage}`).spec?.replicas, 0);
    }
    const e = env(mainContainer(ms, `${RELEASE}-coordinator`));
    assert.equal(e.get("LAVIE_AUTOSCALE_MIN")?.value, "base=0,interpolation=0,vsr=0");
    assert.equal(e.get("LAVIE_AUTOSCALE_MAX")?.value, "base=2,interpolation=2,vsr=4");
  });

  test("external NATS: no StatefulSet, no NATS policy, the URL on every process; existing model claim", () => {
    const ms = manifests("external NATS, existing model claim");
    assert.equal(ms.filter((m) => m.kind === "StatefulSet").length, 0);
    assert.equal(ms.filter((m) => m.metadata.name.endsWith("-nats")).length, 0);
    for (const d of ms.filter((m) => m.kind === "Deployment")) {
      const pod = podSpec(d);
      assert.equal(env(pod.containers[0]!).get("LAVIE_NATS_URL")?.value, "nats://nats.messaging.svc:4222");
      assert.equal(env(pod.containers[0]!).get("LAVIE_MODEL_DIR")?.value, "/models");
      assert.equal(pod.initContainers, undefined);
      assert.equal(
        pod.volumes?.find((v) => v.name === "models")?.persistentVolumeClaim?.claimName,
        "lavie-models",
      );
    }
  });

  test("KEDA: a ScaledObject per stage and no built-in autoscaler (env or RBAC); OTEL passthrough", () => {
    const ms = manifests("KEDA, OTEL, PVC models");
    const scaled = ms.filter((m) => m.kind === "ScaledObject");
    assert.deepEqual(
      scaled.map((m) => m.metadata.name),
      STAGES.map((s) => `${RELEASE}-runner-${s}`),
    );
    const vsr = scaled[2]!.spec as {
      minReplicaCount: number;
      maxReplicaCount: number;
      scaleTargetRef: unknown;
    };
    assert.equal(vsr.minReplicaCount, 0);
    assert.equal(vsr.maxReplicaCount, 8);
    assert.deepEqual(vsr.scaleTargetRef, {
      apiVersion: "apps/v1",
      kind: "Deployment",
      name: `${RELEASE}-runner-vsr`,
    });
    const trigger = (scaled[2]!.spec as { triggers: { type: string; metadata: Record<string, string> }[] })
      .triggers[0];
    assert.equal(trigger?.type, "prometheus");
    assert.match(trigger?.metadata.query ?? "", /lavie_stage_queue_depth\{stage="vsr"\}/);
    assert.equal(trigger?.metadata.threshold, "1");
    const coord = env(mainContainer(ms, `${RELEASE}-coordinator`));
    assert.deepEqual(
      [...coord.keys()].filter((k) => k.startsWith("LAVIE_AUTOSCALE")),
      [],
    );
    const rules = find(ms, "Role", `${RELEASE}-coordinator`).rules ?? [];
    assert.ok(!rules.some((r) => r.resources.includes("deployments/scale") || r.resources.includes("pods")));
    for (const d of ms.filter((m) => m.kind === "Deployment")) {
      const e = env(podSpec(d).containers[0]!);
      assert.equal(e.get("OTEL_EXPORTER_OTLP_ENDPOINT")?.value, "http://otel-collector.observability:4318");
      assert.equal(e.get("OTEL_TRACES_SAMPLER")?.value, "always_on");
      assert.equal(e.get("LAVIE_MODEL_DIR")?.value, "/models/small");
    }
    find(ms, "PersistentVolumeClaim", `${RELEASE}-models`);
  });

  test("metrics: a metrics port and Prometheus scrape annotations on coordinator and runners", () => {
    const ms = manifests("default (CPU)");
    for (const d of ms.filter((m) => m.kind === "Deployment")) {
      const tpl = d.spec?.template as { metadata: { annotations?: Record<string, string> } };
      assert.equal(tpl.metadata.annotations?.["prometheus.io/scrape"], "true");
      assert.equal(tpl.metadata.annotations?.["prometheus.io/port"], "9464");
      const ports = (
        podSpec(d).containers[0] as Container & { ports: { name: string; containerPort: number }[] }
      ).ports;
      assert.ok(ports.some((p) => p.name === "metrics" && p.containerPort === 9464));
    }
  });

  describe("values.schema.json rejects bad values, naming the field", () => {
    const cases: [string, string[], RegExp][] = [
      ["negative maxReplicas", ["--set", "runners.base.maxReplicas=-1"], /\/runners\/base\/maxReplicas/],
      ["unknown key in a stage", ["--set", "runners.vsr.replica=2"], /\/runners\/vsr'?:? .*'replica'/],
      ["unknown top-level key", ["--set", "autoscaling.enabled=true"], /'autoscaling'/],
      ["zero slots", ["--set", "runners.interpolation.slots=0"], /\/runners\/interpolation\/slots/],
      ["unknown preset", ["--set", "models.build.preset=huge"], /\/models\/build\/preset/],
      ["bad storage type", ["--set", "models.storage.type=nfs"], /\/models\/storage\/type/],
      [
        "string where an integer belongs",
        ["--set", "coordinator.taskAttempts=many"],
        /\/coordinator\/taskAttempts/,
      ],
      ["non-OTEL passthrough variable", ["--set", "otel.env.PATH=/x"], /\/otel\/env/],
      ["bad NATS URL", ["--set", "nats.url=http://x"], /\/nats\/url/],
      ["minReplicas above maxReplicas", ["--set", "runners.vsr.minReplicas=9"], /runners\.vsr\.minReplicas/],
      ["replicas outside min..max", ["--set", "runners.base.replicas=7"], /runners\.base\.replicas/],
      [
        "bad Secret name",
        ["--set", "auth.apiKeys.existingSecret=Bad_Name"],
        /\/auth\/apiKeys\/existingSecret/,
      ],
      ["unknown key under tls", ["--set", "tls.runner.secret=x"], /\/tls\/runner'?:? .*'secret'/],
      [
        "TLS without certificates",
        ["--set", "tls.enabled=true"],
        /tls\.enabled needs certificates: set tls\.coordinator\.existingSecret/,
      ],
      [
        "client certificates without TLS",
        ["--set", "tls.clientApi.requireClientCert=true"],
        /tls\.clientApi\.requireClientCert needs tls\.enabled=true/,
      ],
      [
        "JWT Secret without a key",
        ["--set", "auth.jwt.existingSecret=jwt"],
        /auth\.jwt\.existingSecret needs auth\.jwt\.secretKey .* or auth\.jwt\.publicKeyKey/,
      ],
      ["JWT issuer without a Secret", ["--set", "auth.jwt.issuer=x"], /need auth\.jwt\.existingSecret/],
      [
        "no allowed runner clients",
        ["--set-json", "tls.runner.allowedClients=[]"],
        /\/tls\/runner\/allowedClients/,
      ],
      ["bad runner server name", ["--set", "tls.runner.serverName=a b"], /\/tls\/runner\/serverName/],
      [
        "bad issuer kind",
        ["--set", "tls.certManager.issuerRef.kind=Vault"],
        /\/tls\/certManager\/issuerRef\/kind/,
      ],
      [
        "wildcard NATS inbox prefix",
        ["--set", "nats.external.inboxPrefix.runner=_INBOX.>"],
        /\/nats\/external\/inboxPrefix\/runner/,
      ],
      [
        "bundled NATS password Secret with an external NATS",
        ["--set", "nats.url=nats://x:4222", "--set", "nats.auth.existingSecret=s"],
        /nats\.auth\.existingSecret is for the bundled NATS/,
      ],
      [
        "existingClaim without a claim",
        ["--set", "models.storage.type=existingClaim"],
        /models\.storage\.existingClaim/,
      ],
    ];
    for (const [name, args, field] of cases) {
      test(name, () => {
        const r = helmTemplate({}, args);
        assert.notEqual(r.status, 0, `${name}: helm template accepted ${args.join(" ")}`);
        assert.match(r.stderr, field);
      });
    }
  });
});

function podSpecLabels(ms: Manifest[], deployment: string): Record<string, string> {
  const sel = find(ms, "Deployment", deployment).spec?.selector as { matchLabels: Record<string, string> };
  return sel.matchLabels;
}
