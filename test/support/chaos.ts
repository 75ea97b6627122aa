/**
 * A chaos drill against real processes: an in-process coordinator, stage-runner processes and a
 * nats-server (given). Jobs are submitted; meanwhile a seeded loop SIGKILLs a random ready runner
 * every `killEveryMs` and starts a replacement. At the end every succeeded job's tiles are compared,
 * bit for bit, with an in-process run of the same spec.
 *
 * With `kills`, the drill is driven by events instead of a timer (for tests, whose machine may be
 * fast or loaded): the jobs are submitted in `kills` waves; each round submits its wave, waits until
 * a runner holds a task, SIGKILLs it and waits until its replacement is ready. The number of kills,
 * and that each one hits a runner with work, then do not depend on the machine's speed.
 *
 *   const report = await runChaos({ natsUrl, modelDir, engine, store, jobs: 10, runners: 3, seed: 1 });
 *   // { jobs: 10, succeeded: 10, faults: { sigkill: 14 }, jobsLost: 0, tilesDiffering: 0, ... }
 *
 * Used by test/integration/chaos.test.ts (small) and by benchmarks (larger runs, same report).
 */
import type { ChildProcess } from "node:child_process";
import type { DispatcherOptions } from "../../coordinator/distributed/dispatcher.ts";
import type { JobRecord } from "../../coordinator/distributed/ports.ts";
import type { LocalEngine } from "../../coordinator/engine.ts";
import { runPlanLocally, type TileStore } from "../../coordinator/executor/local.ts";
import { Coordinator } from "../../coordinator/server.ts";
import type { JobRequest } from "../../core/job.ts";
import { mulberry32 } from "../../core/prng.ts";
import { FAULT_EXIT_CODE } from "../../stage-runners/server/faults.ts";
import type { NatsTensorStore } from "../../transport/nats/tensors.ts";
import { startNodeProcess } from "./process.ts";

export interface ChaosOptions {
  natsUrl: string;
  modelDir: string;
  /** The in-process reference (tiles are compared with its runs). */
  engine: LocalEngine;
  /** Reads the jobs' tiles (a store on the same nats-server). */
  store: NatsTensorStore;
  /** Jobs submitted at once (default 10). */
  jobs?: number;
  /** Runner processes kept (default 3); each serves every stage. */
  runners?: number;
  /** Seed of the kill schedule and victims (default 1). */
  seed?: number;
  /** Pause between kills, uniform in [min, max] ms (default [500, 2000]). */
  killEveryMs?: readonly [number, number];
  /** Event-driven drill with exactly this many kill rounds (1..jobs); see the file header. */
  kills?: number;
  /**
   * Ready runners never killed below this many (default runners - 1: one runner down at a time;
   * the next kill waits for its replacement). Kills come faster than restarts (a runner process
   * takes seconds to start on a busy machine): without a floor, every runner is soon restarting
   * and no task longer than a runner's lifetime can ever finish, whatever the retry policy.
   */
  minAlive?: number;
  /** In-process reference runs by spec (JSON), shared with other callers to run each spec once. */
  references?: Map<string, Promise<TileStore>>;
  /** The job requests (default: tiny, 1-2 steps per stage, 3 distinct seeds). */
  request?: (i: number) => JobRequest;
  /** Jobs running at once in the coordinator (default: all). */
  maxRunningJobs?: number;
  dispatcher?: DispatcherOptions;
  /** Load the runners' sessions before they report ready (default false: on first use). */
  warm?: boolean;
  /**
   * Extra environment of runner processes, e.g. LAVIE_FAULTS (runner-side faults: a runner that
   * exits by the "exit" fault is counted as faults.exit and replaced). `slot` is the runner's index,
   * `generation` counts the runner processes started (a distinct fault seed per process).
   */
  runnerEnv?: (slot: number, generation: number) => NodeJS.ProcessEnv;
  /** Give up on unfinished jobs after this long (default 180 000 ms): they count as lost. */
  timeoutMs?: number;
  log?: (line: string) => void;
}

