"""Fixed train/validation splits, committed as CSV files of ids (``src/dermoseg/splits/``).

Every command that trains or evaluates reads the same committed split, so that no validation image is ever
seen in training and results are comparable between runs. PH2 is never split: it is an external test set.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from dermoseg.errors import SplitError

SPLIT_DIR = Path(__file__).resolve().parent.parent / "splits"
ISIC_SPLIT = SPLIT_DIR / "isic2018_task1.csv"
HAM_SPLIT = SPLIT_DIR / "ham10000.csv"


def make_random_split(ids: Sequence[str], val_fraction: float = 0.15, seed: int = 2018) -> dict[str, str]:
    """Assign each id to ``"train"`` or ``"val"`` by a seeded permutation.

    Parameters
    ----------
    ids : unique sample ids.
    val_fraction : share of ids in validation, in (0, 1).
    seed : NumPy generator seed; the same ids and seed always give the same split.

    Returns
    -------
    ``{id: "train" | "val"}``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    ordered = sorted(set(ids))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ordered))
    n_val = int(round(val_fraction * len(ordered)))
    val = {ordered[i] for i in order[:n_val]}
    return {i: ("val" if i in val else "train") for i in ordered}


def make_grouped_stratified_split(ids: Sequence[str], groups: Sequence[str], labels: Sequence[int],
                                  val_fraction: float = 0.15, seed: int = 2018) -> dict[str, str]:
    """Split so that all ids of one group (e.g. HAM10000 ``lesion_id``) fall on the same side, and each class
    keeps about ``val_fraction`` of its groups in validation.

    Groups are stratified by the label of their first id (a lesion has one diagnosis).

    Returns
    -------
    ``{id: "train" | "val"}``.
    """
    by_group: dict[str, list[str]] = defaultdict(list)
    group_label: dict[str, int] = {}
    for i, g, y in zip(ids, groups, labels):
        by_group[g].append(i)
        group_label.setdefault(g, int(y))
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    for label in sorted(set(group_label.values())):
        gs = sorted(g for g, y in group_label.items() if y == label)
        perm = rng.permutation(len(gs))
        n_val = int(round(val_fraction * len(gs)))
        for rank, idx in enumerate(perm):
            side = "val" if rank < n_val else "train"
            for i in by_group[gs[idx]]:
                out[i] = side
    return out


def read_split(path: str | Path) -> dict[str, str]:
    """Read a split CSV (``image_id,split`` rows, split ``train`` or ``val``; the committed ones are in
    :data:`SPLIT_DIR`).

    Returns
    -------
    ``{image_id: "train" | "val"}``.

    Raises
    ------
    SplitError
        If the file is missing or a row is not ``id,train|val``.
    """
    path = Path(path)
    if not path.is_file():
        raise SplitError(f"{path}: split file not found")
    out = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for n, row in enumerate(csv.DictReader(fh), start=2):
            if row.get("split") not in ("train", "val") or not row.get("image_id"):
                raise SplitError(f"{path}:{n}: expected 'image_id,train|val', got {row}")
            out[row["image_id"]] = row["split"]
    return out


def select(samples: Iterable, split: dict[str, str], part: str) -> list:
    """Keep the samples whose ``image_id`` is in ``part`` ("train", "val" or "all") of ``split``.

    Raises
    ------
    SplitError
        If ``part`` is unknown, or a split id has no sample (the data and the split disagree).
    """
    samples = list(samples)
    if part == "all":
        return samples
    if part not in ("train", "val"):
        raise SplitError(f"unknown split part '{part}' (use train, val or all)")
    have = {s.image_id for s in samples}
    missing = [i for i, s in split.items() if s == part and i not in have]
    if missing:
        raise SplitError(f"{len(missing)} ids of the '{part}' split have no image, e.g. {missing[:3]}")
    return [s for s in samples if split.get(s.image_id) == part]
