"""The lesion classifier: an ImageNet-pretrained encoder + global average pooling + dropout + linear head.

The encoder (:data:`CLASSIFIER_ENCODERS`) is either :class:`dermoseg.models.encoders.MobileNetV2Encoder` with its
1×1 conv head to 1280 channels (``with_head=True``, output stride 32), i.e. torchvision's MobileNetV2 feature
extractor (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR), or
:class:`dermoseg.models.efficientnet_lite.EfficientNetLite0Encoder` (Tan & Le 2019, Lite variant), also ending in
a 1×1 head to 1280 channels at output stride 32. Like segmentation_models_pytorch's classification head, the head
is pooling → dropout → linear on the deepest features. Each encoder's ImageNet weights expect their own input
normalisation (:func:`input_normalisation`).

The lesion mask can be a fourth input channel (``mask_mode: channel``): the first convolution then gets a fourth
input filter initialised to zero, so at the start the network is exactly the ImageNet one. (Cropping to the
lesion, ``mask_mode: crop``, changes the input, not the network: :mod:`dermoseg.classification.classifier`.)
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from dermoseg.config import CLASSIFIER_MODEL_DEFAULTS
from dermoseg.data.datasets import HAM_CLASSES
from dermoseg.models.efficientnet_lite import EfficientNetLite0Encoder
from dermoseg.models.encoders import MobileNetV2Encoder

MASK_MODES = ("none", "crop", "channel")
# model.encoder → the encoder class; its INPUT_MEAN / INPUT_STD are the normalisation its ImageNet weights expect
CLASSIFIER_ENCODERS: dict[str, type[nn.Module]] = {"mobilenet_v2": MobileNetV2Encoder,
                                                   "efficientnet_lite0": EfficientNetLite0Encoder}


def input_normalisation(encoder: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std), each (3,) float32 RGB in [0, 1] units, of the input normalisation (x − mean) / std that the
    ImageNet weights of a classifier ``encoder`` were trained with: ImageNet's statistics for MobileNetV2
    (torchvision), mean 127/255 and std 128/255 for EfficientNet-Lite0 (the TensorFlow Lite builder's scaling).

    Raises
    ------
    ValueError
        For an encoder not in :data:`CLASSIFIER_ENCODERS`.
    """
    if encoder not in CLASSIFIER_ENCODERS:
        raise ValueError(f"unknown classifier encoder '{encoder}' (choose from {', '.join(CLASSIFIER_ENCODERS)})")
    cls = CLASSIFIER_ENCODERS[encoder]
    return cls.INPUT_MEAN.copy(), cls.INPUT_STD.copy()


class LesionClassifier(nn.Module):
    """Classifier over the seven ISIC 2018 Task 3 classes on an ImageNet-pretrained encoder.

    Parameters
    ----------
    num_classes : number of output logits (7 for HAM10000).
    pretrained : start the encoder from its ImageNet weights (offline package, sha256 checked).
    dropout : dropout probability before the linear layer, in [0, 1).
    in_channels : 3 (RGB) or 4 (RGB + lesion mask, ``mask_mode="channel"``).
    freeze_stages : number of leading ``encoder.features`` modules kept at their ImageNet weights (no gradient,
        batch norm in eval mode), 0..19 for MobileNetV2, 0..18 for EfficientNet-Lite0. In both, 4 is the stem
        and the blocks up to the end of the 24-channel stage (stride ≤ 4): freezing them saves about a third of a
        CPU training step; the low-level ImageNet filters (edges, colour blobs) transfer as they are.
    encoder : a key of :data:`CLASSIFIER_ENCODERS` ("mobilenet_v2" or "efficientnet_lite0").

    Raises
    ------
    ValueError
        If ``in_channels`` is not 3 or 4, ``dropout`` is outside [0, 1), ``freeze_stages`` is out of range, or the
        encoder is unknown.
    dermoseg.models.encoders.PretrainedWeightsError
        If ``pretrained`` and the ImageNet weights are missing or fail their checksum.

    Notes
    -----
    ``forward``: ``(N, in_channels, H, W)`` float32 (RGB normalised by :func:`input_normalisation`, any
    H, W ≥ 32) → ``(N, num_classes)`` float32 logits (not probabilities; see
    :func:`dermoseg.classification.calibration`).
    """

    def __init__(self, num_classes: int = len(HAM_CLASSES), pretrained: bool = True, dropout: float = 0.2,
                 in_channels: int = 3, freeze_stages: int = 0, encoder: str = "mobilenet_v2"):
        super().__init__()
        if in_channels not in (3, 4):
            raise ValueError(f"in_channels must be 3 (RGB) or 4 (RGB + mask), got {in_channels}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        input_normalisation(encoder)  # refuses an unknown name
        self.encoder = (MobileNetV2Encoder(pretrained=pretrained, output_stride=32, with_head=True)
                        if encoder == "mobilenet_v2" else EfficientNetLite0Encoder(pretrained=pretrained))
        if in_channels == 4:  # widen the first convolution in place (it keeps its class, hence its padding)
            first = self.encoder.features[0][0]
            weight = first.weight.new_zeros(first.out_channels, 4, *first.kernel_size)
            with torch.no_grad():
                weight[:, :3] = first.weight
            first.weight, first.in_channels = nn.Parameter(weight), 4
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


def build_classifier(config: Mapping[str, Any], pretrained: bool | None = None) -> nn.Module:
    """Build the classifier from a config's ``model`` section.

    Parameters
    ----------
    config : ``architecture: ensemble`` with ``members`` builds a
        :class:`dermoseg.models.ensemble.ClassifierEnsemble` (mean of the members' calibrated probabilities;
        weights from the file); otherwise keys ``encoder`` ("mobilenet_v2" or "efficientnet_lite0"), ``dropout``,
        ``mask_mode`` ("none" | "crop" | "channel"; "channel" gives 4 input channels), ``pretrained``,
        ``freeze_stages``; a key it lacks takes its value from :data:`dermoseg.config.CLASSIFIER_MODEL_DEFAULTS`.
    pretrained : overrides ``config["pretrained"]`` (inference passes False: the trained weights replace
        ImageNet's).

    Returns
    -------
    A :class:`LesionClassifier` (or ensemble) with ``len(HAM_CLASSES)`` outputs.

    Raises
    ------
    ValueError
        For an unknown encoder or mask mode.
    """
    if config.get("architecture") == "ensemble":
        from dermoseg.models.ensemble import ClassifierEnsemble
        return ClassifierEnsemble.from_config(config)
    config = {**CLASSIFIER_MODEL_DEFAULTS, **config}
    mode = config["mask_mode"]
    if mode not in MASK_MODES:
        raise ValueError(f"unknown mask_mode '{mode}' (choose from {', '.join(MASK_MODES)})")
    use_pretrained = bool(config["pretrained"]) if pretrained is None else pretrained
    return LesionClassifier(len(HAM_CLASSES), use_pretrained, float(config["dropout"]),
                            4 if mode == "channel" else 3, int(config["freeze_stages"]), config["encoder"])
