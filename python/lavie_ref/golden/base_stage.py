"""A whole base stage (text states -> final latent) of the random-weight download fixture, in PyTorch.

The loop is LaVie's base pipeline (base/pipelines/pipeline_videogen.py) on diffusers 0.16.0:
  latents = noise * scheduler.init_noise_sigma
  for i, t in enumerate(scheduler.timesteps):                     # DDPM 50 steps: 980, 960, ..., 0
      u, c = unet(cat([latents] * 2), t, [uncond; cond]).chunk(2)
      latents = scheduler.step(u + 7.5 * (c - u), t, latents).prev_sample
with the DDPMScheduler LaVie's sample.py builds (the fixture's stable-diffusion-v1-4/scheduler config with
linear betas 1e-4..0.02: fixed_small variance, epsilon prediction, no clipping, steps_offset not applied).
The UNet is lavie_ref's base UNet (equal to the official module, see golden/unets.py) loaded in float32
from test/golden/download/pretrained_models/lavie_base.pt with that folder's unet/config.json.

Every random draw is lavie-serve's position-keyed noise (lavie_ref.noise): the initial latent is keyed
(seed, "base/init", 0) and the noise DDPMScheduler.step would draw from torch's RNG at loop index i is
keyed (seed, "base/step", i), both over the whole latent [1, 4, F, h, w], so both sides see identical noise.

The loop runs twice. The reference (`latent`) runs the UNet in float64 and DDPMScheduler.step's own code
on float64 tables (betas, alphas_cumprod, `one`): diffusers 0.16.0 keeps those tables in float32, and in
the last steps (t <= 40) its float32 1 - alpha_bar[t] / alpha_bar[prev] is off by ~1e-5 relative, which
on latents of magnitude ~600 (random weights under CFG 7.5) moves the result by ~3e-3; lavie-serve plans
its coefficients in float64. `latent_float32` is the same loop as the pinned stack computes it (UNet,
latents and scheduler tables in float32), stored so the size of that effect stays visible.

Layout under out_dir:
  <case>/case.json             seed, frames, latent size, steps, guidance, timesteps, stored step indices
  <case>/inputs.safetensors    text_states [2, 77, 32] (row 0 unconditional), init_noise [1, 4, F, h, w]
  <case>/outputs.safetensors   latent (final, float64 reference), latent_float32 (final, float32 stack),
                               latents_at [k, 1, 4, F, h, w] (reference, after the listed steps),
                               model_output_step0 [2, 4, F, h, w] (the reference UNet's batched output at step 0)
  keyed_noise/keys.json, keyed_noise/values.safetensors   first values of several noise keys
Regenerate after the download fixture (it reads that fixture's weights).
"""

from __future__ import annotations

import json
import pathlib
import shutil

import torch
from safetensors.torch import save_file

from ..noise import keyed_noise, keyed_normals
from ..unet_loader import load_unet

ROOT = pathlib.Path(__file__).resolve().parents[3]
PRETRAINED = ROOT / "test" / "golden" / "download" / "pretrained_models"
SD = PRETRAINED / "stable-diffusion-v1-4"
LAVIE_BETAS = {"beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"}  # base/configs/sample.yaml
GUIDANCE = 7.5
TEXT_WIDTH = 32  # the fixture UNet's cross_attention_dim

# (case, seed, frames, latent height, latent width, steps, text seed)
CASES = [
    ("ddpm-50-f4", 1234, 4, 8, 8, 50, 1),
    ("ddpm-4-f5", 2**40 + 7, 5, 8, 8, 4, 2),
]
# Noise keys whose first values the TS port is checked against: (seed, stage, step, start, count).
NOISE_KEYS = [
    (0, "base/init", 0, 0, 64),
    (1234, "base/step", 48, 0, 64),
    (2**53 - 1, "base/init", 0, 0, 64),
    (2**64 - 1, "vsr/lowres", 0, 0, 64),
    (99, "interpolation/posterior", 7, 1001, 64),
    (5, "", 2**40, 3, 61),
]


def _scheduler(dtype: torch.dtype):
    """LaVie's base DDPMScheduler; with float64, its tables are rebuilt in float64 by the same formulas."""
    import diffusers
    from diffusers import DDPMScheduler

    assert diffusers.__version__ == "0.16.0", f"expected diffusers 0.16.0, got {diffusers.__version__}"
    s = DDPMScheduler.from_pretrained(str(SD), subfolder="scheduler", **LAVIE_BETAS)
    if dtype == torch.float64:
        c = s.config
        assert c.beta_schedule == "linear" and c.trained_betas is None
        s.betas = torch.linspace(c.beta_start, c.beta_end, c.num_train_timesteps, dtype=torch.float64)
        s.alphas = 1.0 - s.betas
        s.alphas_cumprod = torch.cumprod(s.alphas, dim=0)
        s.one = torch.tensor(1.0, dtype=torch.float64)
    return s


class _KeyedStepNoise:
    """Stands in for diffusers' randn_tensor inside DDPMScheduler.step: returns our keyed noise for the
    current loop index and records each call, so the case can say which steps drew noise."""

    def __init__(self, seed: int, shape: tuple[int, ...]):
        self.seed, self.shape, self.index, self.calls = seed, shape, -1, []

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        assert tuple(shape) == self.shape, f"step noise drawn in shape {tuple(shape)}, expected {self.shape}"
        self.calls.append(self.index)
        noise = keyed_noise(self.seed, "base/step", self.index, self.shape)
        return torch.from_numpy(noise).to(dtype or torch.float32)


