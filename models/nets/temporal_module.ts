/**
 * Frame-axis layers of LaVie's VSR UNet (vsr/models/resnet.py ResnetBlock3DCNN and
 * vsr/models/temporal_module.py TemporalModule3D, as the published configuration builds them).
 *
 * frameResnet: a resnet whose convolutions run along the frame axis only, Conv3d kernels (k, 1, 1)
 * then (3, 1, 1), zero padding on frames and none in space; its GroupNorms take statistics over the
 * whole clip (they see the 5-D tensor). Every transformer starts with one (k = 3, no time embedding,
 * keys `resblock_temporal.*`); every temporal module with another (k = 5, with time embedding).
 *
 * temporalModule: after a whole down level (downsampler included), the mid block or a whole up level
 *   x + shift_conv(resblocks_3d_s(resblocks_3d_t(x)))
 * resblocks_3d_t a frameResnet (k = 5), resblocks_3d_s a spatial resnet (3x3 convs per frame, clip
 * GroupNorm, eps 1e-6), shift_conv a 1x1 conv per frame. With the published temporal_module_config
 * (attention_block_types ["", ""]) the module has no attention, so none of its other options (cross-frame
 * attention mode, temporal shift, deformable convolution...) creates a parameter or changes the result.
 *
 * LaVie zero-initialises shift_conv so that training starts from the 2D upscaler; seeded (project-built)
 * weights use a small non-zero init instead so that the path is exercised; checkpoints bring their own.
 */
import { attr, type GraphBuilder, type Value } from "../onnx/graph.ts";
import { conv2d, fanInBound, foldFrames, groupNorm, linear, resnet, silu, unfoldFrames } from "./layers.ts";

/** Init scale of shift_conv in seeded builds, relative to PyTorch's default (official: zeros). */
export const SHIFT_CONV_INIT_SCALE = 0.1;

/** eps of every GroupNorm in the frame-axis resnets and the temporal modules (the official default). */
export const TEMPORAL_NORM_EPS = 1e-6;

/** Conv3d with kernel (k, 1, 1) on a clip [B, C, F, H, W], padded by (k-1)/2 frames on each side. */
export function frameConv(
  g: GraphBuilder,
  name: string,
  x: Value,
  cin: number,
  cout: number,
  k: number,
): Value {
  return g.scope(name, () => {
    const bound = fanInBound(cin * k);
    const w = g.param("weight", [cout, cin, k, 1, 1], { kind: "uniform", bound });
    const b = g.param("bias", [cout], { kind: "uniform", bound });
    const p = (k - 1) / 2;
    return g.op("Conv", [x, w, b], {
      kernel_shape: attr.ints([k, 1, 1]),
      pads: attr.ints([p, 0, 0, p, 0, 0]),
    });
  });
}

export interface FrameResnetOptions {
  groups: number;
  /** Frame kernel of conv1 (odd); conv2's is always 3. */
  kernel: number;
  /** The clip's time embedding [B, tembDim] (one row per clip), or absent for no time_emb_proj. */
  temb?: { value: Value; dim: number };
}

/**
 * ResnetBlock3DCNN on a clip x [B, C, F, H, W] (input width = output width):
 *   h = conv1(silu(norm1(x))) [+ time_emb_proj(silu(temb))]; x + conv2(silu(norm2(h)))
 */
export function frameResnet(
  g: GraphBuilder,
  name: string,
  x: Value,
  channels: number,
  o: FrameResnetOptions,
): Value {
  if (o.kernel % 2 !== 1) throw new Error(`${name}: frame kernel ${o.kernel} must be odd`);
  const c = channels;
  return g.scope(name, () => {
    let h = silu(g, groupNorm(g, "norm1", x, c, o.groups, TEMPORAL_NORM_EPS));
    h = frameConv(g, "conv1", h, c, c, o.kernel);
    if (o.temb) {
      const t = linear(g, "time_emb_proj", silu(g, o.temb.value), o.temb.dim, c); // [B, C]
      h = g.op("Add", [h, g.op("Unsqueeze", [t, g.constI([2, 3, 4])])]);
    }
    h = silu(g, groupNorm(g, "norm2", h, c, o.groups, TEMPORAL_NORM_EPS));
    h = frameConv(g, "conv2", h, c, c, 3);
    return g.op("Add", [x, h]);
  });
}

export interface TemporalModuleOptions {
  channels: number;
  /** GroupNorm groups of both resnets (official: 32). */
  groups: number;
  /** Frames per clip as a 1-D int64 Value [1]. */
  frames: Value;
  /** Time embedding per clip [B, tembDim] (frame resnet) and per folded frame [B*F, tembDim] (spatial resnet). */
  clipTemb: Value;
  frameTemb: Value;
  tembDim: number;
}

/** TemporalModule3D on frames folded into the batch: x [B*F, C, H, W] -> [B*F, C, H, W]. */
export function temporalModule(g: GraphBuilder, name: string, x: Value, o: TemporalModuleOptions): Value {
  const c = o.channels;
  return g.scope(name, () => {
    const clip = frameResnet(g, "resblocks_3d_t", unfoldFrames(g, x, o.frames, c), c, {
      groups: o.groups,
      kernel: 5,
      temb: { value: o.clipTemb, dim: o.tembDim },
    });
    let h = foldFrames(g, clip, c);
    h = resnet(g, "resblocks_3d_s", h, o.frameTemb, c, c, {
      groups: o.groups,
      eps: TEMPORAL_NORM_EPS,
      tembDim: o.tembDim,
      frames: o.frames,
    });
    h = conv2d(g, "shift_conv", h, c, c, { k: 1, scale: SHIFT_CONV_INIT_SCALE });
    return g.op("Add", [x, h]);
  });
}
