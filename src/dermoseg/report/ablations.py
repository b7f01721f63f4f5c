"""The ablations: one row per pair of runs that differ in one thing, A and B side by side with B − A.
"""

from __future__ import annotations

from typing import Any, Mapping

from dermoseg.report.results import Results, fmt, md_table


def section(spec: Mapping[str, Any], res: Results) -> str:
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
