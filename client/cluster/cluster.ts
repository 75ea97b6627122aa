/**
 * A whole lavie-serve cluster on one machine, as separate processes: nats-server (JetStream, file
 * store, loopback), the coordinator (coordinator/main.ts) and stage runners (stage-runners/main.ts),
 * each started with its environment and awaited until it prints its ready line. Used by
 * `lavie cluster up` and by tests:
 *
 *   const c = await startCluster({ preset: "tiny", runners: "base=1,interpolation=1,vsr=2" });
 *   // c.address is the coordinator's host:port for LavieClient / `lavie generate --server`
 *   await c.stop(); // runners (SIGTERM: drain), then the coordinator, then nats-server
 *
 * The models are built (or found in the cache) once here and passed to every child as
 * LAVIE_MODEL_DIR, so children never build them concurrently.
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { StageName } from "../../coordinator/plan/types.ts";
import { LavieError } from "../../core/errors.ts";
import { ensureModels } from "../../models/cache.ts";
import { type ExitStatus, type LogFn, SupervisedProcess } from "./process.ts";

export const STAGE_NAMES: readonly StageName[] = ["base", "interpolation", "vsr"];

/** `count` runner processes serving `stages`. */
export interface RunnerGroup {
  stages: StageName[];
  count: number;
}

/**
 * Parses "base=1,interpolation=1,vsr=2", "all=2" (each runner serves every stage) or combined
 * groups such as "base+interpolation=1,vsr=2". Errors name the --runners option.
 */
export function parseRunnerSpec(spec: string): RunnerGroup[] {
  const bad = (msg: string) => new LavieError("invalid_argument", `--runners: ${msg}`, { field: "runners" });
  const groups: RunnerGroup[] = [];
  for (const part of spec.split(",").map((s) => s.trim())) {
    if (part === "") continue;
    const m = /^([a-z+]+)=(\d+)$/.exec(part);
    if (!m) throw bad(`"${part}" is not <stage>=<count> (e.g. base=1,interpolation=1,vsr=2 or all=2)`);
    const names = m[1] === "all" ? [...STAGE_NAMES] : m[1]!.split("+");
    for (const n of names) {
      if (!(STAGE_NAMES as readonly string[]).includes(n))
        throw bad(`unknown stage "${n}"; allowed: ${STAGE_NAMES.join(", ")}, all`);
    }
    const count = Number(m[2]);
    if (count > 64) throw bad(`at most 64 runners per group; got ${count}`);
    if (count > 0) groups.push({ stages: [...new Set(names)] as StageName[], count });
  }
  const served = new Set(groups.flatMap((g) => g.stages));
  const missing = STAGE_NAMES.filter((s) => !served.has(s));
  if (missing.length) throw bad(`no runner serves stage ${missing.join(", ")}`);
  return groups;
}

export interface ClusterOptions {
  /** Runner groups or a --runners spec; default one runner serving every stage ("all=1"). */
  runners?: RunnerGroup[] | string;
  /** Model preset built/cached here when modelDir is unset (default tiny). */
  preset?: string;
  modelDir?: string;
  /** Loopback by default; the coordinator, runners and nats-server listen here. */
  host?: string;
  /** Coordinator gRPC port (default 0 = any free port). */
  port?: number;
  /** nats-server client port (default 0 = any free port). */
  natsPort?: number;
  /** Keeps nats-server's JetStream store (job records, results) in <dataDir>/nats; default a temp dir removed by stop(). */
  dataDir?: string;
  /** Tasks in flight per runner (LAVIE_RUNNER_SLOTS, default 1). */
  runnerSlots?: number;
  /** onnxruntime threads per runner slot; default the machine's cores shared among all runner slots. */
  ortThreads?: number;
  /** Extra environment for the coordinator / every runner (e.g. LAVIE_PROGRESS_TIMEOUT_MS). */
  coordinatorEnv?: Record<string, string>;
  runnerEnv?: Record<string, string>;
  /** Every output line of every child. Default: discarded (the last lines appear in start errors). */
  log?: LogFn;
  /** Per-process readiness timeout (default 120 s). */
  startTimeoutMs?: number;
  /** nats-server binary (default $NATS_SERVER_BIN or nats-server). */
  natsServerBin?: string;
}

export interface ClusterProcess {
  name: string;
  role: "nats" | "coordinator" | "runner";
  /** host:port it serves (nats-server: its nats:// URL). */
  address: string;
  /** Runners: the stages served. */
  stages: StageName[];
  process: SupervisedProcess;
}

