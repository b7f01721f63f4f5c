"""Self-training pairs from a ``dermoseg segment`` run (issue 12): unflagged masks of unlabelled HAM10000 images
join the training pairs; flagged ones, evaluation images and incomplete runs are refused or left out."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from dermoseg.cli import main
from dermoseg.config import load_config
from dermoseg.errors import DatasetError
from dermoseg.segmentation.pseudo_labels import load_pseudo_labels
from dermoseg.segmentation.segmenter import Segmenter
from dermoseg.segmentation.task import SegmentationData, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, data_root):
    """A real ``dermoseg segment`` run of the shipped model over three HAM10000 images (no ground truth)."""
    out = tmp_path_factory.mktemp("pseudo") / "ham"
    images = sorted((data_root / "ham10000" / "images").glob("ISIC_*.jpg"))[:3]
    assert main(["segment", *map(str, images), "--out", str(out), "--no-measure", "--no-tta"]) == 0
    return out


def _rewrite(src: Path, dst: Path, change, drop: str | None = None) -> Path:
    """A copy of the teacher's results.csv (and masks) with ``change(rows)`` applied and column ``drop`` left
    out: hand-made cases."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    with open(dst / "results.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    rows = change(rows)
    with open(dst / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=[c for c in fields if c != drop], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return dst / "results.csv"


def test_unflagged_rows_become_pairs_and_flagged_ones_are_left_out(teacher_run, tmp_path, data_root):
    def flag_second(rows):
        for i, row in enumerate(rows):
            row["review"] = "True" if i == 1 else "False"
        return rows
    table = _rewrite(teacher_run, tmp_path / "run", flag_second)
    ids = [r["image_id"] for r in csv.DictReader(open(table, newline=""))]
    samples, summary = load_pseudo_labels(table, set())
    assert [s.image_id for s in samples] == [ids[0], ids[2]]
    assert all(s.mask_path == table.parent / f"{s.image_id}_segmentation.png" for s in samples)
    assert (summary["rows"], summary["kept"], summary["flagged"]) == (3, 2, 1) and len(summary["sha256"]) == 64
    # the data module adds them to the ISIC training pairs only (validation unchanged)
    cfg = load_config(REPO / "configs" / "smoke.yaml", {"data": {"root": str(data_root), "pseudo_labels": str(table)}})
    data = SegmentationData(cfg)
    data.setup()
    assert (len(data.train_set), len(data.val_set)) == (16 + 2, 16)
    assert data.pseudo_info == summary
    # and the trained model records which table taught it
    run = train(load_config(REPO / "configs" / "smoke.yaml", {"data": {"root": str(data_root), "pseudo_labels": str(table)},
                                                              "trainer": {"epochs": 1}}), tmp_path / "train")
    assert Segmenter.load(run).info["pseudo_labels"] == summary


@pytest.mark.parametrize("case, message", [
    ("isic_id", "ISIC_0000000 is an evaluation or ground-truth image"),
    ("ph2_id", "IMD002 is an evaluation or ground-truth image"),
    ("no_review", "has no review flag"),
    ("no_mask", "mask of .* not found"),
    ("no_column", "no column quality"),
])
def test_evaluation_images_and_incomplete_runs_are_refused(teacher_run, tmp_path, isic_samples, case, message):
    def change(rows):
        for row in rows:
            row["review"] = "False"  # every mask kept, so that each case's own problem is what is found
        if case in ("isic_id", "ph2_id"):
            rows[0]["image_id"] = "ISIC_0000000" if case == "isic_id" else "IMD002"
        elif case == "no_review":
            rows[0]["review"] = ""
        return rows
    run = tmp_path / "run"
    table = _rewrite(teacher_run, run, change, drop="quality" if case == "no_column" else None)
    if case == "no_mask":
        next(run.glob("*_segmentation.png")).unlink()
    with pytest.raises(DatasetError, match=message):
        load_pseudo_labels(table, {s.image_id for s in isic_samples})
    with pytest.raises(DatasetError, match="pseudo-label table not found"):
        load_pseudo_labels(run / "missing.csv", set())
