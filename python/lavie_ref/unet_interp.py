"""LaVie's temporal interpolation UNet (official key layout: interpolation/models/unet.py of Vchitect/LaVie).

Input channels 8: the noisy latent (4) followed by the conditioning latent (4). Each transformer block:
sparse-causal spatial attention (frame i attends to the tokens of frame 0 and frame i-1), text
cross-attention, the GEGLU feed-forward, and only then plain temporal self-attention over all frames
(no positional information).
"""

import torch
from torch import nn

from .configs import UNetConfig
from .nn_blocks import Attention, FeedForward
from .unet_common import VideoUNet


class SparseCausalAttention(Attention):
    """Queries of frame i; keys/values: the tokens of frame 0 followed by those of frame max(i-1, 0)."""

    def forward_frames(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        bf, n, _ = x.shape
        b = bf // frames
        previous = [0] + list(range(frames - 1))

        def gather(t: torch.Tensor) -> torch.Tensor:
            t = t.reshape(b, frames, n, t.shape[-1])
            return torch.cat([t[:, [0] * frames], t[:, previous]], dim=2).reshape(bf, 2 * n, t.shape[-1])

        return self.attend(self.to_q(x), gather(self.to_k(x)), gather(self.to_v(x)))


class InterpTransformerBlock(nn.Module):
    """x += attn1(norm1(x)) (sparse causal); x += attn2(norm2(x), text); x += ff(norm3(x));
    per position over frames x += attn_temp(norm_temp(x)). LayerNorms have eps 1e-5."""

    def __init__(self, dim: int, heads: int, head_dim: int, cross_dim: int):
        super().__init__()
        self.attn1 = SparseCausalAttention(dim, heads, head_dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, head_dim, context_dim=cross_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.attn_temp = Attention(dim, heads, head_dim)
        nn.init.zeros_(self.attn_temp.to_out[0].weight)  # a new temporal layer starts as identity
        self.norm_temp = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, text: torch.Tensor, frames: int) -> torch.Tensor:
        x = self.attn1.forward_frames(self.norm1(x), frames) + x
        x = self.attn2(self.norm2(x), text) + x
        x = self.ff(self.norm3(x)) + x
        bf, d, c = x.shape
        b = bf // frames
        t = x.reshape(b, frames, d, c).transpose(1, 2).reshape(b * d, frames, c)  # (b f) d c -> (b d) f c
        t = self.attn_temp(self.norm_temp(t)) + t
        return t.reshape(b, d, frames, c).transpose(1, 2).reshape(bf, d, c)


class InterpUNet(VideoUNet):
    """forward(sample [B, 8, F, h, w], timestep [B], text [B, 77, 768]) -> noise prediction [B, 4, F, h, w]."""

    def __init__(self, cfg: UNetConfig):
        if not cfg.use_first_frame:
            raise ValueError("InterpUNet: config has use_first_frame=False (that is the base network)")
        super().__init__(cfg, InterpTransformerBlock)
