/**
 * Field-by-field checks of manifest.json. Every failure is failed_precondition naming the manifest
 * file (field) and, in the message, the JSON path of the bad field and what it must be.
 */
import { LavieError } from "../core/errors.ts";
import { resolveSamplerConfig } from "../core/samplers/config.ts";
import type { NetworkKind, TensorSpec } from "./contract.ts";
import type {
  FileEntry,
  Manifest,
  NetworkEntry,
  StageEntry,
  StageName,
  StageSamplerDefaults,
  TokenizerEntry,
  VideoSize,
} from "./manifest.ts";
import { NETWORK_IDS, NETWORK_KINDS, type NetworkConfig, type NetworkId } from "./networks.ts";

const STAGES: readonly StageName[] = ["base", "interpolation", "vsr"];
const KINDS: readonly NetworkKind[] = [...new Set(Object.values(NETWORK_KINDS))];
type Obj = Record<string, unknown>;

class Fields {
  constructor(readonly file: string) {}

  fail(path: string, what: string, got?: unknown): never {
    const shown = got === undefined ? "missing" : `got ${JSON.stringify(got)?.slice(0, 80)}`;
    throw new LavieError("failed_precondition", `${this.file}: field "${path}" must be ${what}; ${shown}`, {
      field: this.file,
    });
  }
  obj(v: unknown, path: string): Obj {
    if (typeof v !== "object" || v === null || Array.isArray(v)) this.fail(path, "an object", v);
    return v as Obj;
  }
  arr(v: unknown, path: string): unknown[] {
    if (!Array.isArray(v)) this.fail(path, "an array", v);
    return v;
  }
  str(v: unknown, path: string): string {
    if (typeof v !== "string") this.fail(path, "a string", v);
    return v;
  }
  num(v: unknown, path: string, o: { int?: boolean; min?: number; gt?: number } = {}): number {
    const ok =
      typeof v === "number" &&
      Number.isFinite(v) &&
      (!o.int || Number.isInteger(v)) &&
      (o.min === undefined || v >= o.min) &&
      (o.gt === undefined || v > o.gt);
    if (!ok) {
      const bound = o.min !== undefined ? ` >= ${o.min}` : o.gt !== undefined ? ` > ${o.gt}` : "";
      this.fail(path, `${o.int ? "an integer" : "a number"}${bound}`, v);
    }
    return v as number;
  }
  oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[]): T {
    if (typeof v !== "string" || !(allowed as readonly string[]).includes(v)) {
      this.fail(path, `one of ${allowed.join(", ")}`, v);
    }
    return v as T;
  }
}

export function parseManifestJson(text: string, file: string): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new LavieError("failed_precondition", `${file}: not valid JSON (${(err as Error).message})`, {
      field: file,
      cause: err,
    });
  }
  const f = new Fields(file);
  const m = f.obj(json, "(root)");
  if (m.format !== "lavie-serve/model-directory") f.fail("format", '"lavie-serve/model-directory"', m.format);
  if (m.formatVersion !== 1)
    f.fail("formatVersion", "1 (the only version this build reads)", m.formatVersion);
  const preset = f.str(m.preset, "preset");
  const seed = m.seed === null ? null : f.num(m.seed, "seed", { int: true, min: 0 });
  let builder: Manifest["builder"] = null;
  if (m.builder !== null) {
    const b = f.obj(m.builder, "builder");
    builder = { name: f.str(b.name, "builder.name"), version: f.str(b.version, "builder.version") };
  }
  const networks: Manifest["networks"] = {};
  for (const [id, v] of Object.entries(f.obj(m.networks, "networks"))) {
    const nid = f.oneOf(id, `networks.${id}`, NETWORK_IDS);
    networks[nid] = network(f, v, `networks.${id}`);
  }
  const tokenizers = f.arr(m.tokenizers, "tokenizers").map((v, i) => tokenizer(f, v, `tokenizers[${i}]`));
  const stages: Manifest["stages"] = {};
  for (const [name, v] of Object.entries(f.obj(m.stages, "stages"))) {
    const sn = f.oneOf(name, `stages.${name}`, STAGES);
    stages[sn] = stage(f, v, `stages.${name}`, networks, tokenizers);
  }
  if (Object.keys(stages).length === 0)
    f.fail("stages", "an object with at least one of base, interpolation, vsr", {});
  return {
    format: "lavie-serve/model-directory",
    formatVersion: 1,
    preset,
    seed,
    builder,
    networks,
    tokenizers,
    stages,
  };
}