export interface Cluster {
  /** The coordinator's client API, host:port. */
  readonly address: string;
  readonly natsUrl: string;
  readonly modelDir: string;
  readonly dataDir: string;
  /** nats-server, the coordinator and the runners, in start order (the current incarnations). */
  readonly processes: readonly ClusterProcess[];
  readonly runners: readonly ClusterProcess[];
  readonly coordinator: ClusterProcess;
  /** Stops runners (SIGTERM: they drain), then the coordinator, then nats-server; removes a temp data dir. */
  stop(): Promise<void>;
  /** Kills runner i (default SIGKILL: a crash) and waits for its exit. */
  killRunner(i: number, signal?: NodeJS.Signals): Promise<ExitStatus>;
  /** Starts runner i again (same id and stages) after stopping it if it still runs. */
  restartRunner(i: number): Promise<ClusterProcess>;
  /** Stops the coordinator (SIGTERM) and starts it again on the same address; resolves to that address. */
  restartCoordinator(): Promise<string>;
  /** Called when a child exits while the cluster is not stopping. */
  onUnexpectedExit(fn: (p: ClusterProcess, status: ExitStatus) => void): void;
}

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const COORDINATOR_MAIN = join(REPO_ROOT, "coordinator", "main.ts");
const RUNNER_MAIN = join(REPO_ROOT, "stage-runners", "main.ts");

