"""Golden vectors for the text encoders and VAEs, computed by the public libraries LaVie runs on
(transformers 4.28.1 CLIPTextModel, diffusers 0.16.0 AutoencoderKL) with random weights.

Layout, per network and configuration:

    <out>/<net>/<config>/model/            save_pretrained output, as in the published folders
                                           (config.json + pytorch_model.bin or diffusion_pytorch_model.bin)
    <out>/<net>/<config>/<case>/case.json  what the case runs (graph kind, shapes, library versions)
    <out>/<net>/<config>/<case>/inputs.safetensors, outputs.safetensors

Nets: clip_text (CLIP ViT-L/14 text structure: quick_gelu), x4_text (the x4 upscaler's OpenCLIP-H text
structure: exact gelu), sd_vae (x8, encoder and decoder cases), x4_vae (x4, decoder cases). What each
case computes is what LaVie's stages take from these modules:
- text: `model(input_ids=ids).last_hidden_state` (no attention mask; both LaVie text paths);
- VAE decode: `vae.decode(z).sample` (z already divided by the scaling factor);
- VAE encode: the posterior of `vae.encode(x)`: its moments `latent_parameters` (mean ‖ raw logvar,
  what the graph outputs), and `mean` / `logvar` (clamped to [-30, 20]) as DiagonalGaussianDistribution
  derives them (what callers derive with splitMoments).
"""

from __future__ import annotations

import json
import pathlib
import shutil

import diffusers
import torch
import transformers
from diffusers import AutoencoderKL
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

SEED = 20240611

TEXT_CONFIGS = {
    "clip_text": {
        "a": dict(vocab_size=128, hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2),
        "b": dict(vocab_size=160, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4),
    },
    "x4_text": {
        "a": dict(vocab_size=128, hidden_size=20, intermediate_size=40, num_hidden_layers=2, num_attention_heads=2),
        # A large LayerNorm eps (published: 1e-5), so that a graph ignoring the config's eps fails the test.
        "b": dict(
            vocab_size=160,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            layer_norm_eps=1e-2,
        ),
    },
}
TEXT_ACT = {"clip_text": "quick_gelu", "x4_text": "gelu"}

# Widths change between levels so that conv_shortcut (encoder and decoder) is exercised.
VAE_CONFIGS = {
    "sd_vae": {
        "a": dict(block_out_channels=[4, 8, 8, 8], layers_per_block=1, norm_num_groups=2),
        "b": dict(block_out_channels=[4, 4, 8, 8], layers_per_block=2, norm_num_groups=4),
    },
    "x4_vae": {
        "a": dict(block_out_channels=[4, 8, 8], layers_per_block=1, norm_num_groups=2, scaling_factor=0.08333),
        "b": dict(block_out_channels=[4, 4, 8], layers_per_block=2, norm_num_groups=4, scaling_factor=0.08333),
    },
}


