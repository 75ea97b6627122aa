"""Toy-world training data: the clips and captions of `lavie world dataset` files, as each stage needs them.

`--world` names files or folders (every *.safetensors inside, in name order). A stage asks for video tensors
by name ("video", "video_fps4", "video_res4", ...) and gets the clips of the files that hold all of them,
concatenated in file order. Videos stay in their stored dtype (float16 halves memory) until a batch is taken.
All random choices take an explicit torch.Generator, so a run is a function of its seeds.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass

import torch
from safetensors import safe_open

from ..world_data import FORMAT


def world_files(specs: list[str]) -> list[pathlib.Path]:
    """Files named by --world: a file, or a folder's *.safetensors in name order."""
    out: list[pathlib.Path] = []
    for spec in specs:
        p = pathlib.Path(spec)
        if p.is_dir():
            found = sorted(p.glob("*.safetensors"))
            if not found:
                raise FileNotFoundError(f"--world {spec}: the folder holds no .safetensors file")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"--world {spec}: no such file or folder")
    return out


@dataclass
class Clips:
    """Clips of several world files: videos[key] [N, 3, F, H, W] (stored dtype), captions[n] phrasings."""

    videos: dict[str, torch.Tensor]
    captions: list[list[str]]
    files: list[str]

    def __len__(self) -> int:
        return len(self.captions)

    def take(self, key: str, index: torch.Tensor) -> torch.Tensor:
        """float32 clips [len(index), 3, F, H, W]."""
        return self.videos[key][index].float()


def load_clips(paths: list[pathlib.Path], keys: tuple[str, ...]) -> Clips:
    """The clips of the files holding every tensor in `keys` (an error if none does)."""
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    captions: list[list[str]] = []
    used: list[str] = []
    for path in paths:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: __metadata__.format is {meta.get('format')!r}, expected {FORMAT!r}")
            if not set(keys) <= set(f.keys()):
                continue
            for k in keys:
                parts[k].append(f.get_tensor(k))
            captions.extend(json.loads(meta["captions"]))
            used.append(str(path))
    if not used:
        raise ValueError(
            f"no --world file holds the tensors {list(keys)} (write them with `lavie world dataset"
            " --also fps4,res4`); files: " + ", ".join(str(p) for p in paths))
    videos = {k: torch.cat(v) if len(v) > 1 else v[0] for k, v in parts.items()}
    for k, v in videos.items():
        if v.shape[0] != len(captions):
            raise ValueError(f"{k}: {v.shape[0]} clips but {len(captions)} caption lists")
    return Clips(videos, captions, used)


def pick_captions(clips: Clips, index: torch.Tensor, gen: torch.Generator, drop: float, uncond: str,
                  suffix: str) -> list[str]:
    """One phrasing per clip (uniform), + suffix; with probability `drop` the unconditional prompt instead."""
    out = []
    for n in index.tolist():
        phrasings = clips.captions[n]
        k = int(torch.randint(len(phrasings), (1,), generator=gen))
        dropped = float(torch.rand((), generator=gen)) < drop
        out.append(uncond if dropped else phrasings[k] + suffix)
    return out


def sample_index(n: int, count: int, gen: torch.Generator) -> torch.Tensor:
    """`count` clip indices, uniform with replacement."""
    return torch.randint(n, (count,), generator=gen)
