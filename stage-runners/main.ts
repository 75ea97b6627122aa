/**
 * Stage-runner process: `node --import tsx stage-runners/main.ts`.
 *
 * Configuration (environment variables, validated once at start; an error names the variable):
 *
 *   Variable              Default                 Meaning
 *   --------------------  ----------------------  ---------------------------------------------------
 *   LAVIE_NATS_URL        (required)              NATS server(s), comma-separated, e.g. nats://127.0.0.1:4222
 *   LAVIE_NATS_USER       (none)                  NATS user (with LAVIE_NATS_PASSWORD_FILE)
 *   LAVIE_NATS_PASSWORD_FILE (none)               File holding the NATS password
 *   LAVIE_NATS_TOKEN_FILE (none)                  File holding a NATS token (instead of user/password)
 *   LAVIE_NATS_CREDS_FILE (none)                  NATS .creds file (JWT + nkey seed; instead of the above)
 *   LAVIE_NATS_CA_FILE    (none)                  PEM CA bundle verifying the NATS server (turns TLS on)
 *   LAVIE_NATS_TLS_CERT_FILE, LAVIE_NATS_TLS_KEY_FILE (none)  PEM client certificate + key for NATS
 *   LAVIE_NATS_INBOX_PREFIX _INBOX                Reply-subject prefix; _INBOX_runner with the per-role
 *                                                 permissions of transport/nats/permissions.ts
 *   LAVIE_RUNNER_STAGES   base,interpolation,vsr  Stages whose tasks this runner accepts
 *   LAVIE_MODEL_DIR       (none)                  Model directory to serve; takes precedence over the preset
 *   LAVIE_PRESET          tiny                    Without LAVIE_MODEL_DIR: a runnable preset, built once and
 *                                                 cached (ensureModels; cache root $LAVIE_MODEL_CACHE)
 *   LAVIE_RUNNER_HOST     127.0.0.1               Address the gRPC server binds to
 *   LAVIE_RUNNER_PORT     0                       gRPC port (0 = any free port)
 *   LAVIE_RUNNER_SLOTS    1                       Tasks in flight = ONNX Runtime worker threads
 *   LAVIE_ORT_THREADS     cores / slots           onnxruntime intra-op threads per worker
 *   LAVIE_ORT_PROVIDERS   cpu                     execution providers in order of preference, e.g.
 *                                                 "cuda,cpu" in GPU images (cpu, cuda, tensorrt, webgpu)
 *   LAVIE_RUNNER_ID       <hostname>-<pid>        Registry id ([A-Za-z0-9_-]; other characters of the
 *                                                 default become "-")
 *   LAVIE_RUNNER_WARM     0                       1 = load the served stages' ONNX sessions before
 *                                                 reporting ready
 *   LAVIE_TENSOR_BUCKET   lavie-tensors           Object store bucket of the data plane
 *   LAVIE_RUNNERS_BUCKET  lavie-runners           KV bucket of the runner registry
 *   LAVIE_METRICS_PORT    9465                    Prometheus /metrics port (0 = off; a port already taken,
 *                                                 e.g. by a second runner on the host, is logged and skipped)
 *   LAVIE_METRICS_HOST    LAVIE_RUNNER_HOST       Address /metrics listens on
 *   LAVIE_FAULTS          (none)                  TESTING / CHAOS DRILLS ONLY: inject faults into this runner's
 *                                                 tasks, e.g. "corrupt:0.5,hang:0.1,seed=7,after=2". Kinds (each
 *                                                 <kind>:<probability 0..1>, tried in order, at most one per task):
 *                                                 hang (no progress until cancelled), corrupt (stored bytes differ
 *                                                 from the ref's digest), shape (ref with a wrong shape), fail
 *                                                 (internal error), exit (process exits mid-task); seed=<int>
 *                                                 makes it repeatable, after=<n> spares the first n tasks
 *   LAVIE_TLS_CERT_FILE   (none)                  PEM certificate (chain): serve TLS (with LAVIE_TLS_KEY_FILE)
 *   LAVIE_TLS_KEY_FILE    (none)                  PEM private key of LAVIE_TLS_CERT_FILE
 *   LAVIE_TLS_CLIENT_CA_FILE (none)               PEM CA bundle: callers must present a certificate it issued
 *                                                 (mTLS; without one the TLS handshake fails)
 *   LAVIE_RUNNER_ALLOWED_CLIENTS lavie-coordinator  With LAVIE_TLS_CLIENT_CA_FILE: comma list of client
 *                                                 certificate CNs / DNS names allowed to call ExecuteTask and
 *                                                 Describe (any other certificate: PERMISSION_DENIED)
 *   LAVIE_RUNNER_TOKEN_FILE (none)                Shared token file (one token per line, >= 16 characters;
 *                                                 any line is accepted, the coordinator sends the first):
 *                                                 ExecuteTask and Describe need "authorization: Bearer <token>"
 *                                                 (missing/wrong: UNAUTHENTICATED). For deployments without
 *                                                 mTLS; set the same file on the coordinator. Re-read on change.
 *                                                 Without the CA or the token anyone reaching the port may
 *                                                 call (logged at start). Health and reflection stay open.
 *   OTEL_EXPORTER_OTLP_ENDPOINT (none)            OTLP/HTTP receiver (JSON, <endpoint>/v1/traces); unset =
 *                                                 tracing off. OTEL_SERVICE_NAME (default lavie-runner),
 *                                                 OTEL_TRACES_SAMPLER and the other OTEL_* as the SDK documents
 *
 * gRPC health (grpc.health.v1): NOT_SERVING until the server is up and, with LAVIE_RUNNER_WARM=1,
 * the served stages' sessions are loaded; SERVING then; NOT_SERVING again while draining. With
 * LAVIE_RUNNER_WARM=0 sessions load on first use (cold starts, counted in lavie_cold_starts_total).
 *
 * When ready it prints one line to stdout: "runner <id> listening on <address> stages=<a,b>".
 * SIGTERM / SIGINT: refuse new tasks, finish the ones in flight, deregister, exit 0 (a second
 * signal exits 1 at once). Configuration or start-up errors: a message on stderr, exit 1 (2 for
 * configuration errors).
 */
