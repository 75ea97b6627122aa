/**
 * Authentication, tenancy and TLS with real processes: a coordinator (API keys + JWT, TLS on the
 * client API, mTLS to the runners with a server-name override) and a runner (mTLS, only the
 * coordinator's certificate allowed), both exporting traces to a receiver here; a second,
 * plaintext runner in token mode behind an in-process coordinator whose client API requires
 * client certificates. Every secret used must never appear in any process's output, in the
 * exported spans or in errors returned to clients.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { type Job, LavieClient, type LavieClientOptions } from "../../client/sdk/client.ts";
import { Coordinator } from "../../coordinator/server.ts";
import { LavieError } from "../../core/errors.ts";
import type { JobRequest } from "../../core/job.ts";
import { StageRunnerService } from "../../gen/lavie/v1/runner_pb.ts";
import { ensureModels } from "../../models/cache.ts";
import { createClient, serverStream, unary } from "../../transport/grpc/adapter.ts";
import { fromGrpcError } from "../../transport/grpc/status.ts";
import { hashApiKey } from "../../transport/security/api-keys.ts";
import { channelTls, pemFile, serverTls } from "../../transport/security/tls.ts";
import { type CertAuthority, createCertAuthority, type IssuedCert } from "../support/certs.ts";
import { startNatsServer } from "../support/nats-server.ts";
import { childEnv } from "../support/process.ts";

type Nats = Awaited<ReturnType<typeof startNatsServer>>;

// Secrets: none of these may ever show up in logs, spans or error messages.
const KEY_ACME = "lk-acme-3f9c0a7d5e21b468";
const KEY_BETA = "lk-beta-8e1d2c4b6a09f357";
const KEY_OPS = "lk-ops-5b7a9c1e3d2f4068";
const KEY_WRONG = "lk-wrong-0a1b2c3d4e5f6789";
const JWT_SECRET = "jwt-secret-e2a1f0c9b8d7a6e5f4c3b2a1d0e9f8c7";
const RUNNER_TOKEN = "runner-token-6c5b4a3928170f1e";
const WRONG_TOKEN = "runner-token-wrong-99887766";
const SECRETS = [KEY_ACME, KEY_BETA, KEY_OPS, KEY_WRONG, JWT_SECRET, RUNNER_TOKEN, WRONG_TOKEN];

let dir: string;
let ca: CertAuthority;
let coordCert: IssuedCert;
let runnerCert: IssuedCert;
let intruderCert: IssuedCert;
let aliceCert: IssuedCert;
let nats: Nats;
let nats2: Nats;
let modelDir: string;
let receiver: Server;
const spans: string[] = [];
const procs: Proc[] = [];
const clients: LavieClient[] = [];
let coordinator: Proc;
let runner: Proc;
let tokenRunner: Proc;
let inProcess: Coordinator | undefined;
let acmeJob: Job;

interface Proc {
  name: string;
  child: ChildProcess;
  output: () => string;
  line: string;
}

/** Starts `node --import tsx <script>`, capturing stdout and stderr, until stdout matches `ready`. */
function startProcess(name: string, script: string, env: NodeJS.ProcessEnv, ready: RegExp): Promise<Proc> {
  const child = spawn(process.execPath, ["--import", "tsx", script], {
    env: childEnv({ LAVIE_MODEL_DIR: modelDir, LAVIE_ORT_THREADS: "1", LAVIE_METRICS_PORT: "0", ...env }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let stdout = "";
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (s: string) => {
    out += s;
  });
  return new Promise((resolve, reject) => {
    child.stdout!.on("data", (s: string) => {
      out += s;
      stdout += s;
      const m = ready.exec(stdout);
      if (m && !procs.some((p) => p.child === child)) {
        const p = { name, child, output: () => out, line: m[0] };
        procs.push(p);
        resolve(p);
      }
    });
    child.once("exit", (code) =>
      reject(new Error(`${name} exited with ${code} before it was ready:\n${out}`)),
    );
  });
}

async function stop(p: Proc): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise((r) => p.child.once("exit", r));
  p.child.kill("SIGTERM");
  const t = setTimeout(() => p.child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(t);
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
function hs256(payload: Record<string, unknown>, secret = JWT_SECRET, alg = "HS256"): string {
  const signed = `${b64({ alg, typ: "JWT" })}.${b64(payload)}`;
  return `${signed}.${createHmac("sha256", secret).update(signed).digest("base64url")}`;
}
const now = () => Math.floor(Date.now() / 1000);
const JWT_BETA = () => hs256({ tenant: "beta", sub: "bob", aud: "lavie", exp: now() + 600 });
const JWT_ADMIN = () =>
  hs256({ tenant: "ops", sub: "root", aud: "lavie", exp: now() + 600, lavie_admin: true });

function coordinatorClient(opts: LavieClientOptions = {}): LavieClient {
  const address = coordinator.line.split(" ").pop()!;
  const c = new LavieClient(address, {
    tls: { ca: readFileSync(ca.caFile) },
    timeoutMs: 10_000,
    reconnectMs: 0,
    submitAttempts: 1,
    ...opts,
  });
  clients.push(c);
  return c;
}

async function failure(p: Promise<unknown>): Promise<LavieError> {
  const err = await p.then(
    () => assert.fail("expected the call to fail"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof LavieError, String(err));
  for (const s of SECRETS)
    assert.ok(!err.message.includes(s), `an error message contains a secret: ${err.message}`);
  return err;
}

async function drain<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const v of it) out.push(v);
  return out;
}

const baseOnly = (prompt: string, seed: number): JobRequest => ({
  prompt,
  seed,
  stopAfter: "base",
  base: { steps: 2 },
});

async function runToEnd(c: LavieClient, req: JobRequest): Promise<Job> {
  const { job } = await c.submit(req);
  const events = await drain(c.watch(job.id));
  const last = events.at(-1);
  assert.equal(last?.type, "done", `job ${job.id} ended with ${JSON.stringify(last)}`);
  return c.get(job.id);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "lavie-security-"));
  ca = createCertAuthority();
  coordCert = ca.issue("lavie-coordinator");
  // Issued for a service name only: the coordinator dials 127.0.0.1 and checks this name instead.
  runnerCert = ca.issue("lavie-runner", { dns: ["lavie-runner.internal"], ips: [] });
  intruderCert = ca.issue("intruder");
  aliceCert = ca.issue("alice");
  const keys = join(dir, "api-keys");
  writeFileSync(
    keys,
    [
      "# tenant name hash [admin]",
      `acme ci ${hashApiKey(KEY_ACME)}`,
      `beta ci ${hashApiKey(KEY_BETA)}`,
      `ops oncall ${hashApiKey(KEY_OPS)} admin`,
    ].join("\n"),
  );
  writeFileSync(join(dir, "jwt-secret"), `${JWT_SECRET}\n`);
  writeFileSync(join(dir, "runner-token"), `${RUNNER_TOKEN}\n`);
  receiver = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (s: string) => {
      body += s;
    });
    req.on("end", () => {
      spans.push(body);
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const otel = {
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_BSP_SCHEDULE_DELAY: "200",
  };
  [nats, nats2, modelDir] = await Promise.all([startNatsServer(), startNatsServer(), ensureModels("tiny")]);
  [runner, tokenRunner, coordinator] = await Promise.all([
    startProcess(
      "mtls-runner",
      "stage-runners/main.ts",
      {
        ...otel,
        LAVIE_NATS_URL: nats.url,
        LAVIE_RUNNER_ID: "mtls-runner",
        LAVIE_RUNNER_STAGES: "base",
        LAVIE_TLS_CERT_FILE: runnerCert.certFile,
        LAVIE_TLS_KEY_FILE: runnerCert.keyFile,
        LAVIE_TLS_CLIENT_CA_FILE: ca.caFile,
      },
      /listening on \S+/,
    ),
    startProcess(
      "token-runner",
      "stage-runners/main.ts",
      {
        LAVIE_NATS_URL: nats2.url,
        LAVIE_RUNNER_ID: "token-runner",
        LAVIE_RUNNER_STAGES: "base",
        LAVIE_RUNNER_TOKEN_FILE: join(dir, "runner-token"),
      },
      /listening on \S+/,
    ),
    startProcess(
      "coordinator",
      "coordinator/main.ts",
      {
        ...otel,
        LAVIE_NATS_URL: nats.url,
        LAVIE_GRPC_PORT: "0",
        LAVIE_API_KEYS_FILE: keys,
        LAVIE_JWT_SECRET_FILE: join(dir, "jwt-secret"),
        LAVIE_JWT_AUDIENCE: "lavie",
        LAVIE_TLS_CERT_FILE: coordCert.certFile,
        LAVIE_TLS_KEY_FILE: coordCert.keyFile,
        LAVIE_RUNNER_CA_FILE: ca.caFile,
        LAVIE_RUNNER_TLS_SERVER_NAME: "lavie-runner.internal",
      },
      /listening on \S+/,
    ),
  ]);
});