def _randomise(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Every parameter random (not the library's init, which zeroes biases and sets norms to 1)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen)
            leaf = name.rsplit(".", 1)[-1]
            if "norm" in name and leaf == "weight":
                p.copy_(1.0 + 0.2 * r)
            elif leaf == "bias":
                p.copy_(0.1 * r)
            elif "embedding" in name:
                p.copy_(0.5 * r)
            else:
                fan_in = p[0].numel()
                p.copy_(r / fan_in**0.5)


def _write_case(case_dir: pathlib.Path, meta: dict, inputs: dict, outputs: dict) -> None:
    case_dir.mkdir(parents=True, exist_ok=True)
    for file, tensors in (("inputs", inputs), ("outputs", outputs)):
        # Cloned: safetensors refuses views that share storage (mean is a view of the moments).
        copies = {k: v.detach().clone().contiguous() for k, v in tensors.items()}
        save_file(copies, str(case_dir / f"{file}.safetensors"))
    meta = {
        **meta,
        "model": "../model",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "diffusers": diffusers.__version__},
    }
    (case_dir / "case.json").write_text(json.dumps(meta, indent=2) + "\n")


def _token_rows(lengths: list[int], vocab: int, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Tokenizer-like rows of 77: BOS, `n` word ids, EOS, then padding (CLIP pads with EOS, the x4
    upscaler's OpenCLIP tokenizer with id 0); an empty prompt is BOS, EOS, padding."""
    bos, eos = vocab - 2, vocab - 1
    rows = []
    for n in lengths:
        words = torch.randint(1, vocab - 2, (n,), generator=gen)
        row = torch.cat([torch.tensor([bos]), words, torch.tensor([eos])])
        fill = eos if pad < 0 else pad
        rows.append(torch.cat([row, torch.full((77 - row.numel(),), fill)]))
    return torch.stack(rows).to(torch.int64)


def _text(out: pathlib.Path, net: str, name: str, spec: dict, gen: torch.Generator) -> None:
    cfg = CLIPTextConfig(max_position_embeddings=77, hidden_act=TEXT_ACT[net], **spec)
    model = CLIPTextModel(cfg).eval()
    _randomise(model, gen)
    root = out / net / name
    model.save_pretrained(str(root / "model"))
    pad = -1 if net == "clip_text" else 0
    for case, lengths in (("one_prompt", [5]), ("batch_with_empty", [11, 0, 75])):
        ids = _token_rows(lengths, cfg.vocab_size, pad, gen)
        with torch.no_grad():
            hidden = model(input_ids=ids).last_hidden_state
        meta = {"graph": "text_encoder", "net": net, "config": name, "case": case,
                "computes": "CLIPTextModel(input_ids).last_hidden_state"}
        _write_case(root / case, meta, {"input_ids": ids}, {"last_hidden_state": hidden.float()})


def _vae(out: pathlib.Path, net: str, name: str, spec: dict, gen: torch.Generator) -> None:
    levels = len(spec["block_out_channels"])
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels,
        latent_channels=4,
        sample_size=32,
        **spec,
    ).eval()
    _randomise(vae, gen)
    if net == "sd_vae" and name == "b":
        # Push some log-variance channels past the posterior's clamp [-30, 20] so that it is tested.
        with torch.no_grad():
            vae.quant_conv.bias[4:6] += 25.0
            vae.quant_conv.bias[7] -= 35.0
    root = out / net / name
    vae.save_pretrained(str(root / "model"))
    factor = 2 ** (levels - 1)
    kind = "vae_decoder" if net == "sd_vae" else "x4_vae_decoder"
    for case, (n, h, w) in (("decode_1x4x6", (1, 4, 6)), ("decode_3x5x3", (3, 5, 3))):
        z = torch.randn((n, 4, h, w), generator=gen) * 2.0
        with torch.no_grad():
            sample = vae.decode(z).sample
        meta = {"graph": kind, "net": net, "config": name, "case": case, "factor": factor,
                "computes": "AutoencoderKL.decode(latent_sample).sample"}
        _write_case(root / case, meta, {"latent_sample": z}, {"sample": sample})
    if net != "sd_vae":
        return
    for case, (n, h, w) in (("encode_1x32x48", (1, 32, 48)), ("encode_2x24x40", (2, 24, 40))):
        x = torch.tanh(torch.randn((n, 3, h, w), generator=gen))
        with torch.no_grad():
            post = vae.encode(x).latent_dist
        meta = {"graph": "vae_encoder", "net": net, "config": name, "case": case, "factor": factor,
                "computes": "AutoencoderKL.encode(sample).latent_dist: parameters (moments), mean, logvar"}
        outputs = {"latent_parameters": post.parameters, "mean": post.mean, "logvar": post.logvar}
        _write_case(root / case, meta, {"sample": x}, outputs)


def generate(out_dir: pathlib.Path) -> None:
    torch.set_num_threads(2)
    for net in ("clip_text", "x4_text", "sd_vae", "x4_vae"):
        shutil.rmtree(out_dir / net, ignore_errors=True)
    gen = torch.Generator().manual_seed(SEED)
    for net, configs in TEXT_CONFIGS.items():
        for name, spec in configs.items():
            _text(out_dir, net, name, spec, gen)
    for net, configs in VAE_CONFIGS.items():
        for name, spec in configs.items():
            _vae(out_dir, net, name, spec, gen)
