/**
 * The coordinator process: `node --import tsx coordinator/main.ts`.
 *
 * Environment (validated once; errors name the variable):
 * | variable                  | default          | meaning                                             |
 * |---------------------------|------------------|-----------------------------------------------------|
 * | LAVIE_NATS_URL            | (required)       | NATS server with JetStream, e.g. nats://127.0.0.1:4222 |
 * | LAVIE_NATS_USER           | -                | NATS user (with LAVIE_NATS_PASSWORD_FILE)            |
 * | LAVIE_NATS_PASSWORD_FILE  | -                | file holding the NATS password                       |
 * | LAVIE_NATS_TOKEN_FILE     | -                | file holding a NATS token (instead of user/password) |
 * | LAVIE_NATS_CREDS_FILE     | -                | NATS .creds file (JWT + nkey seed; instead of user/password or token) |
 * | LAVIE_NATS_CA_FILE        | -                | PEM CA bundle verifying the NATS server (turns TLS on) |
 * | LAVIE_NATS_TLS_CERT_FILE  | -                | PEM client certificate for NATS (with LAVIE_NATS_TLS_KEY_FILE) |
 * | LAVIE_NATS_TLS_KEY_FILE   | -                | PEM key of LAVIE_NATS_TLS_CERT_FILE                  |
 * | LAVIE_NATS_INBOX_PREFIX   | _INBOX           | reply-subject prefix; _INBOX_coordinator with the per-role permissions (transport/nats/permissions.ts) |
 * | LAVIE_MODEL_DIR           | -                | model directory (its manifest sets limits and plans) |
 * | LAVIE_PRESET              | tiny             | preset built/cached when LAVIE_MODEL_DIR is unset   |
 * | LAVIE_GRPC_HOST           | 127.0.0.1        | address the client API listens on                   |
 * | LAVIE_GRPC_PORT           | 50051            | port (0 = any free port)                            |
 * | LAVIE_MAX_RUNNING_JOBS    | 4                | jobs running at once; the rest wait in the queue    |
 * | LAVIE_MAX_QUEUED_JOBS     | 1000             | jobs waiting, all tenants; past it SubmitJob gets RESOURCE_EXHAUSTED + retry hint |
 * | LAVIE_MAX_QUEUED_PER_TENANT | 100            | jobs waiting per tenant (same answer past it)        |
 * | LAVIE_RECENT_FINISHED_JOBS | 256             | finished jobs kept in memory (older ones are read from NATS) |
 * | LAVIE_TASK_ATTEMPTS       | 4                | attempts per task before the job fails              |
 * | LAVIE_PROGRESS_TIMEOUT_MS | 120000           | a task silent this long is moved to another runner  |
 * | LAVIE_QUARANTINE_FAILURES | 3                | a runner failing this many attempts (bad output, internal error, stall) within the window gets no new tasks for a while; 0 = never |
 * | LAVIE_QUARANTINE_WINDOW_MS | 60000           | the window those failures are counted in            |
 * | LAVIE_QUARANTINE_MS       | 30000            | how long a quarantined runner gets no new tasks     |
 * | LAVIE_KEEP_TENSORS        | 0                | 1: keep succeeded jobs' intermediate tiles (debug)  |
 * | LAVIE_TENSOR_BUCKET       | lavie-tensors    | data-plane object store bucket (the runners' must be the same) |
 * | LAVIE_RUNNERS_BUCKET      | lavie-runners    | runner registry KV bucket (the runners' must be the same) |
 * | LAVIE_METRICS_PORT        | 9464             | Prometheus /metrics port (0 = off; a taken port is logged and skipped) |
 * | LAVIE_METRICS_HOST        | LAVIE_GRPC_HOST  | address /metrics listens on                         |
 * | OTEL_EXPORTER_OTLP_ENDPOINT | -              | OTLP/HTTP receiver (JSON, <endpoint>/v1/traces); unset = tracing off |
 * | OTEL_SERVICE_NAME         | lavie-coordinator | service.name of the spans                          |
 * | OTEL_TRACES_SAMPLER(_ARG) | parentbased_always_on | sampler; other OTEL_* variables as the SDK documents |
 * | LAVIE_DISCOVERY           | nats             | nats: runners from the NATS registry; kubernetes: also from the runner EndpointSlices (label app.kubernetes.io/component=runner, stage label lavie.dev/stage, port "grpc") |
 * | LAVIE_K8S_NAMESPACE       | (pod namespace)  | namespace of the runner Deployments/EndpointSlices (default: the service account's, else "default") |
 * | LAVIE_AUTOSCALE_DEPLOYMENTS | -              | stage=deployment list, e.g. base=lavie-base,vsr=lavie-vsr; set = autoscale those Deployments |
 * | LAVIE_AUTOSCALE_MIN       | 0                | min replicas: N for all stages, or stage=N list      |
 * | LAVIE_AUTOSCALE_MAX       | 4                | max replicas: N for all stages, or stage=N list      |
 * | LAVIE_AUTOSCALE_SLOTS     | 1                | slots per runner assumed while a stage has no runner |
 * | LAVIE_AUTOSCALE_IDLE_SECONDS | 300           | a stage idle this long scales to zero (if min is 0)  |
 * | LAVIE_AUTOSCALE_DOWN_WINDOW_SECONDS | 300    | scale-down stabilisation window (highest desired of the window) |
 * | LAVIE_AUTOSCALE_INTERVAL_MS | 2000           | autoscaler tick                                       |
 * | LAVIE_API_KEYS_FILE       | -                | client API keys: lines "<tenant> <name> sha256:<hex of the key> [admin]" (transport/security/api-keys.ts); re-read on change |
 * | LAVIE_JWT_SECRET_FILE     | -                | HS256 secret for JWT bearer tokens (>= 32 bytes; re-read on change) |
 * | LAVIE_JWT_PUBLIC_KEY_FILE | -                | PEM public key(s)/certificate(s) for RS256 (RSA >= 2048) / ES256 (P-256) JWTs |
 * | LAVIE_JWT_ISSUER          | -                | required JWT "iss" (unset: not checked)             |
 * | LAVIE_JWT_AUDIENCE        | -                | required JWT "aud" (unset: not checked)             |
 * | LAVIE_JWT_TENANT_CLAIM    | tenant           | JWT claim naming the caller's tenant                |
 * | LAVIE_JWT_ADMIN_CLAIM     | lavie_admin      | boolean JWT claim granting admin rights (all tenants' jobs) |
 * |                           |                  | (authentication is on when any of the three *_FILE above is set; clients send "authorization: Bearer <key or JWT>") |
 * | LAVIE_TLS_CERT_FILE       | -                | PEM certificate (chain): TLS on the client API; also the client certificate presented to runners |
 * | LAVIE_TLS_KEY_FILE        | -                | PEM private key of LAVIE_TLS_CERT_FILE              |
 * | LAVIE_TLS_CLIENT_CA_FILE  | -                | PEM CA bundle: client API callers must present a certificate it issued (mTLS) |
 * | LAVIE_RUNNER_CA_FILE      | -                | PEM CA bundle: TLS to runners, verifying their certificates (mTLS with LAVIE_TLS_CERT_FILE) |
 * | LAVIE_RUNNER_TLS_SERVER_NAME | -             | name runner certificates are checked against instead of the dialled address (e.g. lavie-runner.lavie.svc) |
 * | LAVIE_RUNNER_TOKEN_FILE   | -                | shared runner token (first line) sent as "authorization: Bearer" to runners (deployments without mTLS) |
 * Kubernetes API access (discovery, autoscaler): in-cluster service account, else KUBECONFIG.
 * Prints "coordinator listening on <host:port>" when ready; SIGTERM/SIGINT stop it (jobs resume on restart).
 */
