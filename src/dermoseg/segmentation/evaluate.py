"""Scoring masks against ground truth, the ISIC 2018 Task 1 way (Codella et al. 2019, arXiv:1902.03368).

Predicted and true mask files are binarised at ``> 128`` (:data:`dermoseg.io.MASK_FILE_THRESHOLD`, as the
official ``isic-challenge-scoring`` does; a 0/1 mask is read as 1 = lesion, and a mask that is not binary is
refused: :func:`dermoseg.io.read_binary_mask`), each image's metrics come from its own confusion matrix
(:mod:`dermoseg.metrics`), and the summary is their mean. Images whose truth has no lesion are counted apart
(``empty_truth_images``), with the convention stated in the summary. The outputs are ``per_image.csv``,
``summary.json`` (and, from the command line, ``run.json``) in the chosen folder. :func:`score_images` is the one evaluation loop of a model, used by ``dermoseg evaluate``
and by the sweeps.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from dermoseg.batch import rows_to_csv
from dermoseg.data.datasets import SegmentationSample
from dermoseg.errors import EvaluationError
from dermoseg.io import (IMAGE_EXTENSIONS, ImageReadError, read_binary_mask, read_image, read_mask, write_image,
                         write_text)
from dermoseg.metrics import METRIC_NAMES, image_metrics, summarize
from dermoseg.segmentation.segmenter import Segmenter

MASK_SUFFIX = re.compile(r"_(segmentation|lesion|mask|gt|truth)$", re.IGNORECASE)
EMPTY_TRUTH_CONVENTION = ("an image whose ground truth has no lesion pixel scores Dice, Jaccard and sensitivity 1 if "
                          "the prediction is empty too and Dice and Jaccard 0 otherwise (the ISIC 2018 scorer's "
                          "convention); such images are included in the means and counted in empty_truth_images")


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


def read_subset(path: str | Path) -> list[str]:
    """Image ids from a subset file: one id per line, or a CSV. Blank lines and ``#`` comments are skipped, and a
    byte-order mark (a CSV saved by Excel) is ignored. A CSV whose header has an ``image_id`` (else ``image``)
    column gives that column (``results.csv`` of ``dermoseg segment``, ``predictions.csv`` of ``diagnose``);
    otherwise the first field of each line is the id.

    Raises
    ------
    EvaluationError
        If the file is unreadable or lists no id.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"{path}: cannot read the subset file ({exc})") from None
    rows = [[cell.strip() for cell in row] for row in csv.reader(ln for ln in lines
                                                                  if ln.strip() and not ln.lstrip().startswith("#"))]
    column = next((rows[0].index(name) for name in ("image_id", "image") if rows and name in rows[0]), None)
    if column is None:
        ids = [row[0] for row in rows if row]
    else:
        ids = [row[column] for row in rows[1:] if len(row) > column]
    if not ids:
        raise EvaluationError(f"{path}: the subset file lists no image id")
    return list(dict.fromkeys(ids))


