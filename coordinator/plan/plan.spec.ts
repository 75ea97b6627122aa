import assert from "node:assert/strict";
import { test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { MAX_TASKS_PER_JOB, type ModelLimits, planTaskCount, resolveJob } from "../../core/job.ts";
import { type PlanModelInfo, planJob } from "./plan.ts";

const limits: ModelLimits = {
  preset: "tiny",
  base: { frames: 16, height: 32, width: 48 },
  divisor: { base: 2, interpolation: 2, vsr: 4 },
  vaeFactor: 8,
  vsrScale: 4,
  defaultSteps: { base: 3, interpolation: 2, vsr: 2 },
  maxTokens: 77,
};
const info: PlanModelInfo = {
  clipWidth: 32,
  vsrTextWidth: 48,
  sdScaling: 0.18215,
  x4Scaling: 0.08333,
  vaeFactor: 8,
  vsrScale: 4,
  divisor: { vsr: 4 },
};

test("the full cascade plan has the LaVie shapes and a valid topological order", () => {
  const spec = resolveJob({ prompt: "a panda", seed: 1 }, limits);
  const plan = planJob(spec, info);
  assert.deepEqual(plan.tensors["base.latent"]!.tiles.shape, [1, 4, 16, 4, 6]);
  assert.deepEqual(plan.tensors["interp.latent"]!.tiles.shape, [1, 4, 61, 4, 6]);
  assert.deepEqual(plan.tensors["vsr.latent"]!.tiles.shape, [1, 4, 61, 32, 48]);
  assert.deepEqual(plan.tensors["vsr.frames"]!.tiles.shape, [1, 3, 61, 128, 192]);
  assert.equal(plan.result, "vsr.frames");
  assert.equal(plan.fps, 24);
  // VSR: 61 frames in 8-frame chunks = 8 tasks (7 x 8 + 5)
  const vsr = plan.tasks.filter((t) => t.kind === "vsr_denoise");
  assert.equal(vsr.length, 8);
  assert.deepEqual(
    vsr.map((t) => t.box.size[2]),
    [8, 8, 8, 8, 8, 8, 8, 5],
  );
  const seen = new Set<string>();
  for (const t of plan.tasks) {
    for (const d of t.deps) assert.ok(seen.has(d), `${t.id} depends on ${d} which comes later`);
    seen.add(t.id);
  }
});

test("a VSR chunk depends only on the interpolation decode tasks covering its frames", () => {
  const spec = resolveJob({ prompt: "a panda", decode: { baseFrames: 4 } }, limits);
  const plan = planJob(spec, info);
  const first = plan.tasks.find((t) => t.kind === "vsr_denoise")!;
  // frames 0..7 of interp.frames are decoded by tiles 0 (0..3) and 1 (4..7)
  assert.deepEqual([...first.deps].sort(), ["interp.frames#0", "interp.frames#1", "text.vsr#0"]);
});

test("splits: interpolation chunks overlap, VSR patches tile the frame, decode tiles scale x4", () => {
  const spec = resolveJob(
    {
      prompt: "x",
      interpolation: { chunkFrames: 16, chunkOverlap: 4 },
      vsr: { patch: 16, patchOverlap: 8 },
      decode: { vsrTile: 16, vsrTileOverlap: 4 },
    },
    limits,
  );
  const plan = planJob(spec, info);
  const interp = plan.tasks.filter((t) => t.kind === "interp_denoise");
  assert.deepEqual(
    interp.map((t) => t.box.start[2]),
    [0, 12, 24, 36, 45],
  );
  const vsrTiles = plan.tensors["vsr.latent"]!.tiles.tiles;
  // 8 chunks x 3 rows (0, 8, 16) x 5 columns (0, 8, 16, 24, 32)
  assert.equal(vsrTiles.length, 8 * 3 * 5);
  const dec = plan.tensors["vsr.frames"]!.tiles.tiles[1]!;
  assert.deepEqual(dec.box.size.slice(3), [64, 64]);
});

test("stopping after base plans only the base stage", () => {
  const plan = planJob(resolveJob({ prompt: "x", stopAfter: "base" }, limits), info);
  assert.deepEqual([...new Set(plan.tasks.map((t) => t.stage))], ["base"]);
  assert.equal(plan.result, "base.frames");
  assert.equal(plan.fps, 8);
});

test("bad job fields are rejected with the field named", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ prompt: "" }, /^prompt: must not be empty/],
    [{ prompt: "x".repeat(5000) }, /^prompt: must be at most/],
    [{ prompt: "x", base: { steps: 0 } }, /^base\.steps: must be an integer in 1\.\.1000/],
    [{ prompt: "x", base: { steps: 1001 } }, /^base\.steps/],
    [
      { prompt: "x", vsr: { sampler: "plms" } },
      /^vsr\.sampler: unknown sampler "plms"; allowed: ddpm, ddim, euler/,
    ],
    [{ prompt: "x", height: 36 }, /^height: must be a multiple of 16 pixels/],
    [{ prompt: "x", stopAfter: "vae" }, /^stopAfter: unknown stage/],
    [{ prompt: "x", base: { guidance: -1 } }, /^base\.guidance/],
    [{ prompt: "x", vsr: { patch: 10 } }, /^vsr\.patch: must be a multiple of 4/],
    [{ prompt: "x", seed: -3 }, /^seed: must be an integer/],
  ];
  for (const [req, re] of cases) {
    assert.throws(
      () => resolveJob(req as never, limits),
      (e: Error) => re.test(e.message),
      JSON.stringify(req).slice(0, 80),
    );
  }
});

