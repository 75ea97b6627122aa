import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import type { LavieError } from "../../core/errors.ts";
import { createCertAuthority } from "../../test/support/certs.ts";
import { coordinatorSecurityFromEnv, runnerSecurityFromEnv } from "./env.ts";
import { certificateNames, checkKeyPair, pemFile } from "./tls.ts";

const ca = createCertAuthority();
after(() => ca.remove());
const a = ca.issue("lavie-coordinator");
const b = ca.issue("lavie-runner", { dns: ["lavie-runner.lavie.svc"], ips: [] });
const notPem = join(ca.dir, "not.pem");
writeFileSync(notPem, "hello\n");

const errorOf = (fn: () => unknown): LavieError => {
  try {
    fn();
  } catch (e) {
    return e as LavieError;
  }
  return assert.fail("expected an error");
};

test("PEM files: missing or not PEM is an error naming the variable and the file", () => {
  let e = errorOf(() => pemFile("LAVIE_TLS_CERT_FILE", join(ca.dir, "missing.pem"), "certificate"));
  assert.equal(e.field, "LAVIE_TLS_CERT_FILE");
  assert.match(e.message, /^LAVIE_TLS_CERT_FILE: cannot read .*missing\.pem \(ENOENT\)/);
  e = errorOf(() => pemFile("LAVIE_TLS_KEY_FILE", notPem, "private key"));
  assert.match(e.message, /LAVIE_TLS_KEY_FILE: .*not\.pem is not a PEM private key/);
  e = errorOf(() => pemFile("LAVIE_TLS_CERT_FILE", a.keyFile, "certificate"));
  assert.match(e.message, /is not a PEM certificate/);
  assert.ok(!e.message.includes("PRIVATE KEY"), "a key's content must not reach the message");
});

test("a key that does not match its certificate, or an expired certificate, is refused", () => {
  const cert = pemFile("LAVIE_TLS_CERT_FILE", a.certFile, "certificate");
  const key = pemFile("LAVIE_TLS_KEY_FILE", b.keyFile, "private key");
  assert.match(
    errorOf(() => checkKeyPair(cert, key)).message,
    /LAVIE_TLS_KEY_FILE: .*does not match the certificate in LAVIE_TLS_CERT_FILE/,
  );
  const own = pemFile("LAVIE_TLS_KEY_FILE", a.keyFile, "private key");
  checkKeyPair(cert, own);
  assert.match(
    errorOf(() => checkKeyPair(cert, own, Date.now() + 3 * 86_400_000)).message,
    /the certificate expired on/,
  );
});

test("certificate names: subject CN and DNS SANs", () => {
  assert.deepEqual(
    certificateNames({
      subject: { CN: "lavie-coordinator" },
      subjectaltname: "DNS:a.b, IP Address:127.0.0.1, DNS:c",
    } as never),
    ["lavie-coordinator", "a.b", "c"],
  );
  assert.deepEqual(certificateNames(undefined), []);
  assert.deepEqual(certificateNames({} as never), []);
});

test("coordinator environment: TLS, runner mTLS with a server name, runner token", () => {
  const token = join(ca.dir, "token");
  writeFileSync(token, "runner-token-0123456789\n");
  const s = coordinatorSecurityFromEnv({
    LAVIE_TLS_CERT_FILE: a.certFile,
    LAVIE_TLS_KEY_FILE: a.keyFile,
    LAVIE_RUNNER_CA_FILE: ca.caFile,
    LAVIE_RUNNER_TLS_SERVER_NAME: "lavie-runner.lavie.svc",
    LAVIE_RUNNER_TOKEN_FILE: token,
  });
  assert.ok(s.serverCredentials?._isSecure());
  assert.equal(s.runners.channelOptions?.["grpc.ssl_target_name_override"], "lavie-runner.lavie.svc");
  assert.equal(s.runners.token?.(), "runner-token-0123456789");
  assert.match(
    s.summary,
    /client API: TLS, authentication off.*runners: mTLS \(server name lavie-runner\.lavie\.svc\) \+ runner token/,
  );
  assert.ok(!s.summary.includes("runner-token-0123456789"));
  const plain = coordinatorSecurityFromEnv({});
  assert.equal(plain.serverCredentials, undefined);
  assert.deepEqual(plain.runners, {});
});

