/**
 * A small, typed ONNX graph builder over the generated ONNX schema (gen/third_party/onnx).
 *
 *   const g = new GraphBuilder({ name: "block", seed: 7 });
 *   const x = g.input("x", "float32", ["N", 64, "H", "W"]);
 *   const w = g.param("conv.weight", [64, 64, 3, 3], { kind: "uniform", bound: 1 / 24 });
 *   const y = g.op("Conv", [x, w], { pads: attr.ints([1, 1, 1, 1]) });
 *   g.output(y, "y", "float32", ["N", 64, "H", "W"]);
 *   const model = g.toModel();
 *
 * - Attribute kinds are explicit (attr.i vs attr.f): a JS number cannot tell int from float.
 * - Every parameter's values are a pure function of (graph seed, parameter's full name), so the
 *   same preset and seed give byte-identical files whatever the build order.
 * - With `materialize: false` parameters are counted but no weights are allocated: this is how the
 *   full-size `lavie` preset reports its parameter counts.
 */
import { create } from "@bufbuild/protobuf";
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  StringStringEntryProtoSchema,
  type TensorProto,
  TensorProto_DataType,
  TensorProtoSchema,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  type ValueInfoProto,
  ValueInfoProtoSchema,
} from "../../gen/third_party/onnx/onnx_pb.ts";
import { f32ToF16Bits } from "../checkpoint/dtypes.ts";
import { normalFill, seedFromName, uniformFill } from "./init.ts";

export const OPSET = 21;
export const IR_VERSION = 10;

export type DType = "float32" | "int64" | "int32" | "bool";
export type Dim = number | string;

const DTYPE_CODE: Record<DType, TensorProto_DataType> = {
  float32: TensorProto_DataType.FLOAT,
  int64: TensorProto_DataType.INT64,
  int32: TensorProto_DataType.INT32,
  bool: TensorProto_DataType.BOOL,
};

/** A named value in the graph (a graph input, an initializer or a node output). */
export class Value {
  constructor(readonly name: string) {}
}

export type Attr =
  | { kind: "int"; value: number }
  | { kind: "float"; value: number }
  | { kind: "ints"; value: readonly number[] }
  | { kind: "floats"; value: readonly number[] }
  | { kind: "string"; value: string };

export const attr = {
  i: (value: number): Attr => ({ kind: "int", value }),
  f: (value: number): Attr => ({ kind: "float", value }),
  ints: (value: readonly number[]): Attr => ({ kind: "ints", value }),
  floats: (value: readonly number[]): Attr => ({ kind: "floats", value }),
  s: (value: string): Attr => ({ kind: "string", value }),
};

/** How a parameter's values are drawn (seeded by the parameter's full name). */
export type Init =
  | { kind: "normal"; std: number; mean?: number }
  | { kind: "uniform"; bound: number }
  | { kind: "zeros" }
  | { kind: "ones" }
  /** Fixed values (e.g. a rotary embedding's frequencies), one per element. */
  | { kind: "values"; values: ArrayLike<number> };

export interface GraphBuilderOptions {
  name: string;
  seed: number;
  /** false: count parameters without allocating weights (the model cannot be serialized). */
  materialize?: boolean;
  docString?: string;
  /**
   * Where parameter values come from (an imported checkpoint). Without it parameters are seeded.
   * Parameter names and shapes are the official state-dict keys and shapes (PyTorch layout).
   */
  weights?: WeightSource;
  /**
   * Storage type of parameters. "float16" halves the files (for GPU runners): each parameter is stored
   * as FLOAT16 and cast to float32 in the graph (ONNX Runtime folds the Cast when the session loads).
   */
  weightDtype?: "float32" | "float16";
}

/** Parameter values by full name, e.g. an imported state dict. */
export interface WeightSource {
  /** The values of `name`, which must have exactly `shape`; throws a LavieError naming the key otherwise. */
  take(name: string, shape: readonly number[]): Float32Array;
}

export interface ParamInfo {
  readonly name: string;
  readonly shape: readonly number[];
}

