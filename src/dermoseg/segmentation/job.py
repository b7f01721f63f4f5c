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
from dermoseg.io import write_image, write_text
from dermoseg.segmentation.measure import check_mm_per_pixel
from dermoseg.segmentation.segmenter import Segmentation, Segmenter

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


def segment_files(inputs: list[str], out_dir: str | Path, model: Segmenter, threshold: float | None = None,
                  tta: bool | None = None, preprocess: bool | None = None,
                  extra_columns: Callable[[Segmentation], dict[str, Any]] | None = None,
                  progress: bool = True, shard: tuple[int, int] | None = None) -> BatchReport:
    """Segment every image found in ``inputs`` and write the outputs into ``out_dir``.

    Parameters
    ----------
    inputs : files, folders (searched recursively) and glob patterns.
    out_dir : output folder (created).
    model : a loaded :class:`~dermoseg.segmentation.segmenter.Segmenter`.
    threshold : lesion where probability > threshold, in (0, 1); None: 0.5.
    tta : flip test-time augmentation; None follows the model file.
    preprocess : apply black-frame and hair removal before the model; None follows the model file's setting.
    extra_columns : optional ``f(segmentation) -> dict`` adding columns to each row (measurements, diagnosis).
    progress : show a progress bar on stderr.
    shard : ``(I, N)``: segment only shard I of N of the images found, for spreading a large archive over N
        machines (:func:`dermoseg.batch.run_batch`; deterministic, disjoint, together all images).

    Returns
    -------
    A :class:`dermoseg.batch.BatchReport`; ``results.csv`` and, if any input failed, ``failures.csv`` are
    written atomically. A tiny, blank or lesion-less input is segmented but flagged in the ``warning`` column
    and on stderr (:func:`input_warning`).
    """
    out_dir = Path(out_dir)

    def outputs(stem: str) -> list[Path]:
        return [out_dir / f"{stem}_segmentation.png", out_dir / f"{stem}_overlay.jpg"]

    def process(path: Path, stem: str, image: np.ndarray) -> dict[str, Any]:
        seg = model.segment(image, threshold, tta, preprocess)
        mask, prob = seg.mask, seg.probability
        mask_path, overlay_path = outputs(stem)
        write_image(mask_path, mask)
        write_image(overlay_path, draw_overlay(image, mask))
        row = {"file": str(path), "image_id": stem, "height": image.shape[0], "width": image.shape[1],
               **mask_geometry(mask),
               "mean_lesion_probability": float(prob[mask].mean()) if mask.any() else 0.0,
               "warning": input_warning(image, mask)}
        if extra_columns is not None:
            row.update(extra_columns(seg))
        return row

    report = run_batch(inputs, out_dir, process, desc="segment", outputs=outputs, is_own_output=is_own_output,
                       progress=progress, shard=shard)
    write_text(out_dir / "results.csv", rows_to_csv(report.rows, RESULT_COLUMNS))
    return report


def segment_columns(classifier=None, mm_per_pixel: float | None = None
                    ) -> Callable[[Segmentation], dict[str, Any]]:
    """The ``extra_columns`` of ``dermoseg segment``: the lesion measurements and, with a classifier, the diagnosis.

    Parameters
    ----------
    classifier : a loaded :class:`dermoseg.classification.classifier.Classifier`, or None. When given, each row
        gets ``diagnosis_note`` (the research-tool disclaimer), ``top_class`` and ``p_MEL`` … ``p_VASC``
        (calibrated probabilities; a mask-using classifier gets this segmentation's mask).
    mm_per_pixel : pixel size in mm for ``diameter_mm`` (None: left empty).

    Returns
    -------
    ``f(segmentation) -> dict`` of column values (:func:`dermoseg.segmentation.measure.measure_lesion` first).

    Raises
    ------
    dermoseg.segmentation.measure.MeasurementError
        If ``mm_per_pixel`` is given and not > 0.
    """
    check_mm_per_pixel(mm_per_pixel)

    def columns(seg: Segmentation) -> dict[str, Any]:
        row = seg.measure(mm_per_pixel)
        if classifier is not None:
            row.update(classifier.diagnosis_columns(seg.image, seg.mask))
        return row

    return columns


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
