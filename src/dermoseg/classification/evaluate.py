"""Evaluation of the classifier: ISIC 2018 Task 3 metrics on the HAM10000 validation split, calibration, and the
external PH2 melanoma-vs-nevus test (issue 5, item 5).

Outputs (``evaluate_ham10000`` / ``evaluate_ph2``): ``predictions.csv`` (Task 3 format, calibrated),
``truth.csv`` (Task 3 ground-truth format, one-hot), ``per_class.csv``, ``summary.json``, ``confusion_matrix.png``
and ``reliability.png`` (before / after temperature scaling); for PH2 ``ph2_predictions.csv``, ``roc_ph2.png`` and
``summary.json``.

The temperature is the one stored in the model file, fitted on the same validation split (Guo et al. 2017,
§4.2), so the ECE "after" is in-sample; a 2-fold cross-fitted ECE (T fitted on one half of the split, scored on
the other) is reported next to it as the honest figure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from dermoseg import metrics as cm
from dermoseg.classification import DISCLAIMER, HAM_CLASSES, calibration
from dermoseg.classification.classifier import Classifier, mask_path_for
from dermoseg.classification.job import predictions_csv
from dermoseg.data.datasets import load_ham10000, load_ph2, load_ph2_diagnosis
from dermoseg.data.splits import HAM_SPLIT, read_split, select
from dermoseg.io import MASK_FILE_THRESHOLD, read_image, read_mask, write_array, write_figure, write_text

PH2_NAMES = {0: "common nevus", 1: "atypical nevus", 2: "melanoma"}


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
                  mask_dir: str | Path | None = None) -> np.ndarray:
    """(N, 7) float64 logits of samples with an ``image_path`` (images read in chunks to bound memory).

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
        masks = _masks_for(part, segmenter, desc, mask_dir) if needs_masks else None
        out.append(model.logits(images, masks))
    return np.concatenate(out)


