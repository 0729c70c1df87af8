"""A small U-Net (Ronneberger et al., 2015, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", arXiv 1505.04597): an encoder of double 3x3 convolutions and 2x2 max-pooling, a
decoder that upsamples, concatenates the encoder's skip features and convolves again.

Differences from the paper, for small-batch training: padded convolutions (the output has the
input's size), GroupNorm after each convolution (Wu & He, 2018; independent of the batch, so a
model split over DDP processes computes what one process computes), bilinear upsampling. Inputs
of any size work: they are padded to a multiple of ``2 ** depth`` and the logits cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet"]


def _groups(channels: int) -> int:
    for groups in (8, 4, 2):
        if channels % groups == 0:
            return groups
    return 1


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(_groups(cout), cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(_groups(cout), cout), nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net returning logits ``[B, num_classes, H, W]``.

    Args:
        in_channels: input channels. num_classes: output classes.
        base_channels: channels of the first level (doubled at each level down).
        depth: number of down-sampling steps.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 2, base_channels: int = 32, depth: int = 4) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("base_channels", base_channels),
                            ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.down = nn.ModuleList([_DoubleConv(in_channels, widths[0])] +
                                  [_DoubleConv(widths[i], widths[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([_DoubleConv(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        multiple = 2**self.depth
        pad_h, pad_w = -height % multiple, -width % multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)[..., :height, :width]
