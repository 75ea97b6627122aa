/**
 * Connections to NATS for the coordinator and the stage runners. Clients reconnect forever with a
 * short wait, so a nats-server restart is a pause, not a failure; JetStream state (file storage)
 * survives it.
 *
 * Credentials (NatsAuth): user + password, a token, or a .creds file (NATS JWT + nkey seed), plus
 * TLS to the server (CA, client certificate and key). natsAuthFromEnv() reads them from the
 * LAVIE_NATS_* variables below; every secret comes from a file (a mounted Kubernetes Secret), never
 * from the variable's value, and no message ever contains a secret (only variable names and paths).
 *
 *   LAVIE_NATS_USER           user name (with LAVIE_NATS_PASSWORD_FILE)
 *   LAVIE_NATS_PASSWORD_FILE  file holding the password (one trailing newline is ignored)
 *   LAVIE_NATS_TOKEN_FILE     file holding a token (not with user/password or creds)
 *   LAVIE_NATS_CREDS_FILE     .creds file (JWT + nkey seed; not with user/password or token)
 *   LAVIE_NATS_CA_FILE        PEM CA bundle to verify the server (turns TLS on)
 *   LAVIE_NATS_TLS_CERT_FILE  PEM client certificate (with LAVIE_NATS_TLS_KEY_FILE; turns TLS on)
 *   LAVIE_NATS_TLS_KEY_FILE   PEM client key
 *   LAVIE_NATS_INBOX_PREFIX   reply-subject prefix (default _INBOX); with the per-role permissions of
 *                             permissions.ts: _INBOX_coordinator / _INBOX_runner
 */
import { readFileSync } from "node:fs";
import {
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import {
  type ConnectionOptions,
  connect,
  credsAuthenticator,
  type NatsConnection,
} from "@nats-io/transport-node";
import { LavieError } from "../../core/errors.ts";

export type { NatsConnection };

export interface NatsConnectOptions {
  /** Client name shown by the server (e.g. "coordinator", "runner-<id>"). */
  name: string;
  /** Milliseconds between reconnect attempts (default 250). */
  reconnectTimeWait?: number;
  /** Milliseconds to wait for the first connection (default 5000). */
  timeout?: number;
  /** Timeout for JetStream API calls and publish acks (default 10000 ms). */
  jsTimeout?: number;
  /** Credentials and TLS (default: none, plain TCP). */
  auth?: NatsAuth;
}

/** How a client authenticates to NATS; secrets are the file contents, read by natsAuthFromEnv. */
export interface NatsAuth {
  user?: { name: string; password: string };
  token?: string;
  /** Contents of a .creds file (JWT + nkey seed). */
  creds?: Uint8Array;
  /** PEM contents; any of them turns TLS on. */
  tls?: { ca?: string; cert?: string; key?: string };
  /** Reply-subject prefix (default _INBOX). */
  inboxPrefix?: string;
  /** Where each setting came from (variable names), for error messages. */
  source?: string;
}

function readSecretFile(variable: string, path: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new LavieError("invalid_argument", `${variable}: cannot read the file ${path} (${code})`, {
      field: variable,
    });
  }
  if (data.length === 0) {
    throw new LavieError("invalid_argument", `${variable}: the file ${path} is empty`, { field: variable });
  }
  return data;
}

/** A one-line secret: the file's text less one trailing newline. */
function readSecretLine(variable: string, path: string): string {
  const text = readSecretFile(variable, path)
    .toString("utf8")
    .replace(/\r?\n$/, "");
  if (text.length === 0 || /[\r\n]/.test(text)) {
    throw new LavieError(
      "invalid_argument",
      `${variable}: the file ${path} must hold one non-empty line (the secret)`,
      { field: variable },
    );
  }
  return text;
}

/**
 * Reads NATS credentials and TLS settings from LAVIE_NATS_* (see the top of this file). Returns
 * undefined when none is set. Throws LavieError("invalid_argument") naming the variables of a
 * missing, unreadable or conflicting setting; messages never contain a secret.
 */
