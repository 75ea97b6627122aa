/**
 * Each network of a preset through onnxruntime-node (as the stage runners run it) and through PyTorch
 * eager (the project's python/lavie_ref modules; transformers CLIPTextModel and diffusers AutoencoderKL
 * for the text encoders and VAEs), same weights, inputs and thread count, runs interleaved in one session.
 *
 *   node --import tsx bench/ort_vs_torch.ts [--preset small] [--networks base_unet,vsr_unet] [--runs 11]
 *       [--min-ms 3000] [--threads 2] [--tolerance 1e-3] [--torch-spin] [--out bench/results/ort_vs_torch.json]
 *
 * Needs python/.venv (scripts/python-setup.sh): it starts `python/.venv/bin/python -m lavie_ref.bench_eager`
 * once and talks to it over stdin/stdout (python/lavie_ref/bench_eager.py documents the line protocol).
 * Not part of the test suite.
 *
 * Per network:
 *  1. buildNetwork(preset, id, {seed: 0}) (the networks `lavie models build` writes); its parameters,
 *     named by the official state-dict keys in PyTorch layout, go to a safetensors file, and the preset's
 *     config, mapped to the Python library's format (the inverse of models/import/*_config.ts), to a spec
 *     file; the worker builds the PyTorch module and loads the weights strictly.
 *  2. The inputs of bench/networks.ts (the shapes the cascade runs at the preset's default sizes,
 *     deterministic values) are written once and read by both sides.
 *  3. Both sides compute once; the outputs must agree (max |ORT - torch| is reported, and a difference
 *     above --tolerance times max |torch| aborts the benchmark).
 *  4. Two warm-up runs each, then R rounds (R = max(--runs, enough for --min-ms of the slower side,
 *     capped at 30)); a round is one ORT run and one torch run, in alternating order. ORT: intra-op
 *     threads --threads, inter-op 1, allow_spinning "0", graph optimization "all" (stage-runners/ort/
 *     worker.ts); torch: set_num_threads(--threads), set_num_interop_threads(1), inference_mode, and
 *     OMP_WAIT_POLICY=PASSIVE, OpenMP's counterpart of allow_spinning "0" (--torch-spin keeps OpenMP's
 *     default spin-waiting, which on a loaded machine can cost torch several times its run time).
 *     Each side times its own call (ORT: session.run including output tensors; torch: the forward call).
 * Reported: median ms of each side, and the median and range over rounds of the paired ratio torch / ORT
 * (above 1: ORT is faster). The load average is printed before and after.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import { buildNetwork } from "../models/build.ts";
import { readSafetensors, type WritableTensor, writeSafetensors } from "../models/checkpoint/index.ts";
import { NETWORK_IDS, type NetworkId } from "../models/networks.ts";
import { serializeModel } from "../models/onnx/serialize.ts";
import { getPreset, type Preset } from "../models/presets.ts";
import { feedsFor, makeInputs, pythonSpec, sameJson } from "./ort_vs_torch_specs.ts";

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");
const PYTHON = join(ROOT, "python/.venv/bin/python");

/** The long-lived PyTorch worker: one request line out, one reply line back. */
class TorchWorker {
  private readonly lines: AsyncIterator<string>;
  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    this.lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  }

  /** spin false: OMP_WAIT_POLICY=PASSIVE, the OpenMP counterpart of ORT's allow_spinning "0". */
  static start(threads: number, spin: boolean): TorchWorker {
    const env = { ...process.env };
    if (spin) delete env.OMP_WAIT_POLICY;
    else env.OMP_WAIT_POLICY = "PASSIVE";
    const child = spawn(PYTHON, ["-m", "lavie_ref.bench_eager", "--threads", String(threads)], {
      cwd: join(ROOT, "python"),
      env,
    });
    child.stderr.on("data", (d: Buffer) => process.stderr.write(`[torch] ${d}`));
    return new TorchWorker(child);
  }

  async ask(request: string): Promise<string> {
    this.child.stdin.write(`${request}\n`);
    const next = await this.lines.next();
    if (next.done) throw new Error(`torch worker exited (code ${this.child.exitCode}) on "${request}"`);
    if (!next.value.startsWith("ok")) throw new Error(`torch worker: "${request}" -> ${next.value}`);
    return next.value.slice(2).trim();
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.stdin.end("quit\n");
    await exited;
  }
}

