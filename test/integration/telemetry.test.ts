/**
 * Telemetry across real processes: a nats-server, the coordinator and one stage runner as child
 * processes exporting spans over OTLP/HTTP (JSON) to a receiver run by this test, and scraped by a
 * real Prometheus. Checks one trace per job (client submit -> coordinator job/stage/dispatch ->
 * runner task -> denoising steps), spans from both services, /metrics through Prometheus, and
 * grpc.health.v1 (the runner SERVING only once its sessions are loaded).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { gunzipSync } from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import { LavieClient } from "../../client/sdk/index.ts";
import type { JobRequest } from "../../core/job.ts";
import { ensureModels } from "../../models/cache.ts";
import { freePort, startNatsServer } from "../support/nats-server.ts";
import { childEnv } from "../support/process.ts";

type Nats = Awaited<ReturnType<typeof startNatsServer>>;

interface SpanRec {
  service: string;
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  attributes: Record<string, unknown>;
}

const JOB: JobRequest = {
  prompt: "a panda playing guitar",
  seed: 5,
  base: { steps: 2 },
  interpolation: { steps: 1 },
  vsr: { steps: 1 },
};

/** The caller's trace context (as from an upstream service). */
const CALLER = `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`;

let nats: Nats;
let modelDir: string;
let receiver: Server;
let otlpUrl = "";
const spans: SpanRec[] = [];
const children: ChildProcess[] = [];
const logs = new Map<ChildProcess, string>();
let coordinatorAddress = "";
let coordinatorMetricsPort = 0;
let runnerAddress = "";
/** Health statuses the runner reported from its spawn until SERVING ("down" = not answering). */
const runnerHealth: string[] = [];
let runnerLoadedAtServing: string[] = [];

function attrValue(v: Record<string, unknown> | undefined): unknown {
  if (!v) return undefined;
  if ("stringValue" in v) return v.stringValue;
  if ("intValue" in v) return Number(v.intValue);
  if ("doubleValue" in v) return v.doubleValue;
  if ("boolValue" in v) return v.boolValue;
  return undefined;
}

function attrs(list: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const a of (list as { key: string; value: Record<string, unknown> }[] | undefined) ?? []) {
    out[a.key] = attrValue(a.value);
  }
  return out;
}

/** Trace and span ids as hex, whether the exporter sent hex or base64. */
function hexId(id: unknown): string {
  if (typeof id !== "string" || id === "") return "";
  if (/^[0-9a-f]+$/i.test(id) && (id.length === 32 || id.length === 16)) return id.toLowerCase();
  return Buffer.from(id, "base64").toString("hex");
}

