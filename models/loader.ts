/**
 * Loads a model directory (project-built or exported real LaVie weights) and validates it against
 * the contract before anything runs: manifest well-formed, every file present with the listed size
 * and SHA-256, each ONNX graph's inputs/outputs matching its network contract, tokenizers loading.
 * Every failure is LavieError("failed_precondition") with field = the offending file.
 *
 *   const models = await loadModelDirectory("out/tiny");
 *   const base = models.stage("base"); // base.unet.path, base.tokenizer.encode(...), base.latentScale
 */
import { readFile, stat } from "node:fs/promises";
import { join, posix } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { LavieError } from "../core/errors.ts";
import { type ModelProto, ModelProtoSchema } from "../gen/third_party/onnx/onnx_pb.ts";
import type { NetworkContract, NetworkKind } from "./contract.ts";
import { hashFile, sha256Hex } from "./files.ts";
import {
  type FileEntry,
  MANIFEST_FILE,
  type Manifest,
  manifestFiles,
  type NetworkEntry,
  parseManifest,
  STAGE_ORDER,
  type StageEntry,
  type StageName,
} from "./manifest.ts";
import { type NetworkConfig, type NetworkId, networkContract } from "./networks.ts";
import { checkModelContract, externalDataLocations } from "./onnx_contract.ts";
import { type ClipTokenizer, loadTokenizer } from "./tokenizer/index.ts";

export interface LoadOptions {
  /** Check every file's SHA-256 (streamed). Default true; false checks sizes only. */
  verifyHashes?: boolean;
}

export interface LoadedNetwork {
  id: NetworkId;
  kind: NetworkKind;
  /** Path of the .onnx file; create ORT sessions from this path (external data sits beside it). */
  path: string;
  externalDataPath: string | null;
  parameters: number;
  config: NetworkConfig;
  contract: NetworkContract;
}

export interface LoadedStage extends Omit<StageEntry, "networks" | "tokenizer"> {
  name: StageName;
  text: LoadedNetwork;
  unet: LoadedNetwork;
  vaeDecoder: LoadedNetwork;
  /** Interpolation only. */
  vaeEncoder?: LoadedNetwork;
  tokenizer: ClipTokenizer;
  tokenizerPath: string;
}

export interface ModelDirectory {
  dir: string;
  manifest: Manifest;
  networks: Partial<Record<NetworkId, LoadedNetwork>>;
  stages: Partial<Record<StageName, LoadedStage>>;
  /** The stage, or failed_precondition when the directory does not provide it. */
  stage(name: StageName): LoadedStage;
}

function precondition(file: string, msg: string, cause?: unknown): LavieError {
  return new LavieError("failed_precondition", `${file}: ${msg}`, { field: file, cause });
}

function resolvePath(dir: string, rel: string): string {
  return join(dir, ...rel.split("/"));
}

