"""Sampler golden vectors: every stage's timesteps and per-step results, test/golden/samplers/<case>/.

References:
- base: diffusers 0.16.0 DDPMScheduler / DDIMScheduler / EulerDiscreteScheduler built from SD1.4's
  scheduler_config.json with LaVie's override (linear betas 1e-4..0.02), as base/pipelines/sample.py does;
- interpolation: lavie_ref.respace (our implementation of LaVie's respaced DDIM);
- vsr: diffusers 0.16.0 DDIMScheduler from the x4 upscaler's scheduler_config.json with beta_schedule
  "linear", and its low-res noise augmentation (DDPMScheduler scaled_linear 1e-4..0.02, add_noise at 50).

Each step is checked on its own random inputs (sample, model output, noise: float32, explicit), so a
case pins the step sequence and every step's coefficients. Noise that the reference would draw from
torch's RNG is injected instead (our noise is position-keyed, so only the formula can be compared).
Tensors: inputs.safetensors {sample, model_output, noise} and outputs.safetensors {prev_sample,
pred_original_sample}, each [steps, *SHAPE]; case.json holds timesteps, per-step input scales, which
steps use noise, the initial-noise scale and the config to build with stageSamplerConfig(stage, overrides).
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil

import torch
from safetensors.torch import save_file

from ..respace import RespacedDDIM

SHAPE = (1, 4, 2, 2, 2)  # [batch, channels, frames, height, width]
TOLERANCE = {"relative": 1e-5}  # diffusers keeps its tables in float32; we plan in float64
RESPACED_TOLERANCE = {"relative": 1e-6}  # float64 on both sides

# CompVis/stable-diffusion-v1-4 scheduler/scheduler_config.json (what LaVie's base loads), and LaVie's override.
SD14_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
LAVIE_BASE_OVERRIDE = {"beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"}
# stabilityai/stable-diffusion-x4-upscaler scheduler/scheduler_config.json; vsr/sample.py sets beta_schedule linear.
X4_SCHEDULER = {
    "_class_name": "DDIMScheduler",
    "beta_end": 0.02,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.0001,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
X4_LOW_RES_SCHEDULER = {"beta_schedule": "scaled_linear", "beta_start": 0.0001, "beta_end": 0.02}


def _diffusers():
    import diffusers  # noqa: F401  (pinned 0.16.0)
    from diffusers import DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler

    assert diffusers.__version__ == "0.16.0", f"expected diffusers 0.16.0, got {diffusers.__version__}"
    return DDPMScheduler, DDIMScheduler, EulerDiscreteScheduler


@contextlib.contextmanager
def _inject_ddpm_noise(noise: torch.Tensor, calls: list[tuple[int, ...]]):
    """Makes DDPMScheduler.step use `noise` instead of drawing from torch's RNG; records the drawn shapes."""
    import diffusers.schedulers.scheduling_ddpm as ddpm

    original = ddpm.randn_tensor

    def fake(shape, generator=None, device=None, dtype=None, layout=None):
        calls.append(tuple(shape))
        assert tuple(shape) == tuple(noise.shape), (shape, noise.shape)
        return noise.to(dtype or noise.dtype)

    ddpm.randn_tensor = fake
    try:
        yield
    finally:
        ddpm.randn_tensor = original


def _public(config) -> dict:
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


def _write(out_dir: pathlib.Path, name: str, meta: dict, inputs: dict, outputs: dict) -> None:
    d = out_dir / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    contiguous = lambda ts: {k: v.detach().to(torch.float32).contiguous() for k, v in ts.items()}  # noqa: E731
    save_file(contiguous(inputs), str(d / "inputs.safetensors"))
    save_file(contiguous(outputs), str(d / "outputs.safetensors"))
    (d / "case.json").write_text(json.dumps(meta, indent=1) + "\n")


