"""Forward diffusion as the cascade's samplers undo it (core/samplers/presets.ts):

  - every stage: 1000 training timesteps, betas linear 1e-4..0.02 (LaVie overrides the SD configs' betas);
    base and interpolation predict the noise (epsilon), VSR predicts v = sqrt(ab) eps - sqrt(1 - ab) x0;
  - VSR low-res augmentation: the x4 upscaler's low_res_scheduler, scaled_linear 1e-4..0.02, at an integer
    noise level that is also the UNet's class label (core/samplers/augment.ts).
"""

from __future__ import annotations

import torch

TIMESTEPS = 1000


def alphas_cumprod(schedule: str = "linear", start: float = 1e-4, end: float = 0.02) -> torch.Tensor:
    """alpha-bar[t], t = 0..999, in float64 (as diffusers computes it in float32 then casts: close enough)."""
    if schedule == "linear":
        betas = torch.linspace(start, end, TIMESTEPS, dtype=torch.float64)
    elif schedule == "scaled_linear":
        betas = torch.linspace(start**0.5, end**0.5, TIMESTEPS, dtype=torch.float64) ** 2
    else:
        raise ValueError(f"schedule: {schedule!r} is not linear or scaled_linear")
    return torch.cumprod(1 - betas, dim=0)


TRAIN_AB = alphas_cumprod("linear")
LOW_RES_AB = alphas_cumprod("scaled_linear")


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, ab: torch.Tensor = TRAIN_AB) -> torch.Tensor:
    """sqrt(ab[t]) x0 + sqrt(1 - ab[t]) noise, t [B] per batch row."""
    a = ab[t]
    return _bcast(a.sqrt(), x0) * x0 + _bcast((1 - a).sqrt(), x0) * noise


def v_target(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The v-prediction target sqrt(ab[t]) noise - sqrt(1 - ab[t]) x0."""
    a = TRAIN_AB[t]
    return _bcast(a.sqrt(), x0) * noise - _bcast((1 - a).sqrt(), x0) * x0


def posterior_sample(moments: torch.Tensor, noise: torch.Tensor, scale: float) -> torch.Tensor:
    """scale * (mean + exp(logvar / 2) noise) of VAE moments [..., 8, h, w] split on dim -3 (mean | logvar),
    logvar clamped to [-30, 20] as diffusers' DiagonalGaussianDistribution does."""
    mean, logvar = moments.float().chunk(2, dim=-3)
    return scale * (mean + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * noise)
