"""What the toy-world trainer builds and how long it trains each network.

Network configurations are written in the official file formats, so that the export is a LaVie download
(`lavie models import` refuses anything else):
  - SD_UNET_CONFIG: stable-diffusion-v1-4/unet/config.json (SD1.4's 2-D format). LaVie builds both the base
    and the interpolation UNet from this one file (from_pretrained_2d: 3-D block types, 4 levels, in_channels 8
    and sparse-causal attention for interpolation), so both networks have the same widths.
  - VSR_UNET_CONFIG: vsr/configs/unet_3d_config.json (UNet3DVSRModel). Widths are multiples of 32 and heads
    32 wide: the official code fixes RotaryEmbedding(32) and GroupNorm(32) in its temporal parts.
  - SD_VAE / X4_VAE: diffusers AutoencoderKL constructor arguments (x8: 4 levels, x4: 3 levels; latent scale
    fixed by LaVie's code at 0.18215 and 0.08333, see vae.py for how the trained latents are matched to it).
  - SD_TEXT / X4_TEXT: transformers CLIPTextConfig arguments (width = the UNets' cross_attention_dim).

Frame sizes: base 64x64 (height and width divisible by 64: VAE x8, then three UNet downsamplings), 16
frames; interpolation 61 frames of 64x64; VSR x4, 256x256. The world is laid out for 3:2 frames; at 1:1
an object may touch the side edges.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..configs import SD14_UNET_CONFIG

BASE_SIZE = 64  # base frames are BASE_SIZE x BASE_SIZE pixels
BASE_FRAMES = 16
INTERP_FRAMES = 4 * (BASE_FRAMES - 1) + 1  # 61
SD_SCALE = 0.18215  # latent scale of LaVie's base and interpolation code
X4_SCALE = 0.08333  # latent scale LaVie's VSR pipeline sets on the x4 VAE

SD_TEXT_WIDTH = 64  # = the base/interpolation UNets' cross_attention_dim
X4_TEXT_WIDTH = 32  # = the VSR UNet's cross_attention_dim

SD_UNET_CONFIG: dict[str, Any] = {
    **SD14_UNET_CONFIG,
    "attention_head_dim": 1,  # heads per level (diffusers 0.16's name): 32- and 64-wide heads
    "block_out_channels": [32, 64, 64, 64],
    "cross_attention_dim": SD_TEXT_WIDTH,
    "layers_per_block": 1,
    "norm_num_groups": 16,
    "sample_size": BASE_SIZE // 8,
}

# Three levels of the published layout: a plain first level, cross-attention levels (only_cross_attention
# on the first of them as published), a self-attention mid block, temporal modules after every level and the
# mid block. Noise levels 0..100 (the cascade uses 50).
VSR_UNET_CONFIG: dict[str, Any] = {
    "_class_name": "UNet3DVSRModel",
    "act_fn": "silu",
    "attention_head_dim": [1, 2, 2],
    "block_out_channels": [32, 64, 64],
    "center_input_sample": False,
    "cross_attention_dim": X4_TEXT_WIDTH,
    "down_block_types": ["DownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 7,
    "layers_per_block": 1,
    "max_noise_level": 100,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": 101,
    "only_cross_attention": [True, True, False],
    "out_channels": 4,
    "sample_size": BASE_SIZE,
    "up_block_types": ["CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "UpBlock3D"],
    "use_linear_projection": True,
    "down_temporal_idx": [1, 2],
    "mid_temporal": True,
    "up_temporal_idx": [0, 1],
    "temporal_module_config": {
        "num_attention_layers": 1,
        "attention_block_types": ["", ""],
        "cross_frame_attention_mode": "0_i-1_i",
        "temporal_shift_fold_div": 2,
        "temporal_shift_direction": "right",
        "use_dcn_warpping": False,
        "use_deformable_conv": True,
        "attention_dim_div": 2,
    },
    "use_first_frame": False,
    "video_condition": False,
    "freeze_pretrained_2d_upsampler": True,
}

SD_VAE: dict[str, Any] = dict(block_out_channels=[32, 64, 64, 64], layers_per_block=1, norm_num_groups=16,
                              sample_size=BASE_SIZE, scaling_factor=SD_SCALE)
X4_VAE: dict[str, Any] = dict(block_out_channels=[16, 32, 64], layers_per_block=1, norm_num_groups=16,
                              sample_size=4 * BASE_SIZE, scaling_factor=X4_SCALE)

SD_TEXT: dict[str, Any] = dict(hidden_size=SD_TEXT_WIDTH, intermediate_size=4 * SD_TEXT_WIDTH, num_hidden_layers=3,
                               num_attention_heads=2, hidden_act="quick_gelu", projection_dim=SD_TEXT_WIDTH)
X4_TEXT: dict[str, Any] = dict(hidden_size=X4_TEXT_WIDTH, intermediate_size=4 * X4_TEXT_WIDTH, num_hidden_layers=2,
                               num_attention_heads=1, hidden_act="gelu", projection_dim=X4_TEXT_WIDTH)

# The unconditional prompt each stage of the cascade feeds as the CFG "uncond" row and the suffix it
# appends to the user's prompt (core/samplers/presets.ts). Training drops the caption to the stage's
# unconditional prompt, so that guidance contrasts exactly the two rows the cascade computes.
UNCOND_PROMPT = {"base": "", "interp": "None", "vsr": "blur, worst quality"}
PROMPT_SUFFIX = {"base": "", "interp": ", 4k.", "vsr": ""}

STAGES = ("vae", "x4vae", "text", "base", "interp", "vsr")


@dataclass(frozen=True)
class StageConfig:
    """Hyper-parameters of one stage. `steps` is the default length (the ~2-hour budget of TRAINING.md)."""

    name: str
    seed: int
    steps: int
    batch: int = 1
    lr: float = 2e-4
    warmup: int = 100
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    log_every: int = 25
    ckpt_every: int = 250
    frames: int = BASE_FRAMES  # frames per clip (VSR: chunk length; interp: output window)
    crop: int = 0  # spatial crop in (stage-resolution) pixels, 0 = whole frame
    image_every: int = 0  # base: every n-th step is a batch of single images (0 = never)
    image_batch: int = 0  # base: images per image step
    cond_drop: float = 0.1  # probability of the unconditional prompt
    kl_weight: float = 0.0  # VAEs
    extra: dict[str, Any] = field(default_factory=dict)

    def with_steps(self, steps: int | None) -> StageConfig:
        return self if steps is None else replace(self, steps=steps)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


STAGE_CONFIGS: dict[str, StageConfig] = {
    "vae": StageConfig("vae", seed=11, steps=1200, batch=16, lr=1e-3, kl_weight=1e-6, ema_decay=0.995),
    "x4vae": StageConfig("x4vae", seed=12, steps=1000, batch=8, lr=1e-3, crop=128, kl_weight=1e-6,
                         ema_decay=0.995),
    "text": StageConfig("text", seed=13, steps=0),
    "base": StageConfig("base", seed=14, steps=6000, batch=8, lr=3e-4, image_every=4, image_batch=32),
    "interp": StageConfig("interp", seed=15, steps=3000, batch=4, lr=3e-4, frames=13),
    "vsr": StageConfig("vsr", seed=16, steps=3000, batch=2, lr=3e-4, frames=8, crop=128),
}
