/**
 * `lavie generate "<prompt>"`: the whole cascade in-process (the embedded default), to MP4; with
 * `--server host:port` the same job is submitted to a running coordinator instead (remote.ts).
 * `lavie interpolate <video>` and `lavie upscale <video>`: one stage on an existing video, as the
 * official tool's separate steps, but handing frames on losslessly when chained.
 */
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { type Command, InvalidArgumentError, Option } from "commander";
import { LocalEngine } from "../../../coordinator/engine.ts";
import type { PlanStart } from "../../../coordinator/plan/plan.ts";
import { LavieError } from "../../../core/errors.ts";
import type { JobRequest, JobSpec } from "../../../core/job.ts";
import { MAX_JOB_SEED } from "../../../core/seed.ts";
import type { Priority } from "../../../core/tenancy.ts";
import type { Tensor } from "../../../core/tensor.ts";
import { floatToByte } from "../../../media/convert.ts";
import { decodeVideo, encodeVideo, framesToTensor, writePngFrames } from "../../../media/index.ts";
import { ensureModels } from "../../../models/cache.ts";
import { addConnectionOptions, type ConnectionFlags, clientOptionsOf } from "../connection.ts";
import { parseJobSeed, parseRunnablePreset } from "../options.ts";
import { StageProgress } from "../progress.ts";
import { generateRemote, parseIdempotencyKey, schedulingOptions, serverOption } from "./remote.ts";

const say = (s: string) => process.stderr.write(`${s}\n`);

function intOption(flag: string, description: string): Option {
  return new Option(flag, description).argParser((v: string) => {
    if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`must be a non-negative integer; got "${v}"`);
    return Number(v);
  });
}

function numOption(flag: string, description: string): Option {
  return new Option(flag, description).argParser((v: string) => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n))
      throw new InvalidArgumentError(`must be a number; got "${v}"`);
    return n;
  });
}

/** JobRequest field -> the CLI option that sets it, so validation errors name what the user typed. */
const OPTION_OF: Record<string, string> = {
  seed: "--seed",
  height: "--height",
  width: "--width",
  stopAfter: "--stop-after",
  "base.steps": "--base-steps (or --steps)",
  "interpolation.steps": "--interp-steps (or --steps)",
  "vsr.steps": "--vsr-steps (or --steps)",
  "base.guidance": "--guidance",
  "interpolation.guidance": "--interp-guidance",
  "vsr.guidance": "--vsr-guidance",
  "base.sampler": "--sampler",
  "interpolation.sampler": "--interp-sampler",
  "vsr.sampler": "--vsr-sampler",
  "base.negativePrompt": "--negative-prompt",
  "interpolation.chunkFrames": "--interp-chunk",
  "interpolation.chunkOverlap": "--interp-overlap",
  "vsr.chunkFrames": "--vsr-chunk",
  "vsr.patch": "--vsr-patch",
  "vsr.patchOverlap": "--vsr-patch-overlap",
  "vsr.noiseLevel": "--vsr-noise-level",
  "decode.vsrTile": "--decode-tile",
  "decode.vsrTileOverlap": "--decode-tile-overlap",
};

function addJobOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--out <file>", "output MP4 file").default("out/video.mp4"))
    .addOption(
      new Option("--preset <name>", "model preset: tiny or small")
        .argParser(parseRunnablePreset)
        .default("small"),
    )
    .addOption(
      new Option(
        "--model-dir <dir>",
        "use this model directory (e.g. exported real weights) instead of a preset",
      ),
    )
    .addOption(
      new Option("--seed <n>", `job seed, integer 0..${MAX_JOB_SEED}`).argParser(parseJobSeed).default(0),
    )
    .addOption(intOption("--steps <n>", "denoising steps for every stage (default: the preset's)"))
    .addOption(intOption("--base-steps <n>", "base stage steps"))
    .addOption(intOption("--interp-steps <n>", "interpolation steps"))
    .addOption(intOption("--vsr-steps <n>", "super-resolution steps"))
    .addOption(numOption("--guidance <g>", "base guidance scale (LaVie: 7.5)"))
    .addOption(numOption("--interp-guidance <g>", "interpolation guidance scale (4.0)"))
    .addOption(numOption("--vsr-guidance <g>", "super-resolution guidance scale (5.0)"))
    .addOption(new Option("--sampler <name>", "base sampler: ddpm (LaVie), ddim, euler, respaced_ddim"))
    .addOption(new Option("--interp-sampler <name>", "interpolation sampler (LaVie: respaced_ddim)"))
    .addOption(new Option("--vsr-sampler <name>", "super-resolution sampler (LaVie: ddim)"))
    .addOption(new Option("--negative-prompt <text>", "base stage negative prompt"))
    .addOption(
      intOption("--interp-chunk <frames>", "interpolate in frame chunks of this size (0 = whole sequence)"),
    )
    .addOption(intOption("--interp-overlap <frames>", "overlap of interpolation chunks (blended)"))
    .addOption(intOption("--vsr-chunk <frames>", "super-resolution frame chunk (LaVie: 8)"))
    .addOption(
      intOption("--vsr-patch <px>", "super-resolution spatial patch size in low-res pixels (0 = whole)"),
    )
    .addOption(intOption("--vsr-patch-overlap <px>", "overlap of VSR patches (blended)"))
    .addOption(intOption("--vsr-noise-level <n>", "low-res noise augmentation level (LaVie: 50)"))
    .addOption(intOption("--decode-tile <px>", "x4 VAE decode tile in latent pixels (default: auto)"))
    .addOption(intOption("--decode-tile-overlap <px>", "overlap of x4 VAE decode tiles"))
    .addOption(new Option("--frames-dir <dir>", "also save the frames as PNG files in this directory"))
    .addOption(intOption("--threads <n>", "onnxruntime threads (default: all cores)"));
}

