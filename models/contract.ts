/**
 * The I/O contract of every network: input/output names, dtypes and shapes (with symbolic axes).
 * Project-built models and real exported LaVie checkpoints both follow it; the model-directory
 * loader validates ONNX files against it before use. See models/MODELS.md.
 */

export type NetworkKind =
  | "text_encoder"
  | "base_unet"
  | "interp_unet"
  | "vsr_unet"
  | "vae_decoder"
  | "vae_encoder"
  | "x4_vae_decoder";

export interface TensorSpec {
  readonly name: string;
  readonly dtype: "float32" | "int64";
  /** Numbers are fixed sizes; strings are symbolic axes (B batch, F frames, N images, h/w latent, H/W pixels, D width). */
  readonly shape: readonly (number | string)[];
}

export interface NetworkContract {
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
}

/** Contract of one network kind; `width` is the text width (D) and `inChannels` the UNet's sample channels. */
export function contractFor(
  kind: NetworkKind,
  p: { width?: number; inChannels?: number } = {},
): NetworkContract {
  const D = p.width ?? 768;
  switch (kind) {
    case "text_encoder":
      return {
        inputs: [{ name: "input_ids", dtype: "int64", shape: ["B", 77] }],
        outputs: [{ name: "last_hidden_state", dtype: "float32", shape: ["B", 77, D] }],
      };
    case "base_unet":
    case "interp_unet":
    case "vsr_unet": {
      const c = p.inChannels ?? (kind === "base_unet" ? 4 : kind === "interp_unet" ? 8 : 7);
      const inputs: TensorSpec[] = [
        { name: "sample", dtype: "float32", shape: ["B", c, "F", "h", "w"] },
        { name: "timestep", dtype: "int64", shape: ["B"] },
        { name: "encoder_hidden_states", dtype: "float32", shape: ["B", 77, D] },
      ];
      if (kind === "vsr_unet") inputs.push({ name: "class_labels", dtype: "int64", shape: ["B"] });
      return { inputs, outputs: [{ name: "out_sample", dtype: "float32", shape: ["B", 4, "F", "h", "w"] }] };
    }
    case "vae_decoder":
      return {
        inputs: [{ name: "latent_sample", dtype: "float32", shape: ["N", 4, "h", "w"] }],
        outputs: [{ name: "sample", dtype: "float32", shape: ["N", 3, "8h", "8w"] }],
      };
    case "x4_vae_decoder":
      return {
        inputs: [{ name: "latent_sample", dtype: "float32", shape: ["N", 4, "h", "w"] }],
        outputs: [{ name: "sample", dtype: "float32", shape: ["N", 3, "4h", "4w"] }],
      };
    case "vae_encoder":
      return {
        inputs: [{ name: "sample", dtype: "float32", shape: ["N", 3, "H", "W"] }],
        // The moments (diffusers latent_dist.parameters, optimum's latent_parameters): mean (channels
        // 0-3) ‖ log-variance (4-7, unclamped); users clamp the log-variance to [-30, 20] as diffusers'
        // DiagonalGaussianDistribution does (models/nets/vae.ts splitMoments).
        outputs: [{ name: "latent_parameters", dtype: "float32", shape: ["N", 8, "H/8", "W/8"] }],
      };
  }
}
