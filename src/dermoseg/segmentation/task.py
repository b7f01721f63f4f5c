"""The segmentation wing's training task: the ISIC 2018 data module, the LightningModule (network, loss, Adam;
paper §4.2) and :func:`train`, which fits it on the shared floor (:func:`dermoseg.training.fit`) and exports
the best epoch as a segmentation model file (:mod:`dermoseg.modelfile`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from dermoseg import modelfile
from dermoseg.data.datasets import load_isic2018_task1
from dermoseg.data.splits import ISIC_SPLIT, read_split, select
from dermoseg.data.transforms import build_augmentation, resize_image, resize_mask, to_tensor
from dermoseg.errors import DatasetError
from dermoseg.io import read_image, read_mask
from dermoseg.models import build_model
from dermoseg.segmentation.losses import get_loss
from dermoseg.segmentation.pseudo_labels import pseudo_label_pairs
from dermoseg.training import (CachedData, build_optimizer, check_optimizer, fit, run_folder,
                               seed_and_threads, subset)


class CachedSegmentationDataset(Dataset):
    """Image/mask pairs read once, resized to ``size``×``size`` and kept in memory (a 256² ISIC train split is
    about 350 MB), then augmented on the fly.

    Items: ``(image (3, S, S) float32 normalised, mask (1, S, S) float32 in {0, 1})``.
    """

    def __init__(self, samples, size: int, augment=None, preprocess=None, desc: str = "loading"):
        self.augment = augment
        self.images = np.empty((len(samples), size, size, 3), np.uint8)
        self.masks = np.empty((len(samples), size, size), np.uint8)
        for i, s in enumerate(tqdm(samples, desc=desc, unit="img", leave=False)):
            image, mask = read_image(s.image_path), read_mask(s.mask_path)
            if image.shape[:2] != mask.shape:
                raise DatasetError(f"{s.mask_path}: mask size {mask.shape[::-1]} differs from image {s.image_path} "
                                   f"{image.shape[1::-1]}")
            if preprocess is not None:
                image = preprocess(image)
            self.images[i], self.masks[i] = resize_image(image, size), resize_mask(mask, size)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image, mask = self.images[i], self.masks[i]
        if self.augment is not None:
            out = self.augment(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return to_tensor(image), torch.from_numpy(mask.astype(np.float32))[None]


class SegmentationData(CachedData):
    """ISIC 2018 Task 1 with the committed split (``splits/isic2018_task1.csv``); ``data.train_subset`` and
    ``data.val_subset`` (ints) keep a fixed seeded subset, for smoke runs and the reduced Table 1 grid.
    ``data.pseudo_labels`` (``{table, drop_fraction, allowed_ids}``: the ``results.csv`` of a ``dermoseg segment``
    run over unlabelled images, the share of its least confident masks left out, and a metadata CSV under
    ``data.root`` listing the ids it may hold) adds that run's kept masks to the training pairs (self-training,
    :func:`pseudo_label_pairs`); ``pseudo_info`` then says which table and how many pairs (else None)."""

    pseudo_info: dict | None = None

    def setup(self, stage: str | None = None) -> None:
        """Load the split and cache the (optionally cleaned) train and validation pairs once; later calls do
        nothing. Raises DatasetError / SplitError if the data folder or split is missing or they disagree."""
        if self.train_set is not None:
            return
        data = self.cfg["data"]
        samples = load_isic2018_task1(Path(data["root"]) / "isic2018_task1")
        split = read_split(ISIC_SPLIT)
        train, val = select(samples, split, "train"), select(samples, split, "val")
        train = subset(train, data["train_subset"], self.cfg["seed"])
        val = subset(val, data["val_subset"], self.cfg["seed"], "data.val_subset")
        if data["pseudo_labels"]:
            pseudo, self.pseudo_info = pseudo_label_pairs(data["pseudo_labels"], Path(data["root"]),
                                                          {s.image_id for s in samples})
            train = train + pseudo
        preprocess = None
        if self.cfg["preprocess"]["enabled"]:
            from dermoseg.preprocess import clean_image
            preprocess = lambda im: clean_image(im, self.cfg["preprocess"]).image  # noqa: E731
        size = int(data["image_size"])
        augment = build_augmentation(self.cfg["augment"])  # seeded by its loader
        self.train_set = CachedSegmentationDataset(train, size, augment, preprocess, "train set")
        self.val_set = CachedSegmentationDataset(val, size, None, preprocess, "val set")



def _hard_dice_and_accuracy(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image Dice (empty/empty = 1) and pixel accuracy of the 0.5-thresholded prediction, (N,) each."""
    pred = (logits > 0).float()
    inter = (pred * target).sum((1, 2, 3))
    den = pred.sum((1, 2, 3)) + target.sum((1, 2, 3))
    dice = torch.where(den > 0, 2 * inter / den.clamp(min=1), torch.ones_like(den))
    acc = (pred == target).float().mean((1, 2, 3))
    return dice, acc


