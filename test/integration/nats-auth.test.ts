/**
 * NATS credentials and per-role permissions, with a real nats-server and real processes: the
 * server runs with the users of transport/nats/permissions.ts (coordinator, runner, admin; no
 * anonymous access); the coordinator and two runners connect as their roles (LAVIE_NATS_USER +
 * LAVIE_NATS_PASSWORD_FILE + LAVIE_NATS_INBOX_PREFIX) and run real jobs, including the CFG exchange
 * between runners, result fetch and the deletion of a job's objects, with no permission violation
 * logged by the server. A runner-role connection cannot touch job records or delete/purge the
 * job and registry streams; wrong or missing credentials are refused; no secret shows up in any
 * process output or error message.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { LavieClient } from "../../client/sdk/index.ts";
import { LavieError } from "../../core/errors.ts";
import { ensureModels } from "../../models/cache.ts";
import {
  connectNats,
  type NatsAuth,
  type NatsClients,
  natsAuthFromEnv,
} from "../../transport/nats/connect.ts";
import { defaultInboxPrefix, type NatsRole } from "../../transport/nats/permissions.ts";
import { NatsTensorStore } from "../../transport/nats/tensors.ts";
import { startNatsServer } from "../support/nats-server.ts";
import { childEnv } from "../support/process.ts";

type Nats = Awaited<ReturnType<typeof startNatsServer>>;
let nats: Nats;
let modelDir: string;
let dir: string;
const children = new Set<ChildProcess>();
const outputs: string[] = [];

// Distinctive secrets, so a leak anywhere is found by a plain substring search.
const PASSWORDS: Record<NatsRole, string> = {
  coordinator: "coordSecret-7f3a9c1e5b2d4e6f8a0b",
  runner: "runnerSecret-2c4e6a8b0d1f3a5c7e9b",
  admin: "adminSecret-9e8d7c6b5a4f3e2d1c0b",
};
const USERS: Record<NatsRole, string> = {
  coordinator: "lavie-coordinator",
  runner: "lavie-runner",
  admin: "lavie-admin",
};

function passwordFile(role: NatsRole, content = PASSWORDS[role]): string {
  const file = join(dir, `${role}-${Math.random().toString(36).slice(2)}.password`);
  writeFileSync(file, `${content}\n`, { mode: 0o400 });
  return file;
}

function roleEnv(role: NatsRole, password?: string): NodeJS.ProcessEnv {
  return {
    LAVIE_NATS_USER: USERS[role],
    LAVIE_NATS_PASSWORD_FILE: passwordFile(role, password),
    LAVIE_NATS_INBOX_PREFIX: defaultInboxPrefix(role),
  };
}

function roleAuth(role: NatsRole): NatsAuth {
  const auth = natsAuthFromEnv(roleEnv(role));
  assert.ok(auth);
  return auth;
}

/** Starts `node --import tsx <script>`, keeping all of stdout and stderr for the leak check. */
function startProcess(
  script: string,
  env: NodeJS.ProcessEnv,
  ready: RegExp,
): Promise<{ child: ChildProcess; line: string; output: () => string }> {
  const child = spawn(process.execPath, ["--import", "tsx", script], {
    env: childEnv({
      LAVIE_NATS_URL: nats.url,
      LAVIE_MODEL_DIR: modelDir,
      LAVIE_ORT_THREADS: "1",
      LAVIE_METRICS_PORT: "0",
      ...env,
    }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  const index = outputs.push("") - 1;
  const output = () => outputs[index] ?? "";
  return new Promise((resolve, reject) => {
    let done = false;
    const onData = (s: string) => {
      outputs[index] += s;
      const m = ready.exec(output());
      if (m && !done) {
        done = true;
        resolve({ child, line: m[0], output });
      }
    };
    child.stdout!.setEncoding("utf8").on("data", onData);
    child.stderr!.setEncoding("utf8").on("data", onData);
    child.once("exit", (code) => {
      children.delete(child);
      if (!done) {
        done = true;
        reject(Object.assign(new Error(`${script} exited with ${code}: ${output()}`), { code, output }));
      }
    });
  });
}

async function stopAll(): Promise<void> {
  await Promise.all(
    [...children].map(async (c) => {
      if (c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise((r) => c.once("exit", r));
      c.kill("SIGKILL");
      await exited;
    }),
  );
}

function assertNoSecrets(text: string, where: string): void {
  for (const [role, pw] of Object.entries(PASSWORDS)) {
    assert.ok(!text.includes(pw), `${where} contains the ${role} password`);
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "lavie-nats-auth-"));
  nats = await startNatsServer({
    users: (Object.keys(USERS) as NatsRole[]).map((role) => ({
      user: USERS[role],
      password: PASSWORDS[role],
      role,
    })),
  });
  modelDir = await ensureModels("tiny");
});

after(async () => {
  await stopAll();
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("jobs run with the coordinator and runners connected as their roles, without permission violations", async () => {
  const runners = await Promise.all(
    ["auth-r1", "auth-r2"].map((id) =>
      startProcess(
        "stage-runners/main.ts",
        { LAVIE_RUNNER_ID: id, ...roleEnv("runner") },
        /listening on \S+/,
      ),
    ),
  );
  const coordinator = await startProcess(
    "coordinator/main.ts",
    { LAVIE_GRPC_PORT: "0", ...roleEnv("coordinator") },
    /coordinator listening on \S+/,
  );
  const client = new LavieClient(coordinator.line.split(" ").pop()!);
  try {
    const finish = async (id: string) => {
      for await (const e of client.watch(id)) {
        if (e.type === "done") return e;
        if (e.type === "failed" || e.type === "cancelled") assert.fail(`job ${id}: ${JSON.stringify(e)}`);
      }
      assert.fail(`job ${id}: watch ended without a result`);
    };
    // The base stage with CFG branches on two runners: the runners swap step outputs over LAVIE_CFG.
    const base = await client.submit({
      prompt: "a locked-down panda",
      seed: 5,
      stopAfter: "base",
      base: { steps: 2, cfgParallel: true },
    });
    await finish(base.job.id);
    // The whole cascade, then the MP4 through the coordinator.
    const full = await client.submit({
      prompt: "a locked-down fox",
      seed: 6,
      base: { steps: 1 },
      interpolation: { steps: 1 },
      vsr: { steps: 1 },
    });
    const done = await finish(full.job.id);
    let bytes = 0;
    for await (const chunk of client.fetchResult(full.job.id)) bytes += chunk.byteLength;
    assert.equal(bytes, done.result.bytes);
    assert.ok(bytes > 0);
    // A cancelled job: the coordinator deletes its objects (a purge of their chunks).
    const cancelled = await client.submit({ prompt: "cancel me", seed: 7, base: { steps: 40 } });
    for await (const e of client.watch(cancelled.job.id)) if (e.type === "stage_started") break;
    assert.equal((await client.cancel(cancelled.job.id)).state, "cancelled");
  } finally {
    client.close();
  }
  // Let the cleanup after the cancel run, then stop the processes gracefully.
  await new Promise((r) => setTimeout(r, 2_500));
  for (const p of [coordinator, ...runners]) {
    const exited = new Promise((r) => p.child.once("exit", r));
    p.child.kill("SIGTERM");
    await exited;
  }
  const log = nats.log();
  const violations = log.split("\n").filter((l) => /violation/i.test(l));
  assert.deepEqual(violations, [], "the server logged permission violations");
  for (const p of [coordinator, ...runners]) assertNoSecrets(p.output(), "process output");
  assertNoSecrets(log, "nats-server log");
});

test("a runner-role connection cannot read or write job records, nor delete or purge streams", async () => {
  const admin = await connectNats(nats.url, { name: "auth-admin", auth: roleAuth("admin") });
  const runner = await connectNats(nats.url, { name: "auth-runner", auth: roleAuth("runner") });
  const coordinator = await connectNats(nats.url, { name: "auth-coord", auth: roleAuth("coordinator") });
  const denied = async (what: string, f: () => Promise<unknown>, subject: string) => {
    await assert.rejects(f, (err: Error) => {
      assert.match(err.message, /Permissions Violation/, what);
      assert.ok(err.message.includes(subject), `${what}: ${err.message}`);
      return true;
    });
  };
  try {
    const jobs = await (await admin.kvm.create("lavie-jobs", { history: 1 })).put("jobs.secret", "{}");
    assert.ok(jobs > 0);
    await denied(
      "open lavie-jobs",
      () => runner.kvm.create("lavie-jobs"),
      "$JS.API.STREAM.INFO.KV_lavie-jobs",
    );
    const kv = await runner.kvm.open("lavie-jobs"); // lazy: no server call yet
    await denied("get a job record", () => kv.get("jobs.secret"), "KV_lavie-jobs");
    await denied("put a job record", () => kv.put("jobs.evil", "{}"), "$KV.lavie-jobs.jobs.evil");
    await denied(
      "publish a job record",
      () => runner.js.publish("$KV.lavie-jobs.jobs.evil", "{}"),
      "$KV.lavie-jobs.jobs.evil",
    );
    await denied(
      "purge lavie-jobs",
      () => runner.jsm.streams.purge("KV_lavie-jobs"),
      "$JS.API.STREAM.PURGE.KV_lavie-jobs",
    );
    await denied(
      "purge the registry",
      () => runner.jsm.streams.purge("KV_lavie-runners"),
      "$JS.API.STREAM.PURGE.KV_lavie-runners",
    );
    for (const stream of ["KV_lavie-jobs", "KV_lavie-runners", "OBJ_lavie-tensors", "LAVIE_CFG"]) {
      await denied(`delete ${stream}`, () => runner.jsm.streams.delete(stream), `STREAM.DELETE.${stream}`);
    }
    // Replies to the coordinator (e.g. job records it reads) are not readable by a runner.
    const sub = runner.nc.subscribe("_INBOX_coordinator.>");
    const closed = await sub.closed;
    assert.match(String((closed as Error | undefined)?.message), /Permissions Violation for Subscription/);
    // The coordinator reads the registry but does not write runner entries, and deletes no stream.
    await denied(
      "coordinator writes the registry",
      () => coordinator.js.publish("$KV.lavie-runners.runners.fake", "{}"),
      "$KV.lavie-runners.runners.fake",
    );
    await denied(
      "coordinator deletes lavie-jobs",
      () => coordinator.jsm.streams.delete("KV_lavie-jobs"),
      "STREAM.DELETE.KV_lavie-jobs",
    );
    // What each role needs still works on the same connections.
    const entry = await (await runner.kvm.create("lavie-runners")).put("runners.probe", "{}");
    assert.ok(entry > 0);
    // A retried task rewrites its output object: nats.js then purges the replaced chunks.
    const logBefore = nats.log().length;
    const tensors = await NatsTensorStore.open(runner.objm);
    const t = { shape: [2], data: new Float32Array([1, 2]) };
    await tensors.put("probe/x/0", t);
    const ref = await tensors.put("probe/x/0", { shape: [2], data: new Float32Array([3, 4]) });
    assert.deepEqual([...(await tensors.get(ref)).data], [3, 4]);
    assert.doesNotMatch(nats.log().slice(logBefore), /Violation/);
    const record = await (await coordinator.kvm.create("lavie-jobs", { history: 1 })).get("jobs.secret");
    assert.equal(record?.string(), "{}");
    // The server logs violations (what the first test checks it did not do during the jobs).
    assert.match(
      nats.log(),
      /Publish Violation.*lavie-runner.*KV_lavie-jobs|lavie-runner.*Publish Violation/,
    );
  } finally {
    await Promise.all([admin.close(), runner.close(), coordinator.close()]);
  }
});

test("wrong, unknown or missing credentials are refused at connect, naming the settings but no secret", async () => {
  const attempts: [string, NatsAuth | undefined][] = [
    ["wrong password", natsAuthFromEnv(roleEnv("runner", "not-the-password-4b1d"))],
    ["unknown user", { user: { name: "mallory", password: PASSWORDS.runner } }],
    ["another role's password", { user: { name: USERS.runner, password: PASSWORDS.coordinator } }],
    ["no credentials", undefined],
  ];
  for (const [what, auth] of attempts) {
    const err = await connectNats(nats.url, {
      name: "auth-refused",
      timeout: 3_000,
      ...(auth && { auth }),
    }).then(
      (c: NatsClients) => {
        void c.close();
        return assert.fail(`${what}: connected`);
      },
      (e: unknown) => e,
    );
    assert.ok(err instanceof LavieError, what);
    assert.equal(err.code, "unauthenticated", `${what}: ${err.message}`);
    assert.match(err.message, /refused the credentials/);
    assertNoSecrets(err.message, `${what}: error message`);
    assert.ok(!err.message.includes("not-the-password-4b1d"), what);
  }
  // A runner process with a wrong password stops, and says why without the password.
  const failed = await startProcess(
    "stage-runners/main.ts",
    { LAVIE_RUNNER_ID: "auth-bad", ...roleEnv("runner", "wrong-secret-0d9c8b7a") },
    /listening on \S+/,
  ).then(
    () => assert.fail("the runner started with a wrong password"),
    (e: { code: number; output: () => string }) => e,
  );
  assert.notEqual(failed.code, 0);
  assert.match(failed.output(), /refused the credentials \(LAVIE_NATS_USER \+ LAVIE_NATS_PASSWORD_FILE\)/);
  assert.ok(!failed.output().includes("wrong-secret-0d9c8b7a"), "the output contains the password");
});

test("conflicting NATS settings stop both processes at start, naming the variables", async () => {
  const token = passwordFile("runner", "token-value-1f2e3d4c");
  const bad = { ...roleEnv("runner"), LAVIE_NATS_TOKEN_FILE: token };
  for (const [script, ready] of [
    ["stage-runners/main.ts", /listening on \S+/],
    ["coordinator/main.ts", /coordinator listening on \S+/],
  ] as const) {
    const failed = await startProcess(script, { LAVIE_GRPC_PORT: "0", ...bad }, ready).then(
      () => assert.fail(`${script} started with conflicting NATS credentials`),
      (e: { code: number; output: () => string }) => e,
    );
    assert.equal(failed.code, 2, `${script}: ${failed.output()}`);
    assert.match(
      failed.output(),
      /LAVIE_NATS_USER \+ LAVIE_NATS_PASSWORD_FILE and LAVIE_NATS_TOKEN_FILE are set; set only one/,
    );
    assertNoSecrets(failed.output(), script);
    assert.ok(!failed.output().includes("token-value-1f2e3d4c"), script);
  }
});

test("TLS to NATS: the CA verifies the server, the client certificate is required, with a role's password", async () => {
  const pki = join(dir, "pki");
  mkdirSync(pki);
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: pki, stdio: "pipe" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  run(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-subj",
    "/CN=test-nats-ca",
    "-days",
    "2",
  );
  const issue = (name: string, ext: string) => {
    run("req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
    writeFileSync(join(pki, `${name}.ext`), ext);
    run(
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.crt`,
      "-days",
      "2",
      "-extfile",
      `${name}.ext`,
    );
  };
  issue("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  issue("client", "extendedKeyUsage=clientAuth\n");
  const f = (name: string) => JSON.stringify(join(pki, name));
  const server = await startNatsServer({
    users: [{ user: USERS.runner, password: PASSWORDS.runner, role: "runner" }],
    config: `tls {\n  cert_file: ${f("server.crt")}\n  key_file: ${f("server.key")}\n  ca_file: ${f("ca.crt")}\n  verify: true\n}`,
  });
  try {
    const env = {
      ...roleEnv("runner"),
      LAVIE_NATS_CA_FILE: join(pki, "ca.crt"),
      LAVIE_NATS_TLS_CERT_FILE: join(pki, "client.crt"),
      LAVIE_NATS_TLS_KEY_FILE: join(pki, "client.key"),
    };
    const auth = natsAuthFromEnv(env);
    assert.ok(auth?.tls?.ca && auth.tls.cert && auth.tls.key);
    const ok = await connectNats(server.url, { name: "auth-tls", auth });
    try {
      const kv = await ok.kvm.create("lavie-runners");
      assert.ok((await kv.put("runners.tls", "{}")) > 0);
      assert.equal(ok.nc.info?.tls_required, true);
    } finally {
      await ok.close();
    }
    // Without the client certificate, or without TLS at all, the server refuses.
    const { LAVIE_NATS_TLS_CERT_FILE: _c, LAVIE_NATS_TLS_KEY_FILE: _k, ...caOnly } = env;
    for (const [what, a, pattern] of [
      // The server drops the handshake.
      ["no client certificate", natsAuthFromEnv(caOnly), /cannot connect to NATS|refused/],
      // Without the CA the client cannot verify the server's certificate.
      ["no CA", natsAuthFromEnv(roleEnv("runner")), /verify/],
    ] as const) {
      await assert.rejects(
        () => connectNats(server.url, { name: "auth-tls-refused", timeout: 3_000, ...(a && { auth: a }) }),
        (err: Error) => {
          assert.ok(err instanceof LavieError, `${what}: ${err.message}`);
          assert.match(err.message, pattern, what);
          assertNoSecrets(err.message, what);
          return true;
        },
        what,
      );
    }
  } finally {
    await server.stop();
  }
});

test("natsAuthFromEnv: secrets come from files, conflicts and bad files are named, never echoed", () => {
  const secret = "s3cret-value-for-env-test";
  const pw = passwordFile("runner", secret);
  const read = natsAuthFromEnv({ LAVIE_NATS_USER: "u", LAVIE_NATS_PASSWORD_FILE: pw });
  assert.deepEqual(read?.user, { name: "u", password: secret }, "one trailing newline is dropped");
  assert.equal(natsAuthFromEnv({}), undefined);
  const token = passwordFile("runner", "tok-123");
  assert.equal(natsAuthFromEnv({ LAVIE_NATS_TOKEN_FILE: token })?.token, "tok-123");
  const creds = join(dir, "user.creds");
  writeFileSync(
    creds,
    "-----BEGIN NATS USER JWT-----\nabc\n------END NATS USER JWT------\n" +
      "-----BEGIN USER NKEY SEED-----\nSUAXXX\n------END USER NKEY SEED------\n",
  );
  assert.ok(natsAuthFromEnv({ LAVIE_NATS_CREDS_FILE: creds })?.creds);
  const bad = (env: NodeJS.ProcessEnv, pattern: RegExp) => {
    assert.throws(
      () => natsAuthFromEnv(env),
      (err: Error) => {
        assert.ok(err instanceof LavieError && err.code === "invalid_argument", err.message);
        assert.match(err.message, pattern);
        assert.ok(!err.message.includes(secret), `secret in: ${err.message}`);
        return true;
      },
    );
  };
  bad({ LAVIE_NATS_USER: "u" }, /LAVIE_NATS_USER: needs LAVIE_NATS_PASSWORD_FILE/);
  bad({ LAVIE_NATS_PASSWORD_FILE: pw }, /LAVIE_NATS_PASSWORD_FILE: needs LAVIE_NATS_USER/);
  bad(
    { LAVIE_NATS_USER: "u", LAVIE_NATS_PASSWORD_FILE: pw, LAVIE_NATS_TOKEN_FILE: token },
    /LAVIE_NATS_USER \+ LAVIE_NATS_PASSWORD_FILE and LAVIE_NATS_TOKEN_FILE are set; set only one/,
  );
  bad(
    { LAVIE_NATS_TOKEN_FILE: token, LAVIE_NATS_CREDS_FILE: creds },
    /LAVIE_NATS_TOKEN_FILE and LAVIE_NATS_CREDS_FILE are set/,
  );
  bad({ LAVIE_NATS_USER: "u", LAVIE_NATS_PASSWORD: secret }, /LAVIE_NATS_PASSWORD: secrets are not read/);
  bad(
    { LAVIE_NATS_USER: "u", LAVIE_NATS_PASSWORD_FILE: join(dir, "missing") },
    /LAVIE_NATS_PASSWORD_FILE: cannot read the file .*missing \(ENOENT\)/,
  );
  const empty = join(dir, "empty");
  writeFileSync(empty, "");
  bad({ LAVIE_NATS_TOKEN_FILE: empty }, /LAVIE_NATS_TOKEN_FILE: the file .* is empty/);
  bad({ LAVIE_NATS_CREDS_FILE: pw }, /LAVIE_NATS_CREDS_FILE: the file .* is not a NATS \.creds file/);
  bad({ LAVIE_NATS_CA_FILE: pw }, /LAVIE_NATS_CA_FILE: the file .* is not a PEM certificate/);
  bad({ LAVIE_NATS_TLS_CERT_FILE: pw }, /LAVIE_NATS_TLS_CERT_FILE: .* go together/);
  bad({ LAVIE_NATS_INBOX_PREFIX: "_INBOX.>" }, /LAVIE_NATS_INBOX_PREFIX: "_INBOX\.>" must be/);
});
