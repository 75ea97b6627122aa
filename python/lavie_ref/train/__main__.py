"""Trains LaVie's cascade on toy-world clips, from seeds:

    python -m lavie_ref.train --world DATASET_DIR_OR_FILES... --out RUN_DIR
        [--stage vae|x4vae|text|base|interp|vsr|all] [--steps N] [--resume] [--threads 2]

then `python -m lavie_ref.train.export RUN_DIR --out DIR` writes the official download layout.
See python/TRAINING.md (datasets, the budget, what each stage trains) and lavie_ref/train/stages.py.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import torch

from .config import STAGES
from .data import world_files
from .loop import write_json
from .stages import run_stage


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lavie_ref.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", nargs="+", required=True, help="world dataset files or folders of them")
    ap.add_argument("--out", type=pathlib.Path, required=True, help="run folder (stages, checkpoints, losses)")
    ap.add_argument("--stage", default="all", choices=[*STAGES, "all"])
    ap.add_argument("--steps", type=int, default=None, help="steps of each trained stage (default: the budget's)")
    ap.add_argument("--resume", action="store_true", help="continue saved stages (a finished one is kept)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (results depend on it)")
    args = ap.parse_args(argv)
    if args.steps is not None and args.steps < 0:
        ap.error("--steps must be >= 0")
    torch.set_num_threads(args.threads)
    world = world_files(args.world)
    args.out.mkdir(parents=True, exist_ok=True)
    stages = STAGES if args.stage == "all" else (args.stage,)
    runs_path = args.out / "run.json"
    runs = json.loads(runs_path.read_text()) if runs_path.exists() else []
    for name in stages:
        t0 = time.perf_counter()
        summary = run_stage(name, args.out, world, args.steps, args.resume)
        runs.append({"stage": name, "world": [str(p) for p in world], "threads": args.threads,
                     "seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__,
                     "python": platform.python_version(), "summary": summary})
        write_json(runs_path, runs)
        print(f"[{name}] done in {runs[-1]['seconds']} s: {json.dumps(summary)[:300]}", flush=True)


if __name__ == "__main__":
    main()
