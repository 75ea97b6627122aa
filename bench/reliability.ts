/**
 * The figures of RELIABILITY.md, in one run (each part is also a test at a smaller size):
 *
 *   node --import tsx bench/reliability.ts [--part all|chaos|soak|fuzz] [--chaos-jobs 16]
 *       [--soak-jobs 500] [--fuzz-per-class 300] [--seed 1] [--out bench/results/reliability.json]
 *
 * chaos  test/support/chaos.ts: full tiny cascades (steps 2/1/1) submitted at once to an in-process
 *        coordinator with 3 runner processes; a runner SIGKILLed every 0.5-2 s and replaced; the
 *        runners also inject faults (LAVIE_FAULTS exit:0.02,corrupt:0.02,shape:0.02,hang:0.01 with a
 *        seed per process); production retry policy (4 attempts). Every succeeded job's tiles are
 *        compared bit for bit with an in-process run.
 * soak   test/support/soak.ts: tiny base-stage jobs through a whole local cluster (coordinator,
 *        3 runners, nats-server: all processes), 40 outstanding submissions against bounded queues
 *        (8 running + 24 waiting), runners killed every ~2.5 s and injecting corrupt/shape/fail/hang
 *        faults; every job followed to its end; tiles compared by digest with in-process runs;
 *        coordinator RSS sampled.
 * fuzz   test/support/fuzz.ts: --fuzz-per-class hostile requests per class to a coordinator and a
 *        runner process; the answers per class (gRPC codes) and whether both stayed healthy.
 */
