"""The one place where the service calls the library's models: the same objects and functions as ``dermoseg
segment`` and ``dermoseg diagnose``, so an image gives the same mask, measurements and probabilities through either.

:class:`Pipeline` loads a :class:`~dermoseg.segmentation.segmenter.Segmenter` and a
:class:`~dermoseg.classification.classifier.Classifier` once and applies them to one decoded image; the
``results.csv`` row comes from :func:`dermoseg.segmentation.job.result_row` with the CLI's
:func:`~dermoseg.segmentation.job.segment_columns`. :mod:`dermoseg.serve.app` only turns the results into JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from dermoseg.batch import rows_to_csv
from dermoseg.classification import DISCLAIMER, HAM_CLASSES
from dermoseg.classification.classifier import Classifier
from dermoseg.inputs import image_warning
from dermoseg.segmentation.job import RESULT_COLUMNS, result_row, segment_columns
from dermoseg.segmentation.segmenter import THRESHOLD, Segmenter, check_threshold


@dataclass
class SegmentResult:
    """One segmented image.

    Attributes
    ----------
    mask : (H, W) bool lesion mask, exactly what ``dermoseg segment`` writes as ``<stem>_segmentation.png``.
    row : the image's ``results.csv`` row of ``dermoseg segment`` (same columns and values; ``seconds`` is
        added by the caller), including ``top_class`` and ``p_MEL`` … ``p_VASC`` when diagnosed.
    options : ``threshold``, ``tta`` and ``preprocess`` as applied (the model file's defaults filled in).
    quality : ``{"quality", "review", "message"}``: the mask's estimated Jaccard in [0, 1] and whether to check it
        by eye (:mod:`dermoseg.segmentation.quality`, as in the row), or None without flip TTA or a quality sidecar.
    """

    mask: np.ndarray
    row: dict[str, Any]
    options: dict[str, Any]
    quality: dict[str, Any] | None = None

    def csv(self) -> str:
        """The row as ``results.csv`` text (header line and one row), formatted as ``dermoseg segment`` writes it."""
        return rows_to_csv([self.row], RESULT_COLUMNS)


def upload_stem(filename: str | None) -> str:
    """The ``image_id`` of an upload: the stem of the client's file name without any folder part, reduced to
    safe characters (at most 100); "upload" when nothing is left. Only ever used as a label, never as a path."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", PurePosixPath(name).stem)[:100].strip("._")
    return stem or "upload"