def cross_fitted_ece(logits: np.ndarray, labels: np.ndarray, seed: int = 2018, n_bins: int = 15) -> tuple[float, list[float]]:
    """ECE after temperature scaling with T fitted on the other half of a seeded 2-fold split (out-of-sample).

    Returns
    -------
    (ECE over all N cases with their out-of-fold temperatures, [T fitted on fold 0, T fitted on fold 1]).
    """
    order = np.random.default_rng(seed).permutation(len(labels))
    folds = [order[: len(order) // 2], order[len(order) // 2:]]
    probs = np.empty_like(logits, dtype=np.float64)
    temps = []
    for k in (0, 1):
        fit, apply = folds[k], folds[1 - k]
        t = calibration.fit_temperature(logits[fit], labels[fit])
        temps.append(t)
        probs[apply] = calibration.probabilities(logits[apply], t)
    return calibration.expected_calibration_error(probs, labels, n_bins), temps


def classification_summary(labels: np.ndarray, logits: np.ndarray, temperature: float) -> dict[str, Any]:
    """All validation figures from (N,) int labels and (N, 7) logits.

    Returns
    -------
    ``balanced_accuracy`` (ISIC 2018 Task 3), ``accuracy``, ``per_class`` {class: n, sensitivity, specificity,
    auc}, ``melanoma_auc`` (MEL vs rest on P(MEL)), ``temperature``, ``nll_before/after``, ``ece_before/after``
    (15 bins), ``ece_after_cross_fitted`` and its two temperatures.
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
    ece_cf, temps = cross_fitted_ece(logits, labels)
    return {"images": int(len(labels)), "balanced_accuracy": cm.balanced_accuracy(labels, after),
            "accuracy": float(np.mean(cm.predicted_labels(after) == labels)), "per_class": per_class,
            "melanoma_auc": per_class["MEL"]["auc"], "temperature": float(temperature),
            "nll_before": calibration.nll(logits, labels), "nll_after": calibration.nll(logits, labels, temperature),
            "ece_before": calibration.expected_calibration_error(before, labels),
            "ece_after": calibration.expected_calibration_error(after, labels),
            "ece_after_cross_fitted": ece_cf, "cross_fitted_temperatures": temps}


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
    """Reliability diagram PNG (Guo et al. 2017, Fig. 1): accuracy vs top-1 confidence in 15 bins, before and after
    temperature scaling, with the ECE in each panel's title."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), dpi=120, sharey=True)
    for ax, t, name in zip(axes, (1.0, temperature), ("before (T = 1)", f"after (T = {temperature:.3f})")):
        probs = calibration.probabilities(logits, t)
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


def evaluate_ham10000(model: Classifier, data_root: str | Path, out_dir: str | Path, split: str = "val",
                      segmenter=None, limit: int | None = None, mask_dir: str | Path | None = None) -> dict[str, Any]:
    """Evaluate on a part of the committed HAM10000 split and write the report files into ``out_dir``.

    Parameters
    ----------
    model : loaded classifier (its stored temperature is used).
    data_root : folder holding ``ham10000/``.
    out_dir : output folder (created).
    split : "val" (default), "train" or "all".
    segmenter : segmentation model, needed for classifiers trained with the lesion mask.
    limit : evaluate only the first n images of the split (for tests).
    mask_dir : for mask-using classifiers, read ``<image_id>_segmentation.png`` from this folder (the output of
        ``dermoseg segment`` on the HAM10000 images, as used in training) instead of running ``segmenter``.

    Returns
    -------
    The summary dict written to ``summary.json`` (see :func:`classification_summary`).

    Raises
    ------
    dermoseg.data.datasets.DatasetError, dermoseg.data.splits.SplitError
        If the data or split is missing or they disagree.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = select(load_ham10000(Path(data_root) / "ham10000"), read_split(HAM_SPLIT), split)
    if limit:
        samples = samples[: int(limit)]
    logits = sample_logits(model, samples, segmenter, f"HAM10000 {split}", mask_dir=mask_dir)
    labels = np.array([s.label for s in samples])
    ids = [s.image_id for s in samples]
    summary = {"dataset": f"HAM10000 {split} split ({HAM_SPLIT.name})", "model": str(model.path),
               "model_sha256": model.sha256, "note": DISCLAIMER, **classification_summary(labels, logits, model.temperature)}
    probs = calibration.probabilities(logits, model.temperature)
    write_text(out_dir / "predictions.csv", predictions_csv(ids, probs))
    write_text(out_dir / "truth.csv", truth_csv(ids, labels))
    write_array(out_dir / "logits.npy", logits)
    write_text(out_dir / "per_class.csv", _per_class_csv(summary))
    write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    plot_confusion(labels, probs, out_dir / "confusion_matrix.png",
                   f"HAM10000 {split} (n = {len(labels)}), balanced accuracy {summary['balanced_accuracy']:.3f}")
    plot_reliability(labels, logits, model.temperature, out_dir / "reliability.png")
    return summary


def evaluate_ph2(model: Classifier, data_root: str | Path, out_dir: str | Path, segmenter=None,
                 use_ground_truth_masks: bool = False) -> dict[str, Any]:
    """External test on PH2 (Mendonça et al. 2013): melanoma (40) vs nevus (common + atypical, 160).

    The score is the calibrated P(MEL). Reports the AUC, the sensitivity at 90% specificity (and its threshold),
    and, for the 7-class arg-max, how often each PH2 group is called MEL.

    Parameters
    ----------
    model, segmenter : as for :func:`evaluate_ham10000`.
    data_root : folder holding ``ph2/``.
    out_dir : output folder.
    use_ground_truth_masks : for mask-using classifiers, take PH2's expert masks instead of the segmenter's.

    Returns
    -------
    The summary written to ``summary.json``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(data_root) / "ph2"
    samples, diagnosis = load_ph2(root), load_ph2_diagnosis(root)
    samples = [s for s in samples if s.image_id in diagnosis]
    if model.uses_mask and use_ground_truth_masks:
        logits = np.concatenate([model.logits([read_image(s.image_path)], [read_mask(s.mask_path)])
                                 for s in tqdm(samples, desc="PH2", unit="img", leave=False)])
    else:
        logits = sample_logits(model, samples, segmenter, "PH2")
    probs = calibration.probabilities(logits, model.temperature)
    groups = np.array([diagnosis[s.image_id] for s in samples])
    melanoma = groups == 2
    p_mel = probs[:, HAM_CLASSES.index("MEL")]
    sens90, thr90 = cm.sensitivity_at_specificity(melanoma, p_mel, 0.9)
    pred = cm.predicted_labels(probs)
    summary = {"dataset": "PH2 (melanoma vs common + atypical nevus)", "model": str(model.path),
               "model_sha256": model.sha256, "note": DISCLAIMER, "images": int(len(samples)),
               "melanoma": int(melanoma.sum()), "nevus": int((~melanoma).sum()), "score": "calibrated P(MEL)",
               "auc": cm.binary_auc(melanoma, p_mel), "sensitivity_at_90_specificity": sens90,
               "threshold_at_90_specificity": thr90,
               "argmax_called_mel": {PH2_NAMES[g]: float(np.mean(pred[groups == g] == 0)) for g in (0, 1, 2)},
               "auc_melanoma_vs_common_nevus": cm.binary_auc(melanoma[groups != 1], p_mel[groups != 1])}
    rows = ["image,ph2_diagnosis," + ",".join(HAM_CLASSES)]
    rows += [f"{s.image_id},{PH2_NAMES[g]}," + ",".join(f"{v:.6f}" for v in p) for s, g, p in zip(samples, groups, probs)]
    write_text(out_dir / "ph2_predictions.csv", "\n".join(rows) + "\n")
    write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    _plot_roc(melanoma, p_mel, out_dir / "roc_ph2.png", summary)
    return summary


def _plot_roc(positive: np.ndarray, score: np.ndarray, path: Path, summary: dict[str, Any]) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve
    fpr, tpr, _ = roc_curve(positive, score)
    fig, ax = plt.subplots(figsize=(4.6, 4.4), dpi=120)
    ax.plot(fpr, tpr, lw=2, label=f"AUC = {summary['auc']:.3f}")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.axvline(0.1, color="grey", lw=1, ls=":")
    ax.plot([0.1], [summary["sensitivity_at_90_specificity"]], "o", color="tab:red",
            label=f"sens. {summary['sensitivity_at_90_specificity']:.2f} at spec. 0.90")
    ax.set_xlabel("1 − specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(f"PH2 melanoma ({summary['melanoma']}) vs nevus ({summary['nevus']})", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return write_figure(path, fig, dpi="figure")
