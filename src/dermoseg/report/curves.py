"""Training and validation curves of the configured runs (paper Figs. 7–9).
"""

from __future__ import annotations

from typing import Any, Mapping

from dermoseg.report.figures import plot_curves
from dermoseg.report.results import FIGURES, Results


def section(spec: Mapping[str, Any], res: Results) -> str:
    """Markdown and ``figures/<file>`` for each configured curve figure (:func:`plot_curves`)."""
    out = ["## Training and validation curves (paper Figs. 7–9)", ""]
    for c in spec.get("curves") or []:
        logs = {}
        for name in c["runs"]:
            rec, log = res.run(name), res.log(name)
            if log:
                logs[res.label(name, rec)] = log
        if not logs:
            out += [f"_{c['title']}: no training logs available ({', '.join(c['runs'])})._", ""]
            continue
        plot_curves(logs, res.fig_dir / c["file"], c["title"])
        absent = [n for n in c["runs"] if res.label(n, res.run(n)) not in logs]
        out += [f"![{c['title']}]({FIGURES}/{c['file']})", ""]
        if absent:
            out += [f"_Missing from this figure: {', '.join(absent)}._", ""]
    return "\n".join(out)
