/**
 * State dicts from checkpoint files without Python: safetensors, and torch.save zip archives
 * (.bin/.pt/.pth/.ckpt) read by a data-only unpickler. Tensors are returned as lazy TensorRecords.
 */
import { readFile, stat } from "node:fs/promises";
import { extname, join } from "node:path";
import { LavieError } from "../../core/errors.ts";
import { describe, type TensorRecord } from "./dtypes.ts";
import { Namespace } from "./pickle.ts";
import { readSafetensors } from "./safetensors.ts";
import { readTorchCheckpoint, TorchTensor } from "./torch.ts";

export type { Dtype, TensorData, TensorRecord } from "./dtypes.ts";
export { readSafetensors, type WritableTensor, writeSafetensors } from "./safetensors.ts";
export { readTorchCheckpoint, TorchTensor } from "./torch.ts";

const TORCH_EXTENSIONS = [".bin", ".pt", ".pth", ".ckpt"];

export interface ReadStateDictOptions {
  /** Top-level key of a torch checkpoint that holds the state dict (e.g. "ema", "model", "state_dict"). */
  entry?: string;
  /**
   * Use this top-level key when the checkpoint has it, else the checkpoint itself (LaVie's loaders:
   * `checkpoint["ema"] if "ema" in checkpoint else checkpoint`). Ignored for safetensors files.
   */
  preferEntry?: string;
}

/** The tensors of a checkpoint file by name (torch: in dict order; safetensors: in data order). */
export async function readStateDict(
  path: string,
  opts: ReadStateDictOptions = {},
): Promise<Map<string, TensorRecord>> {
  const ext = extname(path).toLowerCase();
  if (ext === ".safetensors") {
    if (opts.entry !== undefined) {
      throw new LavieError(
        "invalid_argument",
        `entry: ${path} is a safetensors file, which holds one flat state dict; entry selects only inside torch checkpoints`,
        { field: "entry" },
      );
    }
    return (await readSafetensors(path)).tensors;
  }
  if (!TORCH_EXTENSIONS.includes(ext)) {
    throw new LavieError(
      "invalid_argument",
      `${path}: unknown checkpoint extension "${ext}"; allowed: .safetensors, ${TORCH_EXTENSIONS.join(", ")}`,
      { field: path },
    );
  }
  const root = await readTorchCheckpoint(path);
  const entry =
    opts.entry ??
    (opts.preferEntry !== undefined && root instanceof Map && root.has(opts.preferEntry)
      ? opts.preferEntry
      : undefined);
  return selectStateDict(root, path, entry);
}

function selectStateDict(root: unknown, path: string, entry: string | undefined): Map<string, TensorRecord> {
  if (!(root instanceof Map)) {
    throw new LavieError("failed_precondition", `${path}: holds ${describe(root)}, not a dict of tensors`, {
      field: path,
    });
  }
  if (entry !== undefined) {
    if (!root.has(entry)) {
      throw new LavieError(
        "invalid_argument",
        `entry: ${path} has no top-level key "${entry}"; it has ${summary(root)}`,
        {
          field: "entry",
        },
      );
    }
    const inner = root.get(entry);
    if (!(inner instanceof Map)) {
      throw new LavieError(
        "invalid_argument",
        `entry: ${path}["${entry}"] holds ${describe(inner)}, not a dict of tensors`,
        {
          field: "entry",
        },
      );
    }
    return tensorsOf(inner, `${path}["${entry}"]`);
  }
  if ([...root.values()].some((v) => v instanceof Map)) {
    throw new LavieError(
      "invalid_argument",
      `entry: ${path} holds several dicts; choose the state dict with entry (top-level keys: ${summary(root)})`,
      { field: "entry" },
    );
  }
  return tensorsOf(root, path);
}

