"""Compare two lesion classifiers scored on the same HAM10000 images (the mask ablation of issue 5).

Reads two ``predictions.csv`` files in the ISIC 2018 Task 3 format (as written by ``dermoseg evaluate-diagnosis``
or ``dermoseg diagnose``), takes the truth from the HAM10000 metadata, and prints for each model the balanced
multi-class accuracy, the melanoma-vs-rest AUC and the melanoma vs histopathology-confirmed (excised) nevus AUC
(the melanomas and the nevi whose HAM10000 ``dx_type`` is "histo"; score P(MEL) / (P(MEL) + P(NV)),
:func:`dermoseg.classification.evaluate.melanoma_score`), with the paired, class-stratified bootstrap 95%
interval of the difference B - A (:func:`dermoseg.metrics.paired_bootstrap`). Given several B files, B is their ensemble:
the mean of their probabilities, image by image.

    .venv/bin/python experiments/compare_classifiers.py A/predictions.csv B/predictions.csv --out diff.json
    .venv/bin/python experiments/compare_classifiers.py A/predictions.csv A/predictions.csv C/predictions.csv  # A+C
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from dermoseg import metrics as cm
from dermoseg.classification.evaluate import melanoma_score
from dermoseg.data.datasets import HAM_CLASSES, load_ham10000
from dermoseg.io import write_text


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    """``{image_id: (7,) float64 probabilities}`` from a Task 3 ``predictions.csv``; exits with a message naming
    the file on a wrong header."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != ["image", *HAM_CLASSES]:
            sys.exit(f"error: {path}: header is {reader.fieldnames}, expected image,{','.join(HAM_CLASSES)}")
        return {r["image"]: np.array([float(r[c]) for c in HAM_CLASSES]) for r in reader}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="predictions.csv of the reference model A")
    parser.add_argument("b", type=Path, nargs="+", help="predictions.csv of model B (several: their mean)")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"), help="folder holding ham10000/")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--out", type=Path, help="also write the result as JSON")
    args = parser.parse_args(argv)
    pa, members = read_predictions(args.a), [read_predictions(path) for path in args.b]
    for path, pm in zip(args.b, members):
        if set(pa) != set(pm):
            sys.exit(f"error: {args.a} and {path} hold different images ({len(set(pa) ^ set(pm))} differ)")
    pb = {i: np.mean([pm[i] for pm in members], axis=0) for i in pa}
    ham = {s.image_id: s for s in load_ham10000(args.data_root / "ham10000")}
    truth = {i: s.label for i, s in ham.items()}
    ids = sorted(pa)
    missing = [i for i in ids if i not in truth]
    if missing:
        sys.exit(f"error: {len(missing)} image ids are not in the HAM10000 metadata (first: {missing[0]})")
    labels = np.array([truth[i] for i in ids])
    a, b = np.stack([pa[i] for i in ids]), np.stack([pb[i] for i in ids])
    mel = HAM_CLASSES.index("MEL")
    excised = np.array([ham[i].label == mel or (HAM_CLASSES[ham[i].label] == "NV" and ham[i].dx_type == "histo")
                        for i in ids])
    result = {
        "images": len(ids), "excised_nevi": int((excised & (labels != mel)).sum()), "a": str(args.a),
        "b": " + ".join(map(str, args.b)), "resamples": args.resamples,
        "balanced_accuracy": cm.paired_bootstrap(labels, a, b, n_resamples=args.resamples),
        "melanoma_auc": cm.paired_bootstrap(labels, a, b, lambda y, p: cm.binary_auc(y == mel, p[:, mel]),
                                            n_resamples=args.resamples),
        "melanoma_vs_excised_nevus_auc": cm.paired_bootstrap(
            labels[excised], a[excised], b[excised], lambda y, p: cm.binary_auc(y == mel, melanoma_score(p)),
            n_resamples=args.resamples) if 0 < (labels[excised] == mel).sum() < excised.sum() else None,
    }
    print_and_write(result, {"balanced accuracy": "balanced_accuracy", "melanoma AUC": "melanoma_auc",
                             "melanoma vs excised nevus AUC": "melanoma_vs_excised_nevus_auc"}, args.out)
    return 0


def print_and_write(result: dict, shown: dict[str, str], out: Path | None) -> None:
    """Print one line per comparison (``{printed name: key of result}``, each a
    :func:`dermoseg.metrics.paired_bootstrap` result, or None when it could not be computed), then write
    ``result`` as JSON to ``out`` when given."""
    for name, key in shown.items():
        r = result[key]
        if r is None:
            print(f"{name}: not computed (these images lack one of the two groups)")
            continue
        print(f"{name}: A {r['a']:.4f}  B {r['b']:.4f}  B-A {r['difference']:+.4f}  "
              f"95% CI [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]  P(B-A <= 0) {r['p_b_not_better']:.3f}")
    if out:
        write_text(out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