test("coordinator environment errors name the variable", () => {
  const cases: [NodeJS.ProcessEnv, RegExp][] = [
    [{ LAVIE_TLS_CERT_FILE: a.certFile }, /^LAVIE_TLS_KEY_FILE: is required with LAVIE_TLS_CERT_FILE/],
    [{ LAVIE_TLS_KEY_FILE: a.keyFile }, /^LAVIE_TLS_CERT_FILE: is required/],
    [{ LAVIE_TLS_CLIENT_CA_FILE: ca.caFile }, /^LAVIE_TLS_CLIENT_CA_FILE: needs LAVIE_TLS_CERT_FILE/],
    [{ LAVIE_RUNNER_TLS_SERVER_NAME: "x" }, /^LAVIE_RUNNER_TLS_SERVER_NAME: needs LAVIE_RUNNER_CA_FILE/],
    [{ LAVIE_RUNNER_CA_FILE: notPem }, /^LAVIE_RUNNER_CA_FILE: .* is not a PEM certificate/],
    [{ LAVIE_RUNNER_TOKEN_FILE: notPem }, /^LAVIE_RUNNER_TOKEN_FILE \(.*\) line 1: a token must be/],
    [{ LAVIE_API_KEYS_FILE: notPem }, /^LAVIE_API_KEYS_FILE \(.*\) line 1: expected/],
  ];
  for (const [env, re] of cases) assert.match(errorOf(() => coordinatorSecurityFromEnv(env)).message, re);
});

test("runner environment: mTLS with allowed clients, token, and their errors", () => {
  const s = runnerSecurityFromEnv({
    LAVIE_TLS_CERT_FILE: b.certFile,
    LAVIE_TLS_KEY_FILE: b.keyFile,
    LAVIE_TLS_CLIENT_CA_FILE: ca.caFile,
  });
  assert.deepEqual(s.policy.allowedClients, ["lavie-coordinator"]);
  assert.match(
    s.summary,
    /TLS, client certificates required; callers: client certificates lavie-coordinator/,
  );
  const custom = runnerSecurityFromEnv({
    LAVIE_TLS_CERT_FILE: b.certFile,
    LAVIE_TLS_KEY_FILE: b.keyFile,
    LAVIE_TLS_CLIENT_CA_FILE: ca.caFile,
    LAVIE_RUNNER_ALLOWED_CLIENTS: "coord-a, coord-b.lavie.svc",
  });
  assert.deepEqual(custom.policy.allowedClients, ["coord-a", "coord-b.lavie.svc"]);
  assert.match(runnerSecurityFromEnv({}).summary, /plaintext; callers: anyone/);
  assert.match(
    errorOf(() => runnerSecurityFromEnv({ LAVIE_RUNNER_ALLOWED_CLIENTS: "x" })).message,
    /^LAVIE_RUNNER_ALLOWED_CLIENTS: needs LAVIE_TLS_CLIENT_CA_FILE/,
  );
  assert.match(
    errorOf(() =>
      runnerSecurityFromEnv({
        LAVIE_TLS_CERT_FILE: b.certFile,
        LAVIE_TLS_KEY_FILE: b.keyFile,
        LAVIE_TLS_CLIENT_CA_FILE: ca.caFile,
        LAVIE_RUNNER_ALLOWED_CLIENTS: "a b",
      }),
    ).message,
    /^LAVIE_RUNNER_ALLOWED_CLIENTS: "a b" is not a certificate name/,
  );
});