export function natsAuthFromEnv(env: NodeJS.ProcessEnv = process.env): NatsAuth | undefined {
  const get = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === undefined || v === "" ? undefined : v;
  };
  const bad = (variable: string, message: string) =>
    new LavieError("invalid_argument", `${variable}: ${message}`, { field: variable });
  const user = get("LAVIE_NATS_USER");
  const passwordFile = get("LAVIE_NATS_PASSWORD_FILE");
  const tokenFile = get("LAVIE_NATS_TOKEN_FILE");
  const credsFile = get("LAVIE_NATS_CREDS_FILE");
  const caFile = get("LAVIE_NATS_CA_FILE");
  const certFile = get("LAVIE_NATS_TLS_CERT_FILE");
  const keyFile = get("LAVIE_NATS_TLS_KEY_FILE");
  const inboxPrefix = get("LAVIE_NATS_INBOX_PREFIX");
  if (env.LAVIE_NATS_PASSWORD !== undefined || env.LAVIE_NATS_TOKEN !== undefined) {
    throw bad(
      env.LAVIE_NATS_PASSWORD !== undefined ? "LAVIE_NATS_PASSWORD" : "LAVIE_NATS_TOKEN",
      "secrets are not read from variables; put the secret in a file and set the matching *_FILE variable",
    );
  }
  if (user !== undefined && passwordFile === undefined)
    throw bad("LAVIE_NATS_USER", "needs LAVIE_NATS_PASSWORD_FILE (a file holding the password)");
  if (passwordFile !== undefined && user === undefined)
    throw bad("LAVIE_NATS_PASSWORD_FILE", "needs LAVIE_NATS_USER (the user name)");
  if (user !== undefined && !/^[^\s]{1,256}$/.test(user))
    throw bad("LAVIE_NATS_USER", `"${user}" must be 1-256 characters without whitespace`);
  const methods = [
    user !== undefined && "LAVIE_NATS_USER + LAVIE_NATS_PASSWORD_FILE",
    tokenFile !== undefined && "LAVIE_NATS_TOKEN_FILE",
    credsFile !== undefined && "LAVIE_NATS_CREDS_FILE",
  ].filter((m): m is string => typeof m === "string");
  if (methods.length > 1) {
    throw new LavieError(
      "invalid_argument",
      `NATS credentials: ${methods.join(" and ")} are set; set only one of user + password, token or creds`,
      { field: "LAVIE_NATS_CREDS_FILE" },
    );
  }
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw bad(
      certFile === undefined ? "LAVIE_NATS_TLS_KEY_FILE" : "LAVIE_NATS_TLS_CERT_FILE",
      "LAVIE_NATS_TLS_CERT_FILE and LAVIE_NATS_TLS_KEY_FILE go together (client certificate and its key)",
    );
  }
  if (inboxPrefix !== undefined && !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(inboxPrefix)) {
    throw bad("LAVIE_NATS_INBOX_PREFIX", `"${inboxPrefix}" must be dot-separated tokens of [A-Za-z0-9_-]`);
  }
  const auth: NatsAuth = {};
  if (user !== undefined && passwordFile !== undefined)
    auth.user = { name: user, password: readSecretLine("LAVIE_NATS_PASSWORD_FILE", passwordFile) };
  if (tokenFile !== undefined) auth.token = readSecretLine("LAVIE_NATS_TOKEN_FILE", tokenFile);
  if (credsFile !== undefined) {
    const creds = readSecretFile("LAVIE_NATS_CREDS_FILE", credsFile);
    const text = creds.toString("utf8");
    if (!text.includes("BEGIN NATS USER JWT") || !text.includes("BEGIN USER NKEY SEED")) {
      throw bad(
        "LAVIE_NATS_CREDS_FILE",
        `the file ${credsFile} is not a NATS .creds file (needs a USER JWT and a USER NKEY SEED block)`,
      );
    }
    auth.creds = new Uint8Array(creds);
  }
  if (caFile !== undefined || certFile !== undefined) {
    auth.tls = {};
    if (caFile !== undefined) auth.tls.ca = pem("LAVIE_NATS_CA_FILE", caFile, "CERTIFICATE");
    if (certFile !== undefined && keyFile !== undefined) {
      auth.tls.cert = pem("LAVIE_NATS_TLS_CERT_FILE", certFile, "CERTIFICATE");
      auth.tls.key = pem("LAVIE_NATS_TLS_KEY_FILE", keyFile, "PRIVATE KEY");
    }
  }
  if (inboxPrefix !== undefined) auth.inboxPrefix = inboxPrefix;
  if (Object.keys(auth).length === 0) return undefined;
  auth.source = [
    ...methods,
    ...(caFile !== undefined ? ["LAVIE_NATS_CA_FILE"] : []),
    ...(certFile !== undefined ? ["LAVIE_NATS_TLS_CERT_FILE + LAVIE_NATS_TLS_KEY_FILE"] : []),
  ].join(", ");
  return auth;
}