def _random_inputs(gen: torch.Generator, steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    draw = lambda: torch.randn((steps, *SHAPE), generator=gen, dtype=torch.float32)  # noqa: E731
    return draw(), draw(), draw()


def _diffusers_case(scheduler, kind: str, steps: int, gen: torch.Generator, eta: float = 0.0) -> dict:
    """Runs each step of a diffusers 0.16.0 scheduler on its own inputs."""
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    sample, model_output, noise = _random_inputs(gen, steps)
    prev, x0, scales, used = [], [], [], []
    for i, t in enumerate(timesteps):
        scale = float(scheduler.scale_model_input(torch.ones(()), t))
        if kind == "euler":
            sample[i] /= scale  # a sample with the variance this sigma implies: sigma^2 + 1
        scales.append(scale)
        if kind == "ddpm":
            calls: list[tuple[int, ...]] = []
            with _inject_ddpm_noise(noise[i], calls):
                out = scheduler.step(model_output[i], t, sample[i])
            used.append(len(calls) > 0)
        elif kind == "ddim":
            extra = {"eta": eta, "variance_noise": noise[i]} if eta > 0 else {}
            out = scheduler.step(model_output[i], t, sample[i], **extra)
            used.append(eta > 0)
        else:  # euler, s_churn 0: it draws noise but multiplies it by gamma = 0
            out = scheduler.step(model_output[i], t, sample[i])
            used.append(False)
        prev.append(out.prev_sample)
        x0.append(out.pred_original_sample)
    return {
        "timesteps": [float(t) if kind == "euler" else int(t) for t in timesteps.tolist()],
        "input_scales": scales,
        "noise_used": used,
        "init_noise_sigma": float(scheduler.init_noise_sigma),
        "inputs": {"sample": sample, "model_output": model_output, "noise": noise},
        "outputs": {"prev_sample": torch.stack(prev), "pred_original_sample": torch.stack(x0)},
    }


def _respaced_case(steps: int, gen: torch.Generator, eta: float = 0.0, clip: bool = False) -> dict:
    sampler = RespacedDDIM(steps, eta=eta, clip_x0=clip)
    sample, model_output, noise = _random_inputs(gen, steps)
    prev, x0, used = [], [], []
    for i in range(steps):
        p, x = sampler.step(i, sample[i].numpy(), model_output[i].numpy(), noise[i].numpy())
        prev.append(torch.from_numpy(p))
        x0.append(torch.from_numpy(x))
        ab, ab_prev = sampler.alpha_bars(i)
        used.append(bool(eta > 0 and ab_prev < 1.0))
    return {
        "timesteps": sampler.timesteps,
        "input_scales": [1.0] * steps,
        "noise_used": used,
        "init_noise_sigma": 1.0,
        "inputs": {"sample": sample, "model_output": model_output, "noise": noise},
        "outputs": {"prev_sample": torch.stack(prev), "pred_original_sample": torch.stack(x0)},
    }


def _emit(out_dir, name, stage, overrides, reference, config, result, tolerance=TOLERANCE) -> None:
    meta = {
        "stage": stage,
        "overrides": overrides,
        "reference": reference,
        "reference_config": config,
        "shape": list(SHAPE),
        "num_inference_steps": len(result["timesteps"]),
        "timesteps": result["timesteps"],
        "input_scales": result["input_scales"],
        "noise_used": result["noise_used"],
        "init_noise_sigma": result["init_noise_sigma"],
        "tolerance": tolerance,
    }
    _write(out_dir, name, meta, result["inputs"], result["outputs"])
    print(f"  {name}: t {result['timesteps'][:3]} .. {result['timesteps'][-2:]}", flush=True)


def _lowres_case(out_dir: pathlib.Path, gen: torch.Generator) -> None:
    DDPMScheduler, _, _ = _diffusers()
    sched = DDPMScheduler(num_train_timesteps=1000, **X4_LOW_RES_SCHEDULER)
    shape = (1, 3, 2, 4, 4)
    image = torch.rand(shape, generator=gen) * 2 - 1
    noise = torch.randn(shape, generator=gen)
    level = 50
    noisy = sched.add_noise(image, noise, torch.tensor([level], dtype=torch.long))
    meta = {
        "stage": "vsr",
        "reference": "diffusers 0.16.0 DDPMScheduler(scaled_linear 1e-4..0.02).add_noise (x4 upscaler low_res_scheduler)",
        "reference_config": _public(sched.config),
        "noise_level": level,
        "class_labels": [level, level],
        "shape": list(shape),
        "tolerance": {"relative": 1e-6},
    }
    _write(out_dir, "vsr_lowres_noise", meta, {"image": image, "noise": noise}, {"noisy": noisy})


def generate(out_dir: pathlib.Path) -> None:
    torch.set_num_threads(1)
    DDPMScheduler, DDIMScheduler, EulerDiscreteScheduler = _diffusers()
    gen = torch.Generator().manual_seed(20240607)
    base_config = {**SD14_SCHEDULER, **LAVIE_BASE_OVERRIDE}
    classes = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "euler": EulerDiscreteScheduler}
    for kind, cls in classes.items():
        for steps in (50, 25, 4):
            sched = cls.from_config(base_config)
            ref = f"diffusers 0.16.0 {cls.__name__}.from_config(SD1.4 scheduler_config + LaVie linear betas)"
            result = _diffusers_case(sched, kind, steps, gen)
            overrides = {"sampler": kind, "numInferenceSteps": steps}
            _emit(out_dir, f"base_{kind}_{steps}", "base", overrides, ref, _public(sched.config), result)
    sched = DDIMScheduler.from_config(base_config)
    result = _diffusers_case(sched, "ddim", 4, gen, eta=0.5)
    ref = "diffusers 0.16.0 DDIMScheduler (SD1.4 config + LaVie linear betas), eta 0.5, variance_noise given"
    overrides = {"sampler": "ddim", "numInferenceSteps": 4, "eta": 0.5}
    _emit(out_dir, "base_ddim_eta_4", "base", overrides, ref, _public(sched.config), result)

    ref = "lavie_ref.respace.RespacedDDIM (LaVie interpolation: respaced linear 1e-4..0.02, DDIM)"
    for steps in (50, 25, 21, 4):
        result = _respaced_case(steps, gen)
        config = {"count": steps, "eta": 0.0, "clip_x0": False}
        overrides = {"numInferenceSteps": steps}
        name = f"interpolation_respaced_{steps}"
        _emit(out_dir, name, "interpolation", overrides, ref, config, result, RESPACED_TOLERANCE)
    result = _respaced_case(4, gen, eta=0.5, clip=True)
    config = {"count": 4, "eta": 0.5, "clip_x0": True}
    overrides = {"numInferenceSteps": 4, "eta": 0.5, "clipSample": True}
    _emit(out_dir, "interpolation_respaced_eta_clip_4", "interpolation", overrides, ref, config, result, RESPACED_TOLERANCE)

    vsr_config = {**X4_SCHEDULER, "beta_schedule": "linear"}
    for steps in (50, 4):
        sched = DDIMScheduler.from_config(vsr_config)
        ref = "diffusers 0.16.0 DDIMScheduler.from_config(x4-upscaler scheduler_config, beta_schedule linear)"
        result = _diffusers_case(sched, "ddim", steps, gen)
        _emit(out_dir, f"vsr_ddim_{steps}", "vsr", {"numInferenceSteps": steps}, ref, _public(sched.config), result)
    _lowres_case(out_dir, gen)
    print("  vsr_lowres_noise", flush=True)
