"""Out-of-distribution honesty: is an input unlike what the classifier was trained on?

The measure is the Shannon entropy (nats) of the calibrated class probabilities, softmax(logits / T): a network
that has not seen inputs like this one tends to spread its probability over several classes (Hendrycks & Gimpel,
"A Baseline for Detecting Misclassified and Out-of-Distribution Examples in Neural Networks", ICLR 2017, who use
the maximum softmax probability; the entropy is the same idea over all seven classes). It needs only the logits,
so it works with every engine behind :attr:`dermoseg.classification.classifier.Classifier.runner` (the ONNX
export returns logits only; a distance on the encoder's pooled features, e.g. Mahalanobis, would need a second
output of every runner).

The threshold is a percentile of the entropies on the HAM10000 validation split (:data:`PERCENTILE`: 5% of
in-distribution validation images are flagged by construction). It is stored with the model in a sidecar file
``X.ood.json`` beside ``X.pt`` (:func:`sidecar_path`) that records the ``.pt``'s sha256; :func:`load_check`
refuses a sidecar made for another file. The ``.pt`` itself is never rewritten (its ONNX export records its
sha256).

Research tool, not a medical device: a flag says the probabilities are less trustworthy, not that they are wrong,
and no flag does not make them right.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermoseg import metrics as cm
from dermoseg.classification import HAM_CLASSES
from dermoseg.classification.calibration import probabilities
from dermoseg.errors import ModelFileError
from dermoseg.io import file_sha256, write_text

SIDECAR_FORMAT = "dermoseg-classifier-ood-1"
PERCENTILE = 95.0   # of the validation entropies; the flag threshold
SCORE = "entropy of softmax(logits / T), nats"


def sidecar_path(model_path: str | Path) -> Path:
    """``X.ood.json`` beside the classifier file ``X.pt``."""
    return Path(model_path).with_suffix(".ood.json")


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy −Σ p log p in nats of each row of (N, K) probabilities: (N,) float64 in [0, log K]
    (0: all mass on one class; log 7 = 1.946: uniform over the seven classes)."""
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=-1)


@dataclass(frozen=True)
class OodCheck:
    """The out-of-distribution flag of one classifier file.

    Attributes
    ----------
    threshold : entropy (nats) above which an input is flagged.
    temperature : the T the entropies are computed with (the classifier's).
    percentile : which percentile of the validation entropies ``threshold`` is.
    model_sha256 : sha256 of the classifier file it belongs to.
    fitted_on : what the threshold was chosen on (e.g. "HAM10000 val split, 897 images").
    """

    threshold: float
    temperature: float
    percentile: float
    model_sha256: str
    fitted_on: str

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """(N, 7) logits → (N,) float64 entropies of the calibrated probabilities (nats)."""
        return entropy(probabilities(logits, self.temperature))

    def flags(self, logits: np.ndarray) -> np.ndarray:
        """(N, 7) logits → (N,) bool, True where the entropy exceeds :attr:`threshold`."""
        return self.scores(logits) > self.threshold

    def warning(self, logits: np.ndarray) -> str:
        """The ``warning`` text for one image's (7,) or (1, 7) logits, or "" when it is not flagged."""
        h = float(self.scores(np.atleast_2d(logits))[0])
        if h <= self.threshold:
            return ""
        # as many decimals as it takes for the two figures to differ (1.343 and 1.344 both read 1.34)
        d = next((d for d in range(2, 9) if f"{h:.{d}f}" != f"{self.threshold:.{d}f}"), 9)
        return (f"unlike the training images: prediction entropy {h:.{d}f} nats is above {self.threshold:.{d}f}, the "
                f"{self.percentile:g}th percentile on the {self.fitted_on}; the probabilities are unreliable")


