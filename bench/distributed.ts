/**
 * Distributed execution benchmarks: every figure is a ratio of two things measured side by side in
 * the same run, on one 2-core machine, over loopback.
 *
 *   node --import tsx bench/distributed.ts [--part all|overhead|scaling|dataplane|dispatch|assembly]
 *       [--frames 8] [--rounds 1] [--dispatch-jobs 20] [--dataplane-runs 3] [--assembly-tile 0] [--cache-dir /tmp/lavie-bench-cache]
 *       [--out bench/results/distributed.json]
 *
 * overhead  The same small-preset job (--frames base frames, steps base 4 / interpolation 2 / vsr 2,
 *           default splits) in-process (LocalEngine: 1 ORT worker x 2 intra-op threads) and
 *           distributed (nats-server + in-process Coordinator + one runner process serving every
 *           stage, 1 slot, LAVIE_ORT_THREADS=2), in the order A B B A (x --rounds). Each side runs
 *           the job once first (ORT session creation and first-shape warm-up excluded); the model
 *           directory is built/loaded before timing. Wall time: submit to the job's "done" event
 *           (tasks + MP4 encode + MP4 stored in NATS) vs generate() + MP4 encode to a file; and the
 *           "tasks only" time: submit to the last task's result vs generate().
 * scaling   A VSR-heavy small-preset job (stopAfter vsr, vsr.patch 32 = 2 x 3 patches per 64x96
 *           frame, steps 1 / 1 / 2) on 2 runner processes vs 1 (LAVIE_ORT_THREADS=1, 1 slot each),
 *           order 1 2 2 1 (x --rounds). Both runners stay up and warm; for "1 runner" the second is
 *           hidden from the dispatcher (its directory is filtered). VSR stage wall time = first VSR
 *           denoise task start to last VSR task (denoise or x4 decode) end, as observed by the
 *           coordinator's runner client. A CPU control (a JS spin loop on 1 vs 2 worker threads)
 *           before and after shows how much of a second core the machine gave at the time.
 * dataplane transport/nats/tensors.bench.ts (spawned --dataplane-runs times, sizes 16 and 256 MiB, 1 MiB
 *           chunks = the data plane's default): object-store put + get vs plain loopback TCP, same run.
 * dispatch  --dispatch-jobs tiny-preset jobs (stopAfter base, 1 base step, SD VAE decode one frame
 *           per task: 18 tasks per job, 16 of them ~1 ms VAE decodes), one after another on one
 *           runner (1 slot, 1 thread), after one warm-up job. Per task: overhead = coordinator-observed
 *           call time (RunnerClient.execute start -> TaskCompleted received) minus the runner-reported
 *           TaskCompleted.millis (the runner's run(): input fetch, compute, output put). Also the
 *           runner's idle gap between a task's end and the next queued task's start.
 * assembly  Peak RSS of a child process that runs storeResultVideo for a full-size lavie output
 *           [1,3,61,1280,2048] whose tiles (the lavie preset's vsr.frames plan with whole-frame x4
 *           decode: 16 frame groups of 4, last of 1) were put into NATS by this process beforehand.
 *           VmHWM from /proc/self/status (node process); ffmpeg's VmHWM polled separately.
 *
 * Hook (bench only, no product code changed): GrpcRunnerClient.prototype.execute is replaced by a
 * copy of itself that also records, per call, its start/end time and the runner's TaskCompleted.millis.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import type { RunnerDirectory, RunnerInfo, TaskCall, TensorRef } from "../coordinator/distributed/ports.ts";
import { storeResultVideo } from "../coordinator/distributed/result.ts";
import { LocalEngine } from "../coordinator/engine.ts";
import { planJob } from "../coordinator/plan/plan.ts";
import type { Plan, StageName } from "../coordinator/plan/types.ts";
import { Coordinator } from "../coordinator/server.ts";
import type { JobRequest, ModelLimits } from "../core/job.ts";
import { resolveJob } from "../core/job.ts";
import { tensor } from "../core/tensor.ts";
import { StageRunnerService } from "../gen/lavie/v1/runner_pb.ts";
import { floatToByte } from "../media/convert.ts";
import { encodeVideo } from "../media/index.ts";
import { ensureModels } from "../models/cache.ts";
import { getPreset, unetDivisor } from "../models/presets.ts";
import { startNatsServer } from "../test/support/nats-server.ts";
import { childEnv } from "../test/support/process.ts";
import { createClient, unary } from "../transport/grpc/adapter.ts";
import { GrpcRunnerClient } from "../transport/grpc/runner-client.ts";
import { connectNats } from "../transport/nats/connect.ts";
import { NatsTensorStore } from "../transport/nats/tensors.ts";

const PROMPT = "a panda playing guitar on a beach";
const MB = 1e6;

// ---------------------------------------------------------------------------------------------
// Hook: the runner client, timed.

interface CallRecord {
  jobId: string;
  taskId: string;
  stage: StageName;
  kind: string;
  runner: string;
  t0: number;
  t1: number;
  /** TaskCompleted.millis: what the runner measured. */
  millis: number;
}
const calls: CallRecord[] = [];
/** The product runner client, wrapped to also record each call's timing (bench only). */
const untimedExecute = GrpcRunnerClient.prototype.execute;
GrpcRunnerClient.prototype.execute = async function (runner: RunnerInfo, call: TaskCall): Promise<TensorRef> {
  const t0 = performance.now();
  let millis = Number.NaN;
  const ref = await untimedExecute.call(this, runner, {
    ...call,
    onCompleted: (m) => {
      millis = m;
      call.onCompleted?.(m);
    },
  });
  calls.push({
    jobId: call.jobId,
    taskId: call.task.id,
    stage: call.task.stage,
    kind: call.task.kind,
    runner: runner.id,
    t0,
    t1: performance.now(),
    millis,
  });
  return ref;
};

