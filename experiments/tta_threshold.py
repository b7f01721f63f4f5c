"""Issue 12, levers "more test-time augmentation" and "probability threshold": the shipped segmenter's lesion
logits averaged over more of the square's eight symmetries (the dihedral group: 90° rotations, with and without a
flip) and thresholded at other probabilities than 0.5, scored on the ISIC validation split. The choice is made
there only; PH2 is scored afterwards for the chosen setting alone, never to choose.

    python experiments/tta_threshold.py --out docs/results/runs/tta_threshold
    python experiments/tta_threshold.py --set ph2 --tta dihedral --thresholds 0.45 --out docs/results/runs/tta_threshold

The network sees each image once per symmetry (eight passes, undone before averaging); every (pass set,
threshold) pair is then scored from those logits with the shipped post-processing (largest region, holes filled)
at the image's own size. Writes ``OUT/<set>_sweep.csv`` (one row per pair: mean Dice, Jaccard, thresholded
Jaccard, images with Jaccard < 0.65), and, for the pair with the highest thresholded Jaccard (ties: Dice),
``OUT/eval/<set>/{per_image.csv,summary.json}`` in the format of ``dermoseg evaluate`` and, on the validation
split, ``OUT/run.json`` for the report's "Variants tried" table. The compare step is
``experiments/preprocess_ab.sh compare`` against the shipped model's ``per_image.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from dermoseg import modelfile
from dermoseg.data.evalsets import eval_set_samples
from dermoseg.io import write_text
from dermoseg.metrics import image_metrics
from dermoseg.segmentation.evaluate import read_pairs, summarize_with_empty_truth, write_report
from dermoseg.segmentation.quality import FAILURE_JACCARD
from dermoseg.segmentation.segmenter import Segmenter, probability_to_mask

# The eight symmetries of the square as (quarter turns, flip first); the first three are the shipped flip TTA
# (as is, horizontal flip, vertical flip = a horizontal flip and a half turn).
SYMMETRIES = [(0, False), (0, True), (2, True), (2, False), (1, False), (3, False), (1, True), (3, True)]
PASS_SETS = {"none": 1, "flips": 3, "flips_half_turn": 4, "dihedral": 8}  # the first n of SYMMETRIES


def symmetric_logits(segmenter: Segmenter, x: np.ndarray) -> np.ndarray:
    """The network's lesion logits of a prepared (1, 3, S, S) float32 input under each of :data:`SYMMETRIES`,
    each transformed back: (8, 1, S, S) float32."""
    out = []
    for turns, flip in SYMMETRIES:
        t = x[..., ::-1] if flip else x
        y = np.rot90(segmenter.runner(np.rot90(t, turns, axes=(-2, -1))), -turns, axes=(-2, -1))
        out.append(y[..., ::-1] if flip else y)
    return np.concatenate(out)


def main() -> None:
    """Command line: --out DIR [--set NAME] [--tta SET ...] [--thresholds T ...] [--model M]."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", default="isic2018_val", choices=["isic2018_val", "ph2"])
    p.add_argument("--tta", nargs="+", default=list(PASS_SETS), choices=list(PASS_SETS))
    p.add_argument("--thresholds", type=float, nargs="+", default=[round(0.3 + 0.05 * i, 2) for i in range(9)])
    p.add_argument("--model", default="default", help="segmentation model file or shipped name")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if args.set != "isic2018_val" and len(args.tta) * len(args.thresholds) != 1:
        raise SystemExit(f"--set {args.set} is a test set: give the one --tta and --thresholds chosen on isic2018_val")
    sweep_csv = args.out / f"{args.set}_sweep.csv"
    if sweep_csv.exists():
        raise SystemExit(f"{sweep_csv}: exists; choose another --out")
    segmenter = Segmenter.load(args.model, quality=False)
    pairs = [(t, thr) for t in args.tta for thr in args.thresholds]
    rows: dict[tuple[str, float], list[dict]] = {pair: [] for pair in pairs}
    for image_id, image, truth in read_pairs(eval_set_samples(args.set, args.data_root)):
        logits = symmetric_logits(segmenter, segmenter.prepare(image))
        for name in args.tta:
            prob = segmenter.probability_map(segmenter.mean_logits(logits[:PASS_SETS[name]]), *image.shape[:2])
            for thr in args.thresholds:
                rows[name, thr].append({"image_id": image_id, **image_metrics(probability_to_mask(prob, thr), truth)})
    table = []
    for (name, thr), r in rows.items():
        s = summarize_with_empty_truth(r)
        failures = sum(row["jaccard"] < FAILURE_JACCARD for row in r)
        table.append({"tta": name, "passes": PASS_SETS[name], "threshold": thr, "dice": round(s["dice"], 4),
                      "jaccard": round(s["jaccard"], 4), "thresholded_jaccard": round(s["thresholded_jaccard"], 4),
                      "failures": failures})
    args.out.mkdir(parents=True, exist_ok=True)
    with open(sweep_csv, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    best = max(table, key=lambda t: (t["thresholded_jaccard"], t["dice"]))
    for t in table:
        print(f"{t['tta']:16s} {t['threshold']:.2f}  Dice {t['dice']:.4f}  thrJ {t['thresholded_jaccard']:.4f}  "
              f"failures {t['failures']}" + ("   <- best" if t is best else ""))
    best_rows = rows[best["tta"], best["threshold"]]
    write_report(args.out / "eval" / args.set, best_rows, summarize_with_empty_truth(best_rows))
    if args.set == "isic2018_val":
        command = f"python experiments/tta_threshold.py --model {args.model} --out {args.out}"
        run = {"name": args.out.name,
               "what": f"{best['passes']}-pass TTA ({best['tta']}), threshold {best['threshold']}: the best of "
                       f"{len(table)} (pass set, threshold) pairs by validation thresholded Jaccard",
               "model_sha256": modelfile.file_sha256(segmenter.path), "image_size": segmenter.image_size,
               "epochs_completed": None, "train_wall_s": None, "command": command}
        write_text(args.out / "run.json", json.dumps(run, indent=2) + "\n")
    print(f"wrote {sweep_csv} and {args.out / 'eval' / args.set}")


if __name__ == "__main__":
    main()
