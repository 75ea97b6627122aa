/**
 * What each task kind computes. Used as it is by the in-process executor and by stage runners:
 * inputs come through ctx.read (assembled boxes of earlier tensors), networks through ctx.run, so
 * the same task gives the same tile wherever it runs.
 */

import {
  BASE_LATENT_TENSOR,
  type BaseDenoiseTask,
  type CfgBranch,
  type DecodeTask,
  type EncodeTask,
  type InterpDenoiseTask,
  type NetworkId,
  type Plan,
  type StageName,
  type Task,
  type TensorRead,
  type TextTask,
  type VsrDenoiseTask,
} from "../../coordinator/plan/types.ts";
import { LavieError } from "../../core/errors.ts";
import type { JobSpec, StageSpec } from "../../core/job.ts";
import { noiseBox } from "../../core/noise/index.ts";
import {
  applyStep,
  augmentLowRes,
  cfgCombine,
  cfgCombineBatched,
  planSampler,
  samplePosterior,
  scaleModelInput,
  stageSamplerConfig,
} from "../../core/samplers/index.ts";
import { type Box, type Tensor, tensor, writeBox } from "../../core/tensor.ts";

import type { Feed } from "../ort/protocol.ts";

export type { Feed };

/**
 * The two members of a CFG gang (BaseDenoiseTask.cfg) swap their UNet outputs each step: swap sends
 * this branch's noise prediction for `step` and resolves with the peer branch's. Implementations:
 * in memory (coordinator/executor/local.ts), over NATS JetStream (transport/nats/cfg-exchange.ts).
 * A peer that does not answer in time fails the task as retryable.
 */
export interface CfgExchange {
  swap(step: number, mine: Float32Array, signal?: AbortSignal): Promise<Float32Array>;
}

export interface TaskContext {
  readonly spec: JobSpec;
  readonly plan: Plan;
  read(r: TensorRead): Promise<Tensor>;
  run(network: NetworkId, feeds: Record<string, Feed>, signal?: AbortSignal): Promise<Record<string, Tensor>>;
  tokenize(network: NetworkId, text: string): BigInt64Array;
  /** Called with the number of units done so far (denoising steps). */
  progress?(done: number): void;
  readonly signal?: AbortSignal;
  /** The peer exchange of a CFG-gang task (required when task.cfg is set). */
  readonly cfg?: CfgExchange;
}

export async function executeTask(task: Task, ctx: TaskContext): Promise<Tensor> {
  switch (task.kind) {
    case "text":
      return encodeText(task, ctx);
    case "base_denoise":
      return baseDenoise(task, ctx);
    case "interp_denoise":
      return interpDenoise(task, ctx);
    case "vsr_denoise":
      return vsrDenoise(task, ctx);
    case "vae_decode":
      return decode(task, ctx);
    case "vae_encode":
      return encode(task, ctx);
  }
}

const f32 = (t: Tensor): Feed => ({ dtype: "float32", shape: [...t.shape], data: t.data });

function output(outs: Record<string, Tensor>, name: string, network: NetworkId): Tensor {
  const t = outs[name];
  if (!t) throw new LavieError("internal", `network ${network} returned no output "${name}"`);
  return t;
}

async function encodeText(task: TextTask, ctx: TaskContext): Promise<Tensor> {
  const network = task.networks[0]!;
  const ids = new BigInt64Array(2 * 77);
  ids.set(ctx.tokenize(network, task.prompts[0]), 0);
  ids.set(ctx.tokenize(network, task.prompts[1]), 77);
  const outs = await ctx.run(
    network,
    { input_ids: { dtype: "int64", shape: [2, 77], data: ids } },
    ctx.signal,
  );
  return output(outs, "last_hidden_state", network);
}

/** [1, C, f, h, w] <-> [f, C, h, w] (the frames-as-batch layout of the VAEs). */
function swapChannelsFrames(t: Tensor): Tensor {
  const [a, b, c, h, w] = t.shape as [number, number, number, number, number];
  const out = new Float32Array(t.data.length);
  const hw = h * w;
  // input [a(=1), b, c, h, w] -> output [c, b, h, w]  or [b, a... ] symmetric for a == 1
  if (a !== 1) throw new LavieError("internal", "swapChannelsFrames expects a leading 1");
  for (let i = 0; i < b; i++)
    for (let j = 0; j < c; j++)
      out.set(t.data.subarray((i * c + j) * hw, (i * c + j + 1) * hw), (j * b + i) * hw);
  return { shape: [1, c, b, h, w], data: out };
}

