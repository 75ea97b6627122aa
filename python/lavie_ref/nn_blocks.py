"""Building blocks shared by the LaVie video UNets (base and interpolation).

Video tensors are [B, C, F, H, W]. Convolutions are 2-D and see one frame at a time; the resnets'
GroupNorms see the whole clip (their statistics cover every frame). Attribute names are the ones the
published checkpoints use, so `load_state_dict` takes them without renaming.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class FrameConv2d(nn.Conv2d):
    """A 2-D convolution applied to every frame of a [B, C, F, H, W] clip (frames folded into the batch)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        y = super().forward(x.transpose(1, 2).reshape(b * f, c, h, w))
        return y.reshape(b, f, *y.shape[1:]).transpose(1, 2)


class ResnetBlock(nn.Module):
    """norm1 -> SiLU -> conv1 -> + time projection -> norm2 -> SiLU -> conv2, plus a (1x1-projected) skip.

    norm1/norm2 are GroupNorms over the 5-D tensor, so each group's mean and variance span all frames.
    """

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, groups: int, eps: float,
                 output_scale_factor: float = 1.0):
        super().__init__()
        self.output_scale_factor = output_scale_factor
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = FrameConv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.conv2 = FrameConv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = FrameConv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return (skip + h) / self.output_scale_factor


class Downsample(nn.Module):
    """3x3 convolution with stride 2 on every frame."""

    def __init__(self, channels: int, padding: int = 1):
        super().__init__()
        self.conv = FrameConv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 in H and W (frames untouched), or to an explicit (F, H, W), then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = FrameConv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int, int] | None = None) -> torch.Tensor:
        if size is None:
            x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)


def timestep_features(timesteps: torch.Tensor, dim: int, flip_sin_to_cos: bool, freq_shift: float,
                      max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features [N, dim] of timesteps [N]: angle_k = t * exp(-ln(max_period) * k / (dim/2 - shift)),
    k < dim/2; [sin | cos], or [cos | sin] when flip_sin_to_cos; zero-padded to an odd dim."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(exponent / (half - freq_shift))
    angles = timesteps[:, None].float() * freqs[None, :]
    sin, cos = torch.sin(angles), torch.cos(angles)
    emb = torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)
    return F.pad(emb, (0, dim % 2))


class TimestepEmbedding(nn.Module):
    """linear_1 -> SiLU -> linear_2 on the sinusoidal features."""

    def __init__(self, in_dim: int, embed_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, embed_dim)
        self.linear_2 = nn.Linear(embed_dim, embed_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(features)))


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[N, L, heads*D] -> [N, heads, L, D]."""
    n, length, inner = x.shape
    return x.reshape(n, length, heads, inner // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[N, heads, L, D] -> [N, L, heads*D]."""
    n, heads, length, d = x.shape
    return x.transpose(1, 2).reshape(n, length, heads * d)


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                      bias: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(scale * q k^T + bias) v on [N, heads, L, D] tensors."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if bias is not None:
        scores = scores + bias
    return torch.matmul(scores.softmax(dim=-1), v)


class Attention(nn.Module):
    """Multi-head attention: to_q/to_k/to_v without bias, to_out.0 with bias, scale 1/sqrt(head_dim).

    Keys and values come from `context` when given (text cross-attention), else from the input itself.
    """

    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: int | None = None):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.scale = head_dim**-0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim)])

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        """Projected q [N, Lq, inner], k/v [N, Lk, inner] -> output projection [N, Lq, query_dim]."""
        h = self.heads
        out = softmax_attention(split_heads(q, h), split_heads(k, h), split_heads(v, h), self.scale, bias)
        return self.to_out[0](merge_heads(out))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        kv = x if context is None else context
        return self.attend(self.to_q(x), self.to_k(kv), self.to_v(kv))


class GEGLU(nn.Module):
    """proj -> halves (value, gate) -> value * gelu(gate) (exact, erf-based GELU)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """net.0 = GEGLU(dim -> 4*dim), net.1 = dropout (no weights), net.2 = Linear(4*dim -> dim)."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Dropout(dropout), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class RotaryEmbedding(nn.Module):
    """Rotary position embedding over the frame axis, on the first `dim` features of each head.

    `freqs` [dim/2] is a saved (not trained) parameter: freqs_k = 10000^(-2k/dim). Frame p rotates the
    interleaved pairs (x[2k], x[2k+1]) by the angle p * freqs_k:
    (x[2k], x[2k+1]) -> (x[2k] cos - x[2k+1] sin, x[2k+1] cos + x[2k] sin). Features past `dim` pass.
    """

    def __init__(self, dim: int = 32, theta: float = 10000.0):
        super().__init__()
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        self.freqs = nn.Parameter(freqs, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., F, D] with D >= dim -> rotated x."""
        rot = self.freqs.shape[0] * 2
        if x.shape[-1] < rot:
            raise ValueError(f"rotary embedding: head dim {x.shape[-1]} is smaller than the rotated dim {rot}")
        positions = torch.arange(x.shape[-2], device=x.device, dtype=self.freqs.dtype)
        angles = (positions[:, None] * self.freqs[None, :]).repeat_interleave(2, dim=-1).to(x)
        head, tail = x[..., :rot], x[..., rot:]
        pairs = head.reshape(*head.shape[:-1], -1, 2)
        swapped = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).reshape(head.shape)
        return torch.cat((head * angles.cos() + swapped * angles.sin(), tail), dim=-1)


class RelativePositionBias(nn.Module):
    """T5-style bias [heads, F, F] from a learned table relative_attention_bias [num_buckets, heads].

    For query frame i and key frame j, n = i - j. Keys after the query (n < 0) use buckets
    num_buckets/2 and up. With half = num_buckets/2 and exact = half/2: |n| < exact maps to |n|,
    otherwise to min(half - 1, exact + trunc(ln(|n|/exact) / ln(max_distance/exact) * (half - exact)))
    computed in float32.
    """

    def __init__(self, heads: int, num_buckets: int = 32, max_distance: int = 32):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.relative_attention_bias = nn.Embedding(num_buckets, heads)

    def buckets(self, frames: int, device: torch.device) -> torch.Tensor:
        pos = torch.arange(frames, dtype=torch.long, device=device)
        n = pos[:, None] - pos[None, :]
        half = self.num_buckets // 2
        exact = half // 2
        ret = (n < 0).long() * half
        n = n.abs()
        large = exact + (
            torch.log(n.float() / exact) / math.log(self.max_distance / exact) * (half - exact)
        ).long()
        large = torch.clamp(large, max=half - 1)
        return ret + torch.where(n < exact, n, large)

    def forward(self, frames: int, device: torch.device) -> torch.Tensor:
        return self.relative_attention_bias(self.buckets(frames, device)).permute(2, 0, 1)
