"""Model files: the only module that reads or writes dermoseg ``.pt`` files.

A model file is a ``torch.save``'d dict ``{"format": TAG, "config": {...}, "state_dict": {...}, "info": {...}}``
(a classifier file also holds ``"temperature"``), written atomically with a ``.json`` beside it that repeats
everything but the weights. The format tag says which wing the file belongs to (:data:`FORMATS`); the shipped
files live in :data:`WEIGHTS_DIR`. Every problem raises :class:`dermoseg.errors.ModelFileError` naming the file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from dermoseg.errors import ModelFileError
from dermoseg.io import file_sha256, write_text, write_torch

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# kind -> (format tag, what the kind is called in messages, what its file is called, shipped file name)
FORMATS: dict[str, tuple[str, str, str, str]] = {
    "segmentation": ("dermoseg-segmentation-1", "segmentation model", "model file", "segmentation.pt"),
    "classifier": ("dermoseg-classifier-1", "classifier", "classifier file", "classifier.pt"),
}

# kind -> {name: shipped file} of the named presets besides "default" (``--model fast``); the one such mapping
PRESETS: dict[str, dict[str, str]] = {"segmentation": {"fast": "segmentation_fast.pt"}, "classifier": {}}

__all__ = ["FORMATS", "PRESETS", "WEIGHTS_DIR", "ModelFileError", "file_sha256", "kind_of", "read", "read_checkpoint",
           "resolve", "shipped", "write"]


class LoadedModel:
    """What a loaded model file has whatever its task: the file it came from (``path``) and the runner that runs its
    network (``runner``, :func:`dermoseg.engine.make_runner`). Base of :class:`~dermoseg.segmentation.segmenter.Segmenter`
    and :class:`~dermoseg.classification.classifier.Classifier`, which declare both as dataclass fields."""

    path: Path
    runner: Any

    @property
    def network(self) -> torch.nn.Module:
        """The PyTorch network behind a :class:`dermoseg.engine.TorchRunner`.

        Raises
        ------
        AttributeError
            If the model was loaded on another engine (load it with ``engine="torch"``).
        """
        return self.runner.network

    @property
    def sha256(self) -> str:
        """sha256 of the model file (hex)."""
        return file_sha256(self.path)


def _kind(kind: str) -> tuple[str, str, str, str]:
    if kind not in FORMATS:
        raise ValueError(f"unknown model kind '{kind}' (choose from {', '.join(FORMATS)})")
    return FORMATS[kind]


def shipped(kind: str) -> Path:
    """Path of the shipped model file of ``kind`` ("segmentation" or "classifier")."""
    return WEIGHTS_DIR / _kind(kind)[3]


def resolve(model: str | Path | None, kind: str) -> Path:
    """The file meant by a ``--model`` value: None or ``"default"`` is the shipped file of ``kind`` (for a
    classifier also ``"classifier"``, the name ``info`` and ``export`` take), a preset name of :data:`PRESETS`
    (``"fast"``) its shipped file, anything else a path.

    Raises
    ------
    ModelFileError
        For a preset whose file is not shipped with this installation, or the classifier's shipped name given
        for a segmentation model.
    """
    noun = _kind(kind)[1]
    if model is None or str(model) == "default" or (kind == "classifier" and str(model) == "classifier"):
        return shipped(kind)
    preset = PRESETS[kind].get(str(model))
    if preset is None:
        if kind == "segmentation" and str(model) == "classifier" and not Path(model).exists():
            raise ModelFileError("classifier: the shipped classifier, not a segmentation model (the shipped "
                                 f"segmentation models are default and {', '.join(PRESETS[kind])})")
        return Path(model)
    path = WEIGHTS_DIR / preset
    if not path.is_file():
        raise ModelFileError(f"{path}: the '{model}' {noun} is not shipped with this version")
    return path


def _shipped_names(kind: str | None) -> list[str]:
    """The names a ``--model`` value may give for the shipped models of ``kind`` (of either kind when None)."""
    if kind is None:
        return ["default", *PRESETS["segmentation"], "classifier"]
    return ["default", *(["classifier"] if kind == "classifier" else []), *PRESETS[kind]]


def _refuse_onnx(path: Path, kind: str | None) -> None:
    """Raise :class:`ModelFileError` for an ONNX export given where the ``.pt`` model file (of ``kind``, or of
    either kind when None) is expected."""
    if path.suffix.lower() == ".onnx":
        beside = path.with_suffix(".pt")
        source = (f"the .pt file it was exported from ({beside.name})" if beside.is_file() else
                  "the .pt file it was exported from, or the shipped model's name "
                  f"({', '.join(_shipped_names(kind))})")
        raise ModelFileError(f"{path}: an ONNX export, not a model file; give {source}: its export beside it is "
                             "run by ONNX Runtime")


def kind_of(model: str | Path | None) -> str:
    """The kind ("segmentation" or "classifier") of a ``--model`` value: "classifier" is the shipped classifier,
    other names (:func:`resolve`) are segmentation models, a path is told by its format tag.

    Raises
    ------
    ModelFileError
        If the file is missing, unreadable or has no dermoseg format tag.
    """
    if model is not None and str(model) == "classifier":
        return "classifier"
    path = resolve(model, "segmentation")
    if model is None or path != Path(model):
        return "segmentation"
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    _refuse_onnx(path, None)
    try:
        tag = torch.load(path, map_location="cpu", weights_only=False).get("format")
    except Exception as exc:  # torch raises many kinds on a corrupt file
        raise ModelFileError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from None
    kinds = [k for k, v in FORMATS.items() if v[0] == tag]
    if not kinds:
        raise ModelFileError(f"{path}: not a dermoseg model file (format tag {tag!r})")
    return kinds[0]


def read(model: str | Path | None, kind: str) -> tuple[Path, dict[str, Any]]:
    """Read a model file of ``kind``.

    Parameters
    ----------
    model : path, or None / "default" for the shipped file.
    kind : "segmentation" or "classifier".

    Returns
    -------
    (path, payload dict with at least ``format``, ``config`` and ``state_dict``).

    Raises
    ------
    ModelFileError
        If the file is missing, not readable by ``torch.load``, or lacks the format tag of ``kind``.
    """
    tag, noun, file_noun, _ = _kind(kind)
    path = resolve(model, kind)
    if not path.is_file():
        raise ModelFileError(f"{path}: {file_noun} not found (a path to a .pt file, or a shipped {noun}: "
                             f"{', '.join(_shipped_names(kind))})")
    _refuse_onnx(path, kind)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many kinds on a corrupt file
        raise ModelFileError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != tag:
        raise ModelFileError(f"{path}: not a dermoseg {noun} (no '{tag}' format tag)")
    return path, payload


def read_checkpoint(checkpoint: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """The training config, the network weights (``model.`` prefix removed) and ``{"checkpoint_epoch"}``
    (0-based, -1 if unknown) of a Lightning checkpoint written by :func:`dermoseg.training.fit`."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    return ckpt["hyper_parameters"]["cfg"], state, {"checkpoint_epoch": int(ckpt.get("epoch", -1))}