import { hostname } from "node:os";
import { pathToFileURL } from "node:url";
import type { StageName } from "../coordinator/plan/types.ts";
import { invalidArgument, LavieError } from "../core/errors.ts";
import { ensureModels } from "../models/cache.ts";
import { PRESET_NAMES } from "../models/presets.ts";
import { NatsCfgExchange } from "../transport/nats/cfg-exchange.ts";
import { connectNats, natsAuthFromEnv } from "../transport/nats/connect.ts";
import { DEFAULT_RUNNERS_BUCKET, RunnerRegistry } from "../transport/nats/registry.ts";
import { DEFAULT_TENSOR_BUCKET, NatsTensorStore } from "../transport/nats/tensors.ts";
import { type RunnerSecurity, runnerSecurityFromEnv } from "../transport/security/env.ts";
import { metricsPortOf, startProcessTelemetry } from "../transport/telemetry/process.ts";
import { EXECUTION_PROVIDERS } from "./ort/protocol.ts";
import { type FaultSpec, parseFaults } from "./server/faults.ts";
import { STAGES } from "./server/request.ts";
import { StageRunner } from "./server/runner.ts";

export interface RunnerConfig {
  natsUrl: string[];
  stages: StageName[];
  modelDir: string | undefined;
  preset: string;
  host: string;
  port: number;
  slots: number;
  ortThreads: number | undefined;
  ortProviders: string[];
  id: string;
  warm: boolean;
  tensorBucket: string;
  runnersBucket: string;
  metricsPort: number;
  /** LAVIE_FAULTS: fault injection for tests and chaos drills (null = none). */
  faults: FaultSpec | null;
}

