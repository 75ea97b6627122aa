/**
 * The Helm chart's security settings, offline (real helm, real nats-server, real parsers):
 *
 * - bundled NATS: the nats.conf authorization block is exactly what transport/nats/permissions.ts
 *   generates (one source of truth for the subject lists), and that config, run by a real
 *   nats-server with the Secret's passwords, lets each role do its job and no more;
 * - every secret reaches the coordinator and runners as a read-only file (mode 0400), never as an
 *   env value, and each pod mounts only its own NATS password;
 * - client API auth, TLS (existing Secrets or cert-manager) and the runner token become the right
 *   LAVIE_* variables, and the rendered environments (paths mapped to real files) are accepted by
 *   the processes' own parsers (natsAuthFromEnv, coordinatorSecurityFromEnv, runnerSecurityFromEnv).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, test } from "node:test";
import { connectNats, natsAuthFromEnv } from "../../transport/nats/connect.ts";
import { authorizationBlock, type NatsRole } from "../../transport/nats/permissions.ts";
import { coordinatorSecurityFromEnv, runnerSecurityFromEnv } from "../../transport/security/env.ts";
import { helmTemplate, parseYamlDocuments } from "../support/helm.ts";
import { startNatsServer } from "../support/nats-server.ts";

const RELEASE = "lavie-lavie-serve";
const STAGES = ["base", "interpolation", "vsr"] as const;

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: unknown };
}
interface Mount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
}
interface Volume {
  name: string;
  secret?: { secretName: string; defaultMode?: number; items?: { key: string; path: string }[] };
}
interface Container {
  name: string;
  env?: EnvVar[];
  volumeMounts?: Mount[];
  readinessProbe?: { grpc?: unknown; tcpSocket?: unknown };
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes?: Volume[];
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}

const SETS: Record<string, Record<string, unknown>> = {
  default: {},
  "custom buckets, admin user": {
    runners: { tensorBucket: "t2", runnersBucket: "r2" },
    nats: { auth: { admin: { enabled: true } } },
  },
  "TLS from Secrets, API keys, JWT": {
    auth: {
      apiKeys: { existingSecret: "lavie-api-keys", key: "keys.txt" },
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
    nats: { auth: { existingSecret: "nats-passwords" } },
  },
  "cert-manager, external NATS": {
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
  "runner token from a Secret, no NATS auth": {
    runnerAuth: { existingSecret: "my-runner-token", key: "t" },
    nats: { auth: { enabled: false } },
  },
};

const cache = new Map<string, Manifest[]>();
function manifests(set: string): Manifest[] {
  let m = cache.get(set);
  if (!m) {
    const r = helmTemplate(SETS[set] ?? {});
    assert.equal(r.status, 0, `${set}: helm template failed: ${r.stderr}`);
    m = parseYamlDocuments(r.stdout) as unknown as Manifest[];
    cache.set(set, m);
  }
  return m;
}

function find(ms: Manifest[], kind: string, name: string): Manifest {
  const m = ms.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(m, `${kind} ${name} not rendered`);
  return m;
}

function pod(ms: Manifest[], kind: string, name: string): PodSpec {
  const spec = find(ms, kind, name).spec;
  assert.ok(spec, `${kind} ${name} has no spec`);
  return (spec.template as { spec: PodSpec }).spec;
}

const DEPLOYMENTS = [`${RELEASE}-coordinator`, ...STAGES.map((s) => `${RELEASE}-runner-${s}`)];

function envOf(c: Container): Map<string, EnvVar> {
  return new Map((c.env ?? []).map((e) => [e.name, e]));
}

function value(c: Container, name: string): string | undefined {
  return envOf(c).get(name)?.value;
}

/** The Secret and key behind a file path in the container: [secretName, key]. */
function fileSource(p: PodSpec, c: Container, path: string): [string, string] {
  const mount = c.volumeMounts?.find((m) => path.startsWith(`${m.mountPath}/`));
  assert.ok(mount, `${c.name}: no mount holds ${path}`);
  assert.equal(mount.readOnly, true, `${c.name}: ${mount.mountPath} is not read-only`);
  const vol = p.volumes?.find((v) => v.name === mount.name);
  assert.ok(vol?.secret, `${c.name}: ${path} is not from a Secret`);
  const item = vol.secret.items?.find((i) => i.path === path.slice(mount.mountPath.length + 1));
  assert.ok(item, `${c.name}: the Secret volume ${vol.name} has no item for ${path}`);
  return [vol.secret.secretName, item.key];
}