export class GraphBuilder {
  readonly name: string;
  readonly seed: number;
  readonly materialize: boolean;
  private readonly docString: string;
  private readonly weights: WeightSource | undefined;
  private readonly weightDtype: "float32" | "float16";
  private readonly nodes: NodeProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];
  private readonly scopes: string[] = [];
  private readonly used = new Map<string, number>();
  private readonly paramNames = new Set<string>();
  private readonly params: ParamInfo[] = [];
  private readonly constCache = new Map<string, Value>();
  private nodeCount = 0;
  private paramTotal = 0;

  constructor(opts: GraphBuilderOptions) {
    this.name = opts.name;
    this.seed = opts.seed;
    this.materialize = opts.materialize ?? true;
    this.docString = opts.docString ?? "";
    this.weights = opts.weights;
    this.weightDtype = opts.weightDtype ?? "float32";
  }

  /** Runs fn with names prefixed by `name.` (parameters) and `name/` (nodes). */
  scope<T>(name: string, fn: () => T): T {
    this.scopes.push(name);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  get prefix(): string {
    return this.scopes.join(".");
  }

  private fresh(base: string): string {
    const full = this.scopes.length ? `${this.scopes.join("/")}/${base}` : base;
    const n = this.used.get(full) ?? 0;
    this.used.set(full, n + 1);
    return n === 0 ? full : `${full}_${n}`;
  }

  input(name: string, dtype: DType, dims: readonly Dim[]): Value {
    this.inputs.push(valueInfo(name, dtype, dims));
    return new Value(name);
  }

  /** Declares a graph output; inserts an Identity when the value has another name. */
  output(v: Value, name: string, dtype: DType, dims: readonly Dim[]): void {
    if (v.name !== name) {
      this.nodes.push(
        create(NodeProtoSchema, {
          opType: "Identity",
          input: [v.name],
          output: [name],
          name: `${name}/Identity`,
        }),
      );
    }
    this.outputs.push(valueInfo(name, dtype, dims));
  }

  /** Adds a node with one output. `null` inputs become "" (an omitted optional input). */
  op(
    opType: string,
    inputs: readonly (Value | null)[],
    attrs: Record<string, Attr> = {},
    domain = "",
  ): Value {
    const [out] = this.opN(opType, inputs, 1, attrs, domain);
    return out!;
  }

  opN(
    opType: string,
    inputs: readonly (Value | null)[],
    outputs: number,
    attrs: Record<string, Attr> = {},
    domain = "",
  ): Value[] {
    const nodeName = this.fresh(opType);
    this.nodeCount++;
    const outs = Array.from(
      { length: outputs },
      (_, i) => new Value(outputs === 1 ? nodeName : `${nodeName}:${i}`),
    );
    this.nodes.push(
      create(NodeProtoSchema, {
        opType,
        domain,
        name: nodeName,
        input: inputs.map((v) => (v ? v.name : "")),
        output: outs.map((v) => v.name),
        attribute: Object.entries(attrs).map(([k, a]) => attributeProto(k, a)),
      }),
    );
    return outs;
  }

  /** A trainable parameter (initializer) named by the current scope. */
  param(localName: string, shape: readonly number[], init: Init): Value {
    const name = this.prefix ? `${this.prefix}.${localName}` : localName;
    if (this.paramNames.has(name)) throw new Error(`duplicate parameter name ${name}`);
    this.paramNames.add(name);
    const count = shape.reduce((a, b) => a * b, 1);
    this.paramTotal += count;
    this.params.push({ name, shape: [...shape] });
    if (this.materialize && this.weights) {
      this.initializers.push(this.paramTensor(name, shape, this.weights.take(name, shape)));
    } else if (this.materialize) {
      const data = new Float32Array(count);
      const rng = seedFromName(this.seed, name);
      switch (init.kind) {
        case "normal":
          normalFill(data, rng, init.mean ?? 0, init.std);
          break;
        case "uniform":
          uniformFill(data, rng, init.bound);
          break;
        case "ones":
          data.fill(1);
          break;
        case "zeros":
          break;
        case "values":
          if (init.values.length !== count)
            throw new Error(`parameter ${name}: ${init.values.length} initial values for ${count} elements`);
          data.set(init.values);
          break;
      }
      this.initializers.push(this.paramTensor(name, shape, data));
    }
    if (this.weightDtype === "float16") return this.op("Cast", [new Value(name)], { to: attr.i(1) });
    return new Value(name);
  }

  private paramTensor(name: string, shape: readonly number[], data: Float32Array): TensorProto {
    if (this.weightDtype === "float32") return floatTensorProto(name, shape, data);
    const half = new Uint16Array(data.length);
    for (let i = 0; i < data.length; i++) half[i] = f32ToF16Bits(data[i]!);
    return create(TensorProtoSchema, {
      name,
      dims: shape.map(BigInt),
      dataType: TensorProto_DataType.FLOAT16,
      rawData: new Uint8Array(half.buffer),
    });
  }

  /** A float32 constant (not a parameter: not counted, always materialized). */
  constF(values: readonly number[] | Float32Array, shape: readonly number[] = [values.length]): Value {
    return this.constant("float32", values, shape);
  }

  /** An int64 constant, 1-D by default (shapes, axes, indices). */
  constI(values: readonly number[], shape: readonly number[] = [values.length]): Value {
    return this.constant("int64", values, shape);
  }

  private constant(dtype: "float32" | "int64", values: ArrayLike<number>, shape: readonly number[]): Value {
    const key = `${dtype}|${shape.join(",")}|${Array.from(values).join(",")}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const name = `const_${this.constCache.size}`;
    const t =
      dtype === "float32"
        ? floatTensorProto(name, shape, Float32Array.from(values))
        : create(TensorProtoSchema, {
            name,
            dims: shape.map(BigInt),
            dataType: TensorProto_DataType.INT64,
            rawData: new Uint8Array(BigInt64Array.from(Array.from(values), (v) => BigInt(v)).buffer),
          });
    this.initializers.push(t);
    const v = new Value(name);
    this.constCache.set(key, v);
    return v;
  }

  get parameterCount(): number {
    return this.paramTotal;
  }

  get parameters(): readonly ParamInfo[] {
    return this.params;
  }

  get size(): { nodes: number; params: number } {
    return { nodes: this.nodeCount, params: this.paramTotal };
  }

  toModel(metadata: Record<string, string> = {}): ModelProto {
    if (!this.materialize)
      throw new Error(`graph ${this.name} was built without weights (materialize: false)`);
    return create(ModelProtoSchema, {
      irVersion: BigInt(IR_VERSION),
      producerName: "lavie-serve",
      producerVersion: "0.1.0",
      docString: this.docString,
      opsetImport: [create(OperatorSetIdProtoSchema, { domain: "", version: BigInt(OPSET) })],
      metadataProps: Object.entries(metadata).map(([key, value]) =>
        create(StringStringEntryProtoSchema, { key, value }),
      ),
      graph: create(GraphProtoSchema, {
        name: this.name,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      }),
    });
  }
}

function valueInfo(name: string, dtype: DType, dims: readonly Dim[]): ValueInfoProto {
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: "tensorType",
        value: create(TypeProto_TensorSchema, {
          elemType: DTYPE_CODE[dtype],
          shape: create(TensorShapeProtoSchema, {
            dim: dims.map((d) =>
              create(TensorShapeProto_DimensionSchema, {
                value:
                  typeof d === "number"
                    ? { case: "dimValue", value: BigInt(d) }
                    : { case: "dimParam", value: d },
              }),
            ),
          }),
        }),
      },
    }),
  });
}

function floatTensorProto(name: string, shape: readonly number[], data: Float32Array): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dims: shape.map(BigInt),
    dataType: TensorProto_DataType.FLOAT,
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  });
}

function attributeProto(name: string, a: Attr) {
  const T = AttributeProto_AttributeType;
  switch (a.kind) {
    case "int":
      if (!Number.isInteger(a.value)) throw new Error(`attribute ${name}: ${a.value} is not an integer`);
      return create(AttributeProtoSchema, { name, type: T.INT, i: BigInt(a.value) });
    case "float":
      return create(AttributeProtoSchema, { name, type: T.FLOAT, f: a.value });
    case "ints":
      return create(AttributeProtoSchema, { name, type: T.INTS, ints: a.value.map((v) => BigInt(v)) });
    case "floats":
      return create(AttributeProtoSchema, { name, type: T.FLOATS, floats: [...a.value] });
    case "string":
      return create(AttributeProtoSchema, { name, type: T.STRING, s: new TextEncoder().encode(a.value) });
  }
}
