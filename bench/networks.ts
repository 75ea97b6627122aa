/**
 * Per-network CPU benchmark of the LaVie cascade networks (onnxruntime-node, CPU provider).
 *
 *   node --import tsx bench/networks.ts [--presets tiny,small] [--runs 5] [--out bench/results/networks.json]
 *       [--cache-dir /tmp/lavie-bench-cache] [--gemm 1024] [--min-ms 1000]
 *
 * For every network of each preset, at the preset's default sizes (the shapes the cascade runs):
 *   - UNets with batch 2 (classifier-free guidance): base UNet 16 frames at the base latent size,
 *     interpolation UNet 61 frames, VSR UNet one 8-frame chunk at the low-res (base pixel) size;
 *   - SD VAE decode / encode of 4 frames, x4 VAE decode of 1 frame (latent = low-res size);
 *   - text encoders with batch 2 (negative + positive prompt).
 *
 * Timing: two sessions per network, intraOpNumThreads 1 and 2 (interOpNumThreads 1, allow_spinning
 * "0", graph optimization "all", as the stage runners use), plus a reference GEMM session per thread
 * count: a MatMul-only ONNX model [g,g] x [g,g] (default g=1024, float32), the machine's attainable
 * GEMM rate through ORT. After one warm-up run of each, R rounds run (R = max(--runs, enough for
 * ~--min-ms of network time, capped at 30)); a round is, for each thread count (order alternating per
 * round), a GEMM block of 1..8 GEMMs lasting about one network run, then one network run. This
 * machine is shared and noisy, so the ratios are paired: per round, ratio of the network's rate to the
 * GEMM block's rate just before it, and of the 1-thread to the 2-thread run of the same round.
 * Reported: median ms at 1 and 2 threads; speed-up = median over rounds of ms@1 / ms@2; achieved
 * GFLOP/s = FLOPs / median ms; GEMM GFLOP/s = 2g^3 / median GEMM ms; "of GEMM" = median over rounds
 * of (network GFLOP/s / GEMM GFLOP/s) at the same thread count. The load average is printed before
 * and after.
 *
 * FLOPs are counted exactly from the ONNX graph, not estimated from the config: the model is
 * re-serialized with every non-initializer, non-graph-input input and output of each Conv / MatMul /
 * Gemm node added as a graph output, run once (optimizations disabled) on the benchmark inputs, and
 * the shapes of those tensors (weights: initializer dims) give
 *   Conv:   2 * out elements * prod(W.dims[1:])        (= Cin/groups * kh * kw [* kd])
 *   MatMul: 2 * out elements * K                        (K = last dim of A)
 *   Gemm:   2 * M * N * K                               (K from A, honouring transA)
 * i.e. 2 FLOPs per multiply-accumulate. Normalizations, softmax, activations, biases, resizes and
 * other element-wise ops are not counted (they are a small share of the work but not of the time).
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { availableParallelism, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as ort from "onnxruntime-node";
import {
  type ModelProto,
  ModelProtoSchema,
  TensorProto_DataType,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  ValueInfoProtoSchema,
} from "../gen/third_party/onnx/onnx_pb.ts";
import { ensureModels, modelCacheDir } from "../models/cache.ts";
import { loadModelDirectory } from "../models/loader.ts";
import { NETWORK_IDS, type NetworkId } from "../models/networks.ts";
import { GraphBuilder } from "../models/onnx/graph.ts";
import { serializeModel } from "../models/onnx/serialize.ts";
import { getPreset, type Preset } from "../models/presets.ts";

const THREADS = [1, 2] as const;
type Threads = (typeof THREADS)[number];

interface Feed {
  name: string;
  dtype: "float32" | "int64";
  shape: number[];
}

interface Row {
  preset: string;
  network: NetworkId;
  rounds: number;
  gemmReps: Record<Threads, number>;
  inputs: Record<string, number[]>;
  gflop: number;
  convGflop: number;
  matmulGflop: number;
  ms: Record<Threads, number>;
  speedup: number;
  gflops: Record<Threads, number>;
  gemmGflops: Record<Threads, number>;
  ofGemm: Record<Threads, number>;
  samplesMs: Record<Threads, number[]>;
  gemmSamplesMs: Record<Threads, number[]>;
}

function sessionOptions(threads: number, optimize = true): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ["cpu"],
    graphOptimizationLevel: optimize ? "all" : "disabled",
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    extra: { session: { intra_op: { allow_spinning: "0" } } },
  };
}

/** The feeds each network gets at the preset's default sizes. */
function feedsFor(p: Preset, id: NetworkId): Feed[] {
  const { frames: F, height: H, width: W } = p.base;
  const h = H / 8;
  const w = W / 8;
  const F2 = (F - 1) * 4 + 1;
  const unet = (c: number, f: number, hh: number, ww: number, d: number): Feed[] => [
    { name: "sample", dtype: "float32", shape: [2, c, f, hh, ww] },
    { name: "timestep", dtype: "int64", shape: [2] },
    { name: "encoder_hidden_states", dtype: "float32", shape: [2, 77, d] },
  ];
  switch (id) {
    case "clip_text":
    case "vsr_text":
      return [{ name: "input_ids", dtype: "int64", shape: [2, 77] }];
    case "base_unet":
      return unet(p.baseUnet.inChannels, F, h, w, p.baseUnet.crossAttentionDim);
    case "interp_unet":
      return unet(p.interpUnet.inChannels, F2, h, w, p.interpUnet.crossAttentionDim);
    case "vsr_unet":
      return [
        ...unet(p.vsrUnet.inChannels, 8, H, W, p.vsrUnet.crossAttentionDim),
        { name: "class_labels", dtype: "int64", shape: [2] },
      ];
    case "sd_vae_decoder":
      return [{ name: "latent_sample", dtype: "float32", shape: [4, 4, h, w] }];
    case "sd_vae_encoder":
      return [{ name: "sample", dtype: "float32", shape: [4, 3, H, W] }];
    case "x4_vae_decoder":
      return [{ name: "latent_sample", dtype: "float32", shape: [1, 4, H, W] }];
  }
}

