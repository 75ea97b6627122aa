"""LaVie's base text-to-video UNet (official key layout: base/models/unet.py of Vchitect/LaVie).

Each transformer block runs, on tokens of one frame at a time: spatial self-attention (attn1), text
cross-attention (attn2), then temporal self-attention (attn_temp) across the frames at each spatial
position, with rotary embedding and a relative position bias, then the GEGLU feed-forward. One rotary
module (and so one `freqs` tensor) is shared by every temporal attention of the network.
"""

import torch
from torch import nn

from .configs import UNetConfig
from .nn_blocks import (
    Attention,
    FeedForward,
    RelativePositionBias,
    RotaryEmbedding,
    merge_heads,
    softmax_attention,
    split_heads,
)
from .unet_common import VideoUNet


class TemporalAttention(Attention):
    """Self-attention over frames [N, F, dim]: q (pre-scaled) and k rotated by frame index, plus bias[h, i, j]."""

    def __init__(self, dim: int, heads: int, head_dim: int, rotary: RotaryEmbedding):
        super().__init__(dim, heads, head_dim)
        self.time_rel_pos_bias = RelativePositionBias(heads, num_buckets=32, max_distance=32)
        self.rotary_emb = rotary

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.heads
        q = self.rotary_emb(split_heads(self.to_q(x), h) * self.scale)
        k = self.rotary_emb(split_heads(self.to_k(x), h))
        v = split_heads(self.to_v(x), h)
        bias = self.time_rel_pos_bias(x.shape[1], x.device)
        return self.to_out[0](merge_heads(softmax_attention(q, k, v, 1.0, bias)))


class BaseTransformerBlock(nn.Module):
    """x += attn1(norm1(x)); x += attn2(norm2(x), text); per position over frames x += attn_temp(norm_temp(x));
    x += ff(norm3(x)). LayerNorms have eps 1e-5."""

    def __init__(self, dim: int, heads: int, head_dim: int, cross_dim: int, rotary: RotaryEmbedding):
        super().__init__()
        self.attn1 = Attention(dim, heads, head_dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, head_dim, context_dim=cross_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn_temp = TemporalAttention(dim, heads, head_dim, rotary)
        self.norm_temp = nn.LayerNorm(dim)
        nn.init.zeros_(self.attn_temp.to_out[0].weight)  # a new temporal layer starts as identity
        self.ff = FeedForward(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, text: torch.Tensor, frames: int) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), text) + x
        bf, d, c = x.shape
        b = bf // frames
        t = x.reshape(b, frames, d, c).transpose(1, 2).reshape(b * d, frames, c)  # (b f) d c -> (b d) f c
        t = self.attn_temp(self.norm_temp(t)) + t
        x = t.reshape(b, d, frames, c).transpose(1, 2).reshape(bf, d, c)
        return self.ff(self.norm3(x)) + x


class BaseUNet(VideoUNet):
    """forward(sample [B, 4, F, h, w], timestep [B], text [B, 77, 768]) -> noise prediction [B, 4, F, h, w]."""

    def __init__(self, cfg: UNetConfig):
        if cfg.use_first_frame:
            raise ValueError("BaseUNet: config has use_first_frame=True (that is the interpolation network)")
        rotary = RotaryEmbedding(32)

        def make_block(dim: int, heads: int, head_dim: int, cross_dim: int) -> nn.Module:
            return BaseTransformerBlock(dim, heads, head_dim, cross_dim, rotary)

        super().__init__(cfg, make_block)
