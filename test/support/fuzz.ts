/**
 * A bounded fuzz harness for the client API (lavie.v1.JobService) and the runner API
 * (lavie.v1.StageRunnerService): request generators per class of hostile input, a sender that posts
 * raw bytes to a method path (identity (de)serializers, so malformed protobuf reaches the server),
 * and a tally per class of the gRPC codes answered. Deterministic for a seed.
 *
 *   const spec = resolveJob({ prompt: "fuzz", stopAfter: "base", base: { steps: 1 } },
 *     limitsOf(await loadModelDirectory(modelDir))); // the runner's preset
 *   const tallies = await runFuzz({ coordinator: "127.0.0.1:50051", runner: "127.0.0.1:40001" },
 *     { perClass: 20, spec, jobId: "fuzz-job", seed: 1 });
 *   console.log(formatTallies(tallies)); // class | sent | answered with
 *
 * Every case says which codes are a clear answer for it (default INVALID_ARGUMENT) and, when it
 * matters, what the details must name (the field); anything else - INTERNAL, UNKNOWN, a deadline
 * (a hang), OK for a hostile request, empty details - is a violation, listed in the tally.
 * Mutated valid messages (truncated, bit-flipped) that still decode are new requests: any clear
 * answer counts, and a job they create is cancelled at once.
 */