// ---------------------------------------------------------------------------------------------
// Helpers: processes, statistics, formatting.

const children = new Set<ChildProcess>();
const cleanups: (() => Promise<void>)[] = [];

function startRunner(
  natsUrl: string,
  modelDir: string,
  id: string,
  env: Record<string, string>,
): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", "stage-runners/main.ts"], {
    env: childEnv({
      LAVIE_NATS_URL: natsUrl,
      LAVIE_MODEL_DIR: modelDir,
      LAVIE_RUNNER_ID: id,
      LAVIE_RUNNER_SLOTS: "1",
      ...env,
    }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  child.once("exit", () => children.delete(child));
  let err = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (s: string) => {
    err = (err + s).slice(-8192);
  });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.setEncoding("utf8");
    const onData = (s: string) => {
      out += s;
      if (/listening on \S+/.test(out)) {
        child.stdout!.off("data", onData);
        child.stdout!.resume();
        child.removeListener("exit", onExit);
        resolve(child);
      }
    };
    const onExit = (code: number | null) =>
      reject(new Error(`runner ${id} exited with ${code} before it was ready: ${out}\n${err}`));
    child.stdout!.on("data", onData);
    child.once("exit", onExit);
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(t);
}

async function cleanup(): Promise<void> {
  await Promise.all([...children].map(stopChild));
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => {});
}

/** The coordinator's runner directory (private field; bench-only access, as the fault tests do). */
function directoryOf(c: Coordinator): RunnerDirectory {
  return (c as unknown as { dispatcher: { runners: RunnerDirectory } }).dispatcher.runners;
}

