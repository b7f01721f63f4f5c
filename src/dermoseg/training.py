"""Training on Lightning: the data module (ISIC 2018 split), the segmentation task (model, loss, Adam) and
the run driver that checkpoints every epoch, resumes, logs per-epoch metrics to CSV and exports the best
weights as a :mod:`dermoseg.inference` model file (paper §4.2; method.md rows 3 and 8).
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dermoseg.data.datasets import DatasetError, load_isic2018_task1
from dermoseg.data.splits import ISIC_SPLIT, read_split, select
from dermoseg.data.transforms import build_augmentation, resize_image, resize_mask, to_tensor
from dermoseg.io import read_image, read_mask, write_text
from dermoseg.losses import get_loss
from dermoseg.models import build_model


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


def subset(samples: list, n: int | None, seed: int) -> list:
    """The first ``n`` samples of a seeded shuffle, in their original order (all of them if ``n`` is None)."""
    if not n:
        return samples
    order = np.random.default_rng(seed).permutation(len(samples))
    return [samples[i] for i in sorted(order[: int(n)])]


class CachedData(L.LightningDataModule):
    """Loaders over a ``train_set`` and a ``val_set`` that a subclass builds in ``setup``: batch size
    ``trainer.batch_size``, ``data.num_workers`` worker processes (default 0, the data are cached in memory)."""

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        self.cfg = cfg
        self.train_set = self.val_set = None

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        workers = int(self.cfg["data"].get("num_workers", 0))
        return DataLoader(dataset, batch_size=int(self.cfg["trainer"]["batch_size"]), shuffle=shuffle,
                          num_workers=workers, persistent_workers=workers > 0, drop_last=shuffle)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, augmented training batches; the last partial batch is dropped."""
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in split order, unaugmented."""
        return self._loader(self.val_set, False)


class SegmentationData(CachedData):
    """ISIC 2018 Task 1 with the committed split (``splits/isic2018_task1.csv``); ``data.train_subset`` and
    ``data.val_subset`` (ints) keep a fixed seeded subset, for smoke runs and the reduced Table 1 grid."""

    def setup(self, stage: str | None = None) -> None:
        """Load the split and cache the (optionally cleaned) train and validation pairs once; later calls do
        nothing. Raises DatasetError / SplitError if the data folder or split is missing or they disagree."""
        if self.train_set is not None:
            return
        data = self.cfg["data"]
        samples = load_isic2018_task1(Path(data["root"]) / "isic2018_task1")
        split = read_split(ISIC_SPLIT)
        train, val = select(samples, split, "train"), select(samples, split, "val")
        train = subset(train, data.get("train_subset"), self.cfg["seed"])
        val = subset(val, data.get("val_subset"), self.cfg["seed"])
        preprocess = None
        if self.cfg.get("preprocess", {}).get("enabled"):
            from dermoseg.preprocess import clean_image
            preprocess = lambda im: clean_image(im, self.cfg["preprocess"]).image  # noqa: E731
        size = int(data["image_size"])
        self.train_set = CachedSegmentationDataset(train, size, build_augmentation(self.cfg["augment"]), preprocess, "train set")
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

    def __init__(self, cfg: dict[str, Any]):
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
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        self.log(f"{stage}_dice", dice.mean(), on_step=False, on_epoch=True, prog_bar=stage == "val", batch_size=n)
        self.log(f"{stage}_pixel_accuracy", acc.mean(), on_step=False, on_epoch=True, batch_size=n)
        return loss

    def training_step(self, batch, batch_idx):
        """Loss of one batch ``(x (N, 3, S, S), y (N, 1, S, S) float32 0/1)``; logs train loss, Dice, accuracy."""
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        """Logs val loss, hard Dice and pixel accuracy (per-image means) of one batch."""
        self._step(batch, "val")

    def configure_optimizers(self):
        """Adam (paper §4.2) at ``optimizer.lr``, optionally with cosine decay over ``trainer.epochs``.
        Raises ValueError for another optimizer name."""
        opt_cfg = self.cfg["optimizer"]
        if opt_cfg.get("name", "adam") != "adam":
            raise ValueError(f"unknown optimizer '{opt_cfg['name']}' (the paper's is adam)")
        optimizer = torch.optim.Adam(self.parameters(), lr=float(opt_cfg["lr"]),
                                     weight_decay=float(opt_cfg.get("weight_decay", 0.0)))
        if opt_cfg.get("scheduler", "none") == "cosine":
            epochs = int(self.cfg["trainer"]["epochs"])
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        return optimizer


def git_commit() -> str:
    """The current git commit of the working tree (``unknown`` outside a checkout; ``+dirty`` if modified)."""
    try:
        here = Path(__file__).resolve().parent
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@dataclass
class FitResult:
    """What :func:`fit` leaves: the best checkpoint, its monitored score, seconds spent and epochs completed."""

    best_checkpoint: Path
    best_score: float
    seconds: float
    epochs_completed: int

    def info(self, score_name: str) -> dict[str, Any]:
        """Provenance for an exported model file: time, score, epochs, machine and commit."""
        return {"train_seconds_this_session": round(self.seconds, 1), f"best_{score_name}": self.best_score,
                "epochs_completed": self.epochs_completed,
                "machine": f"{platform.machine()} {torch.get_num_threads()} threads", "commit": git_commit()}


class EpochEndCheckpoint(Callback):
    """Write ``path`` (the resumable ``last.ckpt``) after every whole training epoch, its validation included,
    replacing the previous one atomically.

    Lightning's own ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only in an epoch where the monitored
    checkpoint improved, so a resume restarted from the best epoch rather than the latest; and an epoch cut short
    by ``trainer.max_time`` is not saved, so a resume never starts mid-epoch.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._whole_epoch = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._whole_epoch = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        self._whole_epoch = batch_idx + 1 >= trainer.num_training_batches

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._whole_epoch and not trainer.sanity_checking:
            tmp = self.path.with_name(self.path.name + ".tmp")
            trainer.save_checkpoint(tmp)  # called on every rank (it synchronises them); only rank 0 writes
            if trainer.is_global_zero:
                tmp.replace(self.path)


