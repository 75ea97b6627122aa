"""The two KL autoencoders: Stable Diffusion's x8 VAE (base and interpolation latents) and the x4 upscaler's
VAE (VSR latents; the cascade uses its decoder). diffusers 0.16.0 AutoencoderKL, trained from a seed on
world frames: loss = mean squared error of a posterior sample's decode + kl_weight * mean KL(posterior ||
N(0, 1)). (SD trains with L1 + perceptual + adversarial terms; on flat backgrounds with small objects L1
learned the background and left the objects as brown blobs, squared error weighs the large colour errors
of the objects more.) The posterior starts narrow (logvar bias LOGVAR_INIT, as in a trained VAE): started
at the prior's width, sampling noise swamped the latents for hundreds of steps and objects came out later.

The x4 VAE trains on random crops of the 4x frames (a convolutional network with one mid-block attention:
crops teach it the same local mapping at a fraction of the cost).

LaVie's code fixes the latent scale (0.18215 SD, 0.08333 x4) whatever the config says, so a trained VAE's
latents are matched to it afterwards, exactly: with m and s the per-channel mean and standard deviation of
the posterior means over training frames and a = 1 / (scale * s), quant_conv is changed so that the new
posterior is a * (z - m) (mean rows scaled and shifted, logvar + 2 ln a) and post_quant_conv so that it
reads the new latent as the old one (weights / a, bias + W m). Decoding is unchanged; scaled latents have
zero mean and unit variance per channel, as a diffusion model wants.
"""

from __future__ import annotations

import pathlib

import torch
from diffusers import AutoencoderKL

from .config import SD_VAE, X4_VAE, StageConfig
from .data import Clips
from .diffusion import posterior_sample


LOGVAR_INIT = -8.0


def build_vae(spec: dict, seed: int) -> AutoencoderKL:
    levels = len(spec["block_out_channels"])
    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * levels,
                        up_block_types=["UpDecoderBlock2D"] * levels, latent_channels=4, **spec)
    with torch.no_grad():
        vae.quant_conv.bias[4:] = LOGVAR_INIT
    return vae


def moments_of(vae: AutoencoderKL, x: torch.Tensor) -> torch.Tensor:
    """Posterior moments [N, 8, h, w] (mean | raw logvar) of frames [N, 3, H, W]."""
    return vae.quant_conv(vae.encoder(x))


def vae_loss(vae: AutoencoderKL, x: torch.Tensor, gen: torch.Generator, kl_weight: float) -> torch.Tensor:
    m = moments_of(vae, x)
    mean, logvar = m.chunk(2, dim=1)
    logvar = logvar.clamp(-30.0, 20.0)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen)
    rec = vae.decoder(vae.post_quant_conv(z))
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
    return (rec - x).pow(2).mean() + kl_weight * kl


def random_frames(clips: Clips, key: str, count: int, crop: int, gen: torch.Generator) -> torch.Tensor:
    """`count` frames [count, 3, c, c] (or whole frames when crop is 0) of random clips, frames and positions."""
    video = clips.videos[key]
    n, _, frames, height, width = video.shape
    ni = torch.randint(n, (count,), generator=gen).tolist()
    fi = torch.randint(frames, (count,), generator=gen).tolist()
    out = []
    for a, b in zip(ni, fi):
        frame = video[a, :, b]
        if crop:
            y = int(torch.randint(height - crop + 1, (1,), generator=gen))
            x = int(torch.randint(width - crop + 1, (1,), generator=gen))
            frame = frame[:, y:y + crop, x:x + crop]
        out.append(frame)
    return torch.stack(out).float()


def vae_step(vae: AutoencoderKL, clips: Clips, key: str, cfg: StageConfig):
    def step(gen: torch.Generator, _: int) -> torch.Tensor:
        return vae_loss(vae, random_frames(clips, key, cfg.batch, cfg.crop, gen), gen, cfg.kl_weight)

    return step