interface Row {
  network: NetworkId;
  inputs: Record<string, number[]>;
  parameters: number;
  filledKeys: number;
  maxAbsDiff: number;
  maxAbsOut: number;
  rounds: number;
  ms: { ort: number; torch: number };
  ratio: { median: number; min: number; max: number };
  samplesMs: { ort: number[]; torch: number[] };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function benchNetwork(
  preset: Preset,
  id: NetworkId,
  py: TorchWorker,
  o: { dir: string; threads: number; runs: number; minMs: number; tolerance: number },
): Promise<Row> {
  const g = buildNetwork(preset, id, { seed: 0 });
  const model = g.toModel();
  const inits = new Map(model.graph!.initializer.map((t) => [t.name, t]));
  const weights = new Map<string, WritableTensor>();
  for (const p of g.parameters) {
    const raw = inits.get(p.name)!.rawData;
    weights.set(p.name, { dtype: "F32", shape: p.shape, data: new Float32Array(raw.slice().buffer) });
  }
  const feeds = feedsFor(preset, id);
  const inputs = makeInputs(feeds);
  const file = (s: string) => join(o.dir, `${id}.${s}`);
  await writeSafetensors(file("weights.safetensors"), weights);
  await writeSafetensors(file("inputs.safetensors"), inputs);
  const spec = pythonSpec(id, preset);
  const specJson = {
    network: id,
    kind: spec.kind,
    config: spec.config,
    ...spec.extra,
    weights: file("weights.safetensors"),
    inputs: file("inputs.safetensors"),
  };
  await writeFile(file("spec.json"), JSON.stringify(specJson, null, 2));
  const loaded = JSON.parse(await py.ask(`load ${file("spec.json")}`)) as { keys: number; filled: string[] };
  if (loaded.keys !== weights.size)
    throw new Error(`${id}: torch loaded ${loaded.keys} of ${weights.size} keys`);

  const session = await ort.InferenceSession.create(serializeModel(model).onnx, {
    executionProviders: ["cpu"],
    graphOptimizationLevel: "all",
    intraOpNumThreads: o.threads,
    interOpNumThreads: 1,
    extra: { session: { intra_op: { allow_spinning: "0" } } },
  });
  const ortFeeds: Record<string, ort.Tensor> = {};
  for (const [name, t] of inputs)
    ortFeeds[name] = new ort.Tensor(t.dtype === "F32" ? "float32" : "int64", t.data, [...t.shape]);
  const ortRun = async (): Promise<{ ms: number; out: ort.Tensor }> => {
    const t0 = performance.now();
    const res = await session.run(ortFeeds);
    return { ms: performance.now() - t0, out: res[session.outputNames[0]!]! };
  };
  const torchRun = async (): Promise<number> => Number(await py.ask(`run ${id} 1`));

  // Same computation on both sides before any timing.
  const ortOut = (await ortRun()).out;
  await py.ask(`check ${id} ${file("out.safetensors")}`);
  const rec = (await readSafetensors(file("out.safetensors"))).tensors.get("out")!;
  if (!sameJson(rec.shape, ortOut.dims))
    throw new Error(`${id}: torch output [${rec.shape}], ORT [${ortOut.dims}]`);
  const ref = await rec.readFloat32();
  const got = ortOut.data as Float32Array;
  let maxAbsDiff = 0;
  let maxAbsOut = 0;
  for (let i = 0; i < ref.length; i++) {
    maxAbsDiff = Math.max(maxAbsDiff, Math.abs(got[i]! - ref[i]!));
    maxAbsOut = Math.max(maxAbsOut, Math.abs(ref[i]!));
  }
  if (!(maxAbsDiff <= o.tolerance * maxAbsOut))
    throw new Error(`${id}: outputs differ: max |ORT - torch| ${maxAbsDiff} with max |torch| ${maxAbsOut}`);

  let warm = { ort: 0, torch: 0 };
  for (let i = 0; i < 2; i++) warm = { ort: (await ortRun()).ms, torch: await torchRun() };
  const rounds = Math.max(o.runs, Math.min(30, Math.ceil(o.minMs / Math.max(warm.ort, warm.torch, 0.01))));
  const samples = { ort: [] as number[], torch: [] as number[] };
  for (let i = 0; i < rounds; i++) {
    if (i % 2 === 0) samples.ort.push((await ortRun()).ms);
    samples.torch.push(await torchRun());
    if (i % 2 === 1) samples.ort.push((await ortRun()).ms);
  }
  await session.release();
  await py.ask(`drop ${id}`);
  await Promise.all(["weights.safetensors", "inputs.safetensors", "out.safetensors"].map((s) => rm(file(s))));
  const ratios = samples.torch.map((t, i) => t / samples.ort[i]!);
  return {
    network: id,
    inputs: Object.fromEntries(feeds.map((f) => [f.name, f.shape])),
    parameters: g.parameterCount,
    filledKeys: loaded.filled.length,
    maxAbsDiff,
    maxAbsOut,
    rounds,
    ms: { ort: median(samples.ort), torch: median(samples.torch) },
    ratio: { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) },
    samplesMs: samples,
  };
}