function pem(variable: string, path: string, kind: string): string {
  const text = readSecretFile(variable, path).toString("utf8");
  if (!text.includes("-----BEGIN ") || !text.includes(kind)) {
    throw new LavieError(
      "invalid_argument",
      `${variable}: the file ${path} is not a PEM ${kind.toLowerCase()}`,
      {
        field: variable,
      },
    );
  }
  return text;
}

/** The server URL(s) for messages, without any user:password@ part. */
function redact(url: string | string[]): string {
  return (Array.isArray(url) ? url : [url]).map((u) => u.replace(/\/\/[^@/]*@/, "//***@")).join(",");
}

function authOptions(auth: NatsAuth | undefined): Partial<ConnectionOptions> {
  if (!auth) return {};
  const o: Partial<ConnectionOptions> = {};
  if (auth.user) {
    o.user = auth.user.name;
    o.pass = auth.user.password;
  }
  if (auth.token !== undefined) o.token = auth.token;
  if (auth.creds) o.authenticator = credsAuthenticator(auth.creds);
  if (auth.tls) o.tls = { ...auth.tls };
  if (auth.inboxPrefix !== undefined) o.inboxPrefix = auth.inboxPrefix;
  return o;
}

export interface NatsClients {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly kvm: Kvm;
  readonly objm: Objm;
  /** Drains subscriptions and closes the connection. */
  close(): Promise<void>;
}

export async function connectNats(url: string | string[], opts: NatsConnectOptions): Promise<NatsClients> {
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: url,
      name: opts.name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: opts.reconnectTimeWait ?? 250,
      reconnectJitter: 50,
      timeout: opts.timeout ?? 5_000,
      waitOnFirstConnect: false,
      ...authOptions(opts.auth),
    });
  } catch (err) {
    const msg = (err as Error).message;
    // Refused credentials are not a transient outage: fail with the settings to check.
    if (/authorization|authentication|permissions/i.test(msg)) {
      throw new LavieError(
        "unauthenticated",
        `NATS at ${redact(url)} refused the credentials (${opts.auth ? opts.auth.source || "the given credentials" : "no credentials set"}): ${msg}`,
        { cause: err },
      );
    }
    throw new LavieError("unavailable", `cannot connect to NATS at ${redact(url)}: ${msg}`, {
      cause: err,
    });
  }
  const timeout = opts.jsTimeout ?? 10_000;
  const js = jetstream(nc, { timeout });
  const jsm = await jetstreamManager(nc, { timeout });
  return {
    nc,
    js,
    jsm,
    kvm: new Kvm(js),
    objm: new Objm(js),
    async close() {
      if (nc.isClosed()) return;
      await nc.drain().catch(() => nc.close());
    },
  };
}

/** True for JetStream "wrong last sequence" errors (optimistic-concurrency conflicts). */
export function isWrongLastSequence(err: unknown): boolean {
  if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence) return true;
  const msg = err instanceof Error ? err.message : String(err);
  return /wrong last sequence/i.test(msg);
}