async function waitRunners(c: Coordinator, n: number): Promise<void> {
  const dir = directoryOf(c);
  for (let i = 0; i < 600 && dir.list().length < n; i++) await sleep(50);
  if (dir.list().length < n) throw new Error(`only ${dir.list().length} of ${n} runners registered`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs a job through the coordinator; resolves at its "done" event with timings. */
async function runJob(
  c: Coordinator,
  req: JobRequest,
): Promise<{ id: string; wallMs: number; tasksMs: number; t0: number }> {
  const t0 = performance.now();
  const { record } = await c.jobs.submit(req);
  const id = record.id;
  const timeoutMs = 150_000;
  let timer: NodeJS.Timeout | undefined;
  await new Promise<void>((resolve, reject) => {
    timer = setTimeout(() => {
      const stats = (c as unknown as { dispatcher: { stats(): unknown } }).dispatcher.stats();
      reject(
        new Error(
          `job ${id} not done after ${timeoutMs} ms: progress ${JSON.stringify(c.jobs.progress(id))}, dispatcher ${JSON.stringify(stats)}, runners ${JSON.stringify(directoryOf(c).list())}`,
        ),
      );
    }, timeoutMs);
    const un = c.jobs.subscribe(id, (e) => {
      if (e.type === "done") {
        un();
        resolve();
      } else if (e.type === "failed" || e.type === "cancelled") {
        un();
        reject(new Error(`job ${id} ${e.type}: ${e.type === "failed" ? e.reason : ""}`));
      }
    });
    // In case it ended before subscribe (it cannot for a real job, but be safe).
    void c.jobs.get(id).then((r) => {
      if (r.state === "succeeded") resolve();
      else if (r.state === "failed" || r.state === "cancelled") reject(new Error(`job ${id} ${r.state}`));
    });
  }).finally(() => clearTimeout(timer));
  const wallMs = performance.now() - t0;
  const mine = calls.filter((x) => x.jobId === id);
  const tasksMs = Math.max(...mine.map((x) => x.t1)) - t0;
  return { id, wallMs, tasksMs, t0 };
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const s1 = (ms: number) => (ms / 1000).toFixed(1);
const f2 = (x: number) => x.toFixed(2);
const mb = (bytes: number) => (bytes / MB).toFixed(0);
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(" / ");

async function models(preset: string, cacheDir: string): Promise<string> {
  const t = performance.now();
  const dir = await ensureModels(preset, { cacheDir });
  console.error(`models ${preset}: ${dir} (${s1(performance.now() - t)} s)`);
  return dir;
}

async function nats(): Promise<Awaited<ReturnType<typeof startNatsServer>>> {
  const srv = await startNatsServer();
  cleanups.push(() => srv.stop());
  return srv;
}

// ---------------------------------------------------------------------------------------------
// CPU control: how much a second core gives right now (JS spin loop, 1 vs 2 worker threads).

const SPIN = `
const { parentPort, workerData } = require("node:worker_threads");
let x = 0;
for (let i = 0; i < workerData; i++) x = (x * 1103515245 + 12345) % 2147483647;
parentPort.postMessage(x);
`;

async function spin(workers: number, iters: number): Promise<number> {
  const t = performance.now();
  await Promise.all(
    Array.from(
      { length: workers },
      () =>
        new Promise<void>((resolve, reject) => {
          const w = new Worker(SPIN, { eval: true, workerData: iters });
          w.once("message", () => {
            void w.terminate();
            resolve();
          });
          w.once("error", reject);
        }),
    ),
  );
  return performance.now() - t;
}

/** Throughput of 2 threads / 1 thread on a fixed spin loop (2.0 = a free second core). */
async function cpuControl(): Promise<number> {
  const iters = 20_000_000;
  const one = await spin(1, iters);
  const two = await spin(2, iters);
  const one2 = await spin(1, iters);
  return (2 * ((one + one2) / 2)) / two;
}

// ---------------------------------------------------------------------------------------------
// 1. Orchestration overhead.

async function overhead(
  cacheDir: string,
  frames: number,
  rounds: number,
): Promise<{ md: string; json: unknown }> {
  const loadBefore = load();
  const dir = await models("small", cacheDir);
  const srv = await nats();
  await startRunner(srv.url, dir, "bench-all", { LAVIE_ORT_THREADS: "2" });
  const c = await Coordinator.start({ natsUrl: srv.url, modelDir: dir });
  cleanups.push(() => c.stop());
  await waitRunners(c, 1);
  const engine = await LocalEngine.open(dir, { workers: 1, intraOpThreads: 2, verifyHashes: false });
  cleanups.push(() => engine.close());
  const tmp = await mkdtemp(join(tmpdir(), "lavie-bench-"));
  cleanups.push(() => rm(tmp, { recursive: true, force: true }));

  const req: JobRequest = {
    prompt: PROMPT,
    seed: 1,
    frames,
    base: { steps: 4 },
    interpolation: { steps: 2 },
    vsr: { steps: 2 },
  };
  const spec = engine.resolve(req);
  const tasks = engine.plan(spec).tasks.length;

  interface Run {
    wallMs: number;
    tasksMs: number;
    /** Sum of task times: in-process task_finished ms; distributed: the runner's TaskCompleted.millis. */
    taskSumMs: number;
    /** Distributed only: sum of call time - runner millis. */
    callOverMs: number;
    /** Distributed only: sum of coordinator-side call times. */
    callSumMs: number;
    byKind: Record<string, number>;
  }
  const local = async (): Promise<Run> => {
    const byKind: Record<string, number> = {};
    const t0 = performance.now();
    const r = await engine.generate(spec, {
      onEvent: (e) => {
        if (e.type !== "task_finished") return;
        const k = `${e.task.stage}/${e.task.kind}`;
        byKind[k] = (byKind[k] ?? 0) + e.ms;
      },
    });
    const tasksMs = performance.now() - t0;
    const [, , F, H, W] = r.frames.shape as [number, number, number, number, number];
    const hw = H * W;
    const data = r.frames.data;
    async function* rgb(): AsyncGenerator<Uint8Array> {
      for (let f = 0; f < F; f++) {
        const out = new Uint8Array(hw * 3);
        for (let ch = 0; ch < 3; ch++) {
          const base = (ch * F + f) * hw;
          for (let i = 0; i < hw; i++) out[i * 3 + ch] = floatToByte(data[base + i]!);
        }
        yield out;
      }
    }
    await encodeVideo(join(tmp, "local.mp4"), rgb(), { width: W, height: H, fps: r.fps });
    const taskSumMs = Object.values(byKind).reduce((a, b) => a + b, 0);
    return { wallMs: performance.now() - t0, tasksMs, taskSumMs, callOverMs: 0, callSumMs: 0, byKind };
  };
  const dist = async (): Promise<Run> => {
    const j = await runJob(c, req);
    const mine = calls.filter((x) => x.jobId === j.id);
    const byKind: Record<string, number> = {};
    for (const x of mine) byKind[`${x.stage}/${x.kind}`] = (byKind[`${x.stage}/${x.kind}`] ?? 0) + x.millis;
    const taskSumMs = mine.reduce((a, x) => a + x.millis, 0);
    const callSumMs = mine.reduce((a, x) => a + x.t1 - x.t0, 0);
    return { ...j, taskSumMs, callSumMs, callOverMs: callSumMs - taskSumMs, byKind };
  };

  console.error("overhead: warm-up (in-process, distributed)");
  await local();
  await dist();
  const rows: (Run & { order: number; mode: "in-process" | "distributed" })[] = [];
  let order = 0;
  for (let r = 0; r < rounds; r++) {
    for (const mode of ["in-process", "distributed", "distributed", "in-process"] as const) {
      const x = mode === "in-process" ? await local() : await dist();
      rows.push({ ...x, order: ++order, mode });
      console.error(`overhead: ${mode} ${s1(x.wallMs)} s (tasks ${s1(x.tasksMs)} s)`);
    }
  }
  const loadAfter = load();
  const by = (m: string) => rows.filter((x) => x.mode === m);
  const lw = mean(by("in-process").map((x) => x.wallMs));
  const dw = mean(by("distributed").map((x) => x.wallMs));
  const lt = mean(by("in-process").map((x) => x.tasksMs));
  const dt = mean(by("distributed").map((x) => x.tasksMs));
  const ratio = dw / lw;
  const ratioTasks = dt / lt;
  const md = [
    `Preset small, ${spec.frames} base frames ${spec.height}x${spec.width} -> 1x3x${(spec.frames - 1) * 4 + 1}x${spec.height * 4}x${spec.width * 4}; steps base ${spec.base.steps}, interpolation ${spec.interpolation.steps}, vsr ${spec.vsr.steps} (reduced from 20/10/10 to keep the run short); default splits; ${tasks} tasks. In-process: LocalEngine, 1 ORT worker x 2 intra-op threads. Distributed: nats-server + in-process Coordinator + 1 runner process (all stages, 1 slot, LAVIE_ORT_THREADS=2), loopback. Each side ran the job once before timing (session creation / warm-up excluded).`,
    "",
    "| # | mode | wall s (to MP4) | tasks only s | sum of task times s | sum of call overheads s | idle s (tasks only - busy) |",
    "|---|---|---|---|---|---|---|",
    ...rows.map(
      (x) =>
        `| ${x.order} | ${x.mode} | ${s1(x.wallMs)} | ${s1(x.tasksMs)} | ${s1(x.taskSumMs)} | ${
          x.mode === "distributed" ? s1(x.callOverMs) : "-"
        } | ${s1(x.tasksMs - (x.mode === "distributed" ? x.callSumMs : x.taskSumMs))} |`,
    ),
    `| | **ratio distributed / in-process** | **${f2(ratio)}** | **${f2(ratioTasks)}** | ${f2(
      mean(by("distributed").map((x) => x.taskSumMs)) / mean(by("in-process").map((x) => x.taskSumMs)),
    )} | | |`,
    "",
    "Task time by stage/kind (mean of the measured runs): in-process = executor task_finished ms; distributed = runner-reported TaskCompleted.millis (includes the runner fetching inputs from and putting its output to NATS).",
    "",
    "| stage/kind | tasks | in-process s | distributed (runner) s | ratio |",
    "|---|---|---|---|---|",
    ...Object.keys(rows[0]!.byKind).map((k) => {
      const l = mean(by("in-process").map((x) => x.byKind[k] ?? 0));
      const d = mean(by("distributed").map((x) => x.byKind[k] ?? 0));
      const n = engine.plan(spec).tasks.filter((t) => `${t.stage}/${t.kind}` === k).length;
      return `| ${k} | ${n} | ${f2(l / 1000)} | ${f2(d / 1000)} | ${f2(d / l)} |`;
    }),
    "",
    `Sum of task times: in-process task_finished ms; distributed: runner-reported millis. Call overhead = coordinator-side call time - runner millis; idle = time the single slot had no task. "wall": distributed = submit -> "done" event (tasks, MP4 encode, MP4 stored in NATS); in-process = generate() + MP4 encode to a file. "tasks only": distributed = submit -> last task's result received; in-process = generate(). Target <= 1.05: ${ratio <= 1.05 ? "met" : "**not met**"} (wall), ${ratioTasks <= 1.05 ? "met" : "**not met**"} (tasks only). Load average (1/5/15 min) before ${loadBefore}, after ${loadAfter}.`,
  ].join("\n");
  await cleanup();
  return { md, json: { spec, tasks, rows, ratio, ratioTasks, loadBefore, loadAfter } };
}

// ---------------------------------------------------------------------------------------------
// 2. VSR patch scaling.

async function scaling(
  cacheDir: string,
  frames: number,
  rounds: number,
): Promise<{ md: string; json: unknown }> {
  const loadBefore = load();
  const cpuBefore = await cpuControl();
  const dir = await models("small", cacheDir);
  const srv = await nats();
  await Promise.all([
    startRunner(srv.url, dir, "bench-r1", { LAVIE_ORT_THREADS: "1" }),
    startRunner(srv.url, dir, "bench-r2", { LAVIE_ORT_THREADS: "1" }),
  ]);
  const c = await Coordinator.start({ natsUrl: srv.url, modelDir: dir });
  cleanups.push(() => c.stop());
  await waitRunners(c, 2);
  const directory = directoryOf(c);
  const all = directory.list.bind(directory);
  const hidden = new Set<string>();
  directory.list = () => all().filter((r) => !hidden.has(r.id));

  const req: JobRequest = {
    prompt: PROMPT,
    seed: 2,
    frames,
    stopAfter: "vsr",
    base: { steps: 1 },
    interpolation: { steps: 1 },
    vsr: { steps: 2, patch: 32 },
  };

  const measure = async (nRunners: 1 | 2) => {
    if (nRunners === 1) hidden.add("bench-r2");
    else hidden.delete("bench-r2");
    const cpu = await cpuControl();
    const j = await runJob(c, req);
    const mine = calls.filter((x) => x.jobId === j.id);
    const vsr = mine.filter((x) => x.stage === "vsr" && x.kind !== "text");
    const start = Math.min(...vsr.filter((x) => x.kind === "vsr_denoise").map((x) => x.t0));
    const end = Math.max(...vsr.map((x) => x.t1));
    const busy: Record<string, number> = {};
    for (const x of vsr) busy[x.runner] = (busy[x.runner] ?? 0) + (x.t1 - x.t0);
    return {
      runners: nRunners,
      cpu,
      vsrMs: end - start,
      jobMs: j.wallMs,
      vsrTasks: vsr.length,
      denoise: vsr.filter((x) => x.kind === "vsr_denoise").length,
      decode: vsr.filter((x) => x.kind === "vae_decode").length,
      busy,
    };
  };

  console.error("scaling: warm-up (2 runners)");
  await measure(2);
  const rows: Awaited<ReturnType<typeof measure>>[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const n of [1, 2, 2, 1] as const) {
      const x = await measure(n);
      rows.push(x);
      console.error(`scaling: ${n} runner(s): VSR ${s1(x.vsrMs)} s, job ${s1(x.jobMs)} s`);
    }
  }
  const cpuAfter = await cpuControl();
  const loadAfter = load();
  const one = mean(rows.filter((x) => x.runners === 1).map((x) => x.vsrMs));
  const two = mean(rows.filter((x) => x.runners === 2).map((x) => x.vsrMs));
  const speedup = one / two;
  const jobSpeedup =
    mean(rows.filter((x) => x.runners === 1).map((x) => x.jobMs)) /
    mean(rows.filter((x) => x.runners === 2).map((x) => x.jobMs));
  const r0 = rows[0]!;
  const md = [
    `Preset small, ${frames} base frames -> VSR input ${(frames - 1) * 4 + 1} frames x 64x96, stopAfter vsr; steps base 1, interpolation 1, vsr 2; vsr.patch 32 (2 x 3 patches per frame, no overlap), VSR chunks of 8 frames: ${r0.denoise} VSR denoise tasks + ${r0.decode} x4 decode tasks (default 32-px tiles, overlap 8). Runner processes: 1 slot, LAVIE_ORT_THREADS=1 each. Order 1 2 2 1 after one warm-up job on both runners.`,
    "",
    "| # | runners | VSR stage wall s | whole job s | VSR busy s per runner | CPU control just before |",
    "|---|---|---|---|---|---|",
    ...rows.map(
      (x, i) =>
        `| ${i + 1} | ${x.runners} | ${s1(x.vsrMs)} | ${s1(x.jobMs)} | ${Object.entries(x.busy)
          .map(([k, v]) => `${k.replace("bench-", "")} ${s1(v)}`)
          .join(", ")} | ${f2(x.cpu)} |`,
    ),
    `| | **speed-up 1 -> 2 runners** | **${f2(speedup)}x** | ${f2(jobSpeedup)}x | | |`,
    "",
    `CPU control (a JS spin loop on worker threads, throughput of 2 threads / 1 thread; 2.00 = a free second core), before each row and ${f2(cpuBefore)} before / ${f2(cpuAfter)} after the whole part. Speed-up = mean VSR time of the 1-runner rows / mean of the 2-runner rows. Target >= 1.8x: ${speedup >= 1.8 ? "met" : "**not met**"}. Load average (1/5/15 min) before ${loadBefore}, after ${loadAfter}.`,
  ].join("\n");
  await cleanup();
  return { md, json: { req, rows, speedup, jobSpeedup, cpuBefore, cpuAfter, loadBefore, loadAfter } };
}

// ---------------------------------------------------------------------------------------------
// 3. Data plane: transport/nats/tensors.bench.ts, spawned.

async function dataplane(reps: number): Promise<{ md: string; json: unknown }> {
  const loadBefore = load();
  interface Line {
    rep: number;
    what: string;
    mib: number;
    put: number;
    get: number;
    rt: number;
  }
  const lines: Line[] = [];
  const re = /^(.+?)\s+(\d+) MiB\s+put\s+(\d+) MB\/s\s+get\s+(\d+) MB\/s\s+round trip\s+(\d+) MB\/s/;
  const raw: string[] = [];
  for (let rep = 1; rep <= reps; rep++) {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "transport/nats/tensors.bench.ts", "16,256", "1024"],
      { env: childEnv(), stdio: ["ignore", "pipe", "inherit"] },
    );
    children.add(child);
    let out = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (s: string) => {
      out += s;
    });
    const code = await new Promise<number | null>((r) => child.once("exit", r));
    children.delete(child);
    if (code !== 0) throw new Error(`tensors.bench.ts exited with ${code}:\n${out}`);
    raw.push(out);
    for (const l of out.split("\n")) {
      const m = re.exec(l);
      if (m) lines.push({ rep, what: m[1]!.trim(), mib: +m[2]!, put: +m[3]!, get: +m[4]!, rt: +m[5]! });
    }
    console.error(`dataplane: run ${rep} of ${reps} done`);
  }
  const loadAfter = load();
  const STORE = "object store 1024 KiB sha=native";
  const rows: string[] = [];
  const ratios: Record<number, number[]> = {};
  for (const mib of [16, 256]) {
    const whats = [...new Set(lines.filter((x) => x.mib === mib).map((x) => x.what))];
    for (const what of whats) {
      const xs = lines.filter((x) => x.mib === mib && x.what === what);
      const rs = xs.map((x) => {
        const tcp = lines.find((y) => y.mib === mib && y.rep === x.rep && y.what === "tcp loopback")!;
        return x.rt / tcp.rt;
      });
      if (what === STORE) ratios[mib] = rs;
      const med = (k: "put" | "get" | "rt") =>
        quantile(
          xs.map((x) => x[k]),
          0.5,
        ).toFixed(0);
      const isStore = what === STORE;
      const r = `${f2(quantile(rs, 0.5))} (${rs.map(f2).join(", ")})`;
      rows.push(
        `| ${mib} | ${isStore ? `**${what}** (data plane)` : what} | ${med("put")} | ${med("get")} | ${med("rt")} | ${
          isStore ? `**${r}**` : what === "tcp loopback" ? "1.00" : r
        } |`,
      );
    }
  }
  const met = [16, 256].map((mib) => quantile(ratios[mib] ?? [], 0.5) >= 0.5);
  const md = [
    `\`node --import tsx transport/nats/tensors.bench.ts 16,256 1024\`, spawned ${reps} times by this benchmark (each run: TCP, core NATS and object store side by side, its own nats-server): one float32 tensor put then got back; round trip = size / (put + get time). TCP: the same bytes sent to a loopback server that keeps them, then sent back. MB/s columns: median of the ${reps} runs; ratio: median of the per-run ratios (each run's own TCP figure), per-run values in parentheses.`,
    "",
    "| MiB | path | put MB/s | get MB/s | round trip MB/s | round trip / TCP |",
    "|---|---|---|---|---|---|",
    ...rows,
    "",
    `Target: data plane (object store, 1 MiB chunks, native SHA-256) round trip >= 50% of TCP: 16 MiB ${met[0] ? "met" : "**not met**"}, 256 MiB ${met[1] ? "met" : "**not met**"}. Load average (1/5/15 min) before ${loadBefore}, after ${loadAfter}.`,
  ].join("\n");
  return { md, json: { lines, ratios, loadBefore, loadAfter, raw } };
}

