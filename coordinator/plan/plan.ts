/**
 * planJob: a validated JobSpec -> a Plan (DAG of tasks over tiled tensors). Pure.
 *
 *   prompt -> text.* -> base.latent -> base.frames (frame groups)
 *          -> interp.cond (VAE encode, frame groups) -> interp.latent (frame windows, blended)
 *          -> interp.frames (frame groups) -> vsr.latent (8-frame chunks x spatial patches, blended)
 *          -> vsr.frames (frame groups x optional spatial tiles, blended)
 *
 * A task depends only on the tasks whose tiles it reads, so e.g. super-resolution of the first
 * chunk can start as soon as the frames it needs are decoded.
 */
import { LavieError } from "../../core/errors.ts";
import type { JobSpec } from "../../core/job.ts";
import type { Box } from "../../core/tensor.ts";
import { type AxisSplit, planTiles, type TilePlan, tilesCovering } from "../../core/tiling/index.ts";
import {
  type BaseDenoiseTask,
  CFG_PEER_TENSOR,
  type NetworkId,
  type Plan,
  type StageName,
  type Task,
  type TensorPlan,
  type TensorRead,
} from "./types.ts";

/** What the planner needs to know about the models (from the manifest). */
export interface PlanModelInfo {
  clipWidth: number;
  vsrTextWidth: number;
  sdScaling: number;
  x4Scaling: number;
  /** Pixels per latent pixel of the SD VAE (8). */
  vaeFactor: number;
  /** VSR upscaling (4). */
  vsrScale: number;
  divisor: { vsr: number };
}

/** Where the plan starts: from the prompt, or from given frames (the CLI's interpolate / upscale). */
export type PlanStart =
  | { from: "prompt" }
  | { from: "base_frames" } // frames [1, 3, spec.frames, H, W] supplied as tensor "input.frames"
  | { from: "lowres_frames"; frames: number }; // VSR input [1, 3, frames, H, W] as "input.frames"

export const FPS = { base: 8, interpolated: 24 } as const;

const whole = (shape: readonly number[]): TilePlan => planTiles(shape, []);
const full = (shape: readonly number[]): Box => ({ start: shape.map(() => 0), size: [...shape] });

/** What PlanBuilder.add fills in for every task. */
interface TaskHead {
  id: string;
  output: { tensor: string; tile: number };
  deps: string[];
}

class PlanBuilder {
  readonly tensors: Record<string, TensorPlan> = {};
  readonly tasks: Task[] = [];
  private readonly producers = new Map<string, string[]>();

  tensor(name: string, tiles: TilePlan, external = false): TilePlan {
    this.tensors[name] = external ? { name, tiles, external } : { name, tiles };
    this.producers.set(name, []);
    return tiles;
  }

  read(tensor: string, box?: Box): TensorRead {
    const t = this.tensors[tensor];
    if (!t) throw new LavieError("internal", `plan: unknown tensor ${tensor}`);
    return { tensor, box: box ?? full(t.tiles.shape) };
  }

  depsOf(reads: readonly TensorRead[]): string[] {
    const deps = new Set<string>();
    for (const r of reads) {
      const t = this.tensors[r.tensor]!;
      if (t.external) continue;
      const ids = this.producers.get(r.tensor)!;
      for (const i of tilesCovering(t.tiles, r.box)) {
        const id = ids[i];
        if (!id) throw new LavieError("internal", `plan: tile ${i} of ${r.tensor} read before it is planned`);
        deps.add(id);
      }
    }
    return [...deps];
  }

  /** Adds a task writing the next tile of `tensor`; deps are derived from the reads. */
  add<T extends Task>(tensor: string, make: (common: TaskHead) => T, reads: readonly TensorRead[]): T {
    const ids = this.producers.get(tensor)!;
    const tile = ids.length;
    const id = `${tensor}#${tile}`;
    const task = make({ id, output: { tensor, tile }, deps: this.depsOf(reads) });
    ids.push(id);
    this.tasks.push(task);
    return task;
  }
}

