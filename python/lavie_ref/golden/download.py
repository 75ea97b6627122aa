"""A miniature of LaVie's `pretrained_models/` download, with random weights, for end-to-end import tests.

Same folder layout, file names, file formats and state-dict keys as the published download (LaVie's three
.pt files plus the Stable Diffusion 1.4 and x4-upscaler folders), at configurations small enough that the
whole cascade (base -> interpolation -> VSR) runs on a CPU at 64x64 (about a second per sampling step):

  pretrained_models/lavie_base.pt                 torch.save({"ema": state_dict}), float16
  pretrained_models/lavie_interpolation.pt        torch.save({"ema": state_dict}), float16
  pretrained_models/lavie_vsr.pt                  torch.save({"ema": state_dict}), float32
  pretrained_models/stable-diffusion-v1-4/        unet/config.json, vae/, text_encoder/, tokenizer/, scheduler/
  pretrained_models/stable-diffusion-x4-upscaler/ vae/, text_encoder/, tokenizer/, scheduler/, low_res_scheduler/
  vsr_unet_config.json                            the VSR UNet's config (LaVie keeps it in its code repository)

VAEs and text encoders are written by the libraries LaVie pins (diffusers 0.16.0 AutoencoderKL and
transformers 4.28.1 CLIPTextModel / CLIPTokenizer save_pretrained). Not written (see README.md): SD1.4's
2-D UNet weights (unet/diffusion_pytorch_model.bin: LaVie loads them, then its checkpoint replaces every
weight), the x4 upscaler's unet/ (LaVie builds its own VSR UNet), model_index.json, safety_checker/,
feature_extractor/.
"""

from __future__ import annotations

import copy
import gzip
import json
import math
import pathlib
import shutil
import tempfile

import torch
from diffusers import AutoencoderKL
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
from transformers.models.clip.tokenization_clip import bytes_to_unicode

from ..configs import SD14_UNET_CONFIG, UNetConfig
from ..unet_loader import build_unet
from ..unet_vsr import VSRUNet, VSRUNetConfig

ROOT = pathlib.Path(__file__).resolve().parents[3]
BPE_FILE = ROOT / "models" / "tokenizer" / "data" / "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 500  # of CLIP's 48894: vocabulary 256 bytes + 256 bytes</w> + 500 merges + 2 specials = 1014
SD_TEXT_WIDTH = 32  # = the base/interpolation UNets' cross_attention_dim
X4_TEXT_WIDTH = 24  # = the VSR UNet's cross_attention_dim

# stable-diffusion-v1-4/unet/config.json in SD1.4's own format (2-D block names, which LaVie's
# from_pretrained_2d replaces with the fixed 3-D pattern). 4 levels, as that override requires.
# One 32-wide head per level: the base UNet's rotary embedding rotates 32 channels per head.
SD_UNET_CONFIG = {
    **SD14_UNET_CONFIG,
    "attention_head_dim": 1,
    "block_out_channels": [32, 32, 32, 32],
    "cross_attention_dim": SD_TEXT_WIDTH,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 8,
}

