/**
 * Security settings of the coordinator and the stage runners from their environment, validated once
 * at start-up (files read and checked now; errors are invalid_argument LavieErrors naming the
 * variable and the file). The variables are listed in coordinator/main.ts and stage-runners/main.ts.
 */
import type * as grpc from "@grpc/grpc-js";
import type { Authenticator } from "../../coordinator/api/auth.ts";
import type { GrpcRunnerClientOptions } from "../grpc/runner-client.ts";
import { authenticatorFromEnv } from "./auth.ts";
import { DEFAULT_ALLOWED_CLIENTS, parseRunnerTokens, type RunnerCallPolicy } from "./runner-auth.ts";
import { channelTls, type PemFile, pemFile, serverTls } from "./tls.ts";
import { configError, WatchedFile } from "./watched-file.ts";

type Env = NodeJS.ProcessEnv;

function getter(env: Env) {
  return (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === undefined || v === "" ? undefined : v;
  };
}

/** LAVIE_TLS_CERT_FILE + LAVIE_TLS_KEY_FILE (both or neither). */
function identity(env: Env): { cert: PemFile; key: PemFile } | null {
  const get = getter(env);
  const certPath = get("LAVIE_TLS_CERT_FILE");
  const keyPath = get("LAVIE_TLS_KEY_FILE");
  if (!certPath && !keyPath) return null;
  if (!certPath) throw configError("LAVIE_TLS_CERT_FILE", "is required with LAVIE_TLS_KEY_FILE");
  if (!keyPath) throw configError("LAVIE_TLS_KEY_FILE", "is required with LAVIE_TLS_CERT_FILE");
  return {
    cert: pemFile("LAVIE_TLS_CERT_FILE", certPath, "certificate"),
    key: pemFile("LAVIE_TLS_KEY_FILE", keyPath, "private key"),
  };
}

/** Server TLS from LAVIE_TLS_CERT_FILE/KEY_FILE and LAVIE_TLS_CLIENT_CA_FILE (mTLS). */
function serverSide(env: Env): { credentials?: grpc.ServerCredentials; mtls: boolean; summary: string } {
  const id = identity(env);
  const caPath = getter(env)("LAVIE_TLS_CLIENT_CA_FILE");
  if (!id) {
    if (caPath)
      throw configError("LAVIE_TLS_CLIENT_CA_FILE", "needs LAVIE_TLS_CERT_FILE and LAVIE_TLS_KEY_FILE");
    return { mtls: false, summary: "plaintext" };
  }
  const clientCa = caPath ? pemFile("LAVIE_TLS_CLIENT_CA_FILE", caPath, "certificate") : undefined;
  return {
    credentials: serverTls({ ...id, ...(clientCa && { clientCa }) }),
    mtls: clientCa !== undefined,
    summary: clientCa ? "TLS, client certificates required" : "TLS",
  };
}

function tokenFile(env: Env, log?: (line: string) => void): WatchedFile<string[]> | null {
  const path = getter(env)("LAVIE_RUNNER_TOKEN_FILE");
  return path
    ? WatchedFile.open("LAVIE_RUNNER_TOKEN_FILE", path, parseRunnerTokens, log ? { log } : {})
    : null;
}

export interface CoordinatorSecurity {
  /** Client API authentication (NO_AUTH when not configured). */
  auth: Authenticator;
  /** Client API server credentials (undefined: plaintext). */
  serverCredentials?: grpc.ServerCredentials;
  /** How the coordinator calls runners. */
  runners: GrpcRunnerClientOptions;
  /** One line for the start-up log (no secrets). */
  summary: string;
}

export function coordinatorSecurityFromEnv(env: Env, log?: (line: string) => void): CoordinatorSecurity {
  const get = getter(env);
  const auth = authenticatorFromEnv(env, log);
  const server = serverSide(env);
  const runners: GrpcRunnerClientOptions = {};
  const runnerCa = get("LAVIE_RUNNER_CA_FILE");
  const serverName = get("LAVIE_RUNNER_TLS_SERVER_NAME");
  let runnerSummary = "plaintext";
  if (runnerCa) {
    const id = identity(env);
    runners.credentials = channelTls({
      ca: pemFile("LAVIE_RUNNER_CA_FILE", runnerCa, "certificate"),
      ...(id && { cert: id.cert, key: id.key }),
    });
    runnerSummary = id ? "mTLS" : "TLS (no client certificate)";
    if (serverName) {
      if (!/^[A-Za-z0-9*]([A-Za-z0-9*.-]{0,251}[A-Za-z0-9])?$/.test(serverName)) {
        throw configError("LAVIE_RUNNER_TLS_SERVER_NAME", `must be a DNS name, got "${serverName}"`);
      }
      runners.channelOptions = {
        "grpc.ssl_target_name_override": serverName,
        "grpc.default_authority": serverName,
      };
      runnerSummary += ` (server name ${serverName})`;
    }
  } else if (serverName) {
    throw configError("LAVIE_RUNNER_TLS_SERVER_NAME", "needs LAVIE_RUNNER_CA_FILE (TLS to the runners)");
  }
  const tokens = tokenFile(env, log);
  if (tokens) {
    runners.token = () => tokens.current()[0]!;
    runnerSummary += " + runner token";
  }
  return {
    auth,
    ...(server.credentials && { serverCredentials: server.credentials }),
    runners,
    summary: `client API: ${server.summary}, authentication ${auth.describe()}; runners: ${runnerSummary}`,
  };
}

export interface RunnerSecurity {
  /** Server credentials (undefined: plaintext). */
  credentials?: grpc.ServerCredentials;
  /** Who may call ExecuteTask / Describe. */
  policy: RunnerCallPolicy;
  /** One line for the start-up log (no secrets); says so when anyone may call. */
  summary: string;
}

export function runnerSecurityFromEnv(env: Env, log?: (line: string) => void): RunnerSecurity {
  const server = serverSide(env);
  const policy: RunnerCallPolicy = {};
  const allowedRaw = getter(env)("LAVIE_RUNNER_ALLOWED_CLIENTS");
  if (server.mtls) {
    const allowed = allowedRaw ? allowedRaw.split(",").map((s) => s.trim()) : [...DEFAULT_ALLOWED_CLIENTS];
    const bad = allowed.find((n) => !/^[A-Za-z0-9*]([A-Za-z0-9*._-]{0,251}[A-Za-z0-9])?$/.test(n));
    if (bad !== undefined) {
      throw configError(
        "LAVIE_RUNNER_ALLOWED_CLIENTS",
        `"${bad}" is not a certificate name; expected a comma-separated list of CNs / DNS names`,
      );
    }
    policy.allowedClients = allowed;
  } else if (allowedRaw) {
    throw configError(
      "LAVIE_RUNNER_ALLOWED_CLIENTS",
      "needs LAVIE_TLS_CLIENT_CA_FILE (client certificates) with LAVIE_TLS_CERT_FILE/LAVIE_TLS_KEY_FILE",
    );
  }
  const tokens = tokenFile(env, log);
  if (tokens) policy.tokens = () => tokens.current();
  const who = [
    policy.allowedClients && `client certificates ${policy.allowedClients.join(",")}`,
    tokens && "runner token",
  ].filter(Boolean);
  return {
    ...(server.credentials && { credentials: server.credentials }),
    policy,
    summary: `${server.summary}; callers: ${who.length ? who.join(" + ") : "anyone (set LAVIE_TLS_CLIENT_CA_FILE or LAVIE_RUNNER_TOKEN_FILE to accept tasks only from the coordinator)"}`,
  };
}
