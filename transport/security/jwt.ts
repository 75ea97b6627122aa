/**
 * JWT bearer tokens (RFC 7519, compact JWS) verified with node:crypto only. Algorithms: HS256 with a
 * shared secret (LAVIE_JWT_SECRET_FILE), RS256 / ES256 with PEM public keys
 * (LAVIE_JWT_PUBLIC_KEY_FILE). The algorithm a token may use follows from the configured key, never
 * from the token alone: "none" is always refused, HS256 only with a secret (so a public key can
 * never be used as an HMAC secret), RS256 only with RSA keys, ES256 only with P-256 keys.
 *
 * Claims: "exp" is required, "nbf" honoured (both with a clock skew), "iss"/"aud" checked when
 * configured; the tenant comes from a string claim (default "tenant") and admin rights from a
 * boolean claim (default "lavie_admin": only the JSON value true). Every refusal is a LavieError
 * "unauthenticated" whose message names the reason, never the token or a claim's value.
 */
import { createHmac, createPublicKey, type KeyObject, timingSafeEqual, verify } from "node:crypto";
import { LavieError } from "../../core/errors.ts";
import { TENANT_PATTERN } from "../../core/tenancy.ts";

export type JwtAlgorithm = "HS256" | "RS256" | "ES256";

export interface JwtKeys {
  /** HS256 secrets (the first signs nothing here; any of them verifies). */
  readonly secrets: readonly Buffer[];
  /** RSA (RS256) and P-256 (ES256) public keys. */
  readonly publicKeys: readonly KeyObject[];
}

export interface JwtPolicy {
  /** Required "iss" value, when set. */
  issuer?: string;
  /** Required "aud" value (or one of the "aud" array), when set. */
  audience?: string;
  /** Claim holding the tenant name (default "tenant"). */
  tenantClaim?: string;
  /** Boolean claim granting admin rights (default "lavie_admin"). */
  adminClaim?: string;
  /** Allowed clock difference for exp/nbf in seconds (default 30). */
  clockSkewSeconds?: number;
}

export interface VerifiedJwt {
  readonly tenant: string;
  readonly admin: boolean;
  /** "sub" (at most 128 characters), or "jwt" without one. */
  readonly subject: string;
}

/** Longest token accepted (bytes); longer ones are refused before any decoding. */
export const MAX_TOKEN_LENGTH = 8192;
const B64URL = /^[A-Za-z0-9_-]*$/;

const refuse = (reason: string) => new LavieError("unauthenticated", `invalid token: ${reason}`);

/** A compact JWS: three base64url segments. */
export function looksLikeJwt(token: string): boolean {
  const parts = token.split(".");
  return parts.length === 3 && parts.every((p) => B64URL.test(p)) && parts[0]!.length > 0;
}

