#!/usr/bin/env bash
# Create .venv and install freshrag with its test tools; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
# torch is pinned in the same install so pip takes the CPU wheel, not the CUDA build.
.venv/bin/pip install -q "torch==2.13.0" -e ".[dev]"
# unstructured's PDF code imports unstructured-inference; its own dependency chain
# (timm -> torchvision) has no CPU wheel and breaks torch, so it goes in without deps.
.venv/bin/pip install -q --no-deps "unstructured-inference==1.6.14"
.venv/bin/python -c "import freshrag.cli" && echo "freshrag installed in .venv"