async function decode(task: DecodeTask, ctx: TaskContext): Promise<Tensor> {
  const network = task.networks[0]!;
  const lat = await ctx.read(task.input);
  const scaled = new Float32Array(lat.data.length);
  for (let i = 0; i < scaled.length; i++) scaled[i] = lat.data[i]! / task.scalingFactor;
  const frames = swapChannelsFrames({ shape: lat.shape, data: scaled }); // [1, f, 4, h, w]
  const [, f, c, h, w] = frames.shape as number[];
  const outs = await ctx.run(
    network,
    { latent_sample: { dtype: "float32", shape: [f!, c!, h!, w!], data: frames.data } },
    ctx.signal,
  );
  const img = output(outs, "sample", network); // [f, 3, H, W]
  // Every official stage hands on frames clamped to [-1, 1] (the VSR pipeline clamps its decode; base
  // and interpolation clamp when writing video), so decoded frames are clamped here, before blending.
  const px = img.data;
  for (let i = 0; i < px.length; i++) px[i] = Math.min(1, Math.max(-1, px[i]!));
  return swapChannelsFrames({ shape: [1, ...img.shape], data: px });
}

async function encode(task: EncodeTask, ctx: TaskContext): Promise<Tensor> {
  const network = task.networks[0]!;
  const px = swapChannelsFrames(await ctx.read(task.input)); // [1, f, 3, H, W]
  const [, f, c, H, W] = px.shape as number[];
  const outs = await ctx.run(
    network,
    { sample: { dtype: "float32", shape: [f!, c!, H!, W!], data: px.data } },
    ctx.signal,
  );
  const params = output(outs, "latent_parameters", network); // [f, 8, h, w]: mean, logvar
  const [, , h, w] = params.shape as number[];
  // LaVie conditions on a posterior sample, not the mean. Its noise is keyed by the latent's position,
  // so any grouping of the frames into encode tasks draws the same sample.
  // The latent box mirrors the pixel box read ([1, 3, F, H, W] -> [1, 4, F, h, w]); a stage runner's
  // plan holds the read tensor's full tiling but not the output's.
  const inShape = ctx.plan.tensors[task.input.tensor]!.tiles.shape;
  const read = task.input.box;
  const down = (px: number, axis: 3 | 4) => (px * (axis === 3 ? h! : w!)) / read.size[axis]!;
  const fullShape = [1, 4, inShape[2]!, down(inShape[3]!, 3), down(inShape[4]!, 4)];
  const start = [0, 0, read.start[2]!, down(read.start[3]!, 3), down(read.start[4]!, 4)];
  const noise = noiseBox({ seed: ctx.spec.seed, stage: "interpolation/posterior", step: 0 }, fullShape, {
    start,
    size: [1, 4, f!, h!, w!],
  });
  const z = samplePosterior(params.data, params.shape, swapChannelsFrames(noise).data, task.scalingFactor);
  return swapChannelsFrames({ shape: [1, f!, 4, h!, w!], data: z });
}

async function baseDenoise(task: BaseDenoiseTask, ctx: TaskContext): Promise<Tensor> {
  const shape = ctx.plan.tensors[BASE_LATENT_TENSOR]!.tiles.shape;
  const text = await ctx.read(task.text);
  const box = { start: shape.map(() => 0), size: [...shape] };
  if (!task.cfg) return denoise(ctx, "base", ctx.spec.base, shape, box, text, null, null);
  if (!ctx.cfg) throw new LavieError("internal", `task ${task.id} is a CFG-gang member but has no exchange`);
  const latent = await denoise(ctx, "base", ctx.spec.base, shape, box, text, null, null, {
    branch: task.cfg.branch,
    exchange: ctx.cfg,
  });
  // Both members hold the same latent; the uncond member writes only the marker tile.
  return task.cfg.branch === "cond" ? latent : { shape: [1], data: new Float32Array(1) };
}

async function interpDenoise(task: InterpDenoiseTask, ctx: TaskContext): Promise<Tensor> {
  const cond = await ctx.read(task.cond); // [1, 4, F, h, w]
  const [, , F, h, w] = cond.shape as number[];
  const f = task.box.size[2]!;
  const hw = h! * w!;
  const picked = new Float32Array(4 * f * hw);
  for (let c = 0; c < 4; c++)
    for (let j = 0; j < f; j++) {
      const k = Math.min(F! - 1, Math.floor((task.box.start[2]! + j + 1) / 4));
      picked.set(cond.data.subarray((c * F! + k) * hw, (c * F! + k + 1) * hw), (c * f + j) * hw);
    }
  const text = await ctx.read(task.text);
  const shape = ctx.plan.tensors[task.output.tensor]!.tiles.shape;
  const extra = { shape: [1, 4, f, h!, w!], data: picked };
  return denoise(ctx, "interpolation", ctx.spec.interpolation, shape, task.box, text, extra, null);
}