class Pipeline:
    """The shipped (or given) segmentation model and classifier, loaded once, applied to one image at a time.

    Parameters
    ----------
    segmentation_model : segmentation ``.pt`` file; None for the shipped one.
    classifier_model : classifier ``.pt`` file; None for the shipped one.
    threads : compute threads of each model's engine; None: the CPUs available to the process.

    Raises
    ------
    dermoseg.errors.ModelFileError
        If a model file is missing or not a dermoseg model.
    """

    def __init__(self, segmentation_model: str | Path | None = None, classifier_model: str | Path | None = None,
                 threads: int | None = None):
        self.segmenter = Segmenter.load(segmentation_model, threads=threads)
        self.classifier = Classifier.load(classifier_model, threads=threads)
        self._models = [self._describe("segmentation", self.segmenter.path, self.segmenter.sha256),
                        self._describe("classification", self.classifier.path, self.classifier.sha256)]

    @staticmethod
    def _describe(task: str, path: Path, sha256: str) -> dict[str, Any]:
        card = path.with_suffix(".md")
        return {"task": task, "name": path.name, "sha256": sha256,
                "headline": card_headlines(card.read_text(encoding="utf-8")) if card.is_file() else []}

    def models(self) -> list[dict[str, Any]]:
        """Name, task, sha256 and the model card's headline figures of each model (see :func:`card_headlines`)."""
        return self._models

    def segment(self, image: np.ndarray, filename: str, threshold: float = THRESHOLD, tta: bool | None = None,
                preprocess: bool | None = None, mm_per_pixel: float | None = None,
                diagnose: bool = False, alpha: np.ndarray | None = None) -> SegmentResult:
        """Segment, measure and (optionally) classify one image as ``dermoseg segment [--diagnose]`` does.

        Parameters
        ----------
        image : (H, W, 3) uint8 RGB, as :func:`dermoseg.io.decode_image` returns it.
        filename : the client's file name, for the ``file`` and ``image_id`` columns only.
        threshold : lesion where probability > threshold, in (0, 1).
        tta, preprocess : flip test-time augmentation and black-frame/hair removal; None follows the model file.
        mm_per_pixel : pixel size in mm (> 0) for ``diameter_mm``; None leaves it empty.
        diagnose : add the classifier's columns (``diagnosis_note``, ``top_class``, ``p_MEL`` … ``p_VASC``).
        alpha : (H, W) uint8 opacity of an image with transparency (:func:`dermoseg.io.decode_image`); its fully
            transparent pixels are never lesion, as in ``dermoseg segment``.

        Returns
        -------
        A :class:`SegmentResult`.

        Raises
        ------
        ValueError
            If ``threshold`` is outside (0, 1); :class:`dermoseg.segmentation.measure.MeasurementError` if
            ``mm_per_pixel`` is not > 0.
        """
        check_threshold(threshold)
        columns = segment_columns(self.classifier if diagnose else None, mm_per_pixel)
        seg = self.segmenter.segment(image, threshold, tta, preprocess, exclude=None if alpha is None else alpha == 0)
        options = {"threshold": threshold, "tta": self.segmenter.tta if tta is None else tta,
                   "preprocess": bool(self.segmenter.preprocess.get("enabled")) if preprocess is None else preprocess}
        quality = None if seg.quality is None else {
            "quality": seg.quality, "review": seg.review,
            "message": f"estimated Jaccard {seg.quality:.2f}" + ("; check this mask by eye" if seg.review else "")}
        return SegmentResult(seg.mask, result_row(filename, upload_stem(filename), seg, columns), options, quality)

    def diagnose(self, image: np.ndarray) -> tuple[dict[str, float], str]:
        """The seven calibrated class probabilities of one image and its ``warning``, as ``dermoseg diagnose``
        computes them (a mask-using classifier gets the segmenter's mask, as there).

        Parameters
        ----------
        image : (H, W, 3) uint8 RGB.

        Returns
        -------
        ``({class: probability}, warning)``: floats in [0, 1] summing to 1, in
        :data:`dermoseg.classification.HAM_CLASSES` order (MEL, NV, BCC, AKIEC, BKL, DF, VASC); the warning of
        ``image_sources.csv`` (tiny, nearly uniform or grayscale input, :func:`dermoseg.inputs.image_warning`;
        prediction entropy above the out-of-distribution threshold, :mod:`dermoseg.classification.ood`), or "".
        Research tool, not a medical device.
        """
        mask = self.segmenter.segment(image).mask if self.classifier.uses_mask else None
        logits = self.classifier.logits([image], None if mask is None else [mask])
        ood = self.classifier.ood
        warning = "; ".join(w for w in (image_warning(image), ood.warning(logits[0]) if ood else "") if w)
        return {c: float(v) for c, v in zip(HAM_CLASSES, self.classifier.calibrated(logits)[0])}, warning


def card_headlines(card: str) -> list[str]:
    """The headline figures of a model card: every Markdown table row with a bold (``**x**``) cell, as
    "<row label>: <column> <value>, …" (or "<row label>: <value>" in a two-column metric/value table); a
    parenthesis right after the bold value (the figure it is compared with) is kept.

    Parameters
    ----------
    card : the model card's Markdown text.

    Returns
    -------
    One string per such row, in the card's order; [] when the card has none.
    """
    out, header = [], None
    for line in card.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        bold = [(i, m.group(1) + (m.group(2) or "")) for i, c in enumerate(cells)
                if (m := re.search(r"\*\*([^*]+)\*\*(\s*\([^)]*\))?", c)) and i > 0]
        if bold:
            figures = [v if len(header) == 2 else f"{header[i]} {v}" for i, v in bold if i < len(header)]
            out.append(f"{cells[0]}: {', '.join(figures)}")
    return out


__all__ = ["DISCLAIMER", "HAM_CLASSES", "Pipeline", "SegmentResult", "card_headlines", "upload_stem"]
