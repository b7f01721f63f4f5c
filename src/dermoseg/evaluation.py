"""Deprecated: the Python API of dermoseg 0.1 for scoring mask folders, kept for one release (issue 10).

Use :func:`dermoseg.segmentation.evaluate.evaluate_dirs` instead.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


def evaluate_dirs(pred_dir: str | Path, truth_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Deprecated: :func:`dermoseg.segmentation.evaluate.evaluate_dirs` (same arguments and result)."""
    warnings.warn("dermoseg.evaluation.evaluate_dirs is deprecated and goes in the next release; use "
                  "dermoseg.segmentation.evaluate.evaluate_dirs", DeprecationWarning, stacklevel=2)
    from dermoseg.segmentation.evaluate import evaluate_dirs as _evaluate_dirs
    return _evaluate_dirs(pred_dir, truth_dir)
