"""Write the out-of-distribution threshold of a classifier that was trained before training wrote one.

Usage (the shipped classifier; the logits come from ``dermoseg evaluate-diagnosis``, which saves them):

    dermoseg evaluate-diagnosis --dataset ham10000 --out docs/results/diagnosis
    python experiments/fit_ood_threshold.py --logits docs/results/diagnosis/ham10000_val/logits.npz

writes ``src/dermoseg/weights/classifier.ood.json`` (``--model`` for another file): the 95th percentile of the
prediction entropy on the HAM10000 validation split (:mod:`dermoseg.classification.ood`). The logits must have
been made by the same model file (its sha256 is checked) on all 897 validation images; nothing else is read.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from dermoseg import modelfile
from dermoseg.classification import ood
from dermoseg.classification.classifier import Classifier
from dermoseg.data.evalsets import diagnosis_samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logits", required=True, help="logits.npz of the HAM10000 validation split")
    parser.add_argument("--model", default=None, help="classifier file (default: the shipped one)")
    parser.add_argument("--data-root", default="../shared/data", help="data folder (to check the image ids)")
    args = parser.parse_args(argv)
    path = modelfile.resolve(args.model, "classifier")
    model = Classifier.load(path)
    with np.load(args.logits) as cached:
        ids, logits, sha = list(cached["ids"]), cached["logits"], str(cached["model_sha256"])
    if sha != model.sha256:
        sys.exit(f"error: {args.logits} was made by another model file (sha256 {sha[:12]}…), not {path}")
    expected = [s.image_id for s in diagnosis_samples("ham10000_val", args.data_root)]
    if ids != expected:
        sys.exit(f"error: {args.logits} does not hold the {len(expected)} images of the HAM10000 validation split")
    check = ood.fit_check(logits, model.temperature, model.sha256, f"HAM10000 validation split ({len(ids)} images)")
    print(f"wrote {ood.write_sidecar(path, check)}: threshold {check.threshold:.4f} nats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
