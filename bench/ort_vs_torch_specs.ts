/**
 * What bench/ort_vs_torch.ts gives both sides: the inputs of each network (the shapes the cascade runs at a
 * preset's default sizes, deterministic values, as bench/networks.ts uses), and the PyTorch worker's spec:
 * the preset's config in the Python library's own format (CLIPTextConfig fields, AutoencoderKL arguments, a
 * diffusers-style UNet config.json, the official VSR unet_3d_config.json fields), i.e. the inverse of the
 * importers models/import/{text,vae,unet,vsr}_config.ts, plus the VSR UNet's two non-official constants.
 */
import type { WritableTensor } from "../models/checkpoint/index.ts";
import type { TextEncoderConfig, UNetConfig, VaeConfig, VsrUNetConfig } from "../models/configs.ts";
import { type NetworkId, networkConfig } from "../models/networks.ts";
import { BASE_TEMPORAL, INTERP_TEMPORAL, type Preset } from "../models/presets.ts";

export type Feed = { name: string; dtype: "float32" | "int64"; shape: number[] };

/** The cascade's shapes at the preset's default sizes, as bench/networks.ts runs them. */
export function feedsFor(p: Preset, id: NetworkId): Feed[] {
  const { frames: F, height: H, width: W } = p.base;
  const [h, w] = [H / 8, W / 8];
  const f32 = (name: string, shape: number[]): Feed => ({ name, dtype: "float32", shape });
  const i64 = (name: string, shape: number[]): Feed => ({ name, dtype: "int64", shape });
  const unet = (c: number, f: number, hh: number, ww: number, d: number): Feed[] => [
    f32("sample", [2, c, f, hh, ww]),
    i64("timestep", [2]),
    f32("encoder_hidden_states", [2, 77, d]),
  ];
  switch (id) {
    case "clip_text":
    case "vsr_text":
      return [i64("input_ids", [2, 77])];
    case "base_unet":
      return unet(p.baseUnet.inChannels, F, h, w, p.baseUnet.crossAttentionDim);
    case "interp_unet":
      return unet(p.interpUnet.inChannels, (F - 1) * 4 + 1, h, w, p.interpUnet.crossAttentionDim);
    case "vsr_unet":
      return [...unet(p.vsrUnet.inChannels, 8, H, W, p.vsrUnet.crossAttentionDim), i64("class_labels", [2])];
    case "sd_vae_decoder":
      return [f32("latent_sample", [4, 4, h, w])];
    case "sd_vae_encoder":
      return [f32("sample", [4, 3, H, W])];
    case "x4_vae_decoder":
      return [f32("latent_sample", [1, 4, H, W])];
  }
}

/** bench/networks.ts's values: N(0,1) floats (Box-Muller on a mulberry32 stream), ids i*7 mod 400, t 500, label 50. */
export function makeInputs(feeds: Feed[]): Map<string, WritableTensor> {
  let s = 0x9e3779b9;
  const uniform = (): number => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Map<string, WritableTensor>();
  for (const f of feeds) {
    const n = f.shape.reduce((a, b) => a * b, 1);
    if (f.dtype === "float32") {
      const d = new Float32Array(n);
      for (let i = 0; i < n; i++)
        d[i] = Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
      out.set(f.name, { dtype: "F32", shape: f.shape, data: d });
    } else {
      const v =
        f.name === "input_ids" ? (i: number) => (i * 7) % 400 : f.name === "timestep" ? () => 500 : () => 50;
      out.set(f.name, {
        dtype: "I64",
        shape: f.shape,
        data: BigInt64Array.from({ length: n }, (_, i) => BigInt(v(i))),
      });
    }
  }
  return out;
}

