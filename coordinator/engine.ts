/**
 * The embedded engine: a validated model directory + an ORT worker pool + the local executor.
 * It is what `lavie generate` runs when no server address is given, and what tests and benchmarks
 * use as the in-process reference.
 *
 *   const engine = await LocalEngine.open(await ensureModels("tiny"));
 *   const spec = engine.resolve({ prompt: "a panda playing guitar", seed: 1 });
 *   const { frames, fps } = await engine.generate(spec);
 *   await engine.close();
 */
import { cpus } from "node:os";
import { LavieError } from "../core/errors.ts";
import type { JobRequest, JobSpec, ModelLimits } from "../core/job.ts";
import { resolveJob } from "../core/job.ts";
import type { Tensor } from "../core/tensor.ts";
import { loadModelDirectory, type ModelDirectory } from "../models/loader.ts";
import type { NetworkId } from "../models/networks.ts";
import type { ClipTokenizer } from "../models/tokenizer/index.ts";
import { OrtNetworks } from "../stage-runners/networks.ts";
import { OrtWorkerPool } from "../stage-runners/ort/pool.ts";
import { type ExecutorEvent, runPlanLocally } from "./executor/local.ts";
import { type PlanModelInfo, type PlanStart, planJob } from "./plan/plan.ts";
import type { Plan } from "./plan/types.ts";

export interface EngineOptions {
  /** ORT worker threads (default 1) and intra-op threads per worker (default cores / workers). */
  workers?: number;
  intraOpThreads?: number;
  /** Tasks in flight (default = workers). */
  concurrency?: number;
  /** Verify model file hashes on open (default true). */
  verifyHashes?: boolean;
}

export interface GenerateOptions {
  start?: PlanStart;
  /** Tensors supplied from outside the plan, e.g. { "input.frames": frames } for upscale. */
  inputs?: Record<string, Tensor>;
  onEvent?: (e: ExecutorEvent, plan: Plan) => void;
  signal?: AbortSignal;
}

export interface GenerateResult {
  /** [1, 3, F, H, W] in about [-1, 1]. */
  frames: Tensor;
  fps: number;
  plan: Plan;
}

/** Model limits (sizes, divisors, default steps) from a loaded model directory. */
export function limitsOf(md: ModelDirectory): ModelLimits {
  const base = md.stage("base");
  const interp = md.stage("interpolation");
  const vsr = md.stage("vsr");
  return {
    preset: md.manifest.preset,
    base: { ...base.output },
    divisor: {
      base: base.spatialDivisor / base.vaeFactor,
      interpolation: interp.spatialDivisor / interp.vaeFactor,
      vsr: vsr.spatialDivisor,
    },
    vaeFactor: base.vaeFactor,
    vsrScale: vsr.vaeFactor,
    defaultSteps: {
      base: base.sampler.config.numInferenceSteps,
      interpolation: interp.sampler.config.numInferenceSteps,
      vsr: vsr.sampler.config.numInferenceSteps,
    },
    maxTokens: base.tokenizer.contextLength,
  };
}

export function planInfoOf(md: ModelDirectory): PlanModelInfo {
  const base = md.stage("base");
  const vsr = md.stage("vsr");
  const width = (id: NetworkId): number => {
    const c = md.networks[id]?.config as { width?: number } | undefined;
    if (!c?.width)
      throw new LavieError("failed_precondition", `network ${id} has no text width in the manifest`);
    return c.width;
  };
  return {
    clipWidth: width(base.text.id),
    vsrTextWidth: width(vsr.text.id),
    sdScaling: base.latentScale,
    x4Scaling: vsr.latentScale,
    vaeFactor: base.vaeFactor,
    vsrScale: vsr.vaeFactor,
    divisor: { vsr: vsr.spatialDivisor },
  };
}

export class LocalEngine {
  private constructor(
    readonly models: ModelDirectory,
    private readonly pool: OrtWorkerPool,
    readonly networks: OrtNetworks,
    private readonly concurrency: number,
  ) {}

  static async open(dir: string, opts: EngineOptions = {}): Promise<LocalEngine> {
    const models = await loadModelDirectory(dir, { verifyHashes: opts.verifyHashes ?? true });
    const workers = Math.max(1, opts.workers ?? 1);
    const intraOpThreads = opts.intraOpThreads ?? Math.max(1, Math.floor(cpus().length / workers));
    const pool = new OrtWorkerPool({ workers, intraOpThreads });
    const paths: Partial<Record<NetworkId, string>> = {};
    for (const [id, n] of Object.entries(models.networks)) paths[id as NetworkId] = n.path;
    const tokenizers: Partial<Record<NetworkId, ClipTokenizer>> = {};
    for (const s of Object.values(models.stages)) tokenizers[s.text.id] = s.tokenizer;
    return new LocalEngine(
      models,
      pool,
      new OrtNetworks(pool, paths, tokenizers),
      opts.concurrency ?? workers,
    );
  }

  limits(): ModelLimits {
    return limitsOf(this.models);
  }

  resolve(req: JobRequest): JobSpec {
    return resolveJob(req, this.limits());
  }

  plan(spec: JobSpec, start?: PlanStart): Plan {
    return planJob(spec, planInfoOf(this.models), start);
  }

  async generate(spec: JobSpec, opts: GenerateOptions = {}): Promise<GenerateResult> {
    const plan = this.plan(spec, opts.start);
    const store = await runPlanLocally(plan, spec, this.networks, {
      concurrency: this.concurrency,
      ...(opts.onEvent ? { onEvent: (e: ExecutorEvent) => opts.onEvent!(e, plan) } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.inputs ? { inputs: opts.inputs } : {}),
    });
    const shape = plan.tensors[plan.result]!.tiles.shape;
    const frames = store.read(plan, {
      tensor: plan.result,
      box: { start: shape.map(() => 0), size: [...shape] },
    });
    return { frames, fps: plan.fps, plan };
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
