/**
 * The diffusers-style unet/config.json that LaVie's base and interpolation UNets are built from,
 * mapped onto our UNetConfig.
 *
 *   const file = `${dir}/unet/config.json`;
 *   const cfg = parseUNetConfig(await readConfigJson(file), file, "base_unet");
 *
 * The official code (UNet3DConditionModel.from_pretrained_2d in base/ and interpolation/) reads
 * Stable Diffusion 1.4's unet/config.json and overrides: the block types become their 3-D versions,
 * use_first_frame is false (base) or true (interpolation: sparse-causal spatial attention), and the
 * interpolation UNet takes 8 input channels (noisy latent + conditioning latent). Both SD's file
 * (2-D block names, in_channels 4) and a file with LaVie's values written in (3-D names, in_channels 8
 * for interpolation, use_first_frame) are accepted. Fields LaVie leaves at the constructor's default
 * are accepted only at that default; unknown fields are refused. Defaults are diffusers 0.16.0's.
 */
import type { TemporalAttentionConfig, UNetConfig } from "../configs.ts";
import { BASE_TEMPORAL, INTERP_TEMPORAL } from "../presets.ts";
import {
  configError,
  fixedInt,
  type JsonObject,
  positiveInt,
  positiveInts,
  positiveNumber,
} from "./json_fields.ts";

export type UNetImportKind = "base_unet" | "interp_unet";

/** Input channels of each network (LaVie's interpolation concatenates a 4-channel conditioning latent). */
const IN_CHANNELS: Readonly<Record<UNetImportKind, number>> = { base_unet: 4, interp_unet: 8 };

const DOWN_TYPES: Readonly<Record<string, boolean>> = {
  CrossAttnDownBlock3D: true,
  CrossAttnDownBlock2D: true,
  DownBlock3D: false,
  DownBlock2D: false,
};
const UP_TYPES: Readonly<Record<string, boolean>> = {
  CrossAttnUpBlock3D: true,
  CrossAttnUpBlock2D: true,
  UpBlock3D: false,
  UpBlock2D: false,
};
const MID_TYPES = ["UNetMidBlock3DCrossAttn", "UNetMidBlock2DCrossAttn"];
const CLASS_NAMES = ["UNet3DConditionModel", "UNet2DConditionModel"];

/** Constructor options LaVie leaves at their default; any other value is refused (with the reason). */
const FIXED: readonly [field: string, value: unknown, why: string][] = [
  ["act_fn", "silu", "the resnets and time embedding use SiLU"],
  ["center_input_sample", false, "LaVie feeds the sample as it is"],
  ["dual_cross_attention", false, "the official blocks raise NotImplementedError otherwise"],
  ["use_linear_projection", false, "SD1.x transformers project with 1x1 convolutions"],
  ["class_embed_type", null, "LaVie's base and interpolation UNets have no class embedding"],
  ["num_class_embeds", null, "LaVie's base and interpolation UNets have no class embedding"],
  ["resnet_time_scale_shift", "default", "the time embedding is added, not used as scale/shift"],
  ["use_relative_position", false, "LaVie's published UNets are built without it"],
  ["downsample_padding", 1, "the official Downsample3D supports padding 1 only"],
  ["mid_block_scale_factor", 1, "SD's mid block does not rescale"],
  ["freq_shift", 0, "SD's timestep embedding"],
  ["flip_sin_to_cos", true, "SD's timestep embedding ([cos | sin])"],
];

/** Read by the official constructor without effect on the float32 network. */
const IGNORED = new Set([
  "_class_name",
  "_diffusers_version",
  "_name_or_path",
  "sample_size",
  // Only casts attention logits to float32 under float16; our graphs compute in float32 throughout.
  "upcast_attention",
]);

const KNOWN = new Set([
  ...IGNORED,
  ...FIXED.map(([f]) => f),
  "in_channels",
  "out_channels",
  "block_out_channels",
  "down_block_types",
  "up_block_types",
  "mid_block_type",
  "layers_per_block",
  "attention_head_dim",
  "cross_attention_dim",
  "norm_num_groups",
  "norm_eps",
  "only_cross_attention",
  "use_first_frame",
]);

