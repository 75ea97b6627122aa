/**
 * ModelProto -> bytes, optionally moving large initializers into an external-data file (required
 * for models over 2 GB; onnxruntime then loads the model by path). Output is deterministic.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import {
  type ModelProto,
  ModelProtoSchema,
  StringStringEntryProtoSchema,
  TensorProto_DataLocation,
} from "../../gen/third_party/onnx/onnx_pb.ts";

export interface SerializedModel {
  /** The .onnx file's bytes. */
  readonly onnx: Uint8Array;
  /** The external-data file's contents as chunks in order (empty when all weights are inline). */
  readonly data: readonly Uint8Array[];
  readonly dataBytes: number;
}

export interface SerializeOptions {
  /** File name (relative to the .onnx file) for external data; inline weights when absent. */
  externalDataFile?: string;
  /** Only initializers at least this large go external (default 1024 bytes). */
  externalMinBytes?: number;
}

const ALIGN = 64;

export function serializeModel(model: ModelProto, opts: SerializeOptions = {}): SerializedModel {
  const chunks: Uint8Array[] = [];
  let offset = 0;
  if (opts.externalDataFile && model.graph) {
    const min = opts.externalMinBytes ?? 1024;
    for (const t of model.graph.initializer) {
      if (t.rawData.length < min) continue;
      const pad = (ALIGN - (offset % ALIGN)) % ALIGN;
      if (pad) chunks.push(new Uint8Array(pad));
      offset += pad;
      chunks.push(t.rawData);
      t.externalData = [
        create(StringStringEntryProtoSchema, { key: "location", value: opts.externalDataFile }),
        create(StringStringEntryProtoSchema, { key: "offset", value: String(offset) }),
        create(StringStringEntryProtoSchema, { key: "length", value: String(t.rawData.length) }),
      ];
      t.dataLocation = TensorProto_DataLocation.EXTERNAL;
      offset += t.rawData.length;
      t.rawData = new Uint8Array(0);
    }
  }
  return { onnx: toBinary(ModelProtoSchema, model), data: chunks, dataBytes: offset };
}