function onExport(body: Buffer): void {
  const doc = JSON.parse(body.toString("utf8")) as {
    resourceSpans?: {
      resource?: { attributes?: unknown };
      scopeSpans?: { spans?: Record<string, unknown>[] }[];
    }[];
  };
  for (const rs of doc.resourceSpans ?? []) {
    const service = String(attrs(rs.resource?.attributes)["service.name"] ?? "");
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        spans.push({
          service,
          name: String(s.name),
          traceId: hexId(s.traceId),
          spanId: hexId(s.spanId),
          parentSpanId: hexId(s.parentSpanId),
          attributes: attrs(s.attributes),
        });
      }
    }
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function spawnService(script: string, env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(process.execPath, ["--import", "tsx", script], {
    env: childEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  logs.set(child, "");
  const add = (s: Buffer) => logs.set(child, `${logs.get(child) ?? ""}${s.toString("utf8")}`.slice(-8000));
  child.stdout!.on("data", add);
  child.stderr!.on("data", add);
  children.push(child);
  return child;
}

async function waitForLine(
  child: ChildProcess,
  pattern: RegExp,
  timeoutMs = 120_000,
): Promise<RegExpExecArray> {
  const t0 = Date.now();
  for (;;) {
    const m = pattern.exec(logs.get(child) ?? "");
    if (m) return m;
    if (child.exitCode !== null) throw new Error(`process exited (${child.exitCode}): ${logs.get(child)}`);
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${pattern}: ${logs.get(child)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const HEALTH_PATH = "/grpc.health.v1.Health/Check";
const STATUS = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/** grpc.health.v1 Check(service) over raw protobuf: HealthCheckRequest{service=1}, response {status=1}. */
function healthCheck(address: string, service = ""): Promise<string> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const name = Buffer.from(service, "utf8");
  const req = name.length > 0 ? Buffer.concat([Buffer.from([0x0a, name.length]), name]) : Buffer.alloc(0);
  return new Promise<string>((resolve) => {
    client.makeUnaryRequest(
      HEALTH_PATH,
      (b: Buffer) => b,
      (b: Buffer) => b,
      req,
      new grpc.Metadata(),
      { deadline: Date.now() + 2_000 },
      (err, res) => {
        client.close();
        if (err) return resolve(err.code === grpc.status.NOT_FOUND ? "SERVICE_UNKNOWN" : "down");
        const buf = res as Buffer;
        resolve(STATUS[buf.length >= 2 && buf[0] === 0x08 ? buf[1]! : 0] ?? "UNKNOWN");
      },
    );
  });
}

/**
 * One grpc.reflection.v1 ServerReflectionInfo exchange with a raw request (field `field`, string
 * `value`); resolves with the raw response bytes.
 */
function reflect(address: string, field: number, value: string): Promise<Buffer> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const v = Buffer.from(value, "utf8");
  const req = Buffer.concat([Buffer.from([(field << 3) | 2, v.length]), v]);
  return new Promise<Buffer>((resolve, reject) => {
    const call = client.makeBidiStreamRequest(
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      (b: Buffer) => b,
      (b: Buffer) => b,
      new grpc.Metadata(),
      { deadline: Date.now() + 5_000 },
    );
    call.once("data", (b: Buffer) => {
      call.end();
      client.close();
      resolve(b);
    });
    call.once("error", (err) => {
      client.close();
      reject(err);
    });
    call.write(req);
  });
}

/** Describe over the generic adapter (the networks a runner has loaded). */
async function describeRunner(address: string): Promise<string[]> {
  const { StageRunnerService } = await import("../../gen/lavie/v1/runner_pb.ts");
  const { createClient, unary } = await import("../../transport/grpc/adapter.ts");
  const c = createClient(StageRunnerService, address);
  try {
    const res = await unary(c, StageRunnerService, "describe", {});
    return [...(res.runner?.networksLoaded ?? [])];
  } finally {
    c.close();
  }
}

before(async () => {
  modelDir = await ensureModels("tiny");
  nats = await startNatsServer();
  receiver = createServer((req, res) => {
    readBody(req).then(
      (raw) => {
        try {
          const body = req.headers["content-encoding"] === "gzip" ? gunzipSync(raw) : raw;
          if (req.url?.startsWith("/v1/traces")) onExport(body);
          res.writeHead(200, { "content-type": "application/json" });
          res.end("{}");
        } catch (err) {
          res.writeHead(400);
          res.end(String(err));
        }
      },
      () => res.end(),
    );
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const a = receiver.address();
  otlpUrl = `http://127.0.0.1:${typeof a === "object" && a ? a.port : 0}`;
  const otel = {
    OTEL_EXPORTER_OTLP_ENDPOINT: otlpUrl,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_BSP_SCHEDULE_DELAY: "200",
    OTEL_TRACES_SAMPLER: "parentbased_always_on",
  };

  // The runner first, polled for health from its spawn: NOT_SERVING (or not answering) while it
  // loads its sessions, SERVING after.
  const runnerPort = await freePort();
  runnerAddress = `127.0.0.1:${runnerPort}`;
  const runner = spawnService("stage-runners/main.ts", {
    ...otel,
    LAVIE_NATS_URL: nats.url,
    LAVIE_MODEL_DIR: modelDir,
    LAVIE_RUNNER_ID: "telemetry-runner",
    LAVIE_RUNNER_PORT: String(runnerPort),
    LAVIE_RUNNER_WARM: "1",
    LAVIE_ORT_THREADS: "1",
    LAVIE_METRICS_PORT: String(await freePort()),
  });
  const t0 = Date.now();
  for (;;) {
    const s = await healthCheck(runnerAddress);
    if (runnerHealth.at(-1) !== s) runnerHealth.push(s);
    if (s === "SERVING") {
      runnerLoadedAtServing = await describeRunner(runnerAddress);
      break;
    }
    if (runner.exitCode !== null) throw new Error(`runner exited: ${logs.get(runner)}`);
    if (Date.now() - t0 > 120_000) throw new Error(`runner never SERVING: ${runnerHealth.join(",")}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  await waitForLine(runner, /listening on/);

  coordinatorMetricsPort = await freePort();
  const coordinator = spawnService("coordinator/main.ts", {
    ...otel,
    LAVIE_NATS_URL: nats.url,
    LAVIE_MODEL_DIR: modelDir,
    LAVIE_GRPC_PORT: "0",
    LAVIE_METRICS_PORT: String(coordinatorMetricsPort),
  });
  coordinatorAddress = (await waitForLine(coordinator, /coordinator listening on (\S+)/))[1]!;
});

after(async () => {
  for (const c of children.reverse()) {
    if (c.exitCode === null) {
      c.kill("SIGTERM");
      await new Promise<void>((r) => {
        const t = setTimeout(() => {
          c.kill("SIGKILL");
          r();
        }, 10_000);
        c.once("exit", () => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
  await new Promise<void>((r) => receiver?.close(() => r()));
  await nats?.stop();
});

test("health: the runner is SERVING only once its sessions are loaded; the coordinator is SERVING", async (t) => {
  t.diagnostic(`runner health from spawn: ${runnerHealth.join(" -> ")}`);
  assert.equal(runnerHealth.at(-1), "SERVING");
  assert.ok(
    runnerHealth.slice(0, -1).some((s) => s === "NOT_SERVING" || s === "down"),
    `statuses before SERVING: ${runnerHealth.join(" -> ")}`,
  );
  assert.ok(
    runnerHealth.includes("NOT_SERVING"),
    `the runner answered NOT_SERVING while loading (saw ${runnerHealth.join(" -> ")})`,
  );
  for (const n of ["base_unet", "interp_unet", "vsr_unet"]) {
    assert.ok(
      runnerLoadedAtServing.includes(n),
      `${n} loaded when SERVING: ${runnerLoadedAtServing.join(",")}`,
    );
  }
  assert.equal(await healthCheck(runnerAddress, "lavie.v1.StageRunnerService"), "SERVING");
  assert.equal(await healthCheck(coordinatorAddress), "SERVING");
  assert.equal(await healthCheck(coordinatorAddress, "lavie.v1.JobService"), "SERVING");
  assert.equal(await healthCheck(coordinatorAddress, "no.such.Service"), "SERVICE_UNKNOWN");
  // Server reflection (built from the protobuf-es descriptors): list services, and a file by symbol.
  const list = (await reflect(coordinatorAddress, 7, "")).toString("latin1");
  assert.ok(list.includes("lavie.v1.JobService"), "reflection lists lavie.v1.JobService");
  const file = (await reflect(runnerAddress, 4, "lavie.v1.StageRunnerService")).toString("latin1");
  assert.ok(file.includes("lavie/v1/runner.proto"), "reflection returns runner.proto for the service");
});

test("one trace per job: runner steps -> runner task -> dispatch -> stage -> job -> submit", {
  timeout: 180_000,
}, async (t) => {
  const client = new LavieClient(coordinatorAddress);
  let jobId = "";
  try {
    // The caller's trace continues (no SDK in this process: the client passes the context on).
    const { job } = await client.submit(JOB, { traceparent: CALLER });
    jobId = job.id;
    for await (const e of client.watch(jobId)) {
      if (e.type === "failed" || e.type === "cancelled") assert.fail(`job ${e.type}`);
      if (e.type === "done") break;
    }
  } finally {
    client.close();
  }

  // Wait for the batches (the job span ends at "done"; runners export every 200 ms) until every
  // span the assertions below look at has arrived: bounded, not timed.
  const byId = () => new Map(spans.map((s) => [s.spanId, s]));
  const submitSpan = () =>
    spans.find((s) => s.name === "lavie.v1.JobService/SubmitJob" && s.attributes["lavie.job_id"] === jobId);
  const NAMES = [
    "job",
    "plan",
    "stage base",
    "stage interpolation",
    "stage vsr",
    "input fetch",
    "output write",
  ];
  const arrived = (): boolean => {
    const submit = submitSpan();
    if (!submit) return false;
    const inTrace = spans.filter((s) => s.traceId === submit.traceId);
    if (!NAMES.every((n) => inTrace.some((s) => s.name === n))) return false;
    const steps = inTrace.filter((s) => s.name === "denoise step");
    // 2 base + 1 per interpolation chunk + 1 per VSR task (at least 4 steps in all).
    if (steps.length < 4) return false;
    const index = byId();
    return steps.every((step) => {
      let cur: SpanRec | undefined = step;
      while (cur && cur.spanId !== submit.spanId)
        cur = cur.parentSpanId ? index.get(cur.parentSpanId) : undefined;
      return cur !== undefined;
    });
  };
  const deadline = Date.now() + 120_000;
  while (!arrived()) {
    if (Date.now() > deadline) {
      assert.fail(
        `spans missing after 120 s: ${[...new Set(spans.map((s) => `${s.service}:${s.name}`))].join(", ")}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const submit = submitSpan()!;
  const index = byId();
  assert.equal(submit.traceId, CALLER.split("-")[1], "the job's trace is the caller's");
  assert.equal(submit.parentSpanId, CALLER.split("-")[2], "the submit span's parent is the caller's span");
  assert.equal(submit.service, "lavie-coordinator");

  // Exactly one trace id for every span that names this job.
  const jobTraces = new Set(
    spans.filter((s) => s.attributes["lavie.job_id"] === jobId).map((s) => s.traceId),
  );
  assert.deepEqual([...jobTraces], [submit.traceId], "one trace id for the job's spans");

  const inTrace = spans.filter((s) => s.traceId === submit.traceId);
  const services = new Set(inTrace.map((s) => s.service));
  assert.ok(services.has("lavie-coordinator"), `services: ${[...services].join(", ")}`);
  assert.ok(services.has("lavie-runner"), `services: ${[...services].join(", ")}`);

  for (const name of [
    "plan",
    "stage base",
    "stage interpolation",
    "stage vsr",
    "input fetch",
    "output write",
  ]) {
    assert.ok(
      inTrace.some((s) => s.name === name),
      `a "${name}" span in the job's trace (have: ${[...new Set(inTrace.map((s) => s.name))].join(", ")})`,
    );
  }

  // Every denoising step's ancestry reaches the submit span through the runner's task span and the
  // coordinator's dispatch attempt, stage and job spans.
  const steps = inTrace.filter((s) => s.name === "denoise step");
  assert.ok(steps.length >= 4, `denoise step spans: ${steps.length}`);
  for (const step of steps) {
    assert.equal(step.service, "lavie-runner");
    const chain: string[] = [];
    let cur: SpanRec | undefined = step;
    while (cur && cur.spanId !== submit.spanId) {
      chain.push(cur.name);
      cur = cur.parentSpanId ? index.get(cur.parentSpanId) : undefined;
    }
    assert.ok(cur, `step span's ancestry ends before the submit span: ${chain.join(" <- ")}`);
    const names = chain.join(" <- ");
    assert.match(
      names,
      /^denoise step <- lavie\.v1\.StageRunnerService\/ExecuteTask <- dispatch \w+ task <- stage \w+ <- job$/,
    );
  }
  t.diagnostic(
    `trace ${submit.traceId}: ${inTrace.length} spans (${steps.length} steps) from ${[...services].join(", ")}`,
  );
  const task = index.get(steps[0]!.parentSpanId)!;
  assert.equal(task.attributes["lavie.job_id"], jobId);
  assert.equal(task.service, "lavie-runner");
});

test("metrics: a real Prometheus scrapes the coordinator's queue depth per stage", {
  timeout: 120_000,
}, async (t) => {
  const bin = process.env.PROMETHEUS_BIN ?? "prometheus";
  const probe = spawnSync(bin, ["--version"], { encoding: "utf8" });
  if (probe.error || probe.status !== 0) {
    t.skip(
      `${bin} is not installed (apt-get install -y prometheus, or scripts/setup.sh): metrics not scraped`,
    );
    return;
  }
  // The coordinator serves /metrics itself.
  const direct = await fetch(`http://127.0.0.1:${coordinatorMetricsPort}/metrics`);
  assert.equal(direct.status, 200);
  const text = await direct.text();
  assert.match(text, /lavie_stage_queue_depth\{stage="base"\} \d+/);
  assert.match(text, /lavie_job_duration_seconds_count\{outcome="succeeded"\} [1-9]/);
  assert.match(text, /lavie_dataplane_bytes_total\{direction="put"\} [1-9]/);

  const dir = mkdtempSync(join(tmpdir(), "lavie-prom-"));
  const promPort = await freePort();
  writeFileSync(
    join(dir, "prometheus.yml"),
    [
      "global:",
      "  scrape_interval: 1s",
      "  evaluation_interval: 1s",
      "scrape_configs:",
      "  - job_name: lavie-coordinator",
      "    scrape_interval: 1s",
      "    static_configs:",
      `      - targets: ["127.0.0.1:${coordinatorMetricsPort}"]`,
      "",
    ].join("\n"),
  );
  const prom = spawn(
    bin,
    [
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let promLog = "";
  prom.stderr!.on("data", (s: Buffer) => {
    promLog = `${promLog}${s.toString("utf8")}`.slice(-4000);
  });
  try {
    const t0 = Date.now();
    let stages: string[] = [];
    for (;;) {
      try {
        const res = await fetch(
          `http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent("lavie_stage_queue_depth")}`,
        );
        if (res.ok) {
          const body = (await res.json()) as {
            status: string;
            data: { result: { metric: Record<string, string>; value: [number, string] }[] };
          };
          stages = body.data.result.map((r) => r.metric.stage ?? "").sort();
          if (stages.length >= 3) {
            for (const r of body.data.result) {
              assert.equal(r.metric.job, "lavie-coordinator");
              assert.ok(Number.isFinite(Number(r.value[1])), "a numeric sample");
            }
            break;
          }
        }
      } catch {
        // not up yet
      }
      if (prom.exitCode !== null) assert.fail(`prometheus exited: ${promLog}`);
      if (Date.now() - t0 > 60_000) assert.fail(`no lavie_stage_queue_depth in Prometheus: ${promLog}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.deepEqual(stages, ["base", "interpolation", "vsr"]);

    // Every query of the Grafana dashboard parses and evaluates in this Prometheus.
    const dashboard = JSON.parse(readFileSync("deploy/grafana/lavie-serve.json", "utf8")) as {
      panels: { title: string; targets?: { expr: string }[] }[];
    };
    let queries = 0;
    for (const panel of dashboard.panels) {
      for (const target of panel.targets ?? []) {
        const expr = target.expr.replaceAll("$__rate_interval", "1m").replaceAll("$stage", ".*");
        const res = await fetch(
          `http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(expr)}`,
        );
        const body = (await res.json()) as { status: string; error?: string };
        assert.equal(
          body.status,
          "success",
          `dashboard panel "${panel.title}": ${expr}: ${body.error ?? ""}`,
        );
        queries++;
      }
    }
    assert.ok(queries >= 10, `dashboard queries checked: ${queries}`);
  } finally {
    prom.kill("SIGTERM");
    await new Promise<void>((r) => {
      if (prom.exitCode !== null) return r();
      const k = setTimeout(() => prom.kill("SIGKILL"), 5_000);
      prom.once("exit", () => {
        clearTimeout(k);
        r();
      });
    });
    rmSync(dir, { recursive: true, force: true });
  }
});
