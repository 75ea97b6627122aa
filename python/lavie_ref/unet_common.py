"""The UNet skeleton shared by LaVie's base and interpolation networks (SD1.x layout inflated to video).

The two networks differ only in their transformer block (see unet_base.py and unet_interp.py); the
skeleton receives a `BlockFactory` that builds one block for a given width and head count.
"""

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .configs import UNetConfig
from .nn_blocks import Downsample, FrameConv2d, ResnetBlock, TimestepEmbedding, Upsample, timestep_features

# (dim, heads, head_dim, cross_attention_dim) -> transformer block; the block's forward takes
# (tokens [(B*F), H*W, dim], text [(B*F), L, cross_dim], frames) and returns tokens of the same shape.
BlockFactory = Callable[[int, int, int, int], nn.Module]


class Transformer3D(nn.Module):
    """GroupNorm (per frame, eps 1e-6) -> 1x1 proj_in -> transformer block(s) -> 1x1 proj_out, + input."""

    def __init__(self, channels: int, heads: int, groups: int, cross_dim: int, make_block: BlockFactory):
        super().__init__()
        head_dim = channels // heads
        inner = heads * head_dim
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList([make_block(inner, heads, head_dim, cross_dim)])
        self.proj_out = nn.Conv2d(inner, channels, 1)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * f, c, h, w)  # (b f) c h w: batch-major, frame-minor
        text = text.repeat_interleave(f, dim=0)  # the same text for every frame
        tokens = self.proj_in(self.norm(frames))
        inner = tokens.shape[1]
        tokens = tokens.permute(0, 2, 3, 1).reshape(b * f, h * w, inner)
        for block in self.transformer_blocks:
            tokens = block(tokens, text, f)
        tokens = tokens.reshape(b * f, h, w, inner).permute(0, 3, 1, 2)
        out = self.proj_out(tokens) + frames
        return out.reshape(b, f, c, h, w).transpose(1, 2)


class DownBlock(nn.Module):
    """`layers` resnets (each followed by a transformer when `heads` is set), then an optional downsampler.
    Returns the output and every intermediate state the up path concatenates back."""

    def __init__(self, cfg: UNetConfig, in_ch: int, out_ch: int, temb: int, heads: int | None,
                 downsample: bool, make_block: BlockFactory):
        super().__init__()
        g, eps = cfg.norm_num_groups, cfg.norm_eps
        if heads is not None:
            self.attentions = nn.ModuleList(
                [
                    Transformer3D(out_ch, heads, g, cfg.cross_attention_dim, make_block)
                    for _ in range(cfg.layers_per_block)
                ]
            )
        else:
            self.attentions = None
        self.resnets = nn.ModuleList(
            [ResnetBlock(in_ch if i == 0 else out_ch, out_ch, temb, g, eps) for i in range(cfg.layers_per_block)]
        )
        self.downsamplers = nn.ModuleList([Downsample(out_ch, cfg.downsample_padding)]) if downsample else None

    def forward(
        self, x: torch.Tensor, temb: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        states = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x, text)
            states.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            states.append(x)
        return x, states


class MidBlock(nn.Module):
    """resnets.0 -> attentions.0 -> resnets.1."""

    def __init__(self, cfg: UNetConfig, ch: int, temb: int, heads: int, make_block: BlockFactory):
        super().__init__()
        g, eps, s = cfg.norm_num_groups, cfg.norm_eps, cfg.mid_block_scale_factor
        self.attentions = nn.ModuleList([Transformer3D(ch, heads, g, cfg.cross_attention_dim, make_block)])
        self.resnets = nn.ModuleList([ResnetBlock(ch, ch, temb, g, eps, s), ResnetBlock(ch, ch, temb, g, eps, s)])

    def forward(self, x: torch.Tensor, temb: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x, temb)
        x = self.attentions[0](x, text)
        return self.resnets[1](x, temb)