class SegmentationTask(L.LightningModule):
    """Model + loss + optimiser. Logs per epoch: ``train_loss``, ``train_dice``, ``train_pixel_accuracy``,
    ``val_loss``, ``val_dice``, ``val_pixel_accuracy`` (Dice/accuracy of the 0.5-thresholded mask, mean over
    images, at the training resolution)."""

    model_kind = "segmentation"  # the kind of model file it exports and accepts as ``trainer.init_from``
    warm_up = False  # its schedule has no learning-rate warm-up (dermoseg.training.check_optimizer)

    def __init__(self, cfg: dict[str, Any]):
        check_optimizer(cfg["optimizer"], self.warm_up)
        super().__init__()
        self.save_hyperparameters({"cfg": cfg})
        self.cfg = cfg
        # channels_last roughly halves CPU step time for these depthwise-separable networks (measured).
        self.model = build_model(cfg["model"]).to(memory_format=torch.channels_last)
        loss = dict(cfg["loss"])
        self.loss_fn = get_loss(loss.pop("name"), **loss)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) float32 → (N, 1, S, S) float32 logits (channels-last on CPU is faster)."""
        return self.model(x.contiguous(memory_format=torch.channels_last))

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        dice, acc = _hard_dice_and_accuracy(logits.detach(), y)
        n = x.shape[0]
        # sync_dist: under DDP the epoch figures are averaged over the ranks' shares of the data
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        self.log(f"{stage}_dice", dice.mean(), on_step=False, on_epoch=True, prog_bar=stage == "val", batch_size=n,
                 sync_dist=True)
        self.log(f"{stage}_pixel_accuracy", acc.mean(), on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss

    def training_step(self, batch, batch_idx):
        """Loss of one batch ``(x (N, 3, S, S), y (N, 1, S, S) float32 0/1)``; logs train loss, Dice, accuracy."""
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        """Logs val loss, hard Dice and pixel accuracy (per-image means) of one batch."""
        self._step(batch, "val")

    def configure_optimizers(self):
        """:func:`dermoseg.training.build_optimizer` (Adam is the paper's, §4.2) and, for ``scheduler: cosine``,
        cosine decay stepped once per epoch over ``trainer.epochs``. Raises ConfigError for an unknown optimizer
        or scheduler name."""
        opt_cfg = self.cfg["optimizer"]
        optimizer = build_optimizer(self.parameters(), opt_cfg)
        if opt_cfg["scheduler"] == "cosine":
            epochs = int(self.cfg["trainer"]["epochs"])
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        return optimizer


def train(cfg: dict[str, Any], out_dir: str | Path, resume: bool = False) -> Path:
    """Train a segmentation model and export its best epoch (highest ``val_dice``).

    Parameters
    ----------
    cfg : merged configuration (:func:`dermoseg.config.load_config`).
    out_dir : run folder; gets ``checkpoints/`` (every epoch: ``last.ckpt``, and the best), ``metrics.csv``
        (one row per epoch), ``config.yaml`` and the exported ``model.pt``.
    resume : continue from ``checkpoints/last.ckpt`` if it exists; the settings must be the run's own, except
        its name, epochs, time limit and machine (:func:`dermoseg.training.check_run_folder`). Without it the
        folder must not hold a training run.

    Returns
    -------
    Path of the exported ``model.pt``.

    Raises
    ------
    dermoseg.provenance.OutputFolderError
        Before any image is read, as :func:`dermoseg.training.run_folder` (checks and lock).
    dermoseg.data.datasets.DatasetError, dermoseg.data.splits.SplitError
        If the ISIC 2018 folder or the split is missing or disagrees with the data.
    """
    out_dir = Path(out_dir)
    with run_folder(out_dir, cfg, resume):  # checked and locked until the export is written
        seed_and_threads(cfg)
        data = SegmentationData(cfg)
        result = fit(SegmentationTask(cfg), data, cfg, out_dir, "val_dice", resume)
        if not result.is_global_zero:  # under DDP only rank 0 exports
            return out_dir / "model.pt"
        extra = {**result.info("val_dice"), **({"pseudo_labels": data.pseudo_info} if data.pseudo_info else {})}
        return export_model(result.best_checkpoint, out_dir / "model.pt", extra=extra)


def export_model(checkpoint: str | Path, out: str | Path, extra: dict | None = None) -> Path:
    """Turn a Lightning checkpoint into a small inference file ``{"config", "state_dict", "info"}``
    (float32 weights, no optimiser state) that :meth:`dermoseg.segmentation.segmenter.Segmenter.load` reads.

    A model trained on cleaned images records the complete cleaning settings it was trained with
    (:func:`dermoseg.preprocess.resolve_settings`), so that inference cleans the same way even after the shipped
    defaults change."""
    from dermoseg.preprocess import resolve_settings
    cfg, state, info = modelfile.read_checkpoint(checkpoint)
    preprocess = cfg.get("preprocess") or {"enabled": False}
    config = {"model": cfg["model"], "image_size": cfg["data"]["image_size"],
              "tta": bool(cfg.get("inference", {}).get("tta", False)),
              "preprocess": resolve_settings(preprocess) if preprocess.get("enabled") else preprocess,
              "train_config": cfg}
    return modelfile.write(out, SegmentationTask.model_kind, config, state, {**info, **(extra or {})})
