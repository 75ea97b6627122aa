/**
 * Validation of an ExecuteTaskRequest before a runner commits a slot to it: the task and job spec
 * JSON, the served stage, the output object name and, for every TensorRead of the task, the TileSet
 * that describes the tensor (shape, windows, one TensorRef per tile; an empty one for a tile the
 * task does not read, which may not exist yet). Every failure is
 * LavieError("invalid_argument") whose field names the request field ("task_json.text.box",
 * "inputs[1].tiles[3].shape", "output_object", ...).
 *
 * Hostile requests are refused before anything is allocated or read (REQUEST_LIMITS): JSON size
 * and nesting, the job's size (the bounds of core/job.ts), tensor ranks, dimensions, tile counts and
 * elements, and object names: every object a task reads or writes is "<job_id>/<name>" with plain
 * segments (no "..", wildcards, control characters), so a request cannot reach another job's
 * objects or results/.
 */
import { taskReads } from "../../coordinator/plan/reads.ts";
import type { NetworkId, StageName, Task, TensorRead } from "../../coordinator/plan/types.ts";
import { invalidArgument, LavieError } from "../../core/errors.ts";
import { type JobSpec, MAX_FRAMES, MAX_PROMPT_CHARS, MAX_SIDE, MAX_STEPS } from "../../core/job.ts";
import { SAMPLER_NAMES } from "../../core/samplers/index.ts";
import { checkJobSeed } from "../../core/seed.ts";
import type { Box } from "../../core/tensor.ts";
import { type AxisWindows, planFromWindows, type TilePlan, tilesCovering } from "../../core/tiling/index.ts";
import type { ExecuteTaskRequest, TileSet } from "../../gen/lavie/v1/runner_pb.ts";
import type { TensorRef as ProtoTensorRef } from "../../gen/lavie/v1/tensor_pb.ts";
import { NETWORK_IDS } from "../../models/networks.ts";
import { malformedRequest } from "../../transport/grpc/adapter.ts";
import type { TensorRef } from "../../transport/nats/tensors.ts";

export const STAGES: readonly StageName[] = ["base", "interpolation", "vsr"];

/** What one ExecuteTaskRequest may ask for; beyond these it is refused before any work. */
export const REQUEST_LIMITS = {
  /** Characters of task_json / spec_json (a real one is a few kB). */
  jsonChars: 256 * 1024,
  /** Nesting of task_json / spec_json (a real one nests 4 levels). */
  jsonDepth: 16,
  /** Tensor rank (the plan's tensors have rank 3 or 5). */
  rank: 8,
  /** Size of one tensor axis (the largest is the x4 decoder's output side, 4 x 4096). */
  dim: 4 * MAX_SIDE,
  /** Tiles of one tensor (TileSet.tiles; a job has at most MAX_TASKS_PER_JOB tasks). */
  tiles: 10_000,
  /** Elements of all windows of a TileSet (each window gets blending weights). */
  windowElements: 1 << 22,
  /** Elements of one tile, read box or output box (1 GiB of float32). */
  elements: 1 << 28,
  /** Attempt numbers. */
  attempt: 1_000_000,
  /** Characters of an object name. */
  objectChars: 512,
} as const;

/** A job id as the job store keys it; "results" is reserved (results/<job>.mp4 holds every job's video). */
const JOB_ID = /^[A-Za-z0-9_-]{1,128}$/;
/** One segment of an object name below "<job_id>/". */
const SEGMENT = /^[A-Za-z0-9_.#=:-]+$/;
/** Names of tensors and tasks in a plan ("base.latent", "vsr.latent#12"). */
const NAME = /^[A-Za-z0-9_.#-]{1,128}$/;

/** The network a task of each kind runs, per stage (as coordinator/plan/plan.ts plans them). */
const NETWORK_OF: Readonly<Record<Task["kind"], Partial<Record<StageName, NetworkId>>>> = {
  text: { base: "clip_text", interpolation: "clip_text", vsr: "vsr_text" },
  base_denoise: { base: "base_unet" },
  vae_decode: { base: "sd_vae_decoder", interpolation: "sd_vae_decoder", vsr: "x4_vae_decoder" },
  vae_encode: { interpolation: "sd_vae_encoder" },
  interp_denoise: { interpolation: "interp_unet" },
  vsr_denoise: { vsr: "vsr_unet" },
};

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
  if (typeof v === "number") return String(v);
  return typeof v === "string" ? JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v) : typeof v;
}

