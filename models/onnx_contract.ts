/**
 * Checks an ONNX model's graph inputs/outputs against a network contract (models/contract.ts):
 * names, dtypes, rank and fixed dims; symbolic contract axes must be dynamic in the model.
 * Failures are failed_precondition naming the file, the tensor and the mismatch.
 */
import { LavieError } from "../core/errors.ts";
import {
  type ModelProto,
  TensorProto_DataLocation,
  TensorProto_DataType,
  type ValueInfoProto,
} from "../gen/third_party/onnx/onnx_pb.ts";
import type { NetworkContract, TensorSpec } from "./contract.ts";

const DTYPE_NAMES: Partial<Record<number, string>> = {
  [TensorProto_DataType.FLOAT]: "float32",
  [TensorProto_DataType.INT64]: "int64",
  [TensorProto_DataType.INT32]: "int32",
  [TensorProto_DataType.FLOAT16]: "float16",
  [TensorProto_DataType.BFLOAT16]: "bfloat16",
  [TensorProto_DataType.DOUBLE]: "float64",
  [TensorProto_DataType.BOOL]: "bool",
};

function dtypeName(code: number): string {
  return DTYPE_NAMES[code] ?? `${TensorProto_DataType[code] ?? "unknown"} (ONNX type ${code})`;
}

type ModelDim = number | string | null;

function fmt(dims: readonly (number | string | null)[]): string {
  return `[${dims.map((d) => (d === null ? "?" : String(d))).join(",")}]`;
}

function fail(file: string, msg: string): never {
  throw new LavieError("failed_precondition", `${file}: ${msg}`, { field: file });
}

/** Dims of a value's tensor type; null when the model declares no shape. */
function modelDims(
  v: ValueInfoProto,
  file: string,
  what: string,
): { dtype: number; dims: ModelDim[] | null } {
  const t = v.type?.value;
  if (t?.case !== "tensorType") fail(file, `${what} "${v.name}" is not a tensor`);
  const shape = t.value.shape;
  const dims = shape
    ? shape.dim.map(
        (d): ModelDim =>
          d.value.case === "dimValue"
            ? Number(d.value.value)
            : d.value.case === "dimParam"
              ? d.value.value
              : null,
      )
    : null;
  return { dtype: t.value.elemType, dims };
}

function checkTensor(file: string, what: "input" | "output", v: ValueInfoProto, spec: TensorSpec): void {
  const { dtype, dims } = modelDims(v, file, what);
  const name = `${what} "${spec.name}"`;
  if (dtypeName(dtype) !== spec.dtype) {
    fail(file, `${name} has dtype ${dtypeName(dtype)}; the contract requires ${spec.dtype}`);
  }
  if (dims === null) {
    // Exporters sometimes leave output shapes undeclared; inputs must say what they accept.
    if (what === "output") return;
    fail(
      file,
      `${name} declares no shape; the contract requires rank ${spec.shape.length} ${fmt(spec.shape)}`,
    );
  }
  if (dims.length !== spec.shape.length) {
    fail(
      file,
      `${name} has rank ${dims.length} ${fmt(dims)}; the contract requires rank ${spec.shape.length} ${fmt(spec.shape)}`,
    );
  }
  spec.shape.forEach((want, i) => {
    const got = dims[i] ?? null;
    if (typeof want === "number") {
      if (typeof got === "number" && got !== want) {
        fail(
          file,
          `${name} dim ${i} is ${got} ${fmt(dims)}; the contract requires ${want} ${fmt(spec.shape)}`,
        );
      }
    } else if (typeof got === "number") {
      fail(
        file,
        `${name} dim ${i} is fixed to ${got} ${fmt(dims)}; the contract's axis "${want}" must be dynamic ${fmt(spec.shape)}`,
      );
    }
  });
}

function names(vs: readonly { name: string }[]): string {
  return vs.map((v) => `"${v.name}"`).join(", ") || "none";
}

/**
 * Inputs must be exactly the contract's (by name; initializers listed as inputs are ignored);
 * every contract output must exist (extra outputs are allowed and ignored).
 */
export function checkModelContract(model: ModelProto, contract: NetworkContract, file: string): void {
  const graph = model.graph;
  if (!graph) fail(file, "the model has no graph");
  const inits = new Set(graph.initializer.map((t) => t.name));
  const inputs = graph.input.filter((v) => !inits.has(v.name));
  for (const spec of contract.inputs) {
    const v = inputs.find((i) => i.name === spec.name);
    if (!v) {
      fail(
        file,
        `input "${spec.name}" is missing; the model's inputs are ${names(inputs)}, the contract's ${names(contract.inputs)}`,
      );
    }
    checkTensor(file, "input", v, spec);
  }
  for (const v of inputs) {
    if (!contract.inputs.some((s) => s.name === v.name)) {
      fail(file, `unexpected input "${v.name}"; the contract's inputs are ${names(contract.inputs)}`);
    }
  }
  for (const spec of contract.outputs) {
    const v = graph.output.find((o) => o.name === spec.name);
    if (!v) {
      fail(
        file,
        `output "${spec.name}" is missing; the model's outputs are ${names(graph.output)}, the contract's ${names(contract.outputs)}`,
      );
    }
    checkTensor(file, "output", v, spec);
  }
}

/** The external-data files the model's initializers point to (relative to the .onnx file). */
export function externalDataLocations(model: ModelProto): string[] {
  const out = new Set<string>();
  for (const t of model.graph?.initializer ?? []) {
    if (t.dataLocation !== TensorProto_DataLocation.EXTERNAL) continue;
    const loc = t.externalData.find((e) => e.key === "location")?.value;
    if (loc !== undefined) out.add(loc);
  }
  return [...out];
}
