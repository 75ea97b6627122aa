/**
 * manifest.json: what a model directory contains and how its stages use it (see models/MODELS.md).
 * Written last by the builder (its presence marks a complete directory); parsed and checked field by
 * field by parseManifest, so a malformed manifest fails with the name of the offending field.
 */
import type { StageName } from "../core/samplers/presets.ts";
import type { SamplerConfig } from "../core/samplers/types.ts";
import type { NetworkKind, TensorSpec } from "./contract.ts";
import { parseManifestJson } from "./manifest_parse.ts";
import type { NetworkConfig, NetworkId } from "./networks.ts";

export const MANIFEST_FILE = "manifest.json";
export const MANIFEST_FORMAT = "lavie-serve/model-directory";
export const MANIFEST_VERSION = 1;

export type { StageName };
export const STAGE_ORDER: readonly StageName[] = ["base", "interpolation", "vsr"];

/** A file of the directory (path relative to it, '/'-separated) with its size and SHA-256. */
export interface FileEntry {
  path: string;
  bytes: number;
  /** Lowercase hex SHA-256 of the file's bytes. */
  sha256: string;
}

export interface NetworkEntry {
  kind: NetworkKind;
  /** The .onnx file. */
  file: FileEntry;
  /** The external-data file its initializers point to (null: all weights inline). */
  externalData: FileEntry | null;
  parameters: number;
  /** Seed of project-built weights (null for exported checkpoints). */
  seed: number | null;
  /** The I/O contract (contractFor(kind, config)); informative, the loader checks it equals the contract. */
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** The network's configuration (models/configs.ts): text width, UNet channels, VAE levels... */
  config: NetworkConfig;
}

export interface TokenizerEntry {
  file: FileEntry;
  vocabSize: number;
  contextLength: number;
}

export interface StageNetworks {
  text: NetworkId;
  unet: NetworkId;
  vaeDecoder: NetworkId;
  /** Interpolation only: encodes the base frames into conditioning latents. */
  vaeEncoder?: NetworkId;
}

export interface VideoSize {
  frames: number;
  height: number;
  width: number;
}

export interface StageSamplerDefaults {
  /** Fully resolved sampler configuration (core/samplers), numInferenceSteps from the preset. */
  config: SamplerConfig;
  guidanceScale: number;
  /** Unconditional prompt of classifier-free guidance ("" = empty prompt). */
  negativePrompt: string;
  /** Appended to the user's prompt. */
  promptSuffix: string;
  /** VSR only: noise augmentation of the low-res frames (noiseLevel is also the UNet's class label). */
  lowResNoise?: {
    noiseLevel: number;
    schedule: {
      numTrainTimesteps: number;
      betaSchedule: "linear" | "scaled_linear";
      betaStart: number;
      betaEnd: number;
    };
  };
}

export interface StageEntry {
  networks: StageNetworks;
  /** Path of the stage's tokenizer (an entry of `tokenizers`). */
  tokenizer: string;
  /** Latents = VAE latents x latentScale (0.18215 SD VAE, 0.08333 x4-upscaler VAE). */
  latentScale: number;
  /** Decoded pixels per latent (8 SD VAE, 4 x4-upscaler VAE). */
  vaeFactor: number;
  /** The stage's input frames (base: its output) must have height and width divisible by this. */
  spatialDivisor: number;
  /** Default input video (null for base, which starts from noise). */
  input: VideoSize | null;
  /** Default output video and its frame rate. */
  output: VideoSize & { fps: number };
  sampler: StageSamplerDefaults;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  formatVersion: typeof MANIFEST_VERSION;
  /** Preset the directory was built from ("tiny", "small") or a free name for exported weights. */
  preset: string;
  /** Directory seed of project-built weights; null for exported checkpoints. */
  seed: number | null;
  /** Builder that wrote the directory (null for hand-written manifests of exported weights). */
  builder: { name: string; version: string } | null;
  networks: Partial<Record<NetworkId, NetworkEntry>>;
  tokenizers: TokenizerEntry[];
  /** Stages the directory can run; at least one. */
  stages: Partial<Record<StageName, StageEntry>>;
}

/** Deterministic JSON (2-space indent, trailing newline): same manifest -> same bytes. */
export function serializeManifest(m: Manifest): string {
  return `${JSON.stringify(m, null, 2)}\n`;
}

/**
 * Parses and checks manifest text. Throws LavieError("failed_precondition") with field = `file`
 * and a message naming the JSON field and what it must be.
 */
export function parseManifest(text: string, file: string): Manifest {
  return parseManifestJson(text, file);
}

/** All files a manifest lists (networks, external data, tokenizers), in manifest order. */
export function manifestFiles(m: Manifest): FileEntry[] {
  const out: FileEntry[] = [];
  for (const n of Object.values(m.networks)) {
    if (!n) continue;
    out.push(n.file);
    if (n.externalData) out.push(n.externalData);
  }
  for (const t of m.tokenizers) out.push(t.file);
  return out;
}
