"""Golden-vector generators. Each module exposes `generate(out_dir: pathlib.Path) -> None` and is
listed in GENERATORS; `python -m lavie_ref.golden [--only NAME ...]` regenerates test/golden/."""

GENERATORS: list[str] = ["samplers", "vsr_unet", "tokenizer", "unets", "textvae", "checkpoint_fixtures", "download", "base_stage"]