// ---------------------------------------------------------------------------------------------
// 4. Dispatch overhead per task.

async function dispatch(cacheDir: string, jobs: number): Promise<{ md: string; json: unknown }> {
  const loadBefore = load();
  const dir = await models("tiny", cacheDir);
  const srv = await nats();
  await startRunner(srv.url, dir, "bench-tiny", { LAVIE_ORT_THREADS: "1" });
  const c = await Coordinator.start({ natsUrl: srv.url, modelDir: dir });
  cleanups.push(() => c.stop());
  await waitRunners(c, 1);
  const req = (seed: number): JobRequest => ({
    prompt: PROMPT,
    seed,
    stopAfter: "base",
    base: { steps: 1 },
    decode: { baseFrames: 1 },
  });
  console.error("dispatch: warm-up job");
  await runJob(c, req(0));
  const ids = new Set<string>();
  const jobMs: number[] = [];
  for (let i = 1; i <= jobs; i++) {
    const j = await runJob(c, req(i));
    ids.add(j.id);
    jobMs.push(j.wallMs);
  }
  // Reference: a bare gRPC unary round trip to the same runner (Describe), same connection settings.
  const info = directoryOf(c).list()[0]!;
  const rpc = createClient(StageRunnerService, info.address);
  const rtt: number[] = [];
  for (let i = 0; i < 220; i++) {
    const t = performance.now();
    await unary(rpc, StageRunnerService, "describe", {});
    if (i >= 20) rtt.push(performance.now() - t);
  }
  rpc.close();
  const loadAfter = load();
  const mine = calls.filter((x) => ids.has(x.jobId)).sort((a, b) => a.t0 - b.t0);
  const over = mine.map((x) => x.t1 - x.t0 - x.millis);
  const kinds = [...new Set(mine.map((x) => x.kind))];
  const row = (label: string, xs: CallRecord[]) => {
    const o = xs.map((x) => x.t1 - x.t0 - x.millis);
    const m = xs.map((x) => x.millis);
    const w = xs.map((x) => x.t1 - x.t0);
    return `| ${label} | ${xs.length} | ${f2(quantile(m, 0.5))} | ${f2(quantile(w, 0.5))} | **${f2(quantile(o, 0.5))}** | **${f2(quantile(o, 0.9))}** | ${f2(mean(o))} |`;
  };
  // Runner idle gaps: between consecutive tasks of the same job when the next one started within
  // 50 ms (i.e. it was queued: the 16 VAE decodes become ready together).
  const gaps: number[] = [];
  for (let i = 1; i < mine.length; i++) {
    const a = mine[i - 1]!;
    const b = mine[i]!;
    if (a.jobId === b.jobId && a.kind === "vae_decode" && b.kind === "vae_decode") gaps.push(b.t0 - a.t1);
  }
  const p50 = quantile(over, 0.5);
  const p90 = quantile(over, 0.9);
  const md = [
    `Preset tiny; ${jobs} jobs one after another (after 1 warm-up job), each stopAfter base, 1 base step, decode.baseFrames 1: 1 text + 1 base denoise + 16 one-frame SD VAE decodes per job. One runner process (1 slot, LAVIE_ORT_THREADS=1), in-process Coordinator, loopback. Per task: "call" = coordinator-side RunnerClient.execute from start to TaskCompleted; "runner" = TaskCompleted.millis (runner's run(): inputs fetched from NATS, network run, output put to NATS); overhead = call - runner (gRPC request/stream, task/spec JSON, request validation).`,
    "",
    "| tasks | n | runner ms p50 | call ms p50 | overhead ms p50 | overhead ms p90 | overhead ms mean |",
    "|---|---|---|---|---|---|---|",
    row("all", mine),
    ...kinds.map((k) =>
      row(
        k,
        mine.filter((x) => x.kind === k),
      ),
    ),
    "",
    `Runner idle gap between two queued VAE decodes of a job (previous TaskCompleted received -> next call started): p50 ${f2(quantile(gaps, 0.5))} ms, p90 ${f2(quantile(gaps, 0.9))} ms (n ${gaps.length}). Reference: a bare gRPC unary call (Describe) to the same runner, 200 calls after 20 warm-up: p50 ${f2(quantile(rtt, 0.5))} ms, p90 ${f2(quantile(rtt, 0.9))} ms. Job wall time (submit -> done, incl. a 16-frame 32x48 MP4) p50 ${f2(quantile(jobMs, 0.5))} ms. Target overhead <= 2 ms: ${p50 <= 2 ? "met" : "**not met**"} at the median, ${p90 <= 2 ? "met" : "**not met**"} at p90. Load average (1/5/15 min) before ${loadBefore}, after ${loadAfter}.`,
  ].join("\n");
  await cleanup();
  return { md, json: { jobs, p50, p90, gaps, rtt, calls: mine, jobMs, loadBefore, loadAfter } };
}