import { create, type DescMessage, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import * as grpc from "@grpc/grpc-js";
import type { JobSpec } from "../../core/job.ts";
import { mulberry32 } from "../../core/prng.ts";
import {
  CancelJobRequestSchema,
  FetchResultRequestSchema,
  GetJobRequestSchema,
  type JobPriority,
  type JobRequest as JobRequestMsg,
  JobState,
  ListJobsRequestSchema,
  SubmitJobRequestSchema,
  SubmitJobResponseSchema,
  WatchJobRequestSchema,
} from "../../gen/lavie/v1/jobs_pb.ts";
import { ExecuteTaskRequestSchema } from "../../gen/lavie/v1/runner_pb.ts";

// ---------------------------------------------------------------------------------------------
// PRNG

/** mulberry32: a small seeded PRNG (uniform in [0, 1)). */
export class Rng {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(this.next() * 256);
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Cases and methods

type Target = "coordinator" | "runner";

interface Method {
  readonly target: Target;
  readonly path: string;
  readonly stream: boolean;
  readonly input: DescMessage;
}

const JOBS = "/lavie.v1.JobService/";
const RUNNER = "/lavie.v1.StageRunnerService/";
export const METHODS = {
  submitJob: {
    target: "coordinator",
    path: `${JOBS}SubmitJob`,
    stream: false,
    input: SubmitJobRequestSchema,
  },
  getJob: { target: "coordinator", path: `${JOBS}GetJob`, stream: false, input: GetJobRequestSchema },
  listJobs: { target: "coordinator", path: `${JOBS}ListJobs`, stream: false, input: ListJobsRequestSchema },
  cancelJob: {
    target: "coordinator",
    path: `${JOBS}CancelJob`,
    stream: false,
    input: CancelJobRequestSchema,
  },
  watchJob: { target: "coordinator", path: `${JOBS}WatchJob`, stream: true, input: WatchJobRequestSchema },
  fetchResult: {
    target: "coordinator",
    path: `${JOBS}FetchResult`,
    stream: true,
    input: FetchResultRequestSchema,
  },
  executeTask: {
    target: "runner",
    path: `${RUNNER}ExecuteTask`,
    stream: true,
    input: ExecuteTaskRequestSchema,
  },
} as const satisfies Record<string, Method>;
type MethodName = keyof typeof METHODS;

/** One request of a class, with the answers that are clear for it. */
export interface FuzzCase {
  readonly method: MethodName;
  readonly bytes: Uint8Array;
  /** What it is, for reports ("prompt of 5000000 chars"). */
  readonly note: string;
  /** gRPC code names that are a clear answer (default ["INVALID_ARGUMENT"]). */
  readonly allowed?: readonly string[];
  /** The details must match this (e.g. the field's name). */
  readonly details?: RegExp;
}

/** What the generators build valid requests from. */
export interface FuzzContext {
  /** A resolved job spec of the runner's preset (valid ExecuteTask requests carry it). */
  readonly spec: JobSpec;
  /** The job id forged runner requests use (its objects: "<jobId>/..."). */
  readonly jobId: string;
  /**
   * A tensor stored in the data plane under "<jobId>/..." whose size equals base.latent's first
   * frame group but whose stored shape differs (e.g. height and width swapped): enables the
   * digest-mismatch and shape-mismatch cases (DATA_LOSS). Without it those cases are left out.
   */
  readonly stored?: {
    object: string;
    digest: string;
    bytes: number;
    /** The shape it was stored with. */ shape: number[];
  };
}

export interface FuzzClass {
  readonly name: string;
  readonly target: Target;
  /** The i-th case (fixed edge cases first, then random variants). */
  case(rng: Rng, i: number, ctx: FuzzContext): FuzzCase;
}

const CODE_NAME = new Map<number, string>(
  Object.entries(grpc.status)
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => [v as number, k]),
);

// ---------------------------------------------------------------------------------------------
// Encoding helpers

const enc = <D extends DescMessage>(desc: D, init: MessageInitShape<D>): Uint8Array =>
  toBinary(desc, create(desc, init));

/** A length-delimited field with raw bytes (hand-encoded: may be invalid UTF-8). */
function ld(field: number, bytes: Uint8Array): Uint8Array {
  return new BinaryWriter().tag(field, WireType.LengthDelimited).bytes(bytes).finish();
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const utf8 = (s: string) => new TextEncoder().encode(s);

/** Invalid UTF-8 sequences: a lone continuation byte, an overlong form, a surrogate, a cut sequence, 0xff. */
const BAD_UTF8 = [
  [0x80],
  [0xc0, 0xaf],
  [0xed, 0xa0, 0x80],
  [0xe2, 0x82],
  [0xff, 0xfe],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
].map((b) => new Uint8Array(b));

function badUtf8(rng: Rng): Uint8Array {
  return concat(utf8("a panda "), rng.pick(BAD_UTF8), utf8(" guitar"));
}

function decodes(desc: DescMessage, bytes: Uint8Array): boolean {
  try {
    fromBinary(desc, bytes);
    return true;
  } catch {
    return false;
  }
}

/** Answers a request that decodes may get (it is some request; only the unclear codes are out). */
const ANY_CLEAR = [
  "OK",
  "INVALID_ARGUMENT",
  "NOT_FOUND",
  "FAILED_PRECONDITION",
  "RESOURCE_EXHAUSTED",
  "PERMISSION_DENIED",
  "DATA_LOSS",
];

/** The answer to bytes sent to `method`: INVALID_ARGUMENT naming the problem, unless they decode. */
function raw(method: MethodName, bytes: Uint8Array, note: string, maxMessage = 4 * 1024 * 1024): FuzzCase {
  if (bytes.length > maxMessage) return { method, bytes, note, allowed: ["RESOURCE_EXHAUSTED"] };
  if (decodes(METHODS[method].input, bytes))
    return { method, bytes, note: `${note} (decodes)`, allowed: ANY_CLEAR };
  return {
    method,
    bytes,
    note,
    details: /malformed|must be valid UTF-8|cut short|bad field tag/,
  };
}

// ---------------------------------------------------------------------------------------------
// Valid requests to start from

const VALID_JOB: MessageInitShape<typeof SubmitJobRequestSchema> = {
  job: { prompt: "fuzz: a panda playing guitar", stopAfter: "base", seed: 1n, base: { steps: 1 } },
};

function textTask(ctx: FuzzContext) {
  return {
    id: "text.base#0",
    kind: "text",
    stage: "base",
    deps: [],
    output: { tensor: "text.base", tile: 0 },
    units: 1,
    networks: ["clip_text"],
    prompts: ["", ctx.spec.prompt],
  };
}

/** base.latent of the spec, in groups of 4 frames (the decode tasks' tiling). */
function latent(ctx: FuzzContext) {
  const s = ctx.spec;
  const shape = [1, 4, s.frames, s.height / 8, s.width / 8];
  const groups: { start: number; size: number }[] = [];
  for (let f = 0; f < s.frames; f += 4) groups.push({ start: f, size: Math.min(4, s.frames - f) });
  return { shape, groups };
}

interface RefInit {
  object: string;
  dtype: string;
  shape: bigint[];
  digest: string;
  bytes: bigint;
}

/** A decode task of the base stage reading tile 0 of base.latent, with its TileSet and refs. */
function decodeRequest(ctx: FuzzContext, tile0: (ref: RefInit) => Partial<RefInit> = () => ({})) {
  const { shape, groups } = latent(ctx);
  const size0 = [1, 4, groups[0]!.size, shape[3]!, shape[4]!];
  const task = {
    id: "base.frames#0",
    kind: "vae_decode",
    stage: "base",
    deps: ["base.latent#0"],
    output: { tensor: "base.frames", tile: 0 },
    units: 1,
    networks: ["sd_vae_decoder"],
    input: { tensor: "base.latent", box: { start: [0, 0, 0, 0, 0], size: size0 } },
    scalingFactor: 0.18215,
  };
  const tiles = groups.map((g, i) => {
    const tshape = [1, 4, g.size, shape[3]!, shape[4]!];
    const ref: RefInit = {
      object: `${ctx.jobId}/base.latent/${i}`,
      dtype: "float32",
      shape: tshape.map(BigInt),
      digest: `sha256:${"ab".repeat(32)}`,
      bytes: BigInt(tshape.reduce((a, b) => a * b, 4)),
    };
    return i === 0 ? { ...ref, ...tile0(ref) } : ref;
  });
  return {
    jobId: ctx.jobId,
    attempt: 1,
    taskJson: JSON.stringify(task),
    specJson: JSON.stringify(ctx.spec),
    inputs: [
      {
        tensor: "base.latent",
        shape: shape.map(BigInt),
        axes: [{ axis: 2, windows: groups.map((g) => ({ start: BigInt(g.start), size: BigInt(g.size) })) }],
        tiles,
      },
    ],
    outputObject: `${ctx.jobId}/base.frames/0`,
  };
}

function textRequest(ctx: FuzzContext, over: Record<string, unknown> = {}) {
  return {
    jobId: ctx.jobId,
    attempt: 1,
    taskJson: JSON.stringify(textTask(ctx)),
    specJson: JSON.stringify(ctx.spec),
    inputs: [],
    outputObject: `${ctx.jobId}/text.base/0`,
    ...over,
  };
}

function executeTask(init: MessageInitShape<typeof ExecuteTaskRequestSchema>): Uint8Array {
  return enc(ExecuteTaskRequestSchema, init);
}

function fixedOr(i: number, fixed: readonly (() => FuzzCase)[], random: () => FuzzCase): FuzzCase {
  return i < fixed.length ? fixed[i]!() : random();
}

// ---------------------------------------------------------------------------------------------
// Classes

const COORDINATOR_METHODS: MethodName[] = [
  "submitJob",
  "getJob",
  "listJobs",
  "cancelJob",
  "watchJob",
  "fetchResult",
];

const randomBytes: FuzzClass = {
  name: "random bytes",
  target: "coordinator",
  case(rng) {
    const method = rng.pick([...COORDINATOR_METHODS, "executeTask" as const]);
    const bytes = rng.bytes(rng.int(1, 600));
    return raw(method, bytes, `${bytes.length} random bytes to ${method}`);
  },
};

const mutated: FuzzClass = {
  name: "truncated / bit-flipped",
  target: "coordinator",
  case(rng, _i, ctx) {
    const bases: [MethodName, Uint8Array][] = [
      ["submitJob", enc(SubmitJobRequestSchema, { ...VALID_JOB, idempotencyKey: "fuzz-key" })],
      ["getJob", enc(GetJobRequestSchema, { jobId: "00000000-0000-4000-8000-000000000000" })],
      ["executeTask", executeTask(decodeRequest(ctx))],
      ["executeTask", executeTask(textRequest(ctx))],
    ];
    const [method, valid] = rng.pick(bases);
    if (rng.next() < 0.5) {
      const cut = rng.int(1, valid.length - 1);
      return raw(method, valid.slice(0, cut), `${method} cut to ${cut} of ${valid.length} bytes`);
    }
    const flipped = valid.slice();
    const flips = rng.int(1, 4);
    for (let k = 0; k < flips; k++) {
      const at = rng.int(0, flipped.length - 1);
      flipped[at]! ^= 1 << rng.int(0, 7);
    }
    return raw(method, flipped, `${method} with ${flips} bit(s) flipped`);
  },
};

const MB = 1024 * 1024;
const hugePrompts: FuzzClass = {
  name: "huge prompts",
  target: "coordinator",
  case(rng, i, ctx) {
    const sizes = [10_000, 100_000, 1 * MB, 3 * MB, 5 * MB];
    const size = i < sizes.length ? sizes[i]! : rng.pick([10_000, 50_000, 200_000, 2 * MB, 4 * MB + 1024]);
    const text = "x".repeat(size);
    const what = rng.pick([
      "prompt",
      "negative_prompt",
      "idempotency_key",
      "job_id",
      "task_json",
      "spec_json",
    ]);
    const over = size > 4 * MB - 64 ? ["RESOURCE_EXHAUSTED"] : undefined;
    const c = (method: MethodName, bytes: Uint8Array, field: RegExp): FuzzCase => ({
      method,
      bytes,
      note: `${what} of ${size} chars`,
      ...(over ? { allowed: over } : { details: field }),
    });
    switch (what) {
      case "prompt":
        return c(
          "submitJob",
          enc(SubmitJobRequestSchema, { job: { ...VALID_JOB.job, prompt: text } }),
          /prompt/,
        );
      case "negative_prompt":
        return c(
          "submitJob",
          enc(SubmitJobRequestSchema, { job: { ...VALID_JOB.job, base: { negativePrompt: text } } as never }),
          /negativePrompt|negative_prompt/,
        );
      case "idempotency_key":
        return c(
          "submitJob",
          enc(SubmitJobRequestSchema, { ...VALID_JOB, idempotencyKey: text }),
          /idempotency_key/,
        );
      case "job_id":
        return c(
          rng.pick(["getJob", "watchJob", "cancelJob"] as const),
          enc(GetJobRequestSchema, { jobId: text }),
          /job_id/,
        );
      case "task_json":
        return c("executeTask", executeTask(textRequest(ctx, { taskJson: `{"k":"${text}"}` })), /task_json/);
      default:
        return c("executeTask", executeTask(textRequest(ctx, { specJson: `{"k":"${text}"}` })), /spec_json/);
    }
  },
};

const invalidUtf8: FuzzClass = {
  name: "invalid UTF-8",
  target: "coordinator",
  case(rng, i, ctx) {
    const valid = textRequest(ctx);
    const runnerField = (field: number, name: string, strip: (keyof typeof valid)[]) => () => {
      const rest = { ...valid } as Record<string, unknown>;
      for (const k of strip) delete rest[k];
      return {
        method: "executeTask" as const,
        bytes: concat(executeTask(rest as never), ld(field, badUtf8(rng))),
        note: `${name} with invalid UTF-8`,
        details: new RegExp(`^${name.replace(/[[\].]/g, "\\$&")}: must be valid UTF-8`),
      };
    };
    const cases: (() => FuzzCase)[] = [
      () => ({
        method: "submitJob",
        bytes: ld(1, concat(ld(1, badUtf8(rng)), ld(3, utf8("base")))),
        note: "job.prompt with invalid UTF-8",
        details: /^job\.prompt: must be valid UTF-8/,
      }),
      () => ({
        method: "submitJob",
        bytes: ld(1, concat(ld(1, utf8("p")), ld(7, ld(4, badUtf8(rng))))),
        note: "job.base.negative_prompt with invalid UTF-8",
        details: /^job\.base\.negative_prompt: must be valid UTF-8/,
      }),
      () => ({
        method: "submitJob",
        bytes: ld(1, concat(ld(1, utf8("p")), ld(3, badUtf8(rng)))),
        note: "job.stop_after with invalid UTF-8",
        details: /^job\.stop_after: must be valid UTF-8/,
      }),
      () => ({
        method: "submitJob",
        bytes: concat(enc(SubmitJobRequestSchema, VALID_JOB), ld(2, badUtf8(rng))),
        note: "idempotency_key with invalid UTF-8",
        details: /^idempotency_key: must be valid UTF-8/,
      }),
      ...(["getJob", "cancelJob", "watchJob", "fetchResult"] as const).map((method) => () => ({
        method,
        bytes: ld(1, badUtf8(rng)),
        note: `${method} job_id with invalid UTF-8`,
        details: /^job_id: must be valid UTF-8/,
      })),
      runnerField(1, "job_id", ["jobId"]),
      runnerField(3, "task_json", ["taskJson"]),
      runnerField(4, "spec_json", ["specJson"]),
      runnerField(6, "output_object", ["outputObject"]),
      () => ({
        method: "executeTask",
        bytes: concat(executeTask(decodeRequest(ctx)), ld(5, ld(4, ld(1, badUtf8(rng))))),
        note: "inputs[1].tiles[0].object with invalid UTF-8",
        details: /^inputs\[1\]\.tiles\[0\]\.object: must be valid UTF-8/,
      }),
    ];
    return cases[i % cases.length]!();
  },
};

const INT32_MAX = 2 ** 31 - 1;
const extremeValues: FuzzClass = {
  name: "extreme values",
  target: "coordinator",
  case(rng, i) {
    type J = Partial<JobRequestMsg> & Record<string, unknown>;
    const cases: [string, J | Record<string, unknown>, RegExp][] = [
      ["frames 0", { frames: 0 }, /^frames/],
      ["frames -5", { frames: -5 }, /^frames/],
      ["frames 2^31-1", { frames: INT32_MAX }, /^frames/],
      ["height 0", { height: 0 }, /^height/],
      ["height -8", { height: -8 }, /^height/],
      ["height 2^31-1", { height: INT32_MAX }, /^height/],
      ["width 7", { width: 7 }, /^width/],
      ["width 4104", { width: 4104 }, /^width/],
      ["seed 2^64-1", { seed: 2n ** 64n - 1n }, /^seed/],
      ["base.steps 0", { base: { steps: 0 } }, /^base\.steps/],
      ["base.steps -1", { base: { steps: -1 } }, /^base\.steps/],
      ["base.steps 2^31-1", { base: { steps: INT32_MAX } }, /^base\.steps/],
      ["base.guidance NaN", { base: { steps: 1, guidance: Number.NaN } }, /^base\.guidance/],
      [
        "base.guidance Infinity",
        { base: { steps: 1, guidance: Number.POSITIVE_INFINITY } },
        /^base\.guidance/,
      ],
      [
        "base.guidance -Infinity",
        { base: { steps: 1, guidance: Number.NEGATIVE_INFINITY } },
        /^base\.guidance/,
      ],
      ["base.guidance -1", { base: { steps: 1, guidance: -1 } }, /^base\.guidance/],
      ["base.guidance 1e308", { base: { steps: 1, guidance: 1e308 } }, /^base\.guidance/],
      ["base.eta NaN", { base: { steps: 1, sampler: "ddim", eta: Number.NaN } }, /^base\.eta/],
      ["base.eta 2", { base: { steps: 1, sampler: "ddim", eta: 2 } }, /^base\.eta/],
      ['base.sampler "\\u0000"', { base: { steps: 1, sampler: "\u0000" } }, /^base\.sampler/],
      ["vsr.noise_level -1", { stopAfter: "vsr", vsr: { noiseLevel: -1 } }, /^vsr\.noiseLevel/],
      ["vsr.noise_level 2^31-1", { stopAfter: "vsr", vsr: { noiseLevel: INT32_MAX } }, /^vsr\.noiseLevel/],
      ["decode.base_frames 0", { decode: { baseFrames: 0 } }, /^decode\.baseFrames/],
      ["decode.base_frames -2^31", { decode: { baseFrames: -(2 ** 31) } }, /^decode\.baseFrames/],
      ['stop_after "all"', { stopAfter: "all" }, /^stopAfter/],
      ['prompt "   "', { prompt: "   " }, /^prompt/],
      ['prompt ""', { prompt: "" }, /^prompt/],
      ["deadline_seconds NaN", { $deadline: Number.NaN }, /^deadline_seconds/],
      ["deadline_seconds -1", { $deadline: -1 }, /^deadline_seconds/],
      ["deadline_seconds Infinity", { $deadline: Number.POSITIVE_INFINITY }, /^deadline_seconds/],
      ["deadline_seconds 1e300", { $deadline: 1e300 }, /^deadline_seconds/],
    ];
    const [note, over, field] = i < cases.length ? cases[i]! : rng.pick(cases);
    const { $deadline, ...job } = over as Record<string, unknown>;
    const base = VALID_JOB.job as Record<string, unknown>;
    const merged: Record<string, unknown> = { ...base, ...job };
    if (job.base) merged.base = { ...(base.base as object), ...(job.base as object) };
    return {
      method: "submitJob",
      bytes: enc(SubmitJobRequestSchema, {
        job: merged as never,
        ...($deadline === undefined ? {} : { deadlineSeconds: $deadline as number }),
      }),
      note,
      details: field,
    };
  },
};

const deepSplits: FuzzClass = {
  name: "deep chunk/patch settings",
  target: "coordinator",
  case(rng, i) {
    const big = { prompt: "fuzz", stopAfter: "vsr", height: 4096, width: 4096, frames: 64 };
    const cases: [string, Record<string, unknown>][] = [
      ["interpolation chunk 1", { stopAfter: "interpolation", interpolation: { chunkFrames: 1 } }],
      [
        "interpolation overlap = chunk",
        { stopAfter: "interpolation", interpolation: { chunkFrames: 8, chunkOverlap: 8 } },
      ],
      [
        "interpolation overlap > chunk",
        { stopAfter: "interpolation", interpolation: { chunkFrames: 4, chunkOverlap: 9 } },
      ],
      ["interpolation chunk -1", { stopAfter: "interpolation", interpolation: { chunkFrames: -1 } }],
      [
        "interpolation chunk 2^31-1",
        { stopAfter: "interpolation", interpolation: { chunkFrames: INT32_MAX } },
      ],
      ["vsr chunk 0", { vsr: { chunkFrames: 0 } }],
      ["vsr patch 1 on 4096x4096", { ...big, vsr: { patch: 1 } }],
      [
        "vsr patch 8 on 4096x4096, chunk 1",
        { ...big, vsr: { patch: 8, chunkFrames: 1 }, decode: { vsrTile: 4096 } },
      ],
      ["vsr patch overlap = patch", { vsr: { patch: 16, patchOverlap: 16 } }],
      ["vsr patch -16", { vsr: { patch: -16 } }],
      ["decode tile 1 on 4096x4096", { ...big, decode: { vsrTile: 1 } }],
      ["decode tile overlap = tile", { decode: { vsrTile: 16, vsrTileOverlap: 16 } }],
      ["default splits on 4096x4096 (millions of tiles)", big],
      ["decode frames 2^31-1", { decode: { vsrFrames: INT32_MAX } }],
    ];
    const [note, over] = i < cases.length ? cases[i]! : rng.pick(cases);
    return {
      method: "submitJob",
      bytes: enc(SubmitJobRequestSchema, { job: { ...VALID_JOB.job, ...over } as never }),
      note,
      details: /^(interpolation|vsr|decode)\.[A-Za-z]+:/,
    };
  },
};

const unknownEnumsFields: FuzzClass = {
  name: "unknown enums / fields",
  target: "coordinator",
  case(rng, i, ctx) {
    const unknown = () => {
      const w = new BinaryWriter();
      const no = rng.pick([15, 99, 1000, 536_870_911]);
      const kind = rng.int(0, 3);
      if (kind === 0) w.tag(no, WireType.Varint).uint64(2n ** 63n);
      else if (kind === 1) w.tag(no, WireType.LengthDelimited).bytes(rng.bytes(rng.int(0, 64)));
      else if (kind === 2) w.tag(no, WireType.Bit64).fixed64(1n);
      else w.tag(no, WireType.Bit32).fixed32(7);
      return w.finish();
    };
    const fixed: (() => FuzzCase)[] = [
      () => ({
        method: "submitJob",
        bytes: enc(SubmitJobRequestSchema, { ...VALID_JOB, priority: 99 as JobPriority }),
        note: "priority 99",
        details: /^priority/,
      }),
      () => ({
        method: "submitJob",
        bytes: enc(SubmitJobRequestSchema, { ...VALID_JOB, priority: -1 as JobPriority }),
        note: "priority -1",
        details: /^priority/,
      }),
      () => ({
        method: "listJobs",
        bytes: enc(ListJobsRequestSchema, { state: 99 as JobState }),
        note: "list state 99",
        details: /^state/,
      }),
      () => ({
        method: "listJobs",
        bytes: enc(ListJobsRequestSchema, { state: JobState.QUEUED, limit: -5 }),
        note: "list limit -5",
        details: /^limit/,
      }),
    ];
    const random = (): FuzzCase => {
      const which = rng.int(0, 2);
      if (which === 0) {
        return {
          method: "submitJob",
          bytes: concat(enc(SubmitJobRequestSchema, { job: { prompt: "" } }), unknown()),
          note: "empty prompt + an unknown field",
          details: /^prompt/,
        };
      }
      if (which === 1) {
        return {
          method: rng.pick(["getJob", "cancelJob", "watchJob", "fetchResult"] as const),
          bytes: concat(
            unknown(),
            enc(GetJobRequestSchema, { jobId: "00000000-0000-4000-8000-00000000fuzz" }),
            unknown(),
          ),
          note: "unknown job id + unknown fields",
          allowed: ["NOT_FOUND", "INVALID_ARGUMENT"],
          details: /job_id/,
        };
      }
      return {
        method: "executeTask",
        bytes: concat(executeTask(textRequest(ctx, { jobId: "" })), unknown()),
        note: "runner request without job id + an unknown field",
        details: /^job_id/,
      };
    };
    return fixedOr(i, fixed, random);
  },
};

const badJobIds: FuzzClass = {
  name: "bad job ids",
  target: "coordinator",
  case(rng, i) {
    const ids = [
      "",
      "x".repeat(65),
      "x".repeat(10_000),
      "\u0000",
      "job\n\r",
      "../x",
      "a/b",
      "*",
      ">",
      "jobs.x",
      "ü",
      "😀".repeat(8),
      "\u202e" + "txt.exe",
      "00000000-0000-4000-8000-000000000000",
    ];
    const id = i < ids.length ? ids[i]! : rng.pick(ids) + String(rng.int(0, 9));
    const method = rng.pick(["getJob", "cancelJob", "watchJob", "fetchResult"] as const);
    return {
      method,
      bytes: enc(GetJobRequestSchema, { jobId: id }),
      note: `${method} ${JSON.stringify(id.length > 20 ? `${id.slice(0, 20)}...(${id.length})` : id)}`,
      // A well-formed id of no job is NOT_FOUND; anything else is not a job id at all.
      allowed: [/^[A-Za-z0-9_-]{1,64}$/.test(id) ? "NOT_FOUND" : "INVALID_ARGUMENT"],
      details: /^job_id: /,
    };
  },
};

const forgedJson: FuzzClass = {
  name: "forged task/spec JSON",
  target: "runner",
  case(rng, i, ctx) {
    const task = textTask(ctx);
    const spec = ctx.spec as unknown as Record<string, unknown>;
    const t = (taskJson: string, note: string, details: RegExp, allowed?: string[]): FuzzCase => ({
      method: "executeTask",
      bytes: executeTask(textRequest(ctx, { taskJson })),
      note,
      details,
      ...(allowed ? { allowed } : {}),
    });
    const s = (specJson: string, note: string, details: RegExp, allowed?: string[]): FuzzCase => ({
      method: "executeTask",
      bytes: executeTask(textRequest(ctx, { specJson })),
      note,
      details,
      ...(allowed ? { allowed } : {}),
    });
    const d = decodeRequest(ctx);
    const decodeTask = JSON.parse(d.taskJson) as Record<string, unknown>;
    const fixed: (() => FuzzCase)[] = [
      () => t("{", "task_json not JSON", /^task_json: is not valid JSON/),
      () => t("null", "task_json null", /^task_json/),
      () =>
        t(
          `${"[".repeat(50_000)}${"]".repeat(50_000)}`,
          "task_json nested 50000 deep",
          /^task_json: nests deeper/,
        ),
      () =>
        t(
          `{"a":${'{"a":'.repeat(5000)}1${"}".repeat(5001)}`,
          "task_json objects nested 5000 deep",
          /^task_json: nests/,
        ),
      () =>
        t(
          JSON.stringify({ ...task, pad: "x".repeat(300_000) }),
          "task_json of 300 kB",
          /^task_json: must be at most/,
        ),
      () => t(JSON.stringify({ ...task, kind: "rm -rf /" }), "kind unknown", /^task_json\.kind/),
      () =>
        t(JSON.stringify({ ...task, kind: "vae_encode" }), "text task as vae_encode", /^task_json\.input/),
      () =>
        t(
          JSON.stringify({ ...task, networks: ["vsr_unet"] }),
          "text task running vsr_unet",
          /^task_json\.networks\[0\]/,
        ),
      () => t(JSON.stringify({ ...task, networks: [] }), "no networks", /^task_json\.networks/),
      () => t(JSON.stringify({ ...task, units: 1e9 }), "units 1e9", /^task_json\.units/),
      () => t(JSON.stringify({ ...task, units: -1 }), "units -1", /^task_json\.units/),
      () =>
        t(
          JSON.stringify({ ...task, prompts: ["", "x".repeat(100_000)] }),
          "prompt of 100 kB",
          /^task_json\.prompts\[1\]/,
        ),
      () => t(JSON.stringify({ ...task, deps: Array(20_000).fill("a") }), "20000 deps", /^task_json\.deps/),
      () =>
        t(
          JSON.stringify({ ...task, output: { tensor: "../../x", tile: 0 } }),
          "output tensor ../../x",
          /^task_json\.output\.tensor/,
        ),
      () =>
        t(
          JSON.stringify({ ...task, output: { tensor: "t", tile: 2 ** 53 } }),
          "output tile 2^53",
          /^task_json\.output\.tile/,
        ),
      () => ({
        method: "executeTask",
        bytes: executeTask({
          ...d,
          taskJson: JSON.stringify({
            ...decodeTask,
            input: { tensor: "base.latent", box: { start: [0, 0, 1e6, 0, 0], size: [1, 4, 4, 4, 6] } },
          }),
        }),
        note: "decode box outside the tensor",
        details: /^task_json\.input\.box/,
      }),
      () => ({
        method: "executeTask",
        bytes: executeTask({
          ...d,
          taskJson: JSON.stringify({
            ...decodeTask,
            input: { tensor: "base.latent", box: { start: [0, 0, 0], size: [1, 4, 4] } },
          }),
        }),
        note: "decode box of the wrong rank",
        details: /^task_json\.input\.box/,
      }),
      () => s("[]", "spec_json an array", /^spec_json/),
      () => s(JSON.stringify({ ...spec, frames: 1e9 }), "spec frames 1e9", /^spec_json\.frames/),
      () => s(JSON.stringify({ ...spec, height: 1e9, width: 1e9 }), "spec 1e9 x 1e9", /^spec_json\.height/),
      () => s(JSON.stringify({ ...spec, seed: -1 }), "spec seed -1", /^spec_json\.seed/),
      () =>
        s(
          JSON.stringify({ ...spec, base: { ...(spec.base as object), steps: 1e6 } }),
          "spec steps 1e6",
          /^spec_json\.base\.steps/,
        ),
      () =>
        s(
          JSON.stringify({ ...spec, base: { ...(spec.base as object), guidance: "NaN" } }),
          'spec guidance "NaN"',
          /^spec_json\.base\.guidance/,
        ),
      () =>
        s(JSON.stringify({ ...spec, preset: "lavie" }), "spec of another preset", /preset/, [
          "FAILED_PRECONDITION",
        ]),
      () =>
        s(
          JSON.stringify({ ...spec, pad: "x".repeat(300_000) }),
          "spec_json of 300 kB",
          /^spec_json: must be at most/,
        ),
    ];
    return fixedOr(i, fixed, () => {
      const text = JSON.stringify(rng.next() < 0.5 ? task : spec);
      const cut = rng.int(0, text.length - 1);
      const broken = text.slice(0, cut) + rng.pick(["", "{", "]", '"', "\\u", "\u0000"]);
      return rng.next() < 0.5
        ? t(broken, `task_json cut at ${cut}`, /^task_json/)
        : s(broken, `spec_json cut at ${cut}`, /^spec_json/);
    });
  },
};

const forgedRefs: FuzzClass = {
  name: "forged tensor refs",
  target: "runner",
  case(rng, i, ctx) {
    const req = (
      tile0: (r: RefInit) => Partial<RefInit>,
      note: string,
      details: RegExp,
      allowed?: string[],
    ) => ({
      method: "executeTask" as const,
      bytes: executeTask(decodeRequest(ctx, tile0)),
      note,
      details,
      ...(allowed ? { allowed } : {}),
    });
    const field = /^inputs\[0\]\.tiles\[0\]\./;
    const withTileSet = (over: Record<string, unknown>, note: string, details: RegExp): FuzzCase => {
      const d = decodeRequest(ctx);
      return {
        method: "executeTask",
        bytes: executeTask({ ...d, inputs: [{ ...d.inputs[0]!, ...over }] as never }),
        note,
        details,
      };
    };
    const stored = ctx.stored;
    const fixed: (() => FuzzCase)[] = [
      () => req(() => ({}), "a tile that does not exist", /not found/, ["NOT_FOUND"]),
      () => req((r) => ({ object: r.object.replace(ctx.jobId, "another-job") }), "another job's tile", field),
      () => req(() => ({ object: "results/another-job.mp4" }), "a result video", field),
      () => req((r) => ({ object: `${r.object}/../../../another-job/x` }), "object with ..", field),
      () => req(() => ({ object: `${ctx.jobId}/*` }), "object *", field),
      () => req(() => ({ object: `${ctx.jobId}/>` }), "object >", field),
      () => req(() => ({ object: `${ctx.jobId}/a\u0000b` }), "object with NUL", field),
      () =>
        req(
          () => ({ shape: [1_000_000_000n, 1_000_000_000n], bytes: 4_000_000_000_000_000_000n }),
          "shape [1e9, 1e9]",
          field,
        ),
      () => req(() => ({ shape: [1n, 4n, 4n, -4n, 6n] }), "negative shape", field),
      () => req((r) => ({ bytes: r.bytes * 2n }), "bytes twice the shape's", field),
      () => req((r) => ({ bytes: r.bytes - 1n }), "bytes not a multiple of 4", field),
      () => req(() => ({ digest: "md5:00" }), "digest of another kind", field),
      () => req(() => ({ dtype: "float16" }), "dtype float16", field),
      () => req(() => ({ dtype: "" }), "dtype empty", field),
      () =>
        withTileSet(
          { shape: [1n, 4n, 1_000_000_000n, 1_000_000_000n, 1_000_000_000n] },
          "TileSet shape 1e9^3",
          /^inputs\[0\]\.shape/,
        ),
      () =>
        withTileSet(
          {
            axes: [2, 3, 4].map((axis) => ({
              axis,
              windows: Array.from({ length: 100 }, () => ({ start: 0n, size: 1n })),
            })),
          },
          "TileSet of a million tiles",
          /^inputs\[0\]\.axes/,
        ),
      () =>
        withTileSet(
          { axes: [{ axis: 2, windows: [{ start: 0n, size: 2n ** 40n }] }] },
          "window of 2^40",
          /^inputs\[0\]\.axes/,
        ),
      () =>
        withTileSet(
          { axes: [{ axis: 99, windows: [{ start: 0n, size: 4n }] }] },
          "axis 99",
          /^inputs\[0\]\.axes/,
        ),
      () =>
        withTileSet({ tensor: "../base.latent" }, "TileSet tensor ../base.latent", /^inputs\[0\]\.tensor/),
      ...(stored
        ? [
            () =>
              req(
                () => ({ object: stored.object, digest: `sha256:${"cd".repeat(32)}` }),
                "a stored tile with another digest",
                /digest mismatch/,
                ["DATA_LOSS"],
              ),
            () =>
              req(
                () => ({ object: stored.object, digest: stored.digest }),
                "a stored tile of another shape (same size)",
                /shape mismatch/,
                ["DATA_LOSS"],
              ),
          ]
        : []),
    ];
    return fixedOr(i, fixed, () => fixed[rng.int(0, fixed.length - 1)]!());
  },
};

const attempts: FuzzClass = {
  name: "huge attempt numbers",
  target: "runner",
  case(rng, i, ctx) {
    const values = [INT32_MAX, -1, -(2 ** 31), 1_000_001];
    const attempt =
      i < values.length ? values[i]! : rng.pick([rng.int(1_000_001, INT32_MAX), -rng.int(1, INT32_MAX)]);
    return {
      method: "executeTask",
      bytes: executeTask(textRequest(ctx, { attempt })),
      note: `attempt ${attempt}`,
      details: /^attempt/,
    };
  },
};

const outputEscapes: FuzzClass = {
  name: "output_object escapes",
  target: "runner",
  case(rng, i, ctx) {
    const j = ctx.jobId;
    const cases: [string, string, RegExp][] = [
      [j, "another-job/text.base/0", /^output_object/],
      [j, `${j}/../another-job/x`, /^output_object/],
      [j, `${j}/`, /^output_object/],
      [j, `${j}//x`, /^output_object/],
      [j, `${j}/*`, /^output_object/],
      [j, `${j}/>`, /^output_object/],
      [j, `${j}/a b`, /^output_object/],
      [j, `${j}/${"x".repeat(10_000)}`, /^output_object/],
      [j, "results/x.mp4", /^output_object/],
      ["results", "results/x.mp4", /^job_id/],
      ["..", "../x", /^job_id/],
      ["a.b", "a.b/x", /^job_id/],
      ["*", "*/x", /^job_id/],
    ];
    const [jobId, outputObject, details] = i < cases.length ? cases[i]! : rng.pick(cases);
    return {
      method: "executeTask",
      bytes: executeTask(textRequest(ctx, { jobId, outputObject })),
      note: `job ${JSON.stringify(jobId)} writing ${JSON.stringify(outputObject.slice(0, 40))}`,
      details,
    };
  },
};

export const FUZZ_CLASSES: readonly FuzzClass[] = [
  randomBytes,
  mutated,
  hugePrompts,
  invalidUtf8,
  extremeValues,
  deepSplits,
  unknownEnumsFields,
  badJobIds,
  forgedJson,
  forgedRefs,
  attempts,
  outputEscapes,
];

// ---------------------------------------------------------------------------------------------
// Sending

export interface Answer {
  /** gRPC code name ("OK", "INVALID_ARGUMENT", ...). */
  readonly code: string;
  readonly details: string;
  /** Response bytes (unary) or messages (stream). */
  readonly messages: Buffer[];
  readonly ms: number;
}

const identity = (b: Buffer) => b;

/** Sends raw request bytes to a method path and waits for the status (or the deadline). */
export function sendRaw(
  client: grpc.Client,
  path: string,
  stream: boolean,
  bytes: Uint8Array,
  deadlineMs: number,
  metadata = new grpc.Metadata(),
): Promise<Answer> {
  const t0 = performance.now();
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const deadline = Date.now() + deadlineMs;
  return new Promise((resolve) => {
    const done = (code: number, details: string, messages: Buffer[]) =>
      resolve({ code: CODE_NAME.get(code) ?? String(code), details, messages, ms: performance.now() - t0 });
    if (!stream) {
      client.makeUnaryRequest(path, identity, identity, buf, metadata, { deadline }, (err, res) => {
        if (err) done(err.code, err.details ?? err.message, []);
        else done(grpc.status.OK, "", res ? [res] : []);
      });
      return;
    }
    const messages: Buffer[] = [];
    const call = client.makeServerStreamRequest(path, identity, identity, buf, metadata, { deadline });
    call.on("data", (m: Buffer) => messages.push(m));
    call.on("error", () => {}); // the status below carries it
    call.on("status", (s: grpc.StatusObject) => done(s.code, s.details, messages));
  });
}

const HEALTH = "/grpc.health.v1.Health/Check";

/** grpc.health.v1 Check of the whole server: the status name ("SERVING", ...) or the error code. */
export async function healthCheck(client: grpc.Client, deadlineMs = 5_000): Promise<string> {
  const a = await sendRaw(client, HEALTH, false, new Uint8Array(0), deadlineMs);
  if (a.code !== "OK") return a.code;
  const b = a.messages[0] ?? Buffer.alloc(0);
  // HealthCheckResponse { ServingStatus status = 1; }: 0x08 <status>
  const status = b.length >= 2 && b[0] === 0x08 ? b[1]! : 0;
  return ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"][status] ?? String(status);
}

// ---------------------------------------------------------------------------------------------
// Running

export interface Tally {
  readonly name: string;
  sent: number;
  /** Code name -> count. */
  readonly answers: Record<string, number>;
  /** Code name -> a few details answered with. */
  readonly examples: Record<string, string[]>;
  /** Requests whose answer was not a clear one for them. */
  readonly violations: string[];
  /** The slowest answer (ms). */
  slowestMs: number;
}

export interface FuzzTargets {
  /** host:port of the coordinator's client API. */
  readonly coordinator?: string;
  /** host:port of a stage runner. */
  readonly runner?: string;
}

export interface FuzzOptions extends FuzzContext {
  /** Requests per class. */
  readonly perClass: number;
  readonly seed?: number;
  /** Call deadline (ms; default 10000): an answer later than this is a hang. */
  readonly deadlineMs?: number;
  /** Only these classes (by name; default all). */
  readonly classes?: readonly string[];
  /** Called after each class (e.g. to check the services still answer). */
  readonly afterClass?: (t: Tally) => Promise<void>;
}

function judge(c: FuzzCase, a: Answer): string | null {
  const allowed = c.allowed ?? ["INVALID_ARGUMENT"];
  const where = `${c.method} ${c.note}: ${a.code} ${JSON.stringify(a.details.slice(0, 200))}`;
  if (!allowed.includes(a.code)) return `${where} (expected ${allowed.join(" or ")})`;
  if (a.code !== "OK" && a.details.trim() === "") return `${where} (empty details)`;
  if (a.code !== "OK" && c.details && !c.details.test(a.details))
    return `${where} (details should match ${c.details})`;
  return null;
}

/** Runs opts.perClass requests of every class against the targets; returns a tally per class. */
export async function runFuzz(targets: FuzzTargets, opts: FuzzOptions): Promise<Tally[]> {
  const deadlineMs = opts.deadlineMs ?? 10_000;
  const clients: Partial<Record<Target, grpc.Client>> = {};
  const options = { "grpc.max_receive_message_length": 16 * MB, "grpc.max_send_message_length": -1 };
  if (targets.coordinator) {
    clients.coordinator = new grpc.Client(targets.coordinator, grpc.credentials.createInsecure(), options);
  }
  if (targets.runner)
    clients.runner = new grpc.Client(targets.runner, grpc.credentials.createInsecure(), options);
  const tallies: Tally[] = [];
  try {
    for (const [k, cls] of FUZZ_CLASSES.entries()) {
      if (opts.classes && !opts.classes.includes(cls.name)) continue;
      const rng = new Rng((opts.seed ?? 1) * 1000 + k);
      const tally: Tally = {
        name: cls.name,
        sent: 0,
        answers: {},
        examples: {},
        violations: [],
        slowestMs: 0,
      };
      for (let i = 0; i < opts.perClass; i++) {
        const c = cls.case(rng, i, opts);
        const m = METHODS[c.method];
        const client = clients[m.target];
        if (!client) continue;
        const a = await sendRaw(client, m.path, m.stream, c.bytes, deadlineMs);
        tally.sent++;
        tally.answers[a.code] = (tally.answers[a.code] ?? 0) + 1;
        const ex = (tally.examples[a.code] ??= []);
        if (ex.length < 3) ex.push(`${c.note} -> ${a.details.slice(0, 160)}`);
        tally.slowestMs = Math.max(tally.slowestMs, a.ms);
        const bad = judge(c, a);
        if (bad) tally.violations.push(bad);
        if (c.method === "submitJob" && a.code === "OK" && clients.coordinator) {
          // A mutation that is still a valid job: cancel it at once.
          const id = fromBinary(SubmitJobResponseSchema, a.messages[0] ?? new Uint8Array()).job?.id;
          if (id) {
            await sendRaw(
              clients.coordinator,
              METHODS.cancelJob.path,
              false,
              enc(CancelJobRequestSchema, { jobId: id }),
              deadlineMs,
            );
          }
        }
      }
      tallies.push(tally);
      await opts.afterClass?.(tally);
    }
  } finally {
    for (const c of Object.values(clients)) c.close();
  }
  return tallies;
}

/** A table "class | sent | answered with" (and violations, if any). */
export function formatTallies(tallies: readonly Tally[]): string {
  const rows = tallies.map((t) => [
    t.name,
    String(t.sent),
    Object.entries(t.answers)
      .sort((a, b) => b[1] - a[1])
      .map(([code, n]) => `${code} ${n}`)
      .join(", "),
    t.violations.length ? `${t.violations.length} unclear` : "",
  ]);
  const head = ["class", "sent", "answered with", ""];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}
