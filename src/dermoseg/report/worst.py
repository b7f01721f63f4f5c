"""Overlay sheets of the worst validation cases, from the committed predicted masks and the data folder's
images and ground truths.
"""

from __future__ import annotations

from typing import Any, Mapping

from dermoseg.experiments.collect import WORST_FILE, read_worst_masks
from dermoseg.io import read_image, read_mask
from dermoseg.report.figures import overlay_sheet
from dermoseg.report.results import FIGURES, Results


def section(spec: Mapping[str, Any], res: Results) -> str:
    """Overlay sheets of the worst cases from the committed ``worst/`` masks and the data folder's images and
    truths; keeps an already committed sheet (and says so) when the data folder is absent."""
    w = spec.get("worst_cases")
    out = ["## The worst validation cases", ""]
    if not w:
        return "\n".join(out + ["_Not configured._", ""])
    data_root = res.data_root
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
        title = f"{res.label(name, rec)}: {w['count']} worst {w['set']} cases by Dice"
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
            overlay_sheet(items, res.fig_dir / file, title)
            out += [f"![{title}]({FIGURES}/{file})", ""]
        elif (res.fig_dir / file).is_file():
            why = reason if not samples else "its predicted masks or per-image results are missing"
            out += [f"![{title}]({FIGURES}/{file})", "", f"_Sheet not regenerated ({why}); the committed one is shown._", ""]
            res.note_kept(f"{FIGURES}/{file} not regenerated ({why}); the committed one is shown")
        else:
            why = reason if not samples else f"no predicted masks in {worst_file.relative_to(res.root)}"
            res.note_missing(f"overlay sheet of `{name}` ({why})")
            out += [f"_{title}: not available ({why})._", ""]
    return "\n".join(out)