function str(field: string, v: unknown, nonEmpty = false, max = MAX_PROMPT_CHARS): string {
  if (typeof v !== "string") throw invalidArgument(field, `must be a string, got ${describe(v)}`);
  if (nonEmpty && v === "") throw invalidArgument(field, "must not be empty");
  if (v.length > max) throw invalidArgument(field, `must be at most ${max} characters, got ${v.length}`);
  return v;
}

function name(field: string, v: unknown, pattern = NAME): string {
  const s = str(field, v, true, 256);
  if (!pattern.test(s)) throw invalidArgument(field, `must match ${pattern.source}, got ${describe(s)}`);
  return s;
}

/** Elements of a shape or box size (a float: never overflows). */
const elements = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

function checkElements(field: string, dims: readonly number[]): void {
  const n = elements(dims);
  if (n > REQUEST_LIMITS.elements) {
    throw invalidArgument(
      field,
      `[${dims.join(", ")}] has ${n} elements, at most ${REQUEST_LIMITS.elements} are allowed`,
    );
  }
}

/**
 * An object name of job `jobId`: "<jobId>/<segment>[/<segment>...]", segments of [A-Za-z0-9_.#=:-]
 * other than "." and "..", at most REQUEST_LIMITS.objectChars characters.
 */
export function checkObjectName(field: string, object: string, jobId: string): string {
  const max = REQUEST_LIMITS.objectChars;
  const bad = (why: string) =>
    invalidArgument(field, `must be "${jobId}/<name>" (${why}), got ${describe(object)}`);
  if (object.length > max) throw bad(`at most ${max} characters`);
  if (!object.startsWith(`${jobId}/`)) throw bad("an object of this job");
  const segments = object.slice(jobId.length + 1).split("/");
  for (const seg of segments) {
    if (seg === "" || seg === "." || seg === ".." || !SEGMENT.test(seg)) {
      throw bad("segments of [A-Za-z0-9_.#=:-], not empty, . or ..");
    }
  }
  return object;
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
  if (v.length > REQUEST_LIMITS.rank) {
    throw invalidArgument(field, `must have at most ${REQUEST_LIMITS.rank} entries, got ${v.length}`);
  }
  return v.map((x, i) => int(`${field}[${i}]`, x, min, REQUEST_LIMITS.dim));
}

/** The deepest nesting of arrays and objects in JSON text (stops counting past `max`). */
function jsonDepth(text: string, max: number): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      depth++;
      if (depth > deepest) deepest = depth;
      if (deepest > max) return deepest;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return deepest;
}

function parseJson(field: string, text: string): Obj {
  if (text === "") throw invalidArgument(field, "must not be empty");
  const { jsonChars, jsonDepth: maxDepth } = REQUEST_LIMITS;
  if (text.length > jsonChars) {
    throw invalidArgument(field, `must be at most ${jsonChars} characters, got ${text.length}`);
  }
  if (jsonDepth(text, maxDepth) > maxDepth) {
    throw invalidArgument(field, `nests deeper than ${maxDepth} levels`);
  }
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
  checkElements(`${field}.size`, size);
  return { start, size };
}

