/**
 * LaVie's VSR UNet configuration file (vsr/configs/unet_3d_config.json, read by UNet3DVSRModel.from_config)
 * mapped onto our VsrUNetConfig.
 *
 *   const cfg = parseVsrUNetConfig(await readConfigJson(path), path);
 *   const g = buildVsrUNet(cfg, { seed: 0, weights: src });
 *
 * A missing field takes the constructor's default. Options that change the network are accepted only
 * at the values the official inference uses (anything else is refused, naming the field and what is
 * allowed); options without effect on inference are checked for type and otherwise ignored:
 *   - video_condition: vsr/sample.py sets it to false before building, whatever the file says;
 *   - temporal_module_config: with attention_block_types ["", ""] (the only supported value) the temporal
 *     modules have no attention, so cross_frame_attention_mode, temporal_shift_*, use_deformable_conv,
 *     use_dcn_warpping, attention_dim_div, num_attention_layers... create no parameter and change nothing;
 *   - upcast_attention (float32 already), sample_size, freeze_pretrained_2d_upsampler (training only).
 * Constants of the official code that the file cannot change: rotary dims 32, GroupNorm(32) in the
 * frame-axis resnets, so widths must be multiples of 32 and heads at least 32 channels wide.
 */
import type { VsrUNetConfig } from "../configs.ts";
import {
  asObject,
  configError,
  type JsonObject,
  positiveInt,
  positiveInts,
  positiveNumber,
} from "./json_fields.ts";

/** Constants of the official code (RotaryEmbedding(32), ResnetBlock3DCNN's default groups = 32). */
export const OFFICIAL_ROPE_DIM = 32;
export const OFFICIAL_TEMPORAL_GROUPS = 32;

const DOWN_TYPES = ["DownBlock3D", "CrossAttnDownBlock3D"] as const;
const UP_TYPES = ["UpBlock3D", "CrossAttnUpBlock3D"] as const;

/** Fields that must hold one value (or be absent): [field, value, why]. */
const FIXED: readonly [string, unknown, string][] = [
  ["mid_block_type", "UNetMidBlock3DCrossAttn", "the only mid block"],
  ["downsample_padding", 1, "the official Downsample3D supports only padding 1"],
  ["dual_cross_attention", false, "the official blocks raise NotImplementedError otherwise"],
  ["use_linear_projection", true, "the published UNet projects with Linear layers"],
  ["class_embed_type", null, "the noise level selects a row of class_embedding"],
  ["resnet_time_scale_shift", "default", "the time embedding is added, not a scale/shift"],
  ["use_first_frame", false, "the VSR UNet's attn1 is plain attention"],
  ["use_relative_position", false, "the official CrossAttention breaks otherwise"],
  ["out_channels", 4, "the vsr_unet contract returns 4 channels"],
];

/** Fields checked for type only: no effect on the network at inference. */
const IGNORED_BOOL = ["upcast_attention", "freeze_pretrained_2d_upsampler", "video_condition"];
const IGNORED_ANY = ["_diffusers_version", "_name_or_path", "sample_size"];

const KNOWN = new Set([
  ...FIXED.map((f) => f[0]),
  ...IGNORED_BOOL,
  ...IGNORED_ANY,
  "_class_name",
  "in_channels",
  "center_input_sample",
  "max_noise_level",
  "flip_sin_to_cos",
  "freq_shift",
  "attention_head_dim",
  "block_out_channels",
  "down_block_types",
  "up_block_types",
  "only_cross_attention",
  "layers_per_block",
  "mid_block_scale_factor",
  "act_fn",
  "norm_num_groups",
  "norm_eps",
  "cross_attention_dim",
  "num_class_embeds",
  "down_temporal_idx",
  "mid_temporal",
  "up_temporal_idx",
  "temporal_module_config",
]);

/** TemporalModule3D's keyword options (in/out/temb channels and video_condition come from the UNet). */
const TEMPORAL_KEYS = new Set([
  "num_attention_layers",
  "num_attention_head",
  "attention_head_dim",
  "cross_attention_dim",
  "dropout",
  "attention_bias",
  "activation_fn",
  "only_cross_attention",
  "upcast_attention",
  "norm_num_groups",
  "use_linear_projection",
  "use_scale_shift",
  "attention_block_types",
  "cross_frame_attention_mode",
  "temporal_shift_fold_div",
  "temporal_shift_direction",
  "use_dcn_warpping",
  "use_deformable_conv",
  "attention_dim_div",
]);