# The VSR UNet in the published unet_3d_config.json format and key order: the published layout in
# miniature (plain first level, cross-attention last level with only_cross_attention, a self-attention
# mid block; temporal modules after the down-sampled level, the mid block and the first up level).
# norm_num_groups 16 keeps the config's groups apart from the 32 groups fixed in the temporal parts.
# Noise levels 0..60 (the cascade uses 50) keep the class-embedding table small.
VSR_UNET_CONFIG = {
    "_class_name": "UNet3DVSRModel",
    "act_fn": "silu",
    "attention_head_dim": 1,
    "block_out_channels": [32, 32],
    "center_input_sample": False,
    "cross_attention_dim": X4_TEXT_WIDTH,
    "down_block_types": ["DownBlock3D", "CrossAttnDownBlock3D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 7,
    "layers_per_block": 1,
    "max_noise_level": 60,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 16,
    "num_class_embeds": 64,
    "only_cross_attention": [True, True],
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["CrossAttnUpBlock3D", "UpBlock3D"],
    "use_linear_projection": True,
    "down_temporal_idx": [1],
    "mid_temporal": True,
    "up_temporal_idx": [0],
    "temporal_module_config": {
        "num_attention_layers": 1,
        "attention_block_types": ["", ""],
        "cross_frame_attention_mode": "0_i-1_i",
        "temporal_shift_fold_div": 2,
        "temporal_shift_direction": "right",
        "use_dcn_warpping": False,
        "use_deformable_conv": True,
        "attention_dim_div": 2,
    },
    "use_first_frame": False,
    "video_condition": False,
    "freeze_pretrained_2d_upsampler": True,
}

# AutoencoderKL: the SD VAE has 4 levels (x8), the x4 upscaler's 3 (x4), as the published ones; widths
# change between levels so that conv_shortcut is present in encoder and decoder.
SD_VAE = dict(block_out_channels=[8, 16, 16, 16], layers_per_block=1, norm_num_groups=4, sample_size=64)
X4_VAE = dict(block_out_channels=[8, 16, 16], layers_per_block=2, norm_num_groups=4, sample_size=256,
              scaling_factor=0.08333)

SD_TEXT = dict(hidden_size=SD_TEXT_WIDTH, intermediate_size=4 * SD_TEXT_WIDTH, num_hidden_layers=2,
               num_attention_heads=2, hidden_act="quick_gelu", projection_dim=SD_TEXT_WIDTH)
X4_TEXT = dict(hidden_size=X4_TEXT_WIDTH, intermediate_size=4 * X4_TEXT_WIDTH, num_hidden_layers=2,
               num_attention_heads=2, hidden_act="gelu", projection_dim=X4_TEXT_WIDTH)

# The published scheduler configs (LaVie overrides the betas in code: linear 1e-4..0.02).
SD_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.7.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
X4_SCHEDULER = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.8.0",
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
X4_LOW_RES_SCHEDULER = {
    "_class_name": "DDPMScheduler",
    "_diffusers_version": "0.8.0",
    "beta_end": 0.02,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.0001,
    "clip_sample": True,
    "num_train_timesteps": 1000,
    "trained_betas": None,
    "variance_type": "fixed_small",
}

# Parameters LaVie initialises to zero (temporal attention output projections, the VSR temporal
# modules' shift_conv): small random here, so that they are exercised without dominating.
_ZERO_INIT = ("attn_temp.to_out.0", "attn_temporal.to_out.0", "shift_conv")
SEEDS = {"base": 101, "interp": 102, "vsr": 103, "sd_vae": 104, "x4_vae": 105, "sd_text": 106, "x4_text": 107}


def randomise(model: nn.Module, seed: int) -> None:
    """PyTorch-default-like random weights, every parameter non-trivial: matrices, convolutions and their
    biases U(+-1/sqrt(fan_in)) (a tenth of that in the modules LaVie zero-initialises), norms 1 + N(0, 0.1^2)
    and N(0, 0.1^2), embedding tables N(0, 0.5^2). Rotary `freqs` keep their defining values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            params = dict(module.named_parameters(recurse=False))
            if not params:
                continue
            if isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
                params["weight"].copy_(1 + 0.1 * torch.randn(params["weight"].shape, generator=gen))
                params["bias"].copy_(0.1 * torch.randn(params["bias"].shape, generator=gen))
                continue
            if isinstance(module, nn.Embedding):
                params["weight"].copy_(0.5 * torch.randn(params["weight"].shape, generator=gen))
                continue
            weight = params.get("weight")
            fan_in = weight[0].numel() if weight is not None and weight.dim() >= 2 else 1
            bound = (0.1 if name.endswith(_ZERO_INIT) else 1.0) / math.sqrt(fan_in)
            for pname, p in params.items():
                if pname == "freqs":
                    continue
                if p.dim() < 2 and pname != "bias":
                    raise ValueError(f"randomise: no rule for parameter {name}.{pname} {tuple(p.shape)}")
                p.copy_((2 * torch.rand(p.shape, generator=gen) - 1) * bound)


def _write_json(path: pathlib.Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _lavie_unets(pm: pathlib.Path) -> None:
    """lavie_base.pt and lavie_interpolation.pt, both built from SD_UNET_CONFIG, stored in float16 (lavie_vsr.pt
    and the library files are float32): the 4 levels that LaVie's config override imposes make these the
    largest networks, and float16 keeps the folder near 7 MB."""
    for network, file, seed in (("base_unet", "lavie_base.pt", SEEDS["base"]),
                                ("interp_unet", "lavie_interpolation.pt", SEEDS["interp"])):
        model = build_unet(UNetConfig.from_json_dict(SD_UNET_CONFIG, network))
        randomise(model, seed)
        stored = copy.deepcopy(model).to(torch.float16)  # deepcopy keeps shared modules shared: one rotary freqs storage
        torch.save({"ema": stored.state_dict()}, pm / file)


def _lavie_vsr(pm: pathlib.Path) -> None:
    model = VSRUNet(VSRUNetConfig.from_json(VSR_UNET_CONFIG))
    randomise(model, SEEDS["vsr"])
    torch.save({"ema": model.state_dict()}, pm / "lavie_vsr.pt")


def _vae(folder: pathlib.Path, spec: dict, seed: int) -> None:
    levels = len(spec["block_out_channels"])
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * levels,
                        up_block_types=["UpDecoderBlock2D"] * levels, latent_channels=4, **spec)
    randomise(vae, seed)
    vae.save_pretrained(str(folder))


def _text_encoder(folder: pathlib.Path, spec: dict, vocab_size: int, seed: int) -> None:
    cfg = CLIPTextConfig(vocab_size=vocab_size, max_position_embeddings=77, **spec)
    model = CLIPTextModel(cfg)
    randomise(model, seed)
    model.save_pretrained(str(folder))


def _bpe_files(tmp: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """vocab.json and merges.txt of a CLIP BPE cut to its first N_MERGES merges, vocabulary in CLIP's order:
    byte symbols, byte symbols + '</w>', merged symbols, <|startoftext|>, <|endoftext|>."""
    lines = gzip.open(BPE_FILE).read().decode("utf-8").split("\n")
    merges = lines[1 : N_MERGES + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split(" ")) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    if len(set(vocab)) != len(vocab):
        raise ValueError("tokenizer: duplicate symbols in the cut vocabulary")
    vocab_file, merges_file = tmp / "vocab.json", tmp / "merges.txt"
    vocab_file.write_text(json.dumps({s: i for i, s in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_file, merges_file


def _tokenizers(pm: pathlib.Path) -> int:
    """Both tokenizer folders; returns the vocabulary size. The x4 upscaler's is SD2-style: its
    special_tokens_map.json says pad "!" (id 0), overriding tokenizer_config.json's "<|endoftext|>"."""
    sd_dir = pm / "stable-diffusion-v1-4" / "tokenizer"
    x4_dir = pm / "stable-diffusion-x4-upscaler" / "tokenizer"
    with tempfile.TemporaryDirectory() as d:
        vocab_file, merges_file = _bpe_files(pathlib.Path(d))
        tok = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)
        tok.save_pretrained(str(sd_dir))
        tok.save_pretrained(str(x4_dir))
    special = x4_dir / "special_tokens_map.json"
    data = json.loads(special.read_text(encoding="utf-8"))
    data["pad_token"] = "!"
    special.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    for folder, pad, pad_id in ((sd_dir, "<|endoftext|>", len(tok) - 1), (x4_dir, "!", 0)):
        back = CLIPTokenizer.from_pretrained(str(folder))
        if (back.pad_token, back.pad_token_id, len(back)) != (pad, pad_id, len(tok)):
            raise AssertionError(f"{folder}: pad {back.pad_token!r}/{back.pad_token_id}, {len(back)} tokens")
    return len(tok)


