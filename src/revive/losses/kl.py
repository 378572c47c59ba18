"""KL terms for the VAE latents."""

from __future__ import annotations

import torch
from torch import Tensor

from revive.losses.layout import memory_order


def reduced_kl(h: Tensor) -> Tensor:
    """BOPBTL's "reduced" KL: ``mean(h^2)``.

    The official VAE samples ``h + N(0, 1)`` (variance fixed to 1), so KL(N(h, 1) || N(0, 1))
    reduces to ``h^2 / 2`` per element; the official code drops the 1/2 and takes the mean.
    """
    return memory_order(h).pow(2).mean()


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per element, averaged: for a learned-variance VAE.

    ``0.5 * mean(mu^2 + exp(logvar) - 1 - logvar)``; with ``logvar = 0`` it is half of
    :func:`reduced_kl`.
    """
    mu, logvar = memory_order(mu), memory_order(logvar, like=mu)
    return 0.5 * (mu.pow(2) + torch.exp(logvar) - 1.0 - logvar).mean()
