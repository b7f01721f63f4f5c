"""Image → lesion probability and mask at the image's own size, with a trained model file.

Data flow (style.md): the image is optionally cleaned (black frame, hair; :mod:`dermoseg.preprocess`), resized
to the model's square training size, normalised, passed through the network (which pads to its output stride
and crops back), and the probability map is resized bilinearly back to the original height and width. A
6000×4000 photograph therefore costs the network no more than a 256×256 one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from dermoseg.data.transforms import resize_image, to_tensor
from dermoseg.errors import ModelFileError
from dermoseg.io import file_sha256
from dermoseg.models import build_model

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = WEIGHTS_DIR / "segmentation.pt"


@dataclass
class SegmentationModel:
    """A loaded network with what it needs to be applied: its square input size and preprocessing settings."""

    network: nn.Module
    image_size: int
    preprocess: dict[str, Any]
    path: Path
    info: dict[str, Any]
    tta: bool = False  # the model file's default for flip test-time augmentation

    @property
    def trained_epochs(self) -> int | None:
        """How many epochs these weights had trained (1-based), from the 0-based ``checkpoint_epoch`` that
        :func:`dermoseg.training.export_model` records in ``info``; None if the file does not say."""
        epoch = self.info.get("checkpoint_epoch")
        return int(epoch) + 1 if epoch is not None and int(epoch) >= 0 else None

    @property
    def sha256(self) -> str:
        """sha256 of the model file (hex)."""
        return file_sha256(self.path)


def load_model(path: str | Path | None = None) -> SegmentationModel:
    """Load a model file written by :func:`dermoseg.training.export_model` (default: the shipped one).

    Parameters
    ----------
    path : ``.pt`` model file, or None for ``dermoseg/weights/segmentation.pt``.

    Returns
    -------
    The model in eval mode on CPU (channels-last memory format).

    Raises
    ------
    ModelFileError
        If the file is missing, unreadable, or not a dermoseg segmentation model.
    """
    path = Path(path) if path is not None else DEFAULT_MODEL
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many kinds on a corrupt file
        raise ModelFileError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != "dermoseg-segmentation-1":
        raise ModelFileError(f"{path}: not a dermoseg segmentation model (no 'dermoseg-segmentation-1' format tag)")
    cfg = payload["config"]
    network = build_model(cfg["model"], pretrained=False)
    network.load_state_dict(payload["state_dict"])
    network.eval().to(memory_format=torch.channels_last)
    return SegmentationModel(network, int(cfg["image_size"]), dict(cfg.get("preprocess") or {}), path,
                             dict(payload.get("info", {})), bool(cfg.get("tta", False)))


@torch.inference_mode()
def predict_probability(model: SegmentationModel, image: np.ndarray, tta: bool | None = None) -> np.ndarray:
    """Lesion probability of every pixel of one image.

    Parameters
    ----------
    model : a loaded :class:`SegmentationModel`.
    image : (H, W, 3) uint8 RGB, any size ≥ 1×1.
    tta : average over horizontal and vertical flips (test-time augmentation; 3× slower); None follows the
        model file's setting (the shipped model's is on: chosen on the ISIC validation split).

    Returns
    -------
    (H, W) float32 probabilities in [0, 1].

    Raises
    ------
    ValueError
        If ``image`` is not (H, W, 3) uint8.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    x = to_tensor(resize_image(image, model.image_size))[None].contiguous(memory_format=torch.channels_last)
    logits = model.network(x)
    if model.tta if tta is None else tta:
        logits = logits + model.network(x.flip(3)).flip(3) + model.network(x.flip(2)).flip(2)
        logits = logits / 3.0
    prob = torch.sigmoid(logits)[0, 0].numpy().astype(np.float32)
    return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)


def probability_to_mask(prob: np.ndarray, threshold: float = 0.5, keep_largest: bool = True) -> np.ndarray:
    """Threshold a probability map into a lesion mask.

    Parameters
    ----------
    prob : (H, W) float probabilities in [0, 1].
    threshold : a pixel is lesion where ``prob > threshold``.
    keep_largest : keep only the largest connected lesion region and fill its holes (a dermoscopic image shows
        one lesion; ISIC 2018 ground truths are single filled regions).

    Returns
    -------
    (H, W) bool mask.
    """
    mask = prob > threshold
    if not keep_largest or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    mask = labels == largest
    # Fill holes: background not connected to the border becomes lesion.
    inv = (~mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))) - {0}
    holes = (labels > 0) & ~np.isin(labels, list(border))
    return mask | holes