// ---------------------------------------------------------------------------------------------
// 5. Coordinator peak RSS while assembling a full-size output.

/** The lavie preset's limits and plan parameters, from the preset (its models are not runnable). */
function lavieResultPlan(vsrTile: number): { plan: Plan } {
  const p = getPreset("lavie");
  const vaeFactor = 2 ** (p.sdVae.blockChannels.length - 1);
  const vsrScale = 2 ** (p.x4Vae.blockChannels.length - 1);
  const limits: ModelLimits = {
    preset: "lavie",
    base: { ...p.base },
    divisor: {
      base: unetDivisor(p.baseUnet),
      interpolation: unetDivisor(p.interpUnet),
      vsr: unetDivisor(p.vsrUnet),
    },
    vaeFactor,
    vsrScale,
    defaultSteps: { ...p.steps },
    maxTokens: p.clipText.positions,
  };
  const spec = resolveJob({ prompt: PROMPT, decode: { vsrTile, vsrTileOverlap: vsrTile ? 8 : 0 } }, limits);
  const full = planJob(spec, {
    clipWidth: p.clipText.width,
    vsrTextWidth: p.vsrText.width,
    sdScaling: p.sdVae.scalingFactor,
    x4Scaling: p.x4Vae.scalingFactor,
    vaeFactor,
    vsrScale,
    divisor: { vsr: unetDivisor(p.vsrUnet) },
  });
  const result = full.tensors[full.result]!;
  return { plan: { tensors: { [full.result]: result }, tasks: [], result: full.result, fps: full.fps } };
}

