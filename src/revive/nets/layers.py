"""Small layers shared by the networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def reflect_pad(x: Tensor, padding: tuple[int, int, int, int]) -> Tensor:
    """``F.pad(x, padding, mode="reflect")`` in ``x``'s own dtype, also under autocast.

    CPU autocast runs ``reflection_pad2d`` in fp32: under bf16 it would cast each bf16
    activation up, pad it, and the next conv would cast it back down, two full copies per pad
    and twice the memory traffic, for the same values (a pad copies values, it does not round).
    """
    with torch.autocast(x.device.type, enabled=False):
        return F.pad(x, padding, mode="reflect")


class ReflectionPad2d(nn.ReflectionPad2d):
    """``nn.ReflectionPad2d`` that pads in its input's dtype under autocast (see ``reflect_pad``).

    Same name and (empty) state as torch's, so the official ``Sequential`` indices are unchanged.
    """

    def forward(self, x: Tensor) -> Tensor:
        return reflect_pad(x, self.padding)