const ID = /^[A-Za-z0-9_-]{1,128}$/;

/** Reads and validates the configuration; throws invalid_argument errors naming the variable (the field). */
export function readConfig(env: NodeJS.ProcessEnv = process.env): RunnerConfig {
  const get = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === undefined || v === "" ? undefined : v;
  };
  const int = (name: string, def: number, min: number, max: number): number => {
    const v = get(name);
    if (v === undefined) return def;
    const n = Number(v);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw invalidArgument(name, `must be an integer in ${min}..${max}, got "${v}"`);
    }
    return n;
  };
  const natsRaw = get("LAVIE_NATS_URL");
  if (!natsRaw) throw invalidArgument("LAVIE_NATS_URL", "is required (e.g. nats://127.0.0.1:4222)");
  const natsUrl = natsRaw.split(",").map((s) => s.trim());
  for (const u of natsUrl) {
    if (!/^(nats|tls|ws|wss):\/\/[^\s/]+/.test(u) && !/^[^\s:/]+:\d+$/.test(u)) {
      throw invalidArgument("LAVIE_NATS_URL", `"${u}" is not a NATS URL (nats://host:port)`);
    }
  }
  const stagesRaw = get("LAVIE_RUNNER_STAGES");
  const stages = stagesRaw === undefined ? [...STAGES] : stagesRaw.split(",").map((s) => s.trim());
  if (stages.length === 0 || stages.some((s) => !(STAGES as readonly string[]).includes(s))) {
    throw invalidArgument(
      "LAVIE_RUNNER_STAGES",
      `must be a comma-separated subset of ${STAGES.join(",")}, got "${stagesRaw}"`,
    );
  }
  const modelDir = get("LAVIE_MODEL_DIR");
  const preset = get("LAVIE_PRESET") ?? "tiny";
  if (!(PRESET_NAMES as readonly string[]).includes(preset)) {
    throw invalidArgument("LAVIE_PRESET", `must be one of ${PRESET_NAMES.join(", ")}, got "${preset}"`);
  }
  const threads = get("LAVIE_ORT_THREADS");
  const providers = (get("LAVIE_ORT_PROVIDERS") ?? "cpu").split(",").map((p) => p.trim());
  const badProvider = providers.find((p) => !(EXECUTION_PROVIDERS as readonly string[]).includes(p));
  if (badProvider !== undefined) {
    throw invalidArgument(
      "LAVIE_ORT_PROVIDERS",
      `unknown provider "${badProvider}"; allowed: ${EXECUTION_PROVIDERS.join(", ")} (comma-separated)`,
    );
  }
  const warm = get("LAVIE_RUNNER_WARM") ?? "0";
  if (warm !== "0" && warm !== "1")
    throw invalidArgument("LAVIE_RUNNER_WARM", `must be 0 or 1, got "${warm}"`);
  const id =
    get("LAVIE_RUNNER_ID") ?? `${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 128);
  if (!ID.test(id))
    throw invalidArgument("LAVIE_RUNNER_ID", `"${id}" must be 1-128 characters of [A-Za-z0-9_-]`);
  return {
    natsUrl,
    stages: [...new Set(stages)] as StageName[],
    modelDir,
    preset,
    host: get("LAVIE_RUNNER_HOST") ?? "127.0.0.1",
    port: int("LAVIE_RUNNER_PORT", 0, 0, 65535),
    slots: int("LAVIE_RUNNER_SLOTS", 1, 1, 256),
    ortThreads: threads === undefined ? undefined : int("LAVIE_ORT_THREADS", 1, 1, 1024),
    ortProviders: providers,
    id,
    warm: warm === "1",
    tensorBucket: get("LAVIE_TENSOR_BUCKET") ?? DEFAULT_TENSOR_BUCKET,
    runnersBucket: get("LAVIE_RUNNERS_BUCKET") ?? DEFAULT_RUNNERS_BUCKET,
    faults: parseFaults(env.LAVIE_FAULTS ?? ""),
    metricsPort: metricsPortOf(env, 9465),
  };
}

async function main(): Promise<number> {
  let cfg: RunnerConfig;
  try {
    cfg = readConfig();
  } catch (err) {
    if (err instanceof LavieError && err.code === "invalid_argument") {
      process.stderr.write(`lavie runner: configuration error: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = (msg: string) => process.stderr.write(`${new Date().toISOString()} ${msg}\n`);
  let security: RunnerSecurity;
  try {
    security = runnerSecurityFromEnv(process.env, log);
  } catch (err) {
    const e = LavieError.from(err);
    if (e.code !== "invalid_argument") throw err;
    process.stderr.write(`lavie runner: configuration error: ${e.message}\n`);
    return 2;
  }
  let natsAuth: ReturnType<typeof natsAuthFromEnv>;
  try {
    natsAuth = natsAuthFromEnv(); // LAVIE_NATS_* credentials, read from files now
  } catch (err) {
    process.stderr.write(`lavie runner: configuration error: ${LavieError.from(err).message}\n`);
    return 2;
  }
  const telemetry = await startProcessTelemetry({
    serviceName: "lavie-runner",
    defaultMetricsPort: cfg.metricsPort,
    defaultMetricsHost: cfg.host,
    log,
  });
  if (telemetry.metricsAddress)
    log(`runner ${cfg.id}: metrics on http://${telemetry.metricsAddress}/metrics`);
  const modelDir = cfg.modelDir ?? (await ensureModels(cfg.preset));
  const nats = await connectNats(cfg.natsUrl, {
    name: `runner-${cfg.id}`,
    ...(natsAuth && { auth: natsAuth }),
  });
  let runner: StageRunner | undefined;
  try {
    const tensors = await NatsTensorStore.open(nats.objm, { bucket: cfg.tensorBucket });
    const registry = await RunnerRegistry.open(nats.kvm, { bucket: cfg.runnersBucket });
    runner = new StageRunner({
      id: cfg.id,
      stages: cfg.stages,
      modelDir,
      slots: cfg.slots,
      ...(cfg.ortThreads === undefined ? {} : { intraOpThreads: cfg.ortThreads }),
      executionProviders: cfg.ortProviders,
      tensors,
      registry,
      cfgExchange: await NatsCfgExchange.open(nats),
      warm: cfg.warm,
      // ensureModels has just checked every file's hash; a given directory is checked here.
      verifyHashes: cfg.modelDir !== undefined,
      log,
      faults: cfg.faults,
      ...(security.credentials && { credentials: security.credentials }),
      ...(security.policy.allowedClients && { allowedClients: security.policy.allowedClients }),
      ...(security.policy.tokens && { tokens: security.policy.tokens }),
    });
    log(`runner ${cfg.id}: security: ${security.summary}`);
    const address = await runner.start(cfg.host, cfg.port);
    process.stdout.write(`runner ${cfg.id} listening on ${address} stages=${cfg.stages.join(",")}\n`);
  } catch (err) {
    await runner?.stop().catch(() => {});
    await nats.close().catch(() => {});
    throw err;
  }
  const r = runner;
  await new Promise<void>((resolve) => {
    let signalled = false;
    const onSignal = (sig: NodeJS.Signals) => {
      if (signalled) {
        log(`runner ${cfg.id}: ${sig} again, exiting now`);
        process.exit(1);
      }
      signalled = true;
      log(`runner ${cfg.id}: ${sig}, draining`);
      resolve();
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
  await r.drain().catch((err: unknown) => log(`runner ${cfg.id}: drain: ${LavieError.from(err).message}`));
  await r.stop();
  await nats.close();
  await telemetry.shutdown();
  return 0;
}

// Run only as the process entry (importing readConfig, e.g. from a spec, starts nothing).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      const e = LavieError.from(err);
      process.stderr.write(`lavie runner: ${e.code}: ${e.message}\n`);
      process.exit(1);
    },
  );
}
