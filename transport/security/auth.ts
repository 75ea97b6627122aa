/**
 * The client API's Authenticator (coordinator/api/auth.ts) for API keys and JWT bearer tokens.
 *
 *   const auth = authenticatorFromEnv(process.env, log); // NO_AUTH when nothing is configured
 *   const principal = await auth.authenticate(call.metadata); // or LavieError "unauthenticated"
 *
 * Every call carries "authorization: Bearer <credential>". A credential in the API key file
 * (api-keys.ts) is that key's tenant; otherwise one shaped like a JWT (three base64url segments) is
 * verified as a JWT when JWT keys are configured; anything else is refused. Key, secret and public-key files are re-read when they change
 * (watched-file.ts), so rotating a mounted Secret needs no restart.
 *
 * Environment (coordinator; authentication is on when any of the first three is set):
 *   LAVIE_API_KEYS_FILE         API key file (format in api-keys.ts)
 *   LAVIE_JWT_SECRET_FILE       HS256 secret (>= 32 bytes; one trailing newline is ignored)
 *   LAVIE_JWT_PUBLIC_KEY_FILE   PEM public key(s) or certificate(s): RSA -> RS256, EC P-256 -> ES256
 *   LAVIE_JWT_ISSUER            required "iss" (default: not checked)
 *   LAVIE_JWT_AUDIENCE          required "aud" (default: not checked)
 *   LAVIE_JWT_TENANT_CLAIM      claim naming the tenant (default "tenant")
 *   LAVIE_JWT_ADMIN_CLAIM       boolean claim granting admin rights (default "lavie_admin")
 */
import type * as grpc from "@grpc/grpc-js";
import { type Authenticator, NO_AUTH } from "../../coordinator/api/auth.ts";
import { LavieError } from "../../core/errors.ts";
import type { Principal } from "../../core/tenancy.ts";
import { type ApiKeyEntry, findApiKey, parseApiKeys } from "./api-keys.ts";
import { type JwtPolicy, looksLikeJwt, parseJwtSecret, parsePublicKeys, verifyJwt } from "./jwt.ts";
import { configError, WatchedFile, type WatchedFileOptions } from "./watched-file.ts";

export interface AuthOptions {
  /** API key file (LAVIE_API_KEYS_FILE). */
  apiKeysFile?: string;
  /** HS256 secret file (LAVIE_JWT_SECRET_FILE). */
  jwtSecretFile?: string;
  /** PEM public key file (LAVIE_JWT_PUBLIC_KEY_FILE). */
  jwtPublicKeyFile?: string;
  /** Claim checks for JWTs. */
  jwt?: JwtPolicy;
  /** File re-check interval and reload log. */
  files?: WatchedFileOptions;
  /** Clock for JWT exp/nbf (tests). */
  now?: () => number;
}

const MISSING = 'missing credentials: send "authorization: Bearer <API key or JWT>" metadata';

/** The bearer credential of a call's metadata; null when absent; LavieError when malformed. */
export function bearerToken(metadata: grpc.Metadata): string | null {
  const values = metadata.get("authorization");
  if (values.length === 0) return null;
  if (values.length > 1)
    throw new LavieError("unauthenticated", 'more than one "authorization" metadata entry');
  const v = values[0];
  const text = typeof v === "string" ? v : (v?.toString("utf8") ?? "");
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(text);
  if (!m)
    throw new LavieError("unauthenticated", 'the "authorization" metadata must be "Bearer <credential>"');
  return m[1]!;
}

export class CredentialAuthenticator implements Authenticator {
  private constructor(
    private readonly keys: WatchedFile<ApiKeyEntry[]> | null,
    private readonly secret: WatchedFile<Buffer> | null,
    private readonly publicKeys: WatchedFile<ReturnType<typeof parsePublicKeys>> | null,
    private readonly opts: AuthOptions,
  ) {}

  /** Reads every configured file now; throws an invalid_argument LavieError naming the variable and file. */
  static open(opts: AuthOptions): CredentialAuthenticator {
    const f = opts.files ?? {};
    const keys = opts.apiKeysFile
      ? WatchedFile.open("LAVIE_API_KEYS_FILE", opts.apiKeysFile, parseApiKeys, f)
      : null;
    const secret = opts.jwtSecretFile
      ? WatchedFile.open("LAVIE_JWT_SECRET_FILE", opts.jwtSecretFile, parseJwtSecret, f)
      : null;
    const publicKeys = opts.jwtPublicKeyFile
      ? WatchedFile.open("LAVIE_JWT_PUBLIC_KEY_FILE", opts.jwtPublicKeyFile, parsePublicKeys, f)
      : null;
    if (!keys && !secret && !publicKeys) {
      throw configError(
        "LAVIE_API_KEYS_FILE",
        "authentication needs an API key file or a JWT secret / public key file",
      );
    }
    return new CredentialAuthenticator(keys, secret, publicKeys, opts);
  }

