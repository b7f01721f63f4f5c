"""Segmentation metrics, each a short function of one per-image confusion matrix.

Following the ISIC 2018 Task 1 scorer (``isic-challenge-scoring``, Codella et al. 2019): masks are binarised at
``> 128`` for 8-bit predictions, every metric is computed per image from that image's confusion matrix, and the
dataset score is the mean over images. The thresholded Jaccard (the official Task 1 score) sets each image's
Jaccard to 0 when it is below 0.65. Pixel accuracy is what the paper calls "accuracy" (§4.2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

THRESHOLDED_JACCARD_CUTOFF = 0.65
METRIC_NAMES = ("pixel_accuracy", "dice", "jaccard", "thresholded_jaccard", "sensitivity", "specificity")


@dataclass(frozen=True)
class Confusion:
    """Pixel counts of one image: true/false positives/negatives (positive = lesion)."""

    tp: int
    fp: int
    fn: int
    tn: int


def confusion(pred: np.ndarray, truth: np.ndarray) -> Confusion:
    """Confusion matrix of a predicted against a true mask.

    Parameters
    ----------
    pred, truth : (H, W) bool arrays of the same shape, True = lesion.

    Raises
    ------
    ValueError
        If the shapes differ or an array is not 2-D boolean.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.dtype != bool or truth.dtype != bool or pred.ndim != 2:
        raise ValueError(f"expected two (H, W) bool masks, got {pred.shape} {pred.dtype} and {truth.shape} {truth.dtype}")
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in size")
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    return Confusion(tp, fp, fn, pred.size - tp - fp - fn)


def _ratio(num: int, den: int) -> float:
    # An empty denominator means both masks agree on "nothing there": a perfect score, as the ISIC scorer does.
    return 1.0 if den == 0 else num / den


def pixel_accuracy(c: Confusion) -> float:
    """(TP + TN) / all pixels, in [0, 1]."""
    return (c.tp + c.tn) / (c.tp + c.fp + c.fn + c.tn)


def dice(c: Confusion) -> float:
    """Dice = 2·TP / (2·TP + FP + FN), in [0, 1]; 1 when both masks are empty."""
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn)


def jaccard(c: Confusion) -> float:
    """Jaccard (IoU) = TP / (TP + FP + FN), in [0, 1]; 1 when both masks are empty."""
    return _ratio(c.tp, c.tp + c.fp + c.fn)


def thresholded_jaccard(c: Confusion, cutoff: float = THRESHOLDED_JACCARD_CUTOFF) -> float:
    """ISIC 2018 Task 1 score of one image: its Jaccard, or 0 if that is below ``cutoff`` (0.65)."""
    j = jaccard(c)
    return j if j >= cutoff else 0.0


def sensitivity(c: Confusion) -> float:
    """Sensitivity (recall of lesion pixels) = TP / (TP + FN), in [0, 1]."""
    return _ratio(c.tp, c.tp + c.fn)


def specificity(c: Confusion) -> float:
    """Specificity (recall of background pixels) = TN / (TN + FP), in [0, 1]."""
    return _ratio(c.tn, c.tn + c.fp)


def image_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """All of :data:`METRIC_NAMES` for one image, plus its confusion counts.

    Parameters
    ----------
    pred, truth : (H, W) bool masks of equal shape.
    """
    c = confusion(pred, truth)
    out = {name: float(globals()[name](c)) for name in METRIC_NAMES}
    out.update(asdict(c))
    return out


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    """Dataset figures: the mean over images of each metric, the image count, and the number of failures
    (images with Jaccard < 0.65).

    Raises
    ------
    ValueError
        If ``rows`` is empty.
    """
    if not rows:
        raise ValueError("no images to summarise")
    out = {name: float(np.mean([r[name] for r in rows])) for name in METRIC_NAMES}
    out["images"] = len(rows)
    out["failures_jaccard_below_0.65"] = int(sum(r["jaccard"] < THRESHOLDED_JACCARD_CUTOFF for r in rows))
    return out
