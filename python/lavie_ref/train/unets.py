"""Training steps of the three UNets, each conditioned exactly as the cascade conditions it at inference
(stage-runners/tasks/execute.ts):

  base    epsilon prediction on SD-VAE latents [B, 4, 16, 8, 8] (posterior samples x 0.18215), text from the
          jointly trained CLIP encoder; every `image_every`-th step is a batch of single frames (F = 1),
          LaVie's joint image-video training.
  interp  epsilon prediction on a window of the 61-frame clip at 4x the frame rate; input channels 4..7 hold
          the posterior-sampled latent of base frame min(15, floor((j + 1) / 4)) for output frame j (global
          index), as interpDenoise gathers them; prompt + ", 4k.".
  vsr     v prediction on x4-VAE latents (x 0.08333) of a chunk of frames and a spatial crop; the low-res RGB
          frames of the same crop, noise-augmented at a level drawn uniformly from 0..max_noise_level, which
          is also the class label.

Captions are replaced by the stage's unconditional prompt with probability cond_drop (classifier-free
guidance). Timesteps are uniform over 0..999.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import UNetConfig
from ..unet_loader import build_unet
from ..unet_vsr import VSRUNet, VSRUNetConfig
from .config import PROMPT_SUFFIX, SD_SCALE, SD_UNET_CONFIG, UNCOND_PROMPT, VSR_UNET_CONFIG, X4_SCALE, StageConfig
from .data import Clips, pick_captions, sample_index
from .diffusion import LOW_RES_AB, TIMESTEPS, add_noise, v_target
from .text import Tokens
from .vae import sample_latents

# Parameters LaVie initialises to zero (its temporal layers start as identities).
_ZERO_INIT = ("attn_temp.to_out.0", "attn_temporal.to_out.0", "shift_conv")


def build_sd_unet(network: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_unet(UNetConfig.from_json_dict(SD_UNET_CONFIG, network))


def build_vsr_unet(seed: int) -> VSRUNet:
    torch.manual_seed(seed)
    net = VSRUNet(VSRUNetConfig.from_json(VSR_UNET_CONFIG))
    with torch.no_grad():
        for name, module in net.named_modules():
            if name.endswith(_ZERO_INIT):
                for p in module.parameters(recurse=False):
                    p.zero_()
        if net.class_embedding is not None:
            net.class_embedding.weight.zero_()  # rows of unseen noise levels add nothing
    return net


def _text(encoder: nn.Module, tokens: Tokens, captions: list[str], train: bool) -> torch.Tensor:
    ids = tokens(captions)
    if train:
        return encoder(input_ids=ids).last_hidden_state
    with torch.no_grad():
        return encoder(input_ids=ids).last_hidden_state


def base_step(unet: nn.Module, text: nn.Module, tokens: Tokens, clips: Clips, moments: torch.Tensor,
              cfg: StageConfig, text_trainable: bool = True):
    """moments: SD-VAE posterior moments [N, 16, 8, h, w] of the clips."""

    def step(gen: torch.Generator, i: int) -> torch.Tensor:
        image_step = cfg.image_every > 0 and i % cfg.image_every == cfg.image_every - 1
        if image_step:
            idx = sample_index(len(clips), cfg.image_batch, gen)
            frame = torch.randint(moments.shape[1], (len(idx),), generator=gen)
            m = moments[idx, frame][:, None]  # [B, 1, 8, h, w]
        else:
            idx = sample_index(len(clips), cfg.batch, gen)
            m = moments[idx]
        x0 = sample_latents(m, gen, SD_SCALE)
        captions = pick_captions(clips, idx, gen, cfg.cond_drop, UNCOND_PROMPT["base"], PROMPT_SUFFIX["base"])
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(TIMESTEPS, (len(idx),), generator=gen)
        eps = unet(add_noise(x0, noise, t), t, _text(text, tokens, captions, text_trainable))
        return F.mse_loss(eps, noise)

    return step


def interp_condition(cond: torch.Tensor, start: int, frames: int) -> torch.Tensor:
    """cond [B, 4, 16, h, w] (one latent per base frame) -> [B, 4, frames, h, w] for output frames
    start..start+frames-1 of the 61-frame clip: output frame j takes base frame min(15, floor((j + 1) / 4))."""
    last = cond.shape[2] - 1
    pick = [min(last, (start + j + 1) // 4) for j in range(frames)]
    return cond[:, :, pick]


def interp_step(unet: nn.Module, text: nn.Module, tokens: Tokens, clips: Clips, base_moments: torch.Tensor,
                fps4_moments: torch.Tensor, cfg: StageConfig):
    """base_moments [N, 16, 8, h, w], fps4_moments [N, 61, 8, h, w]; cfg.frames output frames per window."""
    total = fps4_moments.shape[1]

    def step(gen: torch.Generator, _: int) -> torch.Tensor:
        idx = sample_index(len(clips), cfg.batch, gen)
        start = int(torch.randint(total - cfg.frames + 1, (1,), generator=gen))
        x0 = sample_latents(fps4_moments[idx, start:start + cfg.frames], gen, SD_SCALE)
        cond = interp_condition(sample_latents(base_moments[idx], gen, SD_SCALE), start, cfg.frames)
        captions = pick_captions(clips, idx, gen, cfg.cond_drop, UNCOND_PROMPT["interp"], PROMPT_SUFFIX["interp"])
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(TIMESTEPS, (len(idx),), generator=gen)
        sample = torch.cat([add_noise(x0, noise, t), cond], dim=1)
        eps = unet(sample, t, _text(text, tokens, captions, False))
        return F.mse_loss(eps, noise)

    return step


def vsr_step(unet: VSRUNet, text: nn.Module, tokens: Tokens, clips: Clips, moments: torch.Tensor,
             cfg: StageConfig):
    """moments: x4-VAE posterior moments [N, 16, 8, h, w] at the low-res size; clips.videos["video"] the
    low-res frames [N, 3, 16, h, w]. cfg.crop is in high-res pixels (4x the latent crop)."""
    low_all = clips.videos["video"]
    n, frames, _, h, w = moments.shape
    c = cfg.crop // 4 if cfg.crop else h
    max_level = unet.cfg.max_noise_level

    def step(gen: torch.Generator, _: int) -> torch.Tensor:
        idx = sample_index(n, cfg.batch, gen)
        ms, lows = [], []
        for a in idx.tolist():
            f0 = int(torch.randint(frames - cfg.frames + 1, (1,), generator=gen))
            y = int(torch.randint(h - c + 1, (1,), generator=gen))
            x = int(torch.randint(w - c + 1, (1,), generator=gen))
            ms.append(moments[a, f0:f0 + cfg.frames, :, y:y + c, x:x + c])
            lows.append(low_all[a, :, f0:f0 + cfg.frames, y:y + c, x:x + c])
        x0 = sample_latents(torch.stack(ms), gen, X4_SCALE)
        low = torch.stack(lows).float()
        level = torch.randint(max_level + 1, (len(idx),), generator=gen)
        low = add_noise(low, torch.randn(low.shape, generator=gen), level, LOW_RES_AB)
        captions = pick_captions(clips, idx, gen, cfg.cond_drop, UNCOND_PROMPT["vsr"], PROMPT_SUFFIX["vsr"])
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(TIMESTEPS, (len(idx),), generator=gen)
        v = unet(add_noise(x0, noise, t), t, low, _text(text, tokens, captions, False), level)
        return F.mse_loss(v, v_target(x0, noise, t))

    return step

