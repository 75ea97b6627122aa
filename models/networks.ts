/**
 * The eight networks of the LaVie cascade as they appear in a model directory: their ids, kinds,
 * which preset config each uses, the contract parameters that config implies, and how the project
 * seeds each one. Pure data: the builders themselves are wired in build.ts.
 */
import type { TextEncoderConfig, UNetConfig, VaeConfig, VsrUNetConfig } from "./configs.ts";
import { contractFor, type NetworkContract, type NetworkKind } from "./contract.ts";
import { seedFromName } from "./onnx/init.ts";
import type { Preset } from "./presets.ts";

export type NetworkId =
  | "clip_text"
  | "base_unet"
  | "sd_vae_decoder"
  | "sd_vae_encoder"
  | "interp_unet"
  | "vsr_text"
  | "vsr_unet"
  | "x4_vae_decoder";

/** In build order (and manifest order). */
export const NETWORK_IDS: readonly NetworkId[] = [
  "clip_text",
  "base_unet",
  "sd_vae_decoder",
  "sd_vae_encoder",
  "interp_unet",
  "vsr_text",
  "vsr_unet",
  "x4_vae_decoder",
];

export type NetworkConfig = TextEncoderConfig | UNetConfig | VsrUNetConfig | VaeConfig;

export const NETWORK_KINDS: Readonly<Record<NetworkId, NetworkKind>> = {
  clip_text: "text_encoder",
  base_unet: "base_unet",
  sd_vae_decoder: "vae_decoder",
  sd_vae_encoder: "vae_encoder",
  interp_unet: "interp_unet",
  vsr_text: "text_encoder",
  vsr_unet: "vsr_unet",
  x4_vae_decoder: "x4_vae_decoder",
};

/** The preset config a network is built from. */
export function networkConfig(preset: Preset, id: NetworkId): NetworkConfig {
  switch (id) {
    case "clip_text":
      return preset.clipText;
    case "base_unet":
      return preset.baseUnet;
    case "sd_vae_decoder":
    case "sd_vae_encoder":
      return preset.sdVae;
    case "interp_unet":
      return preset.interpUnet;
    case "vsr_text":
      return preset.vsrText;
    case "vsr_unet":
      return preset.vsrUnet;
    case "x4_vae_decoder":
      return preset.x4Vae;
  }
}

/**
 * The contract of a network of `kind` with `config`: the text width D is the text encoder's width
 * or the UNet's cross-attention width; the UNet's sample channels come from its config.
 */
export function networkContract(kind: NetworkKind, config: NetworkConfig): NetworkContract {
  if (kind === "text_encoder") return contractFor(kind, { width: (config as TextEncoderConfig).width });
  if (kind === "base_unet" || kind === "interp_unet" || kind === "vsr_unet") {
    const c = config as UNetConfig | VsrUNetConfig;
    return contractFor(kind, { width: c.crossAttentionDim, inChannels: c.inChannels });
  }
  return contractFor(kind);
}

/**
 * Each network's weights are seeded by (directory seed, network id), so networks that share
 * parameter names (the two text encoders, the base and interpolation UNets) get independent weights.
 */
export function networkSeed(seed: number, id: NetworkId): number {
  return seedFromName(seed, `network:${id}`).next();
}
