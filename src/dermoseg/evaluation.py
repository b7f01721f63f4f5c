"""Scoring masks against ground truth, the ISIC 2018 Task 1 way (method.md row 10).

Both predicted and true masks are binarised at ``> 128`` (as the official ``isic-challenge-scoring`` does), each
image's metrics come from its own confusion matrix (:mod:`dermoseg.metrics`), and the summary is their mean. The
outputs are ``per_image.csv`` and ``summary.json`` in the chosen folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

from tqdm import tqdm

from dermoseg.data.datasets import SegmentationSample, load_isic2018_task1, load_ph2
from dermoseg.data.splits import ISIC_SPLIT, read_split, select
from dermoseg.inference import SegmentationModel, predict_probability, probability_to_mask
from dermoseg.errors import EvaluationError
from dermoseg.io import IMAGE_EXTENSIONS, ImageReadError, read_image, read_mask, write_image, write_text
from dermoseg.metrics import METRIC_NAMES, image_metrics, summarize
from dermoseg.batch import rows_to_csv

MASK_SUFFIX = re.compile(r"_(segmentation|lesion|mask|gt|truth)$", re.IGNORECASE)
SCORE_THRESHOLD = 128


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
        pred, truth = read_mask(pred_path, SCORE_THRESHOLD), read_mask(truth_path, SCORE_THRESHOLD)
    except ImageReadError as exc:
        raise EvaluationError(str(exc)) from None
    if pred.shape != truth.shape:
        raise EvaluationError(f"{pred_path}: size {pred.shape[::-1]} differs from truth {truth_path} {truth.shape[::-1]}")
    return {"image_id": key, **image_metrics(pred, truth)}


def dataset_samples(dataset: str, data_root: str | Path, split: str = "val") -> list[SegmentationSample]:
    """Samples of a named evaluation set.

    Parameters
    ----------
    dataset : ``isic2018`` (with ``split`` train/val/all of the committed split) or ``ph2`` (all 200; PH2 is an
        external test set and is never split).
    data_root : the folder holding ``isic2018_task1/`` and ``ph2/`` (default ``../shared/data``).
    """
    root = Path(data_root)
    if dataset == "isic2018":
        return select(load_isic2018_task1(root / "isic2018_task1"), read_split(ISIC_SPLIT), split)
    if dataset == "ph2":
        return load_ph2(root / "ph2")
    raise EvaluationError(f"unknown dataset '{dataset}' (use isic2018 or ph2)")


def evaluate_model(model: SegmentationModel, samples: Iterable[SegmentationSample], out_dir: str | Path | None = None,
                   threshold: float = 0.5, tta: bool | None = None, preprocess: bool | None = None,
                   save_masks: bool = False) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Segment each sample with ``model`` and score it against its ground truth.

    Predicted masks are written as 0/255 PNG exactly as ``dermoseg segment`` writes them and binarised at > 128
    for scoring, so these figures equal those of scoring the saved masks.

    Returns
    -------
    (per-image rows, summary). With ``out_dir``, writes ``per_image.csv``, ``summary.json`` and, with
    ``save_masks``, ``masks/<id>_segmentation.png``.
    """
    use_pre = bool(model.preprocess.get("enabled")) if preprocess is None else preprocess
    cleaner = None
    if use_pre:
        from dermoseg.preprocess import clean_image
        cleaner = lambda im: clean_image(im, model.preprocess).image  # noqa: E731
    rows = []
    for s in tqdm(list(samples), desc="evaluate", unit="img"):
        image, truth = read_image(s.image_path), read_mask(s.mask_path, 0)
        if image.shape[:2] != truth.shape:
            raise EvaluationError(f"{s.mask_path}: mask size {truth.shape[::-1]} differs from image {image.shape[1::-1]}")
        prob = predict_probability(model, cleaner(image) if cleaner else image, tta=tta)
        mask = probability_to_mask(prob, threshold)
        if save_masks and out_dir is not None:
            write_image(Path(out_dir) / "masks" / f"{s.image_id}_segmentation.png", mask)
        rows.append({"image_id": s.image_id, **image_metrics(mask, truth)})
    summary = summarize(rows)
    if out_dir is not None:
        write_report(out_dir, rows, summary)
    return rows, summary


def write_report(out_dir: str | Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Write ``per_image.csv`` and ``summary.json`` (atomic)."""
    out_dir = Path(out_dir)
    write_text(out_dir / "per_image.csv", rows_to_csv(rows, ["image_id", *METRIC_NAMES]))
    write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