type Opts = Record<string, string | number | undefined>;

function requestOf(prompt: string, o: Opts, extra: Partial<JobRequest> = {}): JobRequest {
  const n = (k: string) => o[k] as number | undefined;
  const s = (k: string) => o[k] as string | undefined;
  const steps = n("steps");
  const stage = (st: number | undefined, g: number | undefined, sampler: string | undefined) => ({
    ...((st ?? steps) !== undefined && { steps: st ?? steps }),
    ...(g !== undefined && { guidance: g }),
    ...(sampler !== undefined && { sampler }),
  });
  const clean = <T extends object>(x: T) =>
    Object.fromEntries(Object.entries(x).filter(([, v]) => v !== undefined));
  return {
    prompt,
    seed: n("seed") ?? 0,
    ...extra,
    base: {
      ...stage(n("baseSteps"), n("guidance"), s("sampler")),
      ...clean({ negativePrompt: s("negativePrompt") }),
      ...((o.cfgParallel as unknown) === true && { cfgParallel: true }),
    },
    interpolation: {
      ...stage(n("interpSteps"), n("interpGuidance"), s("interpSampler")),
      ...clean({ chunkFrames: n("interpChunk"), chunkOverlap: n("interpOverlap") }),
    },
    vsr: {
      ...stage(n("vsrSteps"), n("vsrGuidance"), s("vsrSampler")),
      ...clean({
        chunkFrames: n("vsrChunk"),
        patch: n("vsrPatch"),
        patchOverlap: n("vsrPatchOverlap"),
        noiseLevel: n("vsrNoiseLevel"),
      }),
    },
    decode: clean({ vsrTile: n("decodeTile"), vsrTileOverlap: n("decodeTileOverlap") }),
  };
}

/** A validation error naming the CLI option instead of the JobRequest field, when there is one. */
function explain(err: unknown): LavieError {
  const e = LavieError.from(err);
  const opt = e.field ? OPTION_OF[e.field] : undefined;
  if (e.code === "invalid_argument" && opt && e.field && e.message.startsWith(`${e.field}: `)) {
    return new LavieError("invalid_argument", `${opt}: ${e.message.slice(e.field.length + 2)}`, {
      field: e.field,
    });
  }
  return e;
}

function resolveOrExplain(engine: LocalEngine, req: JobRequest): JobSpec {
  try {
    return engine.resolve(req);
  } catch (err) {
    throw explain(err);
  }
}

/** rgb24 frames from a [1, 3, F, H, W] tensor in [-1, 1], one at a time. */
function* rgbFrames(t: Tensor): Generator<Uint8Array> {
  const [, , F, H, W] = t.shape as [number, number, number, number, number];
  const hw = H * W;
  for (let f = 0; f < F; f++) {
    const out = new Uint8Array(hw * 3);
    for (let c = 0; c < 3; c++) {
      const base = (c * F + f) * hw;
      for (let i = 0; i < hw; i++) out[i * 3 + c] = floatToByte(t.data[base + i]!);
    }
    yield out;
  }
}

async function runJob(
  o: Opts,
  build: (
    engine: LocalEngine,
  ) => Promise<{ spec: JobSpec; start?: PlanStart; inputs?: Record<string, Tensor> }>,
): Promise<void> {
  const t0 = performance.now();
  const dir =
    (o.modelDir as string | undefined) ??
    (await ensureModels(o.preset as string, {
      onProgress: (e) => {
        if (e.phase === "start" && e.index === 0)
          say(`building the ${o.preset} models (first use; cached afterwards)`);
      },
    }));
  const threads = o.threads as number | undefined;
  const engine = await LocalEngine.open(dir, threads ? { intraOpThreads: threads } : {});
  try {
    const { spec, start, inputs } = await build(engine);
    const enc = engine.models.stage("base").tokenizer.encode(spec.prompt);
    if (enc.truncated)
      say(`warning: prompt truncated to ${enc.ids.length - 2} tokens (it has ${enc.tokenCount})`);
    const plan = engine.plan(spec, start);
    const progress = new StageProgress(plan);
    const result = await engine.generate(spec, {
      ...(start && { start }),
      ...(inputs && { inputs }),
      onEvent: (e) => progress.onEvent(e),
    });
    const [, , F, H, W] = result.frames.shape as number[];
    const out = o.out as string;
    await mkdir(dirname(out), { recursive: true });
    const video = await encodeVideo(out, rgbFrames(result.frames), {
      width: W!,
      height: H!,
      fps: result.fps,
    });
    if (o.framesDir) {
      await writePngFrames(o.framesDir as string, {
        width: W!,
        height: H!,
        fps: result.fps,
        frames: [...rgbFrames(result.frames)],
      });
    }
    say(
      `wrote ${out}: ${F} frames ${W}x${H} @ ${result.fps} fps (${video.encoder}) in ${((performance.now() - t0) / 1000).toFixed(1)}s` +
        ` [preset ${engine.models.manifest.preset}, seed ${spec.seed}]`,
    );
  } finally {
    await engine.close();
  }
}

