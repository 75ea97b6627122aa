import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { Command } from "commander";
import type { LavieError } from "../../core/errors.ts";
import { createCertAuthority } from "../../test/support/certs.ts";
import { addConnectionOptions, clientOptionsOf } from "./connection.ts";

const dir = mkdtempSync(join(tmpdir(), "lavie-cli-conn-"));
const ca = createCertAuthority();
after(() => {
  rmSync(dir, { recursive: true, force: true });
  ca.remove();
});
const KEY = "lk-cli-0123456789abcdef";

const errorOf = (fn: () => unknown): LavieError => {
  try {
    fn();
  } catch (e) {
    return e as LavieError;
  }
  return assert.fail("expected an error");
};

test("the options parse into SDK options: key from a file or LAVIE_API_KEY, TLS files read", () => {
  const keyFile = join(dir, "key");
  writeFileSync(keyFile, `${KEY}\n`);
  const cert = ca.issue("alice");
  const cmd = addConnectionOptions(new Command("x").exitOverride());
  cmd.parse(
    [
      "--api-key-file",
      keyFile,
      "--tls-ca",
      ca.caFile,
      "--tls-cert",
      cert.certFile,
      "--tls-key",
      cert.keyFile,
    ],
    {
      from: "user",
    },
  );
  const o = clientOptionsOf("127.0.0.1:1", cmd.opts(), {});
  assert.equal(o.apiKey, KEY);
  assert.ok(typeof o.tls === "object" && o.tls.ca && o.tls.cert && o.tls.key);
  assert.equal(clientOptionsOf("127.0.0.1:1", {}, { LAVIE_API_KEY: ` ${KEY} ` }).apiKey, KEY);
  assert.deepEqual(clientOptionsOf("127.0.0.1:1", {}, {}), {});
  assert.deepEqual(clientOptionsOf("h:1", { tls: true }, {}).tls, {});
});

test("bad files are usage errors naming the option, never showing the key", () => {
  let e = errorOf(() => clientOptionsOf("h:1", { apiKeyFile: join(dir, "missing") }, {}));
  assert.equal(e.code, "invalid_argument");
  assert.match(e.message, /^--api-key-file: cannot read .*missing \(ENOENT\)/);
  const spaced = join(dir, "spaced");
  writeFileSync(spaced, "two words\n");
  assert.match(
    errorOf(() => clientOptionsOf("h:1", { apiKeyFile: spaced }, {})).message,
    /must hold one API key or JWT/,
  );
  e = errorOf(() => clientOptionsOf("h:1", { tlsCa: spaced }, {}));
  assert.match(e.message, /^--tls-ca: .*spaced is not a PEM certificate/);
  assert.ok(!e.message.includes("two words"));
  assert.match(
    errorOf(() => clientOptionsOf("h:1", { tlsCert: ca.caFile }, {})).message,
    /^--tls-key: --tls-cert and --tls-key go together/,
  );
});

test("a credential without TLS to a remote host is warned about (not for loopback)", () => {
  const warnings: string[] = [];
  const warn = (l: string) => warnings.push(l);
  clientOptionsOf("127.0.0.1:50051", {}, { LAVIE_API_KEY: KEY }, warn);
  clientOptionsOf("lavie.example.com:443", { tls: true }, { LAVIE_API_KEY: KEY }, warn);
  assert.deepEqual(warnings, []);
  clientOptionsOf("lavie.example.com:443", {}, { LAVIE_API_KEY: KEY }, warn);
  assert.deepEqual(warnings, [
    "warning: sending credentials to lavie.example.com:443 without TLS (use --tls or --tls-ca)",
  ]);
});
