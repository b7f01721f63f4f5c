"""src/ stays clean of pyflakes and pycodestyle errors (ruff, rules in pyproject.toml): undefined names, unused
imports and variables, bare excepts. An undefined name in a rarely used branch is how a NameError reached the
report's worst-cases section (issue 10)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing_in_src():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "src"], cwd=REPO, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


def test_ruff_would_catch_an_undefined_name(tmp_path):
    (tmp_path / "bad.py").write_text("def f():\n    return mask_dir\n")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config", str(REPO / "pyproject.toml"),
                           str(tmp_path / "bad.py")], capture_output=True, text=True)
    assert done.returncode == 1 and "F821" in done.stdout