function tensorsOf(dict: Map<unknown, unknown>, where: string): Map<string, TensorRecord> {
  const out = new Map<string, TensorRecord>();
  for (const [key, value] of dict) {
    if (typeof key !== "string") {
      throw new LavieError("failed_precondition", `${where}: key ${describe(key)} is not a string`);
    }
    if (!(value instanceof TorchTensor)) {
      throw new LavieError(
        "failed_precondition",
        `${where}: "${key}" holds ${describe(value)}, not a tensor`,
        { field: key },
      );
    }
    out.set(key, {
      dtype: value.dtype,
      shape: value.shape,
      stride: value.stride,
      storageOffset: value.storageOffset,
      numel: value.numel,
      source: `${where}: ${key}`,
      read: value.read,
      readFloat32: value.readFloat32,
      readBytes: value.readBytes,
    });
  }
  return out;
}

/** "ema (dict, 686 tensors), args (Namespace), step (5)" */
function summary(dict: Map<unknown, unknown>): string {
  const parts = [...dict].slice(0, 20).map(([k, v]) => {
    if (v instanceof Map) {
      const n = [...v.values()].filter((x) => x instanceof TorchTensor).length;
      return `${String(k)} (dict, ${n} tensors)`;
    }
    if (v instanceof TorchTensor) return `${String(k)} (tensor)`;
    if (v instanceof Namespace) return `${String(k)} (Namespace)`;
    return `${String(k)} (${describe(v)})`;
  });
  return parts.join(", ") + (dict.size > 20 ? `, ... (${dict.size} keys)` : "");
}

/** Weight files of a diffusers/transformers model folder, in order of preference. */
const SINGLE_FILES = [
  "diffusion_pytorch_model.safetensors",
  "model.safetensors",
  "diffusion_pytorch_model.safetensors.index.json",
  "model.safetensors.index.json",
  "diffusion_pytorch_model.bin",
  "pytorch_model.bin",
  "diffusion_pytorch_model.bin.index.json",
  "pytorch_model.bin.index.json",
];

/** The weight file (or shard index) a diffusers-style folder is read from, by order of preference. */
export async function diffusersWeightFile(dir: string): Promise<string> {
  for (const name of SINGLE_FILES) {
    const path = join(dir, name);
    if (await isFile(path)) return path;
  }
  throw new LavieError("not_found", `${dir}: no weight file found; looked for ${SINGLE_FILES.join(", ")}`, {
    field: dir,
  });
}

/** The state dict of a diffusers-style folder (one weight file, or shards listed by an index). */
export async function readDiffusersFolder(dir: string): Promise<Map<string, TensorRecord>> {
  const path = await diffusersWeightFile(dir);
  return path.endsWith(".index.json") ? readSharded(dir, path) : readStateDict(path);
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function readSharded(dir: string, indexPath: string): Promise<Map<string, TensorRecord>> {
  const bad = (message: string) =>
    new LavieError("data_loss", `${indexPath}: ${message}`, { field: indexPath, retryable: false });
  if ((await stat(indexPath)).size > 64 * 1024 * 1024) throw bad("index is larger than 64 MiB");
  let index: unknown;
  try {
    index = JSON.parse(await readFile(indexPath, "utf-8"));
  } catch (err) {
    throw bad(`not valid JSON (${(err as Error).message})`);
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (map === null || typeof map !== "object" || Array.isArray(map)) {
    throw bad("weight_map must be an object");
  }
  const byShard = new Map<string, string[]>();
  for (const [key, shard] of Object.entries(map)) {
    if (typeof shard !== "string" || !/^[\w][\w.-]*$/.test(shard) || shard.endsWith(".index.json")) {
      throw bad(
        `weight_map["${key}"] must name a weight file in the same folder, got ${JSON.stringify(shard)}`,
      );
    }
    const keys = byShard.get(shard) ?? [];
    keys.push(key);
    byShard.set(shard, keys);
  }
  const found = new Map<string, TensorRecord>();
  for (const [shard, keys] of byShard) {
    const tensors = await readStateDict(join(dir, shard));
    for (const key of keys) {
      const t = tensors.get(key);
      if (!t) throw bad(`weight_map puts "${key}" in ${shard}, which does not hold it`);
      found.set(key, t);
    }
  }
  return new Map(Object.keys(map).map((k) => [k, found.get(k)!]));
}