import { readFileSync } from "node:fs";
import { invalidArgument } from "../core/errors.ts";
import { ensureModels } from "../models/cache.ts";
import { natsAuthFromEnv } from "../transport/nats/connect.ts";
import { coordinatorSecurityFromEnv } from "../transport/security/env.ts";
import { startProcessTelemetry } from "../transport/telemetry/process.ts";
import type { StagePolicy } from "./autoscaler/policy.ts";
import { Coordinator, type CoordinatorOptions } from "./server.ts";

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === "" ? undefined : v;
}

function intEnv(name: string, dflt: number, min: number, max: number): number {
  const v = env(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) {
    throw invalidArgument(name, `must be an integer in ${min}..${max}, got "${v}"`);
  }
  return n;
}

/** "N" (every stage) or "stage=N,..." (stages not listed: dflt). */
function perStageInt(
  name: string,
  stages: string[],
  dflt: number,
  min: number,
  max: number,
): Record<string, number> {
  const v = env(name);
  const out: Record<string, number> = Object.fromEntries(stages.map((s) => [s, dflt]));
  if (v === undefined) return out;
  const bad = () => invalidArgument(name, `must be an integer in ${min}..${max} or stage=N,..., got "${v}"`);
  if (/^\d+$/.test(v)) {
    const n = Number(v);
    if (n < min || n > max) throw bad();
    for (const s of stages) out[s] = n;
    return out;
  }
  for (const part of v.split(",")) {
    const m = /^\s*([a-z]+)\s*=\s*(\d+)\s*$/.exec(part);
    const n = Number(m?.[2]);
    if (!m || !stages.includes(m[1]!) || n < min || n > max) throw bad();
    out[m[1]!] = n;
  }
  return out;
}

