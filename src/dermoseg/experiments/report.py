"""The reproduction report: ``docs/results/README.md`` and its PNG figures, written from committed files only.

Inputs (all under the results folder, laid out by :mod:`dermoseg.experiments.collect`): ``runs/<run>/run.json``,
``runs/<run>/metrics.csv``, ``runs/<run>/eval/<set>/{summary.json,per_image.csv,worst/}``, the sweep CSVs and
their ``.meta.json``, ``throughput.json`` (``benchmarks/throughput.py``), ``manual_runs.csv`` and the
hand-written ``reproduction.md``. What to show, and the paper's and the literature's figures, come from
``configs/report.yaml``. Nothing is trained or evaluated here; a missing input is named in the report, in the
place where it would have been, and listed at the end. Only the overlay sheets of the worst cases read the data
folder (for the images and ground truths); without it, a sheet already in ``figures/`` is kept and said to be.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from dermoseg.config import ConfigError, read_yaml_mapping
from dermoseg.experiments.collect import WORST_FILE, read_worst_masks
from dermoseg.io import write_figure

FIGURES = "figures"
METRIC_COLUMNS = (("pixel_accuracy", "pixel acc."), ("dice", "Dice"), ("jaccard", "Jaccard"),
                  ("thresholded_jaccard", "thr. Jaccard"), ("sensitivity", "sensitivity"),
                  ("specificity", "specificity"))
SET_TITLES = {"isic2018_val": "ISIC 2018 validation split", "ph2": "PH2 (all 200)", "isic2018_train": "ISIC 2018 train split"}
PRED_COLOR, TRUTH_COLOR = (0, 255, 0), (255, 0, 255)
REPORT_DEFAULTS: dict[str, Any] = {"results_dir": "docs/results", "title": "Reproduction report", "notes": None,
                                   "main_table": {"sets": ["isic2018_val", "ph2"], "runs": []}, "paper_claims": [],
                                   "literature": [], "curves": [], "distributions": None, "worst_cases": None,
                                   "ablations": None, "grid": None, "throughput": "throughput.json",
                                   "manual_runs": "manual_runs.csv"}


class ReportError(ConfigError):
    """The report configuration is missing or malformed; the message names the file and key."""


def load_report_config(path: str | Path) -> dict[str, Any]:
    """Read ``configs/report.yaml`` over :data:`REPORT_DEFAULTS`.

    Raises
    ------
    ReportError
        If the file is missing, not a YAML mapping, or a run list is not a list.
    """
    path = Path(path)
    raw = read_yaml_mapping(path, "report config", ReportError)
    spec = {**REPORT_DEFAULTS, **raw}
    if not isinstance(spec["main_table"].get("runs", []), list):
        raise ReportError(f"{path}: main_table.runs must be a list")
    return spec


# --------------------------------------------------------------------------------------------- formatting
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


# ------------------------------------------------------------------------------------------------ inputs
class Results:
    """Read-only access to a results folder; every getter returns None (and records why in ``missing``) when
    its input is absent."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.missing: list[str] = []
        self._runs: dict[str, dict | None] = {}

    def note_missing(self, what: str) -> None:
        """Record a missing input once (listed at the end of the report)."""
        if what not in self.missing:
            self.missing.append(what)

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


_LABELS: dict[str, str] = {}  # run name -> label of the main table (set by write_report)


def _label(spec_item: Mapping[str, Any] | str, record: Mapping[str, Any] | None) -> str:
    if isinstance(spec_item, Mapping) and spec_item.get("label"):
        return str(spec_item["label"])
    name = spec_item["run"] if isinstance(spec_item, Mapping) else spec_item
    if (record or {}).get("label") and record.get("label") != name:
        return str(record["label"])
    return _LABELS.get(name, name)


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


