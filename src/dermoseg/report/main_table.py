"""The main table: how each run was trained, and its figures per evaluation set beside its size and CPU
throughput; then the paper's claims and the literature's figures from ``configs/report.yaml``.
"""

from __future__ import annotations

from typing import Any, Mapping

from dermoseg.report.results import METRIC_COLUMNS, SET_TITLES, Results, fmt, md_table, model_key


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


def section(spec: Mapping[str, Any], res: Results) -> str:
    """Markdown: how each main-table run was trained, the table per evaluation set (metrics, size, CPU
    throughput), the paper's claims and the literature figures. Missing runs appear as ``_missing_`` rows."""
    main = spec["main_table"]
    tp_index = _throughput_index(res.json_file(spec["throughput"]) if spec.get("throughput") else None)
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
        out.append(f"- {res.label(item, rec)}: " + (budget(rec) if rec else "_missing_"))
    for set_name in main["sets"]:
        header = ["model", "input px", *(t for _, t in METRIC_COLUMNS), "failures", "params", "GMACs", "infer img/s", "train img/s"]
        rows = []
        for item in main["runs"]:
            name = item["run"] if isinstance(item, Mapping) else item
            rec = res.run(name)
            summ = res.summary(name, set_name) if rec else None
            if rec is None or summ is None:
                rows.append([res.label(item, rec), "—", *(["_missing_"] + ["—"] * (len(header) - 3))])
                continue
            key = model_key(rec.get("config", {}).get("model", {}), rec.get("image_size", 0))
            tp = tp_index.get(key, {})
            if not tp:
                res.note_missing(f"throughput of `{key}` in {spec['throughput']}")
            rows.append([res.label(item, rec), str(rec.get("image_size", "—")), *(summ.get(k) for k, _ in METRIC_COLUMNS),
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
