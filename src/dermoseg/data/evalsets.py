"""The named evaluation sets: which samples ``isic2018_val``, ``isic2018_train`` and ``ph2`` are.

One registry for ``dermoseg evaluate --dataset``, the sweeps and the report. ISIC 2018 uses the committed split
(:data:`dermoseg.data.splits.ISIC_SPLIT`); PH2 (Mendonça et al. 2013) is an external test set and is never split.
"""

from __future__ import annotations

from pathlib import Path

from dermoseg.data.datasets import SegmentationSample, load_isic2018_task1, load_ph2
from dermoseg.data.splits import ISIC_SPLIT, read_split, select
from dermoseg.errors import EvaluationError

# set name -> (dataset, part of its split)
EVAL_SETS = {"isic2018_val": ("isic2018", "val"), "isic2018_train": ("isic2018", "train"), "ph2": ("ph2", "all")}


def dataset_samples(dataset: str, data_root: str | Path, split: str = "val",
                    subset: list[str] | None = None) -> list[SegmentationSample]:
    """Samples of a dataset part.

    Parameters
    ----------
    dataset : ``isic2018`` (with ``split`` train/val/all of the committed split) or ``ph2`` (all 200).
    data_root : the folder holding ``isic2018_task1/`` and ``ph2/`` (default :data:`dermoseg.config.DATA_ROOT`).
    subset : keep only these ids, in this order.

    Raises
    ------
    EvaluationError
        For an unknown dataset or a subset id that is not in the set; the loaders' DatasetError / SplitError
        name a missing file.
    """
    root = Path(data_root)
    if dataset == "isic2018":
        samples = select(load_isic2018_task1(root / "isic2018_task1"), read_split(ISIC_SPLIT), split)
    elif dataset == "ph2":
        samples = load_ph2(root / "ph2")
    else:
        raise EvaluationError(f"unknown dataset '{dataset}' (use isic2018 or ph2)")
    if subset is None:
        return samples
    by_id = {s.image_id: s for s in samples}
    unknown = [i for i in subset if i not in by_id]
    if unknown:
        part = f" {split}" if dataset == "isic2018" else ""
        raise EvaluationError(f"subset id '{unknown[0]}' is not in {dataset}{part} ({len(unknown)} unknown)")
    return [by_id[i] for i in subset]


def eval_set_samples(name: str, data_root: str | Path) -> list[SegmentationSample]:
    """Samples of a named set of :data:`EVAL_SETS`.

    Raises
    ------
    EvaluationError
        For an unknown set name.
    """
    if name not in EVAL_SETS:
        raise EvaluationError(f"unknown evaluation set '{name}' (choose from {', '.join(EVAL_SETS)})")
    dataset, split = EVAL_SETS[name]
    return dataset_samples(dataset, data_root, split)
