/**
 * How CLI commands that talk to a coordinator authenticate and encrypt:
 *
 *   --api-key-file <file>      file holding an API key or a JWT (env LAVIE_API_KEY_FILE); without it
 *                              the key itself may come from env LAVIE_API_KEY. Sent as
 *                              "authorization: Bearer ..."; never printed.
 *   --tls                      TLS with the system's root CAs
 *   --tls-ca <file>            TLS, verifying the coordinator with this PEM CA bundle
 *   --tls-cert <file>          client certificate (PEM) for a coordinator that requires mTLS
 *   --tls-key <file>           its private key (PEM)
 *   --tls-server-name <name>   check the coordinator's certificate against this name instead of the host
 *
 * Unreadable or malformed files are usage errors (exit 2) naming the option.
 */
import { readFileSync } from "node:fs";
import { type Command, Option } from "commander";
import { LavieError } from "../../core/errors.ts";
import { pemFile } from "../../transport/security/tls.ts";
import type { LavieClientOptions } from "../sdk/client.ts";

export interface ConnectionFlags {
  apiKeyFile?: string;
  tls?: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
}

/** Adds the connection options to a command that talks to a coordinator. */
export function addConnectionOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        "--api-key-file <file>",
        "file with an API key or JWT for the coordinator (without it: env LAVIE_API_KEY holds the key)",
      ).env("LAVIE_API_KEY_FILE"),
    )
    .addOption(new Option("--tls", "connect with TLS, verifying the coordinator with the system's root CAs"))
    .addOption(
      new Option("--tls-ca <file>", "connect with TLS, verifying the coordinator with this PEM CA bundle"),
    )
    .addOption(
      new Option("--tls-cert <file>", "PEM client certificate, for a coordinator that requires mTLS"),
    )
    .addOption(new Option("--tls-key <file>", "PEM private key of --tls-cert"))
    .addOption(
      new Option("--tls-server-name <name>", "check the coordinator's certificate against this name"),
    );
}

function usage(option: string, message: string): LavieError {
  return new LavieError("invalid_argument", `${option}: ${message}`, { field: option });
}

function isLoopback(server: string): boolean {
  return /^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d+$/.test(server);
}

/**
 * SDK options for the flags (files read now). Warns on stderr when a credential would travel
 * without TLS to a host other than loopback.
 */
export function clientOptionsOf(
  server: string,
  f: ConnectionFlags,
  env: NodeJS.ProcessEnv = process.env,
  warn: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): LavieClientOptions {
  const out: LavieClientOptions = {};
  let credential: string | undefined;
  if (f.apiKeyFile) {
    let text: string;
    try {
      text = readFileSync(f.apiKeyFile, "utf8");
    } catch (err) {
      throw usage(
        "--api-key-file",
        `cannot read ${f.apiKeyFile} (${(err as NodeJS.ErrnoException).code ?? "read error"})`,
      );
    }
    credential = text.trim();
    if (!/^[\x21-\x7e]{1,8192}$/.test(credential)) {
      throw usage("--api-key-file", `${f.apiKeyFile} must hold one API key or JWT (no spaces)`);
    }
  } else if (env.LAVIE_API_KEY?.trim()) {
    credential = env.LAVIE_API_KEY.trim();
    if (!/^[\x21-\x7e]{1,8192}$/.test(credential)) {
      throw usage("LAVIE_API_KEY", "must be one API key or JWT (no spaces)");
    }
  }
  if (credential !== undefined) out.apiKey = credential;
  const tls = f.tls || f.tlsCa || f.tlsCert || f.tlsKey || f.tlsServerName;
  if (tls) {
    if ((f.tlsCert === undefined) !== (f.tlsKey === undefined)) {
      throw usage(f.tlsCert ? "--tls-key" : "--tls-cert", "--tls-cert and --tls-key go together (mTLS)");
    }
    out.tls = {
      ...(f.tlsCa && { ca: pemFile("--tls-ca", f.tlsCa, "certificate").pem }),
      ...(f.tlsCert && { cert: pemFile("--tls-cert", f.tlsCert, "certificate").pem }),
      ...(f.tlsKey && { key: pemFile("--tls-key", f.tlsKey, "private key").pem }),
      ...(f.tlsServerName && { serverName: f.tlsServerName }),
    };
  } else if (credential !== undefined && !isLoopback(server)) {
    warn(`warning: sending credentials to ${server} without TLS (use --tls or --tls-ca)`);
  }
  return out;
}