@torch.no_grad()
def normalise_latents(vae: AutoencoderKL, frames: torch.Tensor, scale: float, chunk: int = 8) -> dict:
    """Rescales `vae`'s latent space in place so that scale * (posterior mean) of `frames` has zero mean and
    unit standard deviation per channel. Returns the statistics, the mean posterior standard deviation (in
    scaled units: the noise a posterior sample adds) and the L1 error of decode(posterior mean), clamped."""
    parts = [moments_of(vae, frames[i:i + chunk].float()) for i in range(0, len(frames), chunk)]
    means, logvars = torch.cat([p[:, :4] for p in parts]), torch.cat([p[:, 4:] for p in parts])
    m = means.mean(dim=(0, 2, 3)).double()
    s = means.std(dim=(0, 2, 3)).double().clamp(min=1e-6)
    a = 1.0 / (scale * s)
    qc, pqc = vae.quant_conv, vae.post_quant_conv
    w, b = qc.weight.double(), qc.bias.double()
    w[:4] *= a[:, None, None, None]
    b[:4] = a * (b[:4] - m)
    b[4:] += 2 * torch.log(a)
    qc.weight.copy_(w)
    qc.bias.copy_(b)
    pw, pb = pqc.weight.double(), pqc.bias.double()
    pqc.bias.copy_(pb + pw[:, :, 0, 0] @ m)
    pqc.weight.copy_(pw / a[None, :, None, None])
    # The new posterior mean is a * (mean - m); decoding it must give what the old mean gave.
    new = ((means.double() - m[None, :, None, None]) * a[None, :, None, None]).float()
    err, obj_err, obj_n = 0.0, 0.0, 0
    for i in range(0, len(frames), chunk):
        x = frames[i:i + chunk].float()
        e = (vae.decoder(vae.post_quant_conv(new[i:i + chunk])).clamp(-1, 1) - x).abs()
        err += e.sum().item()
        mask = object_mask(x)
        obj_err += e[mask].sum().item()
        obj_n += int(mask.sum())
    post_std = (torch.exp(0.5 * logvars.clamp(-30, 20)).double() * a[None, :, None, None] * scale).mean(dim=(0, 2, 3))
    return {"raw_mean": m.tolist(), "raw_std": s.tolist(), "scaled_posterior_std": post_std.tolist(),
            "l1_error": err / frames.numel(), "object_l1_error": obj_err / max(obj_n, 1)}


def object_mask(x: torch.Tensor) -> torch.Tensor:
    """Pixels of coloured objects in world frames [N, 3, H, W] in [-1, 1] (backgrounds are achromatic:
    chroma = max - min over RGB above 0.3 of the [0, 1] range), broadcast to the 3 channels."""
    chroma = (x.max(dim=1).values - x.min(dim=1).values) / 2
    return (chroma > 0.3)[:, None].expand_as(x)


@torch.no_grad()
def encode_videos(vae: AutoencoderKL, video: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Posterior moments of every frame: [N, 3, F, H, W] -> float16 [N, F, 8, h, w]."""
    n, c, f, h, w = video.shape
    frames = video.permute(0, 2, 1, 3, 4).reshape(n * f, c, h, w)
    out = torch.cat([moments_of(vae, frames[i:i + chunk].float()).half() for i in range(0, n * f, chunk)])
    return out.reshape(n, f, *out.shape[1:])


def sample_latents(moments: torch.Tensor, gen: torch.Generator, scale: float) -> torch.Tensor:
    """Posterior samples of moments [B, F, 8, h, w], scaled: -> [B, 4, F, h, w] (the UNets' layout)."""
    noise = torch.randn((*moments.shape[:-3], 4, *moments.shape[-2:]), generator=gen)
    return posterior_sample(moments, noise, scale).transpose(1, 2)


def load_vae(folder: pathlib.Path) -> AutoencoderKL:
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}: no trained VAE (run its stage first)")
    return AutoencoderKL.from_pretrained(str(folder)).eval().requires_grad_(False)


SPECS = {"vae": (SD_VAE, "video"), "x4vae": (X4_VAE, "video_res4")}
