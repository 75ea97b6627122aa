/**
 * The VSR UNet's temporal module, placed after every transformer (VideoLDM-style temporal block):
 *
 *   x [B*F, C, H, W] -> unfold to [B, C, F, H, W]
 *     -> GroupNorm -> SiLU -> Conv3d kernel 5x1x1 (pad 2, keeps F)
 *     -> GroupNorm -> SiLU -> Conv3d kernel 3x1x1 (pad 1, keeps F)
 *   -> fold -> spatial resnet (with the time embedding) -> 1x1 conv "proj_out" -> + x
 *
 * LaVie zero-initialises the output conv so that training starts from the pretrained 2D upscaler.
 * Project-built (seeded) weights instead use a small non-zero init (OUT_SCALE x PyTorch's default
 * bound) so that the temporal path is exercised and tested; real checkpoints carry their own weights.
 */
import { attr, type GraphBuilder, type Value } from "../onnx/graph.ts";
import { conv2d, fanInBound, foldFrames, groupNorm, resnet, silu, unfoldFrames } from "./layers.ts";

/** Init scale of the module's output projection relative to PyTorch's default (LaVie: 0). */
export const TEMPORAL_MODULE_OUT_SCALE = 0.1;

export interface TemporalModuleOptions {
  channels: number;
  groups: number;
  /** Frames as a 1-D int64 Value [1]. */
  frames: Value;
  /** Per-frame time embedding [B*F, tembDim] for the spatial resnet. */
  temb: Value;
  tembDim: number;
}

/** Conv3d over the frame axis only: [B, C, F, H, W] with kernel (k, 1, 1), padded to keep F. */
export function temporalConv(g: GraphBuilder, name: string, x: Value, channels: number, k: number): Value {
  return g.scope(name, () => {
    const bound = fanInBound(channels * k);
    const w = g.param("weight", [channels, channels, k, 1, 1], { kind: "uniform", bound });
    const b = g.param("bias", [channels], { kind: "uniform", bound });
    const p = Math.floor(k / 2);
    return g.op("Conv", [x, w, b], {
      kernel_shape: attr.ints([k, 1, 1]),
      pads: attr.ints([p, 0, 0, p, 0, 0]),
    });
  });
}

export function temporalModule(g: GraphBuilder, name: string, x: Value, o: TemporalModuleOptions): Value {
  const c = o.channels;
  return g.scope(name, () => {
    let h = unfoldFrames(g, x, o.frames, c);
    h = temporalConv(g, "temporal_conv1", silu(g, groupNorm(g, "norm1", h, c, o.groups, 1e-5)), c, 5);
    h = temporalConv(g, "temporal_conv2", silu(g, groupNorm(g, "norm2", h, c, o.groups, 1e-5)), c, 3);
    h = foldFrames(g, h, c);
    h = resnet(g, "resnet", h, o.temb, c, c, { groups: o.groups, tembDim: o.tembDim });
    h = conv2d(g, "proj_out", h, c, c, { k: 1, scale: TEMPORAL_MODULE_OUT_SCALE });
    return g.op("Add", [x, h]);
  });
}
