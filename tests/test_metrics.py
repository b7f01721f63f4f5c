"""Metrics on a hand-computed case, and agreement with the official ISIC 2018 scorer on real predictions."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from dermoseg.data.splits import ISIC_SPLIT, read_split, select
from dermoseg.segmentation.evaluate import evaluate_dirs
from dermoseg.metrics import (confusion, dice, image_metrics, jaccard, pixel_accuracy, sensitivity, specificity,
                              summarize, thresholded_jaccard)


def test_hand_computed_two_by_two():
    pred = np.array([[1, 1], [0, 0]], bool)
    truth = np.array([[1, 0], [1, 0]], bool)
    c = confusion(pred, truth)
    assert (c.tp, c.fp, c.fn, c.tn) == (1, 1, 1, 1)
    assert dice(c) == 0.5 and jaccard(c) == pytest.approx(1 / 3)
    assert thresholded_jaccard(c) == 0.0  # 1/3 < 0.65
    assert pixel_accuracy(c) == sensitivity(c) == specificity(c) == 0.5


def test_thresholded_jaccard_keeps_values_at_or_above_065():
    truth = np.zeros((10, 10), bool)
    truth[:, :10] = True
    pred = np.zeros((10, 10), bool)
    pred[:, :7] = True  # Jaccard 0.7
    assert thresholded_jaccard(confusion(pred, truth)) == pytest.approx(0.7)


def test_empty_masks_score_as_perfect_like_the_scorer():
    empty = np.zeros((4, 4), bool)
    m = image_metrics(empty, empty)
    assert m["dice"] == m["jaccard"] == m["sensitivity"] == m["specificity"] == 1.0


def test_summary_counts_failures():
    rows = [{"pixel_accuracy": 1, "dice": 1, "jaccard": j, "thresholded_jaccard": j if j >= 0.65 else 0,
             "sensitivity": 1, "specificity": 1} for j in (0.9, 0.5, 0.7)]
    s = summarize(rows)
    assert s["failures_jaccard_below_0.65"] == 1 and s["thresholded_jaccard"] == pytest.approx(1.6 / 3)


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in size"):
        confusion(np.zeros((2, 2), bool), np.zeros((2, 3), bool))


def test_agrees_with_official_isic_scorer_on_50_real_predictions(tmp_path, isic_samples):
    """The shipped model segments 50 validation images; our figures equal isic-challenge-scoring's to 1e-6."""
    from isic_challenge_scoring.segmentation import SegmentationScore

    from dermoseg.segmentation.job import segment_files
    from dermoseg.segmentation.segmenter import Segmenter

    val = select(isic_samples, read_split(ISIC_SPLIT), "val")[:50]
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    truth_dir.mkdir()
    for s in val:
        shutil.copy(s.mask_path, truth_dir)
    report = segment_files([str(s.image_path) for s in val], pred_dir, Segmenter.load(), progress=False)
    assert len(report.rows) == 50 and not report.failures
    for p in pred_dir.glob("*_overlay.jpg"):
        p.unlink()
    (pred_dir / "results.csv").unlink()
    rows, ours = evaluate_dirs(pred_dir, truth_dir)
    official = SegmentationScore.from_dir(truth_dir, pred_dir).macro_average
    names = {"accuracy": "pixel_accuracy", "sensitivity": "sensitivity", "specificity": "specificity",
             "jaccard": "jaccard", "threshold_jaccard": "thresholded_jaccard", "dice": "dice"}
    for theirs, mine in names.items():
        assert ours[mine] == pytest.approx(float(official[theirs]), abs=1e-6), theirs
    assert len({round(r["jaccard"], 3) for r in rows}) > 10  # real, varied predictions, not a trivial case