export async function loadModelDirectory(dir: string, opts: LoadOptions = {}): Promise<ModelDirectory> {
  const verifyHashes = opts.verifyHashes ?? true;
  const manifestPath = join(dir, MANIFEST_FILE);
  const st = await stat(dir).catch(() => null);
  if (!st?.isDirectory()) throw precondition(dir, "model directory does not exist (or is not a directory)");
  let text: string;
  try {
    text = await readFile(manifestPath, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "missing: not a model directory, or its build did not finish (manifest.json is written last)"
        : `cannot be read (${String(err)})`;
    throw precondition(manifestPath, why, err);
  }
  const manifest = parseManifest(text, manifestPath);
  checkManifestContracts(manifest, manifestPath);

  // Presence and sizes of every file first: cheap, and fails before any long hashing.
  for (const f of manifestFiles(manifest)) {
    const path = resolvePath(dir, f.path);
    const st = await stat(path).catch(() => null);
    if (!st?.isFile()) throw precondition(path, `file "${f.path}" listed in ${MANIFEST_FILE} is missing`);
    if (st.size !== f.bytes) {
      throw precondition(
        path,
        `size ${st.size} bytes; ${MANIFEST_FILE} lists ${f.bytes} (truncated or replaced?)`,
      );
    }
  }

  const networks: ModelDirectory["networks"] = {};
  for (const [id, entry] of Object.entries(manifest.networks) as [NetworkId, NetworkEntry][]) {
    networks[id] = await loadNetwork(dir, id, entry, verifyHashes);
  }

  const tokenizers = new Map<string, ClipTokenizer>();
  for (const t of manifest.tokenizers) {
    const path = resolvePath(dir, t.file.path);
    if (verifyHashes) checkHash(path, t.file, sha256Hex(await readFile(path)));
    const tok = await loadTokenizer(path, { contextLength: t.contextLength });
    if (tok.vocabSize !== t.vocabSize) {
      throw precondition(
        path,
        `vocabulary has ${tok.vocabSize} tokens; ${MANIFEST_FILE} lists vocabSize ${t.vocabSize}`,
      );
    }
    tokenizers.set(t.file.path, tok);
  }

  const stages: ModelDirectory["stages"] = {};
  for (const name of STAGE_ORDER) {
    const s = manifest.stages[name];
    if (!s) continue;
    const net = (id: NetworkId): LoadedNetwork => networks[id]!;
    const { networks: ids, tokenizer, ...rest } = s;
    const tok = tokenizers.get(tokenizer)!;
    const textCfg = net(ids.text).config as { vocabSize: number };
    if (tok.vocabSize > textCfg.vocabSize) {
      throw precondition(
        manifestPath,
        `stages.${name}: tokenizer ${tokenizer} has ${tok.vocabSize} tokens but text encoder ${ids.text} embeds only ${textCfg.vocabSize}`,
      );
    }
    stages[name] = {
      name,
      ...rest,
      text: net(ids.text),
      unet: net(ids.unet),
      vaeDecoder: net(ids.vaeDecoder),
      ...(ids.vaeEncoder ? { vaeEncoder: net(ids.vaeEncoder) } : {}),
      tokenizer: tok,
      tokenizerPath: resolvePath(dir, tokenizer),
    };
  }
  return {
    dir,
    manifest,
    networks,
    stages,
    stage(name: StageName): LoadedStage {
      const s = stages[name];
      if (!s) {
        throw precondition(
          manifestPath,
          `the directory has no "${name}" stage (it has: ${Object.keys(stages).join(", ")})`,
        );
      }
      return s;
    },
  };
}

/** The manifest's declared I/O must equal the contract, and each stage's text width must feed its UNet. */
function checkManifestContracts(m: Manifest, file: string): void {
  for (const [id, n] of Object.entries(m.networks) as [NetworkId, NetworkEntry][]) {
    const c = networkContract(n.kind, n.config);
    for (const key of ["inputs", "outputs"] as const) {
      if (JSON.stringify(n[key]) !== JSON.stringify(c[key])) {
        throw precondition(
          file,
          `field "networks.${id}.${key}" does not match the ${n.kind} contract: expected ${JSON.stringify(c[key])}`,
        );
      }
    }
  }
  for (const [name, s] of Object.entries(m.stages) as [StageName, StageEntry][]) {
    const text = m.networks[s.networks.text]!.config as { width: number };
    const unet = m.networks[s.networks.unet]!.config as { crossAttentionDim: number };
    if (text.width !== unet.crossAttentionDim) {
      throw precondition(
        file,
        `stages.${name}: text encoder ${s.networks.text} has width ${text.width} but UNet ${s.networks.unet} expects ${unet.crossAttentionDim}`,
      );
    }
  }
}

function checkHash(path: string, f: FileEntry, actual: string): void {
  if (actual !== f.sha256) {
    throw precondition(
      path,
      `content hash mismatch (corrupt or replaced file): expected sha256 ${f.sha256}, actual ${actual}`,
    );
  }
}

async function loadNetwork(
  dir: string,
  id: NetworkId,
  n: NetworkEntry,
  verifyHashes: boolean,
): Promise<LoadedNetwork> {
  const path = resolvePath(dir, n.file.path);
  const bytes = await readFile(path);
  if (verifyHashes) checkHash(path, n.file, sha256Hex(bytes));
  let model: ModelProto;
  try {
    model = fromBinary(ModelProtoSchema, bytes);
  } catch (err) {
    throw precondition(path, `not a valid ONNX model (${(err as Error).message})`, err);
  }
  const contract = networkContract(n.kind, n.config);
  checkModelContract(model, contract, path);

  // Weights must come from the listed (hashed) external-data file, resolved beside the .onnx file.
  const expected = n.externalData ? posix.relative(posix.dirname(n.file.path), n.externalData.path) : null;
  for (const loc of externalDataLocations(model)) {
    if (loc !== expected) {
      const listed = expected === null ? "none is listed" : `the listed one is "${expected}"`;
      throw precondition(
        path,
        `initializers reference external data "${loc}" but ${listed} (networks.${id}.externalData)`,
      );
    }
  }
  let externalDataPath: string | null = null;
  if (n.externalData) {
    externalDataPath = resolvePath(dir, n.externalData.path);
    if (verifyHashes) checkHash(externalDataPath, n.externalData, await hashFile(externalDataPath));
  }
  return {
    id,
    kind: n.kind,
    path,
    externalDataPath,
    parameters: n.parameters,
    config: n.config,
    contract,
  };
}
