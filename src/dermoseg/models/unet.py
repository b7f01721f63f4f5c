"""The U-Net baseline (Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015), the paper's comparison model (§4.2, Table 1)."""

from __future__ import annotations

import torch
from torch import nn

from dermoseg.models.deeplab import pad_to_multiple
from dermoseg.models.blocks import conv_bn_act


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_act(c_in, c_out), conv_bn_act(c_out, c_out))


class UNet(nn.Module):
    """Classic U-Net: four 2×2 max-pool down levels and four 2×2 transposed-conv up levels, two 3×3
    convolutions (with batch norm, 'same' padding) per level, skip connections by concatenation.

    Parameters
    ----------
    width : channels of the first level; level ``k`` has ``width·2^k`` (the original uses 64).

    Shapes: ``(N, 3, H, W)`` float32 → ``(N, 1, H, W)`` float32 lesion logits; any H, W (padded to a multiple
    of 16 and cropped back).
    """

    def __init__(self, width: int = 32):
        super().__init__()
        chans = [width * 2 ** k for k in range(5)]
        self.down = nn.ModuleList([_double_conv(3, chans[0])] +
                                  [_double_conv(chans[k], chans[k + 1]) for k in range(4)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[k + 1], chans[k], 2, stride=2) for k in reversed(range(4))])
        self.up_conv = nn.ModuleList([_double_conv(2 * chans[k], chans[k]) for k in reversed(range(4))])
        self.head = nn.Conv2d(chans[0], 1, 1)
        self.output_stride = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float32, any H and W → (N, 1, H, W) float32 lesion logits."""
        x, (h, w) = pad_to_multiple(x, self.output_stride)
        skips = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, conv in zip(self.up, self.up_conv):
            x = conv(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)[:, :, :h, :w]