async function vsrDenoise(task: VsrDenoiseTask, ctx: TaskContext): Promise<Tensor> {
  const low = await ctx.read(task.lowRes);
  const lowShape = ctx.plan.tensors[task.lowRes.tensor]!.tiles.shape;
  const spec = ctx.spec.vsr;
  const noise = noiseBox({ seed: ctx.spec.seed, stage: "vsr/lowres", step: 0 }, lowShape, task.lowRes.box);
  const augmented = { shape: low.shape, data: augmentLowRes(low.data, noise.data, spec.noiseLevel) };
  const text = await ctx.read(task.text);
  const shape = ctx.plan.tensors[task.output.tensor]!.tiles.shape;
  return denoise(ctx, "vsr", spec, shape, task.box, text, augmented, spec.noiseLevel);
}

/**
 * The denoising loop of one latent box: position-keyed initial noise and step noise, CFG batched as
 * [uncond, cond], extra conditioning channels concatenated after the 4 latent channels.
 *
 * With `gang`, this task runs one CFG branch only (batch 1: its own text row and a [t] timestep)
 * and swaps its UNet output with the peer branch each step; both then combine [uncond, cond] and
 * step the sampler identically, so both hold the same latent.
 */
async function denoise(
  ctx: TaskContext,
  stage: StageName,
  spec: StageSpec,
  fullShape: readonly number[],
  box: Box,
  text: Tensor,
  extra: Tensor | null,
  classLabel: number | null,
  gang?: { branch: CfgBranch; exchange: CfgExchange },
): Promise<Tensor> {
  const network: NetworkId =
    stage === "base" ? "base_unet" : stage === "interpolation" ? "interp_unet" : "vsr_unet";
  const sampler = planSampler(
    stageSamplerConfig(stage, { sampler: spec.sampler, numInferenceSteps: spec.steps, eta: spec.eta }),
  );
  const seed = ctx.spec.seed;
  const x = noiseBox({ seed, stage: `${stage}/init`, step: 0 }, fullShape, box).data;
  if (sampler.initNoiseSigma !== 1) for (let i = 0; i < x.length; i++) x[i]! *= sampler.initNoiseSigma;
  const [, , f, hh, ww] = box.size as number[];
  const cx = extra ? extra.shape[1]! : 0;
  // Batch rows: [uncond, cond], or this gang member's branch alone.
  const rows = gang ? 1 : 2;
  const sample = tensor([rows, 4 + cx, f!, hh!, ww!]);
  if (extra) for (let r = 0; r < rows; r++) writeBox(sample, extra, [r, 4, 0, 0, 0]);
  let textFeed = f32(text);
  if (gang) {
    const [, tokens, width] = text.shape as number[];
    const row = tokens! * width!;
    const k = gang.branch === "uncond" ? 0 : 1;
    textFeed = {
      dtype: "float32",
      shape: [1, tokens!, width!],
      data: text.data.slice(k * row, (k + 1) * row),
    };
  }
  const labels = classLabel === null ? null : new BigInt64Array(rows).fill(BigInt(classLabel));
  for (const step of sampler.steps) {
    if (ctx.signal?.aborted) throw new LavieError("cancelled", "task cancelled");
    const xin = { shape: [1, 4, f!, hh!, ww!], data: scaleModelInput(step, x) };
    for (let r = 0; r < rows; r++) writeBox(sample, xin, [r, 0, 0, 0, 0]);
    const t = BigInt(Math.round(step.timestep));
    const feeds: Record<string, Feed> = {
      sample: f32(sample),
      timestep: { dtype: "int64", shape: [rows], data: new BigInt64Array(rows).fill(t) },
      encoder_hidden_states: textFeed,
    };
    if (labels) feeds.class_labels = { dtype: "int64", shape: [rows], data: labels };
    const out = output(await ctx.run(network, feeds, ctx.signal), "out_sample", network);
    let eps: Float32Array;
    if (gang) {
      const peer = await gang.exchange.swap(step.index, out.data, ctx.signal);
      if (peer.length !== out.data.length) {
        throw new LavieError(
          "internal",
          `CFG peer sent ${peer.length} values at step ${step.index}, expected ${out.data.length}`,
        );
      }
      const [u, c] = gang.branch === "uncond" ? [out.data, peer] : [peer, out.data];
      eps = cfgCombine(u, c, spec.guidance);
    } else {
      eps = cfgCombineBatched(out.data, spec.guidance);
    }
    const noise = step.needsNoise
      ? noiseBox({ seed, stage: `${stage}/step`, step: step.index }, fullShape, box).data
      : undefined;
    applyStep(step.coef, x, eps, noise, x);
    ctx.progress?.(step.index + 1);
  }
  return { shape: [...box.size], data: x };
}
