"""Evaluation of the classifier on the named diagnosis sets (:data:`dermoseg.data.evalsets.DIAGNOSIS_SETS`):
the HAM10000 validation split (ISIC 2018 Task 3 metrics, calibration) and the external tests, ISIC 2018 Task 1
images with a known diagnosis and PH2 (melanoma vs nevus). Issue 5, item 5; issue 13, items 1, 3 and 4.

Outputs per set (:func:`evaluate_set`): ``predictions.csv`` (Task 3 format, calibrated), ``truth.csv`` (Task 3
ground-truth format, one-hot), ``logits.npz``, ``roc.png`` and ``summary.json``; for HAM10000 also
``per_class.csv``, ``confusion_matrix.png`` and ``reliability.png``; with the model's out-of-distribution flag,
``ood_scores.csv``.

The temperature is the one stored in the model file, fitted on the same validation split (Guo et al. 2017,
§4.2), so the ECE "after" is in-sample; a k-fold cross-fitted ECE (T fitted on k − 1 folds, scored on the
held-out fold, :func:`cross_fitted_ece`) is reported next to it as the honest figure. Nothing here chooses
anything on the external sets.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from dermoseg import metrics as cm
from dermoseg.batch import rows_to_csv
from dermoseg.classification import DISCLAIMER, HAM_CLASSES, calibration, ood
from dermoseg.classification.classifier import Classifier, mask_path_for
from dermoseg.classification.job import predictions_csv
from dermoseg.data.evalsets import DIAGNOSIS_SETS, diagnosis_samples
from dermoseg.io import MASK_FILE_THRESHOLD, read_image, read_mask, write_bytes, write_figure, write_text

CROSS_FIT_FOLDS = 5


def truth_csv(image_ids: Sequence[str], labels: np.ndarray) -> str:
    """ISIC 2018 Task 3 ground-truth CSV (``image,MEL,...,VASC`` one-hot, 1.0/0.0) for ``labels`` ((N,) int)."""
    lines = ["image," + ",".join(HAM_CLASSES)]
    for i, y in zip(image_ids, labels):
        lines.append(f"{i}," + ",".join("1.0" if k == y else "0.0" for k in range(len(HAM_CLASSES))))
    return "\n".join(lines) + "\n"


def _masks_for(samples, segmenter, desc: str, mask_dir: str | Path | None = None) -> list[np.ndarray]:
    if mask_dir is not None:
        return [read_mask(mask_path_for(mask_dir, s.image_id), MASK_FILE_THRESHOLD) for s in samples]
    return [segmenter.segment(read_image(s.image_path)).mask
            for s in tqdm(samples, desc=f"{desc} masks", unit="img", leave=False)]


def sample_logits(model: Classifier, samples, segmenter=None, desc: str = "classify", chunk: int = 64,
                  mask_dir: str | Path | None = None,
                  transform: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """(N, 7) float64 logits of samples with an ``image_path`` (images read in chunks to bound memory), each
    image passed through ``transform`` ((H, W, 3) uint8 → (H', W', 3) uint8) first when given.

    For a mask-using classifier the lesion masks come from ``mask_dir/<image_id>_segmentation.png`` (what
    ``dermoseg segment`` wrote, as in training) when given, otherwise from ``segmenter``.

    Raises
    ------
    ValueError
        If the classifier uses masks and neither ``segmenter`` nor ``mask_dir`` is given.
    dermoseg.io.ImageReadError
        If an image or a mask in ``mask_dir`` is missing or unreadable (the message names the file).
    """
    needs_masks = model.uses_mask
    if needs_masks and segmenter is None and mask_dir is None:
        raise ValueError(f"the classifier uses the lesion mask (mask_mode '{model.mask_mode}'): give a segmentation "
                         "model or a mask folder")
    out = []
    for i in tqdm(range(0, len(samples), chunk), desc=desc, unit="batch", leave=False):
        part = samples[i:i + chunk]
        images = [read_image(s.image_path) for s in part]
        if transform is not None:
            images = [transform(im) for im in images]
        masks = _masks_for(part, segmenter, desc, mask_dir) if needs_masks else None
        out.append(model.logits(images, masks))
    return np.concatenate(out)


def cross_fitted_probabilities(logits: np.ndarray, labels: np.ndarray, k: int = CROSS_FIT_FOLDS, seed: int = 2018,
                               folds: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, list[float]]:
    """Temperature-scaled probabilities where each case's T was fitted without it (k-fold cross-fitting).

    The cases are split into ``k`` folds (a seeded permutation cut into ``k`` near-equal parts, or the given
    ``folds``); for each fold, T is fitted by NLL on the other k − 1 folds (Guo et al. 2017, §4.2) and applied to
    the held-out fold, so the ECE of the result is an out-of-sample figure.

    Parameters
    ----------
    logits : (N, K) float; labels : (N,) int in [0, K).
    k : number of folds, 2 ≤ k ≤ N.
    seed : seed of the permutation.
    folds : explicit folds (index arrays partitioning range(N)); overrides ``k`` and ``seed``.

    Returns
    -------
    ((N, K) float64 probabilities, [T fitted without fold 0, ..., without fold k-1]).

    Raises
    ------
    ValueError
        If k is out of range or ``folds`` do not partition range(N).
    """
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    n = len(labels)
    if folds is None:
        if not 2 <= k <= n:
            raise ValueError(f"cross-fitting needs 2 <= k <= N folds, got k = {k}, N = {n}")
        folds = np.array_split(np.random.default_rng(seed).permutation(n), k)
    folds = [np.asarray(f, dtype=int) for f in folds]
    if len(folds) < 2 or not np.array_equal(np.sort(np.concatenate(folds)), np.arange(n)):
        raise ValueError("folds must be at least two index arrays that together hold each case exactly once")
    probs = np.empty_like(logits)
    temps = []
    for held_out in folds:
        fit = np.setdiff1d(np.arange(n), held_out)
        t = calibration.fit_temperature(logits[fit], labels[fit])
        temps.append(t)
        probs[held_out] = calibration.probabilities(logits[held_out], t)
    return probs, temps


def cross_fitted_ece(logits: np.ndarray, labels: np.ndarray, k: int = CROSS_FIT_FOLDS, seed: int = 2018,
                     n_bins: int = 15, folds: Sequence[np.ndarray] | None = None) -> tuple[float, list[float]]:
    """ECE (Guo et al. 2017, eq. 3, ``n_bins`` bins) of :func:`cross_fitted_probabilities`.

    Returns
    -------
    (ECE over all N cases, each with the temperature fitted without its fold; the k temperatures).
    """
    probs, temps = cross_fitted_probabilities(logits, labels, k, seed, folds)
    return calibration.expected_calibration_error(probs, labels, n_bins), temps


def classification_summary(labels: np.ndarray, logits: np.ndarray, temperature: float) -> dict[str, Any]:
    """All validation figures from (N,) int labels and (N, 7) logits.

    Returns
    -------
    ``balanced_accuracy`` (ISIC 2018 Task 3), ``accuracy``, ``per_class`` {class: n, sensitivity, specificity,
    auc}, ``melanoma_auc`` (MEL vs rest on P(MEL)), ``temperature``, ``nll_before/after``, ``ece_before/after``
    (15 bins), ``ece_after_cross_fitted`` (:func:`cross_fitted_ece`, :data:`CROSS_FIT_FOLDS` folds) and its
    temperatures.
    """
    labels = np.asarray(labels)
    before, after = calibration.probabilities(logits), calibration.probabilities(logits, temperature)
    sens, spec = cm.sensitivity_specificity(labels, after)
    per_class = {}
    for k, c in enumerate(HAM_CLASSES):
        pos = labels == k
        auc = cm.binary_auc(pos, after[:, k]) if 0 < pos.sum() < len(pos) else None
        per_class[c] = {"n": int(pos.sum()), "sensitivity": None if np.isnan(sens[k]) else float(sens[k]),
                        "specificity": None if np.isnan(spec[k]) else float(spec[k]), "auc": auc}
    ece_cf, temps = cross_fitted_ece(logits, labels, min(CROSS_FIT_FOLDS, len(labels))) if len(labels) > 1 else (None, [])
    return {"images": int(len(labels)), "balanced_accuracy": cm.balanced_accuracy(labels, after),
            "accuracy": float(np.mean(cm.predicted_labels(after) == labels)), "per_class": per_class,
            "melanoma_auc": per_class["MEL"]["auc"], "temperature": float(temperature),
            "nll_before": calibration.nll(logits, labels), "nll_after": calibration.nll(logits, labels, temperature),
            "ece_before": calibration.expected_calibration_error(before, labels),
            "ece_after": calibration.expected_calibration_error(after, labels),
            "ece_after_cross_fitted": ece_cf, "cross_fitted_folds": len(temps), "cross_fitted_temperatures": temps}


def plot_confusion(labels: np.ndarray, probs: np.ndarray, path: str | Path, title: str) -> Path:
    """Confusion-matrix PNG: rows = true class, columns = predicted (arg-max); colour = row-normalised share,
    text = count."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    k = len(HAM_CLASSES)
    counts = cm.confusion_matrix(np.asarray(labels), cm.predicted_labels(probs), k)
    share = counts / np.maximum(1, np.bincount(labels, minlength=k))[:, None]
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=120)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=9,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), HAM_CLASSES)
    ax.set_yticks(range(k), HAM_CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="share of the true class")
    fig.tight_layout()
    return write_figure(path, fig, dpi="figure")


