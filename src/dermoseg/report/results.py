"""Inputs and vocabulary shared by every report section: the results folder (:class:`Results`), number and
Markdown table formatting, and the names of figures, metrics and evaluation sets.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Mapping

FIGURES = "figures"
METRIC_COLUMNS = (("pixel_accuracy", "pixel acc."), ("dice", "Dice"), ("jaccard", "Jaccard"),
                  ("thresholded_jaccard", "thr. Jaccard"), ("sensitivity", "sensitivity"),
                  ("specificity", "specificity"))
SET_TITLES = {"isic2018_val": "ISIC 2018 validation split", "ph2": "PH2 (all 200)", "isic2018_train": "ISIC 2018 train split"}


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a Markdown table: floats with ``digits`` decimals, ints with thousands separators,
    None/NaN as an em dash."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.{digits}f}"
    try:
        return fmt(float(value), digits)
    except (TypeError, ValueError):
        return str(value)


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured Markdown table (cells already formatted or passed through :func:`fmt`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in r) + " |")
    return "\n".join(lines)


def model_key(model_cfg: Mapping[str, Any], image_size: int) -> str:
    """A short key naming a network kind at an input size, shared by the report and
    ``benchmarks/throughput.py``: ``unet@128``, ``codec-paper@128``, ``codec-mobilenet_v2@256``."""
    arch = model_cfg.get("architecture", "codec")
    kind = "unet" if arch == "unet" else f"codec-{model_cfg.get('encoder', 'mobilenet_v2')}"
    return f"{kind}@{int(image_size)}"


def number(value: Any) -> float | None:
    """``value`` as a float, or None when it is empty, not a number or NaN."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


class Results:
    """Read-only access to a results folder; every getter returns None (and records why in ``missing``) when
    its input is absent."""

    def __init__(self, root: str | Path, labels: Mapping[str, str] | None = None, data_root: str | Path | None = None):
        self.root = Path(root)
        self.fig_dir = self.root / FIGURES
        self.data_root = data_root
        self.labels = dict(labels or {})  # run name -> label of the main table
        self.missing: list[str] = []
        self.kept: list[str] = []  # committed outputs shown as they were, because they could not be remade
        self._runs: dict[str, dict | None] = {}

    def note_missing(self, what: str) -> None:
        """Record a missing input once (listed at the end of the report)."""
        if what not in self.missing:
            self.missing.append(what)

    def note_kept(self, what: str) -> None:
        """Record a committed output shown without being remade (said on stderr by ``write_report``)."""
        if what not in self.kept:
            self.kept.append(what)

    def run(self, name: str) -> dict | None:
        """``run.json`` of a run, or None."""
        if name not in self._runs:
            path = self.root / "runs" / name / "run.json"
            self._runs[name] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
            if self._runs[name] is None:
                self.note_missing(f"run `{name}` (no {path.relative_to(self.root)})")
        return self._runs[name]

    def log(self, name: str) -> list[dict] | None:
        """Per-epoch training log of a run (:func:`dermoseg.experiments.logs.read_epoch_log`), or None."""
        from dermoseg.experiments.logs import LogError, read_epoch_log
        path = self.root / "runs" / name / "metrics.csv"
        try:
            return read_epoch_log(path)
        except LogError:
            self.note_missing(f"training log of `{name}` ({path.relative_to(self.root)})")
            return None

    def summary(self, name: str, set_name: str) -> dict | None:
        """``summary.json`` of a run on a set, or None."""
        path = self.root / "runs" / name / "eval" / set_name / "summary.json"
        if not path.is_file():
            self.note_missing(f"evaluation of `{name}` on {set_name} ({path.relative_to(self.root)})")
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def per_image(self, name: str, set_name: str) -> list[dict] | None:
        """Rows of ``per_image.csv`` of a run on a set, or None."""
        from dermoseg.experiments.collect import CollectError, read_per_image
        path = self.root / "runs" / name / "eval" / set_name / "per_image.csv"
        try:
            return read_per_image(path)
        except CollectError:
            self.note_missing(f"per-image results of `{name}` on {set_name} ({path.relative_to(self.root)})")
            return None

    def csv_rows(self, file_name: str) -> list[dict[str, str]] | None:
        """Rows of a CSV in the results folder, or None."""
        path = self.root / file_name
        if not path.is_file():
            self.note_missing(f"`{file_name}`")
            return None
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    def json_file(self, file_name: str) -> dict | None:
        """A JSON file of the results folder, or None."""
        path = self.root / file_name
        if not path.is_file():
            self.note_missing(f"`{file_name}`")
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def label(self, spec_item: Mapping[str, Any] | str, record: Mapping[str, Any] | None) -> str:
        """How a run is named in tables and figures: the spec item's ``label``, else the run record's, else the
        main table's label of that run, else the run name."""
        if isinstance(spec_item, Mapping) and spec_item.get("label"):
            return str(spec_item["label"])
        name = spec_item["run"] if isinstance(spec_item, Mapping) else spec_item
        if (record or {}).get("label") and record.get("label") != name:
            return str(record["label"])
        return self.labels.get(name, name)


OLD_SCORE_MARK = "(P(MEL))"


def melanoma_vs_nevus_cell(summary: Mapping[str, Any] | None) -> str:
    """A set's melanoma-vs-nevus AUC as a table cell, marked when it was scored on the plain P(MEL) (every
    summary written before session 14; those written before the external sets joined evaluate-diagnosis keep it
    at the top level); a dash when the set was not scored."""
    if not summary:
        return "—"
    mn = summary.get("melanoma_vs_nevus") or summary
    if mn.get("auc") is None:
        return "—"
    plain = "P(MEL) /" not in str(mn.get("score", ""))
    return f"{fmt(mn['auc'])} {OLD_SCORE_MARK}" if plain else fmt(mn["auc"])
