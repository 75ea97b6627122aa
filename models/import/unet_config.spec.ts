import assert from "node:assert/strict";
import { test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { getPreset } from "../presets.ts";
import type { JsonObject } from "./json_fields.ts";
import { parseUNetConfig, type UNetImportKind } from "./unet_config.ts";

const FILE = "stable-diffusion-v1-4/unet/config.json";

/** Stable Diffusion 1.4's unet/config.json, the file LaVie's base and interpolation UNets are built from. */
const SD14: JsonObject = {
  _class_name: "UNet2DConditionModel",
  _diffusers_version: "0.2.2",
  act_fn: "silu",
  attention_head_dim: 8,
  block_out_channels: [320, 640, 1280, 1280],
  center_input_sample: false,
  cross_attention_dim: 768,
  down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  downsample_padding: 1,
  flip_sin_to_cos: true,
  freq_shift: 0,
  in_channels: 4,
  layers_per_block: 2,
  mid_block_scale_factor: 1,
  norm_eps: 1e-5,
  norm_num_groups: 32,
  out_channels: 4,
  sample_size: 64,
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
};

/** The same after LaVie's overrides (from_pretrained_2d), as a saved config of the official model holds it. */
function lavieConfig(kind: UNetImportKind): JsonObject {
  return {
    ...SD14,
    _class_name: "UNet3DConditionModel",
    in_channels: kind === "interp_unet" ? 8 : 4,
    down_block_types: ["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"],
    up_block_types: ["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"],
    mid_block_type: "UNetMidBlock3DCrossAttn",
    use_first_frame: kind === "interp_unet",
    only_cross_attention: false,
    use_linear_projection: false,
    upcast_attention: false,
    use_relative_position: false,
    class_embed_type: null,
    num_class_embeds: null,
    resnet_time_scale_shift: "default",
    dual_cross_attention: false,
  };
}

test("SD1.4's config and LaVie's overridden config both give the published base and interpolation UNets", () => {
  const lavie = getPreset("lavie");
  assert.deepEqual(parseUNetConfig(SD14, FILE, "base_unet"), lavie.baseUnet);
  assert.deepEqual(parseUNetConfig(SD14, FILE, "interp_unet"), lavie.interpUnet);
  assert.deepEqual(parseUNetConfig(lavieConfig("base_unet"), FILE, "base_unet"), lavie.baseUnet);
  assert.deepEqual(parseUNetConfig(lavieConfig("interp_unet"), FILE, "interp_unet"), lavie.interpUnet);
});

test("per-level head counts, the mid block taking the last level's; missing fields take diffusers' defaults", () => {
  const cfg = parseUNetConfig(
    {
      block_out_channels: [32, 64],
      down_block_types: ["CrossAttnDownBlock3D", "DownBlock3D"],
      up_block_types: ["UpBlock3D", "CrossAttnUpBlock3D"],
      attention_head_dim: [1, 2],
      layers_per_block: 1,
      norm_num_groups: 8,
      cross_attention_dim: 16,
      norm_eps: 1e-6,
    },
    FILE,
    "base_unet",
  );
  assert.deepEqual(cfg.heads, [1, 2]);
  assert.deepEqual(cfg.attention, [true, false]);
  assert.equal(cfg.timeEmbedDim, 128);
  assert.equal(cfg.normEps, 1e-6);
  const defaults = parseUNetConfig({}, FILE, "interp_unet");
  assert.deepEqual(defaults.blockChannels, [320, 640, 1280, 1280]);
  assert.equal(defaults.crossAttentionDim, 1280); // diffusers 0.16's default (SD1.4's file says 768)
});

test("unsupported or unknown values are refused with the file, the field and what is allowed", () => {
  const cases: [JsonObject, UNetImportKind, string, RegExp][] = [
    [{ ...SD14, addition_embed_type: null }, "base_unet", "addition_embed_type", /not a field/],
    [{ ...SD14, use_linear_projection: true }, "base_unet", "use_linear_projection", /must be false/],
    [{ ...SD14, use_relative_position: true }, "interp_unet", "use_relative_position", /must be false/],
    [{ ...SD14, num_class_embeds: 1000 }, "base_unet", "num_class_embeds", /must be null/],
    [{ ...SD14, flip_sin_to_cos: false }, "base_unet", "flip_sin_to_cos", /must be true/],
    [{ ...SD14, in_channels: 9 }, "interp_unet", "in_channels", /must be 8/],
    [{ ...SD14, in_channels: 8 }, "base_unet", "in_channels", /must be 4/],
    [{ ...SD14, out_channels: 8 }, "base_unet", "out_channels", /must be 4/],
    [{ ...SD14, use_first_frame: true }, "base_unet", "use_first_frame", /must be false/],
    [{ ...SD14, use_first_frame: false }, "interp_unet", "use_first_frame", /must be true/],
    [
      { ...SD14, down_block_types: ["CrossAttnDownBlock2D", "X", "A", "B"] },
      "base_unet",
      "down_block_types[1]",
      /one of/,
    ],
    [
      { ...SD14, up_block_types: ["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"] },
      "base_unet",
      "up_block_types",
      /mirror/,
    ],
    [{ ...SD14, block_out_channels: [320, 640] }, "base_unet", "down_block_types", /2 block types/],
    [{ ...SD14, attention_head_dim: [8, 8] }, "base_unet", "attention_head_dim", /one entry per level/],
    [{ ...SD14, attention_head_dim: 16 }, "base_unet", "attention_head_dim", /at least that wide/],
    [{ ...SD14, norm_num_groups: 48 }, "base_unet", "block_out_channels", /norm_num_groups/],
    [
      { ...SD14, only_cross_attention: [true, false, false, false] },
      "base_unet",
      "only_cross_attention",
      /must be false/,
    ],
    [{ ...SD14, mid_block_type: "UNetMidBlock2DSimpleCrossAttn" }, "base_unet", "mid_block_type", /one of/],
    [{ ...SD14, _class_name: "UNet3DVSRModel" }, "base_unet", "_class_name", /one of/],
  ];
  for (const [json, kind, field, msg] of cases) {
    assert.throws(
      () => parseUNetConfig(json, FILE, kind),
      (e: unknown) =>
        e instanceof LavieError &&
        e.code === "invalid_argument" &&
        e.field === field &&
        e.message.startsWith(FILE) &&
        msg.test(e.message),
      `${field} (${kind})`,
    );
  }
  // Heads narrower than the rotary embedding's 32 dims are fine without it (interpolation).
  assert.deepEqual(
    parseUNetConfig({ ...SD14, attention_head_dim: 16 }, FILE, "interp_unet").heads,
    [16, 16, 16, 16],
  );
});
