import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import type { StageName, Task } from "../../coordinator/plan/types.ts";
import { LavieError } from "../../core/errors.ts";
import { resolveJob } from "../../core/job.ts";
import { planTiles } from "../../core/tiling/index.ts";
import { ExecuteTaskRequestSchema } from "../../gen/lavie/v1/runner_pb.ts";
import { fromProtoRef, parseTask, REQUEST_LIMITS, toProtoRef, validateRequest } from "./request.ts";

const spec = resolveJob(
  { prompt: "p", frames: 16, height: 32, width: 48 },
  {
    preset: "tiny",
    base: { frames: 16, height: 32, width: 48 },
    divisor: { base: 1, interpolation: 1, vsr: 1 },
    vaeFactor: 8,
    vsrScale: 4,
    defaultSteps: { base: 2, interpolation: 2, vsr: 2 },
    maxTokens: 77,
  },
);

const decode: Task = {
  id: "base.frames#1",
  kind: "vae_decode",
  stage: "base",
  deps: ["base.latent#0"],
  output: { tensor: "base.frames", tile: 1 },
  units: 1,
  networks: ["sd_vae_decoder"],
  input: { tensor: "base.latent", box: { start: [0, 0, 4, 0, 0], size: [1, 4, 4, 4, 6] } },
  scalingFactor: 0.18215,
};

// base.latent in 4 frame groups of 4.
const latent = planTiles([1, 4, 16, 4, 6], [{ axis: 2, size: 4 }]);
const tileSet = {
  tensor: "base.latent",
  shape: latent.shape.map(BigInt),
  axes: latent.axes.map((a) => ({
    axis: a.axis,
    windows: a.windows.map((w) => ({ start: BigInt(w.start), size: BigInt(w.size) })),
  })),
  tiles: latent.tiles.map((t, i) =>
    toProtoRef({
      object: `j/base.latent/${i}`,
      dtype: "float32",
      shape: [...t.box.size],
      digest: `sha256:${"0".repeat(64)}`,
      bytes: t.box.size.reduce((a, b) => a * b, 4),
    }),
  ),
};

const base = {
  jobId: "j",
  attempt: 1,
  taskJson: JSON.stringify(decode),
  specJson: JSON.stringify(spec),
  inputs: [tileSet],
  outputObject: "j/base.frames/1",
};
const served = new Set<StageName>(["base"]);

function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof LavieError, String(err));
    assert.equal(err.code, "invalid_argument");
    return err.field;
  }
  assert.fail("expected an error");
}

test("a well-formed request gives the task, the spec and the read tensor's tile plan", () => {
  const v = validateRequest(create(ExecuteTaskRequestSchema, base), served);
  assert.deepEqual(v.task, decode);
  assert.equal(v.spec.prompt, "p");
  const input = v.inputs.get("base.latent")!;
  assert.deepEqual(input.plan, latent);
  assert.equal(input.tiles.length, 4);
  assert.deepEqual(input.tiles[2]!.shape, [1, 4, 4, 4, 6]);
});

test("tiles the task does not read may be empty refs (not produced yet)", () => {
  const tiles = tileSet.tiles.map((t, i) =>
    i === 1 ? t : { object: "", dtype: "", shape: [], digest: "", bytes: 0n },
  );
  const v = validateRequest(
    create(ExecuteTaskRequestSchema, { ...base, inputs: [{ ...tileSet, tiles }] }),
    served,
  );
  assert.deepEqual(
    v.inputs.get("base.latent")!.tiles.map((t) => t?.object ?? null),
    [null, "j/base.latent/1", null, null],
  );
});

