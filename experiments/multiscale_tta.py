"""Issue 12, lever "multi-scale TTA": the shipped segmentation model's flip-TTA probability averaged over several
input sizes, scored on the ISIC validation split (the choice is made there only; PH2 is not run).

    python experiments/multiscale_tta.py --scales 224 256 288 --out docs/results/runs/multiscale_tta

Writes ``OUT/eval/isic2018_val/{per_image.csv,summary.json}`` in the format of ``dermoseg evaluate`` and
``OUT/run.json`` (what the report's "Variants tried" table reads), so the variant sits beside the trained ones.
The compare step is ``experiments/preprocess_ab.sh compare`` against the shipped model's ``per_image.csv``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dermoseg import modelfile
from dermoseg.data.evalsets import eval_set_samples
from dermoseg.io import write_text
from dermoseg.metrics import image_metrics
from dermoseg.segmentation.evaluate import read_pairs, summarize_with_empty_truth, write_report
from dermoseg.segmentation.segmenter import Segmenter, probability_to_mask


def main() -> None:
    """Command line: score, on the ISIC validation split, the mask of the model's flip-TTA probabilities averaged
    over the input sizes ``--scales`` (one size gives that size alone); writes ``OUT/eval/isic2018_val/`` and
    ``OUT/run.json`` for ``dermoseg report --import``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scales", type=int, nargs="+", required=True, help="network input sizes (px), e.g. 224 256 288")
    p.add_argument("--model", default="default")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    seg = Segmenter.load(args.model, engine="torch", quality=False)  # torch: the ONNX export is fixed at one size
    rows = []
    for image_id, image, truth in read_pairs(eval_set_samples("isic2018_val", args.data_root)):
        prob = 0.0
        for size in args.scales:
            seg.image_size = size
            prob = prob + seg.probability(image, tta=True) / len(args.scales)
        rows.append({"image_id": image_id, **image_metrics(probability_to_mask(prob), truth)})
    out = Path(args.out)
    write_report(out / "eval" / "isic2018_val", rows, summarize_with_empty_truth(rows))
    info = seg.info
    run = {"name": out.name, "what": f"shipped model, flip TTA averaged over input sizes {args.scales}",
           "model_sha256": modelfile.file_sha256(seg.path), "image_size": "+".join(map(str, args.scales)),
           "epochs_completed": info.get("epochs_completed"), "train_wall_s": None,
           "command": f"python experiments/multiscale_tta.py --scales {' '.join(map(str, args.scales))} --out {args.out}"}
    write_text(out / "run.json", json.dumps(run, indent=2) + "\n")


if __name__ == "__main__":
    main()
