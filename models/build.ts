/**
 * Builds a model directory from a runnable preset: every network as ONNX (external data above a size
 * threshold), the tokenizer(s), then manifest.json last (atomically), so a directory without a
 * manifest is never taken for a complete one. Same preset + seed -> byte-identical files.
 *
 *   const summary = await buildModelDirectory("tiny", "out/tiny", { seed: 0 });
 *   const report = paramReport("lavie"); // parameter counts only, no weights
 */
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { invalidArgument } from "../core/errors.ts";
import type { BuildOptions, TextEncoderConfig, UNetConfig, VaeConfig, VsrUNetConfig } from "./configs.ts";
import { writeChunks, writeFileAtomic } from "./files.ts";
import {
  type FileEntry,
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  type Manifest,
  type NetworkEntry,
  serializeManifest,
  type TokenizerEntry,
} from "./manifest.ts";
import { buildTextEncoder } from "./nets/text_encoder.ts";
import { buildUNet } from "./nets/unet.ts";
import { buildVsrUNet } from "./nets/unet_vsr.ts";
import { buildVaeDecoder, buildVaeEncoder } from "./nets/vae.ts";
import {
  NETWORK_IDS,
  NETWORK_KINDS,
  type NetworkConfig,
  type NetworkId,
  networkConfig,
  networkContract,
  networkSeed,
} from "./networks.ts";
import type { GraphBuilder } from "./onnx/graph.ts";
import { serializeModel } from "./onnx/serialize.ts";
import { getPreset, PRESET_NAMES, type Preset } from "./presets.ts";
import { stageEntries, tokenizerFiles } from "./stages.ts";
import { generateTokenizerJson } from "./tokenizer/index.ts";
import { CONTEXT_LENGTH } from "./tokenizer/tokenizer.ts";
import { builderVersion } from "./version.ts";

/** Weights above this many bytes go to an external-data file (ONNX protobufs are limited to 2 GiB). */
export const DEFAULT_EXTERNAL_DATA_THRESHOLD = 1 << 30;

export interface BuildDirectoryOptions {
  /** Weight seed (integer 0..2^32-1). Default 0. */
  seed?: number;
  /** A network whose weights exceed this many bytes is written with external data. Default 1 GiB. */
  externalDataThreshold?: number;
  /** Called before and after each network (for progress output). */
  onProgress?: (e: BuildProgress) => void;
}

export type BuildProgress =
  | { phase: "start"; id: NetworkId; index: number; total: number }
  | { phase: "done"; id: NetworkId; index: number; total: number; result: BuiltNetwork };

export interface BuiltNetwork {
  id: NetworkId;
  kind: NetworkEntry["kind"];
  parameters: number;
  files: FileEntry[];
  bytes: number;
  ms: number;
}

export interface BuildSummary {
  dir: string;
  manifest: Manifest;
  networks: BuiltNetwork[];
  tokenizers: FileEntry[];
  totalBytes: number;
  ms: number;
}

/** Builds one network of a preset (materialize: false counts parameters without weights). */
export function buildNetwork(preset: Preset, id: NetworkId, opts: BuildOptions): GraphBuilder {
  return buildNetworkFor(id, networkConfig(preset, id), { ...opts, seed: networkSeed(opts.seed, id) });
}

/** Builds network `id` from its config (seeded weights, or opts.weights for an imported checkpoint). */
export function buildNetworkFor(id: NetworkId, config: NetworkConfig, opts: BuildOptions): GraphBuilder {
  switch (id) {
    case "clip_text":
    case "vsr_text":
      return buildTextEncoder(config as TextEncoderConfig, opts);
    case "base_unet":
    case "interp_unet":
      return buildUNet(id, config as UNetConfig, opts);
    case "vsr_unet":
      return buildVsrUNet(config as VsrUNetConfig, opts);
    case "sd_vae_decoder":
      return buildVaeDecoder(config as VaeConfig, opts, "vae_decoder");
    case "x4_vae_decoder":
      return buildVaeDecoder(config as VaeConfig, opts, "x4_vae_decoder");
    case "sd_vae_encoder":
      return buildVaeEncoder(config as VaeConfig, opts);
  }
}

export function checkSeed(seed: unknown, field = "seed"): number {
  if (typeof seed !== "number" || !Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw invalidArgument(field, `must be an integer in 0..4294967295; got ${String(seed)}`);
  }
  return seed;
}

/** A preset that can be built here (tiny, small); `lavie` has parameter counts only. */
export function runnablePreset(name: string): Preset {
  const preset = getPreset(name);
  if (!preset.runnable) {
    const ok = PRESET_NAMES.filter((n) => getPreset(n).runnable);
    throw invalidArgument(
      "preset",
      `"${name}" is not runnable on this machine (parameter counts only); allowed: ${ok.join(", ")}`,
    );
  }
  return preset;
}