function decodeJson(segment: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
  } catch {
    throw refuse(`the ${what} is not base64url-encoded JSON`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw refuse(`the ${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

function algorithmOf(key: KeyObject): JwtAlgorithm | null {
  if (key.asymmetricKeyType === "rsa") return "RS256";
  if (key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1") return "ES256";
  return null;
}

function signatureOk(alg: JwtAlgorithm, keys: JwtKeys, signed: Buffer, sig: Buffer): boolean {
  if (alg === "HS256") {
    let ok = false;
    for (const secret of keys.secrets) {
      const mac = createHmac("sha256", secret).update(signed).digest();
      if (sig.length === mac.length && timingSafeEqual(sig, mac)) ok = true;
    }
    return ok;
  }
  // ES256 signatures are the raw r||s pair (64 bytes), not DER (RFC 7518 section 3.4).
  if (alg === "ES256" && sig.length !== 64) return false;
  for (const key of keys.publicKeys) {
    if (algorithmOf(key) !== alg) continue;
    try {
      const ok =
        alg === "ES256"
          ? verify("sha256", signed, { key, dsaEncoding: "ieee-p1363" }, sig)
          : verify("sha256", signed, key, sig);
      if (ok) return true;
    } catch {
      // a malformed signature for this key type: try the next key
    }
  }
  return false;
}

/** Algorithms the configured keys allow. */
export function allowedAlgorithms(keys: JwtKeys): Set<JwtAlgorithm> {
  const out = new Set<JwtAlgorithm>();
  if (keys.secrets.length > 0) out.add("HS256");
  for (const k of keys.publicKeys) {
    const a = algorithmOf(k);
    if (a) out.add(a);
  }
  return out;
}

function numericDate(claims: Record<string, unknown>, name: string): number | undefined {
  const v = claims[name];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) throw refuse(`"${name}" is not a NumericDate`);
  return v;
}

/** Verifies a compact JWS token and its claims; throws LavieError "unauthenticated". */
export function verifyJwt(
  token: string,
  keys: JwtKeys,
  policy: JwtPolicy = {},
  nowMs = Date.now(),
): VerifiedJwt {
  if (token.length > MAX_TOKEN_LENGTH) throw refuse(`longer than ${MAX_TOKEN_LENGTH} bytes`);
  if (!looksLikeJwt(token)) throw refuse("not a compact JWS (three base64url segments)");
  const [h, p, s] = token.split(".") as [string, string, string];
  const header = decodeJson(h, "header");
  const alg = header.alg;
  const allowed = allowedAlgorithms(keys);
  if (typeof alg !== "string" || !(allowed as Set<string>).has(alg)) {
    throw refuse(`algorithm not allowed; allowed: ${[...allowed].join(", ") || "none configured"}`);
  }
  if (header.crit !== undefined) throw refuse('"crit" header extensions are not supported');
  const sig = Buffer.from(s, "base64url");
  if (!signatureOk(alg as JwtAlgorithm, keys, Buffer.from(`${h}.${p}`, "ascii"), sig)) {
    throw refuse("bad signature");
  }
  const claims = decodeJson(p, "payload");
  const now = nowMs / 1000;
  const skew = policy.clockSkewSeconds ?? 30;
  const exp = numericDate(claims, "exp");
  if (exp === undefined) throw refuse('no "exp" claim (tokens must expire)');
  if (now > exp + skew) throw refuse("expired");
  const nbf = numericDate(claims, "nbf");
  if (nbf !== undefined && now < nbf - skew) throw refuse("not valid yet (nbf)");
  if (policy.issuer !== undefined && claims.iss !== policy.issuer) throw refuse("wrong issuer (iss)");
  if (policy.audience !== undefined) {
    const aud = claims.aud;
    const ok = Array.isArray(aud) ? aud.includes(policy.audience) : aud === policy.audience;
    if (!ok) throw refuse("wrong audience (aud)");
  }
  const tenantClaim = policy.tenantClaim ?? "tenant";
  const tenant = claims[tenantClaim];
  if (typeof tenant !== "string" || !TENANT_PATTERN.test(tenant)) {
    throw refuse(
      `claim "${tenantClaim}" must be a tenant name (1-63 characters of [a-z0-9._-], starting and ending with a letter or digit)`,
    );
  }
  const sub = claims.sub;
  return {
    tenant,
    admin: claims[policy.adminClaim ?? "lavie_admin"] === true,
    subject: typeof sub === "string" && sub.length > 0 ? sub.slice(0, 128) : "jwt",
  };
}

/**
 * An HS256 secret file: its bytes, less one trailing newline. At least 32 bytes (RFC 7518: a key
 * as long as the hash).
 */
export function parseJwtSecret(content: Buffer, label: string): Buffer {
  let end = content.length;
  if (end > 0 && content[end - 1] === 0x0a) end--;
  if (end > 0 && content[end - 1] === 0x0d) end--;
  const secret = Buffer.from(content.subarray(0, end));
  if (secret.length < 32)
    throw new Error(`${label}: an HS256 secret must be at least 32 bytes, got ${secret.length}`);
  return secret;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/**
 * PEM public keys (or certificates) for RS256/ES256, one or more in a file (more than one: key
 * rotation, a token verifies with any). RSA keys need at least 2048 bits; EC keys the P-256 curve.
 */
export function parsePublicKeys(content: Buffer, label: string): KeyObject[] {
  const text = content.toString("utf8");
  const blocks = [...text.matchAll(PEM_BLOCK)];
  if (blocks.length === 0) {
    throw new Error(`${label}: no PEM block ("-----BEGIN PUBLIC KEY-----" or "-----BEGIN CERTIFICATE-----")`);
  }
  const keys: KeyObject[] = [];
  for (const [i, b] of blocks.entries()) {
    const kind = b[1]!;
    if (kind.includes("PRIVATE")) {
      throw new Error(`${label}: PEM block ${i + 1} is a private key; give the public key only`);
    }
    let key: KeyObject;
    try {
      key = createPublicKey(b[0]);
    } catch (err) {
      throw new Error(
        `${label}: PEM block ${i + 1} (${kind}) is not a public key or certificate: ${(err as Error).message}`,
      );
    }
    const alg = algorithmOf(key);
    if (!alg) {
      throw new Error(
        `${label}: PEM block ${i + 1} is a ${key.asymmetricKeyType} key${key.asymmetricKeyDetails?.namedCurve ? ` (${key.asymmetricKeyDetails.namedCurve})` : ""}; allowed: RSA (RS256) or EC P-256 (ES256)`,
      );
    }
    if (alg === "RS256" && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
      throw new Error(`${label}: PEM block ${i + 1}: RSA keys need at least 2048 bits`);
    }
    keys.push(key);
  }
  return keys;
}
