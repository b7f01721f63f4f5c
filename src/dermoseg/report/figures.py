"""The report's figures (PNG through :func:`dermoseg.io.write_figure`): training curves, per-image Dice
distributions, overlay sheets of the worst cases and the Table 1 grid.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from dermoseg.io import write_figure
from dermoseg.report.results import SET_TITLES, number

PRED_COLOR, TRUTH_COLOR = (0, 255, 0), (255, 0, 255)


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_curves(logs: Mapping[str, list[dict]], out_png: str | Path, title: str) -> Path:
    """Training (dashed) and validation (solid) loss, Dice and pixel accuracy per epoch, one colour per run.

    Parameters
    ----------
    logs : label → per-epoch records (:func:`dermoseg.experiments.logs.read_epoch_log`).
    out_png : figure path (PNG, 150 dpi).

    Returns
    -------
    ``out_png``.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, (metric, name) in zip(axes, (("loss", "loss"), ("dice", "Dice (0.5 threshold)"), ("pixel_accuracy", "pixel accuracy"))):
        for i, (label, records) in enumerate(logs.items()):
            color = f"C{i}"
            for stage, style in (("train", "--"), ("val", "-")):
                pts = [(r["epoch"], r[f"{stage}_{metric}"]) for r in records if f"{stage}_{metric}" in r]
                if pts:
                    ax.plot(*zip(*pts), style, color=color, marker="o", ms=3, label=f"{label} ({stage})")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    # one legend entry per run (its colour), under the panels, so long run labels cover no axis
    handles = [plt.Line2D([], [], color=f"C{i}", marker="o", ms=3, label=label) for i, label in enumerate(logs)]
    ncol = max(1, min(2, len(handles)))
    legend_rows = -(-len(handles) // ncol)
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(title + "  —  dashed: training, solid: validation (ISIC split, training resolution)")
    fig.tight_layout(rect=(0, 0.02 + 0.06 * legend_rows, 1, 1))
    return write_figure(out_png, fig, dpi=150)


def plot_distributions(per_image: Mapping[str, Mapping[str, list[float]]], out_png: str | Path) -> Path:
    """Box plots (with the points) of per-image Dice, one panel per evaluation set, one box per model.

    Parameters
    ----------
    per_image : set name → {model label → per-image Dice values in [0, 1]}.
    """
    plt = _plt()
    sets = [s for s in per_image if per_image[s]]
    fig, axes = plt.subplots(1, max(1, len(sets)), figsize=(7 * max(1, len(sets)), 4.8), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, set_name in zip(axes[0], sets):
        labels = list(per_image[set_name])
        data = [per_image[set_name][k] for k in labels]
        ax.boxplot(data, showfliers=False)
        for i, values in enumerate(data, start=1):
            ax.plot(i + rng.uniform(-0.15, 0.15, len(values)), values, ".", alpha=0.25, ms=3, color=f"C{i - 1}")
        ax.set_xticks(range(1, len(labels) + 1), [lbl.replace(", ", ",\n") for lbl in labels], fontsize=7)
        ax.set_ylabel("per-image Dice")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(SET_TITLES.get(set_name, set_name))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return write_figure(out_png, fig, dpi=150)


def overlay_sheet(items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float]], out_png: str | Path,
                  title: str, columns: int = 4, thumb: int = 256) -> Path:
    """A sheet of overlays: prediction contour in green, ground truth in magenta
    (:func:`dermoseg.segmentation.job.draw_overlay`).

    Parameters
    ----------
    items : ``(image id, image (H, W, 3) uint8, predicted (H, W) bool, truth (H, W) bool, Dice)``; the mask
        is resized (nearest) to the image's size when it differs.
    """
    import cv2

    from dermoseg.segmentation.job import draw_overlay
    plt = _plt()
    rows = max(1, math.ceil(len(items) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (image_id, image, pred, truth, dice) in zip(axes.ravel(), items):
        h, w = image.shape[:2]
        if pred.shape != (h, w):
            pred = cv2.resize(pred.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        over = draw_overlay(image, pred, PRED_COLOR, truth=truth, truth_color=TRUTH_COLOR)
        ax.imshow(cv2.resize(over, (thumb, round(thumb * h / w)), interpolation=cv2.INTER_AREA))
        ax.set_title(f"{image_id}  Dice {dice:.2f}", fontsize=8)
    fig.suptitle(title + "\ngreen: prediction, magenta: ground truth", fontsize=10)
    fig.tight_layout()
    return write_figure(out_png, fig, dpi=110)


def plot_grid(rows: list[dict[str, Any]], paper: list[Mapping[str, Any]], paper_epochs: list[int], out_png: str | Path) -> Path:
    """Table 1 as lines: ours (ISIC validation Dice and PH2 pixel accuracy) and the paper's test accuracy
    against epochs, one colour per (batch size, learning rate)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3))
    combos = sorted({(int(float(r["batch_size"])), float(r["lr"])) for r in rows})
    for i, (bs, lr) in enumerate(combos):
        sel = sorted((r for r in rows if int(float(r["batch_size"])) == bs and float(r["lr"]) == lr), key=lambda r: int(float(r["epochs"])))
        ep = [int(float(r["epochs"])) for r in sel]
        for ax, key in zip(axes[:2], ("isic2018_val_dice", "ph2_pixel_accuracy")):
            vals = [number(r.get(key)) for r in sel]
            if any(v is not None for v in vals):
                ax.plot(ep, [np.nan if v is None else v for v in vals], "-o", color=f"C{i}", label=f"batch {bs}, lr {lr:g}")
        for p in paper:
            if int(p["batch_size"]) == bs and float(p["lr"]) == lr:
                axes[2].plot(paper_epochs, p["test"], "--s", color=f"C{i}", label=f"paper: batch {bs}, lr {lr:g}")
    for ax, t in zip(axes, ("ours: ISIC validation Dice", "ours: PH2 pixel accuracy", "paper Table 1: test accuracy")):
        ax.set_title(t)
        ax.set_xlabel("epochs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return write_figure(out_png, fig, dpi=150)


def plot_reliability(per_set: Mapping[str, tuple[list[float], list[float]]], out_png: str | Path,
                     review_threshold: float, bins: int = 10) -> Path:
    """Reliability plot of the quality estimate: real Jaccard against quality per image (points), the mean real
    Jaccard in equal-count bins of quality (line), the diagonal, the failure line (Jaccard 0.65) and the review
    threshold; one panel per set.

    Parameters
    ----------
    per_set : panel title → (quality per image in [0, 1], real Jaccard per image in [0, 1]).
    review_threshold : quality at or below which an image is flagged.
    bins : number of equal-count bins.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, max(1, len(per_set)), figsize=(6 * max(1, len(per_set)), 5.2), squeeze=False)
    for ax, (title, (quality, jaccard)) in zip(axes[0], per_set.items()):
        q, j = np.asarray(quality), np.asarray(jaccard)
        fail = j < 0.65
        ax.plot(q[~fail], j[~fail], ".", ms=4, alpha=0.4, color="C0", label="image")
        ax.plot(q[fail], j[fail], ".", ms=5, alpha=0.8, color="C3", label="failure (Jaccard < 0.65)")
        parts = np.array_split(np.argsort(q), bins)
        ax.plot([q[p].mean() for p in parts], [j[p].mean() for p in parts], "o-", color="k", ms=4,
                label=f"mean real Jaccard ({bins} equal-count bins)")
        ax.plot([0, 1], [0, 1], ":", color="gray", label="quality = real Jaccard")
        ax.axhline(0.65, color="C3", lw=0.8, ls="--")
        ax.axvline(review_threshold, color="C1", lw=1, label=f"review threshold {review_threshold:.3f}")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("quality (estimated Jaccard)")
        ax.set_ylabel("real Jaccard")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return write_figure(out_png, fig, dpi=150)
