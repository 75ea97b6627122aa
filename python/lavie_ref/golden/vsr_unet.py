"""Golden vectors of the VSR UNet (lavie_ref.unet_vsr), for the TypeScript/ONNX implementation.

Layout under out_dir:
  <config>/config.json          the network in the official unet_3d_config.json format
  <config>/checkpoint.pt        torch.save({"ema": state_dict}) as the published lavie_vsr.pt (float32,
                                official keys, incl. the 17 aliases of the RoPE freqs)
  <config>/<case>/inputs.safetensors   sample, timestep (int64), low_res, encoder_hidden_states, class_labels (int64)
  <config>/<case>/outputs.safetensors  out_sample (float32)
  <config>/<case>/case.json
  frame_attention/weights.safetensors, inputs.safetensors (x [N, F, C]), outputs.safetensors (out), case.json:
                                one temporal attention alone with head width 64 (RoPE rotates 32 of 64 dims),
                                which the small UNets (head width 32) cannot exercise.
Weights are random (every parameter, including the zero-initialised ones) and reproducible from the seeds.
"""

from __future__ import annotations

import copy
import json
import math
import pathlib

import torch
from safetensors.torch import save_file

from ..unet_vsr import VSRUNet, VSRUNetConfig
from ..vsr_blocks import FrameAttention, RotaryFreqs

_TEMPORAL_CONFIG = {"num_attention_layers": 1, "attention_block_types": ["", ""],
                    "cross_frame_attention_mode": "0_i-1_i", "temporal_shift_fold_div": 2,
                    "temporal_shift_direction": "right", "use_dcn_warpping": False, "use_deformable_conv": True,
                    "attention_dim_div": 2}
_COMMON = {"in_channels": 7, "out_channels": 4, "layers_per_block": 1, "attention_head_dim": 1, "norm_eps": 1e-5,
           "cross_attention_dim": 24, "num_class_embeds": 64, "max_noise_level": 60, "flip_sin_to_cos": True,
           "freq_shift": 0, "downsample_padding": 1, "mid_block_scale_factor": 1,
           "temporal_module_config": _TEMPORAL_CONFIG}

# name -> (config, perturb the RoPE freqs?, cases (batch, frames, height, width))
CONFIGS: dict[str, tuple[dict, bool, list[tuple[int, int, int, int]]]] = {
    # The published layout in miniature: plain level with downsampler, cross-attention level (attn1 attends
    # to the text), self-attention mid block; temporal modules after the downsampled level, the mid block
    # and the upsampled level (not after down level 1 / up level 1: same module, checkpoint size);
    # norm_num_groups 16 so that the fixed GroupNorm(32) of the temporal parts is distinguishable.
    "two_level": ({**_COMMON, "block_out_channels": [32, 32],
                   "down_block_types": ["DownBlock3D", "CrossAttnDownBlock3D"],
                   "up_block_types": ["CrossAttnUpBlock3D", "UpBlock3D"], "only_cross_attention": [False, True],
                   "norm_num_groups": 16, "down_temporal_idx": [0], "mid_temporal": True, "up_temporal_idx": [0]},
                  False, [(2, 4, 8, 8), (1, 12, 5, 7)]),
    # One level (no resampling), attention in the mid block only, a temporal module only after the last up
    # level (right before conv_norm_out), GroupNorm 32 everywhere, RoPE freqs perturbed (they must be read
    # from the checkpoint).
    "one_level": ({**_COMMON, "block_out_channels": [32], "down_block_types": ["DownBlock3D"],
                   "up_block_types": ["UpBlock3D"], "only_cross_attention": False, "norm_num_groups": 32,
                   "down_temporal_idx": [], "mid_temporal": False, "up_temporal_idx": [0]},
                  True, [(2, 8, 4, 6), (1, 3, 6, 6)]),
}