def plot_reliability(labels: np.ndarray, logits: np.ndarray, temperature: float, path: str | Path,
                     n_bins: int = 15) -> Path:
    """Reliability diagram PNG (Guo et al. 2017, Fig. 1): accuracy vs top-1 confidence in ``n_bins`` bins, before
    temperature scaling, after it with the stored T (fitted on these cases: in-sample), and after it cross-fitted
    (:func:`cross_fitted_probabilities`: out-of-sample), with the ECE in each panel's title."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [(calibration.probabilities(logits), "before (T = 1)"),
              (calibration.probabilities(logits, temperature), f"after, T = {temperature:.3f} (in-sample)")]
    if len(labels) > 1:
        cross, temps = cross_fitted_probabilities(logits, labels, min(CROSS_FIT_FOLDS, len(labels)))
        panels.append((cross, f"after, T cross-fitted ({len(temps)} folds)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.2), dpi=120, sharey=True)
    for ax, (probs, name) in zip(axes, panels):
        b = calibration.reliability_bins(probs, labels, n_bins)
        ece = calibration.expected_calibration_error(probs, labels, n_bins)
        centres = (b["edges"][:-1] + b["edges"][1:]) / 2
        used = b["count"] > 0
        width = 1.0 / n_bins
        ax.bar(centres[used], b["accuracy"][used], width=width, edgecolor="black", color="tab:blue", label="accuracy")
        ax.bar(centres[used], (b["confidence"] - b["accuracy"])[used], bottom=b["accuracy"][used], width=width,
               color="tab:red", alpha=0.35, edgecolor="tab:red", label="gap to confidence")
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("top-1 confidence")
        ax.set_title(f"{name}: ECE = {ece:.3f}", fontsize=10)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return write_figure(path, fig, dpi="figure")


def _per_class_csv(summary: dict[str, Any]) -> str:
    lines = ["class,n,sensitivity,specificity,auc"]
    fmt = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    for c, d in summary["per_class"].items():
        lines.append(f"{c},{d['n']},{fmt(d['sensitivity'])},{fmt(d['specificity'])},{fmt(d['auc'])}")
    return "\n".join(lines) + "\n"


def melanoma_score(probs: np.ndarray) -> np.ndarray:
    """The melanoma-vs-nevus score of each image: P(MEL) / (P(MEL) + P(NV)), the calibrated probability of
    melanoma given that the lesion is one of the two (Bayes' rule on the seven-class output; 0.5 where both are 0).

    Chosen over the plain P(MEL) on the HAM10000 validation split (session 14; the shipped ensemble, paired
    class-stratified bootstrap, 2000 resamples): melanoma vs nevus AUC 0.959 vs 0.934 (difference +0.024, 95%
    interval +0.009 to +0.041), vs the excised nevi alone 0.857 vs 0.777 (+0.080, +0.026 to +0.138). The plain
    P(MEL) ranks down a melanoma whose probability the model spreads over other classes (BKL, BCC), which says
    nothing about melanoma vs nevus.

    Parameters
    ----------
    probs : (N, 7) float probabilities in the order of :data:`HAM_CLASSES`.

    Returns
    -------
    (N,) float64 in [0, 1].
    """
    probs = np.asarray(probs, dtype=np.float64)
    mel, nv = probs[:, HAM_CLASSES.index("MEL")], probs[:, HAM_CLASSES.index("NV")]
    total = mel + nv
    return np.divide(mel, total, out=np.full_like(mel, 0.5), where=total > 0)


def melanoma_vs_nevus(labels: np.ndarray, groups: Sequence[str], probs: np.ndarray) -> dict[str, Any]:
    """Melanoma vs nevus on the MEL and NV cases of a labelled set; the score is :func:`melanoma_score`
    (P(MEL) / (P(MEL) + P(NV)) of the calibrated probabilities).

    Parameters
    ----------
    labels : (N,) int classes (indices into :data:`HAM_CLASSES`); cases of other classes are left out.
    groups : N finer truths (e.g. PH2's "common nevus" / "atypical nevus"); a per-group AUC is given when the
        nevi fall in more than one group.
    probs : (N, 7) calibrated probabilities.

    Returns
    -------
    ``melanoma``, ``nevus`` (counts), ``auc``, ``sensitivity_at_90_specificity`` and its score threshold
    (:func:`dermoseg.metrics.sensitivity_at_specificity`), ``auc_p_mel`` (the AUC of the plain P(MEL), the score
    before session 14, for comparison), ``nevi_called_melanoma`` and ``melanomas_called_melanoma`` (counts,
    seven-class arg-max = MEL), ``argmax_called_mel`` (share per group) and ``auc_by_nevus_group`` (melanoma vs
    each nevus group; empty for a single group).

    Raises
    ------
    ValueError
        If the set has no melanoma or no nevus.
    """
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    mel, nv = HAM_CLASSES.index("MEL"), HAM_CLASSES.index("NV")
    keep = (labels == mel) | (labels == nv)
    positive, score = labels[keep] == mel, melanoma_score(probs[keep])
    groups = np.asarray(groups, dtype=object)[keep]
    called = cm.predicted_labels(probs[keep]) == mel
    sens90, thr90 = cm.sensitivity_at_specificity(positive, score, 0.9)
    nevus_groups = sorted(set(groups[~positive]))
    return {"melanoma": int(positive.sum()), "nevus": int((~positive).sum()),
            "score": "P(MEL) / (P(MEL) + P(NV)), calibrated", "auc": cm.binary_auc(positive, score),
            "sensitivity_at_90_specificity": sens90, "threshold_at_90_specificity": thr90,
            "auc_p_mel": cm.binary_auc(positive, probs[keep, mel]),
            "nevi_called_melanoma": int(called[~positive].sum()),
            "melanomas_called_melanoma": int(called[positive].sum()),
            "argmax_called_mel": {g: float(called[groups == g].mean()) for g in sorted(set(groups))},
            "auc_by_nevus_group": {g: cm.binary_auc(positive[positive | (groups == g)], score[positive | (groups == g)])
                                   for g in nevus_groups} if len(nevus_groups) > 1 else {}}


def grayscale(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB → the same image in gray (ITU-R BT.601 luma, OpenCV), repeated on three channels:
    what a grayscale photograph becomes once :func:`dermoseg.io.read_image` has read it."""
    import cv2
    return np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)


def cached_logits(path: Path, model: Classifier, samples, compute, reuse: bool) -> np.ndarray:
    """Logits of ``samples`` from ``compute()``, saved to ``path`` (``.npz``: ``ids``, ``logits``, ``model_sha256``);
    with ``reuse``, an existing file made by the same model file for the same ids is read instead, and a note on
    stderr says why the network runs when there is none or it does not match."""
    ids = np.array([s.image_id for s in samples])
    if reuse:
        why = "there is none"
        if path.is_file():
            with np.load(path) as cached:
                if str(cached["model_sha256"]) != model.sha256:
                    why = "it was made by another model file"
                elif not np.array_equal(cached["ids"], ids):
                    why = f"it holds other images ({len(cached['ids'])} cached, {len(ids)} asked for)"
                else:
                    return cached["logits"]
        print(f"note: {path}: not reused, {why}; running the network", file=sys.stderr)
    logits = compute()
    buf = io.BytesIO()
    np.savez(buf, ids=ids, logits=logits, model_sha256=np.array(model.sha256))
    write_bytes(path, buf.getvalue())
    return logits


def set_outputs(out_dir: str | Path, name: str, model: Classifier, reuse_logits: bool = False,
                grayscale_copies: bool = False) -> list[Path]:
    """The files :func:`evaluate_set` writes into ``out_dir`` for set ``name`` (to claim them before any work,
    :func:`dermoseg.provenance.start_run`). With ``reuse_logits``, a ``logits*.npz`` already there is an input,
    not an output."""
    out_dir = Path(out_dir)
    names = ["predictions.csv", "truth.csv", "summary.json", "roc.png", "logits.npz"]
    if name.startswith("ham10000"):
        names += ["per_class.csv", "confusion_matrix.png", "reliability.png"]
    if model.ood is not None:
        names.append("ood_scores.csv")
    if grayscale_copies:
        names.append("logits_grayscale.npz")
    return [out_dir / n for n in names if not (reuse_logits and n.endswith(".npz") and (out_dir / n).is_file())]


def evaluate_set(name: str, model: Classifier, data_root: str | Path, out_dir: str | Path, segmenter=None,
                 limit: int | None = None, mask_dir: str | Path | None = None, reuse_logits: bool = False,
                 grayscale_copies: bool = False, samples: list | None = None) -> dict[str, Any]:
    """Score the classifier on a named diagnosis set (:data:`dermoseg.data.evalsets.DIAGNOSIS_SETS`) and write its
    report files into ``out_dir``.

    Every set gets the seven-class ``accuracy``, melanoma vs nevus (:func:`melanoma_vs_nevus`, ``roc.png``),
    ``predictions.csv`` (Task 3 format), ``truth.csv``, ``logits.npz`` and ``summary.json``; a HAM10000 set also
    the seven-class figures
    (:func:`classification_summary`, ``per_class.csv``, ``confusion_matrix.png``, ``reliability.png``). With the
    model's out-of-distribution flag (:attr:`Classifier.ood`), ``ood_scores.csv`` (image, entropy, flagged) and
    the figures on flagged vs unflagged images (:func:`dermoseg.classification.ood.flag_effect`).

    Parameters
    ----------
    name : a key of :data:`DIAGNOSIS_SETS`.
    model : loaded classifier (its stored temperature is used).
    data_root : folder holding ``ham10000/``, ``isic2018_task1/`` and ``ph2/``.
    out_dir : output folder (created).
    segmenter : segmentation model, needed for classifiers trained with the lesion mask.
    limit : score only the first n images (for tests).
    mask_dir : for mask-using classifiers, read ``<image_id>_segmentation.png`` from this folder (the output of
        ``dermoseg segment``, as used in training) instead of running ``segmenter``.
    reuse_logits : read ``logits.npz`` of an earlier run with the same model file and images instead of running
        the network again.
    grayscale_copies : also score gray copies of the images (:func:`grayscale`): what the classifier says, and
        how many its flag catches.
    samples : the set's samples when the caller has read them already
        (:func:`dermoseg.data.evalsets.diagnosis_samples`), before ``limit``.

    Returns
    -------
    The summary dict written to ``summary.json``.

    Raises
    ------
    dermoseg.errors.EvaluationError, dermoseg.data.datasets.DatasetError, dermoseg.data.splits.SplitError
        If the set is unknown, or its data or split is missing.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    every = diagnosis_samples(name, data_root) if samples is None else samples
    samples = every[: int(limit) if limit else None]
    role, description = DIAGNOSIS_SETS[name]
    logits = cached_logits(out_dir / "logits.npz", model, samples,
                           lambda: sample_logits(model, samples, segmenter, name, mask_dir=mask_dir), reuse_logits)
    labels = np.array([s.label for s in samples])
    groups = [s.group for s in samples]
    ids = [s.image_id for s in samples]
    probs = calibration.probabilities(logits, model.temperature)
    if len(samples) < len(every):
        description = f"the first {len(samples)} images only (--limit) of: {description}"
    summary: dict[str, Any] = {"set": name, "role": role, "dataset": description, "model": str(model.path),
                               "model_sha256": model.sha256, "note": DISCLAIMER, "images": len(samples)}
    if name.startswith("ham10000"):
        summary.update(classification_summary(labels, logits, model.temperature))
        write_text(out_dir / "per_class.csv", _per_class_csv(summary))
        plot_confusion(labels, probs, out_dir / "confusion_matrix.png",
                       f"{name} (n = {len(labels)}), balanced accuracy {summary['balanced_accuracy']:.3f}")
        plot_reliability(labels, logits, model.temperature, out_dir / "reliability.png")
    summary.setdefault("accuracy", float(np.mean(cm.predicted_labels(probs) == labels)))
    mel, nv = (labels == HAM_CLASSES.index("MEL")).sum(), (labels == HAM_CLASSES.index("NV")).sum()
    summary.update(melanoma=int(mel), nevus=int(nv))
    summary["melanoma_vs_nevus"] = melanoma_vs_nevus(labels, groups, probs) if mel and nv else None
    if not (mel and nv):
        summary["melanoma_vs_nevus_note"] = f"not computed: {mel} melanomas and {nv} nevi among these images"
    if model.ood is not None:
        scores, flags = model.ood.scores(logits), model.ood.flags(logits)
        summary["ood"] = {"score": ood.SCORE, "threshold": model.ood.threshold, "percentile": model.ood.percentile,
                          "fitted_on": model.ood.fitted_on, **ood.flag_effect(labels, probs, flags)}
        write_text(out_dir / "ood_scores.csv", rows_to_csv(
            [{"image": i, "entropy": round(float(h), 6), "flagged": int(f)} for i, h, f in zip(ids, scores, flags)],
            ["image", "entropy", "flagged"]))
    if grayscale_copies:
        gray = cached_logits(out_dir / "logits_grayscale.npz", model, samples,
                             lambda: sample_logits(model, samples, segmenter, f"{name} gray", transform=grayscale),
                             reuse_logits)
        summary["grayscale_copies"] = grayscale_summary(labels, gray, model)
    write_text(out_dir / "predictions.csv", predictions_csv(ids, probs))
    write_text(out_dir / "truth.csv", truth_csv(ids, labels))
    write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    if summary["melanoma_vs_nevus"]:
        _plot_roc(labels, probs, out_dir / "roc.png", f"{name}: melanoma ({mel}) vs nevus ({nv})")
    return summary


def grayscale_summary(labels: np.ndarray, gray_logits: np.ndarray, model: Classifier) -> dict[str, Any]:
    """What the classifier makes of gray copies: ``images``, ``accuracy`` (arg-max = truth), ``top_class_share``
    {class: share of copies whose arg-max it is}, ``p_top`` (min, median, max of the top probability) and,
    with the model's flag, ``flagged_share``."""
    probs = calibration.probabilities(gray_logits, model.temperature)
    pred, top = cm.predicted_labels(probs), probs.max(1)
    out = {"images": int(len(labels)), "accuracy": float(np.mean(pred == labels)),
           "top_class_share": {c: float(np.mean(pred == k)) for k, c in enumerate(HAM_CLASSES)},
           "p_top": {"min": float(top.min()), "median": float(np.median(top)), "max": float(top.max())}}
    if model.ood is not None:
        out["flagged_share"] = float(model.ood.flags(gray_logits).mean())
    return out


def _plot_roc(labels: np.ndarray, probs: np.ndarray, path: Path, title: str) -> Path:
    """ROC PNG of melanoma vs nevus on :func:`melanoma_score`, with the point of 90% specificity."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve
    s = melanoma_vs_nevus(labels, ["-"] * len(labels), probs)
    mel, nv = HAM_CLASSES.index("MEL"), HAM_CLASSES.index("NV")
    keep = (labels == mel) | (labels == nv)
    fpr, tpr, _ = roc_curve(labels[keep] == mel, melanoma_score(probs[keep]))
    fig, ax = plt.subplots(figsize=(4.6, 4.4), dpi=120)
    ax.plot(fpr, tpr, lw=2, label=f"AUC = {s['auc']:.3f}")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.axvline(0.1, color="grey", lw=1, ls=":")
    ax.plot([0.1], [s["sensitivity_at_90_specificity"]], "o", color="tab:red",
            label=f"sens. {s['sensitivity_at_90_specificity']:.2f} at spec. 0.90")
    ax.set_xlabel("1 − specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return write_figure(path, fig, dpi="figure")


def overview_csv(summaries: dict[str, dict[str, Any]]) -> str:
    """One row per scored set (``set,role,images,melanoma,nevus,melanoma_vs_nevus_auc,sensitivity_at_90_specificity,
    nevi_called_melanoma,balanced_accuracy,melanoma_vs_rest_auc,ece_before,ece_after_cross_fitted,flagged_share,
    accuracy_flagged,accuracy_unflagged,melanoma_auc_flagged,melanoma_auc_unflagged``) from :func:`evaluate_set`
    summaries; figures a set does not have are left empty."""
    rows = []
    for name, s in summaries.items():
        mn, o = s["melanoma_vs_nevus"] or {}, s.get("ood", {})
        rows.append({"set": name, "role": s["role"], "images": s["images"], "melanoma": s.get("melanoma"),
                     "nevus": s.get("nevus"), "melanoma_vs_nevus_auc": mn.get("auc"),
                     "sensitivity_at_90_specificity": mn.get("sensitivity_at_90_specificity"),
                     "nevi_called_melanoma": mn.get("nevi_called_melanoma"),
                     "balanced_accuracy": s.get("balanced_accuracy"), "melanoma_vs_rest_auc": s.get("melanoma_auc"),
                     "ece_before": s.get("ece_before"), "ece_after_cross_fitted": s.get("ece_after_cross_fitted"),
                     "flagged_share": o.get("share_flagged"),
                     "accuracy_flagged": o.get("flagged", {}).get("accuracy"),
                     "accuracy_unflagged": o.get("unflagged", {}).get("accuracy"),
                     "melanoma_auc_flagged": o.get("flagged", {}).get("melanoma_auc"),
                     "melanoma_auc_unflagged": o.get("unflagged", {}).get("melanoma_auc")})
    columns = list(rows[0]) if rows else ["set"]
    return rows_to_csv([{k: ("" if v is None else v) for k, v in r.items()} for r in rows], columns)
