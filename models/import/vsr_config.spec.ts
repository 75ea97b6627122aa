import assert from "node:assert/strict";
import { test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { getPreset } from "../presets.ts";
import type { JsonObject } from "./json_fields.ts";
import { PUBLISHED_VSR_UNET_CONFIG } from "./published.ts";
import { parseVsrUNetConfig } from "./vsr_config.ts";

const FILE = "unet_3d_config.json";

/** The values of LaVie's published VSR UNet configuration (vsr/configs/unet_3d_config.json). */
const PUBLISHED: JsonObject = PUBLISHED_VSR_UNET_CONFIG;

function refused(json: JsonObject, field: string, msg: RegExp): void {
  assert.throws(
    () => parseVsrUNetConfig(json, FILE),
    (e: unknown) =>
      e instanceof LavieError &&
      e.code === "invalid_argument" &&
      e.field === field &&
      e.message.startsWith(`${FILE}: "${field}"`) &&
      msg.test(e.message),
  );
}

test("the published configuration is the lavie preset's VSR UNet", () => {
  assert.deepEqual(parseVsrUNetConfig(PUBLISHED, FILE), getPreset("lavie").vsrUnet);
});

test("absent fields take UNet3DVSRModel's defaults; options without effect are accepted", () => {
  const cfg = parseVsrUNetConfig(
    {
      temporal_module_config: { attention_block_types: ["", ""] },
      video_condition: true,
      _diffusers_version: "0.16.0",
      _name_or_path: "somewhere/unet",
    },
    FILE,
  );
  assert.deepEqual(cfg.blockChannels, [256, 512, 512, 1024]);
  assert.deepEqual(cfg.heads, [8, 8, 8, 8]);
  assert.deepEqual(cfg.downTemporal, [true, true, true, false]);
  assert.deepEqual(cfg.upTemporal, [true, true, true, false]);
  assert.equal(cfg.midTemporal, false);
  assert.equal(cfg.maxNoiseLevel, 350);
  assert.equal(cfg.classEmbeddings, 1000);
  assert.equal(cfg.normEps, 1e-5);
  assert.deepEqual(cfg.onlyCrossAttention, [true, true, true, false]);
  // Temporal indices past the last level match nothing, as in the official constructor.
  const two = parseVsrUNetConfig(
    {
      ...PUBLISHED,
      block_out_channels: [32, 64],
      down_block_types: ["DownBlock3D", "CrossAttnDownBlock3D"],
      up_block_types: ["CrossAttnUpBlock3D", "UpBlock3D"],
      only_cross_attention: false,
      attention_head_dim: [1, 2],
      up_temporal_idx: [1, 2, 3],
      num_class_embeds: null,
    },
    FILE,
  );
  assert.deepEqual(two.upTemporal, [false, true]);
  assert.deepEqual(two.onlyCrossAttention, [false, false]);
  assert.equal(two.classEmbeddings, 0);
});

test("options that would change the network are refused, naming the file, the field and what is allowed", () => {
  refused({ ...PUBLISHED, use_linear_projection: false }, "use_linear_projection", /must be true/);
  refused({ ...PUBLISHED, resnet_time_scale_shift: "scale_shift" }, "resnet_time_scale_shift", /"default"/);
  refused({ ...PUBLISHED, _class_name: "UNet3DConditionModel" }, "_class_name", /"UNet3DVSRModel"/);
  refused({ ...PUBLISHED, unknown_option: 1 }, "unknown_option", /not an option of UNet3DVSRModel/);
  refused(
    { ...PUBLISHED, attention_head_dim: 32 },
    "attention_head_dim",
    /32 heads on 512 channels \(level 1\)/,
  );
  refused({ ...PUBLISHED, block_out_channels: [256, 512, 512, 1000] }, "block_out_channels", /divisible/);
  refused({ ...PUBLISHED, only_cross_attention: [true, false] }, "only_cross_attention", /list of 4/);
  refused(
    {
      ...PUBLISHED,
      up_block_types: ["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"],
    },
    "up_block_types",
    /mirror down_block_types/,
  );
  refused({ ...PUBLISHED, down_block_types: ["DownBlock2D"] }, "down_block_types", /"DownBlock3D"/);
  refused({ ...PUBLISHED, act_fn: "gelu" }, "act_fn", /"silu" or "swish"/);
  refused({ ...PUBLISHED, video_condition: "no" }, "video_condition", /true or false/);
  const { temporal_module_config: _, ...noTemporal } = PUBLISHED;
  refused(noTemporal, "temporal_module_config", /must be a JSON object/);
  const tm = PUBLISHED.temporal_module_config as JsonObject;
  refused(
    { ...PUBLISHED, temporal_module_config: { ...tm, attention_block_types: ["Temporal", ""] } },
    "temporal_module_config.attention_block_types",
    /must be \["", ""\]/,
  );
  refused(
    { ...PUBLISHED, temporal_module_config: { ...tm, use_scale_shift: true } },
    "temporal_module_config.use_scale_shift",
    /must be false/,
  );
  refused(
    { ...PUBLISHED, temporal_module_config: { ...tm, kernel: 3 } },
    "temporal_module_config.kernel",
    /not an option of TemporalModule3D/,
  );
});