function textTask(
  b: PlanBuilder,
  stage: StageName,
  name: string,
  network: NetworkId,
  width: number,
  spec: JobSpec,
) {
  const s = spec[stage];
  b.tensor(name, whole([2, 77, width]));
  b.add(
    name,
    (c) => ({
      ...c,
      kind: "text",
      stage,
      units: 1,
      networks: [network],
      prompts: [s.negativePrompt, spec.prompt + s.promptSuffix] as const,
    }),
    [],
  );
}

function decodeTasks(
  b: PlanBuilder,
  stage: StageName,
  latent: string,
  out: string,
  network: NetworkId,
  scalingFactor: number,
  factor: number,
  splits: { frames: number; tile: number; tileOverlap: number },
) {
  const lat = b.tensors[latent]!.tiles.shape;
  const latSplits: AxisSplit[] = [{ axis: 2, size: splits.frames, tail: "shrink", name: "decode.frames" }];
  if (splits.tile > 0) {
    for (const [axis, name] of [
      [3, "decode.tile_height"],
      [4, "decode.tile_width"],
    ] as const) {
      if (splits.tile < lat[axis]!)
        latSplits.push({ axis, size: splits.tile, overlap: splits.tileOverlap, name });
    }
  }
  const latPlan = planTiles(lat, latSplits);
  const outShape = [1, 3, lat[2]!, lat[3]! * factor, lat[4]! * factor];
  const outPlan = planTiles(
    outShape,
    latSplits.map((s) =>
      s.axis === 2 ? s : { ...s, size: s.size * factor, overlap: (s.overlap ?? 0) * factor },
    ),
  );
  b.tensor(out, outPlan);
  for (const t of latPlan.tiles) {
    const input = b.read(latent, t.box);
    b.add(
      out,
      (c) => ({ ...c, kind: "vae_decode", stage, units: 1, networks: [network], input, scalingFactor }),
      [input],
    );
  }
}

