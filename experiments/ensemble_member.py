"""Write one member of an ensemble classifier file back out as a classifier file of its own
(:func:`dermoseg.classification.ensemble.extract_member`), so that it can take part in another ensemble
(issue 13: swap one member for a variant) without its original training run.

    python experiments/ensemble_member.py src/dermoseg/weights/classifier.pt 1 --out runs/members/lite0_224.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dermoseg.classification.ensemble import extract_member


def main() -> None:
    """Command line: ENSEMBLE INDEX --out FILE."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ensemble", help='ensemble classifier file, or "classifier" for the shipped one')
    p.add_argument("index", type=int, help="0-based member number")
    p.add_argument("--out", type=Path, required=True, help="output .pt (never overwritten)")
    args = p.parse_args()
    print(f"wrote {extract_member(args.ensemble, args.index, args.out)}")


if __name__ == "__main__":
    main()
