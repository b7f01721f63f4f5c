"""Write one member of an ensemble model file back out as a model file of its own
(:func:`dermoseg.classification.ensemble.extract_member`, :func:`dermoseg.segmentation.ensemble.extract_member`),
so that it can take part in another ensemble (issues 12 and 13: swap one member for a variant) without its
original training run.

    python experiments/ensemble_member.py classifier 1 --out runs/members/lite0_224.pt
    python experiments/ensemble_member.py default 0 --out runs/members/mobilenet_v2.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dermoseg import modelfile
from dermoseg.errors import DermosegError
from dermoseg.classification import ensemble as classifier_ensemble
from dermoseg.segmentation import ensemble as segmentation_ensemble


def main() -> None:
    """Command line: ENSEMBLE INDEX --out FILE."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ensemble", help='ensemble model file, or "classifier" / "default" for the shipped ones')
    p.add_argument("index", type=int, help="0-based member number")
    p.add_argument("--out", type=Path, required=True, help="output .pt (never overwritten)")
    args = p.parse_args()
    try:
        wing = classifier_ensemble if modelfile.kind_of(args.ensemble) == "classifier" else segmentation_ensemble
        print(f"wrote {wing.extract_member(args.ensemble, args.index, args.out)}")
    except (DermosegError, ValueError, OSError) as exc:  # named file and problem, no traceback
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
