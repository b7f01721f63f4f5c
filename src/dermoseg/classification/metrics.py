"""Classification metrics of the ISIC 2018 Task 3 challenge, one short function each (style.md: isic-challenge-scoring).

The balanced multi-class accuracy follows the official scorer (``isic_challenge_scoring.metrics``,
``balanced_multiclass_accuracy``): the predicted class is the arg-max of the probabilities, a row with a tie for
the maximum counts as "undecided" (wrong), and the score is the mean over classes present in the truth of the
per-class recall. Codella et al. 2019, arXiv:1902.03368, §3 (Task 3 metric).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


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


def confusion_matrix(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts: row = true class, column = predicted class; undecided predictions (-1) are left out
    of the columns (they still count in the row total through :func:`balanced_accuracy`)."""
    labels, pred = np.asarray(labels), np.asarray(pred)
    if labels.shape != pred.shape:
        raise ValueError(f"labels {labels.shape} and predictions {pred.shape} differ in shape")
    keep = pred >= 0
    return np.bincount(labels[keep] * num_classes + pred[keep], minlength=num_classes ** 2).reshape(num_classes, num_classes)


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
    pred = predicted_labels(probs)
    k = np.asarray(probs).shape[1]
    present = np.bincount(labels, minlength=k) > 0
    recalls = [np.mean(pred[labels == c] == c) for c in range(k) if present[c]]
    return float(np.mean(recalls))


def sensitivity_specificity(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class one-vs-rest sensitivity and specificity of the arg-max prediction.

    Returns
    -------
    (sensitivity, specificity), each (K,) float64; NaN where a class has no positive (sensitivity) or no negative
    (specificity) example. (The official scorer thresholds each class at 0.5 instead of taking the arg-max and
    scores an empty class as 1; we report the arg-max decision, the one balanced accuracy scores.)
    """
    labels = np.asarray(labels)
    pred = predicted_labels(probs)
    k = np.asarray(probs).shape[1]
    sens, spec = np.full(k, np.nan), np.full(k, np.nan)
    for c in range(k):
        pos, hit = labels == c, pred == c
        if pos.any():
            sens[c] = np.mean(hit[pos])
        if (~pos).any():
            spec[c] = np.mean(~hit[~pos])
    return sens, spec


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for the binary truth ``positive`` ((N,) bool), in [0, 1].

    Raises
    ------
    ValueError
        If ``positive`` is all True or all False (AUC undefined).
    """
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        raise ValueError("AUC needs both positive and negative examples")
    return float(roc_auc_score(positive, np.asarray(score, dtype=np.float64)))


def sensitivity_at_specificity(positive: np.ndarray, score: np.ndarray, specificity: float = 0.9) -> tuple[float, float]:
    """Highest sensitivity among thresholds whose specificity is at least ``specificity``.

    Parameters
    ----------
    positive : (N,) bool truth; score : (N,) float, higher = more likely positive; specificity : in (0, 1].

    Returns
    -------
    (sensitivity, threshold): a case is positive when ``score >= threshold``.
    """
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        raise ValueError("sensitivity at fixed specificity needs both positive and negative examples")
    if not 0.0 < specificity <= 1.0:
        raise ValueError(f"specificity must be in (0, 1], got {specificity}")
    fpr, tpr, thr = roc_curve(positive, np.asarray(score, dtype=np.float64), drop_intermediate=False)
    ok = (1.0 - fpr) >= specificity - 1e-12
    i = int(np.argmax(np.where(ok, tpr, -1.0)))
    return float(tpr[i]), float(thr[i])


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