async function statusKiB(pid: number | "self", key: "VmHWM" | "VmRSS"): Promise<number> {
  try {
    const s = await readFile(`/proc/${pid}/status`, "utf8");
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(s);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Child mode: runs storeResultVideo and prints its memory figures as JSON. */
async function assemblyChild(file: string): Promise<void> {
  const args = JSON.parse(await readFile(file, "utf8")) as {
    natsUrl: string;
    vsrTile: number;
    refs: TensorRef[];
  };
  const { plan } = lavieResultPlan(args.vsrTile);
  const nc = await connectNats(args.natsUrl, { name: "bench-assembly", jsTimeout: 60_000 });
  const store = await NatsTensorStore.open(nc.objm);
  const baseline = await statusKiB("self", "VmRSS");
  // ffmpeg runs as this process's child: poll its VmHWM (monotone) while it lives.
  let ffmpegKiB = 0;
  const poll = setInterval(() => {
    void (async () => {
      try {
        const kids = await readFile(`/proc/self/task/${process.pid}/children`, "utf8");
        for (const pid of kids.trim().split(/\s+/).filter(Boolean)) {
          ffmpegKiB = Math.max(ffmpegKiB, await statusKiB(Number(pid), "VmHWM"));
        }
      } catch {
        // no children yet
      }
    })();
  }, 100);
  const t = performance.now();
  const video = await storeResultVideo(plan, (i) => args.refs[i]!, store, "results/bench.mp4");
  const ms = performance.now() - t;
  clearInterval(poll);
  const hwm = await statusKiB("self", "VmHWM");
  const maxRSS = process.resourceUsage().maxRSS;
  await nc.close();
  process.stdout.write(
    `${JSON.stringify({ baselineKiB: baseline, vmHWMKiB: hwm, maxRSSKiB: maxRSS, ffmpegKiB, ms, video })}\n`,
  );
}

async function assembly(vsrTile: number): Promise<{ md: string; json: unknown }> {
  const loadBefore = load();
  const srv = await nats();
  const nc = await connectNats(srv.url, { name: "bench-assembly-put", jsTimeout: 60_000 });
  cleanups.push(() => nc.close());
  const store = await NatsTensorStore.open(nc.objm);
  const { plan } = lavieResultPlan(vsrTile);
  const tp = plan.tensors[plan.result]!.tiles;
  const [, , F, H, W] = tp.shape as [number, number, number, number, number];
  const refs: TensorRef[] = [];
  const tPut = performance.now();
  for (let i = 0; i < tp.tiles.length; i++) {
    const box = tp.tiles[i]!.box;
    const t = tensor(box.size);
    // A moving diagonal ramp in [-1, 1] per frame and channel, so the encoder sees motion.
    const [, C, Fn, h, w] = box.size as [number, number, number, number, number];
    let at = 0;
    for (let c = 0; c < C; c++)
      for (let f = 0; f < Fn; f++) {
        const off = (box.start[2]! + f) * 8 + c * 40;
        for (let y = 0; y < h; y++) {
          const row = (box.start[3]! + y + off) & 255;
          for (let x = 0; x < w; x++) t.data[at++] = ((row + box.start[4]! + x) & 255) / 127.5 - 1;
        }
      }
    refs.push(await store.put(`bench/vsr.frames/${i}`, t));
  }
  const putMs = performance.now() - tPut;
  console.error(`assembly: ${refs.length} tiles put in ${s1(putMs)} s`);
  const tmp = await mkdtemp(join(tmpdir(), "lavie-bench-"));
  cleanups.push(() => rm(tmp, { recursive: true, force: true }));
  const file = join(tmp, "args.json");
  await writeFile(file, JSON.stringify({ natsUrl: srv.url, vsrTile, refs }));
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "bench/distributed.ts", "--assembly-child", file],
    {
      env: childEnv(),
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  children.add(child);
  let out = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (s: string) => {
    out += s;
  });
  const code = await new Promise<number | null>((r) => child.once("exit", r));
  children.delete(child);
  if (code !== 0) throw new Error(`assembly child exited with ${code}: ${out}`);
  const r = JSON.parse(out.trim().split("\n").pop()!) as {
    baselineKiB: number;
    vmHWMKiB: number;
    maxRSSKiB: number;
    ffmpegKiB: number;
    ms: number;
    video: { bytes: number };
  };
  const loadAfter = load();
  const floatBytes = F * 3 * H * W * 4;
  const rgbBytes = F * 3 * H * W;
  const peak = r.vmHWMKiB * 1024;
  const tileBytes = Math.max(...refs.map((x) => x.bytes));
  const md = [
    `Result tensor [1,3,${F},${H},${W}] of the lavie preset's plan (${vsrTile ? `x4 decode tiles ${vsrTile} latent px, overlap 8` : "whole-frame x4 decode"}): ${refs.length} tiles (frame groups of 4${vsrTile ? " x spatial tiles" : ", the last of 1 frame"}; largest ${mb(tileBytes)} MB), synthetic moving ramps, put into NATS by the parent (${s1(putMs)} s). A child process then ran storeResultVideo (fetch tiles group by group, rgb24, ffmpeg libx264, MP4 stored in NATS): ${s1(r.ms)} s, MP4 ${(r.video.bytes / 1e3).toFixed(0)} kB.`,
    "",
    "| what | MB |",
    "|---|---|",
    `| whole output as float32 | ${mb(floatBytes)} |`,
    `| whole output as rgb24 | ${mb(rgbBytes)} |`,
    `| one frame group (4 frames) as float32 | ${mb(4 * 3 * H * W * 4)} |`,
    `| child (node) RSS after imports + NATS connect, before assembly | ${mb(r.baselineKiB * 1024)} |`,
    `| **child (node) peak RSS, VmHWM** | **${mb(peak)}** |`,
    `| child (node) maxRSS, process.resourceUsage() | ${mb(r.maxRSSKiB * 1024)} |`,
    `| ffmpeg (separate process) peak RSS, polled VmHWM | ${mb(r.ffmpegKiB * 1024)} |`,
    "",
    `Peak RSS = ${f2(peak / floatBytes)} x the float32 output, ${f2(peak / rgbBytes)} x the rgb24 output. Target <= 400 MB: ${peak <= 400 * MB ? "met" : "**not met**"}. Load average (1/5/15 min) before ${loadBefore}, after ${loadAfter}.`,
  ].join("\n");
  await cleanup();
  return {
    md,
    json: { shape: tp.shape, tiles: refs.length, putMs, ...r, floatBytes, rgbBytes, loadBefore, loadAfter },
  };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      part: { type: "string", default: "all" },
      frames: { type: "string", default: "8" },
      rounds: { type: "string", default: "1" },
      "dispatch-jobs": { type: "string", default: "20" },
      "dataplane-runs": { type: "string", default: "3" },
      "assembly-tile": { type: "string", default: "0" },
      "cache-dir": { type: "string", default: "/tmp/lavie-bench-cache" },
      out: { type: "string", default: "bench/results/distributed.json" },
      "assembly-child": { type: "string" },
    },
  });
  if (values["assembly-child"]) return assemblyChild(values["assembly-child"]);
  const parts = ["overhead", "scaling", "dataplane", "dispatch", "assembly"];
  const part = values.part;
  if (part !== "all" && !parts.includes(part))
    throw new Error(`--part must be all or one of ${parts.join(", ")}`);
  const frames = Number(values.frames);
  const rounds = Number(values.rounds);
  const cacheDir = values["cache-dir"];
  const json: Record<string, unknown> = { date: new Date().toISOString() };
  const t0 = performance.now();
  const run = async (name: string, title: string, fn: () => Promise<{ md: string; json: unknown }>) => {
    if (part !== "all" && part !== name) return;
    const t = performance.now();
    const r = await fn();
    console.log(`## ${title}\n\n${r.md}\n\n(${s1(performance.now() - t)} s)\n`);
    json[name] = r.json;
  };
  try {
    await run("dataplane", "Data plane", () => dataplane(Number(values["dataplane-runs"])));
    await run("dispatch", "Dispatch overhead per task", () =>
      dispatch(cacheDir, Number(values["dispatch-jobs"])),
    );
    await run("overhead", "Orchestration overhead", () => overhead(cacheDir, frames, rounds));
    await run("scaling", "VSR patch scaling", () => scaling(cacheDir, frames, rounds));
    await run("assembly", "Coordinator peak RSS, full-size assembly", () =>
      assembly(Number(values["assembly-tile"])),
    );
  } finally {
    await cleanup();
  }
  console.error(`total ${s1(performance.now() - t0)} s`);
  if (values.out) {
    const out = part === "all" ? values.out : values.out.replace(/\.json$/, `.${part}.json`);
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, `${JSON.stringify(json, null, 2)}\n`);
    console.error(`wrote ${out}`);
  }
}

await main();