def extract_member(ensemble: str | Path, kind: str, index: int, out: str | Path,
                   single: Callable[[dict, dict], tuple[dict, dict, dict]]) -> Path:
    """Write member ``index`` (0-based) of the ensemble file ``ensemble`` of ``kind`` to ``out`` (``.pt`` +
    ``.json``) as a single-network model file: its weights (keys without the ``members.<index>.`` prefix, stored
    as in the ensemble) and its provenance (``member_of``: the file, its sha256 and the index, plus the member's
    own record of ``info.ensemble_of``). Both wings' ``extract_member``; what differs is ``single``.

    Parameters
    ----------
    ensemble : an ensemble model file of ``kind`` (path, or a name :func:`read` resolves).
    kind : "segmentation" or "classifier".
    index : 0-based member number.
    out : the ``.pt`` to write.
    single : ``(payload, member) → (config, info, extra)``: the wing's single-network config for this member
        (``member``: its entry of ``config.model.members``), entries added to its ``info``, and further top-level
        entries for :func:`write`.

    Returns
    -------
    ``out`` as a Path.

    Raises
    ------
    ModelFileError
        If the file is not an ensemble of ``kind`` or has no member ``index``.
    ValueError, FileExistsError
        For an unknown ``kind``; if ``out`` does not end in ``.pt``, or it or a file beside it exists (never
        overwritten): :func:`refuse_existing_output`.
    """
    path, payload = read(ensemble, kind)
    members = payload["config"]["model"].get("members")
    if payload["config"]["model"].get("architecture") != "ensemble" or not members:
        raise ModelFileError(f"{path}: not an ensemble {kind} file")
    if not 0 <= index < len(members):
        raise ModelFileError(f"{path}: has members 0 to {len(members) - 1}, not {index}")
    out = refuse_existing_output(out)
    prefix = f"members.{index}."
    state = {k[len(prefix):]: v for k, v in payload["state_dict"].items() if k.startswith(prefix)}
    info = {"member_of": {"file": path.name, "sha256": file_sha256(path), "index": index},
            **payload["info"]["ensemble_of"][index]}
    config, more_info, extra = single(payload, members[index])
    return write(out, kind, config, state, {**info, **more_info}, **extra)


