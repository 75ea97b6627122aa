/**
 * A soak run: many tiny jobs through a whole local cluster (real nats-server, coordinator and runner
 * processes) while faults are injected: runners misbehave (LAVIE_FAULTS: corrupt or wrong-shaped
 * outputs, failures, hangs) and are SIGKILLed and restarted at random moments; the coordinator's
 * bounded queues refuse part of the submits (RESOURCE_EXHAUSTED), which are resubmitted as hinted.
 *
 * It reports what a reliability review asks: jobs submitted, completed, failed (with reasons),
 * vanished (submitted but never terminal: must be 0), faults injected per kind, admission refusals,
 * tiles differing from the fault-free in-process run (every succeeded job's output tiles are
 * compared by digest with a LocalEngine run of the same request: must be 0), and the coordinator's
 * memory (RSS samples, peak).
 *
 * Used by test/integration/soak.test.ts (bounded) and bench/reliability.ts (larger).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { startCluster } from "../../client/cluster/index.ts";
import { LavieClient } from "../../client/sdk/index.ts";
import type { JobRecord } from "../../coordinator/distributed/ports.ts";
import { LocalEngine } from "../../coordinator/engine.ts";
import { runPlanLocally } from "../../coordinator/executor/local.ts";
import { LavieError } from "../../core/errors.ts";
import type { JobRequest } from "../../core/job.ts";
import { mulberry32 } from "../../core/prng.ts";
import { ensureModels } from "../../models/cache.ts";
import { connectNats } from "../../transport/nats/connect.ts";
import { NatsJobStore } from "../../transport/nats/kv.ts";

export interface SoakOptions {
  /** Jobs to submit (default 200). */
  jobs?: number;
  /** Distinct requests, cycled (default 4): each one's tiles are compared with one in-process run. */
  distinct?: number;
  /** Submissions outstanding at once (default 40). */
  concurrency?: number;
  /** Runner processes (default 3), each serving every stage. */
  runners?: number;
  /** LAVIE_FAULTS of every runner (default "corrupt:0.02,shape:0.02,fail:0.03,hang:0.01"). */
  faults?: string;
  /** Mean ms between runner SIGKILLs (default 2500; 0 = none). A killed runner is restarted at once. */
  killEveryMs?: number;
  /** Coordinator environment on top of the soak's defaults (bounded queues, short deadlines). */
  coordinatorEnv?: Record<string, string>;
  /** Seed of the kill schedule (default 1). */
  seed?: number;
  /** Progress lines (default none). */
  log?: (line: string) => void;
}

export interface SoakReport {
  jobs: number;
  succeeded: number;
  failed: number;
  /** Submitted jobs that never reached a terminal state (target 0). */
  vanished: number;
  failureReasons: string[];
  admissionRefusals: number;
  runnerKills: number;
  /** Faults the runners reported injecting, per kind. */
  faultsInjected: Record<string, number>;
  tilesCompared: number;
  tilesDiffering: number;
  /** Coordinator RSS (MB): at the first and last sample, and the peak (VmHWM). */
  rssFirstMb: number;
  rssLastMb: number;
  rssPeakMb: number;
  /** RSS (MB) after each quarter of the jobs finished. */
  rssByQuarterMb: number[];
  durationMs: number;
}

