"""Scratch-detection U-Net of "Bringing Old Photos Back to Life" (reference/bopbtl.md §1a).

Gray image in, scratch logits out. Layer names follow the official ``UNet`` so the released
``FT_Epoch_latest.pt`` loads key for key: ``first``, ``down_sample``, ``down_path``, ``up_path``,
``last``. Inputs must have sides that are multiples of ``2**depth``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from revive.nets.layers import ReflectionPad2d, reflect_pad


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling: a depthwise 3x3 binomial blur, then subsampling."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        kernel = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(kernel, kernel) / 16.0
        # stored like the official `Downsample.filt` so checkpoints carry it
        self.register_buffer("filt", kernel.expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = reflect_pad(x, (1, 1, 1, 1))
        return F.conv2d(x, self.filt, stride=2, groups=x.shape[1])


def conv_bn_lrelu(c_in: int, c_out: int, batch_norm: bool) -> list[nn.Module]:
    """ReflectionPad + 3x3 conv (+ BatchNorm) + LeakyReLU(0.2): the official conv unit."""
    layers: list[nn.Module] = [ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


class ConvBlock(nn.Module):
    """Two conv units; ``block`` indices match the official ``UNetConvBlock``."""

    def __init__(self, c_in: int, c_out: int, batch_norm: bool = True) -> None:
        super().__init__()
        self.block = nn.Sequential(
            *conv_bn_lrelu(c_in, c_out, batch_norm), *conv_bn_lrelu(c_out, c_out, batch_norm)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UpBlock(nn.Module):
    """Bilinear x2 upsampling + conv, concatenation with the skip, then a ConvBlock."""

    def __init__(self, c_in: int, c_out: int, batch_norm: bool = True) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            ReflectionPad2d(1),
            nn.Conv2d(c_in, c_out, 3),
        )
        self.conv_block = ConvBlock(2 * c_out, c_out, batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(x)
        return self.conv_block(torch.cat([up, skip], dim=1))


class ScratchUNet(nn.Module):
    """The detector: ``depth`` blur-pooled levels, widths ``2**(wf + i)``, logits out.

    :param in_channels: 1 for the official gray detector.
    :param depth: number of down levels (official 4).
    :param wf: log2 of the base width (official 6, i.e. 64 channels).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        depth: int = 4,
        wf: int = 6,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.depth = depth
        width = [2 ** (wf + i) for i in range(depth + 1)]
        self.first = nn.Sequential(
            ReflectionPad2d(3), nn.Conv2d(in_channels, width[0], 7), nn.LeakyReLU(0.2, True)
        )
        self.down_sample = nn.ModuleList(
            nn.Sequential(*conv_bn_lrelu(width[i], width[i], batch_norm), BlurPool(width[i]))
            for i in range(depth)
        )
        self.down_path = nn.ModuleList(
            ConvBlock(width[i], width[i + 1], batch_norm) for i in range(depth)
        )
        self.up_path = nn.ModuleList(
            UpBlock(width[i + 1], width[i], batch_norm) for i in reversed(range(depth))
        )
        self.last = nn.Sequential(ReflectionPad2d(1), nn.Conv2d(width[0], out_channels, 3))

    @property
    def multiple(self) -> int:
        """Input sides must be divisible by this."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        skips = []
        for down, conv in zip(self.down_sample, self.down_path):
            skips.append(x)
            x = conv(down(x))  # (B, 2C, H/2, W/2)
        for up, skip in zip(self.up_path, reversed(skips)):
            x = up(x, skip)
        return self.last(x)