function bool(o: JsonObject, file: string, field: string, def: boolean): boolean {
  const v = o[field] ?? def;
  if (typeof v !== "boolean")
    throw configError(file, field, `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

/** A value or a list with one entry per level (diffusers broadcasts a single value). */
function perLevel<T>(
  o: JsonObject,
  file: string,
  field: string,
  def: T | T[],
  n: number,
  ok: (v: unknown) => v is T,
  what: string,
): T[] {
  const v = o[field] ?? def;
  const list = Array.isArray(v) ? v : Array.from({ length: n }, () => v);
  if (list.length !== n || !list.every(ok))
    throw configError(
      file,
      field,
      `must be ${what} or a list of ${n} of them (one per level), got ${JSON.stringify(v)}`,
    );
  return list as T[];
}

/** A *_temporal_idx list as a flag per level (indices outside 0..n-1 match no level, as officially). */
function levelFlags(o: JsonObject, file: string, field: string, def: number[], n: number): boolean[] {
  const v = o[field] ?? def;
  if (!Array.isArray(v) || v.some((i) => !Number.isInteger(i)))
    throw configError(file, field, `must be a list of level indices, got ${JSON.stringify(v)}`);
  return Array.from({ length: n }, (_, l) => v.includes(l));
}

/** Block types (an optional "UNetRes" prefix is dropped, as diffusers does) as attention flags. */
function blockTypes(
  o: JsonObject,
  file: string,
  field: string,
  def: readonly string[],
  allowed: readonly [string, string],
): boolean[] {
  const v = o[field] ?? def;
  const names = Array.isArray(v)
    ? v.map((t) => (typeof t === "string" && t.startsWith("UNetRes") ? t.slice(7) : t))
    : null;
  if (!names || names.some((t) => !allowed.includes(t as string)))
    throw configError(
      file,
      field,
      `must be a list of "${allowed[0]}" / "${allowed[1]}", got ${JSON.stringify(v)}`,
    );
  return names.map((t) => t === allowed[1]);
}

function checkTemporalConfig(v: unknown, file: string): void {
  const field = "temporal_module_config";
  const tm = asObject(v, file, field);
  for (const k of Object.keys(tm))
    if (!TEMPORAL_KEYS.has(k))
      throw configError(file, `${field}.${k}`, "is not an option of TemporalModule3D");
  const types = tm.attention_block_types;
  if (!Array.isArray(types) || types.length !== 2 || types.some((t) => t !== ""))
    throw configError(
      file,
      `${field}.attention_block_types`,
      `must be ["", ""] (no attention in the temporal modules), got ${JSON.stringify(types)}`,
    );
  if ((tm.use_scale_shift ?? false) !== false)
    throw configError(
      file,
      `${field}.use_scale_shift`,
      `must be false (the modules add shift_conv's output), got ${JSON.stringify(tm.use_scale_shift)}`,
    );
}

/** Parses the official unet_3d_config.json format; `file` names the file in errors. */
export function parseVsrUNetConfig(json: JsonObject, file: string): VsrUNetConfig {
  for (const k of Object.keys(json))
    if (!KNOWN.has(k)) throw configError(file, k, "is not an option of UNet3DVSRModel");
  if (json._class_name !== undefined && json._class_name !== "UNet3DVSRModel")
    throw configError(
      file,
      "_class_name",
      `must be "UNet3DVSRModel", got ${JSON.stringify(json._class_name)}`,
    );
  for (const [field, value, why] of FIXED) {
    const v = json[field];
    if (v !== undefined && v !== value)
      throw configError(file, field, `must be ${JSON.stringify(value)} (${why}), got ${JSON.stringify(v)}`);
  }
  for (const f of IGNORED_BOOL) if (json[f] !== undefined) bool(json, file, f, false);
  const act = json.act_fn ?? "silu";
  if (act !== "silu" && act !== "swish")
    throw configError(file, "act_fn", `must be "silu" or "swish" (both SiLU), got ${JSON.stringify(act)}`);

  const blockChannels = positiveInts(json, file, "block_out_channels", [256, 512, 512, 1024]);
  const n = blockChannels.length;
  const attention = blockTypes(
    json,
    file,
    "down_block_types",
    ["DownBlock3D", ...Array(3).fill("CrossAttnDownBlock3D")],
    DOWN_TYPES,
  );
  const up = blockTypes(
    json,
    file,
    "up_block_types",
    [...Array(3).fill("CrossAttnUpBlock3D"), "UpBlock3D"],
    UP_TYPES,
  );
  if (attention.length !== n)
    throw configError(file, "down_block_types", `must have one entry per block_out_channels entry (${n})`);
  if (up.length !== n || up.some((a, i) => a !== attention[n - 1 - i]))
    throw configError(
      file,
      "up_block_types",
      "must mirror down_block_types (CrossAttnUpBlock3D where the level has attention)",
    );
  const isInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;
  const isBool = (v: unknown): v is boolean => typeof v === "boolean";
  const heads = perLevel(json, file, "attention_head_dim", 8, n, isInt, "a positive integer (heads)");
  const onlyCrossAttention = perLevel(
    json,
    file,
    "only_cross_attention",
    [true, true, true, false],
    n,
    isBool,
    "true or false",
  );

  const groups = positiveInt(json, file, "norm_num_groups", 32);
  blockChannels.forEach((c, l) => {
    if (c % groups || c % OFFICIAL_TEMPORAL_GROUPS)
      throw configError(
        file,
        "block_out_channels",
        `${c} must be divisible by norm_num_groups ${groups} and by ${OFFICIAL_TEMPORAL_GROUPS} (the frame-axis resnets' GroupNorm)`,
      );
    const h = heads[l]!;
    const used = attention[l] || l === n - 1;
    if (used && (c % h || c / h < OFFICIAL_ROPE_DIM))
      throw configError(
        file,
        "attention_head_dim",
        `${h} heads on ${c} channels (level ${l}): heads must divide the width into heads of at least ${OFFICIAL_ROPE_DIM} channels (rotary embedding)`,
      );
  });
  if (blockChannels[0]! % 2)
    throw configError(
      file,
      "block_out_channels",
      `the first width ${blockChannels[0]} must be even (timestep embedding)`,
    );

  const downTemporal = levelFlags(json, file, "down_temporal_idx", [0, 1, 2], n);
  const upTemporal = levelFlags(json, file, "up_temporal_idx", [0, 1, 2], n);
  const midTemporal = bool(json, file, "mid_temporal", false);
  if (downTemporal.includes(true) || upTemporal.includes(true) || midTemporal)
    checkTemporalConfig(json.temporal_module_config, file);

  const classEmbeds = json.num_class_embeds === null ? 0 : positiveInt(json, file, "num_class_embeds", 1000);
  const maxNoise = json.max_noise_level ?? 350;
  if (!Number.isInteger(maxNoise) || (maxNoise as number) < 0)
    throw configError(
      file,
      "max_noise_level",
      `must be a non-negative integer, got ${JSON.stringify(maxNoise)}`,
    );
  const freqShift = json.freq_shift ?? 0;
  if (typeof freqShift !== "number" || !Number.isFinite(freqShift) || freqShift >= blockChannels[0]! / 2)
    throw configError(
      file,
      "freq_shift",
      `must be a number below ${blockChannels[0]! / 2}, got ${JSON.stringify(freqShift)}`,
    );

  return {
    inChannels: positiveInt(json, file, "in_channels", 7),
    outChannels: 4,
    blockChannels,
    attention,
    onlyCrossAttention,
    heads,
    layersPerBlock: positiveInt(json, file, "layers_per_block", 2),
    crossAttentionDim: positiveInt(json, file, "cross_attention_dim", 1024),
    groups,
    normEps: positiveNumber(json, file, "norm_eps", 1e-5),
    midBlockScaleFactor: positiveNumber(json, file, "mid_block_scale_factor", 1),
    classEmbeddings: classEmbeds,
    maxNoiseLevel: maxNoise as number,
    flipSinToCos: bool(json, file, "flip_sin_to_cos", true),
    freqShift,
    centerInputSample: bool(json, file, "center_input_sample", false),
    downTemporal,
    midTemporal,
    upTemporal,
    ropeDim: OFFICIAL_ROPE_DIM,
    temporalGroups: OFFICIAL_TEMPORAL_GROUPS,
  };
}