export function planJob(spec: JobSpec, m: PlanModelInfo, start: PlanStart = { from: "prompt" }): Plan {
  const b = new PlanBuilder();
  const H = spec.height;
  const W = spec.width;
  const h = H / m.vaeFactor;
  const w = W / m.vaeFactor;
  const F = spec.frames;
  let lowRes: string;
  let F2: number;

  if (start.from === "lowres_frames") {
    F2 = start.frames;
    lowRes = "input.frames";
    b.tensor(lowRes, whole([1, 3, F2, H, W]), true);
  } else {
    if (start.from === "prompt") {
      textTask(b, "base", "text.base", "clip_text", m.clipWidth, spec);
      b.tensor("base.latent", whole([1, 4, F, h, w]));
      const text = b.read("text.base");
      const denoise = (cfg?: BaseDenoiseTask["cfg"]) => (c: TaskHead) =>
        ({
          ...c,
          kind: "base_denoise",
          stage: "base",
          units: spec.base.steps,
          networks: ["base_unet"],
          text,
          ...(cfg ? { cfg } : {}),
        }) as BaseDenoiseTask;
      if (spec.base.cfgParallel) {
        // A gang of two tasks, one per CFG branch, run at once (see BaseDenoiseTask.cfg).
        b.tensor(CFG_PEER_TENSOR, whole([1]));
        b.add(CFG_PEER_TENSOR, denoise({ branch: "uncond", gang: "base_cfg" }), [text]);
        b.add("base.latent", denoise({ branch: "cond", gang: "base_cfg" }), [text]);
      } else {
        b.add("base.latent", denoise(), [text]);
      }
      decodeTasks(b, "base", "base.latent", "base.frames", "sd_vae_decoder", m.sdScaling, m.vaeFactor, {
        frames: spec.decode.baseFrames,
        tile: 0,
        tileOverlap: 0,
      });
      if (spec.stopAfter === "base")
        return { tensors: b.tensors, tasks: b.tasks, result: "base.frames", fps: FPS.base };
    } else {
      b.tensor("base.frames", whole([1, 3, F, H, W]), true);
    }
    // Interpolation: condition on the VAE-encoded base frames.
    const condPlan = planTiles([1, 4, F, h, w], [{ axis: 2, size: spec.decode.baseFrames, tail: "shrink" }]);
    b.tensor("interp.cond", condPlan);
    for (const t of condPlan.tiles) {
      const input = b.read("base.frames", {
        start: [0, 0, t.box.start[2]!, 0, 0],
        size: [1, 3, t.box.size[2]!, H, W],
      });
      b.add(
        "interp.cond",
        (c) => ({
          ...c,
          kind: "vae_encode",
          stage: "interpolation",
          units: 1,
          networks: ["sd_vae_encoder"],
          input,
          scalingFactor: m.sdScaling,
        }),
        [input],
      );
    }
    textTask(b, "interpolation", "text.interpolation", "clip_text", m.clipWidth, spec);
    F2 = (F - 1) * 4 + 1;
    const ip = spec.interpolation;
    const latSplits: AxisSplit[] =
      ip.chunkFrames > 0
        ? [{ axis: 2, size: ip.chunkFrames, overlap: ip.chunkOverlap, name: "interpolation.chunk" }]
        : [];
    const interpPlan = planTiles([1, 4, F2, h, w], latSplits);
    b.tensor("interp.latent", interpPlan);
    const text = b.read("text.interpolation");
    const cond = b.read("interp.cond");
    for (const t of interpPlan.tiles) {
      b.add(
        "interp.latent",
        (c) => ({
          ...c,
          kind: "interp_denoise",
          stage: "interpolation",
          units: ip.steps,
          networks: ["interp_unet"],
          text,
          cond,
          box: t.box,
        }),
        [text, cond],
      );
    }
    decodeTasks(
      b,
      "interpolation",
      "interp.latent",
      "interp.frames",
      "sd_vae_decoder",
      m.sdScaling,
      m.vaeFactor,
      {
        frames: spec.decode.baseFrames,
        tile: 0,
        tileOverlap: 0,
      },
    );
    if (spec.stopAfter === "interpolation") {
      return { tensors: b.tensors, tasks: b.tasks, result: "interp.frames", fps: FPS.interpolated };
    }
    lowRes = "interp.frames";
  }

  // Super-resolution: latent at the low-res size, chunks of frames x spatial patches.
  textTask(b, "vsr", "text.vsr", "vsr_text", m.vsrTextWidth, spec);
  const v = spec.vsr;
  const splits: AxisSplit[] = [{ axis: 2, size: v.chunkFrames, tail: "shrink", name: "vsr.chunk" }];
  if (v.patch > 0 && v.patch < H) {
    splits.push({ axis: 3, size: v.patch, overlap: v.patchOverlap, name: "vsr.patch_height" });
  }
  if (v.patch > 0 && v.patch < W) {
    splits.push({ axis: 4, size: v.patch, overlap: v.patchOverlap, name: "vsr.patch_width" });
  }
  const vsrPlan = planTiles([1, 4, F2, H, W], splits);
  b.tensor("vsr.latent", vsrPlan);
  const text = b.read("text.vsr");
  for (const t of vsrPlan.tiles) {
    const low = b.read(lowRes, { start: t.box.start, size: [1, 3, ...t.box.size.slice(2)] });
    b.add(
      "vsr.latent",
      (c) => ({
        ...c,
        kind: "vsr_denoise",
        stage: "vsr",
        units: v.steps,
        networks: ["vsr_unet"],
        text,
        lowRes: low,
        box: t.box,
      }),
      [text, low],
    );
  }
  decodeTasks(b, "vsr", "vsr.latent", "vsr.frames", "x4_vae_decoder", m.x4Scaling, m.vsrScale, {
    frames: spec.decode.vsrFrames,
    tile: spec.decode.vsrTile,
    tileOverlap: spec.decode.vsrTileOverlap,
  });
  return { tensors: b.tensors, tasks: b.tasks, result: "vsr.frames", fps: FPS.interpolated };
}
