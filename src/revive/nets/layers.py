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


class InstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d``; inside ``torch.compile`` (no running stats) an explicit fp32 formula.

    Eager calls run torch's kernel unchanged. Compiled, torch 2.14.1's inductor kernel for the
    bf16 instance-norm backward returned non-finite gradients in the paper-width VAE encoder at
    256 px (not at test widths); the explicit per-channel ``var_mean`` in fp32, rounded once at
    the end, compiles to finite gradients, closer to fp32's than eager bf16's (relative error of
    the first conv's gradient 0.144 vs 0.153).
    """

    def forward(self, x: Tensor) -> Tensor:
        if self.track_running_stats or not torch.compiler.is_compiling():
            return super().forward(x)
        xf = x.float()
        var, mean = torch.var_mean(xf, dim=(-2, -1), keepdim=True, correction=0)
        y = (xf - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.weight[:, None, None] + self.bias[:, None, None]
        return y.to(x.dtype)
