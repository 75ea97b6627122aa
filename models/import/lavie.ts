/**
 * `lavie models import`: the published LaVie weights, laid out as the official instructions say
 * (pretrained_models/), into a model directory that `lavie generate --model-dir` and the stage runners
 * use unchanged.
 *
 *   pretrained_models/
 *     lavie_base.pt  lavie_interpolation.pt  lavie_vsr.pt       torch.save({"ema": state_dict})
 *     stable-diffusion-v1-4/{unet/config.json, vae, text_encoder, tokenizer}
 *     stable-diffusion-x4-upscaler/{vae, text_encoder, tokenizer}
 *
 *   const summary = await importLavie("pretrained_models", "models/lavie", { weightDtype: "float16" });
 *
 * Each network is built from its own config file with weights taken key for key from its checkpoint
 * (models/import/weights.ts): a missing, unexpected or misshapen key is an error naming the file and the
 * key. Networks are imported one at a time, so memory holds one network's weights at once.
 */
import { mkdir, rm, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import { LavieError } from "../../core/errors.ts";
import { VSR_NOISE_LEVEL } from "../../core/samplers/index.ts";
import { type BuiltNetwork, buildNetworkFor, writeNetworkGraph } from "../build.ts";
import {
  diffusersWeightFile,
  readDiffusersFolder,
  readStateDict,
  type TensorRecord,
} from "../checkpoint/index.ts";
import type { TextEncoderConfig, UNetConfig, VaeConfig, VsrUNetConfig } from "../configs.ts";
import { writeChunks, writeFileAtomic } from "../files.ts";
import {
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  type Manifest,
  serializeManifest,
  type TokenizerEntry,
} from "../manifest.ts";
import { VSR_UNET_ALIAS_KEYS } from "../nets/unet_vsr.ts";
import { NETWORK_IDS, type NetworkConfig, type NetworkId } from "../networks.ts";
import type { GraphBuilder } from "../onnx/graph.ts";
import type { Preset } from "../presets.ts";
import { stageEntries } from "../stages.ts";
import { CONTEXT_LENGTH, loadTokenizer, tokenizerJsonFromHfFolder } from "../tokenizer/index.ts";
import { builderVersion } from "../version.ts";
import { type JsonObject, readConfigJson } from "./json_fields.ts";
import { applyLora, type LoraPair, loraPairs } from "./lora.ts";
import { DOWNLOAD, PUBLISHED_STEPS, PUBLISHED_VIDEO, PUBLISHED_VSR_UNET_CONFIG } from "./published.ts";
import {
  checkPositionIds,
  POSITION_IDS_KEY,
  parseTextEncoderConfig,
  TEXT_ENCODER_IGNORE,
} from "./text_config.ts";
import { parseUNetConfig } from "./unet_config.ts";
import { parseVaeConfig, type VaeKind, vaeIgnore, vaeKeyRename } from "./vae_config.ts";
import { parseVsrUNetConfig } from "./vsr_config.ts";
import { type FloatTensor, StateDictWeights } from "./weights.ts";

export interface ImportOptions {
  /** The VSR UNet's config (official unet_3d_config.json format); default: the published one. */
  vsrUnetConfig?: string;
  /** LoRA files merged into the base UNet's spatial layers (and the CLIP text encoder). */
  lora?: readonly { file: string; scale: number }[];
  /** float16 halves the files (for GPU runners); weights are computed in float32 either way. */
  weightDtype?: "float32" | "float16";
  /** Networks with more weight bytes than this get an external .onnx.data file. Default 1 GiB. */
  externalDataThreshold?: number;
  /** Manifest name. Default "lavie". */
  name?: string;
  onProgress?: (e: { id: NetworkId; index: number; total: number; result: BuiltNetwork }) => void;
}

export interface ImportSummary {
  dir: string;
  manifest: Manifest;
  networks: BuiltNetwork[];
  /** Keys each LoRA merge changed, by network. */
  lora: { network: NetworkId; keys: string[] }[];
}

/** Where one network comes from. */
interface Source {
  config: string | null;
  /** Weight file, or diffusers folder (see weightFile). */
  weights: string;
  /** The file the weights are read from, for messages. */
  weightFile(): Promise<string>;
  read(): Promise<Map<string, TensorRecord>>;
  parse(json: JsonObject, file: string): NetworkConfig;
  ignore: readonly RegExp[];
  /** Keys of the file that belong to another network and are not even read (the other half of a VAE). */
  unread?: readonly RegExp[];
  rename?: (key: string) => string;
}

/**
 * The files of one network: `config` its config.json (null for the VSR UNet: the published config),
 * `weights` a LaVie checkpoint (.pt: the "ema" entry when present) or a diffusers/transformers folder.
 */
export interface NetworkFiles {
  config: string | null;
  weights: string;
}

function sourceFor(id: NetworkId, files: NetworkFiles): Source {
  const { config, weights } = files;
  const checkpoint = {
    weights,
    weightFile: async () => weights,
    // LaVie's loaders: checkpoint["ema"] when present, else the checkpoint itself.
    read: () => readStateDict(weights, { preferEntry: "ema" }),
  };
  const folder = {
    weights,
    weightFile: () => diffusersWeightFile(weights),
    read: () => readDiffusersFolder(weights),
  };
  const vae = (kind: VaeKind): Source => ({
    config,
    ...folder,
    parse: (json, file) => parseVaeConfig(json, file, kind),
    ignore: [],
    unread: vaeIgnore(kind),
    rename: vaeKeyRename,
  });
  switch (id) {
    case "clip_text":
    case "vsr_text":
      return { config, ...folder, parse: parseTextEncoderConfig, ignore: TEXT_ENCODER_IGNORE };
    case "base_unet":
    case "interp_unet":
      return { config, ...checkpoint, parse: (json, file) => parseUNetConfig(json, file, id), ignore: [] };
    case "vsr_unet":
      // The official checkpoint repeats the shared rotary frequencies under every temporal attention;
      // the graph takes the root key and the copies are checked to be equal (aliasCheck).
      return { config, ...checkpoint, parse: parseVsrUNetConfig, ignore: VSR_UNET_ALIAS_KEYS };
    case "sd_vae_decoder":
      return vae("vae_decoder");
    case "sd_vae_encoder":
      return vae("vae_encoder");
    case "x4_vae_decoder":
      return vae("x4_vae_decoder");
  }
}

/** Each network's files in the download layout. */
export function downloadFiles(from: string, vsrUnetConfig?: string): Record<NetworkId, NetworkFiles> {
  const sd = join(from, DOWNLOAD.sd);
  const x4 = join(from, DOWNLOAD.x4);
  const folder = (dir: string) => ({ config: join(dir, "config.json"), weights: dir });
  const unetConfig = join(sd, "unet", "config.json");
  return {
    clip_text: folder(join(sd, "text_encoder")),
    base_unet: { config: unetConfig, weights: join(from, DOWNLOAD.baseCheckpoint) },
    sd_vae_decoder: folder(join(sd, "vae")),
    sd_vae_encoder: folder(join(sd, "vae")),
    interp_unet: { config: unetConfig, weights: join(from, DOWNLOAD.interpCheckpoint) },
    vsr_text: folder(join(x4, "text_encoder")),
    vsr_unet: { config: vsrUnetConfig ?? null, weights: join(from, DOWNLOAD.vsrCheckpoint) },
    x4_vae_decoder: folder(join(x4, "vae")),
  };
}

function sources(from: string, opts: ImportOptions): Record<NetworkId, Source> {
  const files = downloadFiles(from, opts.vsrUnetConfig);
  return Object.fromEntries(NETWORK_IDS.map((id) => [id, sourceFor(id, files[id])])) as Record<
    NetworkId,
    Source
  >;
}

async function parseConfig(s: Source): Promise<NetworkConfig> {
  const file = s.config ?? "the published VSR UNet config";
  const json = s.config ? await readConfigJson(s.config) : PUBLISHED_VSR_UNET_CONFIG;
  return s.parse(json, file);
}

export interface ImportedNetwork {
  graph: GraphBuilder;
  config: NetworkConfig;
  /** The weight file read. */
  file: string;
  /** Keys each LoRA merge changed. */
  lora: string[];
}

/**
 * One network as `lavie models import` builds it: config parsed, weights read key for key (every key
 * used or deliberately ignored), LoRA merged (base UNet, CLIP text encoder), graph built.
 */
export async function importNetwork(
  id: NetworkId,
  files: NetworkFiles,
  opts: { weightDtype?: "float32" | "float16"; config?: NetworkConfig; lora?: readonly LoraPlan[] } = {},
): Promise<ImportedNetwork> {
  const s = sourceFor(id, files);
  const config = opts.config ?? (await parseConfig(s));
  const file = await s.weightFile();
  const records = await s.read();
  for (const key of records.keys()) if (s.unread?.some((r) => r.test(key))) records.delete(key);
  const tensors = await floatTensors(file, records);
  if (id === "vsr_unet") aliasCheck(file, tensors);
  const target = id === "base_unet" ? "unet" : id === "clip_text" ? "text_encoder" : null;
  const lora: string[] = [];
  if (target)
    for (const l of opts.lora ?? []) lora.push(...applyLora(l.file, tensors, l.pairs, target, l.scale));
  const weights = new StateDictWeights(file, tensors, {
    ignore: s.ignore,
    ...(s.rename ? { rename: s.rename } : {}),
  });
  const graph = buildNetworkFor(id, config, { seed: 0, weights, weightDtype: opts.weightDtype ?? "float32" });
  weights.assertAllUsed();
  return { graph, config, file, lora };
}

const FLOAT_DTYPES = new Set(["F32", "F16", "BF16", "F64"]);

/** Reads every float tensor as float32; refuses integer weights (buffers are checked separately). */
async function floatTensors(
  file: string,
  records: Map<string, TensorRecord>,
): Promise<Map<string, FloatTensor>> {
  const out = new Map<string, FloatTensor>();
  for (const [key, r] of records) {
    if (key === POSITION_IDS_KEY) {
      checkPositionIds(file, (await r.read()) as ArrayLike<number | bigint>);
      continue;
    }
    if (!FLOAT_DTYPES.has(r.dtype))
      throw new LavieError(
        "failed_precondition",
        `${file}: key "${key}" is ${r.dtype}, weights must be floating point`,
        {
          field: key,
        },
      );
    out.set(key, { shape: r.shape, data: await r.readFloat32() });
  }
  return out;
}

/** The copies of the VSR UNet's rotary frequencies must equal the root tensor the graph uses. */
function aliasCheck(file: string, tensors: Map<string, FloatTensor>): void {
  const root = tensors.get("temporal_rotary_emb.freqs");
  for (const [key, t] of tensors) {
    if (!VSR_UNET_ALIAS_KEYS.some((r) => r.test(key))) continue;
    const same = root && root.data.length === t.data.length && root.data.every((v, i) => v === t.data[i]);
    if (!same)
      throw new LavieError(
        "failed_precondition",
        `${file}: "${key}" differs from "temporal_rotary_emb.freqs" (the official model shares one tensor)`,
        { field: key },
      );
  }
}

async function mustExist(path: string, what: string): Promise<void> {
  try {
    await stat(path);
  } catch {
    throw new LavieError(
      "not_found",
      `${path}: missing (${what}); the directory must be laid out as LaVie's pretrained_models/: ` +
        `${DOWNLOAD.baseCheckpoint}, ${DOWNLOAD.interpCheckpoint}, ${DOWNLOAD.vsrCheckpoint}, ` +
        `${DOWNLOAD.sd}/{unet/config.json,vae,text_encoder,tokenizer}, ${DOWNLOAD.x4}/{vae,text_encoder,tokenizer}`,
      { field: path },
    );
  }
}

export async function importLavie(
  from: string,
  outDir: string,
  opts: ImportOptions = {},
): Promise<ImportSummary> {
  const src = sources(from, opts);
  for (const id of NETWORK_IDS) {
    await mustExist(src[id].weights, `weights of ${id}`);
    const c = src[id].config;
    if (c) await mustExist(c, `config of ${id}`);
  }
  const tokDirs = { clip: join(from, DOWNLOAD.sd, "tokenizer"), vsr: join(from, DOWNLOAD.x4, "tokenizer") };
  for (const d of Object.values(tokDirs)) await mustExist(d, "tokenizer folder");

  // Configs first: a bad config fails the import before any weight is read.
  const configs = {} as Record<NetworkId, NetworkConfig>;
  for (const id of NETWORK_IDS) configs[id] = await parseConfig(src[id]);
  const vsr = configs.vsr_unet as VsrUNetConfig;
  if (VSR_NOISE_LEVEL >= vsr.classEmbeddings || VSR_NOISE_LEVEL > vsr.maxNoiseLevel)
    throw new LavieError(
      "failed_precondition",
      `${src.vsr_unet.config ?? "VSR UNet config"}: the cascade passes noise level ${VSR_NOISE_LEVEL} as the class ` +
        `label; num_class_embeds (${vsr.classEmbeddings}) and max_noise_level (${vsr.maxNoiseLevel}) must allow it`,
      { field: "num_class_embeds" },
    );
  const lora = await loraPlan(opts.lora ?? [], src);

  await mkdir(outDir, { recursive: true });
  await rm(join(outDir, MANIFEST_FILE), { force: true });
  const threshold = opts.externalDataThreshold ?? 1 << 30;
  const weightDtype = opts.weightDtype ?? "float32";
  const networks: Manifest["networks"] = {};
  const built: BuiltNetwork[] = [];
  const merged: ImportSummary["lora"] = [];
  for (const [index, id] of NETWORK_IDS.entries()) {
    const t0 = performance.now();
    const imported = await importNetwork(id, src[id], { weightDtype, config: configs[id], lora });
    if (imported.lora.length) merged.push({ network: id, keys: imported.lora });
    const { graph: g, file } = imported;
    const { entry, result } = await writeNetworkGraph(g, id, configs[id], outDir, {
      threshold,
      seed: null,
      metadata: { "lavie.source": relative(from, file), "lavie.weight_dtype": weightDtype },
      bytesPerParam: weightDtype === "float16" ? 2 : 4,
    });
    networks[id] = entry;
    result.ms = performance.now() - t0;
    built.push(result);
    opts.onProgress?.({ id, index, total: NETWORK_IDS.length, result });
  }

  const clip = configs.clip_text as TextEncoderConfig;
  const vsrText = configs.vsr_text as TextEncoderConfig;
  const tokenizers: TokenizerEntry[] = [
    await writeTokenizer(tokDirs.clip, outDir, "tokenizer.json", clip.vocabSize),
    await writeTokenizer(tokDirs.vsr, outDir, "vsr_tokenizer.json", vsrText.vocabSize),
  ];
  const preset: Preset = {
    name: "lavie",
    runnable: true,
    base: { ...PUBLISHED_VIDEO },
    clipText: clip,
    baseUnet: configs.base_unet as UNetConfig,
    interpUnet: configs.interp_unet as UNetConfig,
    vsrText,
    vsrUnet: configs.vsr_unet as VsrUNetConfig,
    sdVae: configs.sd_vae_decoder as VaeConfig,
    x4Vae: configs.x4_vae_decoder as VaeConfig,
    steps: { ...PUBLISHED_STEPS },
  };
  const stages = stageEntries(preset, { clip: "tokenizer.json", vsr: "vsr_tokenizer.json" });
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    formatVersion: MANIFEST_VERSION,
    preset: opts.name ?? "lavie",
    seed: null,
    builder: { name: "lavie-serve", version: builderVersion() },
    networks,
    tokenizers,
    stages,
  };
  await writeFileAtomic(join(outDir, MANIFEST_FILE), serializeManifest(manifest));
  return { dir: outDir, manifest, networks: built, lora: merged };
}

