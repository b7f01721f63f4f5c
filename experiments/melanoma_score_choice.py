"""Choose the melanoma-vs-nevus score on the HAM10000 validation split (issue 13, session 14).

Compares two scores of the same predictions on the validation split's melanomas and nevi: the plain calibrated
P(MEL) (the score before session 14) and P(MEL) / (P(MEL) + P(NV))
(:func:`dermoseg.classification.evaluate.melanoma_score`), by the AUC against all nevi and against the excised
(histopathology-confirmed, HAM10000 ``dx_type`` "histo") nevi alone, each with the paired, class-stratified
bootstrap 95% interval of the difference (:func:`dermoseg.metrics.paired_bootstrap`, seed 2018). Only validation
predictions may be given: the external test sets never choose.

    .venv/bin/python experiments/melanoma_score_choice.py docs/results/diagnosis/ham10000_val/predictions.csv \\
        --out docs/results/diagnosis/melanoma_score_choice.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dermoseg import metrics as cm
from dermoseg.classification.evaluate import melanoma_score
from dermoseg.data.datasets import HAM_CLASSES, load_ham10000
from dermoseg.data.splits import HAM_SPLIT, read_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_classifiers import print_and_write, read_predictions  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("predictions", type=Path, help="predictions.csv of the HAM10000 validation split")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"), help="folder holding ham10000/")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--out", type=Path, help="also write the result as JSON")
    args = parser.parse_args(argv)
    probs = read_predictions(args.predictions)
    split = read_split(HAM_SPLIT)
    ham = {s.image_id: s for s in load_ham10000(args.data_root / "ham10000")}
    outside = [i for i in probs if split.get(i) != "val"]
    if outside:
        sys.exit(f"error: {args.predictions}: {len(outside)} images are not in the HAM10000 validation split "
                 f"(first: {outside[0]}); only validation predictions may choose")
    mel, nv = HAM_CLASSES.index("MEL"), HAM_CLASSES.index("NV")
    ids = sorted(i for i in probs if ham[i].label in (mel, nv))
    labels = np.array([ham[i].label for i in ids])
    plain = np.stack([probs[i] for i in ids])
    two_class = plain.copy()
    two_class[:, mel] = melanoma_score(plain)  # the metric reads column MEL: the score under comparison

    def auc(y, p):
        return cm.binary_auc(y == mel, p[:, mel])
    excised = np.array([ham[i].label == mel or ham[i].dx_type == "histo" for i in ids])
    result = {"predictions": str(args.predictions), "melanoma": int((labels == mel).sum()),
              "nevus": int((labels == nv).sum()), "excised_nevus": int((excised & (labels == nv)).sum()),
              "a": "P(MEL)", "b": "P(MEL) / (P(MEL) + P(NV))", "resamples": args.resamples,
              "all_nevi": cm.paired_bootstrap(labels, plain, two_class, auc, n_resamples=args.resamples),
              "excised_nevi": cm.paired_bootstrap(labels[excised], plain[excised], two_class[excised], auc,
                                                  n_resamples=args.resamples)}
    print("A: P(MEL), B: P(MEL) / (P(MEL) + P(NV))")
    print_and_write(result, {"melanoma vs all nevi AUC": "all_nevi", "melanoma vs excised nevi AUC": "excised_nevi"},
                    args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
