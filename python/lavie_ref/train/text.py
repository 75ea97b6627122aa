"""Tokenizers and text encoders.

The "text" stage writes both tokenizer folders (the download fixture's CLIP BPE cut to its first 500 merges:
the world's few words need no more) and the two CLIP text encoders at their seeded initialisation
(transformers' own init). Choice, and why:
  - the SD text encoder (base and interpolation) is trained jointly with the base UNet, then frozen for
    interpolation. LaVie freezes a pretrained CLIP; a random one has nothing to keep, and learning it costs
    nothing next to the UNet (3 layers, 64 wide, 77 tokens), while a frozen random encoder leaves the UNet
    to untangle colour, shape and motion words from random token mixtures;
  - the x4 text encoder (VSR) stays frozen at its random init: the VSR UNet takes its content from the
    low-res video, the prompt matters little there.
"""

from __future__ import annotations

import pathlib

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from ..golden.download import _tokenizers
from .config import SD_TEXT, X4_TEXT

SD_DIR, X4_DIR = "stable-diffusion-v1-4", "stable-diffusion-x4-upscaler"


def write_text_stage(stage_dir: pathlib.Path, seed: int) -> dict:
    """tokenizers/<sd|x4>/tokenizer, clip_text/, x4_text/ under stage_dir; returns a summary."""
    tok_root = stage_dir / "tokenizers"
    vocab = _tokenizers(tok_root)
    out = {"vocab_size": vocab}
    for name, spec, s in (("clip_text", SD_TEXT, seed), ("x4_text", X4_TEXT, seed + 1)):
        torch.manual_seed(s)
        model = CLIPTextModel(CLIPTextConfig(vocab_size=vocab, max_position_embeddings=77, **spec))
        model.save_pretrained(str(stage_dir / name))
        out[name] = sum(p.numel() for p in model.parameters())
    return out


def tokenizer_dir(text_dir: pathlib.Path, which: str) -> pathlib.Path:
    return text_dir / "tokenizers" / (SD_DIR if which == "sd" else X4_DIR) / "tokenizer"


class Tokens:
    """Caption -> input ids [77] (padded, truncated as the cascade's tokenizer does), cached per string."""

    def __init__(self, folder: pathlib.Path):
        if not folder.exists():
            raise FileNotFoundError(f"{folder}: no tokenizer (run the text stage first)")
        self.tok = CLIPTokenizer.from_pretrained(str(folder))
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        rows = []
        for t in texts:
            if t not in self.cache:
                ids = self.tok(t, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
                self.cache[t] = ids.input_ids[0]
            rows.append(self.cache[t])
        return torch.stack(rows)


def load_text_encoder(folder: pathlib.Path) -> CLIPTextModel:
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}: no text encoder (run the stage that writes it first)")
    return CLIPTextModel.from_pretrained(str(folder))
