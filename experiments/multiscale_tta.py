"""Issue 12, levers "multi-scale TTA" and "small ensemble": flip-TTA lesion probabilities averaged over several
input sizes and/or several segmentation models, scored on the ISIC validation split (the choice is made there
only; PH2 may be scored afterwards for the report, never to choose).

    python experiments/multiscale_tta.py --scales 224 256 288 --out docs/results/runs/multiscale_tta
    python experiments/multiscale_tta.py --models default runs/codec_efficientnet_lite0_long/model.pt \
        --out docs/results/runs/ensemble_mnv2_lite0

Writes ``OUT/eval/<set>/{per_image.csv,summary.json}`` in the format of ``dermoseg evaluate`` and ``OUT/run.json``
(what the report's "Variants tried" table reads), so the variant sits beside the trained ones. The compare step is
``experiments/preprocess_ab.sh compare`` against the shipped model's ``per_image.csv``.
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
    """Command line: score, on ``--set`` (default the ISIC validation split), the mask of the flip-TTA
    probabilities averaged over every pair (model of ``--models``, input size of ``--scales``; without
    ``--scales`` each model at its own size); writes ``OUT/eval/<set>/`` and ``OUT/run.json`` for
    ``dermoseg report --import``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scales", type=int, nargs="+", default=None,
                   help="network input sizes (px), e.g. 224 256 288 (default: each model's own)")
    p.add_argument("--models", nargs="+", default=["default"], help="segmentation model files or shipped names")
    p.add_argument("--set", default="isic2018_val", choices=["isic2018_val", "ph2"])
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    # torch: an ONNX export is fixed at one size
    segmenters = [Segmenter.load(m, engine="torch", quality=False) for m in args.models]
    passes = [(seg, size) for seg in segmenters for size in (args.scales or [seg.image_size])]
    rows = []
    for image_id, image, truth in read_pairs(eval_set_samples(args.set, args.data_root)):
        prob = 0.0
        for seg, size in passes:
            seg.image_size = size
            prob = prob + seg.probability(image, tta=True) / len(passes)
        rows.append({"image_id": image_id, **image_metrics(probability_to_mask(prob), truth)})
    out = Path(args.out)
    write_report(out / "eval" / args.set, rows, summarize_with_empty_truth(rows))
    scales = "+".join(map(str, args.scales)) if args.scales else "+".join(str(s.image_size) for s in segmenters)
    command = (f"python experiments/multiscale_tta.py --models {' '.join(args.models)}"
               + (f" --scales {' '.join(map(str, args.scales))}" if args.scales else "") + f" --set {args.set} --out {args.out}")
    run = {"name": out.name, "what": f"flip-TTA probabilities of {args.models} averaged over input sizes {scales}",
           "model_sha256": [modelfile.file_sha256(s.path) for s in segmenters], "image_size": scales,
           "epochs_completed": segmenters[0].info.get("epochs_completed") if len(segmenters) == 1 else None,
           "train_wall_s": None, "command": command}
    if args.set == "isic2018_val" or not (out / "run.json").exists():
        write_text(out / "run.json", json.dumps(run, indent=2) + "\n")


if __name__ == "__main__":
    main()