test("cfgParallel: the base stage is a gang of two denoise tasks; decode reads only the cond one", () => {
  const off = planJob(resolveJob({ prompt: "a panda", stopAfter: "base" }, limits), info);
  const spec = resolveJob({ prompt: "a panda", stopAfter: "base", base: { cfgParallel: true } }, limits);
  assert.equal(spec.base.cfgParallel, true);
  assert.equal(resolveJob({ prompt: "a panda" }, limits).base.cfgParallel, false);
  const plan = planJob(spec, info);
  const base = plan.tasks.filter((t) => t.kind === "base_denoise");
  assert.equal(off.tasks.filter((t) => t.kind === "base_denoise")[0]!.cfg, undefined);
  assert.deepEqual(
    base.map((t) => ({ id: t.id, cfg: t.cfg, out: t.output, deps: t.deps, units: t.units })),
    [
      {
        id: "base.cfg_peer#0",
        cfg: { branch: "uncond", gang: "base_cfg" },
        out: { tensor: "base.cfg_peer", tile: 0 },
        deps: ["text.base#0"],
        units: 3,
      },
      {
        id: "base.latent#0",
        cfg: { branch: "cond", gang: "base_cfg" },
        out: { tensor: "base.latent", tile: 0 },
        deps: ["text.base#0"],
        units: 3,
      },
    ],
  );
  assert.deepEqual(plan.tensors["base.cfg_peer"]!.tiles.shape, [1]);
  assert.deepEqual(plan.tensors["base.latent"]!.tiles.shape, off.tensors["base.latent"]!.tiles.shape);
  const decodes = plan.tasks.filter((t) => t.kind === "vae_decode");
  assert.ok(decodes.length > 0);
  for (const d of decodes) assert.deepEqual(d.deps, ["base.latent#0"]);
  // Everything but the extra gang member is the same plan.
  assert.deepEqual(
    plan.tasks.filter((t) => t.id !== "base.cfg_peer#0").map((t) => t.id),
    off.tasks.map((t) => t.id),
  );
  assert.throws(
    () => resolveJob({ prompt: "x", base: { cfgParallel: "yes" as unknown as boolean } }, limits),
    /base\.cfgParallel: must be a boolean/,
  );
});

test("planTaskCount matches the planner, and absurd splits are refused up front naming the setting", () => {
  for (const req of [
    { prompt: "p" },
    { prompt: "p", stopAfter: "base", base: { cfgParallel: true }, decode: { baseFrames: 3 } },
    { prompt: "p", stopAfter: "interpolation", interpolation: { chunkFrames: 16, chunkOverlap: 4 } },
    {
      prompt: "p",
      vsr: { chunkFrames: 5, patch: 16, patchOverlap: 4 },
      decode: { vsrTile: 8, vsrTileOverlap: 4 },
    },
    { prompt: "p", height: 64, width: 96, decode: { vsrFrames: 7 } },
  ]) {
    const spec = resolveJob(req, limits);
    assert.equal(planTaskCount(spec).total, planJob(spec, info).tasks.length, JSON.stringify(req));
  }
  const refused = (req: Parameters<typeof resolveJob>[0]) => {
    try {
      resolveJob(req, limits);
    } catch (err) {
      assert.ok(err instanceof LavieError && err.code === "invalid_argument", String(err));
      assert.match(err.message, new RegExp(`at most ${MAX_TASKS_PER_JOB}`));
      return err.field;
    }
    assert.fail(`not refused: ${JSON.stringify(req)}`);
  };
  const big = { prompt: "p", height: 4096, width: 4096 };
  assert.equal(refused({ ...big, vsr: { patch: 4 }, decode: { vsrTile: 4096 } }), "vsr.patch");
  assert.equal(refused({ ...big, vsr: { chunkFrames: 1 }, decode: { vsrTile: 1 } }), "decode.vsrTile");
});
