import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { LavieError } from "../../core/errors.ts";
import { hashApiKey, parseApiKeys } from "./api-keys.ts";
import { authenticatorFromEnv, authOptionsFromEnv, bearerToken, CredentialAuthenticator } from "./auth.ts";
import { parseJwtSecret, parsePublicKeys, verifyJwt } from "./jwt.ts";
import { parseRunnerTokens, refuseRunnerCall } from "./runner-auth.ts";

const dir = mkdtempSync(join(tmpdir(), "lavie-auth-spec-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(content: string | Buffer): string {
  const p = join(dir, `f${n++}`);
  writeFileSync(p, content);
  return p;
}

function md(authorization?: string | string[]): grpc.Metadata {
  const m = new grpc.Metadata();
  for (const v of authorization === undefined ? [] : [authorization].flat()) m.add("authorization", v);
  return m;
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
const NOW = 1_800_000_000_000;
const sec = NOW / 1000;

function jwt(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  key: Buffer | KeyObject | null,
  opts: { dsaEncoding?: "der" | "ieee-p1363" } = {},
): string {
  const signed = `${b64(header)}.${b64(payload)}`;
  let sig = Buffer.alloc(0);
  if (Buffer.isBuffer(key)) sig = createHmac("sha256", key).update(signed).digest();
  else if (key)
    sig =
      key.asymmetricKeyType === "ec"
        ? sign("sha256", Buffer.from(signed), { key, dsaEncoding: opts.dsaEncoding ?? "ieee-p1363" })
        : sign("sha256", Buffer.from(signed), key);
  return `${signed}.${sig.toString("base64url")}`;
}

async function refused(p: Promise<unknown>, code: string, secret?: string): Promise<LavieError> {
  const err = await p.then(
    () => assert.fail("expected a refusal"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof LavieError, String(err));
  assert.equal(err.code, code, err.message);
  if (secret) assert.ok(!err.message.includes(secret), `the message contains the secret: ${err.message}`);
  return err;
}

const SECRET = Buffer.from("0123456789abcdef0123456789abcdef-hs256");
const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
const rsaPem = rsa.publicKey.export({ type: "spki", format: "pem" }) as string;
const ecPem = ec.publicKey.export({ type: "spki", format: "pem" }) as string;
const claims = { tenant: "acme", sub: "alice", exp: sec + 600 };

describe("API key file", () => {
  const parse = (text: string) => parseApiKeys(Buffer.from(text), "LAVIE_API_KEYS_FILE (keys.txt)");
  const h = hashApiKey("k1-0123456789");

  test("parses tenants, names, hashes and the admin flag; ignores comments and blank lines", () => {
    const keys = parse(`# comment\n\nacme ci ${h}\nops oncall ${hashApiKey("k2-0123456789")} admin\n`);
    assert.deepEqual(
      keys.map((k) => [k.tenant, k.name, k.admin]),
      [
        ["acme", "ci", false],
        ["ops", "oncall", true],
      ],
    );
  });

  const bad: [string, string, RegExp][] = [
    [
      "too few fields",
      `acme ${h}`,
      /line 1: expected "<tenant> <name> sha256:<64 hex digits> \[admin\]", got 2 fields/,
    ],
    ["a bad tenant", `\nAcme! ci ${h}`, /line 2: the tenant \(field 1\) must be 1-63 characters/],
    ["a bad name", `acme c/i ${h}`, /line 1: the name \(field 2\)/],
    [
      "a plaintext key instead of a hash",
      "acme ci sk-live-PLAINTEXT-KEY",
      /line 1: field 3 must be "sha256:"/,
    ],
    ["an unknown flag", `acme ci ${h} root`, /line 1: unknown flag \(field 4\); allowed: admin/],
    ["a duplicate hash", `acme ci ${h}\nbeta ci ${h}`, /line 2: the same key hash as line 1/],
    ["no keys", "# nothing\n", /contains no keys/],
  ];
  for (const [what, text, re] of bad) {
    test(`refuses ${what}, naming the file and line and never echoing the fields`, () => {
      assert.throws(
        () => parse(text),
        (e: Error) => {
          assert.match(e.message, /^LAVIE_API_KEYS_FILE \(keys\.txt\)/);
          assert.match(e.message, re);
          assert.ok(
            !e.message.includes("PLAINTEXT") && !e.message.includes("Acme!") && !e.message.includes("root"),
          );
          return true;
        },
      );
    });
  }

  test("a bad file at start-up is an invalid_argument error naming the variable, file and line", () => {
    const p = file("acme ci not-a-hash\n");
    assert.throws(
      () => CredentialAuthenticator.open({ apiKeysFile: p }),
      (e: LavieError) =>
        e.code === "invalid_argument" &&
        e.field === "LAVIE_API_KEYS_FILE" &&
        e.message.includes(`(${p}) line 1`),
    );
    assert.throws(
      () => CredentialAuthenticator.open({ apiKeysFile: join(dir, "missing") }),
      /LAVIE_API_KEYS_FILE: cannot read .*missing \(ENOENT\)/,
    );
  });
});

describe("API key authentication", () => {
  const key = "sk-acme-4d2b8f0e9c1a";
  const adminKey = "sk-ops-77aa11bb22cc";
  const path = file(`acme ci ${hashApiKey(key)}\nops root ${hashApiKey(adminKey)} admin\n`);
  const logs: string[] = [];
  const auth = CredentialAuthenticator.open({
    apiKeysFile: path,
    files: { checkIntervalMs: 0, log: (l) => logs.push(l) },
  });

  test("a known key is its tenant's principal", async () => {
    assert.deepEqual(await auth.authenticate(md(`Bearer ${key}`)), {
      tenant: "acme",
      admin: false,
      method: "api-key",
      subject: "ci",
    });
    assert.equal((await auth.authenticate(md(`bearer  ${adminKey}`))).admin, true);
  });

  test("missing, malformed, duplicated or unknown credentials are unauthenticated, never echoed", async () => {
    await refused(auth.authenticate(md()), "unauthenticated");
    await refused(auth.authenticate(md(`Basic ${key}`)), "unauthenticated", key);
    await refused(auth.authenticate(md([`Bearer ${key}`, `Bearer ${key}`])), "unauthenticated", key);
    const e = await refused(
      auth.authenticate(md("Bearer sk-wrong-key-123456")),
      "unauthenticated",
      "sk-wrong",
    );
    assert.match(e.message, /unknown API key/);
    assert.equal(bearerToken(md()), null);
  });

  test("the file is re-read when it changes; a broken rewrite keeps the previous keys and is logged", async () => {
    const rotated = "sk-acme-rotated-000111";
    writeFileSync(path, `acme ci2 ${hashApiKey(rotated)}\n`);
    assert.equal((await auth.authenticate(md(`Bearer ${rotated}`))).subject, "ci2");
    await refused(auth.authenticate(md(`Bearer ${key}`)), "unauthenticated");
    assert.ok(logs.some((l) => l.includes("reloaded")));
    writeFileSync(path, `acme ci3 ${rotated}\n`); // a plaintext key by mistake
    assert.equal((await auth.authenticate(md(`Bearer ${rotated}`))).subject, "ci2");
    const last = logs.at(-1)!;
    assert.match(last, /line 1: field 3 must be/);
    assert.match(last, /keeping the previous content/);
    assert.ok(!logs.join("\n").includes(rotated));
  });
});

describe("JWT", () => {
  const keys = { secrets: [SECRET], publicKeys: [] };
  const v = (token: string, policy = {}, k: Parameters<typeof verifyJwt>[1] = keys) =>
    verifyJwt(token, k, policy, NOW);
  const hs = (payload: Record<string, unknown>, header: Record<string, unknown> = {}) =>
    jwt({ alg: "HS256", typ: "JWT", ...header }, payload, SECRET);
  const fails = (token: string, re: RegExp, policy = {}, k: Parameters<typeof verifyJwt>[1] = keys) =>
    assert.throws(
      () => v(token, policy, k),
      (e: LavieError) => {
        assert.equal(e.code, "unauthenticated");
        assert.match(e.message, re);
        const payload = token.split(".")[1] ?? "";
        if (payload.length > 8) assert.ok(!e.message.includes(payload), "the message contains the token");
        return true;
      },
    );

  test("HS256: tenant, subject and the admin claim (only the JSON value true)", () => {
    assert.deepEqual(v(hs(claims)), { tenant: "acme", admin: false, subject: "alice" });
    assert.equal(v(hs({ ...claims, lavie_admin: true })).admin, true);
    assert.equal(v(hs({ ...claims, lavie_admin: "true" })).admin, false);
    assert.deepEqual(
      v(hs({ org: "beta", root: true, exp: sec + 5 }), { tenantClaim: "org", adminClaim: "root" }),
      {
        tenant: "beta",
        admin: true,
        subject: "jwt",
      },
    );
  });

  test("exp is required and checked with the clock skew; nbf too", () => {
    fails(hs({ tenant: "acme" }), /no "exp" claim/);
    fails(hs({ ...claims, exp: sec - 31 }), /expired/);
    assert.equal(v(hs({ ...claims, exp: sec - 29 })).tenant, "acme");
    fails(hs({ ...claims, exp: sec - 5 }), /expired/, { clockSkewSeconds: 0 });
    fails(hs({ ...claims, nbf: sec + 60 }), /not valid yet/);
    assert.equal(v(hs({ ...claims, nbf: sec + 10 })).tenant, "acme");
    fails(hs({ ...claims, exp: "soon" }), /"exp" is not a NumericDate/);
  });

  test("a wrong signature, alg none and unknown algorithms are refused", () => {
    const other = jwt({ alg: "HS256" }, claims, Buffer.from("another-secret-another-secret-1234"));
    fails(other, /bad signature/);
    const good = hs(claims);
    fails(`${good.slice(0, good.lastIndexOf("."))}.`, /bad signature/);
    fails(jwt({ alg: "none" }, claims, null), /algorithm not allowed; allowed: HS256/);
    fails(jwt({ alg: "None" }, claims, null), /algorithm not allowed/);
    fails(jwt({ alg: "HS512" }, claims, SECRET), /algorithm not allowed/);
    fails(jwt({}, claims, SECRET), /algorithm not allowed/);
    fails(hs(claims, { crit: ["exp"] }), /"crit"/);
    fails("a.b", /not a compact JWS/);
    fails(`${b64({ alg: "HS256" })}.bm90IGpzb24.${"A".repeat(43)}`, /bad signature/);
  });

  test("the tenant claim must be a valid tenant name; never echoed", () => {
    fails(hs({ exp: sec + 60 }), /claim "tenant" must be a tenant name/);
    fails(hs({ ...claims, tenant: "Evil Corp!" }), /claim "tenant"/);
    fails(hs({ ...claims, tenant: 7 }), /claim "tenant"/);
  });

  test("iss and aud are checked when configured", () => {
    const t = hs({ ...claims, iss: "https://idp", aud: ["lavie", "other"] });
    assert.equal(v(t, { issuer: "https://idp", audience: "lavie" }).tenant, "acme");
    fails(t, /wrong issuer/, { issuer: "https://evil" });
    fails(t, /wrong audience/, { audience: "nope" });
    fails(hs(claims), /wrong audience/, { audience: "lavie" });
  });

  test("RS256 and ES256 with public keys; ES256 needs the raw r||s signature", () => {
    const pk = {
      secrets: [],
      publicKeys: parsePublicKeys(Buffer.from(rsaPem + ecPem), "LAVIE_JWT_PUBLIC_KEY_FILE (k)"),
    };
    assert.equal(v(jwt({ alg: "RS256" }, claims, rsa.privateKey), {}, pk).tenant, "acme");
    assert.equal(v(jwt({ alg: "ES256" }, claims, ec.privateKey), {}, pk).tenant, "acme");
    fails(jwt({ alg: "ES256" }, claims, ec.privateKey, { dsaEncoding: "der" }), /bad signature/, {}, pk);
    // A token claiming one algorithm but signed by the other key type.
    fails(jwt({ alg: "ES256" }, claims, rsa.privateKey), /bad signature/, {}, pk);
    const otherRsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    fails(jwt({ alg: "RS256" }, claims, otherRsa.privateKey), /bad signature/, {}, pk);
    fails(hs(claims), /algorithm not allowed; allowed: RS256, ES256/, {}, pk);
  });

  test("alg confusion: an HS256 token keyed with the public key is refused", () => {
    const pk = { secrets: [], publicKeys: parsePublicKeys(Buffer.from(rsaPem), "k") };
    fails(
      jwt({ alg: "HS256" }, claims, Buffer.from(rsaPem)),
      /algorithm not allowed; allowed: RS256/,
      {},
      pk,
    );
  });

  test("secret and public key files are validated", () => {
    assert.throws(
      () => parseJwtSecret(Buffer.from("short\n"), "LAVIE_JWT_SECRET_FILE (s)"),
      /at least 32 bytes, got 5/,
    );
    assert.equal(parseJwtSecret(Buffer.concat([SECRET, Buffer.from("\r\n")]), "s").length, SECRET.length);
    const label = "LAVIE_JWT_PUBLIC_KEY_FILE (k)";
    assert.throws(() => parsePublicKeys(Buffer.from("hello"), label), /no PEM block/);
    const priv = rsa.privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    assert.throws(() => parsePublicKeys(Buffer.from(priv), label), /is a private key/);
    const ed = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }) as string;
    assert.throws(
      () => parsePublicKeys(Buffer.from(ed), label),
      /ed25519 key; allowed: RSA \(RS256\) or EC P-256/,
    );
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({
      type: "spki",
      format: "pem",
    });
    assert.throws(() => parsePublicKeys(Buffer.from(p384 as string), label), /secp384r1/);
    const small = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({
      type: "spki",
      format: "pem",
    });
    assert.throws(() => parsePublicKeys(Buffer.from(small as string), label), /at least 2048 bits/);
  });

  test("the authenticator: API keys and JWTs side by side", async () => {
    const key = "sk-beta-aaaabbbbcccc";
    const auth = CredentialAuthenticator.open({
      apiKeysFile: file(`beta ci ${hashApiKey(key)}\n`),
      jwtSecretFile: file(SECRET),
      jwt: { audience: "lavie" },
      now: () => NOW,
    });
    assert.deepEqual(await auth.authenticate(md(`Bearer ${hs({ ...claims, aud: "lavie" })}`)), {
      tenant: "acme",
      admin: false,
      method: "jwt",
      subject: "alice",
    });
    assert.equal((await auth.authenticate(md(`Bearer ${key}`))).tenant, "beta");
    const expired = hs({ ...claims, aud: "lavie", exp: sec - 3600 });
    const e = await refused(auth.authenticate(md(`Bearer ${expired}`)), "unauthenticated", expired);
    assert.match(e.message, /expired/);
    await refused(auth.authenticate(md("Bearer sk-nope-000000000")), "unauthenticated");
  });
});

describe("configuration from the environment", () => {
  test("nothing set: authentication off (NO_AUTH, everyone the default admin tenant)", async () => {
    assert.equal(authOptionsFromEnv({}), null);
    const auth = authenticatorFromEnv({});
    assert.deepEqual(await auth.authenticate(md()), {
      tenant: "default",
      admin: true,
      method: "none",
      subject: "anonymous",
    });
  });

  test("errors name the variable", () => {
    assert.throws(
      () => authOptionsFromEnv({ LAVIE_JWT_ISSUER: "x" }),
      /^LavieError: LAVIE_JWT_ISSUER: has no effect/,
    );
    assert.throws(
      () => authOptionsFromEnv({ LAVIE_JWT_SECRET_FILE: "/x", LAVIE_JWT_TENANT_CLAIM: "a b" }),
      /LAVIE_JWT_TENANT_CLAIM: must be a claim name/,
    );
    assert.throws(
      () => authenticatorFromEnv({ LAVIE_JWT_SECRET_FILE: join(dir, "nope") }),
      (e: LavieError) =>
        e.field === "LAVIE_JWT_SECRET_FILE" && /cannot read .*nope \(ENOENT\)/.test(e.message),
    );
    assert.throws(
      () => authenticatorFromEnv({ LAVIE_JWT_PUBLIC_KEY_FILE: file("garbage") }),
      /: LAVIE_JWT_PUBLIC_KEY_FILE \(.*\): no PEM block/,
    );
  });
});

describe("runner callers", () => {
  const call = (authorization?: string, names?: { cn?: string; san?: string }) => ({
    metadata: md(authorization),
    getAuthContext: () => ({
      ...(names && {
        transportSecurityType: "ssl",
        sslPeerCertificate: { subject: { CN: names.cn }, subjectaltname: names.san } as never,
      }),
    }),
  });
  const tokens = parseRunnerTokens(Buffer.from("new-token-0123456789\n\nold-token-0123456789\n"), "t");

  test("token file: one token per line, each at least 16 characters", () => {
    assert.deepEqual(tokens, ["new-token-0123456789", "old-token-0123456789"]);
    assert.throws(
      () => parseRunnerTokens(Buffer.from("short\n"), "LAVIE_RUNNER_TOKEN_FILE (t)"),
      /\(t\) line 1: a token must be 16-4096/,
    );
    assert.throws(() => parseRunnerTokens(Buffer.from("\n"), "L (t)"), /contains no token/);
  });

  test("token mode: any listed token; missing or wrong is unauthenticated", () => {
    const policy = { tokens: () => tokens };
    assert.equal(refuseRunnerCall(policy, call("Bearer old-token-0123456789")), null);
    assert.equal(refuseRunnerCall(policy, call("Bearer new-token-0123456789")), null);
    assert.equal(refuseRunnerCall(policy, call())?.code, "unauthenticated");
    const wrong = refuseRunnerCall(policy, call("Bearer wrong-token-0123456789"));
    assert.equal(wrong?.code, "unauthenticated");
    assert.ok(!wrong?.message.includes("wrong-token"));
  });

  test("mTLS: the certificate's CN or a DNS SAN must be allowed", () => {
    const policy = { allowedClients: ["lavie-coordinator"] };
    assert.equal(refuseRunnerCall(policy, call(undefined, { cn: "lavie-coordinator" })), null);
    assert.equal(
      refuseRunnerCall(
        policy,
        call(undefined, { cn: "x", san: "DNS:localhost, DNS:lavie-coordinator, IP Address:127.0.0.1" }),
      ),
      null,
    );
    assert.equal(
      refuseRunnerCall(policy, call(undefined, { cn: "intruder", san: "DNS:localhost" }))?.code,
      "permission_denied",
    );
    assert.equal(refuseRunnerCall(policy, call())?.code, "unauthenticated");
  });
});