function tensorRead(field: string, v: unknown): TensorRead {
  const o = obj(field, v);
  return { tensor: name(`${field}.tensor`, o.tensor), box: box(`${field}.box`, o.box) };
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
  if (!Array.isArray(o.deps) || o.deps.length > REQUEST_LIMITS.tiles)
    throw invalidArgument(
      `${field}.deps`,
      `must be an array of at most ${REQUEST_LIMITS.tiles} task ids, got ${describe(o.deps)}`,
    );
  if (!Array.isArray(o.networks) || o.networks.length !== 1) {
    throw invalidArgument(
      `${field}.networks`,
      `must be an array of one network, got ${describe(o.networks)}`,
    );
  }
  const common = {
    id: name(`${field}.id`, o.id),
    stage: oneOf(`${field}.stage`, o.stage, STAGES),
    deps: o.deps.map((d, i) => name(`${field}.deps[${i}]`, d)),
    output: {
      tensor: name(`${field}.output.tensor`, out.tensor),
      tile: int(`${field}.output.tile`, out.tile, 0, REQUEST_LIMITS.tiles - 1),
    },
    units: int(`${field}.units`, o.units, 1, MAX_STEPS),
    networks: o.networks.map((n, i) => oneOf<NetworkId>(`${field}.networks[${i}]`, n, NETWORK_IDS)),
  };
  switch (kind) {
    case "text": {
      const p = o.prompts;
      if (!Array.isArray(p) || p.length !== 2) {
        throw invalidArgument(`${field}.prompts`, "must be [negative, positive] (two strings)");
      }
      // The positive prompt carries its stage's suffix (", 4k.").
      const max = MAX_PROMPT_CHARS + 64;
      const prompts = [
        str(`${field}.prompts[0]`, p[0], false, max),
        str(`${field}.prompts[1]`, p[1], false, max),
      ] as const;
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
  int(`${field}.steps`, o.steps, 1, MAX_STEPS);
  num(`${field}.guidance`, o.guidance);
  oneOf(`${field}.sampler`, o.sampler, SAMPLER_NAMES);
  num(`${field}.eta`, o.eta);
  str(`${field}.negativePrompt`, o.negativePrompt);
  str(`${field}.promptSuffix`, o.promptSuffix, false, 64);
}

/** Checks the structure of a resolved JobSpec (core/job.ts) given as JSON. */
export function parseSpec(text: string, field = "spec_json"): JobSpec {
  const o = parseJson(field, text);
  str(`${field}.prompt`, o.prompt);
  checkJobSeed(o.seed, `${field}.seed`);
  str(`${field}.preset`, o.preset, true, 128);
  oneOf(`${field}.stopAfter`, o.stopAfter, STAGES);
  // The bounds resolveJob enforces: a forged spec cannot make a task allocate more.
  int(`${field}.frames`, o.frames, 1, MAX_FRAMES);
  int(`${field}.height`, o.height, 1, MAX_SIDE);
  int(`${field}.width`, o.width, 1, MAX_SIDE);
  stageSpec(`${field}.base`, o.base);
  stageSpec(`${field}.interpolation`, o.interpolation);
  const ip = o.interpolation as Obj;
  int(`${field}.interpolation.chunkFrames`, ip.chunkFrames, 0, MAX_SIDE);
  int(`${field}.interpolation.chunkOverlap`, ip.chunkOverlap, 0, MAX_SIDE);
  stageSpec(`${field}.vsr`, o.vsr);
  const v = o.vsr as Obj;
  for (const k of ["noiseLevel", "chunkFrames", "patch", "patchOverlap"])
    int(`${field}.vsr.${k}`, v[k], 0, MAX_SIDE);
  const d = obj(`${field}.decode`, o.decode);
  for (const k of ["baseFrames", "vsrFrames", "vsrTile", "vsrTileOverlap"])
    int(`${field}.decode.${k}`, d[k], 0, MAX_SIDE);
  return o as unknown as JobSpec;
}

function toNumber(field: string, v: bigint | number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw invalidArgument(field, `must be an integer in ${min}..${max}, got ${v}`);
  return n;
}

function shapeOf(field: string, dims: readonly bigint[], min: number): number[] {
  if (dims.length > REQUEST_LIMITS.rank) {
    throw invalidArgument(field, `must have at most ${REQUEST_LIMITS.rank} dimensions, got ${dims.length}`);
  }
  return dims.map((d, i) => toNumber(`${field}[${i}]`, d, min, REQUEST_LIMITS.dim));
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/**
 * A TensorRef message -> the data plane's TensorRef (checked: dtype, shape within REQUEST_LIMITS,
 * bytes = 4 x elements, digest form; with `jobId`, the object must be one of that job's).
 */
export function fromProtoRef(field: string, r: ProtoTensorRef, jobId?: string): TensorRef {
  if (r.object === "") throw invalidArgument(`${field}.object`, "must not be empty");
  if (jobId !== undefined) checkObjectName(`${field}.object`, r.object, jobId);
  if (r.dtype !== "float32")
    throw invalidArgument(`${field}.dtype`, `must be "float32", got ${describe(r.dtype)}`);
  if (!DIGEST.test(r.digest)) {
    throw invalidArgument(`${field}.digest`, `must be "sha256:<64 hex digits>", got ${describe(r.digest)}`);
  }
  const shape = shapeOf(`${field}.shape`, r.shape, 0);
  checkElements(`${field}.shape`, shape);
  const bytes = toNumber(`${field}.bytes`, r.bytes, 0);
  if (bytes !== elements(shape) * 4) {
    throw invalidArgument(
      `${field}.bytes`,
      `is ${bytes}, a float32 tensor of shape [${shape.join(", ")}] has ${elements(shape) * 4}`,
    );
  }
  return { object: r.object, dtype: "float32", shape, digest: r.digest, bytes };
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
export function parseTileSet(field: string, ts: TileSet, jobId?: string): InputTensor {
  const shape = shapeOf(`${field}.shape`, ts.shape, 1);
  if (shape.length === 0) throw invalidArgument(`${field}.shape`, "must not be empty");
  if (ts.axes.length > shape.length) {
    throw invalidArgument(`${field}.axes`, `splits ${ts.axes.length} axes of a rank-${shape.length} tensor`);
  }
  // Before planFromWindows: the tile count (a product of window counts) and the blending weights
  // it allocates (one value per window element) must stay bounded.
  let tileCount = 1;
  let windowElements = 0;
  for (const [k, a] of ts.axes.entries()) {
    tileCount *= a.windows.length;
    for (const w of a.windows) windowElements += Math.max(0, Number(w.size));
    if (tileCount > REQUEST_LIMITS.tiles || windowElements > REQUEST_LIMITS.windowElements) {
      throw invalidArgument(
        `${field}.axes[${k}].windows`,
        `make more than ${REQUEST_LIMITS.tiles} tiles or ${REQUEST_LIMITS.windowElements} window elements`,
      );
    }
  }
  const axes: AxisWindows[] = ts.axes.map((a, k) => ({
    axis: a.axis,
    windows: a.windows.map((w, j) => ({
      start: toNumber(`${field}.axes[${k}].windows[${j}].start`, w.start, 0, REQUEST_LIMITS.dim),
      size: toNumber(`${field}.axes[${k}].windows[${j}].size`, w.size, 1, REQUEST_LIMITS.dim),
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
    const ref = fromProtoRef(`${field}.tiles[${i}]`, r, jobId);
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
  const malformed = malformedRequest(req);
  if (malformed) throw malformed;
  const jobId = str("job_id", req.jobId, true, 128);
  if (!JOB_ID.test(jobId) || jobId === "results") {
    throw invalidArgument("job_id", `must match ${JOB_ID.source} (not "results"), got ${describe(jobId)}`);
  }
  const attempt = int("attempt", req.attempt, 0, REQUEST_LIMITS.attempt);
  const task = parseTask(req.taskJson);
  if (!stages.has(task.stage)) {
    throw invalidArgument(
      "task_json.stage",
      `this runner serves ${[...stages].join(", ")}, not ${task.stage} (task ${task.id})`,
    );
  }
  const network = NETWORK_OF[task.kind][task.stage];
  if (!network) {
    throw invalidArgument("task_json.stage", `a ${task.kind} task is never of stage ${task.stage}`);
  }
  if (task.networks[0] !== network) {
    throw invalidArgument(
      "task_json.networks[0]",
      `a ${task.kind} task of stage ${task.stage} runs ${network}, not ${task.networks[0]}`,
    );
  }
  const spec = parseSpec(req.specJson);
  const outputObject = checkObjectName("output_object", req.outputObject, jobId);
  if (req.inputs.length > 16) {
    throw invalidArgument("inputs", `must have at most 16 TileSets, got ${req.inputs.length}`);
  }
  const given = new Map<string, { index: number; ts: TileSet }>();
  req.inputs.forEach((ts, index) => {
    if (!NAME.test(ts.tensor)) {
      throw invalidArgument(
        `inputs[${index}].tensor`,
        `must match ${NAME.source}, got ${describe(ts.tensor)}`,
      );
    }
    if (given.has(ts.tensor)) throw invalidArgument(`inputs[${index}].tensor`, `${ts.tensor} is given twice`);
    given.set(ts.tensor, { index, ts });
  });
  const inputs = new Map<string, InputTensor>();
  for (const { field, read } of taskReads(task)) {
    const g = given.get(read.tensor);
    if (!g) {
      throw invalidArgument("inputs", `no TileSet for tensor ${read.tensor} (read by task_json.${field})`);
    }
    const parsed = inputs.get(read.tensor) ?? parseTileSet(`inputs[${g.index}]`, g.ts, jobId);
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
  return { jobId, attempt, task, spec, inputs, outputObject };
}
