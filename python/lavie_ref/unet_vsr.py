"""LaVie's video super-resolution UNet (the official UNet3DVSRModel), in the official state-dict layout.

The x4-upscaler UNet inflated to video: every transformer first mixes frames with a frame-axis resnet
and has a temporal attention (RoPE + relative bias); each down level, the mid block and each up level is
followed by a block-level temporal module (vsr_blocks.TemporalModule). The low-res RGB video is
concatenated to the latent inside forward (4 + 3 = 7 input channels); the noise level of the low-res
video selects a row of a class-embedding table that is added to the time embedding.

    cfg = VSRUNetConfig.from_json(json.load(open("unet_3d_config.json")))
    net = VSRUNet(cfg); net.load_official_checkpoint("lavie_vsr.pt")
    eps = net(sample, timestep, low_res, text, noise_level)   # all [B, C, F, H, W] except text [B, 77, 1024]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .vsr_blocks import (
    ClipResBlock,
    Downsampler,
    FrameConv,
    NoTemporalModule,
    RotaryFreqs,
    TemporalModule,
    Upsampler,
    VideoTransformer,
)

# Keys of the official config file that have no effect on the network.
_IGNORED_KEYS = {"_class_name", "_diffusers_version", "_name_or_path", "sample_size", "freeze_pretrained_2d_upsampler",
                 "upcast_attention"}
# temporal_module_config keys the official TemporalModule3D accepts; with attention_block_types ["", ""]
# (the published config) none of them creates a parameter or changes the computation.
_TEMPORAL_KEYS = {"num_attention_layers", "num_attention_head", "attention_head_dim", "cross_attention_dim",
                  "dropout", "attention_bias", "activation_fn", "only_cross_attention", "upcast_attention",
                  "norm_num_groups", "use_linear_projection", "use_scale_shift", "attention_block_types",
                  "cross_frame_attention_mode", "temporal_shift_fold_div", "temporal_shift_direction",
                  "use_dcn_warpping", "use_deformable_conv", "attention_dim_div"}
# Official options we support only at one value (the published config's), with what they must be.
# video_condition defaults to true in the official constructor, but vsr/sample.py always forces it false.
_FIXED = {"mid_block_type": "UNetMidBlock3DCrossAttn", "act_fn": "silu", "dual_cross_attention": False,
          "use_linear_projection": True, "class_embed_type": None, "resnet_time_scale_shift": "default",
          "use_first_frame": False, "use_relative_position": False, "video_condition": False}


@dataclass
class VSRUNetConfig:
    """Fields and defaults of the official UNet3DVSRModel constructor (unknown file keys are rejected)."""

    in_channels: int = 7
    out_channels: int = 4
    block_out_channels: list[int] = field(default_factory=lambda: [256, 512, 512, 1024])
    down_block_types: list[str] = field(
        default_factory=lambda: ["DownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D"])
    up_block_types: list[str] = field(
        default_factory=lambda: ["CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "UpBlock3D"])
    only_cross_attention: bool | list[bool] = field(default_factory=lambda: [True, True, True, False])
    attention_head_dim: int | list[int] = 8  # the official name; it is the number of heads per level
    layers_per_block: int = 2
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    cross_attention_dim: int = 1024
    num_class_embeds: int | None = 1000
    max_noise_level: int = 350
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    center_input_sample: bool = False
    down_temporal_idx: list[int] = field(default_factory=lambda: [0, 1, 2])
    mid_temporal: bool = False
    up_temporal_idx: list[int] = field(default_factory=lambda: [0, 1, 2])
    temporal_module_config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> VSRUNetConfig:
        """Parses the official unet_3d_config.json format; raises ValueError naming the key otherwise."""
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key in known:
                kwargs[key] = value
            elif key in _FIXED:
                if value != _FIXED[key]:
                    raise ValueError(f"config key {key!r}={value!r}: only {_FIXED[key]!r} is supported")
            elif key not in _IGNORED_KEYS:
                raise ValueError(f"config key {key!r} is not an option of UNet3DVSRModel")
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def to_json(self) -> dict[str, Any]:
        """The official file format (class name and fixed options included), loadable by both implementations."""
        out: dict[str, Any] = {"_class_name": "UNet3DVSRModel", **_FIXED}
        out.update({f.name: getattr(self, f.name) for f in fields(self)})
        return out

    @property
    def levels(self) -> int:
        return len(self.block_out_channels)

    def heads(self) -> list[int]:
        h = self.attention_head_dim
        return [h] * self.levels if isinstance(h, int) else list(h)

    def only_cross(self) -> list[bool]:
        o = self.only_cross_attention
        return [o] * self.levels if isinstance(o, bool) else list(o)

    def validate(self, rotary_dim: int = 32, temporal_groups: int = 32) -> None:
        """rotary_dim / temporal_groups: VSRUNet's non-official overrides of the official constants (32, 32)."""
        n = self.levels
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise ValueError("down_block_types and up_block_types need one entry per block_out_channels entry")
        for t in self.down_block_types:
            if t not in ("DownBlock3D", "CrossAttnDownBlock3D"):
                raise ValueError(f"down_block_types: {t!r} is not DownBlock3D or CrossAttnDownBlock3D")
        for t in self.up_block_types:
            if t not in ("UpBlock3D", "CrossAttnUpBlock3D"):
                raise ValueError(f"up_block_types: {t!r} is not UpBlock3D or CrossAttnUpBlock3D")
        if len(self.heads()) != n or len(self.only_cross()) != n:
            raise ValueError("attention_head_dim / only_cross_attention lists need one entry per level")
        attn_levels = {n - 1} | {i for i, t in enumerate(self.down_block_types) if t.startswith("CrossAttn")}
        attn_levels |= {n - 1 - i for i, t in enumerate(self.up_block_types) if t.startswith("CrossAttn")}
        temporal_levels = set(self.down_temporal_idx) | {n - 1 - i for i in self.up_temporal_idx}
        temporal_levels |= {n - 1} if self.mid_temporal else set()
        for i, c in enumerate(self.block_out_channels):
            if c % self.norm_num_groups or (c % temporal_groups and i in attn_levels | temporal_levels):
                raise ValueError(f"block_out_channels: {c} must be a multiple of norm_num_groups (and of "
                                 f"{temporal_groups} where a transformer or temporal module runs: their frame-axis "
                                 f"GroupNorms have {temporal_groups} groups)")
        for i in attn_levels:
            c, h = self.block_out_channels[i], self.heads()[i]
            if c % h or c // h < rotary_dim:
                raise ValueError(f"attention_head_dim: {h} heads on {c} channels; head width must be >= {rotary_dim} "
                                 "(RoPE dim)")
        tm = self.temporal_module_config
        bad = set(tm) - _TEMPORAL_KEYS
        if bad:
            raise ValueError(f"temporal_module_config: unknown keys {sorted(bad)}")
        if list(tm.get("attention_block_types", ["", ""])) != ["", ""]:
            raise ValueError('temporal_module_config.attention_block_types: only ["", ""] is supported')
        if tm.get("use_scale_shift", False):
            raise ValueError("temporal_module_config.use_scale_shift: only false is supported")


