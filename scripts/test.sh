#!/usr/bin/env bash
# Install whatever is missing, then run the whole test suite on the real data in $DERMOSEG_DATA, else ../shared/data.
# The browser test drives Debian's chromium (installed here with apt when missing) through Playwright's Python
# package (a test extra); Playwright's own browser download is never used.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi
.venv/bin/python -m pytest -q "$@"
# The whole suite (no arguments) also checks the wheel outside the repository; WHEEL_CHECK=0 skips that.
if [ $# -eq 0 ] && [ "${WHEEL_CHECK:-1}" != 0 ]; then
  PYTHON=.venv/bin/python bash scripts/wheel_check.sh
fi