def randomize(model: torch.nn.Module, seed: int, perturb_freqs: bool) -> None:
    """Every parameter random: unit-gain weights, norms 1 +- 0.2, biases 0.1, tables 0.5."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("freqs"):
                if perturb_freqs:
                    p.mul_(1 + 0.25 * torch.rand(p.shape, generator=g))
            elif p.dim() == 1 and "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "embedding" in name or "relative_attention_bias" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))


def _write_case(out: pathlib.Path, net: VSRUNet, cfg: dict, shape: tuple[int, int, int, int], seed: int,
                notes: dict) -> dict:
    b, f, h, w = shape
    g = torch.Generator().manual_seed(seed)
    inputs = {
        "sample": torch.randn(b, 4, f, h, w, generator=g),
        "timestep": torch.randint(0, 1000, (b,), generator=g, dtype=torch.int64),
        "low_res": torch.randn(b, 3, f, h, w, generator=g),
        "encoder_hidden_states": torch.randn(b, 77, cfg["cross_attention_dim"], generator=g),
        "class_labels": torch.randint(0, cfg["max_noise_level"] + 1, (b,), generator=g, dtype=torch.int64),
    }
    # The reference is computed in float64 from the stored float32 weights, so the committed output is
    # the exact answer for those weights rather than one float32 rounding of it.
    net64 = copy.deepcopy(net).double()
    as64 = {k: v.double() if v.is_floating_point() else v for k, v in inputs.items()}
    with torch.no_grad():
        out_sample = net64(as64["sample"], as64["timestep"], as64["low_res"], as64["encoder_hidden_states"],
                           as64["class_labels"]).float().contiguous()
    out.mkdir(parents=True, exist_ok=True)
    save_file(inputs, str(out / "inputs.safetensors"))
    save_file({"out_sample": out_sample}, str(out / "outputs.safetensors"))
    case = {
        "description": "VSR UNet forward: out_sample = net(sample, timestep, low_res, encoder_hidden_states, "
                       "class_labels)",
        "shapes": {k: list(v.shape) for k, v in {**inputs, "out_sample": out_sample}.items()},
        "timestep": inputs["timestep"].tolist(), "class_labels": inputs["class_labels"].tolist(),
        "out_max_abs": float(out_sample.abs().max()), "tolerance_abs": 1e-3, "seed": seed, **notes,
    }
    (out / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    return case


def _frame_attention(out: pathlib.Path) -> None:
    """A temporal attention with 64 channels and 1 head (RoPE on dims 0..31 of 64), 24 frames (log buckets)."""
    torch.manual_seed(0)
    attn = FrameAttention(64, 1, RotaryFreqs(32))
    randomize(attn, 11, perturb_freqs=False)
    g = torch.Generator().manual_seed(12)
    x = torch.randn(3, 24, 64, generator=g)
    with torch.no_grad():
        y = attn(x).contiguous()
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in attn.state_dict().items()}, str(out / "weights.safetensors"))
    save_file({"x": x}, str(out / "inputs.safetensors"))
    save_file({"out": y}, str(out / "outputs.safetensors"))
    case = {"description": "attn_temporal alone on tokens x [N, F, C] (N = batch x spatial positions): "
                           "out = to_out.0(attention over F with RoPE and relative position bias)",
            "channels": 64, "heads": 1, "frames": 24, "keys": sorted(attn.state_dict()),
            "out_max_abs": float(y.abs().max()), "tolerance_abs": 1e-4}
    (out / "case.json").write_text(json.dumps(case, indent=2) + "\n")


def generate(out_dir: pathlib.Path) -> None:
    torch.set_num_threads(2)
    for index, (name, (raw, perturb, cases)) in enumerate(CONFIGS.items()):
        cfg = VSRUNetConfig.from_json(raw)
        net = VSRUNet(cfg).eval()
        randomize(net, 1000 + index, perturb)
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(cfg.to_json(), indent=2) + "\n")
        torch.save({"ema": net.state_dict()}, folder / "checkpoint.pt")
        for j, shape in enumerate(cases):
            b, f, h, w = shape
            notes = {"config": name, "rope_freqs_perturbed": perturb}
            case = _write_case(folder / f"b{b}_f{f}_{h}x{w}", net, raw, shape, 2000 + 10 * index + j, notes)
            print(f"  {name}/b{b}_f{f}_{h}x{w}: out max {case['out_max_abs']:.3f}", flush=True)
    _frame_attention(out_dir / "frame_attention")
