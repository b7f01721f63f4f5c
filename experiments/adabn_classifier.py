"""Issue 13 lever: a classifier's batch-norm statistics re-estimated on unlabelled images of other devices (AdaBN).

Li Y., Wang N., Shi J., Hou X., Liu J., "Adaptive Batch Normalization for practical domain adaptation", Pattern
Recognition 80 (2018): a network trained on one domain keeps its weights, and every batch-norm layer's running mean
and variance are re-estimated on images of the new domain, with no labels. Here the new domain is the ISIC 2018
Task 1 images whose diagnosis is NOT known (1466 of the 2075; the 609 with a diagnosis are the external test set
and are never read). Two mixes, both fixed before any run:

- ``isic``: those 1466 images only (AdaBN as published);
- ``mixed``: those 1466 plus as many HAM10000 training-split images (seeded sample), so the statistics cover both
  the training devices and the new ones.

The weights stay as trained; the file's temperature and out-of-distribution threshold are refitted on the HAM10000
validation split (:func:`dermoseg.classification.task.write_calibrated`), as for every classifier here; an
ensemble's member temperatures stay those fitted before the statistics changed, only the ensemble's own is
refitted. Score the result with ``dermoseg evaluate-diagnosis --model OUT --engine torch``. Validation decides, as for every variant.

    python experiments/adabn_classifier.py --mix mixed --out runs/adabn_mixed/classifier.pt
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from dermoseg import modelfile
from dermoseg.classification.classifier import input_tensor, prepare_image, recorded_normalisation
from dermoseg.classification.task import CachedClassificationDataset, write_calibrated
from dermoseg.data.datasets import load_ham10000
from dermoseg.data.splits import HAM_SPLIT, read_split, select
from dermoseg.io import read_image
from dermoseg.models.classifier import build_classifier
from dermoseg.training import git_commit

SEED = 2018


def unlabelled_isic_images(data_root: Path) -> list[Path]:
    """The ISIC 2018 Task 1 images with an empty ``diagnosis`` in its ``metadata.csv``, sorted: never one of the
    609 external test images (those have a diagnosis)."""
    folder = data_root / "isic2018_task1"
    with open(folder / "metadata.csv", newline="", encoding="utf-8") as f:
        ids = sorted(row["image_id"] for row in csv.DictReader(f) if not row["diagnosis"])
    return [folder / "ISIC2018_Task1-2_Training_Input" / f"{i}.jpg" for i in ids]


def adapt_batch_norm(network: nn.Module, images: list[Path], size: int,
                     normalisation: tuple[np.ndarray, np.ndarray], batch_size: int = 64) -> int:
    """Replace every batch-norm layer's running mean and variance by their average over batches of ``images``
    (each prepared as at inference: squashed to ``size`` px, normalised), weights untouched: running statistics
    reset, momentum None, so each batch's mean and unbiased variance weigh the same. Every batch-norm layer is
    put in training mode itself, frozen stages included; ``torch.optim.swa_utils.update_bn`` would call
    ``network.train()``, which keeps a classifier's frozen stem in eval mode (:class:`LesionClassifier`), and so
    leave its reset statistics at 0 and 1. Returns the number of batch-norm layers; the network is left in eval
    mode."""
    layers = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    network.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
        layer.train()
    with torch.no_grad():
        for i in tqdm(range(0, len(images), batch_size), desc="batch-norm statistics", unit="batch"):
            network(torch.stack([input_tensor(prepare_image(read_image(p), size), normalisation)
                                 for p in images[i:i + batch_size]]))
    network.eval()
    return len(layers)


def main(argv: list[str] | None = None) -> None:
    """Read the classifier file, adapt its batch-norm statistics to the chosen mix, write the calibrated file;
    refuses (FileExistsError) an output that exists, or a file beside it, before any work."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="classifier", help='classifier file, or "classifier" for the shipped one')
    p.add_argument("--mix", choices=("isic", "mixed"), required=True)
    p.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, required=True, help="output .pt (never overwritten)")
    args = p.parse_args(argv)
    out = modelfile.refuse_existing_output(args.out)
    path, payload = modelfile.read(args.model, "classifier")
    config = payload["config"]
    network = build_classifier(config["model"], pretrained=False)
    network.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in payload["state_dict"].items()})
    images = unlabelled_isic_images(args.data_root)
    ham, split = load_ham10000(args.data_root / "ham10000"), read_split(HAM_SPLIT)
    if args.mix == "mixed":
        images += [s.image_path for s in random.Random(SEED).sample(select(ham, split, "train"), len(images))]
    normalisation = recorded_normalisation(config)
    layers = adapt_batch_norm(network, images, int(config["image_size"]), normalisation)
    dtypes = {k: v.dtype for k, v in payload["state_dict"].items()}
    state = {k: v.to(dtypes[k]) for k, v in network.state_dict().items()}
    val_set = CachedClassificationDataset(select(ham, split, "val"), config["image_size"], desc="val set",
                                          normalisation=normalisation)
    info = {"adabn": {"from": path.name, "sha256": modelfile.file_sha256(path), "mix": args.mix,
                      "images": len(images), "batch_norm_layers": layers, "seed": SEED},
            "commit": git_commit(), "split": f"splits/{HAM_SPLIT.name}", "base_info": payload.get("info", {})}
    print(f"wrote {write_calibrated(out, config, state, info, val_set)}")


if __name__ == "__main__":
    main()
