"""LaVie's interpolation sampler, written from its description: a 1000-step linear-beta diffusion
thinned to `count` kept timesteps (guided-diffusion style respacing), sampled with DDIM.

Facts it encodes (measured against the official interpolation/diffusion code, see the samplers report):
- kept timesteps: a single section of `count` steps over 0..N-1; the i-th is round(i * stride) where
  the fractional index is accumulated by repeated float addition of stride = (N-1)/(count-1) and
  Python's round() rounds halves to even. For N=1000, count=50: 0, 20, 41, 61, 82, ..., 979, 999.
- the thinned chain has its own betas 1 - ab[k]/ab[k_prev] (ab_prev = 1 before the first kept step);
  its alpha-bars are recomputed as the cumulative product of (1 - those betas), all in float64.
- the model sees the ORIGINAL timestep (999, 979, ..., 20, 0), not the chain index.
- DDIM step (eta default 0): eps is re-derived from the (optionally clipped) x0 prediction; after the
  last kept step (t=0) the previous alpha-bar is 1, so the last step returns x0.
Only epsilon prediction is modelled here (LaVie's interpolation UNet predicts epsilon).
"""

from __future__ import annotations

import numpy as np


def linear_alphas_cumprod(num_train: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """alpha-bar of a linear beta schedule, float64."""
    betas = np.linspace(beta_start, beta_end, num_train, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def kept_timesteps(num_train: int, count: int) -> list[int]:
    """Ascending original timesteps kept by a single-section respacing to `count` steps."""
    if not 1 <= count <= num_train:
        raise ValueError(f"count must be in 1..{num_train}, got {count}")
    stride = 1.0 if count == 1 else (num_train - 1) / (count - 1)
    kept: list[int] = []
    position = 0.0
    for _ in range(count):
        kept.append(round(position))  # half to even, on the accumulated float
        position += stride
    return kept


def thinned_alphas_cumprod(alphas_cumprod: np.ndarray, kept: list[int]) -> np.ndarray:
    """Alpha-bars of the thinned chain: betas from ratios of kept alpha-bars, then their cumulative product."""
    chain_betas = []
    previous = 1.0
    for t in kept:
        chain_betas.append(1.0 - alphas_cumprod[t] / previous)
        previous = alphas_cumprod[t]
    return np.cumprod(1.0 - np.asarray(chain_betas, dtype=np.float64))


class RespacedDDIM:
    """DDIM over a respaced chain. Steps run from chain index count-1 down to 0 (step i uses index count-1-i)."""

    def __init__(
        self,
        count: int,
        num_train: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        eta: float = 0.0,
        clip_x0: bool = False,
    ):
        self.kept = kept_timesteps(num_train, count)
        self.chain = thinned_alphas_cumprod(linear_alphas_cumprod(num_train, beta_start, beta_end), self.kept)
        self.eta = eta
        self.clip_x0 = clip_x0

    @property
    def timesteps(self) -> list[int]:
        """What the model is called with, in sampling order (original timesteps, descending)."""
        return self.kept[::-1]

    def alpha_bars(self, step: int) -> tuple[float, float]:
        """(alpha-bar, previous alpha-bar) of sampling step `step` (0 = noisiest)."""
        k = len(self.kept) - 1 - step
        return float(self.chain[k]), (float(self.chain[k - 1]) if k > 0 else 1.0)

    def step(
        self, step: int, sample: np.ndarray, eps: np.ndarray, noise: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One DDIM step in float64: returns (previous sample, predicted x0)."""
        ab, ab_prev = self.alpha_bars(step)
        x = np.asarray(sample, dtype=np.float64)
        x0 = np.sqrt(1.0 / ab) * x - np.sqrt(1.0 / ab - 1.0) * np.asarray(eps, dtype=np.float64)
        if self.clip_x0:
            x0 = np.clip(x0, -1.0, 1.0)
        eps_from_x0 = (np.sqrt(1.0 / ab) * x - x0) / np.sqrt(1.0 / ab - 1.0)
        sigma = self.eta * np.sqrt((1.0 - ab_prev) / (1.0 - ab)) * np.sqrt(1.0 - ab / ab_prev)
        prev = np.sqrt(ab_prev) * x0 + np.sqrt(1.0 - ab_prev - sigma**2) * eps_from_x0
        if sigma > 0:
            if noise is None:
                raise ValueError(f"step {step} is stochastic (eta {self.eta}): pass its noise")
            prev = prev + sigma * np.asarray(noise, dtype=np.float64)
        return prev, x0
