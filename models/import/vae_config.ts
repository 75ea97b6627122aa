/**
 * A published VAE folder (stable-diffusion-v1-4/vae, stable-diffusion-x4-upscaler/vae: diffusers
 * AutoencoderKL, config.json + diffusion_pytorch_model.bin) mapped onto our VAE graphs.
 *
 *   const cfg = parseVaeConfig(await readConfigJson(`${dir}/config.json`), `${dir}/config.json`, "vae_decoder");
 *   const src = new StateDictWeights(file, tensors, { rename: vaeKeyRename, ignore: vaeIgnore("vae_decoder") });
 *
 * Fields and defaults are diffusers 0.16.0 AutoencoderKL's. One file holds the whole autoencoder; each
 * graph takes its half (decoder + post_quant_conv, or encoder + quant_conv) and ignores the other.
 */
import type { VaeConfig } from "../configs.ts";
import type { NetworkKind } from "../contract.ts";
import {
  configError,
  fixedInt,
  type JsonObject,
  oneOf,
  positiveInt,
  positiveInts,
  stringsAll,
} from "./json_fields.ts";

export type VaeKind = Extract<NetworkKind, "vae_decoder" | "vae_encoder" | "x4_vae_decoder">;

/**
 * The latent scale each LaVie stage applies: base/ and interpolation/ hard-code 0.18215 (the SD VAE);
 * the VSR pipeline sets the x4 upscaler VAE's scaling_factor to 0.08333 whatever its config says.
 */
export const LAVIE_SCALING: Readonly<Record<VaeKind, number>> = {
  vae_decoder: 0.18215,
  vae_encoder: 0.18215,
  x4_vae_decoder: 0.08333,
};

/** Levels of block_out_channels each kind's spatial factor implies (x8: 4, x4: 3). */
const LEVELS: Readonly<Record<VaeKind, number>> = { vae_decoder: 4, vae_encoder: 4, x4_vae_decoder: 3 };

/** Newer diffusers config fields that change the network; allowed only at their neutral value. */
const NEUTRAL: readonly [field: string, value: unknown, meaning: string][] = [
  ["use_quant_conv", true, "the graphs include quant_conv"],
  ["use_post_quant_conv", true, "the graphs include post_quant_conv"],
  ["mid_block_add_attention", true, "the mid block has its attention"],
  ["shift_factor", null, "LaVie applies no latent shift"],
  ["latents_mean", null, "LaVie applies no latent normalisation"],
  ["latents_std", null, "LaVie applies no latent normalisation"],
];

/** Parses a diffusers AutoencoderKL config for one of our VAE graphs. */
export function parseVaeConfig(json: JsonObject, file: string, kind: VaeKind): VaeConfig {
  const cls = json._class_name;
  if (cls !== undefined && cls !== "AutoencoderKL")
    throw configError(file, "_class_name", `must be "AutoencoderKL", got ${JSON.stringify(cls)}`);
  fixedInt(json, file, "in_channels", 3, "RGB images");
  fixedInt(json, file, "out_channels", 3, "RGB images");
  const latentChannels = fixedInt(json, file, "latent_channels", 4, "the VAE contract has 4 latent channels");
  oneOf(json, file, "act_fn", ["silu"], "silu");
  for (const [field, value, meaning] of NEUTRAL) {
    const v = json[field];
    if (v !== undefined && v !== value)
      throw configError(
        file,
        field,
        `must be ${JSON.stringify(value)} or absent (${meaning}), got ${JSON.stringify(v)}`,
      );
  }
  const blockChannels = positiveInts(json, file, "block_out_channels", [64]);
  const levels = LEVELS[kind];
  if (blockChannels.length !== levels)
    throw configError(
      file,
      "block_out_channels",
      `must have ${levels} entries for ${kind} (x${2 ** (levels - 1)} scaling), got ${blockChannels.length}`,
    );
  const down = stringsAll(json, file, "down_block_types", "DownEncoderBlock2D", ["DownEncoderBlock2D"]);
  const up = stringsAll(json, file, "up_block_types", "UpDecoderBlock2D", ["UpDecoderBlock2D"]);
  for (const [field, list] of [
    ["down_block_types", down],
    ["up_block_types", up],
  ] as const)
    if (list.length !== levels)
      throw configError(
        file,
        field,
        `must have ${levels} entries like block_out_channels, got ${list.length}`,
      );
  const groups = positiveInt(json, file, "norm_num_groups", 32);
  const bad = blockChannels.find((c) => c % groups !== 0);
  if (bad !== undefined)
    throw configError(
      file,
      "norm_num_groups",
      `(${groups}) must divide every block_out_channels entry (${bad})`,
    );
  return {
    latentChannels,
    blockChannels,
    layersPerBlock: positiveInt(json, file, "layers_per_block", 1),
    groups,
    scalingFactor: scaling(json, file, kind),
  };
}

function scaling(json: JsonObject, file: string, kind: VaeKind): number {
  const lavie = LAVIE_SCALING[kind];
  const v = json.scaling_factor;
  if (v === undefined || v === lavie) return lavie;
  const who =
    kind === "x4_vae_decoder" ? "LaVie's VSR pipeline uses" : "LaVie's base and interpolation stages use";
  throw configError(
    file,
    "scaling_factor",
    `must be ${lavie} or absent (${who} ${lavie}), got ${JSON.stringify(v)}`,
  );
}

/** diffusers >= 0.17 names of the mid-block attention -> the 0.16 names our graphs use. */
const NEW_ATTENTION_NAMES: Readonly<Record<string, string>> = {
  to_q: "query",
  to_k: "key",
  to_v: "value",
  "to_out.0": "proj_attn",
};
const NEW_ATTENTION =
  /^((?:encoder|decoder)\.mid_block\.attentions\.\d+)\.(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/;

/** Renames a VAE state-dict key written by later diffusers to the diffusers 0.16 key; others unchanged. */
export function vaeKeyRename(key: string): string {
  const m = NEW_ATTENTION.exec(key);
  return m ? `${m[1]}.${NEW_ATTENTION_NAMES[m[2]!]}.${m[3]}` : key;
}

/** The other half of the autoencoder, which a graph of this kind does not use. */
export function vaeIgnore(kind: VaeKind): readonly RegExp[] {
  return kind === "vae_encoder" ? [/^decoder\./, /^post_quant_conv\./] : [/^encoder\./, /^quant_conv\./];
}
