"""Small checkpoint files for the TypeScript readers in models/checkpoint: torch.save zip archives
(every dtype, non-contiguous views, shared storages, parameters, nested dicts, a module state dict),
the legacy pre-1.6 format (to be refused), safetensors files, and diffusers-style folders (single and
sharded). expected.json lists, per file and key, the dtype, shape and row-major values (int64 as
strings) the readers must return."""

import argparse
import collections
import json
import pathlib

import torch
from safetensors.torch import save_file

DTYPE_NAMES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def describe(t: torch.Tensor) -> dict:
    flat = t.detach().contiguous().reshape(-1)
    if t.dtype == torch.int64:
        values = [str(v) for v in flat.tolist()]
    elif t.dtype == torch.bool:
        values = [int(v) for v in flat.tolist()]
    elif t.is_floating_point():
        values = flat.float().tolist()  # what a float32 reader must produce
    else:
        values = flat.tolist()
    return {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "values": values}


def flat_state() -> "collections.OrderedDict[str, torch.Tensor]":
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g)
    steps = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 8 - 0.7
    s = collections.OrderedDict()
    s["f32"] = torch.randn(2, 3, generator=g)
    s["f16"] = steps.half()
    s["bf16"] = steps.bfloat16()
    s["f64"] = torch.randn(3, generator=g, dtype=torch.float64)
    s["i64"] = torch.tensor([0, -1, 2**40, 2**62 + 1])
    s["i32"] = torch.tensor([[-7, 8]], dtype=torch.int32)
    s["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
    s["i8"] = torch.tensor([-5, 5], dtype=torch.int8)
    s["u8"] = torch.tensor([0, 200, 255], dtype=torch.uint8)
    s["bool"] = torch.tensor([True, False, True])
    s["base"] = base
    s["transposed"] = base.t()  # shares base's storage, stride (1, 6)
    s["column"] = base[:, 2]  # offset 2, stride 6
    s["strided"] = base[1:3, ::2]  # offset 6, stride (6, 2)
    s["half_view"] = s["f16"][:, 1:3].t()  # a non-contiguous F16 view
    s["expanded"] = torch.randn(3, 1, generator=g).expand(3, 4)  # stride (1, 0)
    s["scalar"] = torch.tensor(3.5)
    s["empty"] = torch.zeros(0, 5)
    s["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    return s


def generate(out_dir: pathlib.Path) -> None:
    torch.set_num_threads(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    expected: dict = {}

    state = flat_state()
    torch.save(state, out_dir / "state.pt")
    expected["state.pt"] = {k: describe(v) for k, v in state.items()}
    torch.save(state, out_dir / "legacy.pt", _use_new_zipfile_serialization=False)

    torch.manual_seed(1)
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Conv2d(2, 2, 1))
    module_state = module.state_dict()  # an OrderedDict carrying _metadata (pickled with BUILD)
    ema = {k: v * 0.5 for k, v in module_state.items()}
    nested = {
        "ema": ema,
        "model": module_state,
        "args": argparse.Namespace(lr=1e-4, name="lavie", sizes=[1, 2]),
        "step": 5,
    }
    torch.save(nested, out_dir / "nested.pt")
    expected["nested.pt"] = {e: {k: describe(v) for k, v in d.items()} for e, d in (("ema", ema), ("model", module_state))}
    torch.save(module_state, out_dir / "module.bin")
    expected["module.bin"] = {k: describe(v) for k, v in module_state.items()}

    st = collections.OrderedDict(
        (k, state[k].contiguous()) for k in ("f32", "f16", "bf16", "f64", "i64", "i32", "u8", "bool", "scalar", "empty")
    )
    save_file(st, str(out_dir / "state.safetensors"), metadata={"format": "pt"})
    expected["state.safetensors"] = {k: describe(v) for k, v in st.items()}

    single = out_dir / "diffusers_single"
    single.mkdir(exist_ok=True)
    save_file(dict(module_state), str(single / "diffusion_pytorch_model.safetensors"))
    torch.save(ema, single / "diffusion_pytorch_model.bin")  # safetensors wins over .bin

    sharded = out_dir / "diffusers_sharded"
    sharded.mkdir(exist_ok=True)
    keys = list(module_state)
    shards = {"model-00001-of-00002.safetensors": keys[:2], "model-00002-of-00002.safetensors": keys[2:]}
    weight_map = {}
    for name, part in shards.items():
        save_file({k: module_state[k] for k in part}, str(sharded / name))
        weight_map.update({k: name for k in part})
    index = {"metadata": {"total_size": sum(v.numel() * 4 for v in module_state.values())}, "weight_map": weight_map}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index, indent=1) + "\n")
    expected["module_state"] = {k: describe(v) for k, v in module_state.items()}

    (out_dir / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