def refuse_existing_output(out: str | Path) -> Path:
    """Check, before any work, that a new model file ``out`` (``.pt``) and the files written beside it (``.json``,
    the classifier's ``.ood.json``) do not exist: a model file the run did not create is never overwritten.

    Returns
    -------
    ``out`` as a Path.

    Raises
    ------
    ValueError
        If ``out`` does not end in ``.pt``.
    FileExistsError
        Naming the first of them that exists.
    """
    out = Path(out)
    if out.suffix != ".pt":
        raise ValueError(f"{out}: a model file must end in .pt (its .json, and a classifier's .ood.json, go beside "
                         "it)")
    for f in (out, out.with_suffix(".json"), out.with_suffix(".ood.json")):
        if f.exists():
            raise FileExistsError(f"{f}: already exists (never overwritten); choose another output")
    return out


def write(path: str | Path, kind: str, config: dict[str, Any], state_dict: dict[str, torch.Tensor],
          info: dict[str, Any], **extra: Any) -> Path:
    """Write a model file of ``kind`` atomically, and ``<path>.json`` (config, extra entries, info) beside it.

    Parameters
    ----------
    path : output ``.pt``.
    config : what inference needs (model section, input size, TTA, ...) and the training config.
    state_dict : the network's weights.
    info : provenance (epoch, scores, training time, commit).
    extra : further top-level entries (the classifier's ``temperature``).

    Returns
    -------
    ``path``.
    """
    tag = _kind(kind)[0]
    path = Path(path)
    payload = {"format": tag, "config": config, "state_dict": state_dict, **extra, "info": info}
    write_torch(path, payload)
    write_text(path.with_suffix(".json"), json.dumps({"config": config, **extra, "info": info}, indent=2, default=str))
    return path


def read_members(members, kind: str, build, describe
                 ) -> tuple[list[dict], dict[str, torch.Tensor], list[dict], list[torch.nn.Module]]:
    """Read the member files of an ensemble of ``kind`` (``combine-segmenters``, ``combine-classifiers``).

    Parameters
    ----------
    members : two or more model files (paths or shipped names).
    kind : "segmentation" or "classifier".
    build : ``build(model_config, pretrained=False) -> nn.Module``, the kind's network builder.
    describe : ``describe(path, payload) -> dict``, the ensemble config's entry of one member; it raises
        ModelFileError for a member the kind cannot combine, and KeyError / TypeError / ValueError for a config
        that lacks or mangles what it reads.

    Returns
    -------
    ``(entries, state_dict, records, networks)``: the ``describe`` entries in order; the members' weights as
    stored, under keys ``members.<i>.…``; each member's ``{"file", "sha256", "info"}``; each member's network,
    built by ``build`` with its weights loaded in float32 (the check that they fit), in eval mode.

    Raises
    ------
    ModelFileError
        Naming the file, for fewer than two members, an unreadable file or one of another kind, a member that is
        an ensemble itself, one ``describe`` refuses, or whose weights do not fit the network its config builds.
        A member given twice (same sha256) is allowed, with a warning on stderr: it counts twice in the mean.
    """
    if len(members) < 2:
        raise ModelFileError(f"an ensemble needs at least two {_kind(kind)[1]} files, got {len(members)}")
    entries, state, records, networks = [], {}, [], []
    for i, member in enumerate(members):
        path, payload = read(member, kind)
        model = payload["config"]["model"]
        if model.get("architecture") == "ensemble":
            raise ModelFileError(f"{path}: is an ensemble already; combine its members instead")
        try:  # everything the ensemble will need, checked now so that a bad member is named before any work
            entries.append(describe(path, payload))
            network = build(model, pretrained=False).eval()
            network.load_state_dict(
                {k: (v.float() if v.is_floating_point() else v) for k, v in payload["state_dict"].items()})
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{path}: not usable as an ensemble member ({type(exc).__name__}: {exc})") from None
        state.update({f"members.{i}.{k}": v for k, v in payload["state_dict"].items()})
        records.append({"file": path.name, "sha256": file_sha256(path), "info": payload.get("info", {})})
        twin = next((j for j, r in enumerate(records[:-1]) if r["sha256"] == records[-1]["sha256"]), None)
        if twin is not None:
            print(f"warning: {path}: member {i} is the same weights as member {twin} ({records[twin]['file']}, same "
                  "sha256); the ensemble counts it twice", file=sys.stderr)
        networks.append(network)
    return entries, state, records, networks