/** Deterministic inputs: N(0,1) floats, token ids i mod 400, timestep 500, class label 50. */
function makeFeeds(feeds: Feed[]): Record<string, ort.Tensor> {
  let s = 0x9e3779b9;
  const uniform = (): number => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out: Record<string, ort.Tensor> = {};
  for (const f of feeds) {
    const n = f.shape.reduce((a, b) => a * b, 1);
    if (f.dtype === "float32") {
      const d = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        d[i] = Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
      }
      out[f.name] = new ort.Tensor("float32", d, f.shape);
    } else {
      const v =
        f.name === "input_ids" ? (i: number) => (i * 7) % 400 : f.name === "timestep" ? () => 500 : () => 50;
      out[f.name] = new ort.Tensor(
        "int64",
        BigInt64Array.from({ length: n }, (_, i) => BigInt(v(i))),
        f.shape,
      );
    }
  }
  return out;
}

/** Exact 2*MAC count of Conv/MatMul/Gemm nodes (see the header), from one instrumented run. */
async function countFlops(
  onnx: Uint8Array,
  feeds: Record<string, ort.Tensor>,
): Promise<{ conv: number; matmul: number }> {
  const model: ModelProto = fromBinary(ModelProtoSchema, onnx);
  const graph = model.graph!;
  const init = new Map<string, number[]>();
  for (const t of graph.initializer) init.set(t.name, t.dims.map(Number));
  const inputs = new Set(graph.input.map((v) => v.name));
  const outputs = new Set(graph.output.map((v) => v.name));
  const nodes = graph.node.filter((n) => n.opType === "Conv" || n.opType === "MatMul" || n.opType === "Gemm");
  const wanted = new Set<string>();
  for (const n of nodes) {
    for (const v of [...n.input.slice(0, 2), n.output[0]!]) {
      if (v && !init.has(v) && !inputs.has(v) && !outputs.has(v)) wanted.add(v);
    }
  }
  for (const name of wanted) {
    graph.output.push(
      create(ValueInfoProtoSchema, {
        name,
        type: create(TypeProtoSchema, {
          value: {
            case: "tensorType",
            value: create(TypeProto_TensorSchema, { elemType: TensorProto_DataType.FLOAT }),
          },
        }),
      }),
    );
  }
  const session = await ort.InferenceSession.create(
    toBinary(ModelProtoSchema, model),
    sessionOptions(2, false),
  );
  const res = await session.run(feeds);
  const shapeOf = (v: string): number[] => {
    const s = init.get(v) ?? feeds[v]?.dims ?? res[v]?.dims;
    if (!s) throw new Error(`no shape for ${v}`);
    return [...s];
  };
  const prod = (a: readonly number[]): number => a.reduce((x, y) => x * y, 1);
  let conv = 0;
  let matmul = 0;
  for (const n of nodes) {
    const out = prod(shapeOf(n.output[0]!));
    if (n.opType === "Conv") {
      conv += 2 * out * prod(shapeOf(n.input[1]!).slice(1));
    } else if (n.opType === "MatMul") {
      matmul += 2 * out * shapeOf(n.input[0]!).at(-1)!;
    } else {
      const a = shapeOf(n.input[0]!);
      const transA = n.attribute.find((x) => x.name === "transA")?.i ?? 0n;
      matmul += 2 * out * (transA ? a[0]! : a[1]!);
    }
  }
  await session.release();
  return { conv, matmul };
}

