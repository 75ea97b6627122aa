/**
 * Starts a throwaway nats-server (Debian package `nats-server`) on 127.0.0.1 with JetStream and a
 * temporary file store, for tests and benchmarks. restart() keeps the port and the store directory,
 * so file-stored streams, KV buckets and object stores survive it.
 *
 * With `users`, the server runs with an `authorization` block from transport/nats/permissions.ts:
 * one user per entry with its role's publish/subscribe permissions (no anonymous access).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  authorizationBlock,
  type NatsPermissionParams,
  type NatsUser,
} from "../../transport/nats/permissions.ts";

export interface NatsServerOptions {
  jetstream?: boolean;
  /** Overrides the server's max_payload (bytes; default 1 MiB). Written to a config file. */
  maxPayload?: number;
  /** Milliseconds to wait for the server to accept connections. */
  startTimeoutMs?: number;
  /** Users with per-role permissions (written to a config file); unset = no authentication. */
  users?: NatsUser[];
  /** Bucket names etc. for the users' permissions. */
  permissions?: NatsPermissionParams;
  /** Extra lines for the config file (nats-server syntax). */
  config?: string;
}

export interface NatsServerHandle {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  /** Kills the server and waits for it to exit; removes the store directory unless keepStore. */
  stop(opts?: { keepStore?: boolean }): Promise<void>;
  /** Stops the server and starts it again on the same port and store directory. */
  restart(): Promise<void>;
  /** The server's log (stderr) since start, across restarts (first 8 MiB). */
  log(): string;
}

const BINARY = process.env.NATS_SERVER_BIN ?? "nats-server";

function checkInstalled(): void {
  const r = spawnSync(BINARY, ["--version"], { encoding: "utf8" });
  if (r.error || r.status !== 0) {
    throw new Error(
      `${BINARY} is not installed or not runnable (${r.error?.message ?? `exit ${r.status}`}); ` +
        "install the Debian package nats-server (apt-get install -y nats-server, or run scripts/setup.sh)",
    );
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServerHandle> {
  checkInstalled();
  const port = await freePort();
  const storeDir = mkdtempSync(join(tmpdir(), "lavie-nats-"));
  const args = ["-a", "127.0.0.1", "-p", String(port)];
  if (opts.jetstream !== false) args.push("-js", "-sd", storeDir);
  const conf: string[] = [];
  if (opts.maxPayload !== undefined) conf.push(`max_payload: ${opts.maxPayload}\n`);
  if (opts.users) conf.push(authorizationBlock(opts.users, opts.permissions));
  if (opts.config) conf.push(`${opts.config}\n`);
  if (conf.length > 0) {
    const file = join(storeDir, "server.conf");
    writeFileSync(file, conf.join(""), { mode: 0o600 });
    args.push("-c", file);
  }
  const timeoutMs = opts.startTimeoutMs ?? 10_000;
  let child: ChildProcess | null = null;
  let log = "";

  const launch = async (): Promise<void> => {
    const c = spawn(BINARY, args, { stdio: ["ignore", "ignore", "pipe"] });
    child = c;
    let stderr = "";
    c.stderr?.setEncoding("utf8");
    c.stderr?.on("data", (d: string) => {
      if (stderr.length < 16_384) stderr += d;
      if (log.length < 8 * 1024 * 1024) log += d;
    });
    let exited: string | null = null;
    c.once("exit", (code, signal) => {
      exited = `exit code ${code}, signal ${signal}`;
    });
    c.once("error", (err) => {
      exited = err.message;
    });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (exited !== null) throw new Error(`nats-server failed to start (${exited}):\n${stderr}`);
      if (stderr.includes("Server is ready") && (await canConnect(port))) return;
      if (Date.now() > deadline) {
        c.kill("SIGKILL");
        throw new Error(
          `nats-server did not become ready on port ${port} within ${timeoutMs} ms:\n${stderr}`,
        );
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  const kill = async (): Promise<void> => {
    const c = child as ChildProcess | null;
    child = null;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => c.kill("SIGKILL"), 5_000);
      c.once("exit", () => {
        clearTimeout(t);
        resolve();
      });
      // SIGTERM lets JetStream flush its file store; restart() relies on that.
      c.kill("SIGTERM");
    });
  };

  await launch();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    async stop(o = {}) {
      await kill();
      if (!o.keepStore) rmSync(storeDir, { recursive: true, force: true });
    },
    async restart() {
      await kill();
      await launch();
    },
    log: () => log,
  };
}
