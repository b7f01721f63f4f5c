"""The main job: segment a batch of dermoscopic images into ISIC-named masks, overlays and a results table.

For each image ``<stem>``: ``<stem>_segmentation.png`` (0/255, the input's size; ISIC 2018 Task 1 naming, which
the official scorer reads), ``<stem>_overlay.jpg`` (lesion contour on the image) and a row of ``results.csv``.
A file that cannot be read is reported with its reason in ``failures.csv`` and on stderr; the batch goes on
(:func:`dermoseg.batch.run_batch`). A suspicious input (tiny, blank, no lesion found) gets a ``warning``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from dermoseg.batch import BatchReport, rows_to_csv, run_batch
from dermoseg.inference import SegmentationModel, predict_probability, probability_to_mask
from dermoseg.io import write_image, write_text

RESULT_COLUMNS = ["file", "image_id", "height", "width", "lesion_area_px", "lesion_area_pct", "bbox_x", "bbox_y",
                  "bbox_width", "bbox_height", "mean_lesion_probability", "warning", "seconds"]
MIN_SIDE = 32     # pixels; smaller inputs get a warning (the model sees 256 x 256)
BLANK_STD = 2.0   # grey levels; a flatter image gets a warning


def draw_overlay(image: np.ndarray, mask: np.ndarray, color=(0, 255, 0), truth: np.ndarray | None = None,
                 truth_color=(255, 0, 255)) -> np.ndarray:
    """The image with the lesion contour drawn on it (and, if given, the ground-truth contour in a second colour).

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB.
    mask, truth : (H, W) bool.

    Returns
    -------
    (H, W, 3) uint8 RGB copy; the input is not changed.
    """
    out = image.copy()
    thickness = max(2, round(max(image.shape[:2]) / 250))
    for m, c in ((truth, truth_color), (mask, color)):
        if m is not None and m.any():
            contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, contours, -1, c, thickness)
    return out


def mask_geometry(mask: np.ndarray) -> dict[str, Any]:
    """Area (pixels and % of the image) and bounding box (x, y, width, height in pixels) of a (H, W) bool mask;
    an empty mask gives area 0 and an empty bounding box."""
    area = int(mask.sum())
    ys, xs = np.nonzero(mask)
    bbox = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)) if area else ("", "", 0, 0)
    return {"lesion_area_px": area, "lesion_area_pct": 100.0 * area / mask.size, "bbox_x": bbox[0],
            "bbox_y": bbox[1], "bbox_width": bbox[2], "bbox_height": bbox[3]}


def segment_files(inputs: list[str], out_dir: str | Path, model: SegmentationModel, threshold: float = 0.5,
                  tta: bool | None = None, preprocess: bool | None = None,
                  extra_columns: Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, Any]] | None = None,
                  progress: bool = True) -> BatchReport:
    """Segment every image found in ``inputs`` and write the outputs into ``out_dir``.

    Parameters
    ----------
    inputs : files, folders (searched recursively) and glob patterns.
    out_dir : output folder (created).
    model : a loaded segmentation model.
    threshold : lesion where probability > threshold, in (0, 1).
    tta : flip test-time augmentation; None follows the model file.
    preprocess : apply black-frame and hair removal before the model; None follows the model file's setting.
    extra_columns : optional ``f(image, mask, prob) -> dict`` adding columns to each row (measurements,
        diagnosis).
    progress : show a progress bar on stderr.

    Returns
    -------
    A :class:`dermoseg.batch.BatchReport`; ``results.csv`` and, if any input failed, ``failures.csv`` are
    written atomically. A tiny, blank or lesion-less input is segmented but flagged in the ``warning`` column
    and on stderr (:func:`input_warning`).
    """
    out_dir = Path(out_dir)
    use_pre = bool(model.preprocess.get("enabled")) if preprocess is None else preprocess
    clean = None
    if use_pre:
        from dermoseg.preprocess import clean_image
        clean = lambda im: clean_image(im, model.preprocess).image  # noqa: E731

    def outputs(stem: str) -> list[Path]:
        return [out_dir / f"{stem}_segmentation.png", out_dir / f"{stem}_overlay.jpg"]

    def process(path: Path, stem: str, image: np.ndarray) -> dict[str, Any]:
        prob = predict_probability(model, clean(image) if clean else image, tta=tta)
        mask = probability_to_mask(prob, threshold)
        mask_path, overlay_path = outputs(stem)
        write_image(mask_path, mask)
        write_image(overlay_path, draw_overlay(image, mask))
        row = {"file": str(path), "image_id": stem, "height": image.shape[0], "width": image.shape[1],
               **mask_geometry(mask),
               "mean_lesion_probability": float(prob[mask].mean()) if mask.any() else 0.0,
               "warning": input_warning(image, mask)}
        if extra_columns is not None:
            row.update(extra_columns(image, mask, prob))
        return row

    report = run_batch(inputs, out_dir, process, desc="segment", outputs=outputs, is_own_output=is_own_output,
                       progress=progress)
    write_text(out_dir / "results.csv", rows_to_csv(report.rows, RESULT_COLUMNS))
    return report


def input_warning(image: np.ndarray, mask: np.ndarray) -> str:
    """Why a segmentation is likely unreliable, or "" if nothing looks wrong.

    Checks, in order: an image under :data:`MIN_SIDE` pixels on a side (the model works at 256 px); a nearly
    uniform image (grey-level standard deviation under :data:`BLANK_STD`, e.g. a blank or failed capture); no
    lesion pixel found; lesion on every pixel.

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB.
    mask : (H, W) bool, True = lesion.
    """
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        return f"image is only {w}x{h} pixels (< {MIN_SIDE}); the mask is unreliable"
    step = max(1, min(h, w) // 256)  # a strided view is enough to tell a blank image, and cheap on 24 MP inputs
    if float(image[::step, ::step].std()) < BLANK_STD:
        return "image is nearly uniform (blank?); the mask is unreliable"
    if not mask.any():
        return "no lesion found"
    if mask.all():
        return "lesion covers the whole image (lesion larger than the field of view, or not a dermoscopic image?)"
    return ""


def is_own_output(path: Path) -> bool:
    """True for a mask or overlay that ``segment`` writes (never re-segment those when found in its output folder)."""
    return path.name.endswith(("_segmentation.png", "_overlay.jpg"))
