/**
 * A supervised child process: output split into lines (kept in a small ring buffer for error
 * messages and passed to a log callback), waiting for a ready line, and a graceful stop (a signal,
 * then SIGKILL after a grace period). Children run in their own process group, so a Ctrl-C in the
 * terminal reaches only the supervisor, which stops them in order; any child still alive when the
 * supervising process exits is killed (SIGKILL), also when the supervisor dies of a signal it has
 * no handler for.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";

export type LogFn = (name: string, line: string, stream: "stdout" | "stderr") => void;

export interface SpawnOptions {
  name: string;
  command: string;
  args: readonly string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  log?: LogFn;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const killAll = (signal: NodeJS.Signals) => {
    for (const c of live) {
      try {
        c.kill(signal);
      } catch {
        // already gone
      }
    }
  };
  process.on("exit", () => killAll("SIGKILL"));
  // A supervisor killed by a signal it does not handle itself (e.g. `timeout` sending SIGTERM) would
  // die without "exit" and orphan the children: kill them (SIGKILL: with no one left to order the
  // shutdown, a runner draining towards a vanished nats-server could hang), then die of the signal as
  // before. When the application has its own handler (`lavie cluster up`), it stops them in order.
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const onSignal = () => {
      if (process.listenerCount(sig) > 1) return;
      killAll("SIGKILL");
      process.off(sig, onSignal);
      process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

const KEEP_LINES = 200;

export class SupervisedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ExitStatus>;
  private status: ExitStatus | null = null;
  private readonly tail: string[] = [];
  private readonly lineWaiters = new Set<(line: string) => void>();

  constructor(opts: SpawnOptions) {
    installExitHook();
    this.name = opts.name;
    const child = spawn(opts.command, [...opts.args], {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    this.child = child;
    live.add(child);
    this.exited = new Promise<ExitStatus>((resolve) => {
      const done = (s: ExitStatus) => {
        live.delete(child);
        this.status ??= s;
        resolve(this.status);
      };
      child.once("exit", (code, signal) => done({ code, signal }));
      child.once("error", (err) => {
        this.push(`spawn error: ${err.message}`);
        done({ code: -1, signal: null });
      });
    });
    for (const [stream, src] of [
      ["stdout", child.stdout],
      ["stderr", child.stderr],
    ] as const) {
      if (!src) continue;
      createInterface({ input: src, crlfDelay: Number.POSITIVE_INFINITY }).on("line", (line) => {
        this.push(line);
        opts.log?.(this.name, line, stream);
        for (const w of this.lineWaiters) w(line);
      });
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Null while running. */
  get exitStatus(): ExitStatus | null {
    return this.status;
  }

  get running(): boolean {
    return this.status === null;
  }

  /** The last lines of output (stdout and stderr interleaved). */
  logs(): string {
    return this.tail.join("\n");
  }

  private push(line: string): void {
    this.tail.push(line);
    if (this.tail.length > KEEP_LINES) this.tail.shift();
  }

  /**
   * Resolves with the first output line (from now on) matching `re`; rejects if the process exits
   * first or after `timeoutMs`, with its last output in the message.
   */
  waitForLine(re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (err: Error | null, m?: RegExpExecArray) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.lineWaiters.delete(onLine);
        if (err) reject(err);
        else resolve(m!);
      };
      const onLine = (line: string) => {
        const m = re.exec(line);
        if (m) finish(null, m);
      };
      const timer = setTimeout(
        () =>
          finish(new Error(`${this.name} was not ready within ${timeoutMs} ms; its output:\n${this.logs()}`)),
        timeoutMs,
      );
      this.lineWaiters.add(onLine);
      void this.exited.then((s) =>
        finish(
          new Error(
            `${this.name} exited before it was ready (code ${s.code}, signal ${s.signal}); its output:\n${this.logs()}`,
          ),
        ),
      );
    });
  }

  /** Sends `signal` (if still running). */
  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    if (this.status !== null) return;
    try {
      this.child.kill(signal);
    } catch {
      // exited meanwhile
    }
  }

  /** Sends `signal`, waits up to `graceMs` for the exit, then SIGKILLs. */
  async stop(signal: NodeJS.Signals = "SIGTERM", graceMs = 10_000): Promise<ExitStatus> {
    if (this.status !== null) return this.status;
    this.kill(signal);
    const timer = setTimeout(() => this.kill("SIGKILL"), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}
