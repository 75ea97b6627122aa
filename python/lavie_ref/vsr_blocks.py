"""Layers of the LaVie video super-resolution UNet (see unet_vsr.py), in the official state-dict layout.

Tensors are video-shaped [B, C, F, H, W] unless said otherwise. Two kinds of normalisation appear:
GroupNorm applied to the 5-D tensor (statistics over channels-in-group x frames x H x W, i.e. shared by
all frames of a clip) and GroupNorm applied per frame (frames folded into the batch); each class says
which one it uses. Attribute names are the checkpoint's key names.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def fold_frames(x: torch.Tensor) -> torch.Tensor:
    """[B, C, F, H, W] -> [B*F, C, H, W] (frame index varies fastest)."""
    b, c, f, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def unfold_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """[B*F, C, H, W] -> [B, C, F, H, W]."""
    bf, c, h, w = x.shape
    return x.reshape(bf // frames, frames, c, h, w).permute(0, 2, 1, 3, 4)


class FrameConv(nn.Conv2d):
    """A 2-D convolution applied to every frame independently (weight [out, in, k, k])."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return unfold_frames(super().forward(fold_frames(x)), x.shape[2])


class ClipResBlock(nn.Module):
    """Resnet with a time embedding: 3x3 convs per frame, GroupNorm statistics over the whole clip.

    out = (shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))) + time_emb_proj(silu(temb)))))) / scale
    Keys: norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut (1x1, only when widths differ).
    """

    def __init__(self, cin: int, cout: int, temb_dim: int, groups: int, eps: float, out_scale: float = 1.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = FrameConv(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = FrameConv(cout, cout, 3, padding=1)
        self.conv_shortcut = FrameConv(cin, cout, 1) if cin != cout else None
        self.out_scale = out_scale

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return (skip + h) / self.out_scale


class FrameAxisResBlock(nn.Module):
    """Resnet whose convolutions run along the frame axis only (Conv3d kernels (k,1,1) and (3,1,1), zero
    padding (k-1)/2 and 1 on frames, none in space), GroupNorm (official: 32 groups) over the whole clip.

    out = x + conv2(silu(norm2(conv1(silu(norm1(x))) [+ time_emb_proj(silu(temb))])))
    Keys: norm1, conv1 [C, C, k, 1, 1], time_emb_proj (only with a time embedding), norm2, conv2 [C, C, 3, 1, 1].
    """

    def __init__(self, channels: int, kernel_frames: int, temb_dim: int | None, groups: int = 32, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels, eps=eps)
        self.conv1 = nn.Conv3d(channels, channels, (kernel_frames, 1, 1), padding=((kernel_frames - 1) // 2, 0, 0))
        self.time_emb_proj = nn.Linear(temb_dim, channels) if temb_dim is not None else None
        self.norm2 = nn.GroupNorm(groups, channels, eps=eps)
        self.conv2 = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            assert temb is not None
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None, None]
        return x + self.conv2(F.silu(self.norm2(h)))


class Downsampler(nn.Module):
    """3x3 conv with stride 2 per frame. Key: conv."""

    def __init__(self, channels: int, padding: int):
        super().__init__()
        self.conv = FrameConv(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsampler(nn.Module):
    """Nearest-neighbour x2 in H and W (or to an explicit [F, H, W]), then a 3x3 conv per frame. Key: conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = FrameConv(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int, int] | None = None) -> torch.Tensor:
        if size is None:
            x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[N, L, heads*d] -> [N, heads, L, d]."""
    n, length, dim = x.shape
    return x.reshape(n, length, heads, dim // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    n, heads, length, d = x.shape
    return x.transpose(1, 2).reshape(n, length, heads * d)


class Attention(nn.Module):
    """Multi-head attention over tokens [N, L, C]; keys/values from `context` ([N, S, ctx_dim]) or from x.

    softmax(q k^T * d^-0.5) v, heads split as (heads, d) along channels. Keys: to_q, to_k, to_v (no bias),
    to_out.0 (with bias).
    """

    def __init__(self, dim: int, heads: int, ctx_dim: int | None = None):
        super().__init__()
        ctx_dim = dim if ctx_dim is None else ctx_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(ctx_dim, dim, bias=False)
        self.to_v = nn.Linear(ctx_dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        src = x if context is None else context
        q = _split_heads(self.to_q(x), self.heads)
        k = _split_heads(self.to_k(src), self.heads)
        v = _split_heads(self.to_v(src), self.heads)
        scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        return self.to_out[0](_merge_heads(scores.softmax(dim=-1) @ v))


class RotaryFreqs(nn.Module):
    """Rotary position embedding over frame positions. Key: freqs [rot_dim/2] (a saved, frozen parameter,
    1 / 10000^(2i/rot_dim) at creation; the loaded values are used).

    Position p rotates the pair (2i, 2i+1) of the first rot_dim channels of each head by angle p*freqs[i]:
    (a, b) -> (a cos - b sin, b cos + a sin). Channels past rot_dim are left as they are.
    """

    def __init__(self, rot_dim: int = 32):
        super().__init__()
        inv = 1.0 / (10000 ** (torch.arange(0, rot_dim, 2)[: rot_dim // 2].float() / rot_dim))
        self.freqs = nn.Parameter(inv, requires_grad=False)

    def rotate(self, t: torch.Tensor) -> torch.Tensor:
        """t: [..., L, d] with d >= rot_dim; position = index along L."""
        rot = 2 * self.freqs.shape[0]
        if t.shape[-1] < rot:
            raise ValueError(f"rotary embedding needs a head dim >= {rot}, got {t.shape[-1]}")
        pos = torch.arange(t.shape[-2], device=t.device, dtype=self.freqs.dtype)
        angle = (pos[:, None] * self.freqs[None, :]).repeat_interleave(2, dim=-1).to(t.dtype)
        head, rest = t[..., :rot], t[..., rot:]
        pairs = head.reshape(*head.shape[:-1], rot // 2, 2)
        swapped = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).reshape(head.shape)
        return torch.cat((head * angle.cos() + swapped * angle.sin(), rest), dim=-1)


def frame_distance_buckets(frames: int, num_buckets: int = 32, max_distance: int = 32) -> torch.Tensor:
    """T5-style bucket [F, F] of the offset between query frame i and key frame j (d = i - j).

    Half the buckets are for keys at or before the query (d >= 0), half (offset num_buckets/2) for keys
    after it. Within a half: |d| itself below num_buckets/4, beyond that a logarithmic bucket up to
    max_distance, capped at the half's last bucket.
    """
    pos = torch.arange(frames, dtype=torch.long)
    d = pos[:, None] - pos[None, :]
    half = num_buckets // 2
    exact = half // 2
    dist = d.abs()
    far = exact + (
        torch.log(dist.clamp(min=1).float() / exact) / math.log(max_distance / exact) * (half - exact)
    ).long()
    far = far.clamp(max=half - 1)
    return (d < 0).long() * half + torch.where(dist < exact, dist, far)


class FrameDistanceBias(nn.Module):
    """Learned additive attention bias per head and frame-offset bucket. Key: relative_attention_bias
    [32, heads] (buckets of frame_distance_buckets with max_distance 32)."""

    def __init__(self, heads: int, num_buckets: int = 32, max_distance: int = 32):
        super().__init__()
        self.max_distance = max_distance
        self.relative_attention_bias = nn.Embedding(num_buckets, heads)

    def forward(self, frames: int) -> torch.Tensor:
        """-> [heads, F, F]."""
        buckets = frame_distance_buckets(frames, self.relative_attention_bias.num_embeddings, self.max_distance)
        return self.relative_attention_bias(buckets.to(self.relative_attention_bias.weight.device)).permute(2, 0, 1)


class FrameAttention(nn.Module):
    """Self-attention along the frame axis: tokens [N, F, C] (N = batch x spatial positions).

    q is scaled by d^-0.5, q and k are rotated by the shared rotary embedding (positions 0..F-1), then
    softmax(q k^T + bias[h, i, j]) v. Keys: to_q, to_k, to_v, to_out.0, time_rel_pos_bias.
    relative_attention_bias, rotary_emb.freqs (an alias of the UNet's temporal_rotary_emb.freqs).
    """

    def __init__(self, dim: int, heads: int, rotary: RotaryFreqs):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        self.time_rel_pos_bias = FrameDistanceBias(heads)
        self.rotary_emb = rotary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = _split_heads(self.to_q(x), self.heads)
        q = self.rotary_emb.rotate(q * q.shape[-1] ** -0.5)
        k = self.rotary_emb.rotate(_split_heads(self.to_k(x), self.heads))
        v = _split_heads(self.to_v(x), self.heads)
        scores = q @ k.transpose(-1, -2) + self.time_rel_pos_bias(x.shape[1])
        return self.to_out[0](_merge_heads(scores.softmax(dim=-1) @ v))


class GegluProj(nn.Module):
    """Key: proj [2*inner, dim]; out = a * gelu(g) with (a, g) the two halves of proj(x) (exact erf gelu)."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, g = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(g)


class FeedForward(nn.Module):
    """GEGLU MLP with hidden width 4*dim. Keys: net.0.proj, net.2 (net.1 is a parameterless dropout)."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.ModuleList([GegluProj(dim, 4 * dim), nn.Identity(), nn.Linear(4 * dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class TransformerBlock(nn.Module):
    """Tokens [B*F, H*W, C] of each frame: attn1 (self-attention, or cross-attention to the text when
    only_cross) -> attn2 (cross-attention to the text) -> attn_temporal over frames at each position ->
    GEGLU feed-forward; each sub-layer is pre-LayerNorm (eps 1e-5) with a residual add.
    Keys: attn1, norm1, attn2, norm2, attn_temporal, norm_temporal, ff, norm3.
    """

    def __init__(self, dim: int, heads: int, ctx_dim: int, only_cross: bool, rotary: RotaryFreqs):
        super().__init__()
        self.only_cross = only_cross
        self.attn1 = Attention(dim, heads, ctx_dim if only_cross else None)
        self.norm1 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, ctx_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn_temporal = FrameAttention(dim, heads, rotary)
        self.norm_temporal = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, text: torch.Tensor, frames: int) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x), text if self.only_cross else None)
        x = x + self.attn2(self.norm2(x), text)
        bf, hw, c = x.shape
        t = x.reshape(bf // frames, frames, hw, c).transpose(1, 2).reshape(-1, frames, c)
        t = t + self.attn_temporal(self.norm_temporal(t))
        x = t.reshape(bf // frames, hw, frames, c).transpose(1, 2).reshape(bf, hw, c)
        return x + self.ff(self.norm3(x))


class VideoTransformer(nn.Module):
    """attentions.M of a cross-attention block, on [B, C, F, H, W] with text [B, L, D]:
    x = resblock_temporal(x) (FrameAxisResBlock, kernel 3, no time embedding); then per frame
    out = x + proj_out(block(proj_in(tokens(norm(x))))) with norm a GroupNorm(groups, eps 1e-6) per frame.
    Keys: resblock_temporal, norm, proj_in [C, C], transformer_blocks.0, proj_out [C, C].
    """

    def __init__(self, channels: int, heads: int, ctx_dim: int, groups: int, only_cross: bool, rotary: RotaryFreqs,
                 temporal_groups: int = 32):
        super().__init__()
        self.resblock_temporal = FrameAxisResBlock(channels, 3, None, groups=temporal_groups)
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(channels, heads, ctx_dim, only_cross, rotary)])
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        x = fold_frames(self.resblock_temporal(x))
        tokens = self.proj_in(self.norm(x).permute(0, 2, 3, 1).reshape(b * f, h * w, c))
        tokens = self.transformer_blocks[0](tokens, text.repeat_interleave(f, dim=0), f)
        out = self.proj_out(tokens).reshape(b * f, h, w, c).permute(0, 3, 1, 2)
        return unfold_frames(out + x, f)


class TemporalModule(nn.Module):
    """down_temporal_blocks.i / mid_temporal_block / up_temporal_blocks.i:
    out = x + shift_conv(resblocks_3d_s(resblocks_3d_t(x, temb), temb)), where resblocks_3d_t is a
    FrameAxisResBlock (kernel 5, time embedding, GroupNorm `groups`, eps 1e-6), resblocks_3d_s a ClipResBlock
    (GroupNorm `groups`, eps 1e-6) and shift_conv a 1x1 conv per frame. The official code fixes groups at 32.
    """

    def __init__(self, channels: int, temb_dim: int, groups: int = 32):
        super().__init__()
        self.resblocks_3d_t = FrameAxisResBlock(channels, 5, temb_dim, groups=groups)
        self.resblocks_3d_s = ClipResBlock(channels, channels, temb_dim, groups=groups, eps=1e-6)
        self.shift_conv = FrameConv(channels, channels, 1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return x + self.shift_conv(self.resblocks_3d_s(self.resblocks_3d_t(x, temb), temb))


class NoTemporalModule(nn.Module):
    """Placeholder for a level without a temporal module (no parameters)."""

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return x
