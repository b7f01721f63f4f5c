"""Run ``segment``, ``diagnose`` and ``evaluate`` on a few real images, and ``report`` on the committed results, and
reduce their outputs to a comparable digest.

Issue 10 (the layout rebuild) must not change any command's output. ``python tests/behaviour.py OUT.json`` with
the ORIGINAL code on the path (commit 395dd5b, before the rebuild) wrote ``tests/data/behaviour_395dd5b.json``;
``tests/test_behaviour.py`` runs the same commands with the current code and compares the digests exactly.

The digest keeps every output file (of ``report``: the README and the figures): CSV and JSON contents (the
``seconds`` timing column dropped, absolute paths replaced by placeholders), masks as the sha256 of their decoded
pixels, overlays and other files as the sha256 of their bytes, and each command's exit status and standard output.
What was added after the rebuild is left out of the digest (:data:`ADDED_COLUMNS`, :data:`ADDED_REPORT_SECTIONS`,
:data:`ADDED_FIGURES`): issue 12's ``quality`` and ``review`` columns and the report's quality section and figure.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("DERMOSEG_DATA", "").strip() or REPO / ".." / "shared" / "data").resolve()  # as conftest
ISIC_IDS = ("ISIC_0000021", "ISIC_0000032")  # two of the committed validation split
PH2_IDS = ("IMD002", "IMD004")
PH2_IMAGES = Path("ph2") / "PH2Dataset" / "PH2 Dataset images"
ADDED_COLUMNS = ("seconds", "quality", "review")  # timing, and the quality flag of issue 12
# report sections added after the rebuild (issues 12, 13, 16)
ADDED_REPORT_SECTIONS = ("## Per-image quality flag", "## Variants tried for better shipped models")
ADDED_FIGURES = ("quality_reliability",)  # name prefixes


def _inputs(tmp: Path) -> tuple[Path, Path]:
    """Copy the images into ``tmp/in`` and the ground truths into ``tmp/truth``; a PH2-layout data root with the
    two PH2 cases goes to ``tmp/data``."""
    images, truth = tmp / "in", tmp / "truth"
    images.mkdir()
    truth.mkdir()
    isic = DATA_ROOT / "isic2018_task1"
    for i in ISIC_IDS:
        shutil.copy(isic / "ISIC2018_Task1-2_Training_Input" / f"{i}.jpg", images)
        shutil.copy(isic / "ISIC2018_Task1_Training_GroundTruth" / f"{i}_segmentation.png", truth)
    for i in PH2_IDS:
        case = DATA_ROOT / PH2_IMAGES / i
        shutil.copytree(case, tmp / "data" / PH2_IMAGES / i)
        shutil.copy(case / f"{i}_Dermoscopic_Image" / f"{i}.jpg", images)
        shutil.copy(case / f"{i}_lesion" / f"{i}_lesion.png", truth)
    return images, truth


def _file_digest(path: Path, tmp: Path) -> object:
    text = lambda: path.read_text(encoding="utf-8").replace(str(tmp), "<tmp>")  # noqa: E731
    if path.suffix == ".csv":
        rows = list(csv.reader(io.StringIO(text())))
        header = rows[0]
        drop = {header.index(c) for c in ADDED_COLUMNS if c in header}
        file_col = header.index("file") if "file" in header else None
        for r in rows[1:]:
            if file_col is not None:
                r[file_col] = Path(r[file_col]).name
        return [[c for k, c in enumerate(r) if k not in drop] for r in rows]
    if path.suffix == ".json":
        return json.loads(text())
    if path.suffix == ".png":
        return hashlib.sha256(np.asarray(Image.open(path)).tobytes()).hexdigest()
    if path.suffix in (".txt", ".md"):  # README.txt names the classifier file by its absolute path
        # (and of the report's README.md, the sections added after the rebuild are left out)
        parts = re.split(r"(?m)^(?=## )", text())
        kept = "".join(p for p in parts if not p.startswith(ADDED_REPORT_SECTIONS))
        return re.sub(r"Classifier: \S*/", "Classifier: ", kept)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(argv: list[str], tmp: Path) -> dict:
    from dermoseg.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    return {"exit": code, "stdout": out.getvalue().replace(str(tmp), "<tmp>")}


def digest() -> dict:
    """Run the commands in a temporary folder and return ``{command: {exit, stdout, files}}``."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        images, truth = _inputs(tmp)
        # The reference ran eager PyTorch; ONNX Runtime, the default engine since issue 14, agrees with it within
        # the tolerances of tests/test_engine_parity.py, not bit for bit, so these runs ask for --engine torch, on
        # one thread as the reference did (a convolution's sums are ordered differently on two threads: ~1e-8)
        torch_engine = ["--engine", "torch", "--threads", "1"]
        runs = {
            "segment": ["segment", str(images), "--out", str(tmp / "segment"), "--mm-per-pixel", "0.05", "--diagnose",
                        *torch_engine],
            "segment_no_tta_preprocess": ["segment", str(images), "--out", str(tmp / "segment_no_tta_preprocess"),
                                          "--no-tta", "--preprocess", "--threshold", "0.4", *torch_engine],
            "diagnose": ["diagnose", str(images), "--out", str(tmp / "diagnose"), *torch_engine],
            "evaluate_dirs": ["evaluate", "--pred", str(tmp / "segment"), "--truth", str(truth), "--out",
                              str(tmp / "evaluate_dirs")],
            "evaluate_dataset": ["evaluate", "--dataset", "ph2", "--data-root", str(tmp / "data"), "--out",
                                 str(tmp / "evaluate_dataset"), "--save-masks", *torch_engine],
            # the reproduction report from the committed results (no data folder: the worst-case sheets are kept)
            "report": ["report", "--config", str(REPO / "configs" / "report.yaml"), "--results", str(tmp / "report"),
                       "--data-root", str(tmp / "no_data")],
        }
        shutil.copytree(REPO / "docs" / "results", tmp / "report")
        result = {}
        for name, argv in runs.items():
            result[name] = _run(argv, tmp)
            out_dir = tmp / name
            files = [out_dir / "README.md", *sorted(p for p in (out_dir / "figures").glob("*")
                                                     if not p.name.startswith(ADDED_FIGURES))] if name == "report" else \
                sorted(p for p in out_dir.rglob("*") if p.is_file())
            result[name]["files"] = {str(p.relative_to(out_dir)): _file_digest(p, tmp) for p in files}
        return result


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(digest(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
