"""Golden vectors for the base and interpolation UNets: small configs, random weights, our float32 outputs.

Layout under out_dir:
  index.json                         every case directory, in order
  <network>-<config>/config.json     the diffusers-style UNet config (as the official constructor gets it)
  <network>-<config>/checkpoint.pt   random weights in the official file format: torch.save({"ema": state_dict})
  <network>-<config>/<case>/case.json, inputs.safetensors (sample f32, timestep i64, encoder_hidden_states f32),
                                   outputs.safetensors (out_sample f32)

Every parameter is random, including those LaVie initialises to zero (temporal to_out.0.weight) and the
rotary `freqs` (jittered by x0.5..x1.5, so an importer must read them from the checkpoint). interp_unet-a
stores float32 weights, the others float16 to keep the files small (outputs are computed in float32 from
the stored values). The base network's temporal attention needs head dim >= 32 (the rotary dim), hence
its wider configs.
"""

import copy
import json
import math
import pathlib

import torch
from safetensors.torch import save_file

from ..configs import UNetConfig
from ..unet_loader import build_unet

_CROSS = ("CrossAttnDownBlock3D", "CrossAttnUpBlock3D")


def _config(widths: list[int], layers: int, heads: int | list[int], cross: int, groups: int) -> dict:
    n = len(widths)
    return {
        "block_out_channels": widths,
        "down_block_types": [_CROSS[0]] * (n - 1) + ["DownBlock3D"],
        "up_block_types": ["UpBlock3D"] + [_CROSS[1]] * (n - 1),
        "layers_per_block": layers,
        "attention_head_dim": heads,
        "cross_attention_dim": cross,
        "norm_num_groups": groups,
        "norm_eps": 1e-5,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "out_channels": 4,
    }


# (network, config name, json fields, checkpoint dtype, seed)
CONFIGS = [
    ("base_unet", "a", _config([32, 32], 1, 1, 16, 8), torch.float16, 11),
    ("base_unet", "b", _config([32, 64], 1, [1, 2], 16, 8), torch.float16, 12),
    ("interp_unet", "a", _config([16, 16], 1, [2, 2], 16, 8), torch.float32, 21),
    ("interp_unet", "b", _config([8, 16, 16], 2, [2, 2, 4], 16, 4), torch.float16, 22),
]
# (case name, batch, frames, height, width, timesteps)
CASES = {
    "a": [("f4-8x8", 2, 4, 8, 8, [999, 1]), ("f7-16x24", 1, 7, 16, 24, [500])],
    "b": [("f4-8x8", 2, 4, 8, 8, [37, 640]), ("f7-16x24", 1, 7, 16, 24, [250]), ("f5-9x13", 1, 5, 9, 13, [999])],
}


def randomise(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Well-conditioned random weights: ~N(0, 1/fan_in) matrices, norm scales 1 + N(0, 0.2^2), biases N(0, 0.1^2),
    relative-position tables N(0, 0.5^2), rotary freqs x U(0.5, 1.5)."""
    with torch.no_grad():
        for name, p in model.named_parameters():  # the shared rotary freqs appear once
            if name.endswith("rotary_emb.freqs"):
                p.mul_(0.5 + torch.rand(p.shape, generator=gen))
            elif name.endswith("relative_attention_bias.weight"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 1 and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))


def generate(out_dir: pathlib.Path) -> None:
    torch.set_num_threads(2)
    index = []
    for network, name, fields, dtype, seed in CONFIGS:
        cfg = UNetConfig.from_json_dict(fields, network)
        config_dir = out_dir / f"{network}-{name}"
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "config.json").write_text(json.dumps(cfg.to_json_dict(), indent=2) + "\n")

        gen = torch.Generator().manual_seed(seed)
        model = build_unet(cfg).eval()
        randomise(model, gen)
        stored = copy.deepcopy(model).to(dtype)  # keeps the rotary module shared: one freqs storage in the file
        torch.save({"ema": stored.state_dict()}, config_dir / "checkpoint.pt")
        model.load_state_dict(stored.state_dict())  # compute with exactly the stored (rounded) values
        model.float()

        for case, batch, frames, height, width, timesteps in CASES[name]:
            case_dir = config_dir / case
            case_dir.mkdir(exist_ok=True)
            sample = torch.randn(batch, cfg.in_channels, frames, height, width, generator=gen)
            timestep = torch.tensor(timesteps, dtype=torch.int64)
            text = torch.randn(batch, 77, cfg.cross_attention_dim, generator=gen)
            with torch.no_grad():
                out = model(sample, timestep, text)
            save_file({"sample": sample, "timestep": timestep, "encoder_hidden_states": text},
                      str(case_dir / "inputs.safetensors"))
            save_file({"out_sample": out.contiguous()}, str(case_dir / "outputs.safetensors"))
            meta = {
                "network": network,
                "batch": batch,
                "frames": frames,
                "height": height,
                "width": width,
                "config": "../config.json",
                "checkpoint": "../checkpoint.pt",
                "checkpoint_dtype": str(dtype).removeprefix("torch."),
                "notes": (
                    "out_sample = UNet(sample, timestep, encoder_hidden_states) in float32 by lavie_ref "
                    f"(matches the official LaVie code at commit 6ce851e to ~1e-5). {_NOTES[network]}"
                ),
            }
            (case_dir / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
            index.append(f"{network}-{name}/{case}")
            print(f"  {network}-{name}/{case}: out |max| {out.abs().max().item():.3f}", flush=True)
    (out_dir / "index.json").write_text(json.dumps({"cases": index}, indent=2) + "\n")


_NOTES = {
    "base_unet": "Temporal attention: rotary embedding from the checkpoint's freqs (not the default formula) "
    "and the T5 relative position bias.",
    "interp_unet": "sample channels: 4 noisy latent + 4 conditioning latent; sparse-causal spatial attention.",
}
