"""Reading the per-epoch training logs that :func:`dermoseg.training.train` writes (Lightning ``CSVLogger``).

Lightning writes the training and the validation figures of one epoch on separate rows of ``metrics.csv``
(columns ``epoch``, ``step``, ``train_loss``, ``train_dice``, ``train_pixel_accuracy``, ``val_loss``,
``val_dice``, ``val_pixel_accuracy``; empty cells where a row has no value). This module folds them into one
record per epoch.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from dermoseg.errors import DermosegError

LOG_METRICS = ("train_loss", "train_dice", "train_pixel_accuracy", "val_loss", "val_dice", "val_pixel_accuracy")


class LogError(DermosegError, ValueError):
    """A training log is missing or not a Lightning metrics CSV; the message names the file."""


def _number(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def read_epoch_log(path: str | Path) -> list[dict[str, float]]:
    """Per-epoch figures of a training run.

    Parameters
    ----------
    path : a ``metrics.csv`` written by Lightning's ``CSVLogger``.

    Returns
    -------
    One dict per epoch, sorted by epoch: ``epoch`` (int, 1-based: the first epoch is 1) and those of
    :data:`LOG_METRICS` the log has for it (floats; loss in the loss's own units, Dice and pixel accuracy as
    fractions in [0, 1]). When a resumed run logged an epoch twice, the later row wins.

    Raises
    ------
    LogError
        If the file is missing or has no ``epoch`` column.
    """
    path = Path(path)
    if not path.is_file():
        raise LogError(f"{path}: training log not found")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "epoch" not in reader.fieldnames:
            raise LogError(f"{path}: not a Lightning metrics.csv (no 'epoch' column)")
        epochs: dict[int, dict[str, float]] = {}
        for row in reader:
            epoch = _number(row.get("epoch"))
            if epoch is None:
                continue
            record = epochs.setdefault(int(epoch) + 1, {"epoch": int(epoch) + 1})
            for key in LOG_METRICS:
                value = _number(row.get(key))
                if value is not None:
                    record[key] = value
    return [epochs[k] for k in sorted(epochs)]


def best_epoch(records: list[dict[str, float]], key: str = "val_dice") -> dict[str, float] | None:
    """The record with the highest ``key`` (first on ties), or None when no record has it."""
    have = [r for r in records if key in r]
    return max(have, key=lambda r: r[key]) if have else None
