"""Each stage of `python -m lavie_ref.train`: what it reads from earlier stages, what it trains, and what it
leaves in RUN_DIR/<stage>/ (state.pt and loss.json from the loop, plus its final networks):

  vae     final/ (diffusers folder, EMA weights, latents normalised), final.json (latent statistics, L1 error)
  x4vae   the same for the x4 VAE (trained on crops of video_res4)
  text    tokenizers/, clip_text/, x4_text/ (seeded initial encoders), summary.json
  base    final/lavie_base.pt ({"ema": state_dict}), final/clip_text/ (the jointly trained SD text encoder)
  interp  final/lavie_interpolation.pt                       (needs vae, base)
  vsr     final/lavie_vsr.pt, final/vsr_unet_config.json     (needs x4vae, text)

VAE posterior moments of the training clips are computed once per VAE and world files and kept in
RUN_DIR/cache/ (keyed by the VAE's weight file and the world files), shared by base and interp.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import torch

from .config import STAGE_CONFIGS, VSR_UNET_CONFIG, StageConfig
from .data import Clips, load_clips
from .loop import train, write_json
from .text import Tokens, load_text_encoder, tokenizer_dir, write_text_stage
from .unets import base_step, build_sd_unet, build_vsr_unet, interp_step, vsr_step
from .vae import SPECS, build_vae, encode_videos, load_vae, normalise_latents, vae_step

# Frames the latent statistics and the reconstruction error are measured on (whole frames; the x4 VAE's
# mid-block attention over 64x64 latents makes its frames costly).
STATS_FRAMES = {"vae": 256, "x4vae": 64}


def _stats_frames(clips: Clips, key: str, count: int) -> torch.Tensor:
    """Up to `count` whole frames, a fixed spread over clips and frame indices."""
    video = clips.videos[key]
    n, f = video.shape[0], video.shape[2]
    count = min(count, n * f)
    return torch.stack([video[i % n, :, (i * 7) % f] for i in range(count)])


def run_vae(run_dir: pathlib.Path, world: list[pathlib.Path], cfg: StageConfig, resume: bool) -> dict:
    spec, key = SPECS[cfg.name]
    clips = load_clips(world, (key,))
    stage_dir = run_dir / cfg.name
    vae = build_vae(spec, cfg.seed)
    ema = train(stage_dir, cfg, {"vae": vae}, vae_step(vae, clips, key, cfg), resume)["vae"]
    stats = normalise_latents(ema, _stats_frames(clips, key, STATS_FRAMES[cfg.name]), spec["scaling_factor"])
    summary = {"steps": cfg.steps, "l1_error": stats.pop("l1_error"),
               "object_l1_error": stats.pop("object_l1_error"), "latents": stats, "clips": len(clips),
               "files": clips.files}
    ema.save_pretrained(str(stage_dir / "final"))
    write_json(stage_dir / "final.json", summary)
    return summary


def run_text(run_dir: pathlib.Path, cfg: StageConfig, resume: bool) -> dict:
    stage_dir = run_dir / "text"
    if (stage_dir / "summary.json").exists():
        if not resume:
            raise FileExistsError(f"{stage_dir} exists: pass --resume to keep it, or remove it")
        return json.loads((stage_dir / "summary.json").read_text())
    summary = write_text_stage(stage_dir, cfg.seed)
    write_json(stage_dir / "summary.json", summary)
    return summary


def cached_moments(run_dir: pathlib.Path, vae_dir: pathlib.Path, clips: Clips, key: str) -> torch.Tensor:
    """Posterior moments [N, F, 8, h, w] (float16) of clips.videos[key] under the VAE in vae_dir."""
    h = hashlib.sha256((vae_dir / "diffusion_pytorch_model.bin").read_bytes())
    h.update(json.dumps([clips.files, key, list(clips.videos[key].shape)]).encode())
    path = run_dir / "cache" / f"{vae_dir.parent.name}-{key}-{h.hexdigest()[:16]}.pt"
    if path.exists():
        return torch.load(path)
    print(f"encoding {key} {list(clips.videos[key].shape)} with {vae_dir}", flush=True)
    moments = encode_videos(load_vae(vae_dir), clips.videos[key])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(moments, path)
    return moments


def _need(path: pathlib.Path, stage: str) -> pathlib.Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the {stage} stage first")
    return path


def _save_unet(net: torch.nn.Module, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"ema": net.state_dict()}, path)


def _summary(stage_dir: pathlib.Path) -> dict:
    rec = json.loads((stage_dir / "loss.json").read_text())
    log = rec["log"]
    return {"steps": rec["steps_done"], "s_per_step": rec["s_per_step"],
            "first_loss": log[0]["loss"] if log else None, "last_loss": log[-1]["loss"] if log else None}


def run_base(run_dir: pathlib.Path, world: list[pathlib.Path], cfg: StageConfig, resume: bool) -> dict:
    vae_dir = _need(run_dir / "vae" / "final", "vae")
    text_dir = _need(run_dir / "text" / "clip_text", "text")
    clips = load_clips(world, ("video",))
    moments = cached_moments(run_dir, vae_dir, clips, "video")
    tokens = Tokens(tokenizer_dir(run_dir / "text", "sd"))
    unet, text = build_sd_unet("base_unet", cfg.seed), load_text_encoder(text_dir)
    stage_dir = run_dir / "base"
    emas = train(stage_dir, cfg, {"unet": unet, "text": text}, base_step(unet, text, tokens, clips, moments, cfg),
                 resume)
    _save_unet(emas["unet"], stage_dir / "final" / "lavie_base.pt")
    emas["text"].save_pretrained(str(stage_dir / "final" / "clip_text"))
    return _summary(stage_dir)


def run_interp(run_dir: pathlib.Path, world: list[pathlib.Path], cfg: StageConfig, resume: bool) -> dict:
    vae_dir = _need(run_dir / "vae" / "final", "vae")
    text = load_text_encoder(_need(run_dir / "base" / "final" / "clip_text", "base")).requires_grad_(False).eval()
    clips = load_clips(world, ("video", "video_fps4"))
    base_m = cached_moments(run_dir, vae_dir, clips, "video")
    fps4_m = cached_moments(run_dir, vae_dir, clips, "video_fps4")
    del clips.videos["video_fps4"]
    tokens = Tokens(tokenizer_dir(run_dir / "text", "sd"))
    unet = build_sd_unet("interp_unet", cfg.seed)
    stage_dir = run_dir / "interp"
    emas = train(stage_dir, cfg, {"unet": unet}, interp_step(unet, text, tokens, clips, base_m, fps4_m, cfg), resume)
    _save_unet(emas["unet"], stage_dir / "final" / "lavie_interpolation.pt")
    return _summary(stage_dir)


def run_vsr(run_dir: pathlib.Path, world: list[pathlib.Path], cfg: StageConfig, resume: bool) -> dict:
    vae_dir = _need(run_dir / "x4vae" / "final", "x4vae")
    text = load_text_encoder(_need(run_dir / "text" / "x4_text", "text")).requires_grad_(False).eval()
    clips = load_clips(world, ("video", "video_res4"))
    moments = cached_moments(run_dir, vae_dir, clips, "video_res4")
    del clips.videos["video_res4"]
    tokens = Tokens(tokenizer_dir(run_dir / "text", "x4"))
    unet = build_vsr_unet(cfg.seed)
    stage_dir = run_dir / "vsr"
    emas = train(stage_dir, cfg, {"unet": unet}, vsr_step(unet, text, tokens, clips, moments, cfg), resume)
    _save_unet(emas["unet"], stage_dir / "final" / "lavie_vsr.pt")
    write_json(stage_dir / "final" / "vsr_unet_config.json", VSR_UNET_CONFIG)
    return _summary(stage_dir)


def run_stage(name: str, run_dir: pathlib.Path, world: list[pathlib.Path], steps: int | None,
              resume: bool) -> dict:
    cfg = STAGE_CONFIGS[name].with_steps(steps if name != "text" else None)
    if name in ("vae", "x4vae"):
        return run_vae(run_dir, world, cfg, resume)
    if name == "text":
        return run_text(run_dir, cfg, resume)
    return {"base": run_base, "interp": run_interp, "vsr": run_vsr}[name](run_dir, world, cfg, resume)

