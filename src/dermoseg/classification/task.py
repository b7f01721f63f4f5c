"""The classification wing's training task: HAM10000 (Tschandl et al. 2018) with Lightning.

The same rooms as :mod:`dermoseg.segmentation.task`: a data module on the committed split (``splits/ham10000.csv``,
grouped by ``lesion_id``, stratified by class), a task (model, class-weighted cross-entropy, AdamW with warm-up
and cosine decay), and :func:`train_classifier`, which fits it on the shared floor (:func:`dermoseg.training.fit`:
``last.ckpt`` every epoch, the best by validation balanced accuracy, resume, ``metrics.csv``), then fits the
temperature on the validation split (Guo et al. 2017) and exports a classifier file (:mod:`dermoseg.modelfile`)
that :meth:`dermoseg.classification.classifier.Classifier.load` reads.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from tqdm import tqdm

from dermoseg import modelfile
from dermoseg.classification import HAM_CLASSES
from dermoseg.classification.classifier import CROP_MARGIN, flip_logits, input_tensor, mask_path_for, prepare_image
from dermoseg.data.datasets import load_ham10000
from dermoseg.data.splits import HAM_SPLIT, read_split, select
from dermoseg.data.transforms import build_augmentation, resize_image
from dermoseg.engine import TorchRunner
from dermoseg.errors import ConfigError
from dermoseg.io import MASK_FILE_THRESHOLD, read_image, read_mask
from dermoseg.metrics import balanced_accuracy
from dermoseg.models.classifier import build_classifier, input_normalisation
from dermoseg.training import (CachedData, build_optimizer, check_optimizer, fit, run_folder,
                               seed_and_threads, subset)


class CachedClassificationDataset(Dataset):
    """Images prepared once by :func:`prepare_image` and kept in memory as uint8 (5984 HAM images at 224² are
    about 900 MB), augmented on the fly.

    ``cache_size`` (default ``size``) is the side the images are kept at: a larger cache lets a random-resized
    crop zoom in without upsampling. An item that comes out of the augmentation at another size is resized to
    ``size``, the size inference gives the network (Shades of Gray is then estimated on the cached copy, not on
    the ``size`` one as at inference: a slight difference).

    ``normalisation`` is the (mean, std) of the RGB input, each (3,) in [0, 1] units: the encoder's
    (:func:`dermoseg.models.classifier.input_normalisation`; default MobileNetV2's, ImageNet's).

    Items: ``(x (C, S, S) float32, label int64)`` with C = 3, or 4 for ``mask_mode="channel"``.
    """

    def __init__(self, samples, size: int, mask_mode: str = "none", mask_dir: str | Path | None = None,
                 margin: float = CROP_MARGIN, augment=None, desc: str = "loading",
                 shades_of_gray_p: float | None = None, cache_size: int | None = None,
                 normalisation: tuple[np.ndarray, np.ndarray] = input_normalisation("mobilenet_v2")):
        self.augment = augment
        self.normalisation = normalisation
        self.size = int(size)
        self.labels = np.array([s.label for s in samples], dtype=np.int64)
        channels = 4 if mask_mode == "channel" else 3
        if cache_size is not None and (isinstance(cache_size, bool) or not isinstance(cache_size, int)
                                       or not self.size <= cache_size <= 4 * self.size):
            raise ConfigError(f"data.cache_size must be an integer from data.image_size ({self.size}) to 4 times it, "
                              f"got {cache_size!r}")
        cache_size = int(cache_size or size)
        self.images = np.empty((len(samples), cache_size, cache_size, channels), np.uint8)
        if mask_mode != "none" and mask_dir is None:
            raise ValueError(f"mask_mode '{mask_mode}' needs data.mask_dir (masks from 'dermoseg segment')")
        for i, s in enumerate(tqdm(samples, desc=desc, unit="img", leave=False)):
            image = read_image(s.image_path)
            mask = read_mask(mask_path_for(mask_dir, s.image_id), MASK_FILE_THRESHOLD) if mask_mode != "none" else None
            self.images[i] = prepare_image(image, cache_size, mask, mask_mode, margin, shades_of_gray_p)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image = self.images[i]
        if self.augment is not None:
            if image.shape[2] == 4:  # the mask channel moves with the image, colour jitter leaves it alone
                out = self.augment(image=np.ascontiguousarray(image[..., :3]), mask=image[..., 3])
                image = np.concatenate([out["image"], out["mask"][..., None]], axis=2)
            else:
                image = self.augment(image=image)["image"]
        if image.shape[0] != self.size or image.shape[1] != self.size:
            image = resize_image(image, self.size)
        return input_tensor(image, self.normalisation), torch.tensor(self.labels[i])


SAMPLINGS = ("shuffle", "class_balanced")  # data.sampling of a classifier run


class ClassificationData(CachedData):
    """HAM10000 with the committed lesion-grouped split; ``train_subset`` (an int) keeps n train images of a
    seeded shuffle (for timing runs). Batches are ``(x (B, C, S, S) float32, y (B,) int64)``."""

    def setup(self, stage: str | None = None) -> None:
        """Load the split and cache the train and validation images (once; later calls do nothing).

        Raises DatasetError / SplitError if the data folder or split is missing or they disagree, ConfigError for
        an unknown ``data.sampling`` or a ``data.histo_nevus_share`` :func:`sampling_weights` refuses (both before
        any image is read), and ValueError if a mask mode is set without ``data.mask_dir``."""
        if self.train_set is not None:
            return
        data, model = self.cfg["data"], self.cfg["model"]
        if data["sampling"] not in SAMPLINGS:  # checked before minutes of image caching
            raise ConfigError(f"data.sampling must be one of {', '.join(SAMPLINGS)}, got {data['sampling']!r}")
        check_histo_nevus_share(data["histo_nevus_share"])  # before the data is read
        samples = load_ham10000(Path(data["root"]) / "ham10000")
        split = read_split(data["split"] or HAM_SPLIT)
        train, val = select(samples, split, "train"), select(samples, split, "val")
        if data["train_subset"]:
            train = subset(train, data["train_subset"], self.cfg["seed"])
            val = val[: max(50, int(data["train_subset"]) // 4)]
        dx_types = np.array([s.dx_type for s in train], dtype=object)
        labels = np.array([s.label for s in train])
        sampling_weights(labels, dx_types, data["sampling"], data["histo_nevus_share"])  # refused before the caching
        size, mode = int(data["image_size"]), model["mask_mode"]
        kw = dict(mask_mode=mode, mask_dir=data["mask_dir"], margin=float(model["crop_margin"]),
                  shades_of_gray_p=model["shades_of_gray_p"],
                  normalisation=input_normalisation(model["encoder"]))
        augment = build_augmentation(self.cfg["augment"], size)  # seeded by its loader
        self.train_set = CachedClassificationDataset(train, size, augment=augment, desc="train set",
                                                     cache_size=data["cache_size"], **kw)
        self.train_dx_types = dx_types
        self.val_set = CachedClassificationDataset(val, size, desc="val set", **kw)

    def train_dataloader(self) -> DataLoader:
        """Augmented training batches drawn as :func:`sampling_weights` says: each image once per epoch in a
        shuffled order when it gives no weights, else as many images per epoch drawn with replacement with
        probability ∝ their weight.

        ``data.sampling`` and ``data.histo_nevus_share`` are checked by :meth:`setup`."""
        data = self.cfg["data"]
        weights = sampling_weights(self.train_set.labels, self.train_dx_types, data["sampling"],
                                   data["histo_nevus_share"])
        if weights is None:
            return super().train_dataloader()
        sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.float64), len(weights), replacement=True)
        return self._loader(self.train_set, True, sampler)


def check_histo_nevus_share(share: Any) -> None:
    """Raise ConfigError unless ``data.histo_nevus_share`` is null or a number strictly between 0 and 1."""
    if share is None:
        return
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 < float(share) < 1.0:
        raise ConfigError(f"data.histo_nevus_share must be null or a number between 0 and 1 (exclusive), got {share!r}")


def sampling_weights(labels: np.ndarray, dx_types: np.ndarray, sampling: str,
                     histo_nevus_share: float | None = None) -> np.ndarray | None:
    """Per-image drawing weights of a classifier's training epoch, or None for a plain shuffle.

    ``sampling``: "shuffle" (weight 1 each) or "class_balanced" (weight 1/n_c, so every class is equally likely in
    a batch: oversampling, Buda et al., "A systematic study of the class imbalance problem in convolutional neural
    networks", Neural Networks 106, 2018; pair it with ``loss.class_weight_power: 0``, or the rare classes are
    favoured twice).

    ``histo_nevus_share`` (in (0, 1), or None) re-divides the nevus class's total weight among its images so that
    the histopathology-confirmed nevi (``dx_type`` "histo") carry that share and the other nevi the rest; the class's
    total, and so the class mix of an epoch, is unchanged. In HAM10000 (Tschandl et al., Sci. Data 5, 180161, 2018)
    most nevi were confirmed by digital follow-up on one device, while excised nevi — the hard negatives for
    melanoma, and the nevi of other archives — are a quarter of the class. Weights switch an epoch from a shuffle
    (each image once) to draws with replacement (about 63% of the images, some several times), a second change
    beside the re-division; a control is ``histo_nevus_share`` at the split's own share of excised nevi (0.25 in
    HAM10000's training split), which draws with replacement and re-divides nothing.

    Parameters
    ----------
    labels : (N,) int classes (indices into :data:`HAM_CLASSES`); dx_types : (N,) str, HAM10000's ``dx_type``.

    Returns
    -------
    (N,) float64 weights > 0, or None when ``sampling`` is "shuffle" and ``histo_nevus_share`` is None.

    Raises
    ------
    ConfigError
        For an unknown ``sampling``, a share outside (0, 1), or a share when the training nevi are all
        histopathology-confirmed or none is.
    """
    if sampling not in SAMPLINGS:
        raise ConfigError(f"data.sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    check_histo_nevus_share(histo_nevus_share)
    if sampling == "shuffle" and histo_nevus_share is None:
        return None
    labels = np.asarray(labels)
    weights = np.ones(len(labels)) if sampling == "shuffle" else \
        1.0 / np.bincount(labels, minlength=len(HAM_CLASSES))[labels]
    if histo_nevus_share is not None:
        nevus = labels == HAM_CLASSES.index("NV")
        histo = nevus & (np.asarray(dx_types, dtype=object) == "histo")
        other = nevus & ~histo
        if not histo.any() or not other.any():
            raise ConfigError(f"data.histo_nevus_share needs histopathology-confirmed and other nevi in the training "
                              f"split; it has {int(histo.sum())} and {int(other.sum())}")
        total = weights[nevus].sum()
        weights[histo] *= histo_nevus_share * total / weights[histo].sum()
        weights[other] *= (1.0 - histo_nevus_share) * total / weights[other].sum()
    return weights


def class_weights(labels: np.ndarray, num_classes: int, power: float = 1.0) -> torch.Tensor:
    """Cross-entropy class weights w_c ∝ (N / (K · n_c))^power, normalised so that Σ_c n_c w_c = N.

    ``power = 1`` weights every class equally in the loss (the balanced-accuracy objective); 0 is unweighted.

    Parameters
    ----------
    labels : (N,) int training labels; num_classes : K; power : ≥ 0.

    Returns
    -------
    (K,) float32 tensor.

    Raises
    ------
    ValueError
        If a class has no training example (its weight would be infinite) or ``power`` < 0.
    """
    counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.float64)
    if (counts == 0).any():
        raise ValueError(f"classes without training examples: {[HAM_CLASSES[i] for i in np.flatnonzero(counts == 0)]}")
    if power < 0:
        raise ValueError(f"class weight power must be >= 0, got {power}")
    w = (counts.sum() / (num_classes * counts)) ** power
    w *= counts.sum() / float((counts * w).sum())
    return torch.tensor(w, dtype=torch.float32)


class ClassificationTask(L.LightningModule):
    """Classifier + class-weighted cross-entropy + AdamW. Logs per epoch ``train_loss``, ``val_loss``
    (weighted), ``val_nll`` (unweighted), ``val_balanced_accuracy`` (ISIC 2018 Task 3 metric) and ``lr``."""

    model_kind = "classifier"  # the kind of model file it exports and accepts as ``trainer.init_from``
    warm_up = True  # its cosine schedule starts with a linear warm-up over optimizer.warmup_epochs

    def __init__(self, cfg: dict[str, Any], weights: torch.Tensor | None = None):
        check_optimizer(cfg["optimizer"], self.warm_up)
        super().__init__()
        self.save_hyperparameters({"cfg": cfg})
        self.cfg = cfg
        # channels_last roughly halves CPU step time for depthwise-separable networks (measured).
        self.model = build_classifier(cfg["model"]).to(memory_format=torch.channels_last)
        self.register_buffer("class_weight", weights if weights is not None else torch.ones(len(HAM_CLASSES)))
        self.label_smoothing = float(cfg["loss"]["label_smoothing"])
        self._val_logits: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) float32 → (N, 7) logits (channels-last on CPU)."""
        return self.model(x.contiguous(memory_format=torch.channels_last))

    def training_step(self, batch, batch_idx):
        """Class-weighted cross-entropy of one batch (logged as ``train_loss``)."""
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y, weight=self.class_weight, label_smoothing=self.label_smoothing)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=x.shape[0], sync_dist=True)
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=False, on_epoch=True, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        """Weighted and unweighted cross-entropy of one batch; keeps the logits for the epoch's balanced accuracy."""
        x, y = batch
        logits = self(x)
        n = x.shape[0]
        self.log("val_loss", nn.functional.cross_entropy(logits, y, weight=self.class_weight), on_step=False,
                 on_epoch=True, batch_size=n, sync_dist=True)
        self.log("val_nll", nn.functional.cross_entropy(logits, y), on_step=False, on_epoch=True, batch_size=n,
                 sync_dist=True)
        self._val_logits.append(logits.detach().float().cpu())
        self._val_labels.append(y.cpu())

    def on_validation_epoch_end(self) -> None:
        """Log ``val_balanced_accuracy`` (ISIC 2018 Task 3 metric) over the whole validation split."""
        if not self._val_logits:
            return
        # under DDP every rank gathers all ranks' shares, so each computes the same figure over the whole split
        logits = self.all_gather(torch.cat(self._val_logits)).reshape(-1, len(HAM_CLASSES)).cpu().numpy()
        labels = self.all_gather(torch.cat(self._val_labels)).reshape(-1).cpu().numpy()
        self._val_logits, self._val_labels = [], []
        self.log("val_balanced_accuracy", balanced_accuracy(labels, logits), prog_bar=True)

    def configure_optimizers(self):
        """:func:`dermoseg.training.build_optimizer` with, for ``scheduler: cosine``, a per-step linear warm-up over
        ``warmup_epochs`` then cosine decay to 0 at the planned last step (Loshchilov & Hutter 2017).

        Raises ConfigError for an unknown optimizer or scheduler name (:func:`dermoseg.training.build_optimizer`)."""
        opt = self.cfg["optimizer"]
        optimizer = build_optimizer(self.parameters(), opt)
        if opt["scheduler"] != "cosine":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(float(opt["warmup_epochs"]) * total / max(1, int(self.cfg["trainer"]["epochs"])))

        def factor(step: int) -> float:
            """Learning-rate multiplier in [0, 1] at optimiser step ``step``."""
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def train_classifier(cfg: dict[str, Any], out_dir: str | Path, resume: bool = False) -> Path:
    """Train the classifier, then calibrate and export its best epoch (highest ``val_balanced_accuracy``).

    Parameters
    ----------
    cfg : merged configuration with ``task: classification`` (see ``configs/classifier_mobilenet_v2.yaml``).
    out_dir : run folder; gets ``checkpoints/`` (``last.ckpt`` every epoch, and ``best.ckpt``), ``logs/``
        (Lightning's CSV log of each session), ``metrics.csv`` (one row per epoch, sessions merged by
        :func:`dermoseg.training.merge_epoch_metrics`), ``config.yaml``, and the exported ``model.pt`` +
        ``model.json``.
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
        If the HAM10000 folder or the split is missing or disagrees with the data.
    """
    out_dir = Path(out_dir)
    with run_folder(out_dir, cfg, resume):  # checked and locked until the calibrated export is written
        seed_and_threads(cfg)
        data = ClassificationData(cfg)
        data.setup()
        weights = class_weights(data.train_set.labels, len(HAM_CLASSES), float(cfg["loss"]["class_weight_power"]))
        result = fit(ClassificationTask(cfg, weights), data, cfg, out_dir, "val_balanced_accuracy", resume)
        if not result.is_global_zero:  # under DDP only rank 0 calibrates and exports
            return out_dir / "model.pt"
        return export_classifier(result.best_checkpoint, out_dir / "model.pt", data.val_set,
                                 extra=result.info("val_balanced_accuracy"))