test("each malformed field is named", () => {
  const bad = (over: Partial<typeof base>) =>
    fieldOf(() => validateRequest(create(ExecuteTaskRequestSchema, { ...base, ...over }), served));
  assert.equal(bad({ taskJson: "" }), "task_json");
  assert.equal(bad({ taskJson: "nope" }), "task_json");
  assert.equal(bad({ taskJson: JSON.stringify({ ...decode, kind: "x" }) }), "task_json.kind");
  assert.equal(bad({ taskJson: JSON.stringify({ ...decode, stage: "vsr" }) }), "task_json.stage");
  assert.equal(bad({ taskJson: JSON.stringify({ ...decode, networks: ["nope"] }) }), "task_json.networks[0]");
  assert.equal(
    bad({ taskJson: JSON.stringify({ ...decode, input: { tensor: "base.latent" } }) }),
    "task_json.input.box",
  );
  assert.equal(bad({ specJson: JSON.stringify({ ...spec, seed: -1 }) }), "spec_json.seed");
  assert.equal(
    bad({ specJson: JSON.stringify({ ...spec, base: { ...spec.base, sampler: "x" } }) }),
    "spec_json.base.sampler",
  );
  assert.equal(bad({ jobId: "" }), "job_id");
  assert.equal(bad({ outputObject: "k/base.frames/1" }), "output_object");
  assert.equal(bad({ outputObject: "j/" }), "output_object");
  assert.equal(bad({ inputs: [] }), "inputs");
  assert.equal(bad({ inputs: [{ ...tileSet, tiles: tileSet.tiles.slice(1) }] }), "inputs[0].tiles");
  assert.equal(
    bad({
      inputs: [
        {
          ...tileSet,
          tiles: [tileSet.tiles[1]!, ...tileSet.tiles.slice(1)].map((t, i) =>
            i === 0 ? { ...t, shape: [1n], bytes: 4n } : t,
          ),
        },
      ],
    }),
    "inputs[0].tiles[0].shape",
  );
  const missing = (i: number) => tileSet.tiles.map((t, k) => (k === i ? { ...t, object: "" } : t));
  assert.equal(bad({ inputs: [{ ...tileSet, tiles: missing(1) }] }), "inputs[0].tiles[1]");
  assert.equal(
    bad({ inputs: [{ ...tileSet, axes: [{ axis: 7, windows: [{ start: 0n, size: 4n }] }] }] }),
    "inputs[0].axes",
  );
  assert.equal(
    bad({ inputs: [{ ...tileSet, tiles: tileSet.tiles.map((t) => ({ ...t, digest: "" })) }] }),
    "inputs[0].tiles[0].digest",
  );
  assert.equal(
    bad({
      taskJson: JSON.stringify({
        ...decode,
        input: { ...decode.input, box: { start: [0, 0, 14, 0, 0], size: [1, 4, 4, 4, 6] } },
      }),
    }),
    "task_json.input.box",
  );
});

test("TensorRef messages round-trip", () => {
  const ref = {
    object: "j/t/0",
    dtype: "float32" as const,
    shape: [1, 2, 3],
    digest: `sha256:${"ab".repeat(32)}`,
    bytes: 24,
  };
  assert.deepEqual(
    fromProtoRef(
      "r",
      create(ExecuteTaskRequestSchema, { inputs: [{ tiles: [toProtoRef(ref)] }] }).inputs[0]!.tiles[0]!,
    ),
    ref,
  );
});

test("parseTask accepts every task kind the planner makes", () => {
  const text: Task = {
    id: "text.base#0",
    kind: "text",
    stage: "base",
    deps: [],
    output: { tensor: "text.base", tile: 0 },
    units: 1,
    networks: ["clip_text"],
    prompts: ["", "p"],
  };
  assert.deepEqual(parseTask(JSON.stringify(text)), text);
  const { prompts: _, ...common } = text;
  const vsr: Task = {
    ...common,
    kind: "vsr_denoise",
    stage: "vsr",
    networks: ["vsr_unet"],
    text: { tensor: "text.vsr", box: { start: [0, 0, 0], size: [2, 77, 32] } },
    lowRes: { tensor: "interp.frames", box: { start: [0, 0, 0, 0, 0], size: [1, 3, 8, 32, 48] } },
    box: { start: [0, 0, 0, 0, 0], size: [1, 4, 8, 32, 48] },
  } as Task;
  assert.deepEqual(parseTask(JSON.stringify(vsr)), vsr);
});