class UpBlock(nn.Module):
    """`layers + 1` resnets, each on [x, popped skip] concatenated on channels (each followed by a
    transformer when `heads` is set), then an optional upsampler."""

    def __init__(self, cfg: UNetConfig, prev_ch: int, out_ch: int, skip_in_ch: int, temb: int, heads: int | None,
                 upsample: bool, make_block: BlockFactory):
        super().__init__()
        g, eps, n = cfg.norm_num_groups, cfg.norm_eps, cfg.layers_per_block + 1
        if heads is not None:
            self.attentions = nn.ModuleList(
                [Transformer3D(out_ch, heads, g, cfg.cross_attention_dim, make_block) for _ in range(n)]
            )
        else:
            self.attentions = None
        resnets = []
        for i in range(n):
            skip_ch = skip_in_ch if i == n - 1 else out_ch
            resnets.append(ResnetBlock((prev_ch if i == 0 else out_ch) + skip_ch, out_ch, temb, g, eps))
        self.resnets = nn.ModuleList(resnets)
        self.upsamplers = nn.ModuleList([Upsample(out_ch)]) if upsample else None

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor], temb: torch.Tensor, text: torch.Tensor,
                size: tuple[int, int, int] | None) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb)
            if self.attentions is not None:
                x = self.attentions[i](x, text)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, size)
        return x


class VideoUNet(nn.Module):
    """forward(sample [B, in, F, h, w], timestep [B] or scalar, text [B, L, cross_dim]) -> [B, out, F, h, w]."""

    def __init__(self, cfg: UNetConfig, make_block: BlockFactory):
        super().__init__()
        self.config = cfg
        widths = cfg.block_out_channels
        heads = cfg.heads_per_block()
        temb = widths[0] * 4
        self.conv_in = FrameConv2d(cfg.in_channels, widths[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(widths[0], temb)

        last = len(widths) - 1
        self.down_blocks = nn.ModuleList()
        for i, kind in enumerate(cfg.down_block_kinds):
            in_ch = widths[0] if i == 0 else widths[i - 1]
            block_heads = heads[i] if kind == "cross" else None
            self.down_blocks.append(DownBlock(cfg, in_ch, widths[i], temb, block_heads, i < last, make_block))

        self.up_blocks = nn.ModuleList()  # registered before mid_block: the official state-dict order
        self.mid_block = MidBlock(cfg, widths[-1], temb, heads[-1], make_block)

        rev, rev_heads = widths[::-1], heads[::-1]
        for i, kind in enumerate(cfg.up_block_kinds):
            prev_ch = rev[0] if i == 0 else rev[i - 1]
            skip_in_ch = rev[min(i + 1, last)]
            block_heads = rev_heads[i] if kind == "cross" else None
            self.up_blocks.append(UpBlock(cfg, prev_ch, rev[i], skip_in_ch, temb, block_heads, i < last, make_block))

        self.conv_norm_out = nn.GroupNorm(cfg.norm_num_groups, widths[0], eps=cfg.norm_eps)
        self.conv_out = FrameConv2d(widths[0], cfg.out_channels, 3, padding=1)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int, text: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
        features = timestep_features(timestep, cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift)
        temb = self.time_embedding(features.to(sample.dtype))

        # Latents that are not a multiple of 2^(number of upsamplers) upsample to the skip's exact size.
        factor = 2 ** (len(self.up_blocks) - 1)
        exact_sizes = any(s % factor for s in sample.shape[-2:])

        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, states = block(x, temb, text)
            skips.extend(states)
        x = self.mid_block(x, temb, text)
        for i, block in enumerate(self.up_blocks):
            taken = skips[-len(block.resnets):]
            del skips[-len(block.resnets):]
            size = tuple(skips[-1].shape[2:]) if exact_sizes and i < len(self.up_blocks) - 1 else None
            x = block(x, taken, temb, text, size)
        return self.conv_out(torch.nn.functional.silu(self.conv_norm_out(x)))


def load_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Reads a published LaVie .pt file as the official loader does: torch.load, then the "ema" entry
    when the file holds one, else the file itself as the state dict. Keys are used as they are."""
    checkpoint = torch.load(path, map_location="cpu")
    if not isinstance(checkpoint, dict):
        kind = type(checkpoint).__name__
        raise ValueError(f"{path}: expected a dict (a state dict or {{'ema': state dict}}), got {kind}")
    if "ema" in checkpoint:
        checkpoint = checkpoint["ema"]
    return checkpoint
