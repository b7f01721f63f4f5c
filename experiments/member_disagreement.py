"""Issue 12, quality flag: do the shipped ensemble's two members disagree on the masks that fail?

For each image of an evaluation set, each member's flip-TTA mask (the shipped post-processing: 0.5 threshold,
largest region, holes filled) at the network's 256 px, and the Jaccard between the two members' masks; set beside
the stored quality estimate and the flip-TTA baseline of ``dermoseg evaluate-quality --model default``
(``docs/results/quality/<set>_quality.csv``, which must be for the shipped file): share of failures (Jaccard < 0.65)
caught when the lowest 10% are flagged, and AUROC for a failure. A probe, not part of the quality estimator.

    python experiments/member_disagreement.py --set isic2018_val --out runs/member_disagreement
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from dermoseg.data.evalsets import eval_set_samples
from dermoseg.io import read_image
from dermoseg.segmentation.quality import FAILURE_JACCARD, REVIEW_RATE
from dermoseg.segmentation.segmenter import Segmenter, probability_to_mask


def member_jaccard(segmenter: Segmenter, image: np.ndarray) -> float:
    """Jaccard between the flip-TTA masks of the ensemble's members on one (H, W, 3) uint8 RGB image."""
    x = torch.from_numpy(np.ascontiguousarray(segmenter.prepare(image)))
    masks = []
    with torch.inference_mode():
        for member in segmenter.network.members:
            logits = (member(x) + member(x.flip(-1)).flip(-1) + member(x.flip(-2)).flip(-2)) / 3
            masks.append(probability_to_mask(torch.sigmoid(logits)[0, 0].numpy(), 0.5))
    union = np.count_nonzero(masks[0] | masks[1])
    return 1.0 if union == 0 else np.count_nonzero(masks[0] & masks[1]) / union


def main() -> None:
    """Command line: --set NAME --out DIR [--data-root R]."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", default="isic2018_val", choices=["isic2018_val", "ph2"])
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--out", type=Path, required=True, help="folder for <set>_member_jaccard.csv (never overwritten)")
    args = p.parse_args()
    out = args.out / f"{args.set}_member_jaccard.csv"
    if out.exists():
        raise SystemExit(f"{out}: exists; choose another --out")
    rows = list(csv.DictReader(open(f"docs/results/quality/{args.set}_quality.csv", encoding="utf-8")))
    paths = {s.image_id: s.image_path for s in eval_set_samples(args.set, args.data_root)}
    segmenter = Segmenter.load("default", engine="torch", quality=False)
    table = [(r["image_id"], float(r["jaccard"]), float(r["quality"]), float(r["baseline"]),
              member_jaccard(segmenter, read_image(paths[r["image_id"]]))) for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("image_id", "jaccard", "quality", "baseline", "member_jaccard"), *table])
    values = np.array([t[1:] for t in table])
    failed = values[:, 0] < FAILURE_JACCARD
    flagged = int(round(REVIEW_RATE * len(values)))
    print(f"{args.set}: {len(values)} images, {failed.sum()} failures, lowest {flagged} flagged")
    for k, name in ((1, "quality"), (2, "flip-TTA baseline"), (3, "member Jaccard")):
        lowest = np.argsort(values[:, k], kind="stable")[:flagged]
        auroc = roc_auc_score(failed, -values[:, k])
        print(f"  {name:18s} caught {failed[lowest].sum() / failed.sum():.0%}  AUROC {auroc:.3f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
