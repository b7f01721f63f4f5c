"""Metrics of both wings, each a short function of one confusion matrix (in the spirit of isic-challenge-scoring's
``metrics`` module, Codella et al. 2019, arXiv:1902.03368).

:func:`confusion_matrix` is the one core: a (K, K) count table, row = truth, column = prediction.

Segmentation (ISIC 2018 Task 1): masks are binarised (mask files at ``> 128``), every metric is computed per
image from that image's 2×2 matrix (:func:`confusion`), and the dataset score is the mean over images. The
thresholded Jaccard (the official Task 1 score) sets each image's Jaccard to 0 when it is below 0.65. Pixel
accuracy is what the paper calls "accuracy" (§4.2).

Classification (ISIC 2018 Task 3): the predicted class is the arg-max of the probabilities, a row with a tie for
the maximum counts as "undecided" (wrong, as in the official scorer's ``balanced_multiclass_accuracy``), and the
balanced multi-class accuracy is the mean over the classes present in the truth of the per-class recall.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

THRESHOLDED_JACCARD_CUTOFF = 0.65
METRIC_NAMES = ("pixel_accuracy", "dice", "jaccard", "thresholded_jaccard", "sensitivity", "specificity")


def confusion_matrix(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts: row = true class, column = predicted class; undecided predictions (-1) are left out
    of the columns (they still count in their row's class total).

    Parameters
    ----------
    labels : (N,) int true classes in [0, K) (or any shape, flattened together with ``pred``).
    pred : predicted classes of the same shape, in [-1, K).
    num_classes : K.

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    labels, pred = np.asarray(labels), np.asarray(pred)
    if labels.shape != pred.shape:
        raise ValueError(f"labels {labels.shape} and predictions {pred.shape} differ in shape")
    keep = pred >= 0
    index = labels[keep].astype(np.int64) * num_classes + pred[keep]
    return np.bincount(index.ravel(), minlength=num_classes ** 2).reshape(num_classes, num_classes)


# ------------------------------------------------------------------------------------------ segmentation
@dataclass(frozen=True)
class Confusion:
    """Pixel counts of one image: true/false positives/negatives (positive = lesion)."""

    tp: int
    fp: int
    fn: int
    tn: int


def confusion(pred: np.ndarray, truth: np.ndarray) -> Confusion:
    """The 2×2 :func:`confusion_matrix` of a predicted against a true mask (positive = lesion).

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
    (tn, fp), (fn, tp) = confusion_matrix(truth.astype(np.uint8), pred.astype(np.uint8), 2).tolist()
    return Confusion(tp, fp, fn, tn)


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