/** The nats.conf of the bundled NATS (the ConfigMap). */
function natsConf(ms: Manifest[]): string {
  const conf = find(ms, "ConfigMap", `${RELEASE}-nats`).data?.["nats.conf"];
  assert.ok(conf);
  return conf;
}

function authorizationOf(conf: string): string {
  const start = conf.indexOf("authorization {");
  assert.ok(start >= 0, "nats.conf has no authorization block");
  const end = conf.indexOf("\n}\n", start);
  return conf.slice(start, end + 3);
}

const USERS = (roles: NatsRole[]) =>
  roles.map((role) => ({
    user: `lavie-${role}`,
    password: `$LAVIE_NATS_PASSWORD_${role.toUpperCase()}`,
    role,
  }));

const work = mkdtempSync(join(tmpdir(), "lavie-helm-security-"));
after(() => rmSync(work, { recursive: true, force: true }));

describe("helm chart security", () => {
  test("bundled NATS: the authorization block is exactly permissions.ts's, for the chart's bucket names", () => {
    assert.equal(
      authorizationOf(natsConf(manifests("default"))),
      authorizationBlock(USERS(["coordinator", "runner"])),
    );
    assert.equal(
      authorizationOf(natsConf(manifests("custom buckets, admin user"))),
      authorizationBlock(USERS(["coordinator", "runner", "admin"]), {
        tensorBucket: "t2",
        runnersBucket: "r2",
      }),
    );
    assert.ok(!natsConf(manifests("runner token from a Secret, no NATS auth")).includes("authorization"));
  });

  test("bundled NATS: the rendered config runs on nats-server and enforces the roles", async () => {
    const ms = manifests("default");
    const secret = find(ms, "Secret", `${RELEASE}-nats-auth`).data ?? {};
    const passwords = Object.fromEntries(
      Object.entries(secret).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]),
    );
    // The server's own settings (port, store, name) come from the test harness.
    const conf = natsConf(ms)
      .split("\n")
      .filter((l) => !/^\s*(port|http_port|server_name|store_dir):/.test(l))
      .join("\n");
    // nats-server takes the passwords from its environment, as in the StatefulSet.
    const nats = pod(ms, "StatefulSet", `${RELEASE}-nats`).containers[0]!;
    for (const e of nats.env ?? []) {
      const ref = e.valueFrom?.secretKeyRef;
      if (!ref) continue;
      assert.equal(ref.name, `${RELEASE}-nats-auth`);
      process.env[e.name] = passwords[ref.key];
    }
    const server = await startNatsServer({ config: conf });
    try {
      const as = (role: NatsRole) =>
        connectNats(server.url, {
          name: `chart-${role}`,
          auth: {
            user: { name: `lavie-${role}`, password: passwords[role]! },
            inboxPrefix: `_INBOX_${role}`,
          },
        });
      const coordinator = await as("coordinator");
      const runner = await as("runner");
      try {
        const jobs = await coordinator.kvm.create("lavie-jobs", { history: 1 });
        await jobs.put("jobs.a", "{}");
        assert.equal((await jobs.get("jobs.a"))?.string(), "{}");
        await (await runner.kvm.create("lavie-runners")).put("runners.r", "{}");
        await assert.rejects(() => runner.js.publish("$KV.lavie-jobs.jobs.a", "x"), /Permissions Violation/);
        await assert.rejects(() => runner.kvm.create("lavie-jobs"), /Permissions Violation/);
        await assert.rejects(() => coordinator.jsm.streams.delete("KV_lavie-jobs"), /Permissions Violation/);
      } finally {
        await Promise.all([coordinator.close(), runner.close()]);
      }
      await assert.rejects(
        () =>
          connectNats(server.url, {
            name: "chart-wrong",
            timeout: 3_000,
            auth: { user: { name: "lavie-runner", password: passwords.coordinator! } },
          }),
        /refused the credentials/,
      );
    } finally {
      await server.stop();
    }
  });

  test("bundled NATS: a generated password per role; each pod mounts only its own, as a file", () => {
    const ms = manifests("default");
    const secret = find(ms, "Secret", `${RELEASE}-nats-auth`);
    assert.deepEqual(Object.keys(secret.data ?? {}).sort(), ["admin", "coordinator", "runner"]);
    for (const v of Object.values(secret.data ?? {})) {
      // Letters first: nats-server must not parse a password variable as a number.
      assert.match(Buffer.from(v, "base64").toString("utf8"), /^[A-Za-z][A-Za-z0-9]{31,}$/);
    }
    for (const name of DEPLOYMENTS) {
      const role = name.endsWith("coordinator") ? "coordinator" : "runner";
      const p = pod(ms, "Deployment", name);
      const c = p.containers[0]!;
      assert.equal(value(c, "LAVIE_NATS_USER"), `lavie-${role}`);
      assert.equal(value(c, "LAVIE_NATS_INBOX_PREFIX"), `_INBOX_${role}`);
      const file = value(c, "LAVIE_NATS_PASSWORD_FILE");
      assert.ok(file);
      assert.deepEqual(fileSource(p, c, file), [`${RELEASE}-nats-auth`, role]);
      const natsVolume = p.volumes?.find((v) => v.secret?.secretName === `${RELEASE}-nats-auth`);
      assert.deepEqual(
        natsVolume?.secret?.items,
        [{ key: role, path: "password" }],
        `${name}: only its own key`,
      );
    }
    // An existing Secret: nothing generated, every reference uses it.
    const own = manifests("TLS from Secrets, API keys, JWT");
    assert.ok(!own.some((m) => m.kind === "Secret" && m.metadata.name === `${RELEASE}-nats-auth`));
    const nats = pod(own, "StatefulSet", `${RELEASE}-nats`).containers[0]!;
    assert.deepEqual(
      (nats.env ?? []).filter((e) => e.valueFrom?.secretKeyRef).map((e) => e.valueFrom?.secretKeyRef),
      [
        { name: "nats-passwords", key: "coordinator" },
        { name: "nats-passwords", key: "runner" },
      ],
    );
  });

  test("secrets are read-only files (mode 0400) in every value set, never env values", () => {
    for (const set of Object.keys(SETS)) {
      const ms = manifests(set);
      for (const name of DEPLOYMENTS) {
        const p = pod(ms, "Deployment", name);
        for (const c of [...(p.initContainers ?? []), ...p.containers]) {
          for (const e of c.env ?? []) {
            assert.equal(
              e.valueFrom?.secretKeyRef,
              undefined,
              `${set}: ${name}/${c.name} ${e.name} from a Secret`,
            );
            if (/_FILE$/.test(e.name)) fileSource(p, c, e.value ?? "");
          }
        }
        for (const v of p.volumes ?? []) {
          if (v.secret) assert.equal(v.secret.defaultMode, 0o400, `${set}: ${name} volume ${v.name}`);
        }
      }
    }
  });

  test("TLS from Secrets, client API keys and JWT become the processes' variables", () => {
    const ms = manifests("TLS from Secrets, API keys, JWT");
    const cp = pod(ms, "Deployment", `${RELEASE}-coordinator`);
    const c = cp.containers[0]!;
    const files = (names: string[]) => names.map((n) => fileSource(cp, c, value(c, n) ?? ""));
    assert.deepEqual(
      files([
        "LAVIE_TLS_CERT_FILE",
        "LAVIE_TLS_KEY_FILE",
        "LAVIE_RUNNER_CA_FILE",
        "LAVIE_TLS_CLIENT_CA_FILE",
      ]),
      [
        ["coord-tls", "tls.crt"],
        ["coord-tls", "tls.key"],
        ["coord-tls", "ca.crt"],
        ["coord-tls", "ca.crt"],
      ],
    );
    assert.equal(value(c, "LAVIE_RUNNER_TLS_SERVER_NAME"), "runners.lavie.internal");
    assert.deepEqual(files(["LAVIE_API_KEYS_FILE", "LAVIE_JWT_SECRET_FILE", "LAVIE_JWT_PUBLIC_KEY_FILE"]), [
      ["lavie-api-keys", "keys.txt"],
      ["lavie-jwt", "hs256"],
      ["lavie-jwt", "keys.pem"],
    ]);
    assert.equal(value(c, "LAVIE_JWT_ISSUER"), "https://id.example.com");
    assert.equal(value(c, "LAVIE_JWT_AUDIENCE"), "lavie");
    assert.equal(value(c, "LAVIE_JWT_TENANT_CLAIM"), "org");
    // mTLS replaces the runner token; kubelet gRPC probes cannot speak TLS.
    assert.equal(value(c, "LAVIE_RUNNER_TOKEN_FILE"), undefined);
    assert.ok(!ms.some((m) => m.kind === "Secret" && m.metadata.name.endsWith("-runner-token")));
    assert.ok(c.readinessProbe?.tcpSocket && !c.readinessProbe.grpc);
    for (const stage of STAGES) {
      const rp = pod(ms, "Deployment", `${RELEASE}-runner-${stage}`);
      const r = rp.containers[0]!;
      assert.deepEqual(
        ["LAVIE_TLS_CERT_FILE", "LAVIE_TLS_KEY_FILE", "LAVIE_TLS_CLIENT_CA_FILE"].map((n) =>
          fileSource(rp, r, value(r, n) ?? ""),
        ),
        [
          ["runner-tls", "tls.crt"],
          ["runner-tls", "tls.key"],
          ["runner-tls", "ca.crt"],
        ],
      );
      assert.equal(value(r, "LAVIE_RUNNER_ALLOWED_CLIENTS"), "coord-a,coord-b");
      assert.equal(value(r, "LAVIE_API_KEYS_FILE"), undefined, "runners get no client API keys");
      assert.ok(r.readinessProbe?.tcpSocket);
      assert.ok(!(rp.volumes ?? []).some((v) => v.secret?.secretName === "coord-tls"), "no coordinator key");
    }
  });

  test("default: a generated runner token on the coordinator and the runners; gRPC probes", () => {
    const ms = manifests("default");
    const token = find(ms, "Secret", `${RELEASE}-runner-token`).data?.token;
    assert.match(Buffer.from(token ?? "", "base64").toString("utf8"), /^[A-Za-z0-9]{32,}$/);
    for (const name of DEPLOYMENTS) {
      const p = pod(ms, "Deployment", name);
      const c = p.containers[0]!;
      assert.deepEqual(fileSource(p, c, value(c, "LAVIE_RUNNER_TOKEN_FILE") ?? ""), [
        `${RELEASE}-runner-token`,
        "token",
      ]);
      assert.ok(c.readinessProbe?.grpc);
      for (const v of ["LAVIE_TLS_CERT_FILE", "LAVIE_API_KEYS_FILE", "LAVIE_JWT_SECRET_FILE"])
        assert.equal(value(c, v), undefined, `${name}: ${v}`);
    }
    const own = manifests("runner token from a Secret, no NATS auth");
    assert.ok(!own.some((m) => m.kind === "Secret"), "no Secret generated");
    const p = pod(own, "Deployment", `${RELEASE}-runner-base`);
    const c = p.containers[0]!;
    assert.deepEqual(fileSource(p, c, value(c, "LAVIE_RUNNER_TOKEN_FILE") ?? ""), ["my-runner-token", "t"]);
    assert.equal(value(c, "LAVIE_NATS_USER"), undefined);
  });

  test("cert-manager Certificates and external NATS credentials per role", () => {
    const ms = manifests("cert-manager, external NATS");
    const certs = ms.filter((m) => m.kind === "Certificate");
    assert.deepEqual(
      certs.map((m) => m.metadata.name),
      [`${RELEASE}-coordinator-tls`, `${RELEASE}-runner-tls`],
    );
    const coordCert = certs[0]!.spec as {
      commonName: string;
      dnsNames: string[];
      usages: string[];
      issuerRef: unknown;
    };
    assert.equal(coordCert.commonName, "lavie-coordinator");
    assert.ok(coordCert.dnsNames.includes(`${RELEASE}-coordinator.lavie.svc`));
    assert.ok(coordCert.usages.includes("client auth") && coordCert.usages.includes("server auth"));
    assert.deepEqual(coordCert.issuerRef, {
      group: "cert-manager.io",
      kind: "ClusterIssuer",
      name: "lavie-ca",
    });
    assert.deepEqual((certs[1]!.spec as { dnsNames: string[] }).dnsNames, ["lavie-runner"]);
    for (const name of DEPLOYMENTS) {
      const role = name.endsWith("coordinator") ? "coordinator" : "runner";
      const p = pod(ms, "Deployment", name);
      const c = p.containers[0]!;
      assert.deepEqual(fileSource(p, c, value(c, "LAVIE_NATS_CREDS_FILE") ?? ""), [
        "nats-creds",
        `${role}.creds`,
      ]);
      assert.deepEqual(fileSource(p, c, value(c, "LAVIE_NATS_CA_FILE") ?? ""), ["nats-ca", "ca.crt"]);
      assert.deepEqual(fileSource(p, c, value(c, "LAVIE_NATS_TLS_CERT_FILE") ?? ""), [
        "nats-client",
        "tls.crt",
      ]);
      assert.deepEqual(fileSource(p, c, value(c, "LAVIE_NATS_TLS_KEY_FILE") ?? ""), [
        "nats-client",
        "tls.key",
      ]);
      assert.equal(value(c, "LAVIE_NATS_INBOX_PREFIX"), `_INBOX_${role}`);
      assert.equal(value(c, "LAVIE_NATS_USER"), undefined);
      const tls = p.volumes?.find((v) => v.name === "tls");
      assert.equal(tls?.secret?.secretName, `${RELEASE}-${role}-tls`);
    }
  });

  test("the processes' own parsers accept every rendered security environment", () => {
    const pki = makePki(join(work, "pki"));
    // Real files for every path the chart mounts (by file name).
    const contents: Record<string, string> = {
      "tls.crt": pki.cert,
      "tls.key": pki.key,
      "ca.crt": pki.ca,
      password: "pw-0123456789abcdef",
      token: "token-0123456789abcdef",
      "nats.creds":
        "-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n" +
        "-----BEGIN USER NKEY SEED-----\nSUAXXX\n------END USER NKEY SEED------\n",
      "api-keys": `acme ci sha256:${"a".repeat(64)}\n`,
      "jwt-secret": "x".repeat(48),
      "jwt-public-keys.pem": pki.publicKey,
    };
    for (const set of Object.keys(SETS)) {
      const ms = manifests(set);
      for (const name of DEPLOYMENTS) {
        const c = pod(ms, "Deployment", name).containers[0]!;
        const env: NodeJS.ProcessEnv = {};
        for (const e of c.env ?? []) {
          if (e.value === undefined || !e.value.startsWith("/etc/lavie/")) {
            if (e.value !== undefined) env[e.name] = e.value;
            continue;
          }
          const file = join(work, set.replace(/\W+/g, "-"), e.value);
          const text = contents[e.value.split("/").pop()!];
          assert.ok(text, `${set}: ${name}: no test content for ${e.value}`);
          mkdirSync(dirname(file), { recursive: true });
          writeFileSync(file, text);
          env[e.name] = file;
        }
        const where = `${set}: ${name}`;
        assert.doesNotThrow(() => natsAuthFromEnv(env), where);
        if (name.endsWith("coordinator")) {
          const s = coordinatorSecurityFromEnv(env, () => {});
          if (env.LAVIE_TLS_CERT_FILE) assert.match(s.summary, /runners: mTLS/, where);
          else assert.match(s.summary, /runner token/, where);
        } else {
          const s = runnerSecurityFromEnv(env, () => {});
          assert.ok(s.policy.allowedClients || s.policy.tokens, `${where}: runners accept anyone`);
        }
      }
    }
  });
});

/** A CA and a certificate it issued (openssl, P-256), plus a public key for JWT (ES256). */
function makePki(dir: string): { ca: string; cert: string; key: string; publicKey: string } {
  mkdirSync(dir, { recursive: true });
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  run("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=test-ca", "-days", "2");
  run("req", ...ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=lavie-coordinator");
  run(
    "x509",
    "-req",
    "-in",
    "tls.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "tls.crt",
    "-days",
    "2",
  );
  run("pkey", "-in", "ca.key", "-pubout", "-out", "jwt.pub");
  const read = (f: string) => readFileSync(join(dir, f), "utf8");
  return { ca: read("ca.crt"), cert: read("tls.crt"), key: read("tls.key"), publicKey: read("jwt.pub") };
}
