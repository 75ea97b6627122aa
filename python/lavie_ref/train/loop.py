"""The training loop every stage shares: AdamW with linear warm-up, gradient clipping, an EMA of the weights,
checkpoints that resume bit for bit, and a JSON loss record.

A stage folder holds:
  state.pt    step, networks, their EMAs, optimizer, the data generator's state (written atomically)
  loss.json   the stage config, steps done, seconds per step, and the mean loss of every log_every steps

Determinism: every random draw of a step comes from one torch.Generator seeded by the stage seed (saved in
state.pt), so a run is a function of its seeds and the thread count; an interrupted run resumed with
--resume continues exactly as the uninterrupted run (checkpoints land on multiples of log_every).
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import time
from collections.abc import Callable

import torch
from torch import nn

from .config import StageConfig

StepFn = Callable[[torch.Generator, int], torch.Tensor]


def atomic_save(obj: object, path: pathlib.Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json(path: pathlib.Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def trainable(nets: dict[str, nn.Module]) -> list[nn.Parameter]:
    return [p for net in nets.values() for p in net.parameters() if p.requires_grad]


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), net.parameters()):
        if p.requires_grad:
            e.mul_(decay).add_(p.detach(), alpha=1 - decay)


def ema_decay(cfg: StageConfig, step: int) -> float:
    """The configured decay, lowered early on ((1 + n) / (10 + n)) so that short runs average recent weights."""
    return min(cfg.ema_decay, (1 + step) / (10 + step))


def train(stage_dir: pathlib.Path, cfg: StageConfig, nets: dict[str, nn.Module], step_fn: StepFn,
          resume: bool) -> dict[str, nn.Module]:
    """Runs steps up to cfg.steps (continuing a saved state when `resume`); returns the EMA networks."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    state_path, loss_path = stage_dir / "state.pt", stage_dir / "loss.json"
    params = trainable(nets)
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=0.0)
    emas = {k: copy.deepcopy(n).requires_grad_(False) for k, n in nets.items()}
    gen = torch.Generator().manual_seed(cfg.seed)
    step, log, seconds = 0, [], 0.0
    if state_path.exists():
        if not resume:
            raise FileExistsError(f"{state_path} exists: pass --resume to continue it, or remove {stage_dir}")
        state = torch.load(state_path, map_location="cpu")
        for k, n in nets.items():
            n.load_state_dict(state["nets"][k])
            emas[k].load_state_dict(state["emas"][k])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step, log, seconds = state["step"], state["log"], state["seconds"]
        print(f"[{cfg.name}] resuming at step {step}", flush=True)

    def record() -> dict:
        return {"stage": cfg.name, "config": cfg.to_json(), "threads": torch.get_num_threads(), "steps_done": step,
                "seconds": round(seconds, 2), "s_per_step": round(seconds / max(step, 1), 4), "log": log}

    def checkpoint() -> None:
        atomic_save({"step": step, "nets": {k: n.state_dict() for k, n in nets.items()},
                     "emas": {k: e.state_dict() for k, e in emas.items()}, "optimizer": opt.state_dict(),
                     "generator": gen.get_state(), "log": log, "seconds": seconds}, state_path)
        write_json(loss_path, record())

    for net in nets.values():
        net.train()
    window: list[float] = []
    while step < cfg.steps:
        t0 = time.perf_counter()
        lr = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup, 1))
        for group in opt.param_groups:
            group["lr"] = lr
        loss = step_fn(gen, step)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"[{cfg.name}] loss is {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        decay = ema_decay(cfg, step)
        for k, n in nets.items():
            ema_update(emas[k], n, decay)
        step += 1
        seconds += time.perf_counter() - t0
        window.append(loss.item())
        if step % cfg.log_every == 0 or step == cfg.steps:
            log.append({"step": step, "loss": sum(window) / len(window), "lr": lr})
            print(f"[{cfg.name}] step {step}/{cfg.steps} loss {log[-1]['loss']:.5f} "
                  f"({seconds / step:.3f} s/step)", flush=True)
            window = []
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            checkpoint()
    if not state_path.exists():  # steps == 0 or already done: still leave a record
        checkpoint()
    for e in emas.values():
        e.eval()
    return emas
