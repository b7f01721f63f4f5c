"""Issue 13 lever "TTA": the shipped classifier's logits averaged over all eight symmetries of the square (the four
flips it already averages, and the same four of the transposed image) instead of four.

A dermoscopic image has no up or left, and the classifiers trained with flips and 90° rotations, so the transposed
views are as valid as the flipped ones. The network, its temperature and its out-of-distribution threshold are the
shipped file's, unchanged (the temperature was fitted for four views; it moves neither the arg-max nor any AUC).
Each set is scored with :func:`dermoseg.classification.evaluate.evaluate_set`, the code of ``dermoseg
evaluate-diagnosis``, so the outputs have its format; the choice is made on the HAM10000 validation split only
(``python experiments/compare_classifiers.py docs/results/diagnosis/ham10000_val/predictions.csv
OUT/ham10000_val/predictions.csv``), the external sets are reported, never used to choose.

    python experiments/dihedral_tta_classifier.py --out runs/diag_dihedral
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np

from dermoseg.classification.classifier import Classifier
from dermoseg.classification.evaluate import evaluate_set


def with_transpose(runner: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """A runner that returns the mean of ``runner`` on a (N, C, S, S) batch and on its transpose (height and width
    swapped): (N, 7) float32 logits. Under the classifier's four-flip TTA this averages all eight symmetries."""
    return lambda batch: (runner(batch) + runner(batch.swapaxes(-1, -2))) / 2


def main() -> None:
    """Command line: --out DIR [--model M] [--sets S ...] [--data-root R]."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="classifier model file or shipped name")
    p.add_argument("--sets", nargs="+", default=["ham10000_val", "isic2018_task1", "ph2"])
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    model = Classifier.load(args.model)
    if not model.tta:
        raise SystemExit(f"{model.path}: flip TTA is off in this model file; nothing to extend")
    model.runner = with_transpose(model.runner)
    for name in args.sets:
        if (args.out / name).exists():
            raise SystemExit(f"{args.out / name}: exists; choose another --out")
        s = evaluate_set(name, model, args.data_root, args.out / name)
        mel = s["melanoma_vs_nevus"]
        print(f"{name}: balanced accuracy {s.get('balanced_accuracy', float('nan')):.3f}, "
              f"melanoma-vs-nevus AUC {mel['auc'] if mel else float('nan'):.3f}")


if __name__ == "__main__":
    main()