function table(rows: readonly Row[]): string {
  const head = [
    "network",
    "main input",
    "rounds",
    "max abs diff (max abs out)",
    "ms ORT",
    "ms torch",
    "torch / ORT",
    "pair ratio min-max",
  ];
  const lines = rows.map((r) => {
    const [name, shape] = Object.entries(r.inputs)[0]!;
    return [
      r.network,
      `${name} [${shape.join(",")}]`,
      String(r.rounds),
      `${r.maxAbsDiff.toExponential(1)} (${r.maxAbsOut.toFixed(2)})`,
      r.ms.ort.toFixed(1),
      r.ms.torch.toFixed(1),
      `**${r.ratio.median.toFixed(2)}x**`,
      `${r.ratio.min.toFixed(2)}-${r.ratio.max.toFixed(2)}`,
    ];
  });
  return [head, head.map(() => "---"), ...lines].map((l) => `| ${l.join(" | ")} |`).join("\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      preset: { type: "string", default: "small" },
      networks: { type: "string", default: NETWORK_IDS.join(",") },
      runs: { type: "string", default: "11" },
      "min-ms": { type: "string", default: "3000" },
      threads: { type: "string", default: "2" },
      tolerance: { type: "string", default: "1e-3" },
      "torch-spin": { type: "boolean", default: false },
      out: { type: "string", default: "bench/results/ort_vs_torch.json" },
    },
  });
  if (!existsSync(PYTHON)) {
    console.error(`bench/ort_vs_torch.ts needs the project's Python environment: ${PYTHON} is missing.`);
    console.error(
      "Create it with scripts/python-setup.sh (torch 2.0.1, diffusers 0.16.0, transformers 4.28.1).",
    );
    process.exit(2);
  }
  const preset = getPreset(values.preset);
  const ids = values.networks.split(",").map((s) => s.trim()) as NetworkId[];
  for (const id of ids) if (!NETWORK_IDS.includes(id)) throw new Error(`--networks: unknown network "${id}"`);
  const opts = {
    runs: Number(values.runs),
    minMs: Number(values["min-ms"]),
    threads: Number(values.threads),
    tolerance: Number(values.tolerance),
  };
  if (!(Number.isInteger(opts.runs) && opts.runs >= 1)) throw new Error("--runs must be an integer >= 1");
  if (!(Number.isInteger(opts.threads) && opts.threads >= 1))
    throw new Error("--threads must be an integer >= 1");
  const dir = join(tmpdir(), `lavie-ort-vs-torch-${process.pid}`);
  await mkdir(dir, { recursive: true });
  const t0 = performance.now();
  const load0 = loadavg();
  const spin = values["torch-spin"];
  const py = TorchWorker.start(opts.threads, spin);
  const rows: Row[] = [];
  let info: Record<string, unknown> = {};
  try {
    info = JSON.parse(await py.ask("info")) as Record<string, unknown>;
    for (const id of ids) {
      const row = await benchNetwork(preset, id, py, { dir, ...opts });
      rows.push(row);
      console.error(
        `${preset.name}/${id}: ORT ${row.ms.ort.toFixed(1)} ms, torch ${row.ms.torch.toFixed(1)} ms, torch/ORT ${row.ratio.median.toFixed(2)}x, max |diff| ${row.maxAbsDiff.toExponential(1)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`,
      );
    }
  } finally {
    await py.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const load1 = loadavg();
  const la = (l: number[]): string => l.map((x) => x.toFixed(2)).join(" / ");
  console.log(
    `Preset ${preset.name}, seed 0; ${opts.threads} intra-op threads on both sides (inter-op 1), ORT allow_spinning 0, torch OMP_WAIT_POLICY ${spin ? "default (spinning)" : "PASSIVE"}; ${opts.runs}..30 interleaved rounds after 2 warm-ups; onnxruntime-node ${ort.env.versions.common}; torch ${info.torch} (diffusers ${info.diffusers}, transformers ${info.transformers}).\n`,
  );
  console.log(table(rows));
  console.log(
    `\nTotal wall time ${((performance.now() - t0) / 1000).toFixed(0)} s; load average (1/5/15 min) before ${la(load0)}, after ${la(load1)} on ${availableParallelism()} cores.`,
  );
  if (values.out) {
    await mkdir(dirname(values.out), { recursive: true });
    const doc = {
      date: new Date().toISOString(),
      preset: preset.name,
      ...opts,
      torchSpin: spin,
      torch: info,
      loadavg: { before: load0, after: load1 },
      rows,
    };
    await writeFile(values.out, `${JSON.stringify(doc, null, 2)}\n`);
    console.error(`wrote ${values.out}`);
  }
}

await main();
