/**
 * Validation of an ExecuteTaskRequest before a runner commits a slot to it: the task and job spec
 * JSON, the served stage, the output object name and, for every TensorRead of the task, the TileSet
 * that describes the tensor (shape, windows, one TensorRef per tile; an empty one for a tile the
 * task does not read, which may not exist yet). Every failure is
 * LavieError("invalid_argument") whose field names the request field ("task_json.text.box",
 * "inputs[1].tiles[3].shape", "output_object", ...).
 */
import { taskReads } from "../../coordinator/plan/reads.ts";
import type { NetworkId, StageName, Task, TensorRead } from "../../coordinator/plan/types.ts";
import { invalidArgument, LavieError } from "../../core/errors.ts";
import type { JobSpec } from "../../core/job.ts";
import { SAMPLER_NAMES } from "../../core/samplers/index.ts";
import type { Box } from "../../core/tensor.ts";
import { type AxisWindows, planFromWindows, type TilePlan, tilesCovering } from "../../core/tiling/index.ts";
import type { ExecuteTaskRequest, TileSet } from "../../gen/lavie/v1/runner_pb.ts";
import type { TensorRef as ProtoTensorRef } from "../../gen/lavie/v1/tensor_pb.ts";
import { NETWORK_IDS } from "../../models/networks.ts";
import type { TensorRef } from "../../transport/nats/tensors.ts";

export const STAGES: readonly StageName[] = ["base", "interpolation", "vsr"];

/**
 * A tensor the task reads: its tile plan (rebuilt from the windows) and its tiles' references;
 * null for a tile given as an empty TensorRef (not produced yet, and not read by the task).
 */
export interface InputTensor {
  readonly name: string;
  readonly plan: TilePlan;
  readonly tiles: readonly (TensorRef | null)[];
}

export interface ValidatedRequest {
  readonly jobId: string;
  readonly attempt: number;
  readonly task: Task;
  readonly spec: JobSpec;
  readonly inputs: ReadonlyMap<string, InputTensor>;
  readonly outputObject: string;
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

function obj(field: string, v: unknown): Obj {
  if (!isObj(v)) throw invalidArgument(field, `must be an object, got ${describe(v)}`);
  return v;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "string" ? JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v) : typeof v;
}

function str(field: string, v: unknown, nonEmpty = false): string {
  if (typeof v !== "string") throw invalidArgument(field, `must be a string, got ${describe(v)}`);
  if (nonEmpty && v === "") throw invalidArgument(field, "must not be empty");
  return v;
}

function int(field: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max) {
    throw invalidArgument(field, `must be an integer in ${min}..${max}, got ${describe(v)}`);
  }
  return v;
}

function num(field: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw invalidArgument(field, `must be a finite number, got ${describe(v)}`);
  }
  return v;
}

function oneOf<T extends string>(field: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== "string" || !(allowed as readonly string[]).includes(v)) {
    throw invalidArgument(field, `must be one of ${allowed.join(", ")}, got ${describe(v)}`);
  }
  return v as T;
}

function intArray(field: string, v: unknown, min: number): number[] {
  if (!Array.isArray(v)) throw invalidArgument(field, `must be an array of integers, got ${describe(v)}`);
  return v.map((x, i) => int(`${field}[${i}]`, x, min));
}

function parseJson(field: string, text: string): Obj {
  if (text === "") throw invalidArgument(field, "must not be empty");
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw invalidArgument(field, `is not valid JSON (${(err as Error).message})`);
  }
  return obj(field, v);
}

function box(field: string, v: unknown): Box {
  const o = obj(field, v);
  const start = intArray(`${field}.start`, o.start, 0);
  const size = intArray(`${field}.size`, o.size, 1);
  if (start.length !== size.length || start.length === 0) {
    throw invalidArgument(
      field,
      `start and size must have the same non-zero length (${start.length}, ${size.length})`,
    );
  }
  return { start, size };
}

function tensorRead(field: string, v: unknown): TensorRead {
  const o = obj(field, v);
  return { tensor: str(`${field}.tensor`, o.tensor, true), box: box(`${field}.box`, o.box) };
}

