#!/usr/bin/env bash
# Creates python/.venv with the pinned dependencies of the lavie-ref package (PyTorch: large, install
# once per machine; CI never runs this). Then: python/.venv/bin/python -m lavie_ref.golden
set -euo pipefail
cd "$(dirname "$0")/../python"
[ -x .venv/bin/python ] || python3.11 -m venv .venv
.venv/bin/pip install -q -r requirements.txt
.venv/bin/pip install -q --no-deps -e .