def fit(task: L.LightningModule, data: L.LightningDataModule, cfg: dict[str, Any], out_dir: Path, monitor: str,
        resume: bool = False) -> FitResult:
    """The run driver shared by segmentation and classification training.

    Seeds everything, writes ``config.yaml``, trains with Lightning (devices, strategy and precision from the
    config's ``trainer`` section, so one or several GPUs work by configuration), keeps ``checkpoints/last.ckpt``
    every epoch and ``checkpoints/best.ckpt`` (highest ``monitor``), logs each session to ``logs/version_N``
    and merges them into ``metrics.csv`` (one row per epoch). ``resume`` continues from ``last.ckpt``.
    """
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    tcfg = cfg["trainer"]
    (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    ckpt_dir = out_dir / "checkpoints"
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=monitor, mode="max", save_top_k=1,
                           every_n_epochs=1)
    last = ckpt_dir / "last.ckpt"
    logger = CSVLogger(save_dir=str(out_dir), name="logs")  # one version folder per session (resumes included)
    max_time = {"minutes": float(tcfg["max_time_minutes"])} if tcfg.get("max_time_minutes") else None
    trainer = L.Trainer(max_epochs=int(tcfg["epochs"]), accelerator=tcfg["accelerator"], devices=tcfg["devices"],
                        strategy=tcfg["strategy"], precision=tcfg["precision"], logger=logger,
                        callbacks=[best, EpochEndCheckpoint(last), TQDMProgressBar(refresh_rate=10)],
                        log_every_n_steps=10,
                        deterministic=False, max_time=max_time, num_sanity_val_steps=0)
    start = time.time()
    trainer.fit(task, datamodule=data, ckpt_path=str(last) if resume and last.is_file() else None)
    elapsed = time.time() - start
    merge_epoch_metrics(out_dir / "logs", out_dir / "metrics.csv")
    score = float(best.best_model_score) if best.best_model_score is not None else float("nan")
    return FitResult(Path(best.best_model_path or last), score, elapsed, int(trainer.current_epoch))


def seed_and_threads(cfg: dict[str, Any]) -> None:
    """Seed Python, NumPy and torch from ``cfg["seed"]`` and apply ``trainer.num_threads`` if set."""
    L.seed_everything(int(cfg["seed"]), workers=True)
    if cfg["trainer"].get("num_threads"):
        torch.set_num_threads(int(cfg["trainer"]["num_threads"]))


def train(cfg: dict[str, Any], out_dir: str | Path, resume: bool = False) -> Path:
    """Train a segmentation model and export its best epoch (highest ``val_dice``).

    Parameters
    ----------
    cfg : merged configuration (:func:`dermoseg.config.load_config`).
    out_dir : run folder; gets ``checkpoints/`` (every epoch: ``last.ckpt``, and the best), ``metrics.csv``
        (one row per epoch), ``config.yaml`` and the exported ``model.pt``.
    resume : continue from ``checkpoints/last.ckpt`` if it exists (same config).

    Returns
    -------
    Path of the exported ``model.pt``.
    """
    out_dir = Path(out_dir)
    seed_and_threads(cfg)
    result = fit(SegmentationTask(cfg), SegmentationData(cfg), cfg, out_dir, "val_dice", resume)
    return export_model(result.best_checkpoint, out_dir / "model.pt", extra=result.info("val_dice"))


def merge_epoch_metrics(log_dir: Path, out: Path) -> Path:
    """Merge the per-session Lightning CSV logs (``logs/version_*/metrics.csv``) into one row per epoch.

    Lightning writes train and validation figures of an epoch on separate rows, and a resumed run starts a new
    log; this keeps, for each epoch, the latest session's values of every column. Written atomically.
    """
    import pandas as pd

    frames = []
    for i, f in enumerate(sorted(log_dir.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))):
        df = pd.read_csv(f)
        df["_session"] = i
        frames.append(df)
    if not frames:
        return out
    df = pd.concat(frames, ignore_index=True)
    df = df[df["epoch"].notna()]
    merged = df.sort_values("_session").groupby("epoch").last().drop(columns=["_session"], errors="ignore")
    merged = merged.reset_index().sort_values("epoch")
    write_text(out, merged.to_csv(index=False))
    return out


def export_model(checkpoint: str | Path, out: str | Path, extra: dict | None = None) -> Path:
    """Turn a Lightning checkpoint into a small inference file ``{"config", "state_dict", "info"}``
    (float32 weights, no optimiser state) that :func:`dermoseg.inference.load_model` reads."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = ckpt["hyper_parameters"]["cfg"]
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    info = {"checkpoint_epoch": int(ckpt.get("epoch", -1)), **(extra or {})}
    payload = {"format": "dermoseg-segmentation-1", "config": {"model": cfg["model"], "image_size": cfg["data"]["image_size"],
               "tta": bool(cfg.get("inference", {}).get("tta", False)),
               "preprocess": cfg.get("preprocess", {"enabled": False}), "train_config": cfg}, "state_dict": state, "info": info}
    out = Path(out)
    tmp = out.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(out)
    (out.with_suffix(".json")).write_text(json.dumps({"config": payload["config"], "info": info}, indent=2), encoding="utf-8")
    return out