def run_stage(unet, seed: int, shape: tuple[int, ...], steps: int, text: torch.Tensor, keep: list[int],
              dtype: torch.dtype) -> dict:
    """LaVie's base denoising loop with keyed noise, computed in `dtype`; returns the final latent and what
    the case stores."""
    import diffusers.schedulers.scheduling_ddpm as ddpm

    unet = unet.to(dtype)
    text = text.to(dtype)
    scheduler = _scheduler(dtype)
    scheduler.set_timesteps(steps)
    init = torch.from_numpy(keyed_noise(seed, "base/init", 0, shape))
    latents = init.to(dtype) * scheduler.init_noise_sigma
    drawn = _KeyedStepNoise(seed, shape)
    original = ddpm.randn_tensor
    ddpm.randn_tensor = drawn
    kept, first_output = [], None
    try:
        with torch.no_grad():
            for i, t in enumerate(scheduler.timesteps):
                drawn.index = i
                model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
                out = unet(model_input, t, text)
                if i == 0:
                    first_output = out.clone()
                uncond, cond = out.chunk(2)
                latents = scheduler.step(uncond + GUIDANCE * (cond - uncond), t, latents).prev_sample
                if i in keep:
                    kept.append(latents.clone())
    finally:
        ddpm.randn_tensor = original
    return {
        "init": init,
        "latent": latents,
        "kept": torch.stack(kept) if kept else None,
        "first_output": first_output,
        "timesteps": [int(t) for t in scheduler.timesteps],
        "noise_steps": drawn.calls,
        "init_noise_sigma": float(scheduler.init_noise_sigma),
        "config": {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")},
    }


def _save(path: pathlib.Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file({k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}, str(path))


def _noise_vectors(out_dir: pathlib.Path) -> None:
    d = out_dir / "keyed_noise"
    d.mkdir()
    keys, values = [], {}
    for n, (seed, stage, step, start, count) in enumerate(NOISE_KEYS):
        name = f"key{n}"
        keys.append({"name": name, "seed": str(seed), "stage": stage, "step": step, "start": start, "count": count})
        values[name] = torch.from_numpy(keyed_normals(seed, stage, step, start, count))
    _save(d / "values.safetensors", values)
    note = ("values[name] = lavie_ref.noise.keyed_normals(seed, stage, step, start, count): flat indices "
            "[start, start + count) of any tensor keyed (seed, stage, step); seed is a decimal string (up to 2^64 - 1)")
    (d / "keys.json").write_text(json.dumps({"notes": note, "keys": keys}, indent=1) + "\n")


def generate(out_dir: pathlib.Path) -> None:
    torch.set_num_threads(2)
    for child in out_dir.iterdir():  # a rerun replaces every case
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    unet = load_unet(SD / "unet" / "config.json", PRETRAINED / "lavie_base.pt", "base_unet")
    for name, seed, frames, h, w, steps, text_seed in CASES:
        shape = (1, 4, frames, h, w)
        gen = torch.Generator().manual_seed(text_seed)
        text = torch.randn(2, 77, TEXT_WIDTH, generator=gen)
        keep = sorted({0, 1, steps - 1, *range(4, steps, 5)})
        r = run_stage(unet, seed, shape, steps, text, keep, torch.float64)
        r32 = run_stage(unet, seed, shape, steps, text, [], torch.float32)
        assert r32["timesteps"] == r["timesteps"] and r32["noise_steps"] == r["noise_steps"]
        d = out_dir / name
        d.mkdir()
        _save(d / "inputs.safetensors", {"text_states": text, "init_noise": r["init"]})
        _save(d / "outputs.safetensors",
              {"latent": r["latent"], "latent_float32": r32["latent"], "latents_at": r["kept"],
               "model_output_step0": r["first_output"]})
        latent = r["latent"]
        float32_diff = float((r32["latent"].double() - latent).abs().max())
        meta = {
            "seed": str(seed),
            "frames": frames,
            "latent_height": h,
            "latent_width": w,
            "steps": steps,
            "guidance": GUIDANCE,
            "sampler": "ddpm",
            "timesteps": r["timesteps"],
            "noise_steps": r["noise_steps"],
            "latents_at_steps": keep,
            "init_noise_sigma": r["init_noise_sigma"],
            "reference": "LaVie's base loop with CFG [uncond, cond]; diffusers 0.16.0 "
            "DDPMScheduler.from_pretrained(stable-diffusion-v1-4/scheduler, linear betas 1e-4..0.02).step; "
            "latent: lavie_ref base UNet and scheduler tables in float64; latent_float32: all in float32",
            "reference_config": r["config"],
            "unet": {"config": "../../download/pretrained_models/stable-diffusion-v1-4/unet/config.json",
                     "checkpoint": "../../download/pretrained_models/lavie_base.pt", "entry": "ema"},
            "latent_abs_max": float(latent.abs().max()),
            "latent_std": float(latent.std()),
            "latent_float32_max_abs_diff": float32_diff,
        }
        (d / "case.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(f"  {name}: t {r['timesteps'][:2]}..{r['timesteps'][-1]}, final |max| {meta['latent_abs_max']:.2f} "
              f"std {meta['latent_std']:.2f}, float32 stack off by {float32_diff:.2e}", flush=True)
    _noise_vectors(out_dir)
