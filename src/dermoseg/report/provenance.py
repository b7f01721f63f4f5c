"""How the numbers were made: commands run by hand, sweep invocations and the throughput measurement.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from dermoseg.report.results import Results, fmt, md_table


def section(spec: Mapping[str, Any], res: Results) -> str:
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
