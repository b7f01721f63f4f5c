"""Combine trained classifier files into one ensemble classifier file (``dermoseg combine-classifiers``).

The ensemble network (:class:`dermoseg.models.ensemble.ClassifierEnsemble`) averages the members' calibrated
probabilities; its file is an ordinary classifier file, so ``diagnose``, ``evaluate-diagnosis``, ``export`` (ONNX),
``serve`` and the out-of-distribution flag work on it unchanged. It gets its own temperature and OOD threshold,
fitted on the HAM10000 validation split like a trained classifier's
(:func:`dermoseg.classification.task.write_calibrated`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from dermoseg import modelfile
from dermoseg.classification import HAM_CLASSES
from dermoseg.classification.classifier import recorded_normalisation
from dermoseg.classification.task import CachedClassificationDataset, write_calibrated
from dermoseg.data.datasets import load_ham10000
from dermoseg.data.splits import HAM_SPLIT, read_split, select
from dermoseg.errors import ModelFileError
from dermoseg.models.classifier import build_classifier
from dermoseg.models.ensemble import takes_plain_rgb
from dermoseg.training import git_commit

__all__ = ["combine_classifiers", "ensemble_config", "extract_member"]

# The ensemble's own input: RGB in [0, 1]; each member normalises it inside the network.
UNIT_NORMALISATION = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


def ensemble_config(members: Sequence[str | Path]) -> tuple[dict, dict, list[dict]]:
    """The ensemble file's ``config``, its state dict and the members' provenance, from member classifier files.

    Parameters
    ----------
    members : two or more single-network classifier files (``.pt``). The shipped classifier is itself an ensemble
        (its members' files and sha256 are in its ``info.ensemble_of``), so it cannot be a member.

    Returns
    -------
    ``(config, state_dict, records)``: ``config["model"]`` is ``{"architecture": "ensemble", "members": [...]}``
    (each member's model config, input size, temperature and normalisation), ``config["image_size"]`` the largest
    member size, the input normalisation mean 0 / std 1; the state dict holds the members' weights as stored (keys
    ``members.<i>.…``); ``records`` gives each member's file name, sha256 and ``info``.

    Raises
    ------
    dermoseg.errors.ModelFileError
        Naming the file, for fewer than two members, an unreadable or non-classifier file, other classes, a member
        that is itself an ensemble, uses the lesion mask or Shades of Gray, or turns test-time flips off, or whose
        config lacks a key or does not build a network its weights fit.
    """
    def describe(path: Path, payload: dict) -> dict:
        cfg = payload["config"]
        if list(cfg.get("classes", HAM_CLASSES)) != list(HAM_CLASSES):
            raise ModelFileError(f"{path}: classes {cfg.get('classes')} differ from {list(HAM_CLASSES)}")
        if not takes_plain_rgb(cfg["model"]) or not cfg.get("tta", True):
            raise ModelFileError(f"{path}: an ensemble member must take plain RGB with flip TTA (no lesion mask, no "
                                 "Shades of Gray)")
        mean, std = recorded_normalisation(cfg)
        return {"model": cfg["model"], "image_size": int(cfg["image_size"]),
                "temperature": float(payload.get("temperature", 1.0)),
                "normalisation": {"mean": mean.tolist(), "std": std.tolist()}}

    entries, state, records, _ = modelfile.read_members(members, "classifier", build_classifier, describe)
    config = {"model": {"architecture": "ensemble", "members": entries},
              "image_size": max(e["image_size"] for e in entries), "classes": list(HAM_CLASSES),
              "normalisation": UNIT_NORMALISATION, "tta": True}
    return config, state, records


def combine_classifiers(members: Sequence[str | Path], out: str | Path, data_root: str | Path) -> Path:
    """Write an ensemble classifier file of ``members``, calibrated on the HAM10000 validation split.

    Parameters
    ----------
    members : two or more classifier files (see :func:`ensemble_config`).
    out : output ``.pt`` (with ``.json`` and ``.ood.json`` beside it).
    data_root : the data folder holding ``ham10000/`` (the committed split's validation ids are used; the members
        must have been chosen on that split and trained on the rest, as every classifier here is).

    Returns
    -------
    ``out``. Its ``info`` records the members (file, sha256, their own provenance), the commit, and the validation
    figures of :func:`dermoseg.classification.task.write_calibrated`.

    Raises
    ------
    ValueError
        If ``out`` does not end in ``.pt`` (its ``.json`` and ``.ood.json`` are written beside it).
    FileExistsError
        If ``out`` or one of the files beside it exists (nothing is overwritten), before any work.
    dermoseg.errors.ModelFileError
        For an unusable member (:func:`ensemble_config`).
    dermoseg.data.datasets.DatasetError, dermoseg.data.splits.SplitError
        If the HAM10000 folder or the split is missing or they disagree.
    """
    out = modelfile.refuse_existing_output(out)
    config, state, records = ensemble_config(members)
    samples = select(load_ham10000(Path(data_root) / "ham10000"), read_split(HAM_SPLIT), "val")
    normalisation = tuple(np.asarray(config["normalisation"][k], dtype=np.float32) for k in ("mean", "std"))
    val_set = CachedClassificationDataset(samples, config["image_size"], desc="val set", normalisation=normalisation)
    info = {"ensemble_of": records, "commit": git_commit(), "split": f"splits/{HAM_SPLIT.name}"}
    return write_calibrated(out, config, state, info, val_set)


def extract_member(ensemble: str | Path, index: int, out: str | Path) -> Path:
    """Write member ``index`` (0-based) of the ensemble classifier file ``ensemble`` to ``out`` (``.pt`` + ``.json``):
    the inverse of :func:`ensemble_config` for one member. Its weights, temperature, input size and normalisation
    are the ones it had in the ensemble, its ``info`` its own provenance plus ``member_of`` (file, sha256, index);
    no out-of-distribution sidecar is written (``combine-classifiers`` fits each ensemble's own).

    Raises
    ------
    ModelFileError
        If ``ensemble`` is not an ensemble classifier file or has no member ``index``.
    ValueError, FileExistsError
        If ``out`` does not end in ``.pt``, or it or a file beside it exists (never overwritten):
        :func:`dermoseg.modelfile.refuse_existing_output`.
    """
    return modelfile.extract_member(ensemble, "classifier", index, out, _single_config)


def _single_config(payload: dict, member: dict) -> tuple[dict, dict, dict]:
    """A single classifier's config from its ensemble entry, and its temperature."""
    config = {"model": member["model"], "image_size": member["image_size"], "classes": list(HAM_CLASSES),
              "normalisation": member["normalisation"], "tta": True}
    return config, {}, {"temperature": float(member["temperature"])}