function fileEntry(f: Fields, v: unknown, path: string): FileEntry {
  const o = f.obj(v, path);
  const p = f.str(o.path, `${path}.path`);
  if (p === "" || p.startsWith("/") || p.split("/").includes("..")) {
    f.fail(`${path}.path`, "a relative path inside the directory", p);
  }
  const sha256 = f.str(o.sha256, `${path}.sha256`);
  if (!/^[0-9a-f]{64}$/.test(sha256)) f.fail(`${path}.sha256`, "64 lowercase hex digits", sha256);
  return { path: p, bytes: f.num(o.bytes, `${path}.bytes`, { int: true, min: 0 }), sha256 };
}

function tensorSpec(f: Fields, v: unknown, path: string): TensorSpec {
  const o = f.obj(v, path);
  const shape = f
    .arr(o.shape, `${path}.shape`)
    .map((d, i) => (typeof d === "string" ? d : f.num(d, `${path}.shape[${i}]`, { int: true, min: 0 })));
  return {
    name: f.str(o.name, `${path}.name`),
    dtype: f.oneOf(o.dtype, `${path}.dtype`, ["float32", "int64"] as const),
    shape,
  };
}

/** The config fields the contract and stage checks read, per kind; the rest is kept as is. */
function config(f: Fields, kind: NetworkKind, v: unknown, path: string): NetworkConfig {
  const o = f.obj(v, path);
  const ints = (names: string[]) => {
    for (const n of names) f.num(o[n], `${path}.${n}`, { int: true, min: 1 });
  };
  const chans = () => {
    for (const [i, c] of f.arr(o.blockChannels, `${path}.blockChannels`).entries()) {
      f.num(c, `${path}.blockChannels[${i}]`, { int: true, min: 1 });
    }
  };
  if (kind === "text_encoder") ints(["width", "positions", "vocabSize"]);
  else if (kind === "base_unet" || kind === "interp_unet" || kind === "vsr_unet") {
    ints(["inChannels", "outChannels", "crossAttentionDim"]);
    chans();
  } else {
    f.num(o.scalingFactor, `${path}.scalingFactor`, { gt: 0 });
    chans();
  }
  return o as unknown as NetworkConfig;
}

function network(f: Fields, v: unknown, path: string): NetworkEntry {
  const o = f.obj(v, path);
  const kind = f.oneOf(o.kind, `${path}.kind`, KINDS);
  return {
    kind,
    file: fileEntry(f, o.file, `${path}.file`),
    externalData: o.externalData === null ? null : fileEntry(f, o.externalData, `${path}.externalData`),
    parameters: f.num(o.parameters, `${path}.parameters`, { int: true, min: 0 }),
    seed: o.seed === null ? null : f.num(o.seed, `${path}.seed`, { int: true, min: 0 }),
    inputs: f.arr(o.inputs, `${path}.inputs`).map((t, i) => tensorSpec(f, t, `${path}.inputs[${i}]`)),
    outputs: f.arr(o.outputs, `${path}.outputs`).map((t, i) => tensorSpec(f, t, `${path}.outputs[${i}]`)),
    config: config(f, kind, o.config, `${path}.config`),
  };
}

function tokenizer(f: Fields, v: unknown, path: string): TokenizerEntry {
  const o = f.obj(v, path);
  return {
    file: fileEntry(f, o.file, `${path}.file`),
    vocabSize: f.num(o.vocabSize, `${path}.vocabSize`, { int: true, min: 1 }),
    contextLength: f.num(o.contextLength, `${path}.contextLength`, { int: true, min: 2 }),
  };
}

function size(f: Fields, v: unknown, path: string): VideoSize {
  const o = f.obj(v, path);
  return {
    frames: f.num(o.frames, `${path}.frames`, { int: true, min: 1 }),
    height: f.num(o.height, `${path}.height`, { int: true, min: 1 }),
    width: f.num(o.width, `${path}.width`, { int: true, min: 1 }),
  };
}