function rssMb(pid: number | undefined, field: "VmRSS" | "VmHWM"): number {
  if (!pid) return 0;
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The soak's requests: tiny, a base stage of one step, different seeds and prompts. */
export function soakRequests(distinct: number): JobRequest[] {
  return Array.from({ length: distinct }, (_, i) => ({
    prompt: `soak ${i}`,
    seed: 100 + i,
    stopAfter: "base",
    base: { steps: 1 },
  }));
}

export async function runSoak(opts: SoakOptions = {}): Promise<SoakReport> {
  const jobs = opts.jobs ?? 200;
  const distinct = Math.max(1, opts.distinct ?? 4);
  const concurrency = Math.max(1, opts.concurrency ?? 40);
  const log = opts.log ?? (() => {});
  const rand = mulberry32(opts.seed ?? 1);
  const modelDir = await ensureModels("tiny");
  const requests = soakRequests(distinct);

  // Fault-free reference tiles, in process.
  const reference = new Map<string, string>(); // `${request}/${taskId}` -> digest
  const engine = await LocalEngine.open(modelDir, { intraOpThreads: 1 });
  try {
    for (const [i, req] of requests.entries()) {
      const spec = engine.resolve(req);
      const plan = engine.plan(spec);
      const local = await runPlanLocally(plan, spec, engine.networks, { release: false });
      for (const t of plan.tasks) {
        const tile = local.get(t.output.tensor, t.output.tile);
        const bytes = Buffer.from(tile.data.buffer, tile.data.byteOffset, tile.data.byteLength);
        reference.set(`${i}/${t.id}`, `sha256:${createHash("sha256").update(bytes).digest("hex")}`);
      }
    }
  } finally {
    await engine.close();
  }

  const faultsInjected: Record<string, number> = {};
  const cluster = await startCluster({
    modelDir,
    runners: `all=${opts.runners ?? 3}`,
    ortThreads: 1,
    coordinatorEnv: {
      LAVIE_MAX_RUNNING_JOBS: "8",
      LAVIE_MAX_QUEUED_JOBS: "24",
      LAVIE_MAX_QUEUED_PER_TENANT: "24",
      LAVIE_TASK_ATTEMPTS: "8",
      LAVIE_PROGRESS_TIMEOUT_MS: "3000",
      LAVIE_QUARANTINE_MS: "2000",
      LAVIE_RECENT_FINISHED_JOBS: "32",
      LAVIE_METRICS_PORT: "0",
      ...opts.coordinatorEnv,
    },
    runnerEnv: {
      LAVIE_FAULTS: opts.faults ?? "corrupt:0.02,shape:0.02,fail:0.03,hang:0.01",
      LAVIE_METRICS_PORT: "0",
    },
    log: (_name, line) => {
      const m = /injecting fault "(\w+)"/.exec(line);
      if (m) faultsInjected[m[1]!] = (faultsInjected[m[1]!] ?? 0) + 1;
    },
  });
  const t0 = Date.now();
  const client = new LavieClient(cluster.address, { reconnectMs: 60_000 });
  const nats = await connectNats(cluster.natsUrl, { name: "soak" });
  const records = await NatsJobStore.open(nats.kvm);
  const pid = cluster.coordinator.process.child.pid;
  const rssSamples: number[] = [];
  const rssByQuarterMb: number[] = [];
  let runnerKills = 0;
  let admissionRefusals = 0;
  let stop = false;
  try {
    // Chaos: kill a random runner every so often and start it again.
    const chaos = (async () => {
      const every = opts.killEveryMs ?? 2500;
      if (every <= 0) return;
      while (!stop) {
        await sleep(every * (0.5 + rand()));
        if (stop) break;
        const i = Math.floor(rand() * cluster.runners.length);
        await cluster.killRunner(i, "SIGKILL");
        runnerKills++;
        if (!stop) await cluster.restartRunner(i).catch((err: unknown) => log(`restart failed: ${err}`));
      }
    })();
    const sampler = setInterval(() => rssSamples.push(rssMb(pid, "VmRSS")), 250);

    // Submit with bounded concurrency; a refused submit waits as hinted and tries again.
    const ids: { id: string; request: number }[] = [];
    let next = 0;
    let finished = 0;
    const worker = async () => {
      for (;;) {
        const n = next++;
        if (n >= jobs) return;
        const request = n % distinct;
        let id = "";
        for (;;) {
          try {
            const { job } = await client.submit(requests[request]!, { idempotencyKey: `soak-${n}` });
            id = job.id;
            ids.push({ id, request });
            break;
          } catch (err) {
            const e = LavieError.from(err);
            if (e.code !== "resource_exhausted") throw e;
            admissionRefusals++;
            await sleep(Math.min(e.retryAfterMs ?? 1000, 1000));
          }
        }
        // Follow it to the end before submitting the next one on this worker.
        for (;;) {
          const j = await client.get(id).catch(() => null);
          if (j && (j.state === "succeeded" || j.state === "failed" || j.state === "cancelled")) break;
          await sleep(100);
        }
        finished++;
        if (finished % Math.max(1, Math.floor(jobs / 4)) === 0) {
          rssByQuarterMb.push(Math.round(rssMb(pid, "VmRSS")));
          log(`${finished}/${jobs} jobs finished`);
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    stop = true;
    await chaos;
    clearInterval(sampler);

    // Every submitted job is terminal; succeeded ones match the reference tile by tile.
    let succeeded = 0;
    let failed = 0;
    let vanished = 0;
    let tilesCompared = 0;
    let tilesDiffering = 0;
    const failureReasons: string[] = [];
    const terminal = (r: JobRecord | undefined) =>
      !!r && ["succeeded", "failed", "cancelled"].includes(r.state);
    for (const { id, request } of ids) {
      // The client saw it end; its record in NATS follows within moments (never more than 10 s).
      let r = (await records.get<JobRecord>(id))?.value;
      for (let i = 0; i < 100 && !terminal(r); i++) {
        await sleep(100);
        r = (await records.get<JobRecord>(id))?.value;
      }
      if (!r || !terminal(r)) {
        vanished++;
        continue;
      }
      if (r.state !== "succeeded") {
        failed++;
        failureReasons.push(r.error);
        continue;
      }
      succeeded++;
      for (const [taskId, ref] of Object.entries(r.done)) {
        tilesCompared++;
        if (reference.get(`${request}/${taskId}`) !== ref.digest) tilesDiffering++;
      }
    }
    vanished += jobs - ids.length;
    return {
      jobs,
      succeeded,
      failed,
      vanished,
      failureReasons,
      admissionRefusals,
      runnerKills,
      faultsInjected,
      tilesCompared,
      tilesDiffering,
      rssFirstMb: Math.round(rssSamples[0] ?? 0),
      rssLastMb: Math.round(rssSamples.at(-1) ?? 0),
      rssPeakMb: Math.round(rssMb(pid, "VmHWM")),
      rssByQuarterMb,
      durationMs: Date.now() - t0,
    };
  } finally {
    stop = true;
    client.close();
    await nats.close();
    await cluster.stop();
  }
}
