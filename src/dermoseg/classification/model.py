"""The lesion classifier: ImageNet MobileNetV2 encoder + global average pooling + dropout + linear head.

The encoder is :class:`dermoseg.models.encoders.MobileNetV2Encoder` with its 1×1 conv head to 1280 channels
(``with_head=True``, output stride 32), i.e. torchvision's MobileNetV2 feature extractor (Sandler et al. 2018,
"MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR), the ImageNet-pretrained depthwise-separable
encoder of method.md row 4. Like segmentation_models_pytorch's classification head (style.md), the head is
pooling → dropout → linear on the deepest features.

The mask ablation (issue 5, "does the lesion mask help?") has two forms, chosen by ``mask_mode``:

* ``"crop"``: the image is cropped to the lesion's bounding box (plus a margin) before resizing; the network is
  unchanged (3 input channels). See :func:`crop_to_mask`.
* ``"channel"``: the mask is a fourth input channel (0 = skin, 1 = lesion, then normalised to ±1). The first
  convolution gets a fourth input filter initialised to zero, so at the start the network is exactly the
  ImageNet one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from dermoseg.data.datasets import HAM_CLASSES
from dermoseg.models.encoders import MobileNetV2Encoder

MASK_MODES = ("none", "crop", "channel")
# Format tag of a classifier model file (written by training.export_classifier, checked by diagnose).
FORMAT = "dermoseg-classifier-1"


class LesionClassifier(nn.Module):
    """MobileNetV2 classifier over the seven ISIC 2018 Task 3 classes.

    Parameters
    ----------
    num_classes : number of output logits (7 for HAM10000).
    pretrained : start the encoder from torchvision's ImageNet weights (offline package, sha256 checked).
    dropout : dropout probability before the linear layer, in [0, 1).
    in_channels : 3 (RGB) or 4 (RGB + lesion mask, ``mask_mode="channel"``).
    freeze_stages : number of leading ``encoder.features`` modules kept at their ImageNet weights (no gradient,
        batch norm in eval mode), 0..19. Freezing the high-resolution stem (4 modules, stride ≤ 4) saves about a
        third of a CPU training step; the low-level ImageNet filters (edges, colour blobs) transfer as they are.

    Raises
    ------
    ValueError
        If ``in_channels`` is not 3 or 4, or ``dropout`` is outside [0, 1).
    dermoseg.models.encoders.PretrainedWeightsError
        If ``pretrained`` and the ImageNet weights are missing or fail their checksum.

    Notes
    -----
    ``forward``: ``(N, in_channels, H, W)`` float32 (ImageNet-normalised RGB, any H, W ≥ 32) →
    ``(N, num_classes)`` float32 logits (not probabilities; see :func:`dermoseg.classification.calibration`).
    """

    def __init__(self, num_classes: int = len(HAM_CLASSES), pretrained: bool = True, dropout: float = 0.2,
                 in_channels: int = 3, freeze_stages: int = 0):
        super().__init__()
        if in_channels not in (3, 4):
            raise ValueError(f"in_channels must be 3 (RGB) or 4 (RGB + mask), got {in_channels}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.encoder = MobileNetV2Encoder(pretrained=pretrained, output_stride=32, with_head=True)
        if in_channels == 4:
            first = self.encoder.features[0][0]
            conv = nn.Conv2d(4, first.out_channels, first.kernel_size, first.stride, first.padding, bias=False)
            with torch.no_grad():
                conv.weight.zero_()
                conv.weight[:, :3] = first.weight
            self.encoder.features[0][0] = conv
        self.in_channels = in_channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.encoder.high_channels, num_classes)
        if not 0 <= freeze_stages <= len(self.encoder.features):
            raise ValueError(f"freeze_stages must be in [0, {len(self.encoder.features)}], got {freeze_stages}")
        self.freeze_stages = int(freeze_stages)
        for p in self.encoder.features[: self.freeze_stages].parameters():
            p.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> "LesionClassifier":
        """Set training mode, keeping the frozen stages' batch norm in eval mode (their ImageNet statistics)."""
        super().train(mode)
        self.encoder.features[: getattr(self, "freeze_stages", 0)].eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) float32 normalised input → (N, num_classes) float32 logits."""
        _, high = self.encoder(x)
        return self.fc(self.dropout(torch.flatten(self.pool(high), 1)))


def build_classifier(config: Mapping[str, Any], pretrained: bool | None = None) -> LesionClassifier:
    """Build the classifier from a config's ``model`` section.

    Parameters
    ----------
    config : keys ``encoder`` (only ``"mobilenet_v2"``), ``dropout`` (0.2), ``mask_mode`` ("none" | "crop" |
        "channel"; "channel" gives 4 input channels), ``pretrained`` (true), ``freeze_stages`` (0).
    pretrained : overrides ``config["pretrained"]`` (inference passes False: the trained weights replace
        ImageNet's).

    Returns
    -------
    A :class:`LesionClassifier` with ``len(HAM_CLASSES)`` outputs.

    Raises
    ------
    ValueError
        For an unknown encoder or mask mode.
    """
    encoder = config.get("encoder", "mobilenet_v2")
    if encoder != "mobilenet_v2":
        raise ValueError(f"unknown classifier encoder '{encoder}' (only mobilenet_v2)")
    mode = config.get("mask_mode", "none")
    if mode not in MASK_MODES:
        raise ValueError(f"unknown mask_mode '{mode}' (choose from {', '.join(MASK_MODES)})")
    use_pretrained = bool(config.get("pretrained", True)) if pretrained is None else pretrained
    return LesionClassifier(len(HAM_CLASSES), use_pretrained, float(config.get("dropout", 0.2)),
                            4 if mode == "channel" else 3, int(config.get("freeze_stages", 0)))


def mask_path_for(mask_dir: str | Path, image_id: str) -> Path:
    """``mask_dir/<image_id>_segmentation.png``, the name ``dermoseg segment`` writes (ISIC 2018 naming)."""
    return Path(mask_dir) / f"{image_id}_segmentation.png"


def crop_to_mask(image: np.ndarray, mask: np.ndarray, margin: float = 0.2) -> np.ndarray:
    """Crop an image to its lesion's bounding box, enlarged by ``margin`` on every side.

    Parameters
    ----------
    image : (H, W, C) or (H, W) array of any dtype.
    mask : (H, W) bool, True = lesion.
    margin : extra border as a fraction of the box's width (left/right) and height (top/bottom), ≥ 0; the box is
        clipped to the image.

    Returns
    -------
    The cropped view of ``image`` (same dtype). An empty mask returns the whole image unchanged (the classifier
    then sees what it would without a mask).

    Raises
    ------
    ValueError
        If the mask's shape differs from the image's height and width, or ``margin`` < 0.
    """
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image {image.shape[:2]}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return image
    h, w = mask.shape
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    dy, dx = int(round(margin * (y1 - y0))), int(round(margin * (x1 - x0)))
    return image[max(0, y0 - dy):min(h, y1 + dy), max(0, x0 - dx):min(w, x1 + dx)]


def prepare_image(image: np.ndarray, size: int, mask: np.ndarray | None = None, mask_mode: str = "none",
                  margin: float = 0.2) -> np.ndarray:
    """Bring one image (and its lesion mask) to the classifier's square input, as training and inference share it.

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB, any size.
    size : side of the square input in pixels (the aspect ratio is not kept, as in the squashed HAM10000 copy).
    mask : (H, W) bool lesion mask; required unless ``mask_mode == "none"`` (where it is ignored).
    mask_mode : "none", "crop" (crop to the lesion box + ``margin`` first) or "channel" (mask as a 4th channel).
    margin : see :func:`crop_to_mask`.

    Returns
    -------
    (size, size, 3) uint8, or (size, size, 4) uint8 for "channel" (4th channel 0/255).

    Raises
    ------
    ValueError
        If the image is not (H, W, 3) uint8, the mode is unknown, or a needed mask is missing or mis-shaped.
    """
    from dermoseg.data.transforms import resize_image, resize_mask
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    if mask_mode not in MASK_MODES:
        raise ValueError(f"unknown mask_mode '{mask_mode}' (choose from {', '.join(MASK_MODES)})")
    if mask_mode == "none":
        return resize_image(image, size)
    if mask is None:
        raise ValueError(f"mask_mode '{mask_mode}' needs a lesion mask")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image {image.shape[:2]}")
    if mask_mode == "crop":
        return resize_image(np.ascontiguousarray(crop_to_mask(image, mask, margin)), size)
    m = resize_mask(mask.astype(bool), size).astype(np.uint8) * 255
    return np.concatenate([resize_image(image, size), m[..., None]], axis=2)


def input_tensor(prepared: np.ndarray) -> torch.Tensor:
    """(S, S, 3|4) uint8 from :func:`prepare_image` → (3|4, S, S) float32: RGB ImageNet-normalised
    (:func:`dermoseg.data.transforms.to_tensor`), a mask channel mapped 0 → -1, 255 → +1."""
    from dermoseg.data.transforms import to_tensor
    x = to_tensor(np.ascontiguousarray(prepared[..., :3]))
    if prepared.shape[2] == 4:
        m = torch.from_numpy(prepared[..., 3].astype(np.float32) / 127.5 - 1.0)[None]
        x = torch.cat([x, m], 0)
    return x


@torch.inference_mode()
def predict_logits(network: nn.Module, batch: torch.Tensor, tta: bool = True) -> torch.Tensor:
    """Logits of a batch, averaged over the four flips (identity, horizontal, vertical, both) when ``tta``.

    Parameters
    ----------
    network : a :class:`LesionClassifier` in eval mode.
    batch : (N, C, S, S) float32 prepared inputs (:func:`input_tensor`).

    Returns
    -------
    (N, 7) float32 logits.
    """
    x = batch.contiguous(memory_format=torch.channels_last)
    if not tta:
        return network(x)
    views = (x, x.flip(3), x.flip(2), x.flip(2, 3))
    return torch.stack([network(v.contiguous(memory_format=torch.channels_last)) for v in views]).mean(0)
