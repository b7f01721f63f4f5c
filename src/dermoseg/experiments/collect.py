"""Evaluation of trained runs and the committed results layout that :mod:`dermoseg.report` reads.

Layout under the results folder (``docs/results`` by default)::

    runs/<run>/run.json                     settings, size (parameters, MACs), wall times, provenance
    runs/<run>/metrics.csv                  the per-epoch training log (Lightning CSVLogger), copied
    runs/<run>/eval/<set>/summary.json      mean metrics over the set (segmentation.evaluate.summarize_with_empty_truth)
    runs/<run>/eval/<set>/per_image.csv     one row per image (optional)
    runs/<run>/eval/<set>/worst_masks.npz               predicted masks of the worst images ({id: (H, W) bool})

``<run>`` may contain ``/`` (``table1_grid/e10_b4_lr0.01``). ``<set>`` is ``isic2018_val`` or ``ph2``. Nothing
here stores data images or model weights: only logs, figures and small predicted masks.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermoseg.data.evalsets import EVAL_SETS, eval_set_samples
from dermoseg.errors import DermosegError
from dermoseg.io import MASK_FILE_THRESHOLD, read_image, read_mask, write_bytes, write_text

# Committed worst-case predictions live in one compressed file per evaluation, keyed by image id: our own output,
# kept apart from anything that could be mistaken for dataset images.
WORST_FILE = "worst_masks.npz"


def write_worst_masks(path: Path, masks: dict[str, np.ndarray]) -> Path:
    """Atomically write predicted masks ``{image_id: (H, W) bool}`` as one compressed ``.npz`` file."""
    import io as _io
    buf = _io.BytesIO()
    np.savez_compressed(buf, **{i: np.asarray(m, bool) for i, m in masks.items()})
    return write_bytes(path, buf.getvalue())


def read_worst_masks(path: Path) -> dict[str, np.ndarray]:
    """Read :func:`write_worst_masks` output: ``{image_id: (H, W) bool}``."""
    with np.load(path) as data:
        return {k: data[k].astype(bool) for k in data.files}

__all__ = ["EVAL_SETS", "WORST_FILE", "CollectError", "LoadedSet", "evaluate_loaded", "import_run", "load_eval_set",
           "read_per_image", "read_worst_masks", "write_eval", "write_worst_masks"]


class CollectError(DermosegError, ValueError):
    """A run folder or evaluation output is missing or malformed; the message names the path."""


@dataclass
class LoadedSet:
    """An evaluation set decoded once and kept in memory, so that many models can be scored without re-reading
    the files. ``images[i]`` is (H, W, 3) uint8 RGB at the file's own size, ``truths[i]`` the (H, W) bool
    ground truth (any non-zero pixel is lesion, as :func:`dermoseg.segmentation.evaluate.evaluate_model` reads it)."""

    name: str
    ids: list[str]
    images: list[np.ndarray]
    truths: list[np.ndarray]


def load_eval_set(name: str, data_root: str | Path) -> LoadedSet:
    """Decode an evaluation set: ``isic2018_val`` (the committed split's validation part), ``isic2018_train`` or
    ``ph2`` (all 200 images).

    Raises
    ------
    dermoseg.errors.EvaluationError
        For an unknown set name. Loader errors (:class:`dermoseg.errors.DatasetError`,
        :class:`dermoseg.errors.ImageReadError`) pass through and name the file.
    """
    samples = eval_set_samples(name, data_root)
    ids, images, truths = [], [], []
    for s in samples:
        image, truth = read_image(s.image_path), read_mask(s.mask_path, 0)
        if image.shape[:2] != truth.shape:
            raise CollectError(f"{s.mask_path}: mask size {truth.shape[::-1]} differs from image {image.shape[1::-1]}")
        ids.append(s.image_id)
        images.append(image)
        truths.append(truth)
    return LoadedSet(name, ids, images, truths)


def evaluate_loaded(model, data: LoadedSet, threshold: float | None = None
                    ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, np.ndarray]]:
    """Score a model on a decoded set with the loop of ``dermoseg evaluate``
    (:func:`dermoseg.segmentation.evaluate.score_images`), so that the figures are the same.

    Parameters
    ----------
    model : a :class:`dermoseg.segmentation.segmenter.Segmenter`.
    data : from :func:`load_eval_set`.

    Returns
    -------
    (per-image rows with ``image_id`` and every metric, summary of means with ``images``,
    ``failures_jaccard_below_0.65`` and ``empty_truth_images``, {image_id: (H, W) bool predicted mask}).
    """
    from dermoseg.segmentation.evaluate import score_images, summarize_with_empty_truth
    rows, masks = [], {}
    for row, mask in score_images(model, zip(data.ids, data.images, data.truths), threshold):
        masks[row["image_id"]] = mask
        rows.append(row)
    return rows, summarize_with_empty_truth(rows), masks


def worst_ids(rows: list[dict[str, Any]], n: int, key: str = "dice") -> list[str]:
    """Ids of the ``n`` images with the lowest ``key`` (ties broken by id), worst first."""
    return [r["image_id"] for r in sorted(rows, key=lambda r: (float(r[key]), str(r["image_id"])))[:max(0, n)]]


def write_eval(out_dir: str | Path, rows: list[dict[str, Any]], summary: dict[str, Any],
               masks: dict[str, np.ndarray] | None = None, n_worst: int = 0, per_image: bool = True) -> Path:
    """Write one evaluation in the committed layout: ``summary.json``, optionally ``per_image.csv`` and the
    predicted masks of the ``n_worst`` lowest-Dice images in ``worst_masks.npz``."""
    from dermoseg.segmentation.evaluate import write_report
    out_dir = Path(out_dir)
    write_report(out_dir, rows if per_image else None, summary)
    if n_worst and masks:
        write_worst_masks(out_dir / WORST_FILE, {i: masks[i] for i in worst_ids(rows, n_worst)})
    return out_dir


def read_per_image(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``per_image.csv`` (metric columns as floats).

    Raises
    ------
    CollectError
        If the file is missing or has no ``image_id``/``dice`` columns.
    """
    path = Path(path)
    if not path.is_file():
        raise CollectError(f"{path}: per-image results not found")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "image_id" not in reader.fieldnames or "dice" not in reader.fieldnames:
            raise CollectError(f"{path}: not a per_image.csv (needs image_id and dice columns)")
        rows = []
        for row in reader:
            out: dict[str, Any] = {"image_id": row["image_id"]}
            for k, v in row.items():
                if k != "image_id" and v not in (None, ""):
                    try:
                        out[k] = float(v)
                    except ValueError:
                        out[k] = v
            rows.append(out)
    return rows


def model_size(network, image_size: int) -> dict[str, int]:
    """``{"parameters": trainable parameters, "macs": multiply-accumulates of one forward pass at
    image_size × image_size}`` (:mod:`dermoseg.models.complexity`)."""
    from dermoseg.models.complexity import count_macs, count_parameters
    return {"parameters": int(count_parameters(network)), "macs": int(count_macs(network, image_size, image_size))}


def cumulative_train_seconds(run_dir: str | Path) -> float | None:
    """Seconds of training over all sessions of a resumed run: the Lightning ``Timer`` state kept in
    ``run_dir/checkpoints/last.ckpt`` (present when ``trainer.max_time_minutes`` was set; work of an epoch cut
    short and not checkpointed is not counted). None if there is no such checkpoint or state."""
    ckpt = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        return None
    import torch
    state = torch.load(ckpt, map_location="cpu", weights_only=False).get("callbacks", {}).get("Timer", {})
    seconds = state.get("time_elapsed", {}).get("train")
    return round(float(seconds), 1) if seconds else None


def import_run(name: str, run_dir: str | Path, results_dir: str | Path, n_worst: int = 12,
               label: str | None = None, eval_root: str | Path | None = "runs/eval") -> Path:
    """Copy a finished training run and its evaluations into the committed results layout.

    Parameters
    ----------
    name : run name under ``results_dir/runs/`` (e.g. ``codec_mobilenet_v2``).
    run_dir : the training folder: ``metrics.csv``, ``model.pt`` and ``model.json`` (from
        :func:`dermoseg.segmentation.task.train`), and ``eval/<set>/`` folders written by ``dermoseg evaluate --out``
        (``per_image.csv``, ``summary.json``, and with ``--save-masks`` a ``masks/`` folder from which the
        ``n_worst`` lowest-Dice masks are kept).
    results_dir : the committed results folder (``docs/results``).
    eval_root : where ``dermoseg evaluate --out`` wrote, as ``<eval_root>/<name>/<set>/``; used instead of
        ``run_dir/eval`` when that folder exists (so that a running training folder need not be written to).

    Returns
    -------
    The folder written (``results_dir/runs/<name>``).

    Raises
    ------
    CollectError
        Before anything is written: if ``name`` is not a plain folder name, ``run_dir`` has no ``metrics.csv``
        or no ``model.pt``, or ``results_dir/runs/<name>`` exists (an imported run is never replaced in part).
    """
    from dermoseg.segmentation.segmenter import Segmenter
    if not name or name in (".", "..") or any(c in name for c in "/\\"):
        raise CollectError(f"import name {name!r}: a plain folder name is needed (it becomes RESULTS/runs/NAME)")
    run_dir, dest = Path(run_dir), Path(results_dir) / "runs" / name
    for needed in ("metrics.csv", "model.pt"):
        if not (run_dir / needed).is_file():
            raise CollectError(f"{run_dir / needed}: not found (is the run finished?)")
    if dest.exists():
        raise CollectError(f"{dest}: holds an imported run already; remove that folder to replace it, or choose "
                           "another NAME")
    model = Segmenter.load(run_dir / "model.pt", engine="torch")  # the network itself: an ONNX export has none
    dest.mkdir(parents=True)
    shutil.copyfile(run_dir / "metrics.csv", dest / "metrics.csv")
    meta = json.loads((run_dir / "model.json").read_text(encoding="utf-8")) if (run_dir / "model.json").is_file() else {}
    train_cfg = meta.get("config", {}).get("train_config", {})
    info = meta.get("info", {})
    evals = {}
    eval_base = Path(eval_root) / name if eval_root is not None and (Path(eval_root) / name).is_dir() else run_dir / "eval"
    for eval_dir in sorted(p for p in eval_base.glob("*") if p.is_dir()) if eval_base.is_dir() else []:
        if not (eval_dir / "summary.json").is_file():
            continue
        summary = json.loads((eval_dir / "summary.json").read_text(encoding="utf-8"))
        out = dest / "eval" / eval_dir.name
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(eval_dir / "summary.json", out / "summary.json")
        if (eval_dir / "per_image.csv").is_file():
            shutil.copyfile(eval_dir / "per_image.csv", out / "per_image.csv")
            if n_worst and (eval_dir / "masks").is_dir():
                ids = worst_ids(read_per_image(eval_dir / "per_image.csv"), n_worst)
                files = {i: eval_dir / "masks" / f"{i}_segmentation.png" for i in ids}
                write_worst_masks(out / WORST_FILE, {i: read_mask(f, MASK_FILE_THRESHOLD) for i, f in files.items() if f.is_file()})
        evals[eval_dir.name] = summary
    record = {
        "run": name, "label": label or name, "source": str(run_dir), "eval_source": str(eval_base), "kind": "imported",
        "config": train_cfg, "image_size": model.image_size, **model_size(model.network, model.image_size),
        "train_wall_s": cumulative_train_seconds(run_dir) or info.get("train_seconds_this_session"),
        "epochs_completed": info.get("epochs_completed"),
        "checkpoint": "best", "evaluated_epoch": model.trained_epochs,
        "machine": info.get("machine"), "commit": info.get("commit"), "eval": evals,
        "imported_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_text(dest / "run.json", json.dumps(record, indent=2) + "\n")
    return dest
