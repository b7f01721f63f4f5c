"""The shipped classifier: validation split and external tests side by side, calibration, the out-of-distribution
flag and gray inputs, from the ``summary.json`` files ``dermoseg evaluate-diagnosis`` wrote
(``<results_dir>/<diagnosis.dir>/<set>/summary.json``).
"""

from __future__ import annotations

from typing import Any, Mapping

from dermoseg.report.results import Results, fmt, md_table, melanoma_vs_nevus_cell


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def section(spec: Mapping[str, Any], res: Results) -> str:
    """Markdown: one row per diagnosis set (melanoma vs nevus, seven-class figures where the set has them),
    calibration with the reliability diagram, the flag's effect, gray copies, and the literature's figures."""
    d = spec.get("diagnosis")
    out = ["## Diagnosis: the shipped classifier on its validation split and two external tests", ""]
    if not d:
        return "\n".join(out + ["_Not configured._", ""])
    base = d.get("dir", "diagnosis")
    summaries = {s: res.json_file(f"{base}/{s}/summary.json") for s in d["sets"]}
    found = {s: v for s, v in summaries.items() if v}
    out += [f"Measured by `{d.get('command', 'dermoseg evaluate-diagnosis')}`. External test sets are never trained "
            "or chosen on; the epoch, the temperature and the flag's threshold come from the HAM10000 validation "
            "split. Score for melanoma vs nevus: P(MEL) / (P(MEL) + P(NV)) of the calibrated probabilities "
            "(chosen over the plain P(MEL) on the validation split, session 14; an AUC scored on the plain P(MEL) "
            "is marked so); \"called melanoma\" is the seven-class "
            "arg-max. **Research tool, not a medical device.**", ""]
    rows = []
    for s, v in found.items():
        mn = v.get("melanoma_vs_nevus") or {}
        counts = (v.get("melanoma", mn.get("melanoma")), v.get("nevus", mn.get("nevus")))  # top level since session 14
        rows.append([f"`{s}` ({v['role']})", fmt(v["images"]), f"{fmt(counts[0])} / {fmt(counts[1])}",
                     melanoma_vs_nevus_cell(v), fmt(mn.get("sensitivity_at_90_specificity")),
                     fmt(mn.get("nevi_called_melanoma")), fmt(v.get("balanced_accuracy")), fmt(v.get("melanoma_auc"))])
    out += [md_table(["set", "images", "melanoma / nevus", "melanoma-vs-nevus AUC", "sensitivity at 90% specificity",
                      "nevi called melanoma", "balanced accuracy (7 classes)", "melanoma-vs-rest AUC"], rows), ""]
    by_group = [(s, (v.get("melanoma_vs_nevus") or {}).get("auc_by_nevus_group")) for s, v in found.items()]
    by_group = [f"`{s}` " + ", ".join(f"{g} {fmt(a)}" for g, a in groups.items()) for s, groups in by_group if groups]
    if by_group:
        out += ["**Melanoma vs each kind of nevus** (AUC; HAM10000's nevi by how the diagnosis was confirmed — "
                "histo: excised, the kind other archives hold —, PH2's by clinical class): "
                + "; ".join(by_group) + ".", ""]
    val = next((v for v in found.values() if v.get("ece_before") is not None), None)
    if val:
        out += [f"**Calibration** ({val['set']}, 15 bins): ECE {fmt(val['ece_before'])} before temperature scaling, "
                f"{fmt(val['ece_after'])} after it with T = {fmt(val['temperature'])} fitted on the same images "
                f"(in-sample), **{fmt(val['ece_after_cross_fitted'])}** cross-fitted (T fitted on "
                f"{val['cross_fitted_folds'] - 1} of {val['cross_fitted_folds']} folds, measured on the held-out "
                f"fold; T = {', '.join(fmt(t) for t in val['cross_fitted_temperatures'])}).", "",
                f"![reliability diagram]({base}/{val['set']}/reliability.png)", ""]
    flagged = [(s, v["ood"]) for s, v in found.items() if v.get("ood")]
    if flagged:
        o = flagged[0][1]
        out += [f"**Out-of-distribution flag** ({o['score']}; threshold {fmt(o['threshold'])}, the "
                f"{o['percentile']:g}th percentile on the {o['fitted_on']}): accuracy = seven-class arg-max equals "
                "the truth.", "",
                md_table(["set", "flagged", "accuracy flagged / unflagged", "melanoma AUC flagged / unflagged"],
                         [[f"`{s}`", f"{fmt(e['flagged']['images'])} ({_pct(e['share_flagged'])})",
                           f"{fmt(e['flagged']['accuracy'])} / {fmt(e['unflagged']['accuracy'])}",
                           f"{fmt(e['flagged']['melanoma_auc'])} / {fmt(e['unflagged']['melanoma_auc'])}"]
                          for s, e in flagged]), ""]
    for s, v in found.items():
        g = v.get("grayscale_copies")
        if g:
            shares = sorted(g["top_class_share"].items(), key=lambda kv: -kv[1])
            out += [f"**Gray copies** of the {fmt(g['images'])} `{s}` images come out as "
                    + ", ".join(f"{c} {_pct(v)}" for c, v in shares if v > 0)
                    + f" (top probability {fmt(g['p_top']['min'])}–{fmt(g['p_top']['max'])}, "
                    f"median {fmt(g['p_top']['median'])}); accuracy {fmt(g['accuracy'])} "
                    f"(colour: {fmt(v.get('accuracy'))}); the entropy flag marks {_pct(g.get('flagged_share'))}.", ""]
    if d.get("literature"):
        out += ["Reference figures (other test sets, not comparable split for split):", "",
                md_table(["what", "value"], [[r["what"], fmt(r["value"])] for r in d["literature"]]), ""]
    return "\n".join(out)
