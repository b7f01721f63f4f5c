"""Self-training pairs from a ``dermoseg segment`` run (issue 12): the confident, non-empty, unwarned masks of
unlabelled HAM10000 images join the training pairs, chosen without any ground truth; evaluation images, ids
outside the allow-list and incomplete runs are refused."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from dermoseg.cli import main
from dermoseg.config import load_config
from dermoseg.data.splits import ISIC_SPLIT, read_split
from dermoseg.errors import ConfigError, DatasetError
from dermoseg.segmentation.pseudo_labels import load_pseudo_labels, read_allowed_ids
from dermoseg.segmentation.segmenter import Segmenter
from dermoseg.segmentation.task import SegmentationData, train

REPO = Path(__file__).resolve().parents[1]
HAM_IDS = "ham10000/HAM10000_metadata.csv"


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, data_root):
    """A real ``dermoseg segment`` run of the shipped model over five HAM10000 images (no lesion masks)."""
    out = tmp_path_factory.mktemp("pseudo") / "ham"
    images = sorted((data_root / "ham10000" / "images").glob("ISIC_*.jpg"))[:5]
    assert main(["segment", *map(str, images), "--out", str(out), "--no-measure", "--no-tta"]) == 0
    return out


@pytest.fixture(scope="module")
def ham_ids(data_root):
    return read_allowed_ids(data_root / HAM_IDS)


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


def test_least_confident_empty_and_warned_masks_are_left_out(teacher_run, tmp_path, ham_ids):
    def empty_and_warned(rows):
        rows[0]["lesion_area_px"] = "0"
        rows[1]["warning"] = "image is nearly uniform"
        return rows
    table = _rewrite(teacher_run, tmp_path / "run", empty_and_warned)
    rows = list(csv.DictReader(open(table, newline="")))
    assert all(float(r["lesion_area_px"]) > 0 for r in rows[1:])  # the teacher found a lesion in the others
    # three candidates left; dropping 40% of them rounds down to one: the least confident by the teacher's own
    # mean lesion probability
    candidates = sorted(rows[2:], key=lambda r: float(r["mean_lesion_probability"]))
    samples, summary = load_pseudo_labels(table, set(), 0.4, ham_ids)
    assert [s.image_id for s in samples] == sorted(r["image_id"] for r in candidates[1:])
    assert all(s.mask_path == table.parent / f"{s.image_id}_segmentation.png" for s in samples)
    assert (summary["rows"], summary["kept"], summary["empty"], summary["warned"], summary["least_confident"]) \
        == (5, 2, 1, 1, 1)
    assert summary["confidence_cutoff"] == float(candidates[1]["mean_lesion_probability"])
    # a fraction of 0 keeps every non-empty, unwarned mask; 0.67 of 3 candidates rounds down to 2
    assert load_pseudo_labels(table, set(), 0.0, ham_ids)[1]["kept"] == 3
    assert load_pseudo_labels(table, set(), 0.67, ham_ids)[1]["least_confident"] == 2


def test_the_data_module_adds_them_to_training_only_and_the_model_records_them(teacher_run, tmp_path, data_root):
    settings = {"table": str(teacher_run / "results.csv"), "drop_fraction": 0.2, "allowed_ids": HAM_IDS}
    cfg = load_config(REPO / "configs" / "smoke.yaml", {"data": {"root": str(data_root), "pseudo_labels": settings}})
    data = SegmentationData(cfg)
    data.setup()
    assert (len(data.train_set), len(data.val_set)) == (16 + 4, 16)  # 5 masks, the least confident left out
    assert data.pseudo_info["kept"] == 4 and data.pseudo_info["allowed_ids"] == str(data_root / HAM_IDS)
    cfg["trainer"]["epochs"] = 1
    run = train(cfg, tmp_path / "train")
    assert Segmenter.load(run).info["pseudo_labels"] == data.pseudo_info


def test_a_validation_image_in_the_table_stops_training(teacher_run, tmp_path, data_root):
    val_id = next(i for i, part in read_split(ISIC_SPLIT).items() if part == "val")

    def with_val_image(rows):
        rows[0]["image_id"] = val_id
        return rows
    table = _rewrite(teacher_run, tmp_path / "run", with_val_image)
    settings = {"table": str(table), "drop_fraction": 0.1, "allowed_ids": HAM_IDS}
    cfg = load_config(REPO / "configs" / "smoke.yaml", {"data": {"root": str(data_root), "pseudo_labels": settings}})
    with pytest.raises(DatasetError, match=f"{val_id} is an evaluation or ground-truth image"):
        SegmentationData(cfg).setup()


@pytest.mark.parametrize("case, message", [
    ("isic_id", "ISIC_0000000 is an evaluation or ground-truth image"),
    ("isic_copy", "ISIC_0000000__2 is an evaluation or ground-truth image"),
    ("ph2_id", "IMD002 is an evaluation or ground-truth image"),
    ("not_allowed", "ISIC_9999999 is not in the allow-list"),
    ("duplicate", "appears twice"),
    ("not_a_number", "has no valid lesion area .* or mean lesion probability"),
    ("out_of_range", "has no valid lesion area .* or mean lesion probability .*'1.5'"),
    ("nan", "has no valid lesion area .* or mean lesion probability .*'nan'"),
    ("no_mask", "mask of .* not found"),
    ("no_column", "no column mean_lesion_probability"),
])
def test_evaluation_images_and_incomplete_runs_are_refused(teacher_run, tmp_path, isic_samples, ham_ids, case, message):
    def change(rows):
        new_id = {"isic_id": "ISIC_0000000", "isic_copy": "ISIC_0000000__2", "ph2_id": "IMD002",
                  "not_allowed": "ISIC_9999999", "duplicate": rows[1]["image_id"]}.get(case)
        if new_id:
            rows[0]["image_id"] = new_id
        if case in ("not_a_number", "out_of_range", "nan"):
            rows[0]["mean_lesion_probability"] = {"not_a_number": "", "out_of_range": "1.5", "nan": "nan"}[case]
        return rows
    run = tmp_path / "run"
    table = _rewrite(teacher_run, run, change, drop="mean_lesion_probability" if case == "no_column" else None)
    if case == "no_mask":
        for mask in run.glob("*_segmentation.png"):
            mask.unlink()
    with pytest.raises(DatasetError, match=message):
        load_pseudo_labels(table, {s.image_id for s in isic_samples}, 0.1, ham_ids)
    with pytest.raises(DatasetError, match="pseudo-label table not found"):
        load_pseudo_labels(run / "missing.csv", set(), 0.1, ham_ids)


@pytest.mark.parametrize("settings, message", [
    ("runs/pseudo/results.csv", "must be a mapping of allowed_ids, drop_fraction, table"),
    ({"table": "x.csv", "drop_fraction": 0.1}, "must be a mapping"),
    ({"table": "x.csv", "drop_fraction": 1.0, "allowed_ids": HAM_IDS}, r"drop_fraction must be a number in \[0, 1\)"),
    ({"table": None, "drop_fraction": 0.1, "allowed_ids": HAM_IDS}, "pseudo_labels.table must be a file path"),
])
def test_pseudo_label_settings_are_checked(data_root, settings, message):
    cfg = load_config(REPO / "configs" / "smoke.yaml", {"data": {"root": str(data_root), "pseudo_labels": settings}})
    with pytest.raises(ConfigError, match=message):
        SegmentationData(cfg).setup()