def sinusoidal_embedding(t: torch.Tensor, dim: int, cos_first: bool, shift: float) -> torch.Tensor:
    """[N] -> [N, dim]: angle_i = t * exp(-ln(10000) * i / (dim/2 - shift)), i < dim/2; [cos | sin] or [sin | cos]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - shift))
    angles = t[:, None].float() * freqs[None, :]
    parts = (angles.cos(), angles.sin()) if cos_first else (angles.sin(), angles.cos())
    emb = torch.cat(parts, dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class TimeMLP(nn.Module):
    """Keys: linear_1, linear_2; linear_2(silu(linear_1(x)))."""

    def __init__(self, cin: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(cin, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class Level(nn.Module):
    """One down level, the mid block or one up level. Keys: resnets.N, attentions.N (cross-attention
    levels), downsamplers.0 / upsamplers.0 when present."""

    def __init__(self, resnets: list[nn.Module], attentions: list[nn.Module] | None, sampler: nn.Module | None,
                 down: bool):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions) if attentions is not None else None
        self.downsamplers = nn.ModuleList([sampler]) if sampler is not None and down else None
        self.upsamplers = nn.ModuleList([sampler]) if sampler is not None and not down else None

    def attn(self, i: int, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return x if self.attentions is None else self.attentions[i](x, text)


class VSRUNet(nn.Module):
    """rotary_dim and temporal_groups override two constants the official code fixes at 32 (RotaryEmbedding(32),
    the GroupNorm groups of the frame-axis resnets and temporal modules), for the project's smaller presets
    (models/configs.ts VsrUNetConfig ropeDim, temporalGroups). They are not config-file fields."""

    def __init__(self, cfg: VSRUNetConfig, rotary_dim: int = 32, temporal_groups: int = 32):
        super().__init__()
        if rotary_dim < 2 or rotary_dim % 2:
            raise ValueError(f"rotary_dim: must be even and positive, got {rotary_dim}")
        cfg.validate(rotary_dim, temporal_groups)
        self.cfg = cfg
        ch = cfg.block_out_channels
        temb = 4 * ch[0]
        heads, cross = cfg.heads(), cfg.only_cross()
        groups, eps, ctx = cfg.norm_num_groups, cfg.norm_eps, cfg.cross_attention_dim

        self.conv_in = FrameConv(cfg.in_channels, ch[0], 3, padding=1)
        self.time_embedding = TimeMLP(ch[0], temb)
        self.class_embedding = nn.Embedding(cfg.num_class_embeds, temb) if cfg.num_class_embeds else None
        self.temporal_rotary_emb = RotaryFreqs(rotary_dim)

        def res(cin: int, cout: int, scale: float = 1.0) -> ClipResBlock:
            return ClipResBlock(cin, cout, temb, groups, eps, scale)

        def transformer(c: int, n_heads: int, only_cross: bool) -> VideoTransformer:
            return VideoTransformer(c, n_heads, ctx, groups, only_cross, self.temporal_rotary_emb, temporal_groups)

        def temporal(c: int, present: bool) -> nn.Module:
            return TemporalModule(c, temb, temporal_groups) if present else NoTemporalModule()

        self.down_blocks = nn.ModuleList()
        self.down_temporal_blocks = nn.ModuleList()
        for i, kind in enumerate(cfg.down_block_types):
            cin, cout = ch[max(i - 1, 0)], ch[i]
            n = cfg.layers_per_block
            attns = [transformer(cout, heads[i], cross[i]) for _ in range(n)] if kind.startswith("CrossAttn") else None
            down = Downsampler(cout, cfg.downsample_padding) if i < len(ch) - 1 else None
            self.down_blocks.append(Level([res(cin if j == 0 else cout, cout) for j in range(n)], attns, down, True))
            self.down_temporal_blocks.append(temporal(cout, i in cfg.down_temporal_idx))

        mid_scale = cfg.mid_block_scale_factor
        self.mid_block = Level([res(ch[-1], ch[-1], mid_scale), res(ch[-1], ch[-1], mid_scale)],
                               [transformer(ch[-1], heads[-1], False)], None, False)
        self.mid_temporal_block = temporal(ch[-1], cfg.mid_temporal)

        rch, rheads, rcross = ch[::-1], heads[::-1], cross[::-1]
        self.up_blocks = nn.ModuleList()
        self.up_temporal_blocks = nn.ModuleList()
        for i, kind in enumerate(cfg.up_block_types):
            prev, cout, skip_in = rch[max(i - 1, 0)], rch[i], rch[min(i + 1, len(ch) - 1)]
            n = cfg.layers_per_block + 1
            resnets = [res((prev if j == 0 else cout) + (skip_in if j == n - 1 else cout), cout) for j in range(n)]
            attns = None
            if kind.startswith("CrossAttn"):
                attns = [transformer(cout, rheads[i], rcross[i]) for _ in range(n)]
            up = Upsampler(cout) if i < len(ch) - 1 else None
            self.up_blocks.append(Level(resnets, attns, up, False))
            self.up_temporal_blocks.append(temporal(cout, i in cfg.up_temporal_idx))

        self.conv_norm_out = nn.GroupNorm(groups, ch[0], eps=eps)
        self.conv_out = FrameConv(ch[0], cfg.out_channels, 3, padding=1)

    def embed(self, timestep: torch.Tensor | float, class_labels: torch.Tensor | int | None, batch: int,
              device: torch.device) -> torch.Tensor:
        """Time embedding plus the noise-level row of class_embedding (both [batch, 4*C0])."""
        t = torch.as_tensor(timestep, device=device).reshape(-1).expand(batch)
        sincos = sinusoidal_embedding(t, self.cfg.block_out_channels[0], self.cfg.flip_sin_to_cos, self.cfg.freq_shift)
        emb = self.time_embedding(sincos.to(self.time_embedding.linear_1.weight.dtype))
        if self.class_embedding is None:
            return emb
        if class_labels is None:
            raise ValueError("class_labels (the low-res noise level) is required when num_class_embeds is set")
        labels = torch.as_tensor(class_labels, device=device, dtype=torch.long)
        if bool((labels > self.cfg.max_noise_level).any()) or bool((labels < 0).any()):
            raise ValueError(
                f"class_labels: noise level must be in [0, {self.cfg.max_noise_level}], got {labels.tolist()}")
        return emb + self.class_embedding(labels)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float, low_res: torch.Tensor,
                encoder_hidden_states: torch.Tensor, class_labels: torch.Tensor | int | None) -> torch.Tensor:
        """sample [B, 4, F, h, w], timestep [B] or scalar, low_res [B, 3, F, h, w], encoder_hidden_states
        [B, L, cross_attention_dim], class_labels [B] int (noise level) -> [B, out_channels, F, h, w]."""
        text = encoder_hidden_states
        x = torch.cat([sample, low_res], dim=1)
        if self.cfg.center_input_sample:
            x = 2 * x - 1.0
        emb = self.embed(timestep, class_labels, x.shape[0], x.device)
        factor = 2 ** (self.cfg.levels - 1)
        explicit_sizes = any(s % factor for s in x.shape[-2:])

        x = self.conv_in(x)
        skips = [x]
        for level, temporal in zip(self.down_blocks, self.down_temporal_blocks):
            for j, resnet in enumerate(level.resnets):
                x = level.attn(j, resnet(x, emb), text)
                skips.append(x)
            if level.downsamplers is not None:
                x = level.downsamplers[0](x)
                skips.append(x)
            x = temporal(x, emb)

        x = self.mid_block.resnets[0](x, emb)
        x = self.mid_block.resnets[1](self.mid_block.attn(0, x, text), emb)
        x = self.mid_temporal_block(x, emb)

        for level, temporal in zip(self.up_blocks, self.up_temporal_blocks):
            for j, resnet in enumerate(level.resnets):
                x = level.attn(j, resnet(torch.cat([x, skips.pop()], dim=1), emb), text)
            if level.upsamplers is not None:
                size = tuple(skips[-1].shape[2:]) if explicit_sizes else None
                x = level.upsamplers[0](x, size)
            x = temporal(x, emb)

        return self.conv_out(F.silu(self.conv_norm_out(x)))

    def load_official_checkpoint(self, path: str) -> None:
        """Loads an official VSR checkpoint (torch.save of {"ema": state_dict}, or a bare state dict), strictly."""
        self.load_state_dict(read_official_state_dict(path), strict=True)


def read_official_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The state dict of an official .pt file: its "ema" entry when present (as vsr/sample.py reads it)."""
    data = torch.load(path, map_location="cpu")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict (with an 'ema' state dict), got {type(data).__name__}")
    sd = data.get("ema", data)
    if not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: no 'ema' entry and not a bare state dict (keys: {list(data)[:5]})")
    return sd

