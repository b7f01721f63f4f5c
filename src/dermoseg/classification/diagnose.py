"""Diagnosis of image files: calibrated class probabilities in the ISIC 2018 Task 3 submission format.

``dermoseg diagnose INPUT... --out DIR`` writes ``DIR/predictions.csv`` with the header
``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` and one row per input file (its stem, made unique as in ``segment``),
each row a probability vector summing to 1 — the format ``isic-challenge-scoring classification`` reads
(Codella et al. 2019, arXiv:1902.03368, Task 3). The scorer refuses comment lines and extra columns, so the
research-tool disclaimer goes to standard output and to ``DIR/README.txt``, never into the CSV.

Data flow: file → :func:`dermoseg.io.read_image` → (optional lesion mask from the segmentation model, for a
classifier trained with ``mask_mode`` crop/channel) → :func:`prepare_image` → network (flip TTA) → logits / T
(temperature fitted on the validation split) → softmax.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from dermoseg.batch import BatchReport, run_batch
from dermoseg.classification import DISCLAIMER
from dermoseg.classification.calibration import probabilities
from dermoseg.classification.model import FORMAT, build_classifier, input_tensor, predict_logits, prepare_image
from dermoseg.data.datasets import HAM_CLASSES
from dermoseg.io import file_sha256, write_text

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_CLASSIFIER = WEIGHTS_DIR / "classifier.pt"
CSV_DECIMALS = 8


@dataclass
class Classifier:
    """A loaded classifier with what it needs to be applied: input size, mask use, flip TTA and temperature."""

    network: torch.nn.Module
    image_size: int
    mask_mode: str
    crop_margin: float
    temperature: float
    tta: bool
    path: Path
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        """sha256 of the model file (hex)."""
        return file_sha256(self.path)


def load_classifier(path: str | Path | None = None) -> Classifier:
    """Load a classifier file written by :func:`dermoseg.classification.training.export_classifier`.

    Parameters
    ----------
    path : ``.pt`` file, or None for the shipped ``dermoseg/weights/classifier.pt``.

    Returns
    -------
    A :class:`Classifier`, network in eval mode on CPU with float32 weights (float16 storage is converted).

    Raises
    ------
    dermoseg.inference.ModelFileError
        If the file is missing, unreadable, or not a dermoseg classifier.
    """
    from dermoseg.inference import ModelFileError
    path = Path(path) if path is not None else DEFAULT_CLASSIFIER
    if not path.is_file():
        raise ModelFileError(f"{path}: classifier file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many kinds on a corrupt file
        raise ModelFileError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a dermoseg classifier (no '{FORMAT}' format tag)")
    cfg = payload["config"]
    if list(cfg.get("classes", HAM_CLASSES)) != list(HAM_CLASSES):
        raise ModelFileError(f"{path}: classes {cfg.get('classes')} differ from {list(HAM_CLASSES)}")
    network = build_classifier(cfg["model"], pretrained=False)
    network.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in payload["state_dict"].items()})
    network.eval().to(memory_format=torch.channels_last)
    return Classifier(network, int(cfg["image_size"]), cfg["model"].get("mask_mode", "none"),
                      float(cfg["model"].get("crop_margin", 0.2)), float(payload.get("temperature", 1.0)),
                      bool(cfg.get("tta", True)), path, dict(payload.get("info", {})))


def classifier_logits(model: Classifier, images: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None = None,
                      batch_size: int = 32) -> np.ndarray:
    """Uncalibrated logits of a list of images.

    Parameters
    ----------
    model : a loaded :class:`Classifier`.
    images : (H, W, 3) uint8 RGB arrays of any sizes.
    masks : matching (H, W) bool lesion masks; required when ``model.mask_mode`` is "crop" or "channel".
    batch_size : images per forward pass.

    Returns
    -------
    (N, 7) float64 logits in :data:`HAM_CLASSES` order (divide by ``model.temperature`` and softmax for
    calibrated probabilities; see :func:`classify`).

    Raises
    ------
    ValueError
        If an image is not (H, W, 3) uint8, or masks are needed and missing.
    """
    if model.mask_mode != "none" and masks is None:
        raise ValueError(f"this classifier uses the lesion mask (mask_mode '{model.mask_mode}'): give masks")
    out = []
    for i in range(0, len(images), batch_size):
        chunk = range(i, min(len(images), i + batch_size))
        batch = torch.stack([input_tensor(prepare_image(images[j], model.image_size, None if masks is None else masks[j],
                                                        model.mask_mode, model.crop_margin)) for j in chunk])
        out.append(predict_logits(model.network, batch, model.tta).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(HAM_CLASSES)))


def classify(model: Classifier, images: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Calibrated class probabilities, softmax(logits / T).

    Returns
    -------
    (N, 7) float64 in [0, 1], rows summing to 1, columns in :data:`HAM_CLASSES` order (MEL, NV, BCC, AKIEC, BKL,
    DF, VASC). Research tool, not a medical device.
    """
    return probabilities(classifier_logits(model, images, masks), model.temperature)


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
                   progress: bool = True) -> BatchReport:
    """Classify every image found in ``inputs``; write ``predictions.csv``, ``README.txt`` and failures.

    Parameters
    ----------
    inputs : files, folders (searched recursively) and glob patterns.
    out_dir : output folder (created).
    model : a loaded :class:`Classifier`.
    segmenter : a :class:`dermoseg.inference.SegmentationModel`, needed when the classifier uses the lesion mask.
    progress : progress bar on stderr.

    Returns
    -------
    A :class:`dermoseg.batch.BatchReport` whose rows hold ``image`` and the seven probabilities; unreadable
    files are in ``failures`` (also printed to stderr and written to ``failures.csv``); ``exit_code`` is 1 if any
    input failed.

    Raises
    ------
    ValueError
        If the classifier needs masks and no ``segmenter`` is given.
    """
    if model.mask_mode != "none" and segmenter is None:
        raise ValueError(f"the classifier uses the lesion mask (mask_mode '{model.mask_mode}'): give a segmentation model")
    out_dir = Path(out_dir)

    def process(path: Path, stem: str, image: np.ndarray) -> dict[str, Any]:
        masks = None
        if model.mask_mode != "none":
            from dermoseg.inference import predict_probability, probability_to_mask
            masks = [probability_to_mask(predict_probability(segmenter, image))]
        p = classify(model, [image], masks)[0]
        return {"image": stem, **{c: float(v) for c, v in zip(HAM_CLASSES, p)}}

    report = run_batch(inputs, out_dir, process, desc="diagnose", progress=progress)
    probs = np.array([[r[c] for c in HAM_CLASSES] for r in report.rows], dtype=np.float64).reshape(-1, len(HAM_CLASSES))
    write_text(out_dir / "predictions.csv", predictions_csv([r["image"] for r in report.rows], probs))
    write_text(out_dir / "README.txt", readme_text(model))
    return report


