"""The lesion classifier: ImageNet MobileNetV2 encoder + global average pooling + dropout + linear head.

The encoder is :class:`dermoseg.models.encoders.MobileNetV2Encoder` with its 1×1 conv head to 1280 channels
(``with_head=True``, output stride 32), i.e. torchvision's MobileNetV2 feature extractor (Sandler et al. 2018,
"MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR), the ImageNet-pretrained depthwise-separable
encoder. Like segmentation_models_pytorch's classification head, the head is
pooling → dropout → linear on the deepest features.

The lesion mask can be a fourth input channel (``mask_mode: channel``): the first convolution then gets a fourth
input filter initialised to zero, so at the start the network is exactly the ImageNet one. (Cropping to the
lesion, ``mask_mode: crop``, changes the input, not the network: :mod:`dermoseg.classification.classifier`.)
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from dermoseg.data.datasets import HAM_CLASSES
from dermoseg.models.encoders import MobileNetV2Encoder

MASK_MODES = ("none", "crop", "channel")


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
