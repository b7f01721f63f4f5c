"""The per-image quality flag: failures caught at 10% flagged, rank correlation and AUROC beside the flip-TTA
agreement baseline, the signal sets tried, and a reliability plot of quality vs real Jaccard.

Inputs (written by ``dermoseg evaluate-quality``): ``<dir>/summary.json`` and ``<dir>/<set>_quality.csv``.
"""

from __future__ import annotations

from typing import Any, Mapping

from dermoseg.report.figures import plot_reliability
from dermoseg.report.results import FIGURES, SET_TITLES, Results, fmt, md_table


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * float(value):.0f}%"


def section(spec: Mapping[str, Any], res: Results) -> str:
    """Markdown: per model (``quality.runs`` of the config), the detection table (quality vs baseline per set), the
    verdict against the bar, the signal sets tried and the reliability plot."""
    q = spec.get("quality")
    out = ["## Per-image quality flag (which masks to check by eye)", ""]
    if not q:
        return "\n".join(out + ["_Not configured._", ""])
    out += ["`quality` estimates each mask's Jaccard with the truth from signals of the flip-TTA passes and the image "
            "(`dermoseg.segmentation.quality`); `review` is true at or below the threshold that flags 10% of the ISIC "
            "validation split. A failure is an image with Jaccard < 0.65. The baseline is the mean pairwise Jaccard of "
            "the flip-TTA passes' masks. Fitted on the ISIC validation split only (its figures cross-fitted, 10-fold); "
            "PH2 was never used for a choice (its figures use the stored estimator and threshold).", ""]
    for run in q["runs"]:
        out += _model(run, q, res)
    return "\n".join(out)


def _model(run: Mapping[str, Any], q: Mapping[str, Any], res: Results) -> list[str]:
    out = [f"### {run['label']}", ""]
    summary = res.json_file(f"{run['dir']}/summary.json")
    if not summary:
        return out + [f"_Missing: `{run['dir']}/summary.json` (run `dermoseg evaluate-quality`)._", ""]
    out += [f"Model `{summary['model']}` (sha256 `{summary['model_sha256'][:12]}…`), review threshold "
            f"{summary['review_threshold']:.3f}; signals: {', '.join(summary['signals'])}. Commands: "
            f"`{run.get('commands', 'dermoseg fit-quality; dermoseg evaluate-quality')}`.", ""]
    rows, data = [], {}
    for set_name, fig in summary["sets"].items():
        qf, bf = fig["quality"], fig["baseline"]
        rows.append([f"{SET_TITLES.get(set_name, set_name)}: {fig['how']}", f"{qf['failures']} / {qf['images']}",
                     f"**{_pct(qf['caught_at_flagged'])}** / {_pct(bf['caught_at_flagged'])}",
                     f"{fmt(qf['spearman'])} / {fmt(bf['spearman'])}", f"{fmt(qf['auroc'])} / {fmt(bf['auroc'])}",
                     f"{_pct(qf.get('flagged_at_threshold'))} flagged, {_pct(qf.get('caught_at_threshold'))} caught"])
        per_image = res.csv_rows(f"{run['dir']}/{set_name}_quality.csv")
        if per_image:
            data[f"{SET_TITLES.get(set_name, set_name)}: {fig['how']}"] = (
                [float(r["quality"]) for r in per_image], [float(r["jaccard"]) for r in per_image])
    caught = {name: fig["quality"]["caught_at_flagged"] for name, fig in summary["sets"].items()}
    bar, goal = q.get("bar", 0.7), q.get("goal", 0.8)
    verdict = "met" if min(caught.values()) >= bar else "**not met**"
    out += [f"Bar: at least {_pct(bar)} of failures caught at 10% flagged on every set (goal {_pct(goal)}): {verdict} "
            f"({', '.join(f'{n} {_pct(v)}' for n, v in caught.items())}).", ""]
    out += [md_table(["set", "failures", "caught at 10% flagged: quality / baseline", "Spearman: quality / baseline",
                      "AUROC (failure): quality / baseline", "stored threshold"], rows), ""]
    if summary.get("variants"):
        out += ["Signal sets tried (cross-fitted on the ISIC validation split; the fitted estimator uses the signals "
                "named above):", "",
                md_table(["signals", "caught at 10% flagged", "Spearman", "AUROC"],
                         [[label, _pct(v["caught_at_flagged"]), fmt(v["spearman"]), fmt(v["auroc"])]
                          for label, v in summary["variants"].items()]), ""]
    if data:
        plot_reliability(data, res.fig_dir / run["file"], summary["review_threshold"])
        out += [f"![quality vs real Jaccard, {run['label']}]({FIGURES}/{run['file']})", ""]
    return out
