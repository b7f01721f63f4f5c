"""Self-training pairs (issue 12): images without ground truth, labelled by a segmentation model's own masks.

A ``dermoseg segment`` run over unlabelled images of the same domain (e.g. the 5984 HAM10000 images, which have
a diagnosis but no lesion mask) writes ``<stem>_segmentation.png`` and ``results.csv``. Its rows become extra
training pairs here, less the masks the teacher was least sure of, so that its likely failures do not teach the
student (self-training with a confidence filter: Xie et al., "Self-training with Noisy Student improves ImageNet
classification", CVPR 2020; Zoph et al., "Rethinking Pre-training and Self-training", NeurIPS 2020). The student
sees them with the usual augmentation (the "noise").

The filter uses no ground truth at all: the teacher's mean lesion probability inside its own mask
(``mean_lesion_probability``) ranks the masks, and a fraction fixed in advance (``drop_fraction``) of the least
confident is left out, with every empty mask and every row with an input ``warning``. The ``quality``/``review``
columns are not used: their regressor and threshold were fitted on the ISIC validation split, so a selection by
them would let the split that judges the student choose its training data.

No evaluation image may be pseudo-labelled: an image of the ISIC 2018 split (train or validation: its ground
truth exists) or of PH2 (the external test set) is refused by id, also under a suffixed name
(``ISIC_0000000__2``), and so is any image outside the allow-list of ids (e.g. the HAM10000 metadata's).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path

from dermoseg.data.datasets import SegmentationSample
from dermoseg.errors import ConfigError, DatasetError
from dermoseg.io import file_sha256
from dermoseg.tables import read_rows

REQUIRED_COLUMNS = ("file", "image_id", "lesion_area_px", "mean_lesion_probability", "warning")
SOURCE_ID = re.compile(r"(ISIC_\d{7}|IMD\d+)")  # the ISIC archive's and PH2's image ids, at the start of a name


def read_allowed_ids(metadata_csv: str | Path) -> set[str]:
    """The ``image_id`` column of a metadata table (e.g. ``ham10000/HAM10000_metadata.csv``): the only images that
    may be pseudo-labelled. Raises DatasetError naming the file if it is missing or has no ``image_id`` column."""
    path = Path(metadata_csv)
    if not path.is_file():
        raise DatasetError(f"{path}: allow-list of pseudo-label ids not found (a CSV with an image_id column)")
    header, rows = read_rows(path)
    if "image_id" not in header:
        raise DatasetError(f"{path}: no column image_id; expected a metadata table such as HAM10000_metadata.csv")
    return {row["image_id"] for row in rows}


def load_pseudo_labels(results_csv: str | Path, excluded_ids: set[str], drop_fraction: float,
                       allowed_ids: set[str]) -> tuple[list[SegmentationSample], dict]:
    """The confident, non-empty, unwarned rows of a ``dermoseg segment`` run as image/mask pairs.

    Parameters
    ----------
    results_csv : the run's ``results.csv``; its ``file`` column is read relative to the current folder when it
        is a relative path (as ``dermoseg segment`` writes the paths it was given), and each mask is
        ``<results folder>/<image_id>_segmentation.png`` (0/255, the input's size).
    excluded_ids : ids that must not appear (the ISIC 2018 split's ids); PH2 ids (``IMDnnn``) are always refused.
        A name is checked by its leading archive id too, so ``ISIC_0000000__2`` counts as ``ISIC_0000000``.
    drop_fraction : in [0, 1): the share of the non-empty, unwarned masks with the lowest
        ``mean_lesion_probability`` (in [0, 1]) that is left out, rounded down; ties broken by id.
    allowed_ids : every row's ``image_id`` must be one of them (:func:`read_allowed_ids`).

    Returns
    -------
    ``(samples, summary)``: the kept pairs, sorted by id; ``summary`` is ``{"file", "sha256", "rows", "kept",
    "empty", "warned", "least_confident", "drop_fraction", "confidence_cutoff"}`` for the trained model's
    provenance (``confidence_cutoff``: the lowest kept mean lesion probability, None when nothing is kept).

    Raises
    ------
    DatasetError
        If the table is missing, lacks a column, repeats an id, names an excluded, PH2 or not-allowed image, has an
        area or confidence that is not a number in range, or a kept row's image or mask file is missing; the
        message names the file.
    ValueError
        If ``drop_fraction`` is outside [0, 1).
    """
    if not 0 <= drop_fraction < 1:
        raise ValueError(f"drop_fraction must be in [0, 1), got {drop_fraction}")
    path = Path(results_csv)
    if not path.is_file():
        raise DatasetError(f"{path}: pseudo-label table not found (the results.csv of a 'dermoseg segment' run)")
    header, rows = read_rows(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"{path}: no column {', '.join(missing)}; expected the results.csv of 'dermoseg segment'")
    seen: set[str] = set()
    candidates, empty, warned = [], 0, 0
    for row in rows:
        image_id = row["image_id"]
        source = SOURCE_ID.match(image_id)
        if image_id in excluded_ids or (source and (source[1] in excluded_ids or source[1].startswith("IMD"))):
            raise DatasetError(f"{path}: {image_id} is an evaluation or ground-truth image (ISIC 2018 split or PH2); "
                               "pseudo-labels may only cover images without ground truth")
        if image_id not in allowed_ids:
            raise DatasetError(f"{path}: {image_id} is not in the allow-list of pseudo-label ids")
        if image_id in seen:
            raise DatasetError(f"{path}: {image_id} appears twice; one run's table names each image once")
        seen.add(image_id)
        try:
            area, confidence = float(row["lesion_area_px"]), float(row["mean_lesion_probability"])
        except (TypeError, ValueError):  # TypeError: a short row
            area = confidence = math.nan
        if not (math.isfinite(area) and area >= 0 and math.isfinite(confidence) and 0 <= confidence <= 1):
            raise DatasetError(f"{path}: {image_id} has no valid lesion area (≥ 0) or mean lesion probability "
                               f"(in [0, 1]): '{row['lesion_area_px']}', '{row['mean_lesion_probability']}'")
        if row["warning"]:
            warned += 1
        elif area == 0:
            empty += 1
        else:
            candidates.append((confidence, image_id, row["file"]))
    least_confident = int(Fraction(str(drop_fraction)) * len(candidates))  # exact: 0.29 × 100 is 29, not 28
    kept = sorted(candidates)[least_confident:]
    samples = []
    for _, image_id, file in kept:
        image, mask = Path(file), path.parent / f"{image_id}_segmentation.png"
        for p, what in ((image, "image"), (mask, "mask")):
            if not p.is_file():
                where = "" if p.is_absolute() else f" (relative to the current folder {Path.cwd()})"
                raise DatasetError(f"{path}: {what} of {image_id} not found: {p}{where}")
        samples.append(SegmentationSample(image_id, image, mask))
    summary = {"file": str(path), "sha256": file_sha256(path), "rows": len(rows), "kept": len(samples),
               "empty": empty, "warned": warned, "least_confident": least_confident, "drop_fraction": drop_fraction,
               "confidence_cutoff": kept[0][0] if kept else None}
    return sorted(samples, key=lambda s: s.image_id), summary


def pseudo_label_pairs(settings: dict, data_root: Path, excluded_ids: set[str]) -> tuple[list[SegmentationSample], dict]:
    """The pairs that the configuration's ``data.pseudo_labels`` names (:func:`load_pseudo_labels`).

    Parameters
    ----------
    settings : ``{"table": results.csv path, "drop_fraction": float in [0, 1), "allowed_ids": metadata CSV path
        relative to ``data_root``}``; all three are required, so that no run trains on an unchecked table.
    data_root : the data folder (``data.root``).
    excluded_ids : the ISIC 2018 split's ids.

    Returns
    -------
    As :func:`load_pseudo_labels`, the summary with ``allowed_ids`` (the metadata file) and its sha256 added.

    Raises
    ------
    ConfigError
        If ``settings`` is not a mapping of those three keys, a path is not a non-empty string, or
        ``drop_fraction`` is not a number in [0, 1).
    DatasetError
        As :func:`load_pseudo_labels` and :func:`read_allowed_ids`.
    """
    keys = {"table", "drop_fraction", "allowed_ids"}
    if not isinstance(settings, dict) or set(settings) != keys:
        raise ConfigError(f"data.pseudo_labels must be a mapping of {', '.join(sorted(keys))}; got {settings!r}")
    for key in ("table", "allowed_ids"):
        if not isinstance(settings[key], str) or not settings[key]:
            raise ConfigError(f"data.pseudo_labels.{key} must be a file path, got {settings[key]!r}")
    fraction = settings["drop_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ConfigError(f"data.pseudo_labels.drop_fraction must be a number in [0, 1), got {fraction!r}")
    allowed_file = data_root / settings["allowed_ids"]
    samples, summary = load_pseudo_labels(settings["table"], excluded_ids, float(fraction), read_allowed_ids(allowed_file))
    return samples, {**summary, "allowed_ids": str(allowed_file), "allowed_ids_sha256": file_sha256(allowed_file)}