/** Parses and checks a plan task (coordinator/plan/types.ts Task) given as JSON. */
export function parseTask(text: string, field = "task_json"): Task {
  const o = parseJson(field, text);
  const kind = oneOf(`${field}.kind`, o.kind, [
    "text",
    "base_denoise",
    "vae_decode",
    "vae_encode",
    "interp_denoise",
    "vsr_denoise",
  ] as const);
  const out = obj(`${field}.output`, o.output);
  if (!Array.isArray(o.deps))
    throw invalidArgument(`${field}.deps`, `must be an array, got ${describe(o.deps)}`);
  if (!Array.isArray(o.networks) || o.networks.length === 0) {
    throw invalidArgument(`${field}.networks`, `must be a non-empty array, got ${describe(o.networks)}`);
  }
  const common = {
    id: str(`${field}.id`, o.id, true),
    stage: oneOf(`${field}.stage`, o.stage, STAGES),
    deps: o.deps.map((d, i) => str(`${field}.deps[${i}]`, d)),
    output: {
      tensor: str(`${field}.output.tensor`, out.tensor, true),
      tile: int(`${field}.output.tile`, out.tile, 0),
    },
    units: int(`${field}.units`, o.units, 1, 100_000),
    networks: o.networks.map((n, i) => oneOf<NetworkId>(`${field}.networks[${i}]`, n, NETWORK_IDS)),
  };
  switch (kind) {
    case "text": {
      const p = o.prompts;
      if (!Array.isArray(p) || p.length !== 2) {
        throw invalidArgument(`${field}.prompts`, "must be [negative, positive] (two strings)");
      }
      const prompts = [str(`${field}.prompts[0]`, p[0]), str(`${field}.prompts[1]`, p[1])] as const;
      return { ...common, kind, prompts };
    }
    case "base_denoise": {
      const text = tensorRead(`${field}.text`, o.text);
      if (o.cfg === undefined) return { ...common, kind, text };
      const c = obj(`${field}.cfg`, o.cfg);
      const cfg = {
        branch: oneOf(`${field}.cfg.branch`, c.branch, ["uncond", "cond"] as const),
        gang: str(`${field}.cfg.gang`, c.gang, true),
      };
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(cfg.gang)) {
        throw invalidArgument(
          `${field}.cfg.gang`,
          `must be 1-64 characters of [A-Za-z0-9_.-], got ${describe(cfg.gang)}`,
        );
      }
      return { ...common, kind, text, cfg };
    }
    case "vae_decode":
    case "vae_encode":
      return {
        ...common,
        kind,
        input: tensorRead(`${field}.input`, o.input),
        scalingFactor: num(`${field}.scalingFactor`, o.scalingFactor),
      };
    case "interp_denoise":
      return {
        ...common,
        kind,
        text: tensorRead(`${field}.text`, o.text),
        cond: tensorRead(`${field}.cond`, o.cond),
        box: box(`${field}.box`, o.box),
      };
    case "vsr_denoise":
      return {
        ...common,
        kind,
        text: tensorRead(`${field}.text`, o.text),
        lowRes: tensorRead(`${field}.lowRes`, o.lowRes),
        box: box(`${field}.box`, o.box),
      };
  }
}

function stageSpec(field: string, v: unknown): void {
  const o = obj(field, v);
  int(`${field}.steps`, o.steps, 1, 100_000);
  num(`${field}.guidance`, o.guidance);
  oneOf(`${field}.sampler`, o.sampler, SAMPLER_NAMES);
  num(`${field}.eta`, o.eta);
  str(`${field}.negativePrompt`, o.negativePrompt);
  str(`${field}.promptSuffix`, o.promptSuffix);
}

/** Checks the structure of a resolved JobSpec (core/job.ts) given as JSON. */
export function parseSpec(text: string, field = "spec_json"): JobSpec {
  const o = parseJson(field, text);
  str(`${field}.prompt`, o.prompt);
  int(`${field}.seed`, o.seed, 0);
  str(`${field}.preset`, o.preset, true);
  oneOf(`${field}.stopAfter`, o.stopAfter, STAGES);
  int(`${field}.frames`, o.frames, 1);
  int(`${field}.height`, o.height, 1);
  int(`${field}.width`, o.width, 1);
  stageSpec(`${field}.base`, o.base);
  stageSpec(`${field}.interpolation`, o.interpolation);
  const ip = o.interpolation as Obj;
  int(`${field}.interpolation.chunkFrames`, ip.chunkFrames, 0);
  int(`${field}.interpolation.chunkOverlap`, ip.chunkOverlap, 0);
  stageSpec(`${field}.vsr`, o.vsr);
  const v = o.vsr as Obj;
  for (const k of ["noiseLevel", "chunkFrames", "patch", "patchOverlap"]) int(`${field}.vsr.${k}`, v[k], 0);
  const d = obj(`${field}.decode`, o.decode);
  for (const k of ["baseFrames", "vsrFrames", "vsrTile", "vsrTileOverlap"])
    int(`${field}.decode.${k}`, d[k], 0);
  return o as unknown as JobSpec;
}

function toNumber(field: string, v: bigint | number, min: number): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min)
    throw invalidArgument(field, `must be an integer >= ${min}, got ${v}`);
  return n;
}

/** A TensorRef message -> the data plane's TensorRef (checked). */
export function fromProtoRef(field: string, r: ProtoTensorRef): TensorRef {
  if (r.object === "") throw invalidArgument(`${field}.object`, "must not be empty");
  if (r.dtype !== "float32")
    throw invalidArgument(`${field}.dtype`, `must be "float32", got ${describe(r.dtype)}`);
  if (r.digest === "") throw invalidArgument(`${field}.digest`, "must not be empty");
  return {
    object: r.object,
    dtype: "float32",
    shape: r.shape.map((d, i) => toNumber(`${field}.shape[${i}]`, d, 0)),
    digest: r.digest,
    bytes: toNumber(`${field}.bytes`, r.bytes, 0),
  };
}