after(async () => {
  for (const c of clients) c.close();
  await inProcess?.stop().catch(() => {});
  await Promise.all(procs.map(stop));
  receiver?.close();
  await nats?.stop();
  await nats2?.stop();
  ca?.remove();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("a job completes end to end: TLS client API with an API key, mTLS coordinator -> runner", async () => {
  const acme = coordinatorClient({ apiKey: KEY_ACME });
  acmeJob = await runToEnd(acme, baseOnly("a fox behind TLS", 3));
  assert.equal(acmeJob.state, "succeeded");
  assert.equal(acmeJob.tenant, "acme");
  const mp4 = Buffer.concat(await drain(acme.fetchResult(acmeJob.id)));
  assert.equal(mp4.length, acmeJob.result?.bytes);
});

test("missing or invalid credentials are UNAUTHENTICATED", async () => {
  const cases: [string, LavieClientOptions][] = [
    ["no credentials", {}],
    ["an unknown API key", { apiKey: KEY_WRONG }],
    ["an expired JWT", { token: hs256({ tenant: "beta", aud: "lavie", exp: now() - 3600 }) }],
    [
      "a JWT signed with another secret",
      { token: hs256({ tenant: "beta", aud: "lavie", exp: now() + 600 }, "x".repeat(40)) },
    ],
    [
      "a JWT with alg none",
      { token: `${b64({ alg: "none" })}.${b64({ tenant: "ops", exp: now() + 600, lavie_admin: true })}.` },
    ],
    ["a JWT for another audience", { token: hs256({ tenant: "beta", aud: "other", exp: now() + 600 }) }],
  ];
  for (const [what, opts] of cases) {
    const e = await failure(coordinatorClient(opts).list());
    assert.equal(e.code, "unauthenticated", `${what}: ${e.code} ${e.message}`);
    if (typeof opts.token === "string") {
      assert.ok(!e.message.includes(opts.token), `${what}: the token is in the message`);
    }
  }
  // Submitting and streaming are refused the same way (SubmitJob's span records the refusal).
  const wrong = coordinatorClient({ apiKey: KEY_WRONG });
  assert.equal((await failure(wrong.submit(baseOnly("never runs", 1)))).code, "unauthenticated");
  assert.equal((await failure(drain(wrong.watch("some-job")))).code, "unauthenticated");
  // The same kinds of credentials, valid, pass.
  const beta = coordinatorClient({ token: JWT_BETA() });
  assert.ok(Array.isArray(await beta.list()));
});

test("a plaintext client cannot talk to the TLS coordinator; health stays open without credentials", async () => {
  const address = coordinator.line.split(" ").pop()!;
  const plain = new LavieClient(address, { apiKey: KEY_ACME, timeoutMs: 5_000, reconnectMs: 0 });
  clients.push(plain);
  const e = await failure(plain.list());
  assert.equal(e.code, "unavailable", e.message);
  // grpc.health.v1.Health/Check {service: ""} over TLS, no authorization metadata: SERVING (1).
  const health = new grpc.Client(address, grpc.credentials.createSsl(readFileSync(ca.caFile)));
  const status = await new Promise<Buffer>((resolve, reject) =>
    health.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.alloc(0),
      (err, res) => (err ? reject(err) : resolve(res!)),
    ),
  );
  health.close();
  assert.deepEqual([...status], [0x08, 0x01]);
});

test("tenants see and touch only their own jobs; all_tenants is for admins", async () => {
  assert.ok(acmeJob, "needs the end-to-end job");
  const id = acmeJob.id;
  for (const beta of [coordinatorClient({ apiKey: KEY_BETA }), coordinatorClient({ token: JWT_BETA() })]) {
    for (const [what, call] of [
      ["get", () => beta.get(id)],
      ["watch", () => drain(beta.watch(id))],
      ["cancel", () => beta.cancel(id)],
      ["fetch", () => drain(beta.fetchResult(id))],
    ] as const) {
      const e = await failure(call());
      assert.equal(e.code, "permission_denied", `${what}: ${e.code} ${e.message}`);
    }
    assert.ok(!(await beta.list()).some((j) => j.id === id), "beta lists acme's job");
    assert.equal((await failure(beta.list({ allTenants: true }))).code, "permission_denied");
  }
  const acme = coordinatorClient({ apiKey: KEY_ACME });
  assert.ok((await acme.list()).some((j) => j.id === id));
  assert.equal((await acme.get(id)).state, "succeeded");
  for (const admin of [coordinatorClient({ apiKey: KEY_OPS }), coordinatorClient({ token: JWT_ADMIN() })]) {
    const all = await admin.list({ allTenants: true });
    assert.ok(
      all.some((j) => j.id === id && j.tenant === "acme"),
      "the admin does not see acme's job",
    );
  }
});

test("the CLI: --api-key-file and --tls-ca; a bad --tls-ca is a usage error naming the option", async () => {
  const address = coordinator.line.split(" ").pop()!;
  writeFileSync(join(dir, "acme.key"), `${KEY_ACME}\n`);
  const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const child = spawn(process.execPath, ["bin/lavie.js", ...args], {
        env: childEnv(env),
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      let err = "";
      child.stdout!.on("data", (b: Buffer) => {
        out += b;
      });
      child.stderr!.on("data", (b: Buffer) => {
        err += b;
      });
      child.once("exit", (code) => resolve({ code, out, err }));
    });
  const [ok, viaEnv, bad] = await Promise.all([
    cli([
      "jobs",
      "list",
      "--server",
      address,
      "--json",
      "--api-key-file",
      join(dir, "acme.key"),
      "--tls-ca",
      ca.caFile,
    ]),
    cli(["jobs", "get", acmeJob.id, "--server", address, "--json", "--tls-ca", ca.caFile], {
      LAVIE_API_KEY: KEY_BETA,
    }),
    cli([
      "jobs",
      "list",
      "--server",
      address,
      "--api-key-file",
      join(dir, "acme.key"),
      "--tls-ca",
      join(dir, "acme.key"),
    ]),
  ]);
  assert.equal(ok.code, 0, ok.err);
  assert.ok((JSON.parse(ok.out) as Job[]).some((j) => j.id === acmeJob.id));
  assert.equal(viaEnv.code, 1, viaEnv.err);
  assert.match(viaEnv.err, /belongs to another tenant|permission/i);
  assert.equal(bad.code, 2, bad.err);
  assert.match(bad.err, /--tls-ca: .*acme\.key is not a PEM certificate/);
  for (const r of [ok, viaEnv, bad]) {
    for (const s of SECRETS) assert.ok(!(r.out + r.err).includes(s), "the CLI printed a secret");
  }
});

/** A client of the mTLS runner (checked against its service name) with the given certificate. */
function runnerClient(cert: IssuedCert | null): grpc.Client {
  const address = runner.line.split(" ").pop()!;
  return createClient(
    StageRunnerService,
    address,
    channelTls({
      ca: pemFile("ca", ca.caFile, "certificate"),
      ...(cert && {
        cert: pemFile("cert", cert.certFile, "certificate"),
        key: pemFile("key", cert.keyFile, "private key"),
      }),
    }),
    { "grpc.ssl_target_name_override": "lavie-runner.internal" },
  );
}

async function executeTask(client: grpc.Client, metadata?: grpc.Metadata): Promise<LavieError> {
  try {
    await drain(
      serverStream(
        client,
        StageRunnerService,
        "executeTask",
        { jobId: "x" },
        {
          deadline: Date.now() + 5_000,
          ...(metadata && { metadata }),
        },
      ),
    );
  } catch (err) {
    return fromGrpcError(err);
  } finally {
    client.close();
  }
  return assert.fail("ExecuteTask succeeded");
}

test("the mTLS runner accepts calls only from the coordinator's certificate", async () => {
  const intruder = await executeTask(runnerClient(intruderCert));
  assert.equal(intruder.code, "permission_denied", intruder.message);
  assert.match(intruder.message, /"intruder" may not call runners; allowed: lavie-coordinator/);
  const describeAs = async (cert: IssuedCert) => {
    const c = runnerClient(cert);
    try {
      return await unary(c, StageRunnerService, "describe", {}, { deadline: Date.now() + 5_000 });
    } finally {
      c.close();
    }
  };
  const denied = await describeAs(intruderCert).then(
    () => null,
    (e: unknown) => fromGrpcError(e),
  );
  assert.equal(denied?.code, "permission_denied");
  assert.equal((await describeAs(coordCert)).runner?.id, "mtls-runner");
  // The coordinator's certificate passes the check: the request itself is then refused as invalid.
  assert.equal((await executeTask(runnerClient(coordCert))).code, "invalid_argument");
  const anonymous = await executeTask(runnerClient(null));
  assert.notEqual(
    anonymous.code,
    "invalid_argument",
    "a client without a certificate got through the handshake",
  );
  assert.equal(anonymous.code, "unavailable", anonymous.message);
});

test("token mode: a runner needs the coordinator's token; the coordinator presents it; client API mTLS", async () => {
  const address = tokenRunner.line.split(" ").pop()!;
  const call = (token?: string) => {
    const md = new grpc.Metadata();
    if (token) md.set("authorization", `Bearer ${token}`);
    return executeTask(createClient(StageRunnerService, address), md);
  };
  for (const [what, e] of [
    ["no token", await call()],
    ["a wrong token", await call(WRONG_TOKEN)],
  ] as const) {
    assert.equal(e.code, "unauthenticated", `${what}: ${e.message}`);
    for (const s of SECRETS) assert.ok(!e.message.includes(s));
  }
  assert.equal((await call(RUNNER_TOKEN)).code, "invalid_argument");

  inProcess = await Coordinator.start({
    natsUrl: nats2.url,
    modelDir,
    runnerTransport: { token: () => RUNNER_TOKEN },
    serverCredentials: serverTls({
      cert: pemFile("LAVIE_TLS_CERT_FILE", coordCert.certFile, "certificate"),
      key: pemFile("LAVIE_TLS_KEY_FILE", coordCert.keyFile, "private key"),
      clientCa: pemFile("LAVIE_TLS_CLIENT_CA_FILE", ca.caFile, "certificate"),
    }),
  });
  const tls = { ca: readFileSync(ca.caFile) };
  const withoutCert = new LavieClient(inProcess.address, { tls, timeoutMs: 5_000, reconnectMs: 0 });
  const alice = new LavieClient(inProcess.address, {
    tls: { ...tls, cert: readFileSync(aliceCert.certFile), key: readFileSync(aliceCert.keyFile) },
    timeoutMs: 10_000,
  });
  clients.push(withoutCert, alice);
  assert.equal((await failure(withoutCert.list())).code, "unavailable");
  const job = await runToEnd(alice, baseOnly("a token-guarded fox", 4));
  assert.equal(job.state, "succeeded");
});

test("no secret reaches any process's output or the exported spans", async () => {
  await Promise.all(procs.map(stop)); // flushes their spans
  // The base64 lines of the private keys (each up to 64 characters).
  const keyLines = [coordCert, runnerCert].flatMap((c) =>
    readFileSync(c.keyFile, "utf8")
      .split("\n")
      .filter((l) => l.length >= 32 && !l.startsWith("-----")),
  );
  assert.ok(keyLines.length >= 2);
  assert.ok(
    spans.some((b) => b.includes("lavie-coordinator")) && spans.some((b) => b.includes("lavie-runner")),
    "no spans were exported by both processes",
  );
  // No authorization metadata value (a "Bearer <credential>" with an actual credential) in any span.
  assert.ok(
    !spans.some((b) => /Bearer [A-Za-z0-9._~+/=-]{8,}/i.test(b)),
    "spans hold authorization metadata",
  );
  const texts = [...procs.map((p) => [p.name, p.output()] as const), ["spans", spans.join("\n")] as const];
  for (const [name, text] of texts) {
    for (const s of SECRETS) assert.ok(!text.includes(s), `${name} contains a secret`);
    for (const l of keyLines) assert.ok(!text.includes(l), `${name} contains a private key`);
  }
  assert.match(
    coordinator.output(),
    /coordinator security: client API: TLS, authentication API keys \(3 in /,
  );
  assert.match(
    runner.output(),
    /security: TLS, client certificates required; callers: client certificates lavie-coordinator/,
  );
  assert.match(tokenRunner.output(), /callers: runner token/);
  // Refused calls are logged with the reason (and without the credential).
  assert.match(runner.output(), /refused a call from .*: client certificate "intruder" may not call runners/);
  assert.match(tokenRunner.output(), /refused a call from .*: wrong runner token/);
});
