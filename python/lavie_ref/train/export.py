"""Writes a trained run as LaVie's download, for `lavie models import`:

    python -m lavie_ref.train.export RUN_DIR --out DIR [--dtype float16|float32]

    DIR/pretrained_models/lavie_base.pt, lavie_interpolation.pt, lavie_vsr.pt    {"ema": state_dict}
    DIR/pretrained_models/stable-diffusion-v1-4/{unet/config.json, vae, text_encoder, tokenizer, scheduler}
    DIR/pretrained_models/stable-diffusion-x4-upscaler/{vae, text_encoder, tokenizer, scheduler,
                                                        low_res_scheduler}
    DIR/vsr_unet_config.json     the VSR UNet's config (LaVie keeps it in its code repository)
    DIR/training.json            what each stage did (steps, losses, latent statistics)

then `lavie models import --from DIR/pretrained_models --vsr-unet-config DIR/vsr_unet_config.json --out M`.
Every checkpoint holds the EMA weights. The same writers as the download fixture (golden/download.py):
library folders through save_pretrained, scheduler configs with the published values. --dtype float16
(default) halves every file; the networks computed in float32 during training.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil

import torch
from diffusers import AutoencoderKL
from transformers import CLIPTextModel

from ..golden.download import SD_SCHEDULER, X4_LOW_RES_SCHEDULER, X4_SCHEDULER, _write_json
from .config import SD_UNET_CONFIG
from .text import SD_DIR, X4_DIR, tokenizer_dir

DTYPES = {"float16": torch.float16, "float32": torch.float32}
CHECKPOINTS = (("base", "lavie_base.pt"), ("interp", "lavie_interpolation.pt"), ("vsr", "lavie_vsr.pt"))


def _need(path: pathlib.Path, stage: str) -> pathlib.Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the {stage} stage has not finished in this run")
    return path


def cast_state_dict(sd: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating tensors cast to dtype; tensors that shared storage (the rotary frequencies every temporal
    attention refers to) still share one after the cast, as in the official checkpoints."""
    memo: dict[tuple, torch.Tensor] = {}
    out = {}
    for k, v in sd.items():
        if not v.is_floating_point():
            out[k] = v
            continue
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()))
        if key not in memo:
            memo[key] = v.to(dtype)
        out[k] = memo[key]
    return out


def export(run_dir: pathlib.Path, out: pathlib.Path, dtype: str = "float16") -> pathlib.Path:
    """Writes out/pretrained_models (replacing it) and out/vsr_unet_config.json; returns pretrained_models."""
    dt = DTYPES[dtype]
    pm = out / "pretrained_models"
    shutil.rmtree(pm, ignore_errors=True)
    pm.mkdir(parents=True)
    sd, x4 = pm / SD_DIR, pm / X4_DIR
    for stage, file in CHECKPOINTS:
        state = torch.load(_need(run_dir / stage / "final" / file, stage), map_location="cpu")
        torch.save({"ema": cast_state_dict(state["ema"], dt)}, pm / file)
    _write_json(sd / "unet" / "config.json", SD_UNET_CONFIG)
    vsr_config = json.loads(_need(run_dir / "vsr" / "final" / "vsr_unet_config.json", "vsr").read_text())
    _write_json(out / "vsr_unet_config.json", vsr_config)

    for stage, folder in (("vae", sd / "vae"), ("x4vae", x4 / "vae")):
        vae = AutoencoderKL.from_pretrained(str(_need(run_dir / stage / "final", stage)))
        vae.to(dt).save_pretrained(str(folder))
    for src, stage, folder in ((run_dir / "base" / "final" / "clip_text", "base", sd / "text_encoder"),
                               (run_dir / "text" / "x4_text", "text", x4 / "text_encoder")):
        CLIPTextModel.from_pretrained(str(_need(src, stage))).to(dt).save_pretrained(str(folder))
    for which, folder in (("sd", sd), ("x4", x4)):
        shutil.copytree(_need(tokenizer_dir(run_dir / "text", which), "text"), folder / "tokenizer")

    _write_json(sd / "scheduler" / "scheduler_config.json", SD_SCHEDULER)
    _write_json(x4 / "scheduler" / "scheduler_config.json", X4_SCHEDULER)
    _write_json(x4 / "low_res_scheduler" / "scheduler_config.json", X4_LOW_RES_SCHEDULER)

    record = {"run": str(run_dir), "dtype": dtype, "stages": {}}
    for stage in ("vae", "x4vae", "base", "interp", "vsr"):
        loss = run_dir / stage / "loss.json"
        if loss.exists():
            rec = json.loads(loss.read_text())
            log = rec["log"]
            record["stages"][stage] = {"steps": rec["steps_done"], "s_per_step": rec["s_per_step"],
                                       "first_loss": log[0]["loss"] if log else None,
                                       "last_loss": log[-1]["loss"] if log else None}
        final = run_dir / stage / "final.json"
        if final.exists():
            record["stages"][stage]["final"] = json.loads(final.read_text())
    _write_json(out / "training.json", record)
    return pm


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lavie_ref.train.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=pathlib.Path)
    ap.add_argument("--out", type=pathlib.Path, required=True)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="float16")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    pm = export(args.run_dir, args.out, args.dtype)
    files = sorted(p for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {pm}: {len(files)} files, {sum(p.stat().st_size for p in files):,} bytes")


if __name__ == "__main__":
    main()
