"""Reader of the toy world's training sets (written by `lavie world dataset`, see world/dataset.ts).

A file holds, as safetensors tensors:
  video            [N, 3, F, H, W]           clips in [-1, 1] (float32 or float16), frame f at time f / fps
  video_fps4       [N, 3, 4(F-1)+1, H, W]    optional: 4x frame rate (frame 4k == video frame k)
  video_res4       [N, 3, F, 4H, 4W]         optional: 4x resolution (4x4 box average == video)
  video_fps4_res4  [N, 3, 4(F-1)+1, 4H, 4W]  optional: both
  labels           int64 [N, 2, 5]           per object slot: colour, shape, motion, size, speed indices
                                             (-1: no second object; speed -1 when still)
  objects          float32 [N, 2, 4]         per object slot: x, y, size, speed at t = 0
and in its __metadata__ (JSON strings): format, captions (a list of phrasings per clip, the canonical
one first), scenes, splits, vocab (index -> name per label column), held_out and config.

Only numpy and safetensors read the file; tensors are handed over to torch as float32 / int64.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

FORMAT = "lavie-world/1"
VIDEO_KEYS = ("video", "video_fps4", "video_res4", "video_fps4_res4")
LABEL_COLUMNS = ("colour", "shape", "motion", "size", "speed")


@dataclass
class WorldData:
    """A toy-world dataset in memory."""

    videos: dict[str, torch.Tensor]  # "video" and any variants present, float32 [N, 3, F, H, W]
    labels: torch.Tensor  # int64 [N, 2, 5]
    objects: torch.Tensor  # float32 [N, 2, 4]
    captions: list[list[str]]
    scenes: list[dict[str, Any]]
    splits: list[str]
    vocab: dict[str, list[str]]
    held_out: list[dict[str, str]]
    config: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def label_names(self, n: int) -> list[dict[str, str | None]]:
        """The attributes of clip n's objects by name (absent slots left out, speed None when still)."""
        out = []
        for slot in self.labels[n].tolist():
            if slot[0] < 0:
                continue
            out.append(
                {col: (self.vocab[col][i] if i >= 0 else None) for col, i in zip(LABEL_COLUMNS, slot)}
            )
        return out


def read_world(path: str, keys: tuple[str, ...] | None = None) -> WorldData:
    """Reads a toy-world safetensors file. `keys` limits which video tensors are loaded (default: all)."""
    with safe_open(path, framework="np") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: __metadata__.format is {meta.get('format')!r}, expected {FORMAT!r}")
        names = set(f.keys())
        missing = {"video", "labels", "objects"} - names
        if missing:
            raise ValueError(f"{path}: missing tensors {sorted(missing)}")
        wanted = [k for k in VIDEO_KEYS if k in names and (keys is None or k in keys)]
        videos = {k: torch.from_numpy(np.asarray(f.get_tensor(k), dtype=np.float32)) for k in wanted}
        labels = torch.from_numpy(np.asarray(f.get_tensor("labels"), dtype=np.int64))
        objects = torch.from_numpy(np.asarray(f.get_tensor("objects"), dtype=np.float32))
    data = WorldData(
        videos=videos,
        labels=labels,
        objects=objects,
        captions=json.loads(meta["captions"]),
        scenes=json.loads(meta["scenes"]),
        splits=json.loads(meta["splits"]),
        vocab=json.loads(meta["vocab"]),
        held_out=json.loads(meta["held_out"]),
        config=json.loads(meta["config"]),
    )
    n = len(data)
    for name, v in data.videos.items():
        if v.shape[0] != n or v.shape[1] != 3:
            raise ValueError(f"{path}: tensor {name} has shape {list(v.shape)}, expected [{n}, 3, F, H, W]")
    for name, xs in (("captions", data.captions), ("scenes", data.scenes), ("splits", data.splits)):
        if len(xs) != n:
            raise ValueError(f"{path}: __metadata__.{name} has {len(xs)} entries for {n} clips")
    return data


class WorldClips(torch.utils.data.Dataset):
    """(clip [3, F, H, W], caption) pairs; `caption` "canonical" takes the first phrasing, "random" any."""

    def __init__(self, data: WorldData, key: str = "video", caption: str = "random", seed: int = 0):
        if key not in data.videos:
            raise KeyError(f"video tensor {key!r} not loaded; have {sorted(data.videos)}")
        if caption not in ("random", "canonical"):
            raise ValueError(f"caption must be 'random' or 'canonical', got {caption!r}")
        self.data = data
        self.key = key
        self.caption = caption
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, n: int) -> tuple[torch.Tensor, str]:
        phrasings = self.data.captions[n]
        text = phrasings[0] if self.caption == "canonical" else self.rng.choice(phrasings)
        return self.data.videos[self.key][n], text


def summary(path: str) -> str:
    """One line per tensor and the first captions: `python -m lavie_ref.world_data FILE`."""
    d = read_world(path)
    lines = [f"{path}: {len(d)} clips, config {d.config}"]
    lines += [f"  {k}: {list(v.shape)} {v.dtype}" for k, v in d.videos.items()]
    lines += [f"  labels: {list(d.labels.shape)}", f"  objects: {list(d.objects.shape)}"]
    lines += [f"  [{i}] {d.captions[i][0]!r} {d.label_names(i)}" for i in range(min(3, len(d)))]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    torch.set_num_threads(2)
    for p in sys.argv[1:]:
        print(summary(p))
