"""The paper's claims against ours, computed from the evaluations (the paper's figures come from
``configs/report.yaml``).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from dermoseg.report.results import Results, fmt, md_table, number


def _paper(spec: Mapping[str, Any], model: str) -> float:
    """The paper's test (PH2) pixel accuracy of a ``paper_claims`` row, by its ``model`` name."""
    return float(next(c for c in spec["paper_claims"] if c["model"] == model)["test_accuracy"])


def section(spec: Mapping[str, Any], res: Results) -> str:
    """Markdown: the paper's claims (``claims`` in ``configs/report.yaml``, figures from its ``paper_claims``)
    against ours: codec vs U-Net differences, absolute levels, more epochs (the grid) and model size."""
    out = ["## Claims checked (computed from the tables below)", ""]
    claims = spec.get("claims")
    if not claims:
        return "\n".join(out + ["_Not configured._", ""])
    rows = []

    def metric(run, set_name, key):
        s = res.summary(run, set_name) if res.run(run) else None
        return None if s is None else s.get(key)

    cvu = claims["codec_vs_unet"]
    paper_c, paper_u = _paper(spec, cvu["paper_codec"]), _paper(spec, cvu["paper_unet"])
    gap = f"codec {paper_c - paper_u:+.3f} pixel acc."
    for pair in cvu["pairs"]:
        a, b, what = pair["codec"], pair["unet"], pair["what"]
        for set_name in cvu["sets"]:
            pa, pb = metric(a, set_name, "pixel_accuracy"), metric(b, set_name, "pixel_accuracy")
            da, db = metric(a, set_name, "dice"), metric(b, set_name, "dice")
            if None in (pa, pb, da, db):
                rows.append([f"{what}, {set_name}", f"{gap} (PH2)", "_missing_", "—"])
                continue
            rows.append([f"{what}, {set_name}", f"{gap} ({paper_c:.3f} vs {paper_u:.3f}, PH2)",
                         f"pixel acc. {pa:.3f} vs {pb:.3f} ({pa - pb:+.3f}); Dice {da:.3f} vs {db:.3f} ({da - db:+.3f})",
                         "yes" if pa > pb and da > db else ("mixed" if (pa > pb) != (da > db) else "no")])
    for level in claims.get("levels", []):
        ours, paper = metric(level["run"], level["set"], "pixel_accuracy"), _paper(spec, level["paper"])
        paper_text = fmt(paper, 4) + (f" ({level['paper_note']})" if level.get("paper_note") else "")
        if level.get("at_least", True):
            holds = "—" if ours is None else ("yes" if ours >= paper else "no")
        else:
            holds = "—" if ours is None else ("yes, as low" if ours <= paper + float(level.get("tolerance", 0))
                                             else "no: ours is higher")
        rows.append([level["what"], paper_text, fmt(ours, 4) + f" ({level['ours_note']})", holds])
    grid = res.csv_rows(f"{spec['grid']['sweep']}.csv") if spec.get("grid") else None
    if grid:
        by_e: dict[int, list[float]] = {}
        for r in grid:
            v = number(r.get("isic2018_val_dice"))
            if v is not None:
                by_e.setdefault(int(float(r["epochs"])), []).append(v)
        if by_e:
            means = {e: float(np.mean(v)) for e, v in sorted(by_e.items())}
            trend = " < ".join(f"{e} ep: {m:.3f}" for e, m in means.items())
            mono = all(a <= b for a, b in zip(list(means.values()), list(means.values())[1:]))
            paper_trend = " < ".join(str(e) for e in spec["grid"].get("paper_epochs", [10, 20, 40]))
            rows.append(["more epochs give better results (Table 1)", f"{paper_trend} in every row",
                         f"mean ISIC val Dice over the 4 settings: {trend}", "yes" if mono else "no"])
    lighter = claims.get("lighter")
    rec_c, rec_u = (res.run(lighter["codec"]), res.run(lighter["unet"])) if lighter else (None, None)
    if rec_c and rec_u:
        rows.append(["codec is lighter than U-Net (depthwise-separable convolutions)", "implied (§3.2.1)",
                     f"{rec_c['parameters']:,} vs {rec_u['parameters']:,} parameters; {rec_c['macs'] / 1e9:.2f} vs "
                     f"{rec_u['macs'] / 1e9:.2f} GMACs at {rec_c['image_size']} px",
                     "yes" if rec_c["parameters"] < rec_u["parameters"] else "no"])
    out.append(md_table(["claim", "paper", "ours", "holds?"], rows))
    return "\n".join(out) + "\n"
