/**
 * A plan is a DAG of tasks over named tensors. Each tensor is produced as tiles (pieces) by one or
 * more tasks, following a TilePlan; a task reads boxes of earlier tensors (assembled from the tiles
 * that cover them, blended where they overlap) and writes exactly one tile of one tensor.
 * Where a task runs (in-process or on a stage runner) does not change what it computes.
 */
import type { Box } from "../../core/tensor.ts";
import type { TilePlan } from "../../core/tiling/index.ts";
import type { NetworkId } from "../../models/networks.ts";

export type { NetworkId };

export type StageName = "base" | "interpolation" | "vsr";

export interface TensorPlan {
  readonly name: string;
  /** Tiles, one per producing task, in task order. */
  readonly tiles: TilePlan;
  /** Produced outside the plan (e.g. the frames of a video given to `lavie upscale`). */
  readonly external?: boolean;
}

export interface TensorRead {
  readonly tensor: string;
  readonly box: Box;
}

interface TaskCommon {
  readonly id: string;
  readonly stage: StageName;
  /** Ids of the tasks whose tiles this task reads. */
  readonly deps: readonly string[];
  /** The tile this task writes. */
  readonly output: { readonly tensor: string; readonly tile: number };
  /** Units of progress the task reports (denoising steps, or 1). */
  readonly units: number;
  readonly networks: readonly NetworkId[];
}

/** Encodes [negative, positive] prompts into text states [2, 77, D]. */
export interface TextTask extends TaskCommon {
  readonly kind: "text";
  readonly prompts: readonly [string, string];
}

export type CfgBranch = "uncond" | "cond";

/**
 * Base T2V denoising of the whole latent [1, 4, F, h, w] (CFG batched). With `cfg` (the job's
 * base.cfgParallel) the task runs one CFG branch only, as one member of a gang of two tasks that
 * run at the same time and exchange their noise predictions each step (TaskContext.cfg): both
 * compute the same combined step, so both hold the same latent. The "cond" member writes the
 * latent; the "uncond" member writes a one-element marker tensor (CFG_PEER_TENSOR).
 */
export interface BaseDenoiseTask extends TaskCommon {
  readonly kind: "base_denoise";
  readonly text: TensorRead;
  readonly cfg?: { readonly branch: CfgBranch; readonly gang: string };
}

/** The base stage's output latent [1, 4, F, h, w] (written by the base_denoise task). */
export const BASE_LATENT_TENSOR = "base.latent";

/** The marker tensor [1] the "uncond" member of a CFG gang writes (nothing reads it). */
export const CFG_PEER_TENSOR = "base.cfg_peer";

/** VAE decode of a latent box [1, 4, f, h, w] to pixels [1, 3, f, H, W] (frames decoded independently). */
export interface DecodeTask extends TaskCommon {
  readonly kind: "vae_decode";
  readonly input: TensorRead;
  readonly scalingFactor: number;
}

/** VAE encode of base frames [1, 3, f, H, W] to latents [1, 4, f, h, w] (distribution mean x scaling). */
export interface EncodeTask extends TaskCommon {
  readonly kind: "vae_encode";
  readonly input: TensorRead;
  readonly scalingFactor: number;
}

/** Interpolation denoising of output frames [start, start+size) of [1, 4, 4(F-1)+1, h, w]. */
export interface InterpDenoiseTask extends TaskCommon {
  readonly kind: "interp_denoise";
  readonly text: TensorRead;
  /** The conditioning latents (all base frames; the task picks frame floor((j+1)/4) for output j). */
  readonly cond: TensorRead;
  readonly box: Box;
}

/** VSR denoising of a latent box [1, 4, frames, y, x] at low-res size, reading the same low-res box. */
export interface VsrDenoiseTask extends TaskCommon {
  readonly kind: "vsr_denoise";
  readonly text: TensorRead;
  readonly lowRes: TensorRead;
  readonly box: Box;
}

export type Task = TextTask | BaseDenoiseTask | DecodeTask | EncodeTask | InterpDenoiseTask | VsrDenoiseTask;

export interface Plan {
  readonly tensors: Readonly<Record<string, TensorPlan>>;
  /** Tasks in a valid topological order. */
  readonly tasks: readonly Task[];
  /** The tensor holding the final frames [1, 3, F, H, W] in [-1, 1]. */
  readonly result: string;
  readonly fps: number;
}
