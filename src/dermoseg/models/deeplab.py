"""The paper's codec: ASPP (§3.2.2, eq. 5–6, Fig. 5) and the DeepLabV3+ decoder (§3.2.3).

Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation", ECCV 2018.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dermoseg.models.blocks import DepthwiseSeparableConv, conv_bn_act


class ASPP(nn.Module):
    """Atrous (dilated) spatial pyramid pooling (paper §3.2.2, eq. 5–6; Chen et al. 2018).

    Branches: a 1×1 convolution; one dilated 3×3 depthwise-separable convolution per rate (eq. 5: an output
    pixel sees inputs ``rate`` pixels apart, receptive field ``k + (k-1)(rate-1)``); image pooling (global
    average, 1×1 conv, broadcast back). Their concatenation is projected by a 1×1 convolution (+ dropout 0.1).

    Parameters
    ----------
    c_in : input channels (the encoder's high-level features).
    c_out : channels of every branch and of the output (256 in DeepLabV3+).
    rates : dilation rates of the 3×3 branches; the paper's are (3, 3, 6), DeepLabV3+'s (6, 12, 18) at
        output stride 16.

    Shapes: ``(N, c_in, h, w)`` → ``(N, c_out, h, w)``, float32.
    """

    def __init__(self, c_in: int, c_out: int = 256, rates: Sequence[int] = (3, 3, 6)):
        super().__init__()
        if not rates or any(int(r) < 1 for r in rates):
            raise ValueError(f"ASPP rates must be positive integers, got {rates}")
        self.rates = tuple(int(r) for r in rates)
        self.branches = nn.ModuleList([conv_bn_act(c_in, c_out, 1)] +
                                      [DepthwiseSeparableConv(c_in, c_out, dilation=r) for r in self.rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c_in, c_out, 1, bias=False), nn.ReLU(inplace=True))
        self.project = nn.Sequential(conv_bn_act(c_out * (len(self.rates) + 2), c_out, 1), nn.Dropout(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, c_in, H, W) float32 encoder features → (N, c_out, H, W) float32 (branches concatenated, projected)."""
        outs = [branch(x) for branch in self.branches]
        outs.append(self.pool(x).expand(-1, -1, x.shape[2], x.shape[3]))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3PlusDecoder(nn.Module):
    """DeepLabV3+ decoder (paper §3.2.3): 1×1 reduction of the low-level features to 48 channels, bilinear
    upsampling of the ASPP output to their size, concatenation, two 3×3 depthwise-separable convolutions.

    Shapes: low ``(N, c_low, H/4, W/4)``, high ``(N, c_aspp, h, w)`` → ``(N, c_out, H/4, W/4)``.
    """

    def __init__(self, c_low: int, c_aspp: int = 256, c_reduced: int = 48, c_out: int = 256):
        super().__init__()
        self.reduce = conv_bn_act(c_low, c_reduced, 1)
        self.fuse = nn.Sequential(DepthwiseSeparableConv(c_aspp + c_reduced, c_out),
                                  DepthwiseSeparableConv(c_out, c_out))

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """``low`` (N, c_low, H/4, W/4) and ASPP output ``high`` (N, c_aspp, H/OS, W/OS), float32 →
        (N, c_out, H/4, W/4) float32: ``high`` upsampled bilinearly, concatenated with reduced ``low``, fused."""
        high = F.interpolate(high, size=low.shape[2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([self.reduce(low), high], dim=1))


class Codec(nn.Module):
    """Encoder → ASPP → DeepLabV3+ decoder → 1×1 head → bilinear upsampling to the input size.

    Any input height and width works: the input is padded (reflect) to a multiple of the encoder's output
    stride and the logits are cropped back.

    Shapes: ``(N, 3, H, W)`` float32 normalised RGB → ``(N, 1, H, W)`` float32 lesion logits.
    """

    def __init__(self, encoder: nn.Module, aspp_rates: Sequence[int] = (3, 3, 6), aspp_channels: int = 256,
                 decoder_channels: int = 256):
        super().__init__()
        self.encoder = encoder
        self.aspp = ASPP(encoder.high_channels, aspp_channels, aspp_rates)
        self.decoder = DeepLabV3PlusDecoder(encoder.low_channels, aspp_channels, 48, decoder_channels)
        self.head = nn.Conv2d(decoder_channels, 1, 1)
        self.output_stride = encoder.output_stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float32 normalised RGB, any H and W → (N, 1, H, W) float32 lesion logits (sigmoid → P)."""
        x, (h, w) = pad_to_multiple(x, self.output_stride)
        low, high = self.encoder(x)
        logits = self.head(self.decoder(low, self.aspp(high)))
        logits = F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)
        return logits[:, :, :h, :w]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``(N, C, H, W)`` at the bottom/right to multiples of ``multiple``; returns the padded tensor and the
    original ``(H, W)``. Reflect padding where the image is large enough, replicate otherwise."""
    h, w = x.shape[2], x.shape[3]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)
