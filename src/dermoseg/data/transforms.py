"""Resizing, normalisation and augmentation (paper abstract and §3: "rotated and deformed").

Augmentation is composed from albumentations, which moves the image and its mask with the same geometric
transform; colour jitter touches the image only. The same :func:`to_tensor` normalisation is used by training
and inference, so a model always sees inputs prepared the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import cv2
import numpy as np
import torch

if TYPE_CHECKING:  # albumentations takes ~1 s to import; inference never needs it
    import albumentations as A

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an (H, W, 3) uint8 RGB image to (size, size, 3) uint8 (area interpolation when shrinking,
    bilinear when enlarging). The aspect ratio is not kept, as in the squashed ISIC training images."""
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize an (H, W) bool mask to (size, size) bool (nearest neighbour on the area-averaged mask)."""
    m = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return m >= 0.5


def normalise(image: np.ndarray, mean: np.ndarray = IMAGENET_MEAN, std: np.ndarray = IMAGENET_STD) -> np.ndarray:
    """(H, W, 3) uint8 RGB → (3, H, W) float32 (x / 255 − mean) / std, with (3,) ``mean`` and ``std`` in [0, 1]
    units; by default ImageNet's (the input of every network here but the EfficientNet-Lite0 classifier,
    :func:`dermoseg.models.classifier.input_normalisation`)."""
    x = (image.astype(np.float32) / 255.0 - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB → (3, H, W) float32 tensor (:func:`normalise`)."""
    return torch.from_numpy(normalise(image))


def build_augmentation(cfg: Mapping[str, Any] | None, size: int | None = None,
                       seed: int | None = None) -> A.Compose | None:
    """Training augmentation from the config's ``augment`` section.

    Keys (all optional): ``random_resized_crop`` (mapping with ``scale`` [min, max] share of the image area and
    ``ratio`` [min, max] aspect ratio: a random crop resized to ``size`` × ``size``, as in Szegedy et al. 2015's
    Inception training; it covers lesions seen closer and at other aspect ratios than in the training copy),
    ``flip`` (bool, horizontal and vertical flips, p=0.5 each), ``rotate_limit``
    (degrees, random rotation in ±limit, reflect border), ``scale`` (± relative zoom), ``elastic_p`` and
    ``grid_p`` (probabilities of elastic and grid deformation), ``color_jitter`` (mapping with brightness,
    contrast, saturation, hue, p), ``blur_p`` (probability of a Gaussian blur, σ 0.3–1.5 px: softer optics) and
    ``jpeg_p`` (probability of re-encoding as JPEG at quality 40–95: other cameras' compression).
    ``None`` or ``{enabled: false}`` gives no augmentation.

    Parameters
    ----------
    size : output side in pixels of ``random_resized_crop`` (required when that key is set).
    seed : seed of the pipeline's own random generator (albumentations 2 does not draw from the global Python or
        NumPy state that ``seed_everything`` seeds); training reseeds it per rank and loader worker from the run's
        seed (:class:`dermoseg.training.CachedData`).

    Returns
    -------
    An albumentations pipeline taking ``image=(H, W, 3) uint8`` and ``mask=(H, W) uint8``, or None.

    Raises
    ------
    ValueError
        If ``random_resized_crop`` is set without ``size``.
    """
    if not cfg or not cfg.get("enabled", True):
        return None
    import albumentations as A
    ops: list[A.BasicTransform] = []
    crop = cfg.get("random_resized_crop")
    if crop:
        if not size:
            raise ValueError("augment.random_resized_crop needs the output size")
        ops.append(A.RandomResizedCrop(size=(int(size), int(size)), scale=tuple(crop.get("scale", (0.35, 1.0))),
                                       ratio=tuple(crop.get("ratio", (0.75, 4 / 3))), interpolation=cv2.INTER_AREA))
    if cfg.get("flip", True):
        ops += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    rotate, scale = float(cfg.get("rotate_limit", 0)), float(cfg.get("scale", 0))
    if rotate or scale:
        ops.append(A.Affine(rotate=(-rotate, rotate), scale=(1 - scale, 1 + scale), border_mode=cv2.BORDER_REFLECT_101, p=0.8))
    deform = []
    if cfg.get("elastic_p", 0):
        deform.append(A.ElasticTransform(alpha=30, sigma=6, border_mode=cv2.BORDER_REFLECT_101, p=1.0))
    if cfg.get("grid_p", 0):
        deform.append(A.GridDistortion(num_steps=5, distort_limit=0.2, border_mode=cv2.BORDER_REFLECT_101, p=1.0))
    if deform:
        ops.append(A.OneOf(deform, p=float(cfg.get("elastic_p", 0)) + float(cfg.get("grid_p", 0))))
    jitter = cfg.get("color_jitter")
    if jitter:
        ops.append(A.ColorJitter(brightness=jitter.get("brightness", 0.1), contrast=jitter.get("contrast", 0.1),
                                 saturation=jitter.get("saturation", 0.1), hue=jitter.get("hue", 0.02),
                                 p=jitter.get("p", 0.5)))
    if cfg.get("blur_p", 0):
        ops.append(A.GaussianBlur(blur_limit=0, sigma_limit=(0.3, 1.5), p=float(cfg["blur_p"])))
    if cfg.get("jpeg_p", 0):
        ops.append(A.ImageCompression(quality_range=(40, 95), p=float(cfg["jpeg_p"])))
    return A.Compose(ops, seed=seed)
