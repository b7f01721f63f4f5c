"""Scale-out is real: a short Lightning DDP training on 2 CPU processes (gloo) against the 1-process run.

The two runs see the same data in one optimiser step: 8 training images, one batch of 8 on one process or
4 + 4 on two (DDP averages the two gradients), no augmentation and a network without dropout (U-Net), so the
gradient is the mean over the same 8 images. What differs: batch norm normalises each rank's 4 images with their
own statistics during the step (SyncBatchNorm needs GPUs), and floating-point sums run in another order. The
validation figures (loss and pixel accuracy over 8 validation images at 64 px, each rank scoring 4 and the epoch
figure averaged over ranks) must agree within TOLERANCE; measured here: loss 1.2983251 vs 1.2983241 (1e-6),
pixel accuracy equal. Had rank 0 reported only its own 4 images (no ``sync_dist``), the loss would have been
1.2988032, 5e-4 off (measured), and this test would fail.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4  # absolute, on the validation loss and pixel accuracy
CONFIG = """name: ddp_check
seed: 0
data: {{root: "{root}", image_size: 64, train_subset: 8, val_subset: 8}}
model: {{architecture: unet, width: 8}}
loss: {{name: dice_bce}}
augment: {{enabled: false}}
optimizer: {{name: adam, lr: 0.01, scheduler: none}}
trainer: {{epochs: 1, num_threads: 1, {trainer}}}
"""


def _train(tmp_path: Path, name: str, data_root: Path, trainer: str) -> Path:
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(CONFIG.format(root=data_root, trainer=trainer))
    out = tmp_path / name
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "dermoseg.cli", "train", "--config", str(cfg), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _validation(run: Path) -> tuple[float, float]:
    """(val_loss, val_pixel_accuracy) of the run's only epoch, from its merged ``metrics.csv``."""
    with open(run / "metrics.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r.get("val_loss"))
    return float(row["val_loss"]), float(row["val_pixel_accuracy"])


def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path, data_root):
    single = _train(tmp_path, "single", data_root, "batch_size: 8")
    ddp = _train(tmp_path, "ddp", data_root, "batch_size: 4, devices: 2, strategy: ddp")
    # one checkpoint of each kind, written by rank 0 (no per-rank copies, no leftover temporary file)
    assert sorted(p.name for p in (ddp / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert sorted(p.name for p in ddp.glob("model.*")) == ["model.json", "model.pt"]
    ckpt = torch.load(ddp / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 1 and ckpt["epoch"] == 0  # 4 + 4 images: one step, as the single run's 8
    (single_loss, single_acc), (ddp_loss, ddp_acc) = _validation(single), _validation(ddp)
    assert abs(ddp_loss - single_loss) <= TOLERANCE, (single_loss, ddp_loss)
    assert abs(ddp_acc - single_acc) <= TOLERANCE, (single_acc, ddp_acc)
