import assert from "node:assert/strict";
import { test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { getPreset } from "../presets.ts";
import { parseVaeConfig, type VaeKind, vaeIgnore, vaeKeyRename } from "./vae_config.ts";

/** The fields of stable-diffusion-v1-4/vae/config.json (no norm_num_groups, no scaling_factor: defaults). */
const SD14_VAE = {
  _class_name: "AutoencoderKL",
  _diffusers_version: "0.2.2",
  act_fn: "silu",
  block_out_channels: [128, 256, 512, 512],
  down_block_types: Array(4).fill("DownEncoderBlock2D"),
  in_channels: 3,
  latent_channels: 4,
  layers_per_block: 2,
  out_channels: 3,
  sample_size: 512,
  up_block_types: Array(4).fill("UpDecoderBlock2D"),
};

/** LaVie's vsr/configs/vae_config.json (the x4 upscaler's VAE config plus scaling_factor 0.08333). */
const X4_VAE = {
  _class_name: "AutoencoderKL",
  _diffusers_version: "0.9.0.dev0",
  _name_or_path: "hf-models/stable-diffusion-x4-upscaler/vae",
  act_fn: "silu",
  block_out_channels: [128, 256, 512],
  down_block_types: Array(3).fill("DownEncoderBlock2D"),
  in_channels: 3,
  latent_channels: 4,
  layers_per_block: 2,
  norm_num_groups: 32,
  out_channels: 3,
  sample_size: 256,
  up_block_types: Array(3).fill("UpDecoderBlock2D"),
  scaling_factor: 0.08333,
};

const FILE = "vae/config.json";

function rejects(json: Record<string, unknown>, kind: VaeKind, field: string, pattern: RegExp): void {
  assert.throws(
    () => parseVaeConfig(json, FILE, kind),
    (e: unknown) =>
      e instanceof LavieError &&
      e.code === "invalid_argument" &&
      e.field === field &&
      e.message.startsWith(`${FILE}: "${field}"`) &&
      pattern.test(e.message),
    `${field}: expected ${pattern}`,
  );
}

test("the published SD 1.4 and x4-upscaler VAE configs give the lavie preset's VAEs", () => {
  const lavie = getPreset("lavie");
  assert.deepEqual(parseVaeConfig(SD14_VAE, FILE, "vae_decoder"), lavie.sdVae);
  assert.deepEqual(parseVaeConfig(SD14_VAE, FILE, "vae_encoder"), lavie.sdVae);
  assert.deepEqual(
    parseVaeConfig({ ...SD14_VAE, scaling_factor: 0.18215 }, FILE, "vae_decoder"),
    lavie.sdVae,
  );
  assert.deepEqual(parseVaeConfig(X4_VAE, FILE, "x4_vae_decoder"), lavie.x4Vae);
  // The upscale pipeline sets 0.08333 when the config has none.
  const { scaling_factor: _, ...noScale } = X4_VAE;
  assert.equal(parseVaeConfig(noScale, FILE, "x4_vae_decoder").scalingFactor, 0.08333);
});

test("VAE configs the graphs cannot compute are refused, naming the file, the field and what is allowed", () => {
  rejects(X4_VAE, "vae_decoder", "block_out_channels", /4 entries for vae_decoder \(x8 scaling\), got 3/);
  rejects(SD14_VAE, "x4_vae_decoder", "block_out_channels", /3 entries for x4_vae_decoder \(x4 scaling\)/);
  rejects({ ...SD14_VAE, scaling_factor: 0.13025 }, "vae_decoder", "scaling_factor", /must be 0\.18215/);
  rejects({ ...SD14_VAE, latent_channels: 16 }, "vae_encoder", "latent_channels", /must be 4/);
  rejects({ ...SD14_VAE, in_channels: 4 }, "vae_encoder", "in_channels", /must be 3/);
  rejects({ ...SD14_VAE, act_fn: "gelu" }, "vae_decoder", "act_fn", /one of "silu"/);
  rejects({ ...SD14_VAE, _class_name: "VQModel" }, "vae_decoder", "_class_name", /"AutoencoderKL"/);
  rejects({ ...SD14_VAE, norm_num_groups: 24 }, "vae_decoder", "norm_num_groups", /must divide/);
  rejects({ ...SD14_VAE, layers_per_block: 0 }, "vae_decoder", "layers_per_block", /positive integer/);
  rejects({ ...SD14_VAE, use_quant_conv: false }, "vae_encoder", "use_quant_conv", /true or absent/);
  rejects({ ...SD14_VAE, mid_block_add_attention: false }, "vae_decoder", "mid_block_add_attention", /true/);
  rejects({ ...SD14_VAE, shift_factor: 0.1159 }, "vae_decoder", "shift_factor", /null or absent/);
  const attnDown = ["AttnDownEncoderBlock2D", ...Array(3).fill("DownEncoderBlock2D")];
  rejects(
    { ...SD14_VAE, down_block_types: attnDown },
    "vae_encoder",
    "down_block_types",
    /"DownEncoderBlock2D"/,
  );
  const threeUp = Array(3).fill("UpDecoderBlock2D");
  rejects({ ...SD14_VAE, up_block_types: threeUp }, "vae_decoder", "up_block_types", /4 entries/);
});

test("later diffusers' mid-block attention keys map to the 0.16 keys; other keys are unchanged", () => {
  const p = "decoder.mid_block.attentions.0";
  assert.equal(vaeKeyRename(`${p}.to_q.weight`), `${p}.query.weight`);
  assert.equal(vaeKeyRename(`${p}.to_k.bias`), `${p}.key.bias`);
  assert.equal(
    vaeKeyRename("encoder.mid_block.attentions.0.to_v.weight"),
    "encoder.mid_block.attentions.0.value.weight",
  );
  assert.equal(vaeKeyRename(`${p}.to_out.0.bias`), `${p}.proj_attn.bias`);
  for (const same of [
    `${p}.group_norm.weight`,
    `${p}.query.weight`,
    "decoder.up_blocks.0.resnets.0.conv1.weight",
  ])
    assert.equal(vaeKeyRename(same), same);
});

test("each VAE graph ignores the other half of the autoencoder file", () => {
  const hit = (kind: VaeKind, key: string) => vaeIgnore(kind).some((r) => r.test(key));
  assert.ok(hit("vae_decoder", "encoder.conv_in.weight") && hit("vae_decoder", "quant_conv.bias"));
  assert.ok(!hit("vae_decoder", "decoder.conv_in.weight") && !hit("vae_decoder", "post_quant_conv.bias"));
  assert.ok(hit("x4_vae_decoder", "encoder.mid_block.attentions.0.query.weight"));
  assert.ok(hit("vae_encoder", "decoder.conv_in.weight") && hit("vae_encoder", "post_quant_conv.weight"));
  assert.ok(!hit("vae_encoder", "encoder.conv_in.weight") && !hit("vae_encoder", "quant_conv.weight"));
});