const STAGE_KINDS: Record<StageName, { text: NetworkKind; unet: NetworkKind; vaeDecoder: NetworkKind }> = {
  base: { text: "text_encoder", unet: "base_unet", vaeDecoder: "vae_decoder" },
  interpolation: { text: "text_encoder", unet: "interp_unet", vaeDecoder: "vae_decoder" },
  vsr: { text: "text_encoder", unet: "vsr_unet", vaeDecoder: "x4_vae_decoder" },
};

function stage(
  f: Fields,
  v: unknown,
  path: string,
  networks: Manifest["networks"],
  tokenizers: TokenizerEntry[],
): StageEntry {
  const o = f.obj(v, path);
  const name = path.slice("stages.".length) as StageName;
  const nets = f.obj(o.networks, `${path}.networks`);
  const ref = (role: string, kind: NetworkKind): NetworkId => {
    const p = `${path}.networks.${role}`;
    const id = f.oneOf(nets[role], p, NETWORK_IDS);
    const entry = networks[id];
    if (!entry) f.fail(p, `the id of a network listed under "networks"`, id);
    if (entry.kind !== kind) f.fail(p, `a network of kind ${kind} (${id} is ${entry.kind})`, id);
    return id;
  };
  const k = STAGE_KINDS[name];
  const stageNets: StageEntry["networks"] = {
    text: ref("text", k.text),
    unet: ref("unet", k.unet),
    vaeDecoder: ref("vaeDecoder", k.vaeDecoder),
  };
  if (name === "interpolation") stageNets.vaeEncoder = ref("vaeEncoder", "vae_encoder");
  const tok = f.str(o.tokenizer, `${path}.tokenizer`);
  if (!tokenizers.some((t) => t.file.path === tok))
    f.fail(`${path}.tokenizer`, "the path of a tokenizers entry", tok);
  const out = f.obj(o.output, `${path}.output`);
  return {
    networks: stageNets,
    tokenizer: tok,
    latentScale: f.num(o.latentScale, `${path}.latentScale`, { gt: 0 }),
    vaeFactor: f.num(o.vaeFactor, `${path}.vaeFactor`, { int: true, min: 1 }),
    spatialDivisor: f.num(o.spatialDivisor, `${path}.spatialDivisor`, { int: true, min: 1 }),
    input: o.input === null ? null : size(f, o.input, `${path}.input`),
    output: { ...size(f, out, `${path}.output`), fps: f.num(out.fps, `${path}.output.fps`, { gt: 0 }) },
    sampler: sampler(f, o.sampler, `${path}.sampler`),
  };
}

function sampler(f: Fields, v: unknown, path: string): StageSamplerDefaults {
  const o = f.obj(v, path);
  let config: StageSamplerDefaults["config"];
  try {
    config = resolveSamplerConfig(f.obj(o.config, `${path}.config`));
  } catch (err) {
    if (err instanceof LavieError && err.field)
      f.fail(`${path}.config.${err.field}`, err.message.replace(/^[^:]*: /, ""));
    throw err;
  }
  const out: StageSamplerDefaults = {
    config,
    guidanceScale: f.num(o.guidanceScale, `${path}.guidanceScale`, { min: 0 }),
    negativePrompt: f.str(o.negativePrompt, `${path}.negativePrompt`),
    promptSuffix: f.str(o.promptSuffix, `${path}.promptSuffix`),
  };
  if (o.lowResNoise !== undefined) {
    const n = f.obj(o.lowResNoise, `${path}.lowResNoise`);
    const s = f.obj(n.schedule, `${path}.lowResNoise.schedule`);
    out.lowResNoise = {
      noiseLevel: f.num(n.noiseLevel, `${path}.lowResNoise.noiseLevel`, { int: true, min: 0 }),
      schedule: {
        numTrainTimesteps: f.num(s.numTrainTimesteps, `${path}.lowResNoise.schedule.numTrainTimesteps`, {
          int: true,
        }),
        betaSchedule: f.oneOf(s.betaSchedule, `${path}.lowResNoise.schedule.betaSchedule`, [
          "linear",
          "scaled_linear",
        ] as const),
        betaStart: f.num(s.betaStart, `${path}.lowResNoise.schedule.betaStart`, { gt: 0 }),
        betaEnd: f.num(s.betaEnd, `${path}.lowResNoise.schedule.betaEnd`, { gt: 0 }),
      },
    };
  }
  return out;
}