def generate(out_dir: pathlib.Path) -> None:
    torch.set_num_threads(2)
    pm = out_dir / "pretrained_models"
    shutil.rmtree(pm, ignore_errors=True)
    pm.mkdir(parents=True)
    sd, x4 = pm / "stable-diffusion-v1-4", pm / "stable-diffusion-x4-upscaler"

    _lavie_unets(pm)
    _lavie_vsr(pm)
    _write_json(out_dir / "vsr_unet_config.json", VSR_UNET_CONFIG)
    _write_json(sd / "unet" / "config.json", SD_UNET_CONFIG)

    vocab_size = _tokenizers(pm)
    _text_encoder(sd / "text_encoder", SD_TEXT, vocab_size, SEEDS["sd_text"])
    _text_encoder(x4 / "text_encoder", X4_TEXT, vocab_size, SEEDS["x4_text"])
    _vae(sd / "vae", SD_VAE, SEEDS["sd_vae"])
    _vae(x4 / "vae", X4_VAE, SEEDS["x4_vae"])

    _write_json(sd / "scheduler" / "scheduler_config.json", SD_SCHEDULER)
    _write_json(x4 / "scheduler" / "scheduler_config.json", X4_SCHEDULER)
    _write_json(x4 / "low_res_scheduler" / "scheduler_config.json", X4_LOW_RES_SCHEDULER)

    files = sorted(p for p in out_dir.rglob("*") if p.is_file() and p.name != "README.md")
    rows = [f"| {p.relative_to(out_dir)} | {p.stat().st_size:,} |" for p in files]
    total = sum(p.stat().st_size for p in files)
    (out_dir / "README.md").write_text(README.replace("@FILES@", "\n".join(rows)).replace("@TOTAL@", f"{total:,}"))
    print(f"  {len(files)} files, {total:,} bytes")