function gemmModel(g: number): Uint8Array {
  const b = new GraphBuilder({ name: "gemm", seed: 1 });
  const a = b.input("a", "float32", [g, g]);
  const w = b.param("b", [g, g], { kind: "uniform", bound: 1 / Math.sqrt(g) });
  b.output(b.op("MatMul", [a, w]), "c", "float32", [g, g]);
  return serializeModel(b.toModel()).onnx;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function timeRun(s: ort.InferenceSession, feeds: Record<string, ort.Tensor>): Promise<number> {
  const t = performance.now();
  await s.run(feeds);
  return performance.now() - t;
}

async function benchNetwork(
  preset: Preset,
  id: NetworkId,
  path: string,
  gemm: { sessions: Record<Threads, ort.InferenceSession>; feeds: Record<string, ort.Tensor>; flop: number },
  runs: number,
  minMs: number,
): Promise<Row> {
  const specs = feedsFor(preset, id);
  const feeds = makeFeeds(specs);
  const bytes = new Uint8Array(await readFile(path));
  const flops = await countFlops(bytes, feeds);
  const sessions = {} as Record<Threads, ort.InferenceSession>;
  for (const t of THREADS) sessions[t] = await ort.InferenceSession.create(path, sessionOptions(t));
  const warmNet = { 1: 0, 2: 0 } as Record<Threads, number>;
  const reps = { 1: 1, 2: 1 } as Record<Threads, number>;
  for (const t of THREADS) {
    warmNet[t] = await timeRun(sessions[t], feeds);
    const warmGemm = await timeRun(gemm.sessions[t], gemm.feeds);
    // The GEMM block lasts about as long as one network run (1..8 GEMMs), so both see the same load.
    reps[t] = Math.max(1, Math.min(8, Math.round(warmNet[t] / Math.max(warmGemm, 0.01))));
  }
  // Short networks get more rounds (at least minMs of network time per thread count, at most 30 rounds).
  const warm = Math.max(warmNet[1], warmNet[2]);
  const rounds = Math.max(runs, Math.min(30, Math.ceil(minMs / Math.max(warm, 0.01))));
  const net: Record<Threads, number[]> = { 1: [], 2: [] };
  const ref: Record<Threads, number[]> = { 1: [], 2: [] };
  for (let i = 0; i < rounds; i++) {
    // Alternate the thread order per round so neither count always runs first.
    for (const t of i % 2 ? ([2, 1] as const) : THREADS) {
      const t0 = performance.now();
      for (let k = 0; k < reps[t]; k++) await gemm.sessions[t].run(gemm.feeds);
      ref[t].push((performance.now() - t0) / reps[t]);
      net[t].push(await timeRun(sessions[t], feeds));
    }
  }
  for (const t of THREADS) await sessions[t].release();
  const flop = flops.conv + flops.matmul;
  const ms = { 1: median(net[1]), 2: median(net[2]) };
  const gflops = { 1: flop / ms[1] / 1e6, 2: flop / ms[2] / 1e6 };
  const gemmGflops = { 1: gemm.flop / median(ref[1]) / 1e6, 2: gemm.flop / median(ref[2]) / 1e6 };
  // Paired estimators: the median over rounds of per-round ratios (drifting load cancels within a round).
  const perRound = (f: (i: number) => number): number =>
    median(Array.from({ length: rounds }, (_, i) => f(i)));
  const ofGemm = (t: Threads): number => perRound((i) => ref[t][i]! / (net[t][i]! * (gemm.flop / flop)));
  return {
    preset: preset.name,
    network: id,
    rounds,
    gemmReps: reps,
    inputs: Object.fromEntries(specs.map((f) => [f.name, f.shape])),
    gflop: flop / 1e9,
    convGflop: flops.conv / 1e9,
    matmulGflop: flops.matmul / 1e9,
    ms,
    speedup: perRound((i) => net[1][i]! / net[2][i]!),
    gflops,
    gemmGflops,
    ofGemm: { 1: ofGemm(1), 2: ofGemm(2) },
    samplesMs: net,
    gemmSamplesMs: ref,
  };
}

function fmt(x: number, digits: number): string {
  return x.toFixed(digits);
}

function table(rows: readonly Row[]): string {
  const head =
    "| preset | network | main input | rounds | GFLOP (conv+matmul) | ms @1 | ms @2 | speed-up 2/1 | GFLOP/s @1 | GFLOP/s @2 | GEMM GFLOP/s @1 | GEMM GFLOP/s @2 | of GEMM @1 | of GEMM @2 |";
  const sep = `|${head
    .split("|")
    .slice(1, -1)
    .map(() => "---")
    .join("|")}|`;
  const lines = rows.map((r) => {
    const main = Object.entries(r.inputs)[0]!;
    return `| ${r.preset} | ${r.network} | ${main[0]} [${main[1].join(",")}] | ${r.rounds} | ${fmt(r.gflop, 3)} | ${fmt(r.ms[1], 1)} | ${fmt(r.ms[2], 1)} | ${fmt(r.speedup, 2)}x | ${fmt(r.gflops[1], 1)} | ${fmt(r.gflops[2], 1)} | ${fmt(r.gemmGflops[1], 1)} | ${fmt(r.gemmGflops[2], 1)} | ${fmt(100 * r.ofGemm[1], 0)}% | ${fmt(100 * r.ofGemm[2], 0)}% |`;
  });
  return [head, sep, ...lines].join("\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      presets: { type: "string", default: "tiny,small" },
      runs: { type: "string", default: "5" },
      "min-ms": { type: "string", default: "1000" },
      out: { type: "string", default: "bench/results/networks.json" },
      "cache-dir": { type: "string", default: "/tmp/lavie-bench-cache" },
      gemm: { type: "string", default: "1024" },
    },
  });
  const runs = Number(values.runs);
  const g = Number(values.gemm);
  const minMs = Number(values["min-ms"]);
  if (!(Number.isInteger(runs) && runs >= 1)) throw new Error("--runs must be an integer >= 1");
  if (!(Number.isInteger(g) && g >= 16)) throw new Error("--gemm must be an integer >= 16");
  const presets = values.presets.split(",").map((s) => getPreset(s.trim()));
  const cacheDir = values["cache-dir"];
  const t0 = performance.now();
  const load0 = loadavg();

  const gemmBytes = gemmModel(g);
  const gemm = {
    sessions: {
      1: await ort.InferenceSession.create(gemmBytes, sessionOptions(1)),
      2: await ort.InferenceSession.create(gemmBytes, sessionOptions(2)),
    } as Record<Threads, ort.InferenceSession>,
    feeds: makeFeeds([{ name: "a", dtype: "float32", shape: [g, g] }]),
    flop: 2 * g * g * g,
  };

  const rows: Row[] = [];
  const builds: Record<string, { cached: boolean; ms: number }> = {};
  for (const p of presets) {
    const tb = performance.now();
    const cached = await loadModelDirectory(modelCacheDir(p.name, { cacheDir }), {
      verifyHashes: false,
    }).then(
      () => true,
      () => false,
    );
    const dir = await ensureModels(p.name, { cacheDir });
    builds[p.name] = { cached, ms: performance.now() - tb };
    console.error(
      `${p.name}: model directory ${cached ? "cached" : "built"} in ${fmt((performance.now() - tb) / 1000, 1)} s`,
    );
    const md = await loadModelDirectory(dir, { verifyHashes: false });
    for (const id of NETWORK_IDS) {
      const net = md.networks[id];
      if (!net) continue;
      const row = await benchNetwork(p, id, net.path, gemm, runs, minMs);
      rows.push(row);
      console.error(
        `${p.name}/${id}: ${fmt(row.gflop, 3)} GFLOP, ${fmt(row.ms[1], 1)} / ${fmt(row.ms[2], 1)} ms (${fmt((performance.now() - t0) / 1000, 0)} s)`,
      );
    }
  }
  for (const t of THREADS) await gemm.sessions[t].release();

  const md = table(rows);
  console.log(
    `Networks: ${runs}..30 interleaved rounds after 1 warm-up (rounds column); GEMM reference ${g}x${g}x${g} float32 MatMul through ORT in the same rounds; speed-up and "of GEMM" are medians of per-round ratios; onnxruntime-node ${ort.env.versions.common}.\n`,
  );
  console.log(md);
  const load1 = loadavg();
  const la = (l: number[]): string => l.map((x) => x.toFixed(2)).join(" / ");
  console.log(
    `\nTotal benchmark wall time ${fmt((performance.now() - t0) / 1000, 0)} s; load average (1/5/15 min) before ${la(load0)}, after ${la(load1)} on ${availableParallelism()} cores.`,
  );
  if (values.out) {
    await mkdir(dirname(values.out), { recursive: true });
    await writeFile(
      values.out,
      `${JSON.stringify({ date: new Date().toISOString(), runs, gemm: g, loadavg: { before: load0, after: load1 }, builds, rows }, null, 2)}\n`,
    );
    console.error(`wrote ${join(values.out)}`);
  }
}

await main();