const RUNNER_GRACE_MS = 30_000;
const COORDINATOR_GRACE_MS = 5_000;
const NATS_GRACE_MS = 5_000;

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  // A child of a `node --test` file must not report to the test runner.
  delete env.NODE_TEST_CONTEXT;
  return env;
}

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const groups =
    typeof opts.runners === "string"
      ? parseRunnerSpec(opts.runners)
      : (opts.runners ?? parseRunnerSpec("all=1"));
  const host = opts.host ?? "127.0.0.1";
  const timeoutMs = opts.startTimeoutMs ?? 120_000;
  const slots = opts.runnerSlots ?? 1;
  const totalRunners = groups.reduce((n, g) => n + g.count, 0);
  const ortThreads =
    opts.ortThreads ?? Math.max(1, Math.floor(availableParallelism() / (totalRunners * slots)));
  const modelDir = opts.modelDir ?? (await ensureModels(opts.preset ?? "tiny"));
  const tempData = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), "lavie-cluster-")));
  const storeDir = join(dataDir, "nats");
  await mkdir(storeDir, { recursive: true });

  const all: ClusterProcess[] = [];
  let stopping = false;
  const exitListeners: ((p: ClusterProcess, s: ExitStatus) => void)[] = [];
  // Processes stopped on purpose (stop, restarts, killRunner): their exits are not reported.
  const expected = new WeakSet<SupervisedProcess>();
  const track = (p: ClusterProcess): ClusterProcess => {
    void p.process.exited.then((s) => {
      if (stopping || expected.has(p.process)) return;
      for (const fn of exitListeners) fn(p, s);
    });
    return p;
  };

  const stopAll = async (): Promise<void> => {
    stopping = true;
    const runners = all.filter((p) => p.role === "runner");
    await Promise.all(runners.map((p) => p.process.stop("SIGTERM", RUNNER_GRACE_MS)));
    for (const p of all.filter((q) => q.role === "coordinator"))
      await p.process.stop("SIGTERM", COORDINATOR_GRACE_MS);
    for (const p of all.filter((q) => q.role === "nats")) await p.process.stop("SIGTERM", NATS_GRACE_MS);
    if (tempData) await rm(dataDir, { recursive: true, force: true });
  };

  try {
    // nats-server: port -1 lets it pick a free port, read back from its log.
    const natsBin = opts.natsServerBin ?? process.env.NATS_SERVER_BIN ?? "nats-server";
    const natsProc = new SupervisedProcess({
      name: "nats-server",
      command: natsBin,
      args: ["-a", host, "-p", String(opts.natsPort || -1), "-js", "-sd", storeDir, "-n", "lavie-cluster"],
      env: childEnv({}),
      ...(opts.log && { log: opts.log }),
    });
    const nats: ClusterProcess = {
      name: "nats-server",
      role: "nats",
      address: "",
      stages: [],
      process: natsProc,
    };
    all.push(track(nats));
    const natsReady = natsProc.waitForLine(/Server is ready/, timeoutMs);
    natsReady.catch(() => {}); // awaited below
    const [, , natsPort] = await natsProc.waitForLine(
      /Listening for client connections on (\S+):(\d+)/,
      timeoutMs,
    );
    await natsReady;
    const natsUrl = `nats://${host}:${natsPort}`;
    nats.address = natsUrl;

    const coordinatorEnv = (port: number) =>
      childEnv({
        ...opts.coordinatorEnv,
        LAVIE_NATS_URL: natsUrl,
        LAVIE_MODEL_DIR: modelDir,
        LAVIE_GRPC_HOST: host,
        LAVIE_GRPC_PORT: String(port),
      });
    const startCoordinator = async (port: number): Promise<ClusterProcess> => {
      const p = new SupervisedProcess({
        name: "coordinator",
        command: process.execPath,
        args: ["--import", "tsx", COORDINATOR_MAIN],
        cwd: REPO_ROOT,
        env: coordinatorEnv(port),
        ...(opts.log && { log: opts.log }),
      });
      const [, address] = await p
        .waitForLine(/coordinator listening on (\S+)/, timeoutMs)
        .catch(async (err) => {
          expected.add(p);
          await p.stop("SIGKILL", 1000);
          throw err;
        });
      return { name: "coordinator", role: "coordinator", address: address!, stages: [], process: p };
    };
    const coord = await startCoordinator(opts.port ?? 0);
    all.push(track(coord));

    const runnerDefs: { id: string; stages: StageName[] }[] = [];
    for (const g of groups) {
      const label = g.stages.length === STAGE_NAMES.length ? "all" : g.stages.join("-");
      for (let i = 0; i < g.count; i++) runnerDefs.push({ id: `${label}-${i}`, stages: g.stages });
    }
    const startRunner = async (def: { id: string; stages: StageName[] }): Promise<ClusterProcess> => {
      const p = new SupervisedProcess({
        name: `runner ${def.id}`,
        command: process.execPath,
        args: ["--import", "tsx", RUNNER_MAIN],
        cwd: REPO_ROOT,
        env: childEnv({
          ...opts.runnerEnv,
          LAVIE_NATS_URL: natsUrl,
          LAVIE_RUNNER_STAGES: def.stages.join(","),
          LAVIE_MODEL_DIR: modelDir,
          LAVIE_RUNNER_HOST: host,
          LAVIE_RUNNER_PORT: "0",
          LAVIE_RUNNER_SLOTS: String(slots),
          LAVIE_ORT_THREADS: String(ortThreads),
          LAVIE_RUNNER_ID: def.id,
        }),
        ...(opts.log && { log: opts.log }),
      });
      const m = await p
        .waitForLine(/^runner (\S+) listening on (\S+) stages=(\S+)/, timeoutMs)
        .catch(async (err) => {
          expected.add(p);
          await p.stop("SIGKILL", 1000);
          throw err;
        });
      return { name: `runner ${def.id}`, role: "runner", address: m[2]!, stages: def.stages, process: p };
    };
    // Started together (each loads its own ONNX sessions), listed in spec order.
    const started = await Promise.allSettled(runnerDefs.map(startRunner));
    for (const r of started) if (r.status === "fulfilled") all.push(track(r.value));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;

    const runnerIndex = (i: number): number => {
      const runners = all.filter((p) => p.role === "runner");
      const r = runners[i];
      if (!r) throw new LavieError("invalid_argument", `no runner ${i} (the cluster has ${runners.length})`);
      return all.indexOf(r);
    };

    return {
      address: coord.address,
      natsUrl,
      modelDir,
      dataDir,
      get processes() {
        return [...all];
      },
      get runners() {
        return all.filter((p) => p.role === "runner");
      },
      get coordinator() {
        return all.find((p) => p.role === "coordinator")!;
      },
      stop: stopAll,
      async killRunner(i, signal = "SIGKILL") {
        const p = all[runnerIndex(i)]!;
        expected.add(p.process);
        p.process.kill(signal);
        return p.process.exited;
      },
      async restartRunner(i) {
        const at = runnerIndex(i);
        const old = all[at]!;
        expected.add(old.process);
        await old.process.stop("SIGTERM", RUNNER_GRACE_MS);
        const id = old.name.slice("runner ".length);
        const p = await startRunner({ id, stages: old.stages });
        all[at] = track(p);
        return p;
      },
      async restartCoordinator() {
        const at = all.findIndex((p) => p.role === "coordinator");
        const old = all[at]!;
        expected.add(old.process);
        await old.process.stop("SIGTERM", COORDINATOR_GRACE_MS);
        const port = Number(old.address.slice(old.address.lastIndexOf(":") + 1));
        const p = await startCoordinator(port);
        all[at] = track(p);
        return p.address;
      },
      onUnexpectedExit(fn) {
        exitListeners.push(fn);
      },
    };
  } catch (err) {
    await stopAll().catch(() => {});
    throw err;
  }
}