  /** What is configured, for a start-up log line (no secrets). */
  describe(): string {
    const parts: string[] = [];
    if (this.keys) parts.push(`API keys (${this.keys.current().length} in ${this.keys.path})`);
    const algs = [this.secret && "HS256", this.publicKeys && "RS256/ES256"].filter(Boolean);
    if (algs.length) parts.push(`JWT ${algs.join(", ")}`);
    return parts.join(" + ");
  }

  authenticate(metadata: grpc.Metadata): Promise<Principal> {
    try {
      return Promise.resolve(this.check(metadata));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  private check(metadata: grpc.Metadata): Principal {
    const token = bearerToken(metadata);
    if (token === null) throw new LavieError("unauthenticated", MISSING);
    // A key file entry wins (a key may happen to look like a JWT); then a JWT; else unknown.
    const entry = this.keys ? findApiKey(this.keys.current(), token) : null;
    if (entry) return { tenant: entry.tenant, admin: entry.admin, method: "api-key", subject: entry.name };
    if ((this.secret || this.publicKeys) && looksLikeJwt(token)) {
      const v = verifyJwt(
        token,
        {
          secrets: this.secret ? [this.secret.current()] : [],
          publicKeys: this.publicKeys ? this.publicKeys.current() : [],
        },
        this.opts.jwt ?? {},
        (this.opts.now ?? Date.now)(),
      );
      return { tenant: v.tenant, admin: v.admin, method: "jwt", subject: v.subject };
    }
    if (this.keys) throw new LavieError("unauthenticated", "invalid credentials: unknown API key");
    throw new LavieError("unauthenticated", "invalid credentials: not a JWT (API keys are not configured)");
  }
}

/** Authentication settings from the environment; null when none of the credential files is set. */
export function authOptionsFromEnv(env: NodeJS.ProcessEnv): AuthOptions | null {
  const get = (name: string) => {
    const v = env[name]?.trim();
    return v === undefined || v === "" ? undefined : v;
  };
  const apiKeysFile = get("LAVIE_API_KEYS_FILE");
  const jwtSecretFile = get("LAVIE_JWT_SECRET_FILE");
  const jwtPublicKeyFile = get("LAVIE_JWT_PUBLIC_KEY_FILE");
  const jwt: JwtPolicy = {};
  const issuer = get("LAVIE_JWT_ISSUER");
  const audience = get("LAVIE_JWT_AUDIENCE");
  const claimName = /^[A-Za-z0-9_.:/-]{1,128}$/;
  for (const [variable, key] of [
    ["LAVIE_JWT_TENANT_CLAIM", "tenantClaim"],
    ["LAVIE_JWT_ADMIN_CLAIM", "adminClaim"],
  ] as const) {
    const v = get(variable);
    if (v === undefined) continue;
    if (!claimName.test(v)) {
      throw configError(variable, `must be a claim name of 1-128 characters of [A-Za-z0-9_.:/-], got "${v}"`);
    }
    jwt[key] = v;
  }
  if (issuer !== undefined) jwt.issuer = issuer;
  if (audience !== undefined) jwt.audience = audience;
  if (!apiKeysFile && !jwtSecretFile && !jwtPublicKeyFile) {
    for (const v of [
      "LAVIE_JWT_ISSUER",
      "LAVIE_JWT_AUDIENCE",
      "LAVIE_JWT_TENANT_CLAIM",
      "LAVIE_JWT_ADMIN_CLAIM",
    ]) {
      if (get(v) !== undefined) {
        throw configError(v, "has no effect without LAVIE_JWT_SECRET_FILE or LAVIE_JWT_PUBLIC_KEY_FILE");
      }
    }
    return null;
  }
  return {
    ...(apiKeysFile && { apiKeysFile }),
    ...(jwtSecretFile && { jwtSecretFile }),
    ...(jwtPublicKeyFile && { jwtPublicKeyFile }),
    jwt,
  };
}

/** The coordinator's authenticator: CredentialAuthenticator when configured, else NO_AUTH. */
export function authenticatorFromEnv(
  env: NodeJS.ProcessEnv,
  log?: (line: string) => void,
): Authenticator & { describe(): string } {
  const opts = authOptionsFromEnv(env);
  if (!opts) return { ...NO_AUTH, describe: () => "off (every caller is the default tenant, admin)" };
  return CredentialAuthenticator.open({ ...opts, ...(log && { files: { log } }) });
}