import type { ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { LocalEngine, limitsOf } from "../coordinator/engine.ts";
import { resolveJob } from "../core/job.ts";
import { ensureModels } from "../models/cache.ts";
import { loadModelDirectory } from "../models/loader.ts";
import { runChaos } from "../test/support/chaos.ts";
import { formatTallies, healthCheck, runFuzz, type Tally } from "../test/support/fuzz.ts";
import { startNatsServer } from "../test/support/nats-server.ts";
import { startNodeProcess } from "../test/support/process.ts";
import { runSoak } from "../test/support/soak.ts";
import { connectNats } from "../transport/nats/connect.ts";
import { NatsTensorStore } from "../transport/nats/tensors.ts";

const { values } = parseArgs({
  options: {
    part: { type: "string", default: "all" },
    "chaos-jobs": { type: "string", default: "16" },
    "soak-jobs": { type: "string", default: "500" },
    "fuzz-per-class": { type: "string", default: "300" },
    seed: { type: "string", default: "1" },
    out: { type: "string", default: "bench/results/reliability.json" },
  },
});
const int = (name: keyof typeof values): number => {
  const n = Number(values[name]);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new Error(`--${name}: must be an integer >= 0, got ${values[name]}`);
  return n;
};
const part = values.part!;
if (!["all", "chaos", "soak", "fuzz"].includes(part))
  throw new Error(`--part: must be all, chaos, soak or fuzz, got ${part}`);
const seed = int("seed");
const log = (line: string) => process.stderr.write(`${line}\n`);
const out: Record<string, unknown> = { date: new Date().toISOString(), seed };

async function chaos(): Promise<void> {
  const nats = await startNatsServer();
  const modelDir = await ensureModels("tiny");
  const clients = await connectNats(nats.url, { name: "bench-reliability" });
  const engine = await LocalEngine.open(modelDir, { intraOpThreads: 1 });
  try {
    const report = await runChaos({
      natsUrl: nats.url,
      modelDir,
      engine,
      store: await NatsTensorStore.open(clients.objm),
      jobs: int("chaos-jobs"),
      runners: 3,
      seed,
      runnerEnv: (slot, generation) => ({
        LAVIE_FAULTS: `exit:0.02,corrupt:0.02,shape:0.02,hang:0.01,seed=${seed * 1000 + slot * 100 + generation}`,
      }),
      dispatcher: { progressTimeoutMs: 5_000 },
      timeoutMs: 900_000,
      log,
    });
    out.chaos = report;
    log(`chaos: ${JSON.stringify(report)}`);
  } finally {
    await engine.close();
    await clients.close();
    await nats.stop();
  }
}

async function soak(): Promise<void> {
  const report = await runSoak({ jobs: int("soak-jobs"), seed, log });
  out.soak = { ...report, failureReasons: report.failureReasons.slice(0, 20) };
  log(`soak: ${JSON.stringify(out.soak)}`);
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Math.round(Number(m[1]) / 1024) : 0;
}

async function fuzz(): Promise<void> {
  const nats = await startNatsServer();
  const modelDir = await ensureModels("tiny");
  const env = { LAVIE_NATS_URL: nats.url, LAVIE_MODEL_DIR: modelDir, LAVIE_METRICS_PORT: "0" };
  const children: ChildProcess[] = [];
  const clients = await connectNats(nats.url, { name: "bench-fuzz" });
  try {
    const [c, r] = await Promise.all([
      startNodeProcess("coordinator/main.ts", { ...env, LAVIE_GRPC_PORT: "0" }, /listening on \S+/),
      startNodeProcess(
        "stage-runners/main.ts",
        { ...env, LAVIE_RUNNER_ID: "fuzz-runner", LAVIE_ORT_THREADS: "1" },
        /listening on \S+/,
      ),
    ]);
    children.push(c.child, r.child);
    const coordinator = c.line.split(" ").pop()!;
    const runner = r.line.split(" ").pop()!;
    const spec = resolveJob(
      { prompt: "fuzz", stopAfter: "base", base: { steps: 1 } },
      limitsOf(await loadModelDirectory(modelDir)),
    );
    const tensors = await NatsTensorStore.open(clients.objm);
    const [h, w] = [spec.height / 8, spec.width / 8];
    const swapped = [1, 4, 4, w, h];
    const ref = await tensors.put("fuzz-job/stored/0", {
      shape: swapped,
      data: new Float32Array(4 * 4 * w * h).fill(0.5),
    });
    const coordClient = new grpc.Client(coordinator, grpc.credentials.createInsecure());
    const runnerClient = new grpc.Client(runner, grpc.credentials.createInsecure());
    const rss0 = { coordinator: rssMb(c.child.pid!), runner: rssMb(r.child.pid!) };
    let healthy = true;
    const t0 = performance.now();
    const tallies: Tally[] = await runFuzz(
      { coordinator, runner },
      {
        perClass: int("fuzz-per-class"),
        seed,
        deadlineMs: 10_000,
        spec,
        jobId: "fuzz-job",
        stored: { object: ref.object, digest: ref.digest, bytes: ref.bytes, shape: swapped },
        afterClass: async (t) => {
          const ok =
            c.child.exitCode === null &&
            r.child.exitCode === null &&
            (await healthCheck(coordClient)) === "SERVING" &&
            (await healthCheck(runnerClient)) === "SERVING";
          if (!ok) healthy = false;
          log(`fuzz: ${t.name}: ${JSON.stringify(t.answers)}${ok ? "" : " (a service is unhealthy)"}`);
        },
      },
    );
    coordClient.close();
    runnerClient.close();
    out.fuzz = {
      ms: Math.round(performance.now() - t0),
      healthy,
      rssMb: {
        coordinator: [rss0.coordinator, rssMb(c.child.pid!)],
        runner: [rss0.runner, rssMb(r.child.pid!)],
      },
      classes: tallies.map((t) => ({
        name: t.name,
        sent: t.sent,
        answers: t.answers,
        violations: t.violations.length,
        slowestMs: Math.round(t.slowestMs),
      })),
    };
    log(formatTallies(tallies));
  } finally {
    for (const ch of children) ch.kill("SIGKILL");
    await clients.close();
    await nats.stop();
  }
}

if (part === "all" || part === "fuzz") await fuzz();
if (part === "all" || part === "chaos") await chaos();
if (part === "all" || part === "soak") await soak();
mkdirSync(dirname(values.out!), { recursive: true });
writeFileSync(values.out!, `${JSON.stringify(out, null, 2)}\n`);
log(`wrote ${values.out}`);
process.exit(0);
