"""The main job: segment a batch of dermoscopic images into ISIC-named masks, overlays and a results table.

For each image ``<stem>``: ``<stem>_segmentation.png`` (0/255, the input's size; ISIC 2018 Task 1 naming, which
the official scorer reads), ``<stem>_overlay.jpg`` (lesion contour on the image) and a row of ``results.csv``.
A file that cannot be read is reported with its reason in ``failures.csv`` and on stderr; the batch goes on
(:func:`dermoseg.batch.run_batch`). A suspicious input (tiny, blank, no lesion found) gets a ``warning``; every
row carries the mask's estimated Jaccard (``quality``) and whether to check it by eye (``review``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from dermoseg import provenance
from dermoseg.batch import BatchReport, Stages, run_batch
from dermoseg.io import read_alpha, write_image
from dermoseg.segmentation.measure import check_mm_per_pixel
from dermoseg.segmentation.segmenter import THRESHOLD, Segmentation, Segmenter
from dermoseg.tables import CsvTable

RESULT_COLUMNS = ["file", "image_id", "height", "width", "lesion_area_px", "lesion_area_pct", "bbox_x", "bbox_y",
                  "bbox_width", "bbox_height", "mean_lesion_probability", "quality", "review", "warning", "seconds"]


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
    area = int(np.count_nonzero(mask))
    bbox: tuple = ("", "", 0, 0)
    if area:  # from the rows and columns that hold lesion (np.nonzero would list every pixel of a 30 Mpx mask)
        ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        bbox = (int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1))
    return {"lesion_area_px": area, "lesion_area_pct": 100.0 * area / mask.size, "bbox_x": bbox[0],
            "bbox_y": bbox[1], "bbox_width": bbox[2], "bbox_height": bbox[3]}


def segment_files(inputs: list[str], out_dir: str | Path, model: Segmenter, threshold: float | None = None,
                  tta: bool | None = None, preprocess: bool | None = None,
                  extra_columns: Callable[[Segmentation], dict[str, Any]] | None = None,
                  progress: bool = True, shard: tuple[int, int] | None = None, resume: bool = False,
                  settings: dict[str, Any] | None = None, models: list[dict[str, str]] | None = None) -> BatchReport:
    """Segment every image found in ``inputs`` and write the outputs into ``out_dir``.

    Parameters
    ----------
    inputs : files, folders (searched recursively) and glob patterns.
    out_dir : output folder (created).
    model : a loaded :class:`~dermoseg.segmentation.segmenter.Segmenter`.
    threshold : lesion where probability > threshold, in (0, 1); None: 0.5.
    tta : flip test-time augmentation; None follows the model file.
    preprocess : apply black-frame and hair removal before the model; None follows the model file's setting.
    extra_columns : optional ``f(segmentation) -> dict`` adding columns to each row (measurements, diagnosis); a
        ``warning`` it returns is appended to the row's own.
    progress : show a progress bar on stderr.
    shard : ``(I, N)``: segment only shard I of N of the images found, for spreading a large archive over N
        machines (:func:`dermoseg.batch.run_batch`; deterministic, disjoint, together all images).
    resume : keep the rows of an earlier run into ``out_dir`` and skip the images already done.
    settings, models : further settings and model files for ``run.json`` (the segmentation model, threshold,
        TTA and preprocessing are always recorded).

    Returns
    -------
    A :class:`dermoseg.batch.BatchReport`; each row is appended to ``results.csv`` as soon as its image is done,
    failures to ``failures.csv``. A tiny, blank, grayscale or lesion-less input is segmented but flagged in the
    ``warning`` column and on stderr (:attr:`Segmentation.warning`). Fully transparent pixels of an image with an
    alpha channel are never lesion.
    """
    out_dir = Path(out_dir)
    use_pre = bool(model.preprocess.get("enabled")) if preprocess is None else preprocess
    use_tta = model.tta if tta is None else tta

    def outputs(stem: str) -> list[Path]:
        return [out_dir / f"{stem}_segmentation.png", out_dir / f"{stem}_overlay.jpg"]

    def finish(path: Path, stem: str, image: np.ndarray, passes: np.ndarray) -> dict[str, Any]:
        alpha = read_alpha(path)
        seg = model.segmentation(image, passes, threshold, exclude=None if alpha is None else alpha == 0)
        mask_path, overlay_path = outputs(stem)
        write_image(mask_path, seg.mask)
        write_image(overlay_path, draw_overlay(image, seg.mask))
        return result_row(str(path), stem, seg, extra_columns)

    table = CsvTable(out_dir / "results.csv", RESULT_COLUMNS, key="image_id")
    run_settings = {"threshold": THRESHOLD if threshold is None else threshold, "tta": bool(use_tta),
                    "preprocess": bool(use_pre), "preprocess_settings": model.preprocess if use_pre else None,
                    "shard": f"{shard[0]}/{shard[1]}" if shard else None, **(settings or {})}
    stages = Stages(lambda image: model.prepare(image, preprocess), lambda x: model.pass_logits(x, tta), finish)
    return run_batch(inputs, out_dir, stages, desc="segment", outputs=outputs, progress=progress, shard=shard,
                     tables=[table], resume=resume, settings=run_settings,
                     models=[provenance.model_record("segmentation", model.path, model.runner),
                             *quality_record(model, use_tta), *(models or [])])


def result_row(file: str, image_id: str, seg: Segmentation,
               extra_columns: Callable[[Segmentation], dict[str, Any]] | None = None) -> dict[str, Any]:
    """One image's row of ``results.csv`` (every column of :data:`RESULT_COLUMNS` but ``seconds``, then those of
    ``extra_columns``); ``dermoseg segment`` and ``dermoseg serve`` both make their rows here.

    Parameters
    ----------
    file : the input as the user named it (a path, or an upload's file name).
    image_id : the output stem.
    seg : the image's :class:`~dermoseg.segmentation.segmenter.Segmentation`.
    extra_columns : as in :func:`segment_files`.
    """
    image, mask, prob = seg.image, seg.mask, seg.probability
    row = {"file": file, "image_id": image_id, "height": image.shape[0], "width": image.shape[1],
           **mask_geometry(mask), "mean_lesion_probability": float(prob[mask].mean()) if mask.any() else 0.0,
           **quality_columns(seg), "warning": seg.warning}
    if extra_columns is not None:
        extra = extra_columns(seg)
        row["warning"] = "; ".join(w for w in (row["warning"], extra.pop("warning", "")) if w)
        row.update(extra)
    return row


def segment_columns(classifier=None, mm_per_pixel: float | None = None, measure: bool = True
                    ) -> Callable[[Segmentation], dict[str, Any]]:
    """The ``extra_columns`` of ``dermoseg segment``: the lesion measurements and, with a classifier, the diagnosis.

    Parameters
    ----------
    classifier : a loaded :class:`dermoseg.classification.classifier.Classifier`, or None. When given, each row
        gets ``diagnosis_note`` (the research-tool disclaimer), ``top_class`` and ``p_MEL`` … ``p_VASC``
        (calibrated probabilities; a mask-using classifier gets this segmentation's mask), and its ``warning``
        the out-of-distribution flag of ``dermoseg diagnose`` when raised.
    mm_per_pixel : pixel size in mm for the ``_mm`` columns (None: left empty).
    measure : add the measurements (``dermoseg segment --no-measure`` leaves them out).

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
        row = seg.measure(mm_per_pixel) if measure else {}
        if classifier is not None:
            row.update(classifier.diagnosis_columns(seg.image, seg.mask))
        return row

    return columns


def quality_record(model: Segmenter, tta: bool) -> list[dict[str, str]]:
    """The ``run.json`` model entry of the quality sidecar behind the ``quality`` and ``review`` columns (role
    ``quality``), or none when they stay empty (no sidecar, or no flip TTA)."""
    from dermoseg.segmentation.quality import sidecar_path
    return [provenance.model_record("quality", sidecar_path(model.path))] if model.quality is not None and tta else []


def quality_columns(seg: Segmentation) -> dict[str, Any]:
    """The ``quality`` (estimated Jaccard in [0, 1]) and ``review`` (True/False) cells of a results row; both empty
    without flip TTA or without a quality sidecar beside the model file (:mod:`dermoseg.segmentation.quality`)."""
    if seg.quality is None:
        return {"quality": "", "review": ""}
    return {"quality": seg.quality, "review": seg.review}
