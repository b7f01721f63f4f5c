"""The Table 1 grid (epochs × batch size × learning rate) beside the paper's figures from
``configs/report.yaml``.
"""

from __future__ import annotations

from typing import Any, Mapping

from dermoseg.report.figures import plot_grid
from dermoseg.report.results import FIGURES, Results, fmt, md_table, number


def section(spec: Mapping[str, Any], res: Results) -> str:
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
    ranked = [r for r in rows if number(r.get(key)) is not None]
    best = max(ranked, key=lambda r: number(r[key])) if ranked else None
    table = []
    for r in rows:
        e, bs, lr = int(float(r["epochs"])), int(float(r["batch_size"])), float(r["lr"])
        p = paper.get((bs, lr))
        pi = pe.index(e) if e in pe else None
        table.append([("**" + r["cell"] + "**") if r is best else r["cell"], str(e), str(bs), f"{lr:g}",
                      number(r.get("isic2018_val_dice")), number(r.get("isic2018_val_jaccard")),
                      number(r.get("isic2018_val_thresholded_jaccard")), number(r.get("isic2018_val_pixel_accuracy")),
                      number(r.get("ph2_dice")), number(r.get("ph2_pixel_accuracy")), number(r.get("last_train_pixel_accuracy")),
                      fmt(p["train"][pi], 4) if p and pi is not None else "—", fmt(p["test"][pi], 4) if p and pi is not None else "—",
                      str(r.get("evaluated_epoch") or "?"), fmt(number(r.get("train_wall_cumulative_s")), 0)])
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
        out.append(f"Best cell by {key}: **{best['cell']}** — ISIC val Dice {fmt(number(best.get('isic2018_val_dice')))}, "
                   f"Jaccard {fmt(number(best.get('isic2018_val_jaccard')))}, thresholded Jaccard "
                   f"{fmt(number(best.get('isic2018_val_thresholded_jaccard')))}, pixel accuracy "
                   f"{fmt(number(best.get('isic2018_val_pixel_accuracy')))}; PH2 Dice {fmt(number(best.get('ph2_dice')))}, "
                   f"pixel accuracy {fmt(number(best.get('ph2_pixel_accuracy')))}.")
        out.append("")
    cells = len(g.get("paper_table", [])) * len(pe)  # the paper's Table 1: every (batch, lr) row at every epoch count
    if len(rows) < cells:
        out += [f"_Only {len(rows)} of the {cells} cells are finished; the rest are missing._", ""]
        res.note_missing(f"{cells - len(rows)} Table 1 grid cells")
    plot_grid(rows, g.get("paper_table", []), pe, res.fig_dir / g["file"])
    out += [f"![Table 1 grid]({FIGURES}/{g['file']})", "", md_table(header, table), ""]
    return "\n".join(out)