# ----------------------------------------------------------------------------------------------- figures
def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_curves(logs: Mapping[str, list[dict]], out_png: str | Path, title: str) -> Path:
    """Training (dashed) and validation (solid) loss, Dice and pixel accuracy per epoch, one colour per run.

    Parameters
    ----------
    logs : label → per-epoch records (:func:`dermoseg.experiments.logs.read_epoch_log`).
    out_png : figure path (PNG, 150 dpi).

    Returns
    -------
    ``out_png``.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, (metric, name) in zip(axes, (("loss", "loss"), ("dice", "Dice (0.5 threshold)"), ("pixel_accuracy", "pixel accuracy"))):
        for i, (label, records) in enumerate(logs.items()):
            color = f"C{i}"
            for stage, style in (("train", "--"), ("val", "-")):
                pts = [(r["epoch"], r[f"{stage}_{metric}"]) for r in records if f"{stage}_{metric}" in r]
                if pts:
                    ax.plot(*zip(*pts), style, color=color, marker="o", ms=3, label=f"{label} ({stage})")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    # one legend entry per run (its colour), under the panels, so long run labels cover no axis
    handles = [plt.Line2D([], [], color=f"C{i}", marker="o", ms=3, label=label) for i, label in enumerate(logs)]
    ncol = max(1, min(2, len(handles)))
    legend_rows = -(-len(handles) // ncol)
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(title + "  —  dashed: training, solid: validation (ISIC split, training resolution)")
    fig.tight_layout(rect=(0, 0.02 + 0.06 * legend_rows, 1, 1))
    return write_figure(out_png, fig, dpi=150)


def plot_distributions(per_image: Mapping[str, Mapping[str, list[float]]], out_png: str | Path) -> Path:
    """Box plots (with the points) of per-image Dice, one panel per evaluation set, one box per model.

    Parameters
    ----------
    per_image : set name → {model label → per-image Dice values in [0, 1]}.
    """
    plt = _plt()
    sets = [s for s in per_image if per_image[s]]
    fig, axes = plt.subplots(1, max(1, len(sets)), figsize=(7 * max(1, len(sets)), 4.8), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, set_name in zip(axes[0], sets):
        labels = list(per_image[set_name])
        data = [per_image[set_name][k] for k in labels]
        ax.boxplot(data, showfliers=False)
        for i, values in enumerate(data, start=1):
            ax.plot(i + rng.uniform(-0.15, 0.15, len(values)), values, ".", alpha=0.25, ms=3, color=f"C{i - 1}")
        ax.set_xticks(range(1, len(labels) + 1), [lbl.replace(", ", ",\n") for lbl in labels], fontsize=7)
        ax.set_ylabel("per-image Dice")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(SET_TITLES.get(set_name, set_name))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return write_figure(out_png, fig, dpi=150)


def overlay_sheet(items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float]], out_png: str | Path,
                  title: str, columns: int = 4, thumb: int = 256) -> Path:
    """A sheet of overlays: prediction contour in green, ground truth in magenta
    (:func:`dermoseg.segmentation.job.draw_overlay`).

    Parameters
    ----------
    items : ``(image id, image (H, W, 3) uint8, predicted (H, W) bool, truth (H, W) bool, Dice)``; the mask
        is resized (nearest) to the image's size when it differs.
    """
    import cv2

    from dermoseg.segmentation.job import draw_overlay
    plt = _plt()
    rows = max(1, math.ceil(len(items) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (image_id, image, pred, truth, dice) in zip(axes.ravel(), items):
        h, w = image.shape[:2]
        if pred.shape != (h, w):
            pred = cv2.resize(pred.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        over = draw_overlay(image, pred, PRED_COLOR, truth=truth, truth_color=TRUTH_COLOR)
        ax.imshow(cv2.resize(over, (thumb, round(thumb * h / w)), interpolation=cv2.INTER_AREA))
        ax.set_title(f"{image_id}  Dice {dice:.2f}", fontsize=8)
    fig.suptitle(title + "\ngreen: prediction, magenta: ground truth", fontsize=10)
    fig.tight_layout()
    return write_figure(out_png, fig, dpi=110)


def plot_grid(rows: list[dict[str, Any]], paper: list[Mapping[str, Any]], paper_epochs: list[int], out_png: str | Path) -> Path:
    """Table 1 as lines: ours (ISIC validation Dice and PH2 pixel accuracy) and the paper's test accuracy
    against epochs, one colour per (batch size, learning rate)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3))
    combos = sorted({(int(float(r["batch_size"])), float(r["lr"])) for r in rows})
    for i, (bs, lr) in enumerate(combos):
        sel = sorted((r for r in rows if int(float(r["batch_size"])) == bs and float(r["lr"]) == lr), key=lambda r: int(float(r["epochs"])))
        ep = [int(float(r["epochs"])) for r in sel]
        for ax, key in zip(axes[:2], ("isic2018_val_dice", "ph2_pixel_accuracy")):
            vals = [_num(r.get(key)) for r in sel]
            if any(v is not None for v in vals):
                ax.plot(ep, [np.nan if v is None else v for v in vals], "-o", color=f"C{i}", label=f"batch {bs}, lr {lr:g}")
        for p in paper:
            if int(p["batch_size"]) == bs and float(p["lr"]) == lr:
                axes[2].plot(paper_epochs, p["test"], "--s", color=f"C{i}", label=f"paper: batch {bs}, lr {lr:g}")
    for ax, t in zip(axes, ("ours: ISIC validation Dice", "ours: PH2 pixel accuracy", "paper Table 1: test accuracy")):
        ax.set_title(t)
        ax.set_xlabel("epochs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return write_figure(out_png, fig, dpi=150)


# ---------------------------------------------------------------------------------------------- sections
def _train_split_size() -> int | None:
    try:
        from dermoseg.data.splits import ISIC_SPLIT, read_split
        return sum(v == "train" for v in read_split(ISIC_SPLIT).values())
    except Exception:  # the committed split is optional for the report
        return None


def budget(rec: Mapping[str, Any]) -> str:
    """One line saying how a run was trained: input size, training images, epochs (those completed when a time
    limit stopped it first), batch, optimiser, loss, which checkpoint, and the training wall time."""
    cfg = rec.get("config") or {}
    if not cfg:
        return "training settings not recorded"
    data, tr, opt = cfg.get("data", {}), cfg.get("trainer", {}), cfg.get("optimizer", {})
    total = _train_split_size()
    n = data.get("train_subset")
    images = f"{n} of {total}" if n and total else (f"{n}" if n else f"all {total or ''}".strip())
    wall = rec.get("train_wall_cumulative_s") or rec.get("train_wall_s")
    done = rec.get("epochs_completed")
    epochs = (f"stopped by its time limit in epoch {done} of {tr.get('epochs')}"
              if done is not None and tr.get("epochs") is not None and int(done) < int(tr["epochs"])
              else f"{tr.get('epochs')} epochs")
    return (f"{data.get('image_size')} px, {images} ISIC training images, {epochs}, batch "
            f"{tr.get('batch_size')}, {opt.get('name', 'adam')} lr {opt.get('lr')} ({opt.get('scheduler', 'none')} "
            f"schedule), loss {cfg.get('loss', {}).get('name')}, model: {evaluated(rec)}"
            + (f", per-epoch validation curve on {data['val_subset']} validation images" if data.get("val_subset") else "")
            + (f", {float(wall) / 60:.1f} min training" if wall else ""))


def evaluated(rec: Mapping[str, Any]) -> str:
    """Which weights of a run were scored: the epoch recorded in the run (``evaluated_epoch``, 1-based) and the
    rule that picked it (``checkpoint``: ``last`` epoch or ``best`` validation Dice)."""
    rule = {"last": "the last saved epoch", "best": "the best validation-Dice epoch"}.get(rec.get("checkpoint"), "?")
    epoch = rec.get("evaluated_epoch")
    return f"weights after epoch {epoch} ({rule})" if epoch is not None else rule


def _throughput_index(tp: Mapping[str, Any] | None) -> dict[str, dict]:
    return {r["key"]: r for r in (tp or {}).get("results", []) if "key" in r}


def section_main(spec, res: Results, tp_index: dict[str, dict]) -> str:
    """Markdown: how each main-table run was trained, the table per evaluation set (metrics, size, CPU
    throughput), the paper's claims and the literature figures. Missing runs appear as ``_missing_`` rows."""
    main = spec["main_table"]
    out = ["## Main table: codec vs U-Net", ""]
    if not main.get("runs"):
        return "\n".join(out + ["_No runs configured in main_table.runs._", ""])
    out.append("Metrics per image at the image's own size (masks binarised at > 128), then averaged; failures = "
               "images with Jaccard < 0.65. Parameters and multiply-accumulates (MACs) at the model's input size; "
               "throughput from `benchmarks/throughput.py` on this machine (CPU).")
    out += ["", "How each was trained:", ""]
    for item in main["runs"]:
        name = item["run"] if isinstance(item, Mapping) else item
        rec = res.run(name)
        out.append(f"- {_label(item, rec)}: " + (budget(rec) if rec else "_missing_"))
    for set_name in main["sets"]:
        header = ["model", "input px", *(t for _, t in METRIC_COLUMNS), "failures", "params", "GMACs", "infer img/s", "train img/s"]
        rows = []
        for item in main["runs"]:
            name = item["run"] if isinstance(item, Mapping) else item
            rec = res.run(name)
            summ = res.summary(name, set_name) if rec else None
            if rec is None or summ is None:
                rows.append([_label(item, rec), "—", *(["_missing_"] + ["—"] * (len(header) - 3))])
                continue
            key = model_key(rec.get("config", {}).get("model", {}), rec.get("image_size", 0))
            tp = tp_index.get(key, {})
            if not tp:
                res.note_missing(f"throughput of `{key}` in {spec['throughput']}")
            rows.append([_label(item, rec), str(rec.get("image_size", "—")), *(summ.get(k) for k, _ in METRIC_COLUMNS),
                         f"{summ.get('failures_jaccard_below_0.65', '—')} / {summ.get('images', '—')}",
                         rec.get("parameters"), (rec.get("macs") or float("nan")) / 1e9,
                         fmt(tp.get("infer_img_s"), 1), fmt(tp.get("train_img_s"), 1)])
        out += ["", f"### {SET_TITLES.get(set_name, set_name)}", "", md_table(header, rows)]
    if spec.get("paper_claims"):
        out += ["", "### The paper's claims (pixel accuracy; train, and test on PH2)", "",
                md_table(["model (paper)", "train accuracy", "test accuracy"],
                         [[c["model"], fmt(c.get("train_accuracy"), 4), fmt(c.get("test_accuracy"), 4)] for c in spec["paper_claims"]])]
    if spec.get("literature"):
        out += ["", "### Reference figures from the literature (method.md; other splits, not comparable one to one)", "",
                md_table(["figure", "value"], [[x["what"], fmt(x["value"])] for x in spec["literature"]])]
    return "\n".join(out) + "\n"


def section_claims(spec, res: Results) -> str:
    """The paper's claims against ours, computed: codec vs U-Net differences and absolute levels."""
    out = ["## Claims checked (computed from the tables below)", ""]
    rows = []

    def metric(run, set_name, key):
        s = res.summary(run, set_name) if res.run(run) else None
        return None if s is None else s.get(key)

    pairs = [("comparison/codec_paper", "comparison/unet", "codec (paper extractor) vs U-Net, same reduced budget"),
             ("comparison/codec_mobilenet_v2", "comparison/unet", "codec (MobileNetV2) vs U-Net, same reduced budget")]
    for a, b, what in pairs:
        for set_name in ("ph2", "isic2018_val"):
            pa, pb = metric(a, set_name, "pixel_accuracy"), metric(b, set_name, "pixel_accuracy")
            da, db = metric(a, set_name, "dice"), metric(b, set_name, "dice")
            if None in (pa, pb, da, db):
                rows.append([f"{what}, {set_name}", "codec +0.061 pixel acc. (PH2)", "_missing_", "—"])
                continue
            rows.append([f"{what}, {set_name}", "codec +0.061 pixel acc. (0.908 vs 0.847, PH2)",
                         f"pixel acc. {pa:.3f} vs {pb:.3f} ({pa - pb:+.3f}); Dice {da:.3f} vs {db:.3f} ({da - db:+.3f})",
                         "yes" if pa > pb and da > db else ("mixed" if (pa > pb) != (da > db) else "no")])
    shipped = metric("codec_mobilenet_v2", "ph2", "pixel_accuracy")
    rows.append(["codec test pixel accuracy on PH2", "0.9382 (best Table 1 cell)", fmt(shipped, 4) + " (shipped codec)",
                 "—" if shipped is None else ("yes" if shipped >= 0.9382 else "no")])
    unet = metric("comparison/unet", "ph2", "pixel_accuracy")
    rows.append(["U-Net test pixel accuracy on PH2", "0.8471", fmt(unet, 4) + " (reduced budget)",
                 "—" if unet is None else ("yes, as low" if unet <= 0.8471 + 0.01 else "no: ours is higher")])
    grid = res.csv_rows(f"{spec['grid']['sweep']}.csv") if spec.get("grid") else None
    if grid:
        by_e: dict[int, list[float]] = {}
        for r in grid:
            v = _num(r.get("isic2018_val_dice"))
            if v is not None:
                by_e.setdefault(int(float(r["epochs"])), []).append(v)
        if by_e:
            means = {e: float(np.mean(v)) for e, v in sorted(by_e.items())}
            trend = " < ".join(f"{e} ep: {m:.3f}" for e, m in means.items())
            mono = all(a <= b for a, b in zip(list(means.values()), list(means.values())[1:]))
            rows.append(["more epochs give better results (Table 1)", "10 < 20 < 40 in every row",
                         f"mean ISIC val Dice over the 4 settings: {trend}", "yes" if mono else "no"])
    rec_c, rec_u = res.run("comparison/codec_paper"), res.run("comparison/unet")
    if rec_c and rec_u:
        rows.append(["codec is lighter than U-Net (depthwise-separable convolutions)", "implied (§3.2.1)",
                     f"{rec_c['parameters']:,} vs {rec_u['parameters']:,} parameters; {rec_c['macs'] / 1e9:.2f} vs "
                     f"{rec_u['macs'] / 1e9:.2f} GMACs at {rec_c['image_size']} px",
                     "yes" if rec_c["parameters"] < rec_u["parameters"] else "no"])
    out.append(md_table(["claim", "paper", "ours", "holds?"], rows))
    return "\n".join(out) + "\n"


def section_curves(spec, res: Results, fig_dir: Path) -> str:
    """Markdown and ``figures/<file>`` for each configured curve figure (:func:`plot_curves`)."""
    out = ["## Training and validation curves (paper Figs. 7–9)", ""]
    for c in spec.get("curves") or []:
        logs = {}
        for name in c["runs"]:
            rec, log = res.run(name), res.log(name)
            if log:
                logs[_label(name, rec)] = log
        if not logs:
            out += [f"_{c['title']}: no training logs available ({', '.join(c['runs'])})._", ""]
            continue
        plot_curves(logs, fig_dir / c["file"], c["title"])
        absent = [n for n in c["runs"] if _label(n, res.run(n)) not in logs]
        out += [f"![{c['title']}]({FIGURES}/{c['file']})", ""]
        if absent:
            out += [f"_Missing from this figure: {', '.join(absent)}._", ""]
    return "\n".join(out)


def section_distributions(spec, res: Results, fig_dir: Path) -> str:
    """Markdown table (median, 10th percentile, failures) and box plots of per-image Dice."""
    d = spec.get("distributions")
    out = ["## Per-image Dice and failures (Jaccard < 0.65)", ""]
    if not d:
        return "\n".join(out + ["_Not configured._", ""])
    data: dict[str, dict[str, list[float]]] = {}
    rows = []
    for name in d["runs"]:
        rec = res.run(name)
        row = [_label(name, rec)]
        for set_name in d["sets"]:
            pi = res.per_image(name, set_name) if rec else None
            if pi:
                dice = [float(r["dice"]) for r in pi]
                data.setdefault(set_name, {})[_label(name, rec)] = dice
                fails = sum(float(r["jaccard"]) < 0.65 for r in pi)
                row += [f"{np.median(dice):.3f}", f"{np.percentile(dice, 10):.3f}", f"{fails} / {len(pi)} ({100 * fails / len(pi):.1f}%)"]
            else:
                row += ["_missing_", "—", "—"]
        rows.append(row)
    header = ["model"] + [f"{s}: {k}" for s in d["sets"] for k in ("median Dice", "10th pct. Dice", "failures")]
    if any(data.values()):
        plot_distributions(data, fig_dir / d["file"])
        out += [f"![per-image Dice]({FIGURES}/{d['file']})", ""]
    out += [md_table(header, rows), ""]
    return "\n".join(out)


def section_worst(spec, res: Results, fig_dir: Path, data_root: str | Path | None) -> str:
    """Overlay sheets of the worst cases from the committed ``worst/`` masks and the data folder's images and
    truths; keeps an already committed sheet (and says so) when the data folder is absent."""
    w = spec.get("worst_cases")
    out = ["## The worst validation cases", ""]
    if not w:
        return "\n".join(out + ["_Not configured._", ""])
    from dermoseg.io import read_image, read_mask
    samples = None
    try:
        from dermoseg.data.evalsets import eval_set_samples
        samples = {s.image_id: s for s in eval_set_samples(w["set"], data_root)} if data_root else None
    except Exception as exc:  # the data folder is optional here: say so and keep what is committed
        reason = f"data not readable at {data_root} ({type(exc).__name__}: {exc})"
        samples = None
    else:
        reason = "" if samples else "no data folder given"
    for name in w["runs"]:
        rec = res.run(name)
        file = f"worst_{name.replace('/', '__')}.png"
        title = f"{_label(name, rec)}: {w['count']} worst {w['set']} cases by Dice"
        pi = res.per_image(name, w["set"]) if rec else None
        worst_file = res.root / "runs" / name / "eval" / w["set"] / WORST_FILE
        if pi and worst_file.is_file() and samples:
            by_id = {r["image_id"]: r for r in pi}
            items = []
            for image_id, pred in sorted(read_worst_masks(worst_file).items()):
                if image_id in samples and image_id in by_id:
                    s = samples[image_id]
                    items.append((image_id, read_image(s.image_path), pred, read_mask(s.mask_path, 0),
                                  float(by_id[image_id]["dice"])))
            items.sort(key=lambda t: (t[4], t[0]))
            items = items[: int(w["count"])]
            overlay_sheet(items, fig_dir / file, title)
            out += [f"![{title}]({FIGURES}/{file})", ""]
        elif (fig_dir / file).is_file():
            why = reason if not samples else "its predicted masks or per-image results are missing"
            out += [f"![{title}]({FIGURES}/{file})", "", f"_Sheet not regenerated ({why}); the committed one is shown._", ""]
        else:
            why = reason if not samples else f"no predicted masks in {mask_dir.relative_to(res.root) if mask_dir.is_relative_to(res.root) else mask_dir}"
            res.note_missing(f"overlay sheet of `{name}` ({why})")
            out += [f"_{title}: not available ({why})._", ""]
    return "\n".join(out)


def section_ablations(spec, res: Results) -> str:
    """Markdown: one row per ablation, A and B side by side with B − A, per evaluation set."""
    a = spec.get("ablations")
    out = ["## Ablations (one shared reduced budget; each row changes one thing)", ""]
    if not a:
        return "\n".join(out + ["_Not configured._", ""])
    header = ["what", "A", "B"] + [f"{s}: {m} A / B (B − A)" for s in a["set_order"] for m in ("Dice", "pixel acc.")] + ["params A / B"]
    rows = []
    for r in a["rows"]:
        ra, rb = res.run(r["a"]), res.run(r["b"])
        row = [r["what"], r.get("a_label", r["a"]), r.get("b_label", r["b"])]
        for s in a["set_order"]:
            sa = res.summary(r["a"], s) if ra else None
            sb = res.summary(r["b"], s) if rb else None
            for m in ("dice", "pixel_accuracy"):
                if sa and sb:
                    row.append(f"{sa[m]:.3f} / {sb[m]:.3f} ({sb[m] - sa[m]:+.3f})")
                else:
                    row.append("_missing_")
        row.append(f"{fmt(ra['parameters']) if ra else '—'} / {fmt(rb['parameters']) if rb else '—'}")
        rows.append(row)
    out += [md_table(header, rows), ""]
    return "\n".join(out)


def section_grid(spec, res: Results, fig_dir: Path) -> str:
    """Markdown and figure for the Table 1 grid: the reduced setting, the best cell, every cell beside the
    paper's train and test accuracy."""
    g = spec.get("grid")
    out = ["## Table 1 grid (epochs × batch size × learning rate)", ""]
    if not g:
        return "\n".join(out + ["_Not configured._", ""])
    rows = res.csv_rows(f"{g['sweep']}.csv")
    if not rows:
        return "\n".join(out + [f"_Missing: `{g['sweep']}.csv` (run `dermoseg sweep --config configs/{g['sweep']}.yaml`)._", ""])
    paper = {(int(p["batch_size"]), float(p["lr"])): p for p in g.get("paper_table", [])}
    pe = list(g.get("paper_epochs", [10, 20, 40]))
    key = g.get("rank_by", "isic2018_val_dice")
    ranked = [r for r in rows if _num(r.get(key)) is not None]
    best = max(ranked, key=lambda r: _num(r[key])) if ranked else None
    table = []
    for r in rows:
        e, bs, lr = int(float(r["epochs"])), int(float(r["batch_size"])), float(r["lr"])
        p = paper.get((bs, lr))
        pi = pe.index(e) if e in pe else None
        table.append([("**" + r["cell"] + "**") if r is best else r["cell"], str(e), str(bs), f"{lr:g}",
                      _num(r.get("isic2018_val_dice")), _num(r.get("isic2018_val_jaccard")),
                      _num(r.get("isic2018_val_thresholded_jaccard")), _num(r.get("isic2018_val_pixel_accuracy")),
                      _num(r.get("ph2_dice")), _num(r.get("ph2_pixel_accuracy")), _num(r.get("last_train_pixel_accuracy")),
                      fmt(p["train"][pi], 4) if p and pi is not None else "—", fmt(p["test"][pi], 4) if p and pi is not None else "—",
                      str(r.get("evaluated_epoch") or "?"), fmt(_num(r.get("train_wall_cumulative_s")), 0)])
    header = ["cell", "epochs", "batch", "lr", "ISIC val Dice", "Jaccard", "thr. Jaccard", "pixel acc.", "PH2 Dice",
              "PH2 pixel acc.", "train pixel acc. (last epoch)", "paper train acc.", "paper test acc.", "evaluated epoch", "train s (from scratch)"]
    first = res.run(f"{g['sweep']}/{rows[0]['cell']}")
    if first:
        cfg = first["config"]
        out.append(f"Reduced size: {cfg['data']['image_size']}×{cfg['data']['image_size']} px, "
                   f"{cfg['data'].get('train_subset') or 'all'} training images (fixed seeded subset of the ISIC "
                   f"training split), per-epoch validation curve on {cfg['data'].get('val_subset') or 'all'} validation "
                   f"images, encoder "
                   f"`{cfg['model'].get('encoder')}`, ASPP {cfg['model'].get('aspp_rates')}, loss `{cfg['loss']['name']}`, "
                   f"Adam, schedule `{cfg['optimizer'].get('scheduler')}`. Scored on the whole ISIC validation split and "
                   "all of PH2 at each image's own size.")
        out.append("")
        if any(int(float(r.get("evaluated_epoch") or 0)) < int(float(r["epochs"])) for r in rows):
            out += ["The grid was run before the fix of `last.ckpt` (until then Lightning rewrote it only in an epoch "
                    "whose ISIC validation Dice improved), so each cell was scored with the weights of its best "
                    "validation epoch (column *evaluated epoch*), not of its last: early stopping on the ISIC "
                    "validation split, which makes the ISIC validation figures optimistic. PH2 played no part in "
                    "the choice. A longer cell continued from that saved epoch of the shorter one and trained to "
                    "its own epoch count.", ""]
    if best:
        out.append(f"Best cell by {key}: **{best['cell']}** — ISIC val Dice {fmt(_num(best.get('isic2018_val_dice')))}, "
                   f"Jaccard {fmt(_num(best.get('isic2018_val_jaccard')))}, thresholded Jaccard "
                   f"{fmt(_num(best.get('isic2018_val_thresholded_jaccard')))}, pixel accuracy "
                   f"{fmt(_num(best.get('isic2018_val_pixel_accuracy')))}; PH2 Dice {fmt(_num(best.get('ph2_dice')))}, "
                   f"pixel accuracy {fmt(_num(best.get('ph2_pixel_accuracy')))}.")
        out.append("")
    if len(rows) < 12:
        out += [f"_Only {len(rows)} of the 12 cells are finished; the rest are missing._", ""]
        res.note_missing(f"{12 - len(rows)} Table 1 grid cells")
    plot_grid(rows, g.get("paper_table", []), pe, fig_dir / g["file"])
    out += [f"![Table 1 grid]({FIGURES}/{g['file']})", "", md_table(header, table), ""]
    return "\n".join(out)


def section_provenance(spec, res: Results) -> str:
    """Markdown: commands run by hand, sweep invocations (start, end, wall seconds, cells) and throughput."""
    out = ["## How these numbers were made: commands, wall times, reductions", ""]
    tp = res.json_file(spec["throughput"]) if spec.get("throughput") else None
    manual = res.csv_rows(spec["manual_runs"]) if spec.get("manual_runs") else None
    if manual:
        out += ["Commands run by hand (from `manual_runs.csv`):", "", md_table(list(manual[0].keys()), [list(r.values()) for r in manual]), ""]
    for name in sorted(p.stem.removesuffix(".meta") for p in res.root.glob("*.meta.json")):
        meta = json.loads((res.root / f"{name}.meta.json").read_text(encoding="utf-8"))
        rows = [[i.get("command") or "—", i.get("started"), i.get("ended"), fmt(i.get("wall_s"), 0), ", ".join(i.get("cells_run", [])) or "none"]
                for i in meta.get("invocations", [])]
        out += [f"Sweep `{name}` (`{meta.get('sweep_file')}`):", "", md_table(["command", "started", "ended", "wall s", "cells trained"], rows), ""]
    if tp:
        out += [f"Throughput (`{spec['throughput']}`, {tp.get('machine', '?')}, {tp.get('threads', '?')} threads, "
                f"load average at start {tp.get('load_average', '?')}): command `{tp.get('command', '?')}`.", "",
                md_table(["model", "train img/s", "infer img/s", "batch"],
                         [[r["key"], fmt(r.get("train_img_s"), 2), fmt(r.get("infer_img_s"), 2), str(r.get("batch_size"))] for r in tp.get("results", [])]), ""]
        if tp.get("ratios"):
            out += ["Ratios: " + "; ".join(f"{k} {v:.2f}" for k, v in tp["ratios"].items()), ""]
    return "\n".join(out)


def write_report(spec: Mapping[str, Any], results_dir: str | Path, data_root: str | Path | None = None) -> Path:
    """Write ``README.md`` and ``figures/*.png`` in ``results_dir`` from its committed contents.

    Parameters
    ----------
    spec : from :func:`load_report_config`.
    results_dir : the results folder (``docs/results``); created if absent.
    data_root : data folder for the overlay sheets (images and truths); optional.

    Returns
    -------
    Path of the README written. Missing inputs never raise: they are named in the report.
    """
    from dermoseg.io import write_text
    root = Path(results_dir)
    root.mkdir(parents=True, exist_ok=True)
    fig_dir = root / FIGURES
    res = Results(root)
    _LABELS.clear()
    _LABELS.update({i["run"]: i["label"] for i in spec["main_table"].get("runs", []) if isinstance(i, Mapping) and i.get("label")})
    tp = res.json_file(spec["throughput"]) if spec.get("throughput") else None
    parts = [f"# {spec['title']}", "",
             "_Generated by `dermoseg report` from the files in this folder; do not edit by hand (edit "
             f"`{spec.get('notes') or 'reproduction.md'}` and `configs/report.yaml`). Regenerate with_ "
             "`dermoseg report`.", ""]
    notes = root / spec["notes"] if spec.get("notes") else None
    if notes and notes.is_file():
        parts += [notes.read_text(encoding="utf-8").strip(), ""]
    else:
        parts += ["## Reproduction", "", f"_No hand-written verdict yet ({spec.get('notes')} missing)._", ""]
        if spec.get("notes"):
            res.note_missing(f"`{spec['notes']}` (hand-written verdict)")
    parts += [section_claims(spec, res), section_main(spec, res, _throughput_index(tp)), section_curves(spec, res, fig_dir),
              section_distributions(spec, res, fig_dir), section_worst(spec, res, fig_dir, data_root),
              section_grid(spec, res, fig_dir), section_ablations(spec, res), section_provenance(spec, res)]
    parts += ["## Missing inputs", ""]
    parts += [f"- {m}" for m in res.missing] if res.missing else ["None: every input of this report was found."]
    parts += ["", "Data: ISIC 2018 Task 1 (Codella et al. 2019, arXiv:1902.03368; CC BY-NC) and PH2 (Mendonça et al., "
              "IEEE EMBC 2013), as provided in `../shared/data` (ISIC images resized to 512×512; see its README).", ""]
    return write_text(root / "README.md", "\n".join(parts))
