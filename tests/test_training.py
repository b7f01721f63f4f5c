"""A seconds-long training run on real images: checkpoints every epoch, metrics CSV, resume, export."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from dermoseg.config import load_config
from dermoseg.inference import load_model, predict_probability
from dermoseg.io import read_image
from dermoseg.training import train

REPO = Path(__file__).resolve().parents[1]


def test_smoke_training_checkpoints_resumes_and_exports(tmp_path, isic_samples, data_root):
    cfg = load_config(REPO / "configs" / "smoke.yaml", {"data": {"root": str(data_root)}, "trainer": {"epochs": 1}})
    out = tmp_path / "run"
    model_path = train(cfg, out)
    assert (out / "checkpoints" / "last.ckpt").is_file() and model_path.is_file()
    first = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    cfg["trainer"]["epochs"] = 2
    train(cfg, out, resume=True)
    second = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert second["global_step"] == 2 * first["global_step"]  # one more epoch of the same length, not two
    with open(out / "metrics.csv", newline="") as fh:
        epochs = {int(r["epoch"]) for r in csv.DictReader(fh) if r.get("val_dice")}
    assert epochs == {0, 1}  # the resumed run logged only its new epoch, after the first
    model = load_model(model_path)
    prob = predict_probability(model, read_image(isic_samples[0].image_path))
    assert prob.shape == (512, 512) and 0 <= prob.min() <= prob.max() <= 1
