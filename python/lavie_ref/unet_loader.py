"""Builds a LaVie UNet from its config and loads a published (or golden) checkpoint into it, strictly."""

from pathlib import Path

from .configs import UNetConfig
from .unet_base import BaseUNet
from .unet_common import VideoUNet, load_official_checkpoint
from .unet_interp import InterpUNet


def build_unet(cfg: UNetConfig) -> VideoUNet:
    return BaseUNet(cfg) if cfg.network == "base_unet" else InterpUNet(cfg)


def load_unet(config_path: str | Path, checkpoint_path: str | Path, network: str) -> VideoUNet:
    """config.json (diffusers format, SD1.4's file or a LaVie-style 3-D one) + official .pt -> eval-mode UNet."""
    model = build_unet(UNetConfig.from_json_file(config_path, network))
    model.load_state_dict(load_official_checkpoint(checkpoint_path), strict=True)
    return model.eval()
