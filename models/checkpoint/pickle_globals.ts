/**
 * The globals a checkpoint pickle may name: containers, torch storage classes and dtypes, and the
 * functions torch uses to rebuild tensors and parameters. Each is emulated as inert data here;
 * every other name is refused, so no code a file names can ever run.
 */
import { LavieError } from "../../core/errors.ts";
import { type Dtype, describe } from "./dtypes.ts";

/** A torch.*Storage class named by a pickle (torch uses it as a tag in persistent ids). */
export class StorageType {
  constructor(
    readonly name: string,
    readonly dtype: Dtype,
  ) {}
}

/** A torch dtype object such as torch.float16. */
export class TorchDtype {
  constructor(
    readonly name: string,
    readonly dtype: Dtype,
  ) {}
}

/** The attributes of an argparse.Namespace (training scripts often save their arguments). */
export class Namespace {
  readonly attrs = new Map<string, unknown>();
}

export interface UnpickleHooks {
  /** Resolves a BINPERSID id (torch: ('storage', StorageType, key, location, numel)). */
  persistentLoad(pid: unknown): unknown;
  /** torch._utils._rebuild_tensor(_v2): a tensor view on a storage. */
  rebuildTensor(storage: unknown, storageOffset: unknown, size: unknown, stride: unknown): unknown;
}

/** What an allowed global does when called (REDUCE) or instantiated (NEWOBJ). */
interface Behaviour {
  call?(args: readonly unknown[], hooks: UnpickleHooks): unknown;
  newobj?(args: readonly unknown[]): unknown;
}

/** An allowed global as the VM holds it; only resolveGlobal creates these. */
export class AllowedGlobal {
  constructor(
    readonly qualname: string,
    readonly behaviour: Behaviour,
  ) {}
}

const STORAGES: Record<string, Dtype> = {
  FloatStorage: "F32",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  DoubleStorage: "F64",
  LongStorage: "I64",
  IntStorage: "I32",
  ShortStorage: "I16",
  CharStorage: "I8",
  ByteStorage: "U8",
  BoolStorage: "BOOL",
};

const TORCH_DTYPES: Record<string, Dtype> = {
  float32: "F32",
  float: "F32",
  float16: "F16",
  half: "F16",
  bfloat16: "BF16",
  float64: "F64",
  double: "F64",
  int64: "I64",
  long: "I64",
  int32: "I32",
  int: "I32",
  int16: "I16",
  short: "I16",
  int8: "I8",
  uint8: "U8",
  bool: "BOOL",
};

function pairsToMap(items: unknown): Map<unknown, unknown> {
  const m = new Map<unknown, unknown>();
  if (items === undefined) return m;
  if (!Array.isArray(items)) throw new Error(`expects a list of pairs, got ${describe(items)}`);
  for (const kv of items) {
    if (!Array.isArray(kv) || kv.length !== 2) {
      throw new Error(`expects (key, value) pairs, got ${describe(kv)}`);
    }
    m.set(kv[0], kv[1]);
  }
  return m;
}

const rebuild = (a: readonly unknown[], h: UnpickleHooks) => h.rebuildTensor(a[0], a[1], a[2], a[3]);
const first = (a: readonly unknown[]) => a[0];
const toSet = (a: readonly unknown[]) => {
  if (a[0] !== undefined && !Array.isArray(a[0])) throw new Error(`expects a list, got ${describe(a[0])}`);
  return new Set(a[0] ?? []);
};

/** The allow-list, by "module name". Parameters rebuild to their plain tensor. */
const ALLOWED = new Map<string, Behaviour>([
  ["collections OrderedDict", { call: (a) => pairsToMap(a[0]), newobj: () => new Map() }],
  ["torch._utils _rebuild_tensor_v2", { call: rebuild }],
  ["torch._utils _rebuild_tensor", { call: rebuild }],
  ["torch._utils _rebuild_parameter", { call: first }],
  ["torch._utils _rebuild_parameter_with_state", { call: first }],
  ["builtins set", { call: toSet }],
  ["builtins frozenset", { call: toSet }],
  ["argparse Namespace", { newobj: () => new Namespace() }],
  ["_codecs encode", { call: encodeLatin1 }],
]);

function encodeLatin1(a: readonly unknown[]): Uint8Array {
  if (typeof a[0] !== "string" || (a[1] !== "latin1" && a[1] !== "latin-1")) {
    throw new Error("only _codecs.encode(str, 'latin1') (bytes in protocol 2) is supported");
  }
  return Uint8Array.from(a[0], (c) => {
    const code = c.charCodeAt(0);
    if (code > 255) throw new Error("string is not latin-1");
    return code;
  });
}

/** Resolves module.name against the allow-list, or refuses naming it. */
export function resolveGlobal(module: string, name: string, source: string): unknown {
  if (module === "torch" && Object.hasOwn(STORAGES, name)) return new StorageType(name, STORAGES[name]!);
  if (module === "torch" && Object.hasOwn(TORCH_DTYPES, name)) {
    return new TorchDtype(name, TORCH_DTYPES[name]!);
  }
  if (module === "__builtin__") module = "builtins"; // protocol 2 spells it the Python 2 way
  const g = ALLOWED.get(`${module} ${name}`);
  if (g) return new AllowedGlobal(`${module}.${name}`, g);
  throw new LavieError(
    "failed_precondition",
    `${source}: refusing to load: the pickle references ${module}.${name}, which is not a tensor or container type ` +
      "(allowed: OrderedDict, dict, list, tuple, set, argparse.Namespace, torch storages, dtypes and tensor rebuilds)",
    { field: source, retryable: false },
  );
}