test("hostile requests are refused before any allocation, naming the field", () => {
  const bad = (over: Partial<typeof base>) =>
    fieldOf(() => validateRequest(create(ExecuteTaskRequestSchema, { ...base, ...over }), served));
  const ts = (over: Partial<typeof tileSet>) => ({ ...tileSet, ...over });
  const tile0 = tileSet.tiles[0]!;
  // job ids and object names stay inside the job's prefix
  for (const jobId of ["../x", "a/b", "results", "x".repeat(129), "j\u0000", "\u00e9"]) {
    assert.equal(bad({ jobId, outputObject: `${jobId}/o` }), "job_id", jobId);
  }
  for (const o of ["j/../k/x", "j//x", "j/./x", "j/x/*", "j/>", "j/a b", "j/\n", `j/${"x".repeat(600)}`]) {
    assert.equal(bad({ outputObject: o }), "output_object", o);
  }
  const refs = (f: (t: typeof tile0) => typeof tile0) => [ts({ tiles: tileSet.tiles.map(f) })];
  assert.equal(
    bad({ inputs: refs((t) => ({ ...t, object: t.object.replace("j/", "k/") })) }),
    "inputs[0].tiles[0].object",
  );
  assert.equal(
    bad({ inputs: refs((t) => ({ ...t, object: `${t.object}/..` })) }),
    "inputs[0].tiles[0].object",
  );
  assert.equal(bad({ inputs: refs((t) => ({ ...t, bytes: t.bytes + 4n })) }), "inputs[0].tiles[0].bytes");
  assert.equal(bad({ inputs: refs((t) => ({ ...t, dtype: "float64" })) }), "inputs[0].tiles[0].dtype");
  assert.equal(bad({ inputs: refs((t) => ({ ...t, digest: "sha256:zz" })) }), "inputs[0].tiles[0].digest");
  // huge shapes and tilings: refused before planFromWindows allocates weights or tiles
  const huge = 1_000_000_000n;
  assert.equal(bad({ inputs: [ts({ shape: [1n, 4n, huge, huge, 6n] })] }), "inputs[0].shape[2]");
  assert.equal(bad({ inputs: [ts({ shape: [-1n] })] }), "inputs[0].shape[0]");
  assert.equal(bad({ inputs: [ts({ shape: Array(9).fill(1n) })] }), "inputs[0].shape");
  const many = Array.from({ length: 200 }, (_, i) => ({ start: BigInt(i % 16), size: 1n }));
  assert.equal(
    bad({ inputs: [ts({ axes: [2, 3, 4].map((axis) => ({ axis, windows: many })) })] }),
    "inputs[0].axes[1].windows",
  );
  assert.equal(
    bad({
      inputs: [
        ts({
          axes: [
            {
              axis: 2,
              windows: [
                { start: 0n, size: 16n },
                { start: -1n, size: 1n },
              ],
            },
          ],
        }),
      ],
    }),
    "inputs[0].axes[0].windows[1].start",
  );
  // read boxes and specs bounded like resolveJob
  const box = { start: [0, 0, 0, 0, 0], size: [1, 4, 16_384, 16_384, 16] };
  assert.equal(
    bad({ taskJson: JSON.stringify({ ...decode, input: { ...decode.input, box } }) }),
    "task_json.input.box.size",
  );
  assert.equal(bad({ specJson: JSON.stringify({ ...spec, frames: 1_000_000 }) }), "spec_json.frames");
  assert.equal(bad({ specJson: JSON.stringify({ ...spec, width: 1e9 }) }), "spec_json.width");
  assert.equal(
    bad({ specJson: JSON.stringify({ ...spec, base: { ...spec.base, steps: 5000 } }) }),
    "spec_json.base.steps",
  );
  assert.equal(bad({ specJson: JSON.stringify({ ...spec, prompt: "x".repeat(3000) }) }), "spec_json.prompt");
  // JSON size, depth, kinds
  assert.equal(bad({ taskJson: `${"[".repeat(100_000)}${"]".repeat(100_000)}` }), "task_json");
  assert.equal(bad({ specJson: " ".repeat(REQUEST_LIMITS.jsonChars + 1) }), "spec_json");
  assert.equal(
    bad({ taskJson: JSON.stringify({ ...decode, networks: ["x4_vae_decoder"] }) }),
    "task_json.networks[0]",
  );
  assert.equal(
    bad({ taskJson: JSON.stringify({ ...decode, networks: ["sd_vae_decoder", "sd_vae_decoder"] }) }),
    "task_json.networks",
  );
  assert.equal(bad({ taskJson: JSON.stringify({ ...decode, kind: "vae_encode" }) }), "task_json.stage");
  assert.equal(bad({ taskJson: JSON.stringify({ ...decode, id: "a/../b" }) }), "task_json.id");
  assert.equal(bad({ attempt: 2_147_483_647 }), "attempt");
  assert.equal(bad({ attempt: -1 }), "attempt");
});

test("spec_json.seed has the job seed's one range and message (core/seed.ts)", () => {
  const withSeed = (seed: number) =>
    create(ExecuteTaskRequestSchema, { ...base, specJson: JSON.stringify({ ...spec, seed }) });
  assert.equal(validateRequest(withSeed(2 ** 53 - 1), served).spec.seed, 2 ** 53 - 1);
  assert.throws(() => validateRequest(withSeed(2 ** 53), served), {
    code: "invalid_argument",
    field: "spec_json.seed",
    message: "spec_json.seed: must be an integer in 0..9007199254740991, got 9007199254740992",
  });
  assert.throws(() => validateRequest(withSeed(-1), served), {
    message: "spec_json.seed: must be an integer in 0..9007199254740991, got -1",
  });
});
