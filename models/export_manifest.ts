/**
 * Writes manifest.json for a directory of externally exported networks (real LaVie weights) laid out
 * like a project-built one: <id>.onnx (+ <id>.onnx.data), tokenizer.json (+ vsr_tokenizer.json).
 * Configs, stage sizes and sampler defaults come from a preset (normally `lavie`); sizes and hashes
 * from the files. Stages whose networks are all present are listed. Verify the result with
 * loadModelDirectory / `lavie models verify`.
 *
 *   await writeExportManifest("exports/lavie", "lavie");
 */
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { LavieError } from "../core/errors.ts";
import { ModelProtoSchema, TensorProto_DataType } from "../gen/third_party/onnx/onnx_pb.ts";
import { hashFile, writeFileAtomic } from "./files.ts";
import {
  type FileEntry,
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  type Manifest,
  type NetworkEntry,
  STAGE_ORDER,
  serializeManifest,
  type TokenizerEntry,
} from "./manifest.ts";
import { NETWORK_IDS, NETWORK_KINDS, type NetworkId, networkConfig, networkContract } from "./networks.ts";
import { getPreset } from "./presets.ts";
import { stageEntries } from "./stages.ts";
import { loadTokenizer } from "./tokenizer/index.ts";
import { CONTEXT_LENGTH } from "./tokenizer/tokenizer.ts";

const FLOATS = new Set<number>([
  TensorProto_DataType.FLOAT,
  TensorProto_DataType.FLOAT16,
  TensorProto_DataType.BFLOAT16,
]);

async function fileEntry(dir: string, path: string): Promise<FileEntry | null> {
  const st = await stat(join(dir, path)).catch(() => null);
  if (!st?.isFile()) return null;
  return { path, bytes: st.size, sha256: await hashFile(join(dir, path)) };
}

/** Elements of the model's floating-point initializers (≈ its parameter count). */
async function countParameters(path: string): Promise<number> {
  const model = fromBinary(ModelProtoSchema, await readFile(path));
  let n = 0;
  for (const t of model.graph?.initializer ?? []) {
    if (FLOATS.has(t.dataType)) n += t.dims.reduce((a, d) => a * Number(d), 1);
  }
  return n;
}

export async function writeExportManifest(dir: string, presetName: string): Promise<Manifest> {
  const preset = getPreset(presetName);
  const networks: Manifest["networks"] = {};
  for (const id of NETWORK_IDS) {
    const file = await fileEntry(dir, `${id}.onnx`);
    if (!file) continue;
    const kind = NETWORK_KINDS[id];
    const config = networkConfig(preset, id);
    const contract = networkContract(kind, config);
    const entry: NetworkEntry = {
      kind,
      file,
      externalData: await fileEntry(dir, `${id}.onnx.data`),
      parameters: await countParameters(join(dir, file.path)),
      seed: null,
      inputs: contract.inputs.map((t) => ({ ...t, shape: [...t.shape] })),
      outputs: contract.outputs.map((t) => ({ ...t, shape: [...t.shape] })),
      config,
    };
    networks[id] = entry;
  }
  const tokenizers: TokenizerEntry[] = [];
  for (const path of ["tokenizer.json", "vsr_tokenizer.json"]) {
    const file = await fileEntry(dir, path);
    if (!file) continue;
    const tok = await loadTokenizer(join(dir, path));
    tokenizers.push({ file, vocabSize: tok.vocabSize, contextLength: CONTEXT_LENGTH });
  }
  const all = stageEntries(preset);
  const stages: Manifest["stages"] = {};
  for (const name of STAGE_ORDER) {
    const s = all[name];
    const tokenizer = tokenizers.some((t) => t.file.path === s.tokenizer) ? s.tokenizer : "tokenizer.json";
    const complete = (Object.values(s.networks) as NetworkId[]).every((id) => networks[id]);
    if (complete && tokenizers.some((t) => t.file.path === tokenizer)) stages[name] = { ...s, tokenizer };
  }
  if (Object.keys(stages).length === 0) {
    throw new LavieError(
      "failed_precondition",
      `${dir}: no stage has all its networks and a tokenizer.json (found: ${Object.keys(networks).join(", ") || "no <id>.onnx files"})`,
      { field: dir },
    );
  }
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    formatVersion: MANIFEST_VERSION,
    preset: preset.name,
    seed: null,
    builder: null,
    networks,
    tokenizers,
    stages,
  };
  await writeFileAtomic(join(dir, MANIFEST_FILE), serializeManifest(manifest));
  return manifest;
}