/** The data plane's TensorRef -> a TensorRef message init. */
export function toProtoRef(r: TensorRef): {
  object: string;
  dtype: string;
  shape: bigint[];
  digest: string;
  bytes: bigint;
} {
  return {
    object: r.object,
    dtype: r.dtype,
    shape: r.shape.map(BigInt),
    digest: r.digest,
    bytes: BigInt(r.bytes),
  };
}

/**
 * A TileSet message -> its tile plan and tile refs; each ref's shape must be its tile's size. A ref
 * with an empty object name stands for a tile that does not exist yet (null).
 */
export function parseTileSet(field: string, ts: TileSet): InputTensor {
  const shape = ts.shape.map((d, i) => toNumber(`${field}.shape[${i}]`, d, 1));
  if (shape.length === 0) throw invalidArgument(`${field}.shape`, "must not be empty");
  const axes: AxisWindows[] = ts.axes.map((a, k) => ({
    axis: a.axis,
    windows: a.windows.map((w, j) => ({
      start: toNumber(`${field}.axes[${k}].windows[${j}].start`, w.start, 0),
      size: toNumber(`${field}.axes[${k}].windows[${j}].size`, w.size, 1),
    })),
  }));
  let plan: TilePlan;
  try {
    plan = planFromWindows(shape, axes);
  } catch (err) {
    const e = LavieError.from(err);
    throw invalidArgument(`${field}.axes`, e.message);
  }
  if (ts.tiles.length !== plan.tiles.length) {
    throw invalidArgument(
      `${field}.tiles`,
      `has ${ts.tiles.length} tile refs, the windows make ${plan.tiles.length} tiles`,
    );
  }
  const tiles = ts.tiles.map((r, i) => {
    if (r.object === "") return null;
    const ref = fromProtoRef(`${field}.tiles[${i}]`, r);
    const want = plan.tiles[i]!.box.size;
    if (ref.shape.length !== want.length || ref.shape.some((d, k) => d !== want[k])) {
      throw invalidArgument(
        `${field}.tiles[${i}].shape`,
        `is [${ref.shape.join(", ")}], tile ${i} of the windows is [${want.join(", ")}]`,
      );
    }
    return ref;
  });
  return { name: ts.tensor, plan, tiles };
}

function checkBoxInside(field: string, b: Box, shape: readonly number[]): void {
  if (b.start.length !== shape.length) {
    throw invalidArgument(field, `rank ${b.start.length} does not match the tensor's rank ${shape.length}`);
  }
  for (let d = 0; d < shape.length; d++) {
    if (b.start[d]! + b.size[d]! > shape[d]!) {
      throw invalidArgument(
        field,
        `axis ${d}: [${b.start[d]}, ${b.start[d]! + b.size[d]!}) is outside the tensor's size ${shape[d]}`,
      );
    }
  }
}

/**
 * Validates a request for a runner serving `stages`. Does not touch the data plane: tile refs are
 * checked for form only (the store checks digests when the tiles are read).
 */
export function validateRequest(req: ExecuteTaskRequest, stages: ReadonlySet<StageName>): ValidatedRequest {
  const jobId = str("job_id", req.jobId, true);
  if (jobId.includes("/")) throw invalidArgument("job_id", `must not contain "/", got ${describe(jobId)}`);
  const task = parseTask(req.taskJson);
  if (!stages.has(task.stage)) {
    throw invalidArgument(
      "task_json.stage",
      `this runner serves ${[...stages].join(", ")}, not ${task.stage} (task ${task.id})`,
    );
  }
  const spec = parseSpec(req.specJson);
  const outputObject = req.outputObject;
  if (outputObject === "" || !outputObject.startsWith(`${jobId}/`) || outputObject === `${jobId}/`) {
    throw invalidArgument("output_object", `must be "${jobId}/<name>", got ${describe(outputObject)}`);
  }
  const given = new Map<string, { index: number; ts: TileSet }>();
  req.inputs.forEach((ts, index) => {
    if (ts.tensor === "") throw invalidArgument(`inputs[${index}].tensor`, "must not be empty");
    if (given.has(ts.tensor)) throw invalidArgument(`inputs[${index}].tensor`, `${ts.tensor} is given twice`);
    given.set(ts.tensor, { index, ts });
  });
  const inputs = new Map<string, InputTensor>();
  for (const { field, read } of taskReads(task)) {
    const g = given.get(read.tensor);
    if (!g) {
      throw invalidArgument("inputs", `no TileSet for tensor ${read.tensor} (read by task_json.${field})`);
    }
    const parsed = inputs.get(read.tensor) ?? parseTileSet(`inputs[${g.index}]`, g.ts);
    checkBoxInside(`task_json.${field}.box`, read.box, parsed.plan.shape);
    for (const i of tilesCovering(parsed.plan, read.box)) {
      if (!parsed.tiles[i]) {
        throw invalidArgument(
          `inputs[${g.index}].tiles[${i}]`,
          `has no reference (empty object name), but task_json.${field}.box reads tile ${i} of ${read.tensor}`,
        );
      }
    }
    inputs.set(read.tensor, parsed);
  }
  return { jobId, attempt: req.attempt, task, spec, inputs, outputObject };
}
