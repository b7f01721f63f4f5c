"""Every variant tried for a better shipped model, with its validation figures, the ones that did not help
included (issues 12, 13 and 16): segmentation runs (``runs/<run>/run.json`` and their evaluations, from
``dermoseg report --import``) and classifiers (the ``summary.json`` files ``dermoseg evaluate-diagnosis`` wrote
under ``<dir>/<set>/``). The choice column is read from the configuration, where the reason is written down;
external test sets are shown, never used to choose.
"""

from __future__ import annotations

from typing import Any, Mapping

from dermoseg.report.results import OLD_SCORE_MARK, Results, fmt, md_table, melanoma_vs_nevus_cell


def _minutes(seconds: Any) -> str:
    return "—" if seconds in (None, "") else f"{float(seconds) / 60:.0f}"


def _segmentation(v: Mapping[str, Any], res: Results) -> list[str]:
    bar = v.get("bar", {})
    out = [f"**Segmentation** (`dermoseg evaluate --dataset isic2018 --split val` and `--dataset ph2`, each model "
           f"with its own default test-time augmentation). Issue 12's first bar: validation Dice ≥ "
           f"{fmt(bar.get('dice'))}, thresholded Jaccard ≥ {fmt(bar.get('thresholded_jaccard'))}, PH2 Dice ≥ "
           f"{fmt(bar.get('ph2_dice'))}. PH2 is an external test: shown, never used to choose.", ""]
    rows = []
    for r in v["rows"]:
        run = res.run(r["run"])
        val = res.summary(r["run"], "isic2018_val") if run else None
        ph2 = res.summary(r["run"], "ph2") if run else None
        rows.append([r.get("label", r["run"]), fmt(run.get("image_size")) if run else "—",
                     fmt(run.get("epochs_completed")) if run else "—", _minutes(run.get("train_wall_s")) if run else "—",
                     fmt(val["dice"]) if val else "_missing_", fmt(val["thresholded_jaccard"]) if val else "_missing_",
                     (f"{val['failures_jaccard_below_0.65']} / {val['images']}" if val else "—"),
                     fmt(ph2["dice"]) if ph2 else "—", r.get("verdict", "")])
    out += [md_table(["variant", "input px", "epochs", "train min", "val Dice", "val thr. Jaccard",
                      "val failures (J < 0.65)", "PH2 Dice", "verdict"], rows), ""]
    return out


def _classification(v: Mapping[str, Any], res: Results) -> list[str]:
    bar = v.get("bar", {})
    out = ["**Classification** (`dermoseg evaluate-diagnosis --model FILE`). Issue 13's first bar: validation "
           f"balanced accuracy ≥ {fmt(bar.get('balanced_accuracy'))} and melanoma AUC ≥ {fmt(bar.get('melanoma_auc'))}; "
           f"melanoma-vs-nevus AUC ≥ {fmt(bar.get('isic2018_task1_auc'))} on the ISIC 2018 Task 1 images and ≥ "
           f"{fmt(bar.get('ph2_auc'))} on PH2. The two external sets are shown, never used to choose.", ""]
    rows = []
    for r in v["rows"]:
        # the validation split is required; an external set a variant was not scored on is shown as a dash
        sets = {s: res.json_file(f"{r['dir']}/{s}/summary.json")
                if s == "ham10000_val" or (res.root / r["dir"] / s / "summary.json").is_file() else None
                for s in ("ham10000_val", "isic2018_task1", "ph2")}
        val = sets["ham10000_val"] or {}
        auc = {s: melanoma_vs_nevus_cell(sets[s]) for s in ("isic2018_task1", "ph2")}
        rows.append([r["label"], fmt(val.get("balanced_accuracy")), fmt(val.get("melanoma_auc")),
                     auc["isic2018_task1"], auc["ph2"], r.get("verdict", "")])
    out += [md_table(["variant", "val balanced accuracy", "val melanoma AUC", "ISIC Task 1 MEL-vs-NV AUC",
                      "PH2 MEL-vs-NV AUC", "verdict"], rows), "",
            f"Melanoma-vs-nevus AUCs marked {OLD_SCORE_MARK} were scored on the plain P(MEL), before session 14 chose "
            "P(MEL) / (P(MEL) + P(NV)) on the validation split; the others on that score.", ""]
    return out



def section(spec: Mapping[str, Any], res: Results) -> str:
    """Markdown: one table per wing, one row per variant tried, with its validation figures and the verdict."""
    v = spec.get("variants")
    out = ["## Variants tried for better shipped models", ""]
    if not v:
        return "\n".join(out + ["_Not configured._", ""])
    if v.get("segmentation"):
        out += _segmentation(v["segmentation"], res)
    if v.get("classification"):
        out += _classification(v["classification"], res)
    return "\n".join(out)
