"""Elementwise losses whose gradient keeps the memory format of their input.

The backward of a mean starts from ``grad.expand(shape) / numel``: a new tensor in the default
(NCHW) order. On a channels_last input every op after it then mixes NCHW and NHWC: the
gradient reaches the network in NCHW, its accumulation with the NHWC gradients of the other
branches and the ReLU / conv backwards run strided (in a paper-width VAE1 step, one add of
two 4 x 64 x 256 x 256 gradients took 145 ms). Taking the loss over the tensors' memory-order
views, (B, H, W, C) for channels_last, gives the same value (a mean does not depend on the order
of its elements, up to float summation order) and a gradient in the input's own format.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from revive.nets.layers import is_channels_last


def memory_order(x: Tensor, like: Tensor | None = None) -> Tensor:
    """``x`` viewed in the memory order of ``like`` (default ``x``): ``x.permute(0, 2, 3, 1)``
    when ``like`` is a channels_last 4-D tensor, else ``x`` itself. For losses that reduce over
    every element."""
    return x.permute(0, 2, 3, 1) if is_channels_last(x if like is None else like) else x


def l1_loss(x: Tensor, y: Tensor) -> Tensor:
    """``F.l1_loss(x, y)`` (mean); the gradient has ``x``'s memory format."""
    return F.l1_loss(memory_order(x), memory_order(y, like=x))


def mse_loss(x: Tensor, y: Tensor) -> Tensor:
    """``F.mse_loss(x, y)`` (mean); the gradient has ``x``'s memory format."""
    return F.mse_loss(memory_order(x), memory_order(y, like=x))