def evaluate_dirs(pred_dir: str | Path, truth_dir: str | Path, subset: list[str] | None = None,
                  skip_bad: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score every predicted mask in ``pred_dir`` against the true mask of the same id in ``truth_dir``.

    Ids are file stems without ``_segmentation``/``_lesion``/``_mask`` (so ISIC ``ISIC_x_segmentation.png`` and
    PH2 ``IMDxxx_lesion.png`` both match ``dermoseg segment`` output). Folders are searched recursively. Masks
    are read by :func:`dermoseg.io.read_binary_mask` (0/255 or 0/1; nearly binary ones with a warning on
    stderr).

    Parameters
    ----------
    subset : score only these ids (every one must have a truth and a prediction, unless ``skip_bad``).
    skip_bad : score the pairs that can be scored; ids without a prediction or truth, unreadable or non-binary
        masks and size mismatches are listed in the summary's ``skipped`` (id, file, reason) instead of stopping.

    Returns
    -------
    (per-image rows with ``image_id`` and every metric, summary: the means, ``images``,
    ``empty_truth_images`` and ``empty_truth_convention``, ``skipped`` and ``warnings`` lists).

    Raises
    ------
    EvaluationError
        Without ``skip_bad``: if a truth has no prediction, a prediction has no truth, sizes differ, or a mask is
        unreadable or not binary (the message names the file); with it, if no pair can be scored.
    """
    preds, truths = _index_masks(Path(pred_dir), "prediction"), _index_masks(Path(truth_dir), "truth")
    keys = sorted(set(truths) | set(preds)) if subset is None else list(subset)
    skipped: list[dict[str, str]] = []
    warnings: list[dict[str, str]] = []

    def problem(key: str, file: Path | str, reason: str) -> None:
        if not skip_bad:
            raise EvaluationError(f"{file}: {reason}")
        skipped.append({"image_id": key, "file": str(file), "reason": reason})

    if subset is None and not skip_bad:
        missing = sorted(set(truths) - set(preds))
        if missing:
            raise EvaluationError(f"{truths[missing[0]]}: no prediction for id '{missing[0]}' in {pred_dir} "
                                  f"({len(missing)} missing)")
        extra = sorted(set(preds) - set(truths))
        if extra:
            raise EvaluationError(f"{preds[extra[0]]}: no ground truth for id '{extra[0]}' in {truth_dir} "
                                  f"({len(extra)} extra)")
    rows = []
    for key in tqdm(keys, desc="evaluate", unit="img"):
        if key not in truths or key not in preds:
            where = (f"no ground truth for id '{key}' in {truth_dir}" if key not in truths
                     else f"no prediction for id '{key}' in {pred_dir}")
            problem(key, preds.get(key) or truths.get(key) or key, where)
            continue
        try:
            rows.append(_score_pair(key, preds[key], truths[key], warnings))
        except EvaluationError as exc:
            file, _, reason = str(exc).partition(": ")
            problem(key, file, reason)
    if not rows:
        raise EvaluationError(f"{pred_dir}: no pair of prediction and truth could be scored ({len(skipped)} skipped)")
    return rows, {**summarize_with_empty_truth(rows), "skipped": skipped, "warnings": warnings}


def summarize_with_empty_truth(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`dermoseg.metrics.summarize` plus ``empty_truth_images`` (truths without a lesion pixel: TP + FN
    = 0) and the scoring convention for them."""
    return {**summarize(rows), "empty_truth_images": int(sum(r["tp"] + r["fn"] == 0 for r in rows)),
            "empty_truth_convention": EMPTY_TRUTH_CONVENTION}


def _score_pair(key: str, pred_path: Path, truth_path: Path, warnings: list[dict[str, str]]) -> dict[str, Any]:
    try:
        (pred, pred_note), (truth, truth_note) = read_binary_mask(pred_path), read_binary_mask(truth_path)
    except ImageReadError as exc:
        raise EvaluationError(str(exc)) from None
    for path, note in ((pred_path, pred_note), (truth_path, truth_note)):
        if note:
            print(f"warning: {path}: {note}", file=sys.stderr)
            warnings.append({"image_id": key, "file": str(path), "warning": note})
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


def read_pairs(samples: Iterable[SegmentationSample]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(image_id, image (H, W, 3) uint8 RGB, truth (H, W) bool)`` of each sample, with a progress bar.

    Raises
    ------
    EvaluationError
        If a ground truth's size differs from its image's.
    """
    for s in tqdm(list(samples), desc="evaluate", unit="img"):
        image, truth = read_image(s.image_path), read_mask(s.mask_path, 0)
        if image.shape[:2] != truth.shape:
            raise EvaluationError(f"{s.mask_path}: mask size {truth.shape[::-1]} differs from image {image.shape[1::-1]}")
        yield s.image_id, image, truth


def evaluate_model(model: Segmenter, samples: Iterable[SegmentationSample], out_dir: str | Path | None = None,
                   threshold: float | None = None, tta: bool | None = None, preprocess: bool | None = None,
                   save_masks: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
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
    for row, mask in score_images(model, read_pairs(samples), threshold, tta, preprocess):
        if save_masks and out_dir is not None:
            write_image(Path(out_dir) / "masks" / f"{row['image_id']}_segmentation.png", mask)
        rows.append(row)
    summary = summarize_with_empty_truth(rows)
    if out_dir is not None:
        write_report(out_dir, rows, summary)
    return rows, summary


def write_report(out_dir: str | Path, rows: list[dict[str, Any]] | None, summary: dict[str, Any]) -> None:
    """Write ``summary.json`` and, unless ``rows`` is None, ``per_image.csv`` (atomic)."""
    out_dir = Path(out_dir)
    if rows is not None:
        write_text(out_dir / "per_image.csv", rows_to_csv(rows, ["image_id", *METRIC_NAMES]))
    write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