def fit_check(val_logits: np.ndarray, temperature: float, model_sha256: str, fitted_on: str,
              percentile: float = PERCENTILE) -> OodCheck:
    """The flag whose threshold is the ``percentile``-th percentile (linear interpolation) of the validation
    entropies.

    Parameters
    ----------
    val_logits : (N, 7) logits of the validation split (N ≥ 1); temperature : the classifier's T > 0.
    model_sha256 : sha256 of the classifier file; fitted_on : a description of the validation images.
    percentile : in (0, 100).

    Raises
    ------
    ValueError
        On empty or mis-shaped logits, or a percentile outside (0, 100).
    """
    val_logits = np.asarray(val_logits, dtype=np.float64)
    if val_logits.ndim != 2 or val_logits.shape[0] == 0 or val_logits.shape[1] != len(HAM_CLASSES):
        raise ValueError(f"expected (N, {len(HAM_CLASSES)}) validation logits with N >= 1, got {val_logits.shape}")
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    h = entropy(probabilities(val_logits, temperature))
    return OodCheck(float(np.percentile(h, percentile)), float(temperature), float(percentile), model_sha256,
                    fitted_on)


def write_sidecar(model_path: str | Path, check: OodCheck) -> Path:
    """Write ``check`` to :func:`sidecar_path` of ``model_path`` (atomically; the model file is not touched).

    Raises
    ------
    ModelFileError
        If ``check`` was made for another file (its sha256 differs from the file's).
    """
    model_path = Path(model_path)
    if file_sha256(model_path) != check.model_sha256:
        raise ModelFileError(f"{model_path}: the out-of-distribution threshold was fitted for another file")
    record = {"format": SIDECAR_FORMAT, "model_file": model_path.name, "model_sha256": check.model_sha256,
              "score": SCORE, "temperature": check.temperature, "percentile": check.percentile,
              "threshold": check.threshold, "fitted_on": check.fitted_on}
    return write_text(sidecar_path(model_path), json.dumps(record, indent=2) + "\n")


def load_check(model_path: str | Path) -> OodCheck | None:
    """The flag stored beside a classifier file, or None when it has no sidecar (then nothing is flagged).

    Raises
    ------
    ModelFileError
        If the sidecar is unreadable, not a dermoseg OOD sidecar, or records another file's sha256 (the model
        file changed since the threshold was fitted: refit it, e.g. ``experiments/fit_ood_threshold.py``).
    """
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        ok = record.get("format") == SIDECAR_FORMAT
        check = OodCheck(float(record["threshold"]), float(record["temperature"]), float(record["percentile"]),
                         str(record["model_sha256"]), str(record["fitted_on"])) if ok else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"{path}: unreadable out-of-distribution sidecar ({exc})") from None
    if check is None:
        raise ModelFileError(f"{path}: not a dermoseg out-of-distribution sidecar (format {record.get('format')!r})")
    if check.model_sha256 != file_sha256(model_path):
        raise ModelFileError(f"{path}: made for another classifier file (sha256 {check.model_sha256[:12]}…, "
                             f"{Path(model_path).name} is {file_sha256(model_path)[:12]}…); refit the threshold")
    return check


def flag_effect(labels: np.ndarray, probs: np.ndarray, flagged: np.ndarray) -> dict[str, Any]:
    """How the classifier does on flagged vs unflagged images of a labelled set.

    Parameters
    ----------
    labels : (N,) int true classes (indices into :data:`HAM_CLASSES`).
    probs : (N, 7) calibrated probabilities.
    flagged : (N,) bool.

    Returns
    -------
    ``{"flagged": {...}, "unflagged": {...}}``, each with ``images``, ``accuracy`` (7-class arg-max equals the
    truth), ``melanoma`` (count) and ``melanoma_auc`` (MEL vs the rest on P(MEL); None when a group lacks
    melanomas or non-melanomas, or is empty), and ``share_flagged`` (of all N).
    """
    labels, probs, flagged = np.asarray(labels), np.asarray(probs, dtype=np.float64), np.asarray(flagged, dtype=bool)
    pred, mel = cm.predicted_labels(probs), HAM_CLASSES.index("MEL")
    out: dict[str, Any] = {"share_flagged": float(flagged.mean()) if len(flagged) else 0.0}
    for name, sel in (("flagged", flagged), ("unflagged", ~flagged)):
        positive = labels[sel] == mel
        out[name] = {"images": int(sel.sum()),
                     "accuracy": float(np.mean(pred[sel] == labels[sel])) if sel.any() else None,
                     "melanoma": int(positive.sum()),
                     "melanoma_auc": cm.binary_auc(positive, probs[sel, mel]) if 0 < positive.sum() < sel.sum() else None}
    return out
