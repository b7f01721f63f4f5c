"""Per-image Dice: median, 10th percentile and failures (Jaccard < 0.65) per run and set, with box plots.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from dermoseg.metrics import THRESHOLDED_JACCARD_CUTOFF
from dermoseg.report.figures import plot_distributions
from dermoseg.report.results import FIGURES, Results, md_table


def section(spec: Mapping[str, Any], res: Results) -> str:
    """Markdown table (median, 10th percentile, failures) and box plots of per-image Dice."""
    d = spec.get("distributions")
    out = ["## Per-image Dice and failures (Jaccard < 0.65)", ""]
    if not d:
        return "\n".join(out + ["_Not configured._", ""])
    data: dict[str, dict[str, list[float]]] = {}
    rows = []
    for name in d["runs"]:
        rec = res.run(name)
        row = [res.label(name, rec)]
        for set_name in d["sets"]:
            pi = res.per_image(name, set_name) if rec else None
            if pi:
                dice = [float(r["dice"]) for r in pi]
                data.setdefault(set_name, {})[res.label(name, rec)] = dice
                fails = sum(float(r["jaccard"]) < THRESHOLDED_JACCARD_CUTOFF for r in pi)
                row += [f"{np.median(dice):.3f}", f"{np.percentile(dice, 10):.3f}", f"{fails} / {len(pi)} ({100 * fails / len(pi):.1f}%)"]
            else:
                row += ["_missing_", "—", "—"]
        rows.append(row)
    header = ["model"] + [f"{s}: {k}" for s in d["sets"] for k in ("median Dice", "10th pct. Dice", "failures")]
    if any(data.values()):
        plot_distributions(data, res.fig_dir / d["file"])
        out += [f"![per-image Dice]({FIGURES}/{d['file']})", ""]
    out += [md_table(header, rows), ""]
    return "\n".join(out)