def segment_columns(classifier: Classifier | None = None, mm_per_pixel: float | None = None,
                    measure: bool = True) -> Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, Any]]:
    """The ``extra_columns`` function that ``dermoseg segment`` passes to :func:`dermoseg.segment.segment_files`.

    Parameters
    ----------
    classifier : add the diagnosis columns when given: ``diagnosis_note`` (the research-tool disclaimer, in
        every row), ``top_class`` and ``p_MEL`` … ``p_VASC`` (calibrated probabilities).
    mm_per_pixel : pixel size in mm for ``diameter_mm`` (None: left empty).
    measure : add the lesion measurements of :func:`dermoseg.measure.measure_lesion`.

    Returns
    -------
    ``f(image (H, W, 3) uint8, mask (H, W) bool, prob (H, W) float32) -> dict`` of column values.

    Raises
    ------
    ValueError
        If ``mm_per_pixel`` is given and not > 0.
    """
    from dermoseg.measure import measure_lesion
    if mm_per_pixel is not None and not mm_per_pixel > 0:
        raise ValueError(f"mm_per_pixel must be > 0, got {mm_per_pixel}")

    def columns(image: np.ndarray, mask: np.ndarray, prob: np.ndarray) -> dict[str, Any]:
        """Measurement and diagnosis columns of one segmented image (``prob`` is unused)."""
        row: dict[str, Any] = {}
        if measure:
            row.update(measure_lesion(image, mask, mm_per_pixel))
        if classifier is not None:
            p = classify(classifier, [image], [mask] if classifier.mask_mode != "none" else None)[0]
            row["diagnosis_note"] = "research tool, not a medical device"
            row["top_class"] = HAM_CLASSES[int(np.argmax(p))]
            row.update({f"p_{c}": float(v) for c, v in zip(HAM_CLASSES, p)})
        return row

    return columns
