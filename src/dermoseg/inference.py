"""Deprecated: the Python API of dermoseg 0.1 for segmentation, kept for one release (issue 10).

Use :class:`dermoseg.segmentation.segmenter.Segmenter` instead::

    seg = Segmenter.load()                 # was load_model()
    prob = seg.probability(image)          # was predict_probability(model, image)
    mask = seg.segment(image).mask         # was probability_to_mask(predict_probability(model, image))
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from dermoseg.segmentation import segmenter as _segmenter


def _warn(old: str, new: str) -> None:
    warnings.warn(f"dermoseg.inference.{old} is deprecated and goes in the next release; use {new}",
                  DeprecationWarning, stacklevel=3)


def load_model(path: str | Path | None = None) -> _segmenter.Segmenter:
    """Deprecated: :meth:`Segmenter.load` (same arguments; returns a Segmenter)."""
    _warn("load_model", "dermoseg.segmentation.segmenter.Segmenter.load")
    return _segmenter.Segmenter.load(path)


def predict_probability(model: _segmenter.Segmenter, image: np.ndarray, tta: bool | None = None) -> np.ndarray:
    """Deprecated: ``model.probability(image, tta)`` ((H, W, 3) uint8 RGB → (H, W) float32 in [0, 1])."""
    _warn("predict_probability", "Segmenter.probability")
    return model.probability(image, tta)


def probability_to_mask(prob: np.ndarray, threshold: float = 0.5, keep_largest: bool = True) -> np.ndarray:
    """Deprecated: :func:`dermoseg.segmentation.segmenter.probability_to_mask` (same arguments)."""
    _warn("probability_to_mask", "dermoseg.segmentation.segmenter.probability_to_mask")
    return _segmenter.probability_to_mask(prob, threshold, keep_largest)
