"""Domain-gap measures between two sets of latents (real old photos R vs synthetic ones X)."""

from __future__ import annotations

import torch
from torch import Tensor


def mmd_rbf(x: Tensor, y: Tensor) -> Tensor:
    """Squared maximum mean discrepancy between samples x (n, d) and y (m, d), RBF kernel.

    The bandwidth is the median pairwise distance of the pooled samples (the usual heuristic), so
    the value is scale-free: 0 when the two sets come from one distribution, larger when apart.
    """
    pooled = torch.cat([x, y]).double()
    dist2 = torch.cdist(pooled, pooled).pow(2)
    bandwidth = dist2[dist2 > 0].median() if (dist2 > 0).any() else dist2.new_tensor(1.0)
    kernel = torch.exp(-dist2 / bandwidth)
    n = x.shape[0]
    kxx, kyy, kxy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return (kxx.mean() + kyy.mean() - 2 * kxy.mean()).float()


def patch_accuracy(logits_real: Tensor, logits_fake: Tensor, threshold: float = 0.5) -> Tensor:
    """Fraction of PatchGAN cells an LSGAN discriminator gets right (real >= t, fake < t)."""
    right = (logits_real >= threshold).sum() + (logits_fake < threshold).sum()
    return right.float() / (logits_real.numel() + logits_fake.numel())