# ---------------------------------------------------------------------------------------- classification
def predicted_labels(probs: np.ndarray) -> np.ndarray:
    """Arg-max class of each row of (N, K) probabilities; -1 where the maximum is tied (the scorer's "undecided").
    Returns (N,) int64."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"expected (N, K) probabilities, got shape {probs.shape}")
    top = probs.max(1, keepdims=True)
    ties = (probs == top).sum(1) > 1
    out = probs.argmax(1).astype(np.int64)
    out[ties] = -1
    return out


def balanced_accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    """ISIC 2018 Task 3 balanced multi-class accuracy: mean per-class recall over classes present in ``labels``.

    Parameters
    ----------
    labels : (N,) int true classes in [0, K).
    probs : (N, K) probabilities or scores (only the arg-max matters).

    Returns
    -------
    In [0, 1]; 1/K for a constant prediction (0.143 for always-nevus with K = 7).
    """
    labels = np.asarray(labels)
    k = np.asarray(probs).shape[1]
    hits = np.diag(confusion_matrix(labels, predicted_labels(probs), k))
    totals = np.bincount(labels, minlength=k)
    present = totals > 0
    return float(np.mean(hits[present] / totals[present]))


def sensitivity_specificity(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class one-vs-rest sensitivity and specificity of the arg-max prediction.

    Returns
    -------
    (sensitivity, specificity), each (K,) float64; NaN where a class has no positive (sensitivity) or no negative
    (specificity) example. (The official scorer thresholds each class at 0.5 instead of taking the arg-max and
    scores an empty class as 1; we report the arg-max decision, the one balanced accuracy scores.)
    """
    labels = np.asarray(labels)
    k = np.asarray(probs).shape[1]
    m = confusion_matrix(labels, predicted_labels(probs), k)
    positives = np.bincount(labels, minlength=k)
    negatives = len(labels) - positives
    true_negatives = negatives - (m.sum(0) - np.diag(m))
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.where(positives > 0, np.diag(m) / positives, np.nan)
        spec = np.where(negatives > 0, true_negatives / negatives, np.nan)
    return sens, spec


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for the binary truth ``positive`` ((N,) bool), in [0, 1].

    Raises
    ------
    ValueError
        If ``positive`` is all True or all False (AUC undefined).
    """
    from sklearn.metrics import roc_auc_score  # ~1 s to import; segmentation never needs it
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        raise ValueError("AUC needs both positive and negative examples")
    return float(roc_auc_score(positive, np.asarray(score, dtype=np.float64)))


def sensitivity_at_specificity(positive: np.ndarray, score: np.ndarray, specificity: float = 0.9
                               ) -> tuple[float, float | None]:
    """Highest sensitivity among thresholds whose specificity is at least ``specificity``.

    Parameters
    ----------
    positive : (N,) bool truth; score : (N,) float, higher = more likely positive; specificity : in (0, 1].

    Returns
    -------
    (sensitivity, threshold): a case is positive when ``score >= threshold``; the threshold is None when only
    calling no case positive reaches the specificity (sensitivity 0; with few negatives and a negative scored
    highest), where the ROC's threshold is infinite (not a JSON number).

    Raises
    ------
    ValueError
        If every case, or none, is positive, or ``specificity`` is outside (0, 1].
    """
    from sklearn.metrics import roc_curve
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        raise ValueError("sensitivity at fixed specificity needs both positive and negative examples")
    if not 0.0 < specificity <= 1.0:
        raise ValueError(f"specificity must be in (0, 1], got {specificity}")
    fpr, tpr, thr = roc_curve(positive, np.asarray(score, dtype=np.float64), drop_intermediate=False)
    ok = (1.0 - fpr) >= specificity - 1e-12
    i = int(np.argmax(np.where(ok, tpr, -1.0)))
    return float(tpr[i]), (float(thr[i]) if np.isfinite(thr[i]) else None)


def paired_bootstrap(labels: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray, metric=balanced_accuracy,
                     n_resamples: int = 2000, seed: int = 2018, stratified: bool = True) -> dict[str, float]:
    """Difference ``metric(b) - metric(a)`` of two classifiers scored on the SAME cases, with a paired
    percentile-bootstrap 95% interval (Efron & Tibshirani 1993, ch. 13; resampling cases, both models together).

    Parameters
    ----------
    labels : (N,) int true classes in [0, K).
    probs_a, probs_b : (N, K) probabilities of model a (reference) and model b.
    metric : ``f(labels, probs) -> float``; default the ISIC 2018 Task 3 balanced accuracy.
    n_resamples : bootstrap resamples (≥ 100).
    seed : seed of the resampling (the result is reproducible).
    stratified : resample within each true class, keeping the class counts (every class stays present, which the
        balanced accuracy needs when classes are small).

    Returns
    -------
    ``{"a", "b", "difference", "ci_low", "ci_high", "p_b_not_better"}``: the two scores on all cases, b - a, the
    2.5% and 97.5% percentiles of the resampled differences, and the fraction of resamples with b - a ≤ 0.

    Raises
    ------
    ValueError
        If the shapes disagree or ``n_resamples`` < 100.
    """
    labels = np.asarray(labels)
    probs_a, probs_b = np.asarray(probs_a, np.float64), np.asarray(probs_b, np.float64)
    if probs_a.shape != probs_b.shape or probs_a.shape[0] != labels.shape[0]:
        raise ValueError(f"shapes disagree: labels {labels.shape}, a {probs_a.shape}, b {probs_b.shape}")
    if n_resamples < 100:
        raise ValueError(f"n_resamples must be >= 100, got {n_resamples}")
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratified else [np.arange(len(labels))]
    diffs = np.empty(n_resamples)
    for r in range(n_resamples):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        diffs[r] = metric(labels[idx], probs_b[idx]) - metric(labels[idx], probs_a[idx])
    a, b = metric(labels, probs_a), metric(labels, probs_b)
    return {"a": a, "b": b, "difference": b - a, "ci_low": float(np.percentile(diffs, 2.5)),
            "ci_high": float(np.percentile(diffs, 97.5)), "p_b_not_better": float(np.mean(diffs <= 0))}
