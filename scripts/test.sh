#!/usr/bin/env bash
# Install whatever is missing, then run the whole test suite on the real data in ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/python -m pytest -q "$@"
# The whole suite (no arguments) also checks the wheel outside the repository; WHEEL_CHECK=0 skips that.
if [ $# -eq 0 ] && [ "${WHEEL_CHECK:-1}" != 0 ]; then
  PYTHON=.venv/bin/python bash scripts/wheel_check.sh
fi
