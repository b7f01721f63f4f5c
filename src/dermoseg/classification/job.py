"""Diagnosis of image files: calibrated class probabilities in the ISIC 2018 Task 3 submission format.

``dermoseg diagnose INPUT... --out DIR`` writes ``DIR/predictions.csv`` with the header
``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` and one row per input file (its stem, made unique as in ``segment``),
each row a probability vector summing to 1 — the format ``isic-challenge-scoring classification`` reads
(Codella et al. 2019, arXiv:1902.03368, Task 3). The scorer refuses comment lines and extra columns, so the
research-tool disclaimer goes to standard output and to ``DIR/README.txt``, never into the CSV, and the source
file of each image id is in a second table, ``DIR/image_sources.csv`` (``image,file,warning``). Rows are
appended as images finish; ``run.json`` records the classifier file and its sha256. The ``warning`` (also on
standard error) names tiny, blank and grayscale inputs (:func:`dermoseg.inputs.image_warning`) and inputs unlike
the training images by the prediction entropy (:mod:`dermoseg.classification.ood`).

Data flow: file → :func:`dermoseg.io.read_image` → (for a classifier trained with ``mask_mode`` crop/channel,
the lesion mask of :meth:`dermoseg.segmentation.segmenter.Segmenter.segment`) →
:meth:`~dermoseg.classification.classifier.Classifier.prepare` → :meth:`~dermoseg.classification.classifier.Classifier.batch_logits`
(the network, in its own pipeline stage) → :meth:`~dermoseg.classification.classifier.Classifier.calibrated` and the
entropy flag → row; the same computation as :meth:`~dermoseg.classification.classifier.Classifier.predict`.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dermoseg import provenance
from dermoseg.batch import BatchReport, Stages, run_batch
from dermoseg.classification import DISCLAIMER, HAM_CLASSES
from dermoseg.classification.classifier import Classifier
from dermoseg.inputs import image_warning
from dermoseg.io import write_text
from dermoseg.tables import CsvTable

CSV_DECIMALS = 8
SOURCES_NAME = "image_sources.csv"


def _row_strings(p: np.ndarray) -> list[str]:
    """Probabilities as fixed-point strings whose decimal values sum to exactly 1 (the largest one absorbs
    the rounding)."""
    q = Decimal(1).scaleb(-CSV_DECIMALS)
    vals = [Decimal(float(v)).quantize(q, rounding=ROUND_HALF_EVEN) for v in p]
    top = int(np.argmax(p))
    vals[top] = Decimal(1) - sum(v for k, v in enumerate(vals) if k != top)
    return [f"{v:.{CSV_DECIMALS}f}" for v in vals]


def predictions_csv(image_ids: Sequence[str], probs: np.ndarray) -> str:
    """Format probabilities as an ISIC 2018 Task 3 submission.

    Parameters
    ----------
    image_ids : N unique ids (the file stems, e.g. ``ISIC_0024306``).
    probs : (N, 7) probabilities in :data:`HAM_CLASSES` order, rows summing to 1 (within 1e-6).

    Returns
    -------
    CSV text: header ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` then one row per id, 8 decimals, each row summing to
    exactly 1. No comment line (the official scorer would reject it).

    Raises
    ------
    ValueError
        On duplicate ids, a shape mismatch, or rows that are not probability vectors.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (len(image_ids), len(HAM_CLASSES)):
        raise ValueError(f"expected ({len(image_ids)}, {len(HAM_CLASSES)}) probabilities, got {probs.shape}")
    if len(set(image_ids)) != len(image_ids):
        raise ValueError("duplicate image ids")
    if probs.size and ((probs < 0).any() or (probs > 1).any() or np.abs(probs.sum(1) - 1).max() > 1e-6):
        raise ValueError("each row must be probabilities in [0, 1] summing to 1")
    lines = ["image," + ",".join(HAM_CLASSES)]
    lines += [f"{i}," + ",".join(_row_strings(p)) for i, p in zip(image_ids, probs)]
    return "\n".join(lines) + "\n"


def readme_text(model: Classifier) -> str:
    """The ``README.txt`` written next to ``predictions.csv``: disclaimer, column meaning, model provenance."""
    return (f"{DISCLAIMER}\n\n"
            "predictions.csv is in the ISIC 2018 Task 3 submission format: one row per input file (column 'image' = "
            "the file stem), columns MEL (melanoma), NV (melanocytic nevus), BCC (basal cell carcinoma), AKIEC "
            "(actinic keratosis / Bowen's disease), BKL (benign keratosis), DF (dermatofibroma), VASC (vascular "
            "lesion); each row sums to 1. Probabilities are calibrated by temperature scaling on the HAM10000 "
            "validation split; they describe HAM10000-like dermoscopic images and may be wrong elsewhere.\n"
            f"Classifier: {model.path} (sha256 {model.sha256}), temperature {model.temperature:.4f}, "
            f"flip TTA {'on' if model.tta else 'off'}.\n"
            "Score against a ground truth with: isic-challenge-scoring classification TRUTH.csv predictions.csv\n")


def diagnose_files(inputs: Sequence[str], out_dir: str | Path, model: Classifier, segmenter=None,
                   progress: bool = True, resume: bool = False) -> BatchReport:
    """Classify every image found in ``inputs``; write ``predictions.csv``, ``image_sources.csv``, ``README.txt``.

    Parameters
    ----------
    inputs : files, folders (searched recursively) and glob patterns.
    out_dir : output folder (created).
    model : a loaded :class:`Classifier`.
    segmenter : a :class:`dermoseg.segmentation.segmenter.Segmenter`, needed when the classifier uses the lesion mask.
    progress : progress bar on stderr.
    resume : keep the rows of an earlier run into ``out_dir`` and skip the images already done.

    Returns
    -------
    A :class:`dermoseg.batch.BatchReport` whose rows hold ``image``, ``file``, ``warning`` and the seven
    probabilities, appended to ``predictions.csv`` (ISIC format) and ``image_sources.csv`` as each image is
    done; tiny, blank and grayscale inputs, and inputs the model's out-of-distribution flag marks
    (:attr:`Classifier.ood <dermoseg.classification.classifier.Classifier.ood>`), are classified but warned about
    (:func:`dermoseg.inputs.image_warning`, :meth:`dermoseg.classification.ood.OodCheck.warning`); unreadable
    files are in ``failures`` (also printed to stderr and written to ``failures.csv``); ``exit_code`` is 1 if any
    input failed.

    Raises
    ------
    ValueError
        If the classifier needs masks and no ``segmenter`` is given.
    dermoseg.errors.ModelFileError
        If the model's out-of-distribution sidecar is unreadable or made for another model file.
    """
    if model.uses_mask and segmenter is None:
        raise ValueError(f"the classifier uses the lesion mask (mask_mode '{model.mask_mode}'): give a segmentation model")
    out_dir = Path(out_dir)
    ood = model.ood  # a threshold made for another model file is refused here, before any image

    def prepare(image: np.ndarray) -> np.ndarray:
        return model.prepare(image, segmenter.segment(image).mask if model.uses_mask else None)[None]

    def finish(path: Path, stem: str, image: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
        p = model.calibrated(logits)[0]
        warnings = (image_warning(image), ood.warning(logits) if ood else "")
        return {"image": stem, "file": str(path), "warning": "; ".join(w for w in warnings if w),
                **{c: float(v) for c, v in zip(HAM_CLASSES, p)}}

    def isic_row(row: dict[str, Any]) -> dict[str, str]:
        return {"image": row["image"], **dict(zip(HAM_CLASSES, _row_strings(np.array([row[c] for c in HAM_CLASSES]))))}

    tables = [CsvTable(out_dir / "predictions.csv", ["image", *HAM_CLASSES], key="image", extra=False,
                       format_row=isic_row),
              CsvTable(out_dir / SOURCES_NAME, ["image", "file", "warning"], key="image", extra=False)]
    models = [provenance.model_record("classifier", model.path, model.runner)]
    if segmenter is not None:
        models.append(provenance.model_record("segmentation", segmenter.path, segmenter.runner))
    report = run_batch(inputs, out_dir, Stages(prepare, model.batch_logits, finish), desc="diagnose", progress=progress, tables=tables, resume=resume,
                       settings={"temperature": model.temperature, "tta": model.tta, "mask_mode": model.mask_mode,
                                 "image_size": model.image_size}, models=models,
                       extra_outputs=[out_dir / "README.txt"])
    if report.found != 0:  # the search found no image: nothing is written
        write_text(out_dir / "README.txt", readme_text(model))
    return report