async function readInput(path: string): Promise<Tensor> {
  const v = await decodeVideo(path);
  const t = framesToTensor(v.frames, v.height, v.width); // [F, 3, H, W]
  const F = v.frames.length;
  const hw = v.height * v.width;
  const out = new Float32Array(t.data.length);
  for (let f = 0; f < F; f++)
    for (let c = 0; c < 3; c++)
      out.set(t.data.subarray((f * 3 + c) * hw, (f * 3 + c + 1) * hw), (c * F + f) * hw);
  return { shape: [1, 3, F, v.height, v.width], data: out };
}

export function registerGenerateCommands(program: Command): void {
  const generate = addJobOptions(
    program
      .command("generate")
      .description("text -> video: base T2V, temporal interpolation and super-resolution, written as MP4")
      .argument("<prompt>", "what the video shows"),
  )
    .addOption(new Option("--stop-after <stage>", "base, interpolation or vsr").default("vsr"))
    .addOption(intOption("--height <px>", "base video height (default: the preset's)"))
    .addOption(intOption("--width <px>", "base video width"))
    .addOption(
      new Option(
        "--cfg-parallel",
        "base stage: run the CFG branches as two tasks at once, exchanging predictions each step " +
          "(with --server: on two distinct base runners; same result as the batched run)",
      ),
    )
    .addOption(serverOption(false))
    .addOption(
      new Option(
        "--idempotency-key <key>",
        "with --server: resubmitting with the same key returns the same job (default: a random key)",
      ).argParser(parseIdempotencyKey),
    );
  for (const opt of schedulingOptions()) generate.addOption(opt);
  addConnectionOptions(generate); // with --server: --api-key-file, --tls-ca, ... (connection.ts)
  generate.action(async (prompt: string, o: Opts) => {
    const req = requestOf(prompt, o, {
      stopAfter: o.stopAfter as string,
      ...(o.height !== undefined && { height: o.height as number }),
      ...(o.width !== undefined && { width: o.width as number }),
    });
    if (o.server !== undefined) {
      // The coordinator's models decide the preset; --preset, --model-dir and --threads are local only.
      await generateRemote(req, {
        server: o.server as string,
        out: o.out as string,
        ...(o.idempotencyKey !== undefined && { idempotencyKey: o.idempotencyKey as string }),
        ...(o.priority !== undefined && { priority: o.priority as Priority }),
        ...(o.deadline !== undefined && { deadlineSeconds: o.deadline as number }),
        ...(o.waitAdmission !== undefined && { waitAdmissionSeconds: o.waitAdmission as number }),
        ...(o.framesDir !== undefined && { framesDir: o.framesDir as string }),
        explain,
        connection: clientOptionsOf(o.server as string, o as ConnectionFlags),
      });
      return;
    }
    await runJob(o, async (engine) => ({ spec: resolveOrExplain(engine, req) }));
  });

  addJobOptions(
    program
      .command("interpolate")
      .description("video (e.g. 16 frames) -> 4x frame rate minus one (16 -> 61), conditioned on a prompt")
      .argument("<input>", "input video file or directory of PNG frames"),
  )
    .addOption(new Option("--prompt <text>", "the video's prompt").makeOptionMandatory())
    .action(async (input: string, o: Opts) => {
      const frames = await readInput(input);
      const [, , F, H, W] = frames.shape as number[];
      await runJob(o, async (engine) => ({
        spec: resolveOrExplain(
          engine,
          requestOf(o.prompt as string, o, { stopAfter: "interpolation", frames: F!, height: H!, width: W! }),
        ),
        start: { from: "base_frames" },
        inputs: { "base.frames": frames },
      }));
    });

  addJobOptions(
    program
      .command("upscale")
      .description("video -> x4 resolution (video super-resolution), conditioned on a prompt")
      .argument("<input>", "input video file or directory of PNG frames"),
  )
    .addOption(new Option("--prompt <text>", "the video's prompt").makeOptionMandatory())
    .action(async (input: string, o: Opts) => {
      const frames = await readInput(input);
      const [, , F, H, W] = frames.shape as number[];
      await runJob(o, async (engine) => ({
        spec: resolveOrExplain(engine, requestOf(o.prompt as string, o, { height: H!, width: W! })),
        start: { from: "lowres_frames", frames: F! },
        inputs: { "input.frames": frames },
      }));
    });
}
