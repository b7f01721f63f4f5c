"""Scoring masks against ground truth, the ISIC 2018 Task 1 way (Codella et al. 2019, arXiv:1902.03368).

Predicted and true mask files are binarised at ``> 128`` (:data:`dermoseg.io.MASK_FILE_THRESHOLD`, as the
official ``isic-challenge-scoring`` does), each image's metrics come from its own confusion matrix
(:mod:`dermoseg.metrics`), and the summary is their mean. The outputs are ``per_image.csv`` and ``summary.json``
in the chosen folder. :func:`score_images` is the one evaluation loop of a model, used by ``dermoseg evaluate``
and by the sweeps.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from dermoseg.batch import rows_to_csv
from dermoseg.data.datasets import SegmentationSample
from dermoseg.errors import EvaluationError
from dermoseg.io import (IMAGE_EXTENSIONS, MASK_FILE_THRESHOLD, ImageReadError, read_image, read_mask, write_image,
                         write_text)
from dermoseg.metrics import METRIC_NAMES, image_metrics, summarize
from dermoseg.segmentation.segmenter import Segmenter

MASK_SUFFIX = re.compile(r"_(segmentation|lesion|mask|gt|truth)$", re.IGNORECASE)


def mask_id(path: Path) -> str:
    """Image id of a mask file: its stem without a ``_segmentation``/``_lesion``/``_mask`` suffix."""
    return MASK_SUFFIX.sub("", path.stem)


def _index_masks(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: {what} folder not found")
    out: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."):
            if what == "truth" and "Dermoscopic_Image" in p.parent.name:
                continue  # PH2 layout: the images sit beside the lesion masks
            if p.stem.endswith("_overlay"):
                continue  # 'dermoseg segment' writes overlays beside its masks
            key = mask_id(p)
            if key in out:
                raise EvaluationError(f"{p}: second {what} mask for id '{key}' (first: {out[key]})")
            out[key] = p
    if not out:
        raise EvaluationError(f"{folder}: no {what} mask images")
    return out


def evaluate_dirs(pred_dir: str | Path, truth_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Score every predicted mask in ``pred_dir`` against the true mask of the same id in ``truth_dir``.

    Ids are file stems without ``_segmentation``/``_lesion``/``_mask`` (so ISIC ``ISIC_x_segmentation.png`` and
    PH2 ``IMDxxx_lesion.png`` both match ``dermoseg segment`` output). Folders are searched recursively.

    Returns
    -------
    (per-image rows with ``image_id`` and every metric, summary of means).

    Raises
    ------
    EvaluationError
        If a truth has no prediction, a prediction has no truth, sizes differ, or a file is unreadable.
    """
    preds, truths = _index_masks(Path(pred_dir), "prediction"), _index_masks(Path(truth_dir), "truth")
    missing = sorted(set(truths) - set(preds))
    if missing:
        raise EvaluationError(f"{truths[missing[0]]}: no prediction for id '{missing[0]}' in {pred_dir} "
                              f"({len(missing)} missing)")
    extra = sorted(set(preds) - set(truths))
    if extra:
        raise EvaluationError(f"{preds[extra[0]]}: no ground truth for id '{extra[0]}' in {truth_dir} ({len(extra)} extra)")
    rows = []
    for key in tqdm(sorted(truths), desc="evaluate", unit="img"):
        rows.append(_score_pair(key, preds[key], truths[key]))
    return rows, summarize(rows)


def _score_pair(key: str, pred_path: Path, truth_path: Path) -> dict[str, Any]:
    try:
        pred, truth = read_mask(pred_path, MASK_FILE_THRESHOLD), read_mask(truth_path, MASK_FILE_THRESHOLD)
    except ImageReadError as exc:
        raise EvaluationError(str(exc)) from None
    if pred.shape != truth.shape:
        raise EvaluationError(f"{pred_path}: size {pred.shape[::-1]} differs from truth {truth_path} {truth.shape[::-1]}")
    return {"image_id": key, **image_metrics(pred, truth)}


def score_images(model: Segmenter, items: Iterable[tuple[str, np.ndarray, np.ndarray]], threshold: float | None = None,
                 tta: bool | None = None, preprocess: bool | None = None
                 ) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """Segment each image and score it against its truth, at the image's own size.

    Parameters
    ----------
    model : a loaded :class:`~dermoseg.segmentation.segmenter.Segmenter`.
    items : ``(image_id, image (H, W, 3) uint8 RGB, truth (H, W) bool)``.
    threshold, tta, preprocess : as for :meth:`Segmenter.segment` (None: the model file's settings).

    Yields
    ------
    (row with ``image_id`` and every metric of :func:`dermoseg.metrics.image_metrics`, predicted (H, W) bool mask).
    """
    for image_id, image, truth in items:
        mask = model.segment(image, threshold, tta, preprocess).mask
        yield {"image_id": image_id, **image_metrics(mask, truth)}, mask


def _read_pairs(samples: Iterable[SegmentationSample]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    for s in tqdm(list(samples), desc="evaluate", unit="img"):
        image, truth = read_image(s.image_path), read_mask(s.mask_path, 0)
        if image.shape[:2] != truth.shape:
            raise EvaluationError(f"{s.mask_path}: mask size {truth.shape[::-1]} differs from image {image.shape[1::-1]}")
        yield s.image_id, image, truth


def evaluate_model(model: Segmenter, samples: Iterable[SegmentationSample], out_dir: str | Path | None = None,
                   threshold: float | None = None, tta: bool | None = None, preprocess: bool | None = None,
                   save_masks: bool = False) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Segment each sample with ``model`` and score it against its ground truth (:func:`score_images`).

    Predicted masks are written as 0/255 PNG exactly as ``dermoseg segment`` writes them and binarised at > 128
    for scoring, so these figures equal those of scoring the saved masks.

    Returns
    -------
    (per-image rows, summary). With ``out_dir``, writes ``per_image.csv``, ``summary.json`` and, with
    ``save_masks``, ``masks/<id>_segmentation.png``.

    Raises
    ------
    EvaluationError
        If a ground truth's size differs from its image's.
    """
    rows = []
    for row, mask in score_images(model, _read_pairs(samples), threshold, tta, preprocess):
        if save_masks and out_dir is not None:
            write_image(Path(out_dir) / "masks" / f"{row['image_id']}_segmentation.png", mask)
        rows.append(row)
    summary = summarize(rows)
    if out_dir is not None:
        write_report(out_dir, rows, summary)
    return rows, summary


def write_report(out_dir: str | Path, rows: list[dict[str, Any]] | None, summary: dict[str, Any]) -> None:
    """Write ``summary.json`` and, unless ``rows`` is None, ``per_image.csv`` (atomic)."""
    out_dir = Path(out_dir)
    if rows is not None:
        write_text(out_dir / "per_image.csv", rows_to_csv(rows, ["image_id", *METRIC_NAMES]))
    write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