def dataset_logits(network: nn.Module, dataset: CachedClassificationDataset, tta: bool = True,
                   batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(N, 7) float64 logits (:func:`dermoseg.classification.classifier.flip_logits`) and (N,) int labels of
    every item of an unaugmented cached dataset, with a progress bar (minutes on a CPU for an ensemble)."""
    runner = TorchRunner(network)
    out = []
    for i in tqdm(range(0, len(dataset), batch_size), desc="validation logits", unit="batch", leave=False):
        batch = torch.stack([dataset[j][0] for j in range(i, min(len(dataset), i + batch_size))]).numpy()
        out.append(flip_logits(runner, batch, tta).astype(np.float64))
    return np.concatenate(out), dataset.labels.copy()


def export_classifier(checkpoint: str | Path, out: str | Path, val_set: CachedClassificationDataset | None = None,
                      extra: dict | None = None, half: bool = True, tta: bool = True) -> Path:
    """Turn a Lightning checkpoint into a small inference file, with the temperature fitted on the validation split.

    Parameters
    ----------
    checkpoint : Lightning ``.ckpt`` of a :class:`ClassificationTask`.
    out : output ``.pt``; a ``.json`` with the config and info is written beside it.
    val_set : the unaugmented validation set; if given, the temperature T is fitted by NLL on its (TTA) logits
        (:func:`dermoseg.classification.calibration.fit_temperature`) and the validation balanced accuracy and
        ECE before/after are recorded; otherwise T = 1.
    extra : more ``info`` entries (training time, commit...).
    half : store the weights as float16 (half the size; loaded back as float32).
    tta : whether inference averages the four flips (the calibration is fitted for that choice).

    Returns
    -------
    The path written: ``{"format": "dermoseg-classifier-1", "config", "state_dict", "temperature", "info"}``,
    ``config`` recording the input ``normalisation`` (mean and std of the encoder's ImageNet weights);
    with ``val_set``, also the out-of-distribution threshold beside it (``X.ood.json``,
    :func:`dermoseg.classification.ood.fit_check` on the validation logits).
    """
    cfg, state, info = modelfile.read_checkpoint(checkpoint)
    info.update(extra or {})
    if half:  # rounded first, so that T and the OOD threshold are fitted on the weights the file holds
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    mean, std = input_normalisation(cfg["model"]["encoder"])
    config = {"model": cfg["model"], "image_size": int(cfg["data"]["image_size"]), "classes": list(HAM_CLASSES),
              "normalisation": {"mean": mean.tolist(), "std": std.tolist()}, "tta": bool(tta), "train_config": cfg}
    return write_calibrated(out, config, state, info, val_set)


def write_calibrated(out: str | Path, config: dict[str, Any], state: dict[str, torch.Tensor], info: dict[str, Any],
                     val_set: CachedClassificationDataset | None) -> Path:
    """Write a classifier file with its temperature fitted on the validation split, and its OOD sidecar.

    Parameters
    ----------
    out : output ``.pt`` (a ``.json`` beside it, :func:`dermoseg.modelfile.write`).
    config : the file's ``config`` (``model``, ``image_size``, ``classes``, ``normalisation``, ``tta``, ...).
    state : the network's weights (stored as given; the network is built from ``config["model"]`` and fed them as
        float32, so T and the OOD threshold are fitted on exactly the stored weights).
    info : provenance; the validation figures are added to it.
    val_set : the unaugmented validation set prepared with ``config``'s size and normalisation, or None (T = 1,
        no sidecar).

    Returns
    -------
    ``out``: ``{"format": "dermoseg-classifier-1", "config", "state_dict", "temperature", "info"}``; with
    ``val_set``, T fitted by NLL on its (flip-TTA when ``config["tta"]``) logits
    (:func:`dermoseg.classification.calibration.fit_temperature`, Guo et al. 2017), the validation balanced accuracy
    and ECE before/after recorded, and the out-of-distribution threshold written beside it (``X.ood.json``,
    :func:`dermoseg.classification.ood.fit_check`).
    """
    from dermoseg.classification import calibration, ood
    temperature, logits = 1.0, None
    if val_set is not None:
        network = build_classifier(config["model"], pretrained=False)
        network.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in state.items()})
        logits, labels = dataset_logits(network, val_set, bool(config.get("tta", True)))
        temperature = calibration.fit_temperature(logits, labels)
        info.update({"val_images": int(len(labels)), "val_balanced_accuracy_tta": balanced_accuracy(labels, logits),
                     "val_nll_before": calibration.nll(logits, labels),
                     "val_nll_after": calibration.nll(logits, labels, temperature),
                     "val_ece_before": calibration.expected_calibration_error(calibration.probabilities(logits), labels),
                     "val_ece_after": calibration.expected_calibration_error(
                         calibration.probabilities(logits, temperature), labels)})
    path = modelfile.write(out, ClassificationTask.model_kind, config, state, info, temperature=float(temperature))
    if logits is not None:
        ood.write_sidecar(path, ood.fit_check(logits, temperature, modelfile.file_sha256(path),
                                              f"HAM10000 validation split ({len(logits)} images)"))
    return path
