"""The building blocks every network here shares: convolution + batch norm + activation, and the
depthwise-separable convolution of the paper (§3.2.1) used by its extractor, ASPP (§3.2.2), the DeepLabV3+
decoder (§3.2.3), U-Net's double convolutions and MobileNetV2's inverted residuals.
"""

from __future__ import annotations

from torch import nn


def conv_bn_act(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
                groups: int = 1, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Convolution (no bias, 'same' padding for odd kernels) + batch norm + activation."""
    pad = dilation * (kernel - 1) // 2
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, pad, dilation=dilation, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), act(inplace=True))


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise-separable convolution (paper §3.2.1, Figs. 2–3): a per-channel 3×3 ("channel dimension")
    convolution followed by a 1×1 pointwise ("spatial dimension") convolution, each with BN + ReLU.

    Parameters: ``3·3·c_in + c_in·c_out`` weights instead of ``3·3·c_in·c_out`` (Howard et al. 2017).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dilation: int = 1):
        super().__init__(conv_bn_act(c_in, c_in, 3, stride, dilation, groups=c_in),
                         conv_bn_act(c_in, c_out, 1))