function bucketEnv(name: string, dflt: string): string {
  const v = env(name) ?? dflt;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(v))
    throw invalidArgument(name, `must be 1-64 characters of [A-Za-z0-9_-], got "${v}"`);
  return v;
}

function numberEnv(name: string, dflt: number, min: number, max: number): number {
  const v = env(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max)
    throw invalidArgument(name, `must be a number in ${min}..${max}, got "${v}"`);
  return n;
}

function kubernetesOptions(): Pick<CoordinatorOptions, "discovery" | "kube" | "autoscaler"> {
  const discovery = env("LAVIE_DISCOVERY") ?? "nats";
  if (discovery !== "nats" && discovery !== "kubernetes") {
    throw invalidArgument("LAVIE_DISCOVERY", `must be nats or kubernetes, got "${discovery}"`);
  }
  let namespace = env("LAVIE_K8S_NAMESPACE");
  if (!namespace) {
    try {
      namespace =
        readFileSync("/var/run/secrets/kubernetes.io/serviceaccount/namespace", "utf8").trim() || "default";
    } catch {
      namespace = "default";
    }
  }
  const out: Pick<CoordinatorOptions, "discovery" | "kube" | "autoscaler"> = {
    discovery,
    kube: { namespace },
  };
  const deploymentsText = env("LAVIE_AUTOSCALE_DEPLOYMENTS");
  if (deploymentsText) {
    const deployments: Record<string, string> = {};
    for (const part of deploymentsText.split(",")) {
      const m = /^\s*(base|interpolation|vsr)\s*=\s*([a-z0-9]([-a-z0-9]*[a-z0-9])?)\s*$/.exec(part);
      if (!m) {
        throw invalidArgument(
          "LAVIE_AUTOSCALE_DEPLOYMENTS",
          `expected stage=deployment,... (stages base, interpolation, vsr), got "${part}"`,
        );
      }
      deployments[m[1]!] = m[2]!;
    }
    const stages = Object.keys(deployments);
    const mins = perStageInt("LAVIE_AUTOSCALE_MIN", stages, 0, 0, 1000);
    const maxs = perStageInt("LAVIE_AUTOSCALE_MAX", stages, 4, 1, 1000);
    const slotsPerRunner = intEnv("LAVIE_AUTOSCALE_SLOTS", 1, 1, 1024);
    const idleSeconds = numberEnv("LAVIE_AUTOSCALE_IDLE_SECONDS", 300, 0, 86_400);
    const downStabilizationSeconds = numberEnv("LAVIE_AUTOSCALE_DOWN_WINDOW_SECONDS", 300, 0, 86_400);
    const policies: Record<string, StagePolicy> = {};
    for (const s of stages) {
      const min = mins[s] ?? 0;
      const max = maxs[s] ?? 4;
      if (min > max) throw invalidArgument("LAVIE_AUTOSCALE_MIN/MAX", `${s}: min ${min} exceeds max ${max}`);
      policies[s] = { min, max, slotsPerRunner, idleSeconds, downStabilizationSeconds };
    }
    out.autoscaler = {
      deployments,
      stages: policies,
      intervalMs: intEnv("LAVIE_AUTOSCALE_INTERVAL_MS", 2000, 100, 600_000),
    };
  }
  return out;
}

