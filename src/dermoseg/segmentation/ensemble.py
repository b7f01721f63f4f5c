"""Combine trained segmentation model files into one ensemble model file (``dermoseg combine-segmenters``), and
write one member back out as a file of its own (:func:`extract_member`).

The ensemble network (:class:`dermoseg.models.ensemble.SegmentationEnsemble`) outputs the logit of the members'
mean lesion probability; its file is an ordinary segmentation model file, so ``segment``, ``evaluate``,
``export`` (ONNX), ``fit-quality`` and ``serve`` work on it unchanged. Its quality sidecar is fitted for it like
for any model (``dermoseg fit-quality --model E.pt``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from dermoseg import modelfile
from dermoseg.errors import ModelFileError
from dermoseg.models import build_model
from dermoseg.models.folding import batch_norm_folded, fold_batch_norm
from dermoseg.preprocess.settings import resolve_settings
from dermoseg.training import git_commit

__all__ = ["combine_segmenters", "extract_member"]


def combine_segmenters(members: Sequence[str | Path], out: str | Path, half: bool = False) -> Path:
    """Write a segmentation ensemble file of ``members`` (their mean lesion probability).

    Parameters
    ----------
    members : two or more single-network segmentation model files (paths or shipped names), with the same input
        size, the same black-frame/hair cleaning settings and the same test-time-augmentation default.
    out : output ``.pt`` (with ``.json`` beside it).
    half : fold batch norm into the convolutions (:func:`dermoseg.models.folding.fold_batch_norm`), then store the
        floating-point weights as float16 (half the file size; they are widened back to float32 when loaded, so
        only the rounding of the weights changes the output; ``info.weights`` says so). Its ONNX export
        (``dermoseg export``) stores the same float16 numbers and is as small.

    Returns
    -------
    ``out``. Its ``config`` holds ``{"architecture": "ensemble", "members": [{"model": ...}, ...]}``, the shared
    input size, cleaning and TTA; its state dict the members' weights (keys ``members.<i>.…``); its ``info`` each
    member's file name, sha256 and own ``info``, and the commit.

    Raises
    ------
    ValueError, FileExistsError
        If ``out`` does not end in ``.pt`` or it, or its ``.json``, exists (never overwritten), before any work.
    dermoseg.errors.ModelFileError
        Naming the file, for fewer than two members, an unreadable or non-segmentation file, a member that is an
        ensemble itself, whose weights do not fit its config (or, with ``half``, exceed the float16 range), or
        whose input size, cleaning or TTA default differs from the first member's.
    """
    out = modelfile.refuse_existing_output(out)
    first: dict = {}

    def describe(path: Path, payload: dict) -> dict:
        cfg = payload["config"]
        cleaning = cfg.get("preprocess") or {"enabled": False}
        shared = {"image_size": int(cfg["image_size"]), "tta": bool(cfg.get("tta", False)),
                  # equivalent cleaning compares equal: off is off, on is compared with defaults filled in
                  "preprocess": resolve_settings(cleaning) if cleaning.get("enabled") else {"enabled": False}}
        if first and shared != first:
            raise ModelFileError(f"{path}: input size, cleaning or TTA default {shared} differs from the first "
                                 f"member's {first}; members must see the same input")
        first.update(shared)
        return {"model": cfg["model"]}

    entries, state, records, networks = modelfile.read_members(members, "segmentation", build_model, describe)
    config = {"model": {"architecture": "ensemble", "members": entries}, **first}
    if half:
        state = _folded_half(networks)
        beyond = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
        if beyond is not None:
            raise ModelFileError(f"{records[int(beyond.split('.')[1])]['file']}: a weight exceeds the float16 range "
                                 "(±65504); store it without --half")
    stored = {v.dtype for k, v in state.items() if v.is_floating_point() and not k.endswith(".running_var")}
    weights = ("float16" if stored == {torch.float16} else "float32" if stored == {torch.float32} else "mixed") + (
        ", batch norm folded" if all(batch_norm_folded(n) for n in networks) else "")
    info = {"ensemble_of": records, "weights": weights, "commit": git_commit()}
    return modelfile.write(out, "segmentation", config, state, info)


def _folded_half(networks: list[torch.nn.Module]) -> dict[str, torch.Tensor]:
    """The ensemble's state dict (keys ``members.<i>.…``) from its member networks (float32, weights loaded), each
    with batch norm folded into the convolutions (:func:`fold_batch_norm`, in place), then every floating-point
    tensor rounded to float16 except the batch norms' running variances (1 − ε after folding, which float16 cannot
    hold; one number per channel). Folding first means the float16 numbers are the ones the network multiplies
    by, in PyTorch and in the ONNX export alike."""
    state = {}
    for i, network in enumerate(networks):
        fold_batch_norm(network)
        state.update({f"members.{i}.{k}": (v.half() if v.is_floating_point() and not k.endswith(".running_var")
                                           else v) for k, v in network.state_dict().items()})
    return state


def extract_member(ensemble: str | Path, index: int, out: str | Path) -> Path:
    """Write member ``index`` (0-based) of the segmentation ensemble file ``ensemble`` to ``out`` (``.pt`` +
    ``.json``), a single-network segmentation model file: its weights as the ensemble stores them (float16 with
    batch norm folded for a ``--half`` file), the ensemble's input size, cleaning and TTA default, its ``info`` its
    own provenance plus ``member_of`` (file, sha256, index). No quality sidecar is written (``fit-quality`` fits
    one). The segmentation twin of :func:`dermoseg.classification.ensemble.extract_member`.

    Parameters
    ----------
    ensemble : a segmentation ensemble file (path, or "default" for the shipped one).
    index : 0-based member number.
    out : the ``.pt`` to write.

    Returns
    -------
    ``out`` (a :class:`pathlib.Path`).

    Raises
    ------
    ModelFileError
        If ``ensemble`` is not a segmentation ensemble file or has no member ``index``.
    ValueError, FileExistsError
        If ``out`` does not end in ``.pt``, or it or a file beside it exists (never overwritten):
        :func:`dermoseg.modelfile.refuse_existing_output`.
    """
    return modelfile.extract_member(ensemble, "segmentation", index, out, _single_config)


def _single_config(payload: dict, member: dict) -> tuple[dict, dict, dict]:
    """The ensemble's config with the member's network, and the ensemble's weights label (float16 or not)."""
    return ({**payload["config"], "model": member["model"]}, {"weights": payload["info"].get("weights", "float32")},
            {})
