"""Self-training pairs (issue 12): images without ground truth, labelled by a segmentation model's own masks.

A ``dermoseg segment`` run over unlabelled images of the same domain (e.g. the 5984 HAM10000 images) writes
``<stem>_segmentation.png`` and ``results.csv`` with the per-image ``quality`` and ``review`` columns. Its
rows become extra training pairs here, keeping only the masks that the quality flag did not send to review, so
the teacher's likely failures do not teach the student (self-training with a confidence filter: Xie et al.,
"Self-training with Noisy Student improves ImageNet classification", CVPR 2020; Zoph et al., "Rethinking
Pre-training and Self-training", NeurIPS 2020). The student sees them with the usual augmentation (the "noise").

No evaluation image may be pseudo-labelled: an image of the ISIC 2018 split (train or validation: its ground
truth exists) or of PH2 (the external test set) is refused by id.
"""

from __future__ import annotations

import re
from pathlib import Path

from dermoseg.data.datasets import SegmentationSample
from dermoseg.errors import DatasetError
from dermoseg.io import file_sha256
from dermoseg.tables import read_rows

REQUIRED_COLUMNS = ("file", "image_id", "quality", "review")
PH2_ID = re.compile(r"IMD\d+")  # PH2's official image ids (Mendonça et al. 2013)


def load_pseudo_labels(results_csv: str | Path, excluded_ids: set[str]) -> tuple[list[SegmentationSample], dict]:
    """The unflagged rows of a ``dermoseg segment`` run as image/mask pairs.

    Parameters
    ----------
    results_csv : the run's ``results.csv``; its ``file`` column is read relative to the current folder when it
        is a relative path (as ``dermoseg segment`` writes the paths it was given), and each mask is
        ``<results folder>/<image_id>_segmentation.png`` (0/255, the input's size).
    excluded_ids : ids that must not appear (the ISIC 2018 split's ids); PH2 ids (``IMDnnn``) are always refused.

    Returns
    -------
    ``(samples, summary)``: the pairs of the rows with ``review`` False, sorted by id; ``summary`` is
    ``{"file", "sha256", "rows", "kept", "flagged"}`` for the trained model's provenance.

    Raises
    ------
    DatasetError
        If the table is missing, lacks a column, has no ``quality``/``review`` values (a run without a quality
        sidecar), names an excluded or PH2 image, or a kept row's image or mask file is missing; the message
        names the file.
    """
    path = Path(results_csv)
    if not path.is_file():
        raise DatasetError(f"{path}: pseudo-label table not found (the results.csv of a 'dermoseg segment' run)")
    header, rows = read_rows(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"{path}: no column {', '.join(missing)}; expected the results.csv of 'dermoseg segment'")
    samples, flagged = [], 0
    for row in rows:
        image_id = row["image_id"]
        if image_id in excluded_ids or PH2_ID.fullmatch(image_id):
            raise DatasetError(f"{path}: {image_id} is an evaluation or ground-truth image (ISIC 2018 split or PH2); "
                               "pseudo-labels may only cover images without ground truth")
        if row["review"] not in ("True", "False"):
            raise DatasetError(f"{path}: {image_id} has no review flag ('{row['review']}'); pseudo-labels need a "
                               "model with a quality sidecar")
        if row["review"] == "True":
            flagged += 1
            continue
        image, mask = Path(row["file"]), path.parent / f"{image_id}_segmentation.png"
        for p, what in ((image, "image"), (mask, "mask")):
            if not p.is_file():
                raise DatasetError(f"{path}: {what} of {image_id} not found: {p}")
        samples.append(SegmentationSample(image_id, image, mask))
    summary = {"file": str(path), "sha256": file_sha256(path), "rows": len(rows),
               "kept": len(samples), "flagged": flagged}
    return sorted(samples, key=lambda s: s.image_id), summary