README = """# A miniature LaVie download (random weights)

`pretrained_models/` is laid out like the folder LaVie's instructions have users download (the three LaVie
checkpoints, Stable Diffusion 1.4 and the Stable Diffusion x4 upscaler), with the published file names,
formats and state-dict keys, at configurations small enough to run the whole cascade on a CPU.
**Every weight is random**: the videos it makes are structured noise. It exists to test
`lavie models import` end to end and `lavie generate --model-dir` on what that import writes.

Regenerate (deterministic: a rerun writes byte-identical files):

    cd python && .venv/bin/python -m lavie_ref.golden --only download

Import:

    lavie models import --from test/golden/download/pretrained_models \\
        --vsr-unet-config test/golden/download/vsr_unet_config.json ...

The VSR UNet's config is not part of the published download (LaVie keeps it in its code repository,
vsr/configs/unet_3d_config.json), hence `vsr_unet_config.json` here, in that file's format.

## Networks

- `lavie_base.pt`, `lavie_interpolation.pt`: `{"ema": state_dict}` (float16) of LaVie's base and
  interpolation UNets, built as LaVie builds them from `stable-diffusion-v1-4/unet/config.json` (SD1.4's
  file format: 4 levels of width 32, 1 head of 32 channels, 1 resnet per level, 8 GroupNorm groups,
  cross-attention dim 32; the interpolation UNet takes 8 input channels).
- `lavie_vsr.pt`: `{"ema": state_dict}` (float32) of the VSR UNet of `vsr_unet_config.json` (2 levels of
  width 32, cross-attention dim 24, noise levels 0..60, temporal modules after down level 1, the mid
  block and up level 0).
- `stable-diffusion-v1-4/{vae,text_encoder,tokenizer}`, `stable-diffusion-x4-upscaler/{vae,text_encoder,
  tokenizer}`: diffusers 0.16.0 / transformers 4.28.1 `save_pretrained` output (float32). SD VAE x8
  (widths 8, 16, 16, 16), x4 VAE x4 (widths 8, 16, 16; scaling_factor 0.08333); CLIP text encoders of 2
  layers, 32-d quick_gelu (SD1.4) and 24-d gelu (x4); a CLIP BPE tokenizer cut to the first 500 merges of
  the real one (1014 tokens), padding with `<|endoftext|>` (SD1.4) or `!` (x4, SD2 style).
- Scheduler configs: the published files' values.

Video sizes: base height and width divisible by 64 keep every downsampling exact (VAE x8, then three
UNet levels), e.g. 16 frames of 64x64; interpolation gives 61 frames of the same size; VSR (one
downsampling, at the low-res size) gives x4, 256x256.

Weights: PyTorch-default-like scales (U(+-1/sqrt(fan_in)) for matrices, convolutions and biases; norms
1 + N(0, 0.1^2) and N(0, 0.1^2); embedding tables N(0, 0.5^2)); the parameters LaVie initialises to zero
(temporal attention output projections, shift_conv) are small random; the rotary `freqs` keep their
defining values. Random UNets do not predict the noise, so under guidance the base and interpolation
latents grow large (std ~10^2 after 50 steps); the VAEs' final GroupNorm keeps decoded frames moderate.

Not included, because LaVie overwrites or ignores them: the 2-D UNet weights
`stable-diffusion-v1-4/unet/diffusion_pytorch_model.bin` (LaVie's from_pretrained_2d loads them, then the
LaVie checkpoint replaces every weight), the x4 upscaler's `unet/` (LaVie builds its VSR UNet from its own
config and checkpoint), `model_index.json`, `safety_checker/`, `feature_extractor/`.

## Files

| file | bytes |
|---|---|
@FILES@

Total @TOTAL@ bytes.
"""
