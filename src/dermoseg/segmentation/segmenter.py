"""The loaded segmentation model: image → lesion probability → mask, at the image's own size.

:class:`Segmenter` owns every step around the network, so that ``segment``, ``evaluate``, the classifier's
mask and the Python API apply a model exactly as it was trained: optional cleaning (black frame and hair,
paper §3.1, when the model file says so), resizing to the model's square training size, ImageNet
normalisation, the network through its :attr:`Segmenter.runner` (which pads to the output stride and crops
back), optional flip test-time augmentation, sigmoid, bilinear resizing back to the input's height and width,
and thresholding to one filled lesion region. A 6000×4000 photograph costs the network no more than a 256×256
one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch

from dermoseg import modelfile
from dermoseg.data.transforms import normalise, resize_image
from dermoseg.engine import TorchRunner

THRESHOLD = 0.5  # default lesion-probability threshold of every command


def _check_image(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")


@dataclass
class Segmentation:
    """What :meth:`Segmenter.segment` returns for one image.

    Attributes
    ----------
    image : (H, W, 3) uint8 RGB, the input as given (measurements and overlays use it, not the cleaned copy).
    probability : (H, W) float32 lesion probability in [0, 1].
    mask : (H, W) bool, True = lesion (one filled region, see :func:`probability_to_mask`).
    threshold : the probability threshold used.
    """

    image: np.ndarray
    probability: np.ndarray
    mask: np.ndarray
    threshold: float

    def measure(self, mm_per_pixel: float | None = None) -> dict[str, Any]:
        """The lesion measurements of :func:`dermoseg.segmentation.measure.measure_lesion` on this mask."""
        from dermoseg.segmentation.measure import measure_lesion
        return measure_lesion(self.image, self.mask, mm_per_pixel)


@dataclass
class Segmenter:
    """A segmentation model file loaded for inference (:meth:`load`).

    Attributes
    ----------
    runner : the network seam, ``(N, 3, S, S) float32 normalised → (N, 1, S, S) float32 logits`` (numpy).
    image_size : side S of the square input the network was trained at, in pixels.
    preprocess : cleaning settings from the model file (``enabled`` and :mod:`dermoseg.preprocess` keys).
    tta : the file's default for flip test-time augmentation.
    path, info : the file and its provenance (epoch, scores, commit).
    """

    runner: Callable[[np.ndarray], np.ndarray]
    image_size: int
    preprocess: dict[str, Any]
    path: Path
    info: dict[str, Any] = field(default_factory=dict)
    tta: bool = False

    @classmethod
    def load(cls, model: str | Path | None = None) -> "Segmenter":
        """Load a segmentation model file (None or "default": the shipped ``weights/segmentation.pt``).

        Raises
        ------
        dermoseg.errors.ModelFileError
            If the file is missing, unreadable, or not a dermoseg segmentation model.
        """
        from dermoseg.models import build_model
        path, payload = modelfile.read(model, "segmentation")
        cfg = payload["config"]
        network = build_model(cfg["model"], pretrained=False)
        network.load_state_dict(payload["state_dict"])
        return cls(TorchRunner(network), int(cfg["image_size"]), dict(cfg.get("preprocess") or {}), path,
                   dict(payload.get("info", {})), bool(cfg.get("tta", False)))

    @property
    def network(self) -> torch.nn.Module:
        """The PyTorch network behind a :class:`dermoseg.engine.TorchRunner` (for ``dermoseg info``)."""
        return self.runner.network

    @property
    def trained_epochs(self) -> int | None:
        """How many epochs these weights had trained (1-based), from the 0-based ``checkpoint_epoch`` in ``info``;
        None if the file does not say."""
        epoch = self.info.get("checkpoint_epoch")
        return int(epoch) + 1 if epoch is not None and int(epoch) >= 0 else None

    @property
    def sha256(self) -> str:
        """sha256 of the model file (hex)."""
        return modelfile.file_sha256(self.path)

    def clean(self, image: np.ndarray, preprocess: bool | None = None) -> np.ndarray:
        """The image the network sees before resizing: cleaned (black frame, hair; paper §3.1) when ``preprocess``
        is true, or when it is None and the model file enables cleaning; otherwise ``image`` itself."""
        if not (bool(self.preprocess.get("enabled")) if preprocess is None else preprocess):
            return image
        from dermoseg.preprocess import clean_image
        return clean_image(image, self.preprocess).image

    def probability(self, image: np.ndarray, tta: bool | None = None, preprocess: bool | None = None) -> np.ndarray:
        """Lesion probability of every pixel of one image.

        Parameters
        ----------
        image : (H, W, 3) uint8 RGB, any size ≥ 1×1.
        tta : average the logits over horizontal and vertical flips (3× slower); None follows the model file
            (the shipped model's is on: chosen on the ISIC validation split).
        preprocess : clean the image first (see :meth:`clean`); None follows the model file.

        Returns
        -------
        (H, W) float32 probabilities in [0, 1].

        Raises
        ------
        ValueError
            If ``image`` is not (H, W, 3) uint8.
        """
        _check_image(image)
        h, w = image.shape[:2]
        x = normalise(resize_image(self.clean(image, preprocess), self.image_size))[None]
        logits = self.runner(x)
        if self.tta if tta is None else tta:
            logits = (logits + self.runner(x[..., ::-1])[..., ::-1] + self.runner(x[..., ::-1, :])[..., ::-1, :]) / 3.0
        prob = torch.sigmoid(torch.from_numpy(np.ascontiguousarray(logits)))[0, 0].numpy().astype(np.float32)
        return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)

    def segment(self, image: np.ndarray, threshold: float | None = None, tta: bool | None = None,
                preprocess: bool | None = None, exclude: np.ndarray | None = None) -> Segmentation:
        """Probability and lesion mask of one image (see :meth:`probability`; ``threshold`` defaults to
        :data:`THRESHOLD`, a pixel is lesion where its probability is above it). ``exclude``: (H, W) bool pixels
        that show nothing (fully transparent) and get probability 0, so they are never lesion."""
        threshold = THRESHOLD if threshold is None else threshold
        prob = self.probability(image, tta, preprocess)
        if exclude is not None:
            prob[exclude] = 0.0
        return Segmentation(image, prob, probability_to_mask(prob, threshold), threshold)


def probability_to_mask(prob: np.ndarray, threshold: float = THRESHOLD, keep_largest: bool = True) -> np.ndarray:
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
    outside = np.zeros(n, bool)  # background regions that touch the image border (a lookup table by label:
    outside[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True  # fast on 30 Mpx)
    outside[0] = True
    return mask | ~outside[labels]
