"""UNet configurations of LaVie's base (text-to-video) and interpolation networks.

The official code builds both from Stable Diffusion 1.4's unet/config.json (diffusers format) and then
overrides a few fields (`from_pretrained_2d`): the block types become their 3-D versions in the fixed
pattern cross, cross, cross, plain (down) / plain, cross, cross, cross (up); `use_first_frame` is False
for the base network and True for interpolation; interpolation has in_channels 8 (noisy latent +
conditioning latent). Everything else comes from the file or the constructor's defaults.

`UNetConfig.from_json_dict` reads such a file, with 2-D or 3-D block type names (a 2-D name maps to its
3-D twin, which for SD1.4's file gives exactly the official override), and applies the network's fixed
overrides. Fields LaVie never sets are accepted only at their default value.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

NETWORKS = ("base_unet", "interp_unet")

# Stable Diffusion 1.4, unet/config.json: the file both official networks are built from.
SD14_UNET_CONFIG: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.2.2",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

_DOWN_KINDS = {
    "CrossAttnDownBlock3D": "cross", "CrossAttnDownBlock2D": "cross", "DownBlock3D": "plain", "DownBlock2D": "plain",
}
_UP_KINDS = {"CrossAttnUpBlock3D": "cross", "CrossAttnUpBlock2D": "cross", "UpBlock3D": "plain", "UpBlock2D": "plain"}
_DOWN_NAMES = {"cross": "CrossAttnDownBlock3D", "plain": "DownBlock3D"}
_UP_NAMES = {"cross": "CrossAttnUpBlock3D", "plain": "UpBlock3D"}
_MID_TYPES = ("UNetMidBlock3DCrossAttn", "UNetMidBlock2DCrossAttn")

# Constructor options of the official UNet that LaVie leaves at their defaults; other values are refused.
_FIXED_DEFAULTS: dict[str, Any] = {
    "act_fn": "silu",
    "center_input_sample": False,
    "only_cross_attention": False,
    "dual_cross_attention": False,
    "use_linear_projection": False,
    "class_embed_type": None,
    "num_class_embeds": None,
    "upcast_attention": False,
    "resnet_time_scale_shift": "default",
    "use_relative_position": False,
}
# Read by the official constructor but without effect on the network.
_IGNORED = ("_class_name", "_diffusers_version", "_name_or_path", "sample_size", "mid_block_type")


@dataclass(frozen=True)
class UNetConfig:
    network: str
    in_channels: int
    out_channels: int
    block_out_channels: tuple[int, ...]
    down_block_kinds: tuple[str, ...]  # "cross" (resnet + transformer) or "plain" (resnets only)
    up_block_kinds: tuple[str, ...]
    layers_per_block: int
    attention_head_dim: int | tuple[int, ...]  # the diffusers-0.16 name: it is the number of HEADS
    cross_attention_dim: int
    norm_num_groups: int
    norm_eps: float
    flip_sin_to_cos: bool
    freq_shift: int
    downsample_padding: int
    mid_block_scale_factor: float
    use_first_frame: bool  # False: base network; True: interpolation (sparse-causal spatial attention)

    def heads_per_block(self) -> tuple[int, ...]:
        n = len(self.block_out_channels)
        if isinstance(self.attention_head_dim, int):
            return (self.attention_head_dim,) * n
        return self.attention_head_dim

    @classmethod
    def from_json_dict(cls, d: dict[str, Any], network: str) -> "UNetConfig":
        if network not in NETWORKS:
            raise ValueError(f"network: {network!r} is not one of {NETWORKS}")
        known = set(_FIXED_DEFAULTS) | set(_IGNORED) | {f for f in cls.__dataclass_fields__ if f != "network"}
        known |= {"down_block_types", "up_block_types"}
        known -= {"down_block_kinds", "up_block_kinds"}
        for key, value in d.items():
            if key not in known:
                raise ValueError(f"unet config: unknown field {key!r}")
            if key in _FIXED_DEFAULTS and value != _FIXED_DEFAULTS[key]:
                allowed = _FIXED_DEFAULTS[key]
                raise ValueError(f"unet config: {key}={value!r} is not supported (LaVie uses {allowed!r})")
        if d.get("mid_block_type", _MID_TYPES[0]) not in _MID_TYPES:
            raise ValueError(f"unet config: mid_block_type must be one of {_MID_TYPES}")
        down = tuple(_kind(_DOWN_KINDS, name, "down_block_types") for name in d["down_block_types"])
        up = tuple(_kind(_UP_KINDS, name, "up_block_types") for name in d["up_block_types"])
        heads = d.get("attention_head_dim", 8)
        cfg = cls(
            network=network,
            in_channels=8 if network == "interp_unet" else int(d.get("in_channels", 4)),
            out_channels=int(d.get("out_channels", 4)),
            block_out_channels=tuple(int(c) for c in d["block_out_channels"]),
            down_block_kinds=down,
            up_block_kinds=up,
            layers_per_block=int(d.get("layers_per_block", 2)),
            attention_head_dim=heads if isinstance(heads, int) else tuple(int(h) for h in heads),
            cross_attention_dim=int(d["cross_attention_dim"]),
            norm_num_groups=int(d.get("norm_num_groups", 32)),
            norm_eps=float(d.get("norm_eps", 1e-5)),
            flip_sin_to_cos=bool(d.get("flip_sin_to_cos", True)),
            freq_shift=int(d.get("freq_shift", 0)),
            downsample_padding=int(d.get("downsample_padding", 1)),
            mid_block_scale_factor=float(d.get("mid_block_scale_factor", 1)),
            use_first_frame=network == "interp_unet",
        )
        cfg.validate()
        return cfg

    @classmethod
    def from_json_file(cls, path: str | Path, network: str) -> "UNetConfig":
        return cls.from_json_dict(json.loads(Path(path).read_text()), network)

    def validate(self) -> None:
        n = len(self.block_out_channels)
        if len(self.down_block_kinds) != n or len(self.up_block_kinds) != n:
            raise ValueError(f"unet config: {n} block_out_channels need {n} down_block_types and up_block_types")
        if tuple(reversed(self.down_block_kinds)) != self.up_block_kinds:
            raise ValueError("unet config: up_block_types must mirror down_block_types")
        heads = self.heads_per_block()
        if len(heads) != n:
            raise ValueError(f"unet config: attention_head_dim needs one head count per block ({n})")
        for width, h in zip(self.block_out_channels, heads):
            if width % self.norm_num_groups:
                raise ValueError(
                    f"unet config: width {width} is not divisible by norm_num_groups {self.norm_num_groups}"
                )
            if self.network == "base_unet" and width // h < 32:
                raise ValueError(
                    f"unet config: base network head dim {width}//{h} < 32 (the rotary embedding rotates 32 dims)"
                )

    def to_json_dict(self) -> dict[str, Any]:
        """The config as the official constructor receives it (after LaVie's overrides), diffusers style."""
        d = asdict(self)
        d.pop("network")
        kinds_down, kinds_up = d.pop("down_block_kinds"), d.pop("up_block_kinds")
        heads = d["attention_head_dim"]
        return {
            "_class_name": "UNet3DConditionModel",
            **d,
            "attention_head_dim": heads if isinstance(heads, int) else list(heads),
            "block_out_channels": list(self.block_out_channels),
            "down_block_types": [_DOWN_NAMES[k] for k in kinds_down],
            "up_block_types": [_UP_NAMES[k] for k in kinds_up],
            "mid_block_type": _MID_TYPES[0],
            **_FIXED_DEFAULTS,
        }


def _kind(table: dict[str, str], name: str, field: str) -> str:
    if name not in table:
        raise ValueError(f"unet config: {field} entry {name!r} is not one of {sorted(table)}")
    return table[name]


def sd14_config(network: str) -> UNetConfig:
    """The published network's config: SD1.4's UNet file with LaVie's overrides."""
    return UNetConfig.from_json_dict(SD14_UNET_CONFIG, network)