/** Parses a diffusers UNet config (SD1.4's, or with LaVie's overrides) for the base or interpolation UNet. */
export function parseUNetConfig(json: JsonObject, file: string, kind: UNetImportKind): UNetConfig {
  for (const key of Object.keys(json)) {
    if (!KNOWN.has(key))
      throw configError(
        file,
        key,
        `is not a field of LaVie's ${kind === "base_unet" ? "base" : "interpolation"} UNet config ` +
          "(diffusers 0.16 UNet2DConditionModel fields + use_first_frame)",
      );
  }
  const cls = json._class_name;
  if (cls !== undefined && !CLASS_NAMES.includes(cls as string))
    throw configError(
      file,
      "_class_name",
      `must be one of ${CLASS_NAMES.join(", ")}, got ${JSON.stringify(cls)}`,
    );
  for (const [field, value, why] of FIXED) {
    const v = json[field];
    if (v !== undefined && v !== value)
      throw configError(file, field, `must be ${JSON.stringify(value)} (${why}), got ${JSON.stringify(v)}`);
  }
  const upcast = json.upcast_attention;
  if (upcast !== undefined && typeof upcast !== "boolean")
    throw configError(file, "upcast_attention", `must be a boolean, got ${JSON.stringify(upcast)}`);

  const inChannels = inChannelsOf(json, file, kind);
  fixedInt(json, file, "out_channels", 4, "the UNet predicts 4-channel latent noise");
  const blockChannels = positiveInts(json, file, "block_out_channels", [320, 640, 1280, 1280]);
  const levels = blockChannels.length;
  const attention = blockTypes(json, file, "down_block_types", DOWN_TYPES, levels, [true, true, true, false]);
  const up = blockTypes(json, file, "up_block_types", UP_TYPES, levels, [false, true, true, true]);
  if (up.some((a, i) => a !== attention[levels - 1 - i]))
    throw configError(
      file,
      "up_block_types",
      "must mirror down_block_types (a CrossAttnUpBlock for every CrossAttnDownBlock, in reverse order)",
    );
  const mid = json.mid_block_type ?? MID_TYPES[0];
  if (!MID_TYPES.includes(mid as string))
    throw configError(
      file,
      "mid_block_type",
      `must be one of ${MID_TYPES.join(", ")}, got ${JSON.stringify(mid)}`,
    );
  onlyCrossAttention(json, file, levels);
  useFirstFrame(json, file, kind);

  const heads = headCounts(json, file, levels);
  const groups = positiveInt(json, file, "norm_num_groups", 32);
  const temporal: TemporalAttentionConfig = kind === "base_unet" ? BASE_TEMPORAL : INTERP_TEMPORAL;
  blockChannels.forEach((w, l) => {
    if (w % groups !== 0)
      throw configError(
        file,
        "block_out_channels",
        `width ${w} is not divisible by norm_num_groups ${groups}`,
      );
    // Heads shape the transformers: those of the cross-attention levels and of the mid block (last level).
    if (!attention[l] && l !== levels - 1) return;
    const h = heads[l]!;
    if (w % h !== 0)
      throw configError(file, "attention_head_dim", `level ${l}: width ${w} is not divisible by ${h} heads`);
    if (w / h < temporal.ropeDim)
      throw configError(
        file,
        "attention_head_dim",
        `level ${l}: ${h} heads on width ${w} are ${w / h} wide; the base UNet's rotary embedding rotates ` +
          `${temporal.ropeDim} channels per head, so heads must be at least that wide`,
      );
  });
  return {
    inChannels,
    outChannels: 4,
    blockChannels,
    attention,
    layersPerBlock: positiveInt(json, file, "layers_per_block", 2),
    heads,
    crossAttentionDim: positiveInt(json, file, "cross_attention_dim", 1280),
    groups,
    timeEmbedDim: 4 * blockChannels[0]!,
    sparseCausal: kind === "interp_unet",
    temporal,
    normEps: positiveNumber(json, file, "norm_eps", 1e-5),
  };
}

/** SD's file says 4; LaVie's interpolation code overrides it with 8 (copy_no_mask). */
function inChannelsOf(json: JsonObject, file: string, kind: UNetImportKind): number {
  const want = IN_CHANNELS[kind];
  const v = json.in_channels ?? 4;
  if (v === want || (kind === "interp_unet" && v === 4)) return want;
  throw configError(
    file,
    "in_channels",
    kind === "interp_unet"
      ? `must be 8 (LaVie's interpolation input: noisy + conditioning latent) or SD's 4, got ${JSON.stringify(v)}`
      : `must be 4 (the base UNet's latent), got ${JSON.stringify(v)}`,
  );
}

/** Per level: does the block have transformers? */
function blockTypes(
  json: JsonObject,
  file: string,
  field: string,
  table: Readonly<Record<string, boolean>>,
  levels: number,
  def: readonly boolean[],
): boolean[] {
  const v = json[field];
  if (v === undefined) {
    if (def.length !== levels)
      throw configError(file, field, `is required when block_out_channels has ${levels} entries (not 4)`);
    return [...def];
  }
  const allowed = Object.keys(table).join(", ");
  if (!Array.isArray(v) || v.length !== levels)
    throw configError(file, field, `must list ${levels} block types (one per block_out_channels entry)`);
  return v.map((t, i) => {
    const a = typeof t === "string" ? table[t] : undefined;
    if (a === undefined)
      throw configError(file, `${field}[${i}]`, `must be one of ${allowed}, got ${JSON.stringify(t)}`);
    return a;
  });
}

/** attention_head_dim (diffusers 0.16's name for the number of heads): one count for every level, or one per level. */
function headCounts(json: JsonObject, file: string, levels: number): number[] {
  const v = json.attention_head_dim ?? 8;
  const list = Array.isArray(v) ? v : Array.from({ length: levels }, () => v);
  if (list.length !== levels)
    throw configError(
      file,
      "attention_head_dim",
      `must have one entry per level (${levels}), got ${list.length}`,
    );
  if (list.some((h) => typeof h !== "number" || !Number.isInteger(h) || h < 1))
    throw configError(
      file,
      "attention_head_dim",
      `must be a positive integer (heads) or a list of them, got ${JSON.stringify(v)}`,
    );
  return list as number[];
}

function onlyCrossAttention(json: JsonObject, file: string, levels: number): void {
  const v = json.only_cross_attention;
  if (v === undefined || v === false) return;
  if (Array.isArray(v) && v.length === levels && v.every((x) => x === false)) return;
  throw configError(
    file,
    "only_cross_attention",
    `must be false (LaVie's spatial attention attends to the frame itself), got ${JSON.stringify(v)}`,
  );
}

/** use_first_frame: LaVie sets it false for the base UNet and true for interpolation (sparse-causal attn1). */
function useFirstFrame(json: JsonObject, file: string, kind: UNetImportKind): void {
  const v = json.use_first_frame;
  if (v === undefined) return;
  const want = kind === "interp_unet";
  if (v !== want)
    throw configError(
      file,
      "use_first_frame",
      `must be ${want} for the ${kind === "base_unet" ? "base" : "interpolation"} UNet, got ${JSON.stringify(v)}`,
    );
}