const downType = (cross: boolean): string => (cross ? "CrossAttnDownBlock3D" : "DownBlock3D");
const upType = (cross: boolean): string => (cross ? "CrossAttnUpBlock3D" : "UpBlock3D");
export const sameJson = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** The Python side's spec (kind, config in the library's own format, extra constructor options). */
export function pythonSpec(id: NetworkId, preset: Preset): { kind: string; config: object; extra?: object } {
  const cfg = networkConfig(preset, id);
  switch (id) {
    case "clip_text":
    case "vsr_text": {
      const c = cfg as TextEncoderConfig;
      const config = {
        vocab_size: c.vocabSize,
        max_position_embeddings: c.positions,
        hidden_size: c.width,
        num_hidden_layers: c.layers,
        num_attention_heads: c.heads,
        intermediate_size: c.mlp,
        hidden_act: c.activation,
        layer_norm_eps: c.layerNormEps,
      };
      return { kind: "text", config };
    }
    case "base_unet":
    case "interp_unet": {
      const c = cfg as UNetConfig;
      // What the Python UNet (like the official one) fixes per network rather than reading from the config.
      const fixed = id === "base_unet" ? { s: false, t: BASE_TEMPORAL } : { s: true, t: INTERP_TEMPORAL };
      if (
        c.sparseCausal !== fixed.s ||
        !sameJson(c.temporal, fixed.t) ||
        c.timeEmbedDim !== 4 * c.blockChannels[0]!
      )
        throw new Error(
          `${preset.name}/${id}: sparseCausal, temporal or timeEmbedDim differ from LaVie's ${id}`,
        );
      const config = {
        in_channels: c.inChannels,
        out_channels: c.outChannels,
        block_out_channels: c.blockChannels,
        down_block_types: c.attention.map(downType),
        up_block_types: [...c.attention].reverse().map(upType),
        layers_per_block: c.layersPerBlock,
        attention_head_dim: c.heads,
        cross_attention_dim: c.crossAttentionDim,
        norm_num_groups: c.groups,
        norm_eps: c.normEps ?? 1e-5,
      };
      return { kind: "unet", config };
    }
    case "vsr_unet": {
      const c = cfg as VsrUNetConfig;
      const idx = (flags: boolean[]): number[] => flags.flatMap((f, i) => (f ? [i] : []));
      const config = {
        in_channels: c.inChannels,
        out_channels: c.outChannels,
        block_out_channels: c.blockChannels,
        down_block_types: c.attention.map(downType),
        up_block_types: [...c.attention].reverse().map(upType),
        only_cross_attention: c.onlyCrossAttention,
        attention_head_dim: c.heads,
        layers_per_block: c.layersPerBlock,
        mid_block_scale_factor: c.midBlockScaleFactor,
        norm_num_groups: c.groups,
        norm_eps: c.normEps,
        cross_attention_dim: c.crossAttentionDim,
        num_class_embeds: c.classEmbeddings > 0 ? c.classEmbeddings : null,
        max_noise_level: c.maxNoiseLevel,
        flip_sin_to_cos: c.flipSinToCos,
        freq_shift: c.freqShift,
        center_input_sample: c.centerInputSample,
        down_temporal_idx: idx(c.downTemporal),
        mid_temporal: c.midTemporal,
        up_temporal_idx: idx(c.upTemporal),
      };
      return {
        kind: "vsr_unet",
        config,
        extra: { rotary_dim: c.ropeDim, temporal_groups: c.temporalGroups },
      };
    }
    case "sd_vae_decoder":
    case "sd_vae_encoder":
    case "x4_vae_decoder": {
      const c = cfg as VaeConfig;
      const n = c.blockChannels.length;
      const config = {
        in_channels: 3,
        out_channels: 3,
        down_block_types: Array(n).fill("DownEncoderBlock2D"),
        up_block_types: Array(n).fill("UpDecoderBlock2D"),
        block_out_channels: c.blockChannels,
        layers_per_block: c.layersPerBlock,
        act_fn: "silu",
        latent_channels: c.latentChannels,
        norm_num_groups: c.groups,
        scaling_factor: c.scalingFactor,
      };
      return { kind: id === "sd_vae_encoder" ? "vae_encoder" : "vae_decoder", config };
    }
  }
}