export async function buildModelDirectory(
  presetName: string,
  outDir: string,
  opts: BuildDirectoryOptions = {},
): Promise<BuildSummary> {
  const t0 = performance.now();
  const preset = runnablePreset(presetName);
  const seed = checkSeed(opts.seed ?? 0);
  const threshold = opts.externalDataThreshold ?? DEFAULT_EXTERNAL_DATA_THRESHOLD;
  if (!(threshold >= 0))
    throw invalidArgument("externalDataThreshold", `must be >= 0 bytes; got ${threshold}`);
  await mkdir(outDir, { recursive: true });
  // An old manifest would vouch for files about to be replaced: remove it before touching them.
  await rm(join(outDir, MANIFEST_FILE), { force: true });

  const networks: Manifest["networks"] = {};
  const built: BuiltNetwork[] = [];
  for (const [index, id] of NETWORK_IDS.entries()) {
    opts.onProgress?.({ phase: "start", id, index, total: NETWORK_IDS.length });
    const t1 = performance.now();
    const { entry, result } = await writeNetwork(preset, id, outDir, seed, threshold);
    networks[id] = entry;
    result.ms = performance.now() - t1;
    built.push(result);
    opts.onProgress?.({ phase: "done", id, index, total: NETWORK_IDS.length, result });
  }

  const tokenizers: TokenizerEntry[] = [];
  const files = tokenizerFiles(preset);
  for (const [path, vocabSize] of [
    [files.clip, preset.clipText.vocabSize],
    [files.vsr, preset.vsrText.vocabSize],
  ] as const) {
    if (tokenizers.some((t) => t.file.path === path)) continue;
    const w = await writeChunks(join(outDir, path), [Buffer.from(generateTokenizerJson({ vocabSize }))]);
    tokenizers.push({ file: { path, ...w }, vocabSize, contextLength: CONTEXT_LENGTH });
  }

  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    formatVersion: MANIFEST_VERSION,
    preset: preset.name,
    seed,
    builder: { name: "lavie-serve", version: builderVersion() },
    networks,
    tokenizers,
    stages: stageEntries(preset),
  };
  await writeFileAtomic(join(outDir, MANIFEST_FILE), serializeManifest(manifest));
  const all = [...built.flatMap((b) => b.files), ...tokenizers.map((t) => t.file)];
  return {
    dir: outDir,
    manifest,
    networks: built,
    tokenizers: tokenizers.map((t) => t.file),
    totalBytes: all.reduce((a, f) => a + f.bytes, 0),
    ms: performance.now() - t0,
  };
}

async function writeNetwork(
  preset: Preset,
  id: NetworkId,
  outDir: string,
  seed: number,
  threshold: number,
): Promise<{ entry: NetworkEntry; result: BuiltNetwork }> {
  const g = buildNetwork(preset, id, { seed });
  const meta = { "lavie.preset": preset.name, "lavie.seed": String(seed) };
  return writeNetworkGraph(g, id, networkConfig(preset, id), outDir, {
    threshold,
    seed: networkSeed(seed, id),
    metadata: meta,
  });
}

/**
 * Writes a built network (seeded or imported weights) as <id>.onnx (+ <id>.onnx.data above
 * `threshold` weight bytes) and returns its manifest entry.
 */
export async function writeNetworkGraph(
  g: GraphBuilder,
  id: NetworkId,
  config: NetworkConfig,
  outDir: string,
  opts: { threshold: number; seed: number | null; metadata: Record<string, string>; bytesPerParam?: number },
): Promise<{ entry: NetworkEntry; result: BuiltNetwork }> {
  const kind = NETWORK_KINDS[id];
  const onnxPath = `${id}.onnx`;
  const dataPath = `${id}.onnx.data`;
  const external = g.parameterCount * (opts.bytesPerParam ?? 4) > opts.threshold;
  const model = g.toModel({ "lavie.network": id, "lavie.kind": kind, ...opts.metadata });
  const s = serializeModel(model, external ? { externalDataFile: dataPath } : {});
  const file: FileEntry = { path: onnxPath, ...(await writeChunks(join(outDir, onnxPath), [s.onnx])) };
  let externalData: FileEntry | null = null;
  if (external) externalData = { path: dataPath, ...(await writeChunks(join(outDir, dataPath), s.data)) };
  else await rm(join(outDir, dataPath), { force: true });
  const contract = networkContract(kind, config);
  const entry: NetworkEntry = {
    kind,
    file,
    externalData,
    parameters: g.parameterCount,
    seed: opts.seed,
    inputs: contract.inputs.map((t) => ({ ...t, shape: [...t.shape] })),
    outputs: contract.outputs.map((t) => ({ ...t, shape: [...t.shape] })),
    config,
  };
  const files = externalData ? [file, externalData] : [file];
  const bytes = files.reduce((a, f) => a + f.bytes, 0);
  return { entry, result: { id, kind, parameters: g.parameterCount, files, bytes, ms: 0 } };
}

export interface ParamReportRow {
  id: NetworkId;
  kind: NetworkEntry["kind"];
  parameters: number;
  nodes: number;
}

/** Parameter counts of every network of a preset (any preset, `lavie` included; no weights allocated). */
export function paramReport(presetName: string): { preset: string; rows: ParamReportRow[]; total: number } {
  const preset = getPreset(presetName);
  const rows = NETWORK_IDS.map((id) => {
    const g = buildNetwork(preset, id, { seed: 0, materialize: false });
    return { id, kind: NETWORK_KINDS[id], parameters: g.parameterCount, nodes: g.size.nodes };
  });
  return { preset: preset.name, rows, total: rows.reduce((a, r) => a + r.parameters, 0) };
}
