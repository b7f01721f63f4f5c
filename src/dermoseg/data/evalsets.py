"""The named evaluation sets: which samples ``isic2018_val``, ``isic2018_train`` and ``ph2`` are (segmentation,
:data:`EVAL_SETS`), and which labelled images ``ham10000_val``, ``isic2018_task1`` and ``ph2`` are (diagnosis,
:data:`DIAGNOSIS_SETS`).

One registry for ``dermoseg evaluate --dataset``, ``dermoseg evaluate-diagnosis``, the sweeps and the report.
ISIC 2018 uses the committed split (:data:`dermoseg.data.splits.ISIC_SPLIT`), HAM10000 its own
(:data:`dermoseg.data.splits.HAM_SPLIT`); PH2 (Mendonça et al. 2013) is an external test set and is never split.
The diagnosis sets whose role is "external test" are never trained on and never used to choose anything (an
epoch, a temperature, a threshold): the classifier only learns from HAM10000 and chooses on its validation split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dermoseg.data.datasets import (HAM_CLASSES, SegmentationSample, load_ham10000, load_isic2018_diagnosis,
                                    load_isic2018_task1, load_ph2, load_ph2_diagnosis)
from dermoseg.data.splits import HAM_SPLIT, ISIC_SPLIT, read_split, select
from dermoseg.errors import EvaluationError

# set name -> (dataset, part of its split)
EVAL_SETS = {"isic2018_val": ("isic2018", "val"), "isic2018_train": ("isic2018", "train"), "ph2": ("ph2", "all")}
# diagnosis set name -> (role, description)
DIAGNOSIS_SETS = {
    "ham10000_val": ("validation", "HAM10000 validation split (splits/ham10000.csv): 897 images, 7 classes; chooses "
                     "the epoch, the temperature and the out-of-distribution threshold"),
    "ham10000_train": ("training", "HAM10000 training split (splits/ham10000.csv): 5087 images, 7 classes"),
    "ham10000_all": ("training", "all 5984 HAM10000 images (training and validation splits)"),
    "isic2018_task1": ("external test", "ISIC 2018 Task 1 images whose diagnosis is known (metadata.csv): 478 "
                       "nevi, 131 melanomas (copies resized to 512x512)"),
    "ph2": ("external test", "PH2, all 200 images: 40 melanomas, 80 atypical and 80 common nevi (767x576)"),
}
PH2_GROUPS = {0: "common nevus", 1: "atypical nevus", 2: "melanoma"}


@dataclass(frozen=True)
class DiagnosisSample:
    """One labelled image of a diagnosis set: ``label`` indexes :data:`HAM_CLASSES` (PH2 melanoma → MEL, nevus →
    NV); ``group`` is the finest truth the set has (the class name, HAM10000's nevi by how they were confirmed, or
    PH2's common/atypical nevus, melanoma)."""

    image_id: str
    image_path: Path
    label: int
    group: str


def ham_group(label: int, dx_type: str) -> str:
    """The finest truth of a HAM10000 image: its class name, and for a nevus how the diagnosis was confirmed
    (``"NV (histo)"``, ``"NV (follow_up)"``, ...; Tschandl et al., Sci. Data 5, 180161, 2018), so that melanoma vs
    nevus is also scored against the excised nevi alone. ``label`` indexes :data:`HAM_CLASSES`."""
    name = HAM_CLASSES[label]
    return f"{name} ({dx_type})" if name == "NV" and dx_type else name


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


def diagnosis_samples(name: str, data_root: str | Path) -> list[DiagnosisSample]:
    """Labelled samples of a diagnosis set of :data:`DIAGNOSIS_SETS`, sorted by image id.

    Parameters
    ----------
    name : ``ham10000_val``, ``ham10000_train``, ``ham10000_all``, ``isic2018_task1`` or ``ph2``.
    data_root : the folder holding ``ham10000/``, ``isic2018_task1/`` and ``ph2/``.

    Raises
    ------
    EvaluationError
        For an unknown set name; the loaders' DatasetError / SplitError name a missing file.
    """
    root = Path(data_root)
    if name.startswith("ham10000_") and name in DIAGNOSIS_SETS:
        ham = select(load_ham10000(root / "ham10000"), read_split(HAM_SPLIT), name.removeprefix("ham10000_"))
        return [DiagnosisSample(s.image_id, s.image_path, s.label, ham_group(s.label, s.dx_type)) for s in ham]
    if name == "isic2018_task1":
        dx = load_isic2018_diagnosis(root / "isic2018_task1")
        return [DiagnosisSample(s.image_id, s.image_path, HAM_CLASSES.index(dx[s.image_id]), dx[s.image_id])
                for s in load_isic2018_task1(root / "isic2018_task1") if s.image_id in dx]
    if name == "ph2":
        codes = load_ph2_diagnosis(root / "ph2")
        return [DiagnosisSample(s.image_id, s.image_path, HAM_CLASSES.index("MEL" if codes[s.image_id] == 2 else "NV"),
                                PH2_GROUPS[codes[s.image_id]]) for s in load_ph2(root / "ph2") if s.image_id in codes]
    raise EvaluationError(f"unknown diagnosis set '{name}' (choose from {', '.join(DIAGNOSIS_SETS)})")