async function main(): Promise<void> {
  const natsUrl = env("LAVIE_NATS_URL");
  if (!natsUrl) throw invalidArgument("LAVIE_NATS_URL", "required (e.g. nats://127.0.0.1:4222)");
  const port = intEnv("LAVIE_GRPC_PORT", 50051, 0, 65535);
  const maxRunningJobs = intEnv("LAVIE_MAX_RUNNING_JOBS", 4, 1, 10_000);
  const maxQueuedJobs = intEnv("LAVIE_MAX_QUEUED_JOBS", 1000, 0, 1_000_000);
  const maxQueuedPerTenant = intEnv("LAVIE_MAX_QUEUED_PER_TENANT", 100, 0, 1_000_000);
  const recentFinishedJobs = intEnv("LAVIE_RECENT_FINISHED_JOBS", 256, 0, 1_000_000);
  const maxAttempts = intEnv("LAVIE_TASK_ATTEMPTS", 4, 1, 100);
  const progressTimeoutMs = intEnv("LAVIE_PROGRESS_TIMEOUT_MS", 120_000, 100, 86_400_000);
  const quarantine = {
    failures: intEnv("LAVIE_QUARANTINE_FAILURES", 3, 0, 1_000),
    windowMs: intEnv("LAVIE_QUARANTINE_WINDOW_MS", 60_000, 1, 86_400_000),
    quarantineMs: intEnv("LAVIE_QUARANTINE_MS", 30_000, 0, 86_400_000),
  };
  const kubernetes = kubernetesOptions();
  const natsAuth = natsAuthFromEnv(); // LAVIE_NATS_* credentials, read from files now
  // Files are read and checked now: a bad one stops start-up with the variable and file named.
  const security = coordinatorSecurityFromEnv(process.env, (line) =>
    process.stderr.write(`coordinator: ${line}\n`),
  );
  const telemetry = await startProcessTelemetry({
    serviceName: "lavie-coordinator",
    defaultMetricsPort: 9464,
    defaultMetricsHost: env("LAVIE_GRPC_HOST") ?? "127.0.0.1",
    log: (line) => process.stderr.write(`${line}\n`),
  });
  const modelDir = env("LAVIE_MODEL_DIR") ?? (await ensureModels(env("LAVIE_PRESET") ?? "tiny"));
  const c = await Coordinator.start({
    natsUrl,
    ...(natsAuth && { natsAuth }),
    modelDir,
    host: env("LAVIE_GRPC_HOST") ?? "127.0.0.1",
    port,
    maxRunningJobs,
    maxQueuedJobs,
    maxQueuedPerTenant,
    recentFinishedJobs,
    keepTensors: env("LAVIE_KEEP_TENSORS") === "1",
    tensorBucket: bucketEnv("LAVIE_TENSOR_BUCKET", "lavie-tensors"),
    runnersBucket: bucketEnv("LAVIE_RUNNERS_BUCKET", "lavie-runners"),
    dispatcher: { maxAttempts, progressTimeoutMs, quarantine },
    ...kubernetes,
    auth: security.auth,
    ...(security.serverCredentials && { serverCredentials: security.serverCredentials }),
    runnerTransport: security.runners,
  });
  process.stderr.write(`coordinator security: ${security.summary}\n`);
  process.stdout.write(`coordinator listening on ${c.address} (resumed ${c.resumed} jobs)\n`);
  if (telemetry.metricsAddress)
    process.stderr.write(`coordinator metrics on http://${telemetry.metricsAddress}/metrics\n`);
  const stop = () => {
    c.stop()
      .finally(() => telemetry.shutdown())
      .then(
        () => process.exit(0),
        () => process.exit(1),
      );
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`coordinator: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
});
