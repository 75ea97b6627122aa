"""PyTorch eager side of bench/ort_vs_torch.ts: a long-lived worker that builds our PyTorch modules (and the
public transformers / diffusers classes for the text encoders and VAEs), loads the weights the TypeScript
builder exported, and times forward passes on request, so that the benchmark can alternate ONNX Runtime and
PyTorch runs within one session.

    python -m lavie_ref.bench_eager [--threads 2]

Line protocol (stdin -> stdout, one reply line per request; anything else the libraries print goes to stderr):

    info                        -> ok {"torch": ..., "threads": 2, "interop_threads": 1, ...}
    load <spec.json>            -> ok {"network": id, "keys": file keys loaded, "filled": [module keys not in the file]}
    check <network> <out.st>    -> ok            (one forward pass; writes its output as tensor "out")
    run <network> <n>           -> ok <ms> ...   (n timed forward passes, wall ms of each)
    drop <network>              -> ok
    quit                        -> (exits)

A failed request answers `error <message>` and the worker keeps serving. spec.json:

    {"network": "base_unet", "kind": "text" | "unet" | "vsr_unet" | "vae_decoder" | "vae_encoder",
     "config": {...}, "weights": "<file.safetensors>", "inputs": "<file.safetensors>",
     "rotary_dim": 16, "temporal_groups": 8}            # the last two for vsr_unet only

config is the library's own format: CLIPTextConfig fields, AutoencoderKL constructor arguments, a
diffusers-style UNet config.json (configs.UNetConfig.from_json_dict) or the VSRUNetConfig fields of the official
VSR unet_3d_config.json. Weights load strictly: every module key must come from the file, except
keys the module itself derives (the text encoder's position_ids buffer) or shares (the VSR UNet's per-layer
copies of temporal_rotary_emb.freqs), and every file key must be a module key.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .configs import UNetConfig
from .unet_loader import build_unet
from .unet_vsr import VSRUNet, VSRUNetConfig

Forward = Callable[[], torch.Tensor]
Fill = Callable[[str], torch.Tensor | None]


def strict_load(module: torch.nn.Module, tensors: dict[str, torch.Tensor], fill: Fill) -> list[str]:
    """Loads `tensors` into `module` with strict=True; keys the module has and the file lacks come from
    `fill` (None: refused). Returns the filled keys."""
    expected = module.state_dict()
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ValueError(f"weights: {len(extra)} key(s) the module does not have, e.g. {extra[:3]}")
    full = dict(tensors)
    filled = []
    for key in expected:
        if key in full:
            continue
        value = fill(key)
        if value is None:
            raise ValueError(f"weights: module key {key!r} is missing from the file")
        full[key] = value
        filled.append(key)
    module.load_state_dict(full, strict=True)
    return filled


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _build_text(spec: dict[str, Any], w: dict[str, torch.Tensor], x: dict[str, torch.Tensor]):
    from transformers import CLIPTextConfig, CLIPTextModel

    model = CLIPTextModel(CLIPTextConfig(**spec["config"]))
    own = model.state_dict()
    filled = strict_load(model, w, lambda k: own[k] if k.endswith("embeddings.position_ids") else None)
    ids = x["input_ids"]
    return model, filled, lambda: model(input_ids=ids).last_hidden_state


def _build_unet(spec: dict[str, Any], w: dict[str, torch.Tensor], x: dict[str, torch.Tensor]):
    model = build_unet(UNetConfig.from_json_dict(spec["config"], spec["network"]))
    filled = strict_load(model, w, lambda k: None)
    sample, t, text = x["sample"], x["timestep"], x["encoder_hidden_states"]
    return model, filled, lambda: model(sample, t, text)


def _build_vsr(spec: dict[str, Any], w: dict[str, torch.Tensor], x: dict[str, torch.Tensor]):
    # The dataclass itself (not from_json, which validates against the official constants): VSRUNet validates
    # the config with the spec's rotary_dim / temporal_groups.
    cfg = VSRUNetConfig(**spec["config"])
    model = VSRUNet(cfg, rotary_dim=spec.get("rotary_dim", 32), temporal_groups=spec.get("temporal_groups", 32))
    root = "temporal_rotary_emb.freqs"
    filled = strict_load(model, w, lambda k: w[root] if k.endswith(".rotary_emb.freqs") and root in w else None)
    sample, t, text, labels = x["sample"], x["timestep"], x["encoder_hidden_states"], x["class_labels"]
    latent, low_res = sample[:, :4], sample[:, 4:]  # the graph's 7-channel sample is latent ‖ low-res video
    return model, filled, lambda: model(latent, t, low_res, text, labels)


def _build_vae(spec: dict[str, Any], w: dict[str, torch.Tensor], x: dict[str, torch.Tensor]):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**spec["config"])
    # The decoder graph holds post_quant_conv + decoder, the encoder graph encoder + quant_conv: each half
    # loads strictly into its submodules, and every file key must belong to one of them.
    parts = ("post_quant_conv", "decoder") if spec["kind"] == "vae_decoder" else ("encoder", "quant_conv")
    stray = [k for k in w if k.split(".", 1)[0] not in parts]
    if stray:
        raise ValueError(f"weights: keys outside {parts}: {stray[:3]}")
    for part in parts:
        strict_load(getattr(vae, part), _prefixed(w, part + "."), lambda k: None)
    if spec["kind"] == "vae_decoder":
        z = x["latent_sample"]
        return vae, [], lambda: vae.decode(z).sample
    image = x["sample"]
    return vae, [], lambda: vae.encode(image).latent_dist.parameters


BUILDERS = {"text": _build_text, "unet": _build_unet, "vsr_unet": _build_vsr, "vae_decoder": _build_vae,
            "vae_encoder": _build_vae}


class Worker:
    def __init__(self) -> None:
        self.nets: dict[str, tuple[torch.nn.Module, Forward]] = {}

    def info(self) -> dict[str, Any]:
        import diffusers
        import transformers

        return {"torch": torch.__version__, "diffusers": diffusers.__version__,
                "transformers": transformers.__version__, "threads": torch.get_num_threads(),
                "interop_threads": torch.get_num_interop_threads(), "mkldnn": torch.backends.mkldnn.is_available(),
                "python": sys.version.split()[0]}

    def load(self, path: str) -> dict[str, Any]:
        with open(path) as f:
            spec = json.load(f)
        kind = spec["kind"]
        if kind not in BUILDERS:
            raise ValueError(f"spec kind {kind!r} is not one of {sorted(BUILDERS)}")
        weights = load_file(spec["weights"])
        model, filled, forward = BUILDERS[kind](spec, weights, load_file(spec["inputs"]))
        model.eval()
        self.nets[spec["network"]] = (model, forward)
        return {"network": spec["network"], "keys": len(weights), "filled": filled}

    def forward(self, network: str) -> Forward:
        if network not in self.nets:
            raise ValueError(f"network {network!r} is not loaded (loaded: {sorted(self.nets)})")
        return self.nets[network][1]

    def handle(self, words: list[str]) -> str:
        cmd, args = words[0], words[1:]
        if cmd == "info":
            return "ok " + json.dumps(self.info())
        if cmd == "load" and len(args) == 1:
            return "ok " + json.dumps(self.load(args[0]))
        if cmd == "check" and len(args) == 2:
            with torch.inference_mode():
                out = self.forward(args[0])()
            save_file({"out": out.float().contiguous()}, args[1])
            return "ok"
        if cmd == "run" and len(args) == 2:
            forward, n = self.forward(args[0]), int(args[1])
            times = []
            with torch.inference_mode():
                for _ in range(n):
                    t0 = time.perf_counter()
                    forward()
                    times.append((time.perf_counter() - t0) * 1000)
            return "ok " + " ".join(f"{t:.4f}" for t in times)
        if cmd == "drop" and len(args) == 1:
            self.nets.pop(args[0], None)
            return "ok"
        raise ValueError(f"unknown request {' '.join(words)!r}; expected info | load <spec> | check <net> <file> | "
                         "run <net> <n> | drop <net> | quit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (inter-op is 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    reply, sys.stdout = sys.stdout, sys.stderr  # library prints must not corrupt the protocol
    worker = Worker()
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        try:
            answer = worker.handle(words)
        except Exception as e:  # noqa: BLE001 - every failure is reported to the client, which decides
            answer = "error " + f"{type(e).__name__}: {e}".replace("\n", " ")
        reply.write(answer + "\n")
        reply.flush()


if __name__ == "__main__":
    main()