export interface ChaosReport {
  jobs: number;
  succeeded: number;
  /**
   * Faults injected, per kind: sigkill (runner processes killed by the drill), exit (runners that
   * exited by their LAVIE_FAULTS "exit" fault), other_exit (runners that exited on their own).
   */
  faults: Record<string, number>;
  /** Jobs that did not succeed (failed, cancelled, or unfinished at the timeout). */
  jobsLost: number;
  /** Why the lost jobs were lost. */
  lostReasons: string[];
  tilesCompared: number;
  tilesDiffering: number;
  /** Task attempts retried by the dispatcher. */
  retried: number;
  /** Runner quarantines the dispatcher started. */
  quarantines: number;
  /** Wall time of the drill (submit to the last terminal job), ms. */
  ms: number;
  /** Mean time a replacement runner took to become ready, ms. */
  restartMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const defaultRequest = (i: number): JobRequest => ({
  prompt: `chaos ${i % 3}`,
  seed: 100 + (i % 3),
  base: { steps: 2 },
  interpolation: { steps: 1 },
  vsr: { steps: 1 },
});

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill(signal);
  const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(t);
}

/** Compares every tile of a succeeded job with the in-process reference; returns [compared, differing]. */
export async function compareTiles(
  engine: LocalEngine,
  store: NatsTensorStore,
  record: JobRecord,
  references: Map<string, Promise<TileStore>> = new Map(),
): Promise<[number, number]> {
  const plan = engine.plan(record.spec);
  const key = JSON.stringify(record.spec);
  let local = references.get(key);
  if (!local) {
    local = runPlanLocally(plan, record.spec, engine.networks, { release: false });
    references.set(key, local);
  }
  const tiles = await local;
  let differing = 0;
  for (const task of plan.tasks) {
    const ref = record.done[task.id];
    if (!ref) {
      differing++;
      continue;
    }
    const remote = await store.get(ref);
    const mine = tiles.get(task.output.tensor, task.output.tile);
    const a = Buffer.from(remote.data.buffer, remote.data.byteOffset, remote.data.byteLength);
    const b = Buffer.from(mine.data.buffer, mine.data.byteOffset, mine.data.byteLength);
    if (!a.equals(b)) differing++;
  }
  return [plan.tasks.length, differing];
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const jobs = opts.jobs ?? 10;
  const slots = opts.runners ?? 3;
  const random = mulberry32(opts.seed ?? 1);
  const [minGap, maxGap] = opts.killEveryMs ?? [500, 2_000];
  const log = opts.log ?? (() => {});
  const request = opts.request ?? defaultRequest;
  const faults: Record<string, number> = { sigkill: 0, exit: 0, other_exit: 0 };
  const live: (ChildProcess | null)[] = new Array(slots).fill(null);
  /** Runner id of each slot's live process. */
  const liveIds: string[] = new Array(slots).fill("");
  if (opts.kills !== undefined && !(Number.isInteger(opts.kills) && opts.kills >= 1 && opts.kills <= jobs))
    throw new Error(`chaos: kills must be an integer in 1..${jobs} (jobs), got ${opts.kills}`);
  const starting = new Set<Promise<unknown>>();
  let generation = 0;

  const restarts: number[] = [];
  const replace = (slot: number): Promise<unknown> => {
    const p = startRunner(slot).catch((err: unknown) =>
      log(`chaos: restart of slot ${slot} failed: ${String(err)}`),
    );
    starting.add(p);
    void p.finally(() => starting.delete(p));
    return p;
  };
  const startRunner = async (slot: number): Promise<void> => {
    const gen = generation++;
    const id = `chaos-${slot}-${gen}`;
    const t = Date.now();
    const { child } = await startNodeProcess(
      "stage-runners/main.ts",
      {
        LAVIE_NATS_URL: opts.natsUrl,
        LAVIE_MODEL_DIR: opts.modelDir,
        LAVIE_ORT_THREADS: "1",
        LAVIE_RUNNER_ID: id,
        LAVIE_RUNNER_WARM: opts.warm ? "1" : "0",
        LAVIE_METRICS_PORT: "0",
        ...opts.runnerEnv?.(slot, gen),
      },
      /listening on \S+/,
    );
    if (generation > slots) restarts.push(Date.now() - t);
    if (stopChaos) {
      child.kill("SIGKILL");
      return;
    }
    live[slot] = child;
    liveIds[slot] = id;
    child.once("exit", (code) => {
      if (live[slot] !== child || stopChaos) return; // killed by the drill, or the drill is over
      live[slot] = null;
      const kind = code === FAULT_EXIT_CODE ? "exit" : "other_exit";
      faults[kind]!++;
      log(`chaos: runner slot ${slot} exited by itself (code ${code}, ${kind})`);
      if (!stopChaos) replace(slot);
    });
  };

  const coordinator = await Coordinator.start({
    natsUrl: opts.natsUrl,
    modelDir: opts.modelDir,
    keepTensors: true,
    maxRunningJobs: opts.maxRunningJobs ?? jobs,
    ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
  });
  let stopChaos = false;
  let chaos: Promise<void> = Promise.resolve();
  try {
    await Promise.all(Array.from({ length: slots }, (_, i) => startRunner(i)));
    const t0 = Date.now();
    const deadline = t0 + (opts.timeoutMs ?? 180_000);
    const submit = (from: number, to: number) =>
      Promise.all(
        Array.from(
          { length: to - from },
          async (_, i) => (await coordinator.jobs.submit(request(from + i))).record.id,
        ),
      );
    /** SIGKILLs the slot's runner; resolves once it is gone, with its replacement's start. */
    const kill = async (slot: number): Promise<{ replacement: Promise<unknown> }> => {
      const victim = live[slot]!;
      live[slot] = null;
      await stopChild(victim);
      faults.sigkill!++;
      log(`chaos: SIGKILL runner slot ${slot} (${faults.sigkill} so far)`);
      return { replacement: replace(slot) };
    };
    const ids: string[] = [];
    if (opts.kills !== undefined) {
      const rounds = opts.kills;
      const minAlive = opts.minAlive ?? slots - 1;
      /** A ready slot whose runner holds a task, once more than minAlive are ready (null at the deadline). */
      const busySlot = async (): Promise<number | null> => {
        while (Date.now() < deadline) {
          const ready = live.map((c, i) => (c ? i : -1)).filter((i) => i >= 0);
          const held = coordinator.load().inFlightByRunner;
          const busy = ready.filter((i) => (held[liveIds[i]!] ?? 0) > 0);
          if (ready.length > minAlive && busy.length > 0) return busy[Math.floor(random() * busy.length)]!;
          await sleep(20); // polls a condition; the deadline bounds it
        }
        return null;
      };
      const untilDeadline = () =>
        new Promise<void>((r) => setTimeout(r, Math.max(0, deadline - Date.now())).unref());
      for (let round = 0; round < rounds; round++) {
        const from = Math.floor((round * jobs) / rounds);
        ids.push(...(await submit(from, Math.floor(((round + 1) * jobs) / rounds))));
        const slot = await busySlot();
        if (slot === null) break;
        const { replacement } = await kill(slot);
        await Promise.race([replacement, untilDeadline()]);
      }
    } else {
      ids.push(...(await submit(0, jobs)));
    }
    chaos = (async () => {
      while (!stopChaos && opts.kills === undefined) {
        await sleep(minGap + random() * (maxGap - minGap));
        if (stopChaos) return;
        const ready = live.map((c, i) => (c ? i : -1)).filter((i) => i >= 0);
        if (ready.length <= (opts.minAlive ?? slots - 1)) continue;
        await kill(ready[Math.floor(random() * ready.length)]!);
      }
    })();
    const ends = new Map<string, JobRecord>();
    while (ends.size < ids.length && Date.now() < deadline) {
      for (const id of ids) {
        if (ends.has(id)) continue;
        const r = await coordinator.jobs.get(id);
        if (r.state === "succeeded" || r.state === "failed" || r.state === "cancelled") ends.set(id, r);
      }
      await sleep(100);
    }
    const ms = Date.now() - t0;
    stopChaos = true;
    await chaos;
    await Promise.allSettled([...starting]);
    const lostReasons: string[] = [];
    let succeeded = 0;
    let tilesCompared = 0;
    let tilesDiffering = 0;
    const references = opts.references ?? new Map<string, Promise<TileStore>>();
    if (ids.length < jobs)
      lostReasons.push(`${jobs - ids.length} jobs never submitted: the deadline came first`);
    for (const id of ids) {
      const r = ends.get(id);
      if (r?.state !== "succeeded") {
        lostReasons.push(`${id}: ${r ? `${r.state}: ${r.error}` : "unfinished at the timeout"}`);
        continue;
      }
      succeeded++;
      const [n, d] = await compareTiles(opts.engine, opts.store, r, references);
      tilesCompared += n;
      tilesDiffering += d;
    }
    const stats = coordinator.dispatcherStats();
    return {
      jobs,
      succeeded,
      faults: { ...faults },
      jobsLost: jobs - succeeded,
      lostReasons,
      tilesCompared,
      tilesDiffering,
      retried: stats.retried,
      quarantines: stats.quarantines,
      ms,
      restartMs: Math.round(restarts.reduce((a, b) => a + b, 0) / Math.max(1, restarts.length)),
    };
  } finally {
    stopChaos = true;
    await chaos.catch(() => {});
    await Promise.allSettled([...starting]);
    await Promise.all(live.map((c) => (c ? stopChild(c) : undefined)));
    await coordinator.stop();
  }
}
