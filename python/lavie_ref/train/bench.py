"""Seconds per training step of every stage at the configured sizes, on synthetic data of the real shapes
(the step cost does not depend on the data): the numbers of TRAINING.md's budget table.

    python -m lavie_ref.train.bench [--steps 8] [--threads 2] [--only base interp ...]

Each stage runs the training loop itself (forward, backward, AdamW, EMA): 2 warm-up steps, then 3 rounds of
--steps steps; it prints the fastest round's s/step (the machine may be shared) and the budget: the
stage's default steps x s/step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import tempfile
import time

import torch

from .config import BASE_FRAMES, BASE_SIZE, INTERP_FRAMES, SD_TEXT, STAGE_CONFIGS, X4_TEXT
from .data import Clips
from .loop import train
from .text import Tokens, write_text_stage
from .unets import base_step, build_sd_unet, build_vsr_unet, interp_step, vsr_step
from .vae import SPECS, build_vae, vae_step

CAPTION = "a big red square moving left slowly on a vertical gradient from white to black"


def _clips(n: int, shapes: dict[str, tuple[int, ...]]) -> Clips:
    gen = torch.Generator().manual_seed(0)
    videos = {k: (torch.rand((n, 3, *s), generator=gen) * 2 - 1).half() for k, s in shapes.items()}
    return Clips(videos, [[CAPTION, "a red square"]] * n, [])


def _moments(n: int, frames: int, size: int) -> torch.Tensor:
    m = torch.randn(n, frames, 8, size, size)
    m[:, :, 4:] = -6.0
    return m.half()


def stage_setup(name: str, text_dir: pathlib.Path):
    """(nets, step function) of a stage on synthetic data."""
    cfg = STAGE_CONFIGS[name]
    from transformers import CLIPTextConfig, CLIPTextModel

    vocab = json.loads((text_dir / "summary.json").read_text())["vocab_size"]
    lat = BASE_SIZE // 8
    if name in ("vae", "x4vae"):
        spec, key = SPECS[name]
        size = BASE_SIZE * (4 if name == "x4vae" else 1)
        vae = build_vae(spec, cfg.seed)
        return cfg, {"vae": vae}, vae_step(vae, _clips(8, {key: (2, size, size)}), key, cfg)
    if name == "base":
        unet = build_sd_unet("base_unet", cfg.seed)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=vocab, max_position_embeddings=77, **SD_TEXT))
        tokens = Tokens(text_dir / "tokenizers" / "stable-diffusion-v1-4" / "tokenizer")
        clips = _clips(8, {"video": (1, 1, 1)})
        return cfg, {"unet": unet, "text": text}, base_step(unet, text, tokens, clips,
                                                            _moments(8, BASE_FRAMES, lat), cfg)
    if name == "interp":
        unet = build_sd_unet("interp_unet", cfg.seed)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=vocab, max_position_embeddings=77, **SD_TEXT)).eval()
        tokens = Tokens(text_dir / "tokenizers" / "stable-diffusion-v1-4" / "tokenizer")
        clips = _clips(8, {"video": (1, 1, 1)})
        return cfg, {"unet": unet}, interp_step(unet, text.requires_grad_(False), tokens, clips,
                                                _moments(8, BASE_FRAMES, lat), _moments(8, INTERP_FRAMES, lat), cfg)
    if name == "vsr":
        unet = build_vsr_unet(cfg.seed)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=vocab, max_position_embeddings=77, **X4_TEXT)).eval()
        tokens = Tokens(text_dir / "tokenizers" / "stable-diffusion-x4-upscaler" / "tokenizer")
        clips = _clips(4, {"video": (BASE_FRAMES, BASE_SIZE, BASE_SIZE)})
        return cfg, {"unet": unet}, vsr_step(unet, text.requires_grad_(False), tokens, clips,
                                             _moments(4, BASE_FRAMES, BASE_SIZE), cfg)
    raise ValueError(f"no benchmark for stage {name!r}")


def measure(name: str, steps: int, text_dir: pathlib.Path, rounds: int = 3) -> dict:
    """s/step of `rounds` runs of `steps` steps each: the fastest round (the machine may be shared) and the
    median; CPU seconds per step of the fastest round."""
    cfg, nets, step_fn = stage_setup(name, text_dir)
    params = sum(p.numel() for n in nets.values() for p in n.parameters())
    times = []
    with tempfile.TemporaryDirectory() as d:
        warm = dataclasses.replace(cfg, steps=2, log_every=2, ckpt_every=10**9)
        train(pathlib.Path(d) / "warm", warm, nets, step_fn, resume=False)
        for r in range(rounds):
            # whole image/video cycles of the base stage in every round
            run = dataclasses.replace(cfg, steps=steps, log_every=steps, ckpt_every=10**9)
            t0, c0 = time.perf_counter(), time.process_time()
            train(pathlib.Path(d) / f"run{r}", run, nets, step_fn, resume=False)
            times.append(((time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps))
    best = min(times)
    s = best[0]
    return {"stage": name, "params": params, "s_per_step": round(s, 3),
            "median_s_per_step": round(sorted(t[0] for t in times)[len(times) // 2], 3),
            "cpu_s_per_step": round(best[1], 3), "default_steps": cfg.steps, "budget_s": round(s * cfg.steps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8, help="steps per round (3 rounds)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=["vae", "x4vae", "base", "interp", "vsr"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        text_dir = pathlib.Path(d)
        summary = write_text_stage(text_dir, 0)
        (text_dir / "summary.json").write_text(json.dumps(summary))
        for name in args.only:
            rows.append(measure(name, args.steps, text_dir))
            print(json.dumps(rows[-1]), flush=True)
    total = sum(r["budget_s"] for r in rows)
    load = os.getloadavg()[0]
    print(f"total budget {total} s = {total / 3600:.2f} h at {args.threads} threads (load average {load:.1f})")


if __name__ == "__main__":
    main()
