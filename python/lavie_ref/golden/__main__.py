"""Regenerates the committed golden vectors: python -m lavie_ref.golden [--out DIR] [--only NAME ...]."""

import argparse
import importlib
import pathlib

from . import GENERATORS


def main() -> None:
    root = pathlib.Path(__file__).resolve().parents[3]
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=pathlib.Path, default=root / "test" / "golden")
    ap.add_argument("--only", nargs="*", default=None, help=f"generators to run (of {GENERATORS})")
    args = ap.parse_args()
    names = args.only or GENERATORS
    for name in names:
        if name not in GENERATORS:
            raise SystemExit(f"--only: unknown generator {name!r}; allowed: {', '.join(GENERATORS)}")
        mod = importlib.import_module(f"lavie_ref.golden.{name}")
        out = args.out / name
        out.mkdir(parents=True, exist_ok=True)
        print(f"golden: {name} -> {out}", flush=True)
        mod.generate(out)


if __name__ == "__main__":
    main()