/** Converts a HF CLIPTokenizer folder and checks its ids fit the text encoder's embedding table. */
async function writeTokenizer(
  dir: string,
  outDir: string,
  path: string,
  vocabSize: number,
): Promise<TokenizerEntry> {
  const json = await tokenizerJsonFromHfFolder(dir);
  const w = await writeChunks(join(outDir, path), [Buffer.from(json)]);
  const tok = await loadTokenizer(join(outDir, path));
  if (tok.vocabSize > vocabSize)
    throw new LavieError(
      "failed_precondition",
      `${dir}: the tokenizer has ${tok.vocabSize} tokens, the text encoder embeds only ${vocabSize}`,
      { field: dir },
    );
  return { file: { path, ...w }, vocabSize, contextLength: CONTEXT_LENGTH };
}

interface LoraPlan {
  file: string;
  scale: number;
  pairs: LoraPair[];
}

/** Reads each LoRA file and resolves its keys against the base UNet's and text encoder's keys. */
async function loraPlan(specs: readonly { file: string; scale: number }[], src: Record<NetworkId, Source>) {
  if (specs.length === 0) return [];
  const unet = [...(await src.base_unet.read()).keys()];
  const text = [...(await src.clip_text.read()).keys()];
  const plans: LoraPlan[] = [];
  for (const { file, scale } of specs) {
    await mustExist(file, "LoRA file");
    const records = await readStateDict(file);
    const tensors = new Map<string, FloatTensor>();
    for (const [k, r] of records) tensors.set(k, { shape: r.shape, data: await r.readFloat32() });
    plans.push({ file, scale, pairs: loraPairs(file, tensors, { unet, text_encoder: text }) });
  }
  return plans;
}
