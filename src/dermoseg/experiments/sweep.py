"""Sweeps: train and evaluate every cell of a grid (the paper's Table 1, §4.2) or of an explicit list of runs
(the codec-vs-U-Net comparison and the ablations), and write one CSV row per cell.

A sweep file is a training configuration (the keys of ``configs/*.yaml``, optionally on top of
``base_config``) plus:

``grid``
    dotted config keys → lists of values; every combination is a cell (the first key varies slowest).
``grid_names``
    optional dotted key → short label used in cell names (``trainer.epochs: e`` gives ``e10_...``).
``cells``
    alternatively, a list of ``{name: ..., label: ..., <config sections as overrides>}``.
``sweep``
    options, see :data:`SWEEP_DEFAULTS`.

Running a sweep is resumable: a cell whose ``cell.json`` exists is skipped, and so is one whose record is among
the committed results with the same settings (a fresh clone lacks the git-ignored run folders); a cell whose training stopped
part-way continues from its ``checkpoints/last.ckpt``. With ``continue_shorter`` (only when the learning rate
has no schedule, so that the first E epochs of a longer run are an E-epoch run), a cell of E epochs starts from
the last checkpoint of the finished cell with the same settings and the most epochs below E; its log then
holds all epochs and ``train_wall_cumulative_s`` the wall time a run from scratch would have needed.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from dermoseg.config import (TASK_DEFAULTS, ConfigError, dotted, first_difference, load_config, merge,
                             read_yaml_mapping)

SWEEP_DEFAULTS: dict[str, Any] = {
    "name": None,                     # default: the sweep file's stem
    "runs_dir": "runs/sweeps",        # training folders (checkpoints; not committed)
    "results_dir": "docs/results",    # committed: <name>.csv, <name>.meta.json, runs/<name>/<cell>/
    "evaluate": ["isic2018_val"],     # sets scored after training (collect.EVAL_SETS)
    "checkpoint": "last",             # "last": the model after the last epoch (the paper's protocol); "best"
    "continue_shorter": True,
    "worst_masks": 0,                 # predicted masks of the n lowest-Dice images kept per set
    "per_image": True,                # commit per_image.csv of each set
}
RESERVED = ("grid", "grid_names", "cells", "sweep", "base_config")
NAME_OK = re.compile(r"^[A-Za-z0-9_.,+-]+$")


class SweepError(ConfigError):
    """A sweep file is malformed (no grid or cells, empty value list, bad or repeated cell name)."""


@dataclass
class Cell:
    """One run of a sweep: ``name`` (folder-safe), ``settings`` (dotted key → value, what this cell sets),
    ``config`` (the full merged training configuration) and an optional human ``label``."""

    name: str
    settings: dict[str, Any]
    config: dict[str, Any]
    label: str = ""


@dataclass
class Sweep:
    """A loaded sweep file: its ``name``, source ``path``, ``cells`` in run order and ``options``
    (:data:`SWEEP_DEFAULTS` merged with the file's ``sweep`` section)."""

    name: str
    path: Path
    cells: list[Cell]
    options: dict[str, Any]


def set_dotted(target: dict, key: str, value: Any) -> dict:
    """Set ``target["a"]["b"] = value`` for ``key == "a.b"`` (creating mappings on the way); returns target."""
    parts = key.split(".")
    node = target
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise SweepError(f"grid key '{key}': '{p}' is not a mapping")
    node[parts[-1]] = value
    return target


def _format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def expand_grid(grid: Mapping[str, list], short_names: Mapping[str, str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Every combination of a grid, the first key varying slowest.

    Parameters
    ----------
    grid : dotted config key → non-empty list of values, e.g. ``{"trainer.epochs": [10, 20],
        "optimizer.lr": [0.01, 0.05]}``.
    short_names : dotted key → label in the cell name (default: the key's last part).

    Returns
    -------
    ``[(cell name, {dotted key: value})]``, e.g. ``("e10_lr0.01", {"trainer.epochs": 10, "optimizer.lr": 0.01})``.

    Raises
    ------
    SweepError
        If the grid is empty, a value list is empty or not a list, or two cells get the same name.
    """
    if not isinstance(grid, Mapping) or not grid:
        raise SweepError("'grid' must be a non-empty mapping of dotted keys to lists of values")
    keys = list(grid)
    for k in keys:
        if not isinstance(grid[k], list) or not grid[k]:
            raise SweepError(f"grid key '{k}' needs a non-empty list of values, got {grid[k]!r}")
    names = dict(short_names or {})
    cells, seen = [], set()
    for combo in itertools.product(*(grid[k] for k in keys)):
        settings = dict(zip(keys, combo))
        name = "_".join(f"{names.get(k, k.split('.')[-1])}{_format_value(v)}" for k, v in settings.items())
        if name in seen:
            raise SweepError(f"two grid cells are both named '{name}'")
        seen.add(name)
        cells.append((name, settings))
    return cells


def load_sweep(path: str | Path, data_root: str | Path | None = None) -> Sweep:
    """Read a sweep file and build the full configuration of each cell.

    Parameters
    ----------
    path : YAML sweep file (see the module docstring).
    data_root : overrides ``data.root`` of every cell.

    Returns
    -------
    The :class:`Sweep`; cell configurations are ``load_config(base_config)`` merged with the file's training
    keys, then the cell's own settings, and named ``<sweep>/<cell>``.

    Raises
    ------
    SweepError, ConfigError
        If the file or its base config is missing or malformed.
    """
    path = Path(path)
    raw = read_yaml_mapping(path, "sweep file", SweepError)
    options = merge(SWEEP_DEFAULTS, raw.get("sweep") or {}, f"{path}: sweep")
    name = options["name"] or path.stem
    if not NAME_OK.match(str(name)):
        raise SweepError(f"{path}: sweep name '{name}' may only use letters, digits and _.,+-")
    if options["checkpoint"] not in ("last", "best"):
        raise SweepError(f"{path}: sweep.checkpoint must be 'last' or 'best', got {options['checkpoint']!r}")
    base = raw.get("base_config")
    base_path = (path.parent / base) if base else None
    train_keys = {k: v for k, v in raw.items() if k not in RESERVED}
    if ("grid" in raw) == ("cells" in raw):
        raise SweepError(f"{path}: give exactly one of 'grid' or 'cells'")
    specs: list[tuple[str, dict[str, Any], dict, str]] = []
    if "grid" in raw:
        for cell_name, settings in expand_grid(raw["grid"], raw.get("grid_names")):
            overrides: dict = {}
            for k, v in settings.items():
                set_dotted(overrides, k, v)
            specs.append((cell_name, settings, overrides, ""))
    else:
        if not isinstance(raw["cells"], list) or not raw["cells"]:
            raise SweepError(f"{path}: 'cells' must be a non-empty list")
        seen = set()
        for i, item in enumerate(raw["cells"]):
            if not isinstance(item, dict) or not item.get("name"):
                raise SweepError(f"{path}: cell {i + 1} needs a 'name'")
            cell_name = str(item["name"])
            if not NAME_OK.match(cell_name) or cell_name in seen:
                raise SweepError(f"{path}: cell name '{cell_name}' is repeated or has characters other than letters, digits and _.,+-")
            seen.add(cell_name)
            overrides = {k: v for k, v in item.items() if k not in ("name", "label")}
            specs.append((cell_name, dotted(overrides), overrides, str(item.get("label", ""))))
    cells = []
    for cell_name, settings, overrides, label in specs:
        merged = merge(train_keys, overrides, f"{path}: cell {cell_name}")
        if data_root is not None:
            merged = merge(merged, {"data": {"root": str(data_root)}})
        try:
            cfg = load_config(base_path, merged)
        except ConfigError as exc:  # a cell's settings arrive as overrides: say which sweep file and cell
            raise ConfigError(f"{path}: cell {cell_name}: {exc}") from None
        cfg["name"] = f"{name}/{cell_name}"
        cells.append(Cell(cell_name, settings, cfg, label))
    return Sweep(str(name), path, cells, options)


# ------------------------------------------------------------------------------------------------ running
def _committed_record(cell: Cell, sweep: Sweep) -> dict | None:
    """The cell's record among the committed results (``<results_dir>/runs/<sweep>/<cell>/run.json``, a copy of
    its ``cell.json``) when it was made with this cell's config, else None: a fresh clone has the committed
    results but not the git-ignored run folders. The data root aside, every setting is compared
    (:func:`dermoseg.config.first_difference`), the record's filled with today's defaults first (a setting added
    since counts as its default there); a setting the record has and today's dermoseg dropped is passed over."""
    path = Path(sweep.options["results_dir"]) / "runs" / sweep.name / cell.name / "run.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(record, dict) and record.get("kind") == "sweep" and isinstance(record.get("config"), dict)):
        return None
    defaults = TASK_DEFAULTS.get(cell.config.get("task", "segmentation"), {})
    dropped = set(dotted(record["config"])) - set(dotted(defaults))  # settings of another version of dermoseg
    try:
        made = merge(defaults, record["config"], where=str(path))
    except ConfigError:  # a record whose settings do not have today's shape: not this cell's
        return None
    same = first_difference(made, cell.config, allowed={"data.root", *dropped}) is None
    return record if same else None


def _predecessor(cell: Cell, done: dict[str, dict], sweep: Sweep) -> Cell | None:
    """The finished cell with the same settings and the most epochs below this cell's, if continuing is on and
    its last checkpoint is here (a cell known only from the committed results cannot be continued)."""
    if not sweep.options["continue_shorter"] or cell.config["optimizer"].get("scheduler", "none") != "none":
        return None
    epochs = int(cell.config["trainer"]["epochs"])
    runs = Path(sweep.options["runs_dir"]) / sweep.name
    best = None
    for other in sweep.cells:
        e = int(other.config["trainer"]["epochs"])
        same = first_difference(other.config, cell.config, ("trainer.epochs", "name")) is None
        if other.name in done and e < epochs and same and (runs / other.name / "checkpoints" / "last.ckpt").is_file():
            if best is None or e > int(best.config["trainer"]["epochs"]):
                best = other
    return best


def cell_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """One CSV row of a finished cell: its settings, the model, the evaluated metrics per set
    (``<set>_<metric>``), the last and best epochs of the training log, size and wall times (seconds)."""
    cfg = record["config"]
    row: dict[str, Any] = {"cell": record["cell"], "label": record.get("label", "")}
    row["settings"] = "; ".join(f"{k}={_format_value(v)}" for k, v in record.get("settings", {}).items())
    row.update({
        "architecture": cfg["model"].get("architecture"), "encoder": cfg["model"].get("encoder") if cfg["model"].get("architecture") == "codec" else "",
        "aspp_rates": _format_value(cfg["model"].get("aspp_rates", "")) if cfg["model"].get("architecture") == "codec" else "",
        "loss": cfg["loss"]["name"], "image_size": cfg["data"]["image_size"], "train_subset": cfg["data"].get("train_subset") or "all",
        "epochs": cfg["trainer"]["epochs"], "batch_size": cfg["trainer"]["batch_size"], "lr": cfg["optimizer"]["lr"],
        "scheduler": cfg["optimizer"].get("scheduler", "none"), "checkpoint": record.get("checkpoint"),
        "evaluated_epoch": record.get("evaluated_epoch"),
    })
    for set_name, summary in record.get("eval", {}).items():
        for k in ("dice", "jaccard", "thresholded_jaccard", "pixel_accuracy", "sensitivity", "specificity"):
            row[f"{set_name}_{k}"] = summary.get(k)
        row[f"{set_name}_failures"] = summary.get("failures_jaccard_below_0.65")
    for k, v in record.get("log", {}).items():
        row[k] = v
    for k in ("parameters", "macs", "continued_from", "train_wall_s", "train_wall_cumulative_s", "eval_wall_s"):
        row[k] = record.get(k)
    return row


def write_results_csv(path: str | Path, records: list[Mapping[str, Any]]) -> Path:
    """Write the sweep's CSV (one :func:`cell_row` per finished cell, in sweep order); atomic."""
    from dermoseg.batch import rows_to_csv
    from dermoseg.io import write_text
    return write_text(path, rows_to_csv([cell_row(r) for r in records], []))


def _log_summary(metrics_csv: Path) -> dict[str, Any]:
    from dermoseg.experiments.logs import best_epoch, read_epoch_log
    records = read_epoch_log(metrics_csv)
    out: dict[str, Any] = {"epochs_logged": len(records)}
    if records:
        last = records[-1]
        for k in ("train_loss", "train_dice", "train_pixel_accuracy", "val_dice", "val_pixel_accuracy"):
            if k in last:
                out[f"last_{k}"] = last[k]
    best = best_epoch(records)
    if best:
        out["best_val_dice_log"], out["best_epoch_log"] = best["val_dice"], best["epoch"]
    return out


def run_cell(cell: Cell, sweep: Sweep, eval_sets: Callable[[str], Any], done: dict[str, dict],
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train one cell (resuming or continuing a shorter cell where possible), evaluate it on the sweep's sets,
    write ``cell.json`` in its run folder and copy the committed outputs. Returns the cell record."""
    from dermoseg.experiments.collect import evaluate_loaded, model_size, write_eval
    from dermoseg.io import write_text
    from dermoseg.segmentation.segmenter import Segmenter
    from dermoseg.segmentation.task import export_model, train
    opts = sweep.options
    run_dir = Path(opts["runs_dir"]) / sweep.name / cell.name
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    trained_marker = run_dir / "trained.json"
    continued_from, prior_wall = None, 0.0
    pred = _predecessor(cell, done, sweep)
    if pred is not None:
        continued_from = pred.name
        prior_wall = float(done[pred.name].get("train_wall_cumulative_s") or 0.0)
    if trained_marker.is_file():
        trained = json.loads(trained_marker.read_text(encoding="utf-8"))
    else:
        if pred is not None and not ckpt.is_file():
            src = Path(opts["runs_dir"]) / sweep.name / pred.name
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / "checkpoints" / "last.ckpt", ckpt)
            shutil.copyfile(src / "metrics.csv", run_dir / "metrics.csv")
            if (src / "logs").is_dir():  # per-session Lightning logs, merged into metrics.csv after training
                shutil.copytree(src / "logs", run_dir / "logs", dirs_exist_ok=True)
            log(f"[{cell.name}] continuing from {pred.name} (epoch {pred.config['trainer']['epochs']})")
        resume = ckpt.is_file() or (run_dir / "config.yaml").is_file()  # a cell stopped in its first epoch restarts
        start = time.time()
        train(cell.config, run_dir, resume=resume)
        wall = time.time() - start
        trained = {"train_wall_s": round(wall, 1), "resumed": resume}
        write_text(trained_marker, json.dumps(trained, indent=2) + "\n")
    if opts["checkpoint"] == "last":
        model_path = export_model(ckpt, run_dir / "model_last.pt")
    else:
        model_path = run_dir / "model.pt"
    model = Segmenter.load(model_path)
    start = time.time()
    evals = {}
    results_run = Path(opts["results_dir"]) / "runs" / sweep.name / cell.name
    for set_name in opts["evaluate"]:
        rows, summary, masks = evaluate_loaded(model, eval_sets(set_name))
        write_eval(run_dir / "eval" / set_name, rows, summary, masks, int(opts["worst_masks"]), True)
        write_eval(results_run / "eval" / set_name, rows, summary, masks, int(opts["worst_masks"]), bool(opts["per_image"]))
        evals[set_name] = summary
        log(f"[{cell.name}] {set_name}: Dice {summary['dice']:.4f}  Jaccard {summary['jaccard']:.4f}  "
            f"pixel accuracy {summary['pixel_accuracy']:.4f}")
    eval_wall = time.time() - start
    record = {
        "run": f"{sweep.name}/{cell.name}", "sweep": sweep.name, "cell": cell.name, "label": cell.label,
        "kind": "sweep", "settings": cell.settings, "config": cell.config, "image_size": int(cell.config["data"]["image_size"]),
        **model_size(model.network, int(cell.config["data"]["image_size"])),
        "checkpoint": opts["checkpoint"], "evaluated_epoch": model.trained_epochs,
        "continued_from": continued_from,
        "train_wall_s": trained["train_wall_s"], "train_wall_cumulative_s": round(prior_wall + trained["train_wall_s"], 1),
        "eval_wall_s": round(eval_wall, 1), "log": _log_summary(run_dir / "metrics.csv"), "eval": evals,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus", "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    results_run.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "metrics.csv", results_run / "metrics.csv")
    write_text(results_run / "run.json", json.dumps(record, indent=2) + "\n")
    write_text(run_dir / "cell.json", json.dumps(record, indent=2) + "\n")
    return record


def _epochs_to_train(cell: Cell, done: dict[str, dict], sweep: Sweep) -> int:
    pred = _predecessor(cell, done, sweep)
    return int(cell.config["trainer"]["epochs"]) - (int(pred.config["trainer"]["epochs"]) if pred else 0)


def parse_deadline(text: str) -> float:
    """``"HH:MM"`` → that local time today, in seconds since the epoch (for :func:`run_sweep`).

    Raises
    ------
    SweepError
        Unless ``text`` is HH:MM with a valid hour and minute.
    """
    import datetime as dt
    try:
        hh, mm = (int(x) for x in text.split(":"))
        return dt.datetime.now().replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
    except ValueError:
        raise SweepError(f"--deadline expects HH:MM, got '{text}'") from None


def run_sweep(sweep: Sweep, only: list[str] | None = None, dry_run: bool = False, data_root: str | Path | None = None,
              log: Callable[[str], None] = print, deadline: float | None = None) -> list[dict[str, Any]]:
    """Run every unfinished cell of a sweep in order and keep the results CSV up to date.

    Parameters
    ----------
    sweep : from :func:`load_sweep`.
    only : cell names to run (default all); finished cells are always kept in the CSV.
    dry_run : list what would run, train nothing.
    data_root : data folder for evaluation (default: the first cell's ``data.root``).
    deadline : a time (seconds since the epoch) by which every started cell should have finished; a cell is
        not started when the cells already run in this invocation predict it would end later (seconds per
        epoch trained, plus evaluation), and none is started after it. Skipped cells are logged and stay
        unfinished (a later invocation runs them).

    Returns
    -------
    The records of the finished cells, in sweep order. Writes ``<results_dir>/<name>.csv`` after every cell and
    appends this invocation (command, start, end, wall seconds, cells run) to ``<results_dir>/<name>.meta.json``.

    Raises
    ------
    SweepError
        If ``only`` names an unknown cell.
    """
    from dermoseg.experiments.collect import load_eval_set
    opts = sweep.options
    names = [c.name for c in sweep.cells]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise SweepError(f"unknown cell(s) {', '.join(unknown)}; this sweep has {', '.join(names)}")
    runs_dir = Path(opts["runs_dir"]) / sweep.name
    results_csv = Path(opts["results_dir"]) / f"{sweep.name}.csv"
    meta_path = Path(opts["results_dir"]) / f"{sweep.name}.meta.json"
    done: dict[str, dict] = {}
    committed = 0
    for c in sweep.cells:
        marker = runs_dir / c.name / "cell.json"
        if marker.is_file():
            done[c.name] = json.loads(marker.read_text(encoding="utf-8"))
        elif (record := _committed_record(c, sweep)) is not None:  # kept in the CSV, not run again
            done[c.name] = record
            committed += 1
    todo = [c for c in sweep.cells if c.name not in done and (not only or c.name in only)]
    log(f"sweep {sweep.name}: {len(sweep.cells)} cells, {len(done)} finished"
        + (f" ({committed} known from the committed results in {opts['results_dir']})" if committed else "")
        + f", {len(todo)} to run")
    if dry_run:
        for c in todo:
            log(f"  would run {c.name}: {c.settings}")
        return [done[n] for n in names if n in done]
    root = data_root or sweep.cells[0].config["data"]["root"]
    cache: dict[str, Any] = {}

    def eval_sets(set_name: str):
        if set_name not in cache:
            cache[set_name] = load_eval_set(set_name, root)
        return cache[set_name]

    invocation = {"command": "dermoseg " + " ".join(sys.argv[1:]) if sys.argv and "dermoseg" in sys.argv[0] else None,
                  "started": time.strftime("%Y-%m-%d %H:%M:%S"), "cells_run": [],
                  "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    start = time.time()
    per_epoch: list[float] = []
    eval_walls: list[float] = []
    invocation["cells_skipped_for_deadline"] = []
    try:
        for c in todo:
            if deadline is not None:
                n = _epochs_to_train(c, done, sweep)
                guess = (float(np.mean(per_epoch)) * n + float(np.mean(eval_walls))) if per_epoch else 0.0
                if time.time() + guess > deadline:
                    log(f"[{c.name}] skipped: would end after the deadline (estimated {guess / 60:.1f} min)")
                    invocation["cells_skipped_for_deadline"].append(c.name)
                    continue
            log(f"[{c.name}] training {c.settings}")
            done[c.name] = run_cell(c, sweep, eval_sets, done, log)
            n = _epochs_to_train(c, {k: v for k, v in done.items() if k != c.name}, sweep)
            per_epoch.append(float(done[c.name]["train_wall_s"]) / max(1, n))
            eval_walls.append(float(done[c.name]["eval_wall_s"]))
            invocation["cells_run"].append(c.name)
            write_results_csv(results_csv, [done[n] for n in names if n in done])
    finally:
        invocation.update({"ended": time.strftime("%Y-%m-%d %H:%M:%S"), "wall_s": round(time.time() - start, 1)})
        history = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {"invocations": []}
        history["sweep_file"] = str(sweep.path)
        history["invocations"].append(invocation)
        if invocation["cells_run"] or not meta_path.is_file():
            from dermoseg.io import write_text
            write_text(meta_path, json.dumps(history, indent=2) + "\n")
    if done:
        write_results_csv(results_csv, [done[n] for n in names if n in done])
    return [done[n] for n in names if n in done]
