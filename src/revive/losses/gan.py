"""Adversarial losses: LSGAN with feature matching (BOPBTL / pix2pixHD) and WGAN-GP (TTSR).

A multiscale discriminator output is a list with one entry per scale; each entry is either the
logits tensor or, with intermediate features, a list whose last element is the logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from revive.losses.layout import l1_loss, mse_loss

MultiscaleOutput = Tensor | Sequence[Tensor | Sequence[Tensor]]


def _per_scale(pred: MultiscaleOutput) -> list[Sequence[Tensor]]:
    """Normalise any discriminator output to ``[[feat_1, ..., logits], ...]``, one list per scale."""
    if isinstance(pred, Tensor):
        return [[pred]]
    return [[p] if isinstance(p, Tensor) else p for p in pred]


def lsgan_loss(pred: MultiscaleOutput, target_is_real: bool) -> Tensor:
    """LSGAN loss: sum over scales of ``mean((D_k(x) - t)^2)`` with t = 1 (real) or 0 (fake).

    Only the last output of each scale (the logits) enters; scales are summed, not averaged, as in
    the official ``GANLoss``. The discriminator loss is then ``0.5 * (fake + real)`` (caller).
    """
    target = 1.0 if target_is_real else 0.0
    loss = 0.0
    for outputs in _per_scale(pred):
        logits = outputs[-1]
        loss = loss + mse_loss(logits, torch.full_like(logits, target))
    return loss


def feature_matching_loss(
    fake_feats: Sequence[Sequence[Tensor]],
    real_feats: Sequence[Sequence[Tensor]],
    n_layers_D: int = 3,
    num_D: int = 2,
    weight: float = 10.0,
) -> Tensor:
    """pix2pixHD discriminator feature matching: ``sum_k,l  w * L1(D_k^l(fake), D_k^l(real))``.

    ``w = (4 / (n_layers_D + 1)) * (1 / num_D) * weight`` (the official weighting; 0.5 * 10 for
    BOPBTL). Every output of a scale except the last (the logits) is matched; real features are
    detached, so only the generator gets the gradient.
    """
    w = (4.0 / (n_layers_D + 1)) * (1.0 / num_D) * weight
    loss = 0.0
    for fake_scale, real_scale in zip(_per_scale(fake_feats), _per_scale(real_feats)):
        for fake_f, real_f in zip(fake_scale[:-1], real_scale[:-1]):
            loss = loss + w * l1_loss(fake_f, real_f.detach())
    return loss


def wgan_d_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """WGAN critic loss ``E[D(fake)] - E[D(real)]`` (add :func:`gradient_penalty` for WGAN-GP).

    In fp32 whatever the scores' dtype: under bf16 autocast the difference of two batch means
    keeps only about three digits.
    """
    return (d_fake.float() - d_real.float()).mean()


def wgan_g_loss(d_fake: Tensor) -> Tensor:
    """WGAN generator loss ``-E[D(fake)]``, in fp32 like :func:`wgan_d_loss`."""
    return -d_fake.float().mean()


def gradient_penalty(
    discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, weight: float = 10.0
) -> Tensor:
    """WGAN-GP penalty ``weight * E[(||grad_x D(x_hat)||_2 - 1)^2]`` as in the official TTSR.

    ``x_hat = eps * real + (1 - eps) * fake`` with one ``eps ~ U(0, 1)`` per sample; the gradient
    is that of ``D(x_hat).sum()``, flattened per sample. Everything runs in fp32 with autocast off:
    a bf16 gradient norm squared and differenced from 1 loses most of its digits. The
    discriminator's parameters are expected in fp32 (the mixed-precision setting).
    """
    real32 = real.detach().float()
    fake32 = fake.detach().float()
    eps = torch.rand(real32.shape[0], 1, 1, 1, device=real32.device)
    x_hat = (eps * real32 + (1.0 - eps) * fake32).requires_grad_(True)
    with torch.autocast(device_type=real32.device.type, enabled=False):
        d_hat = discriminator(x_hat).float()
        (grad,) = torch.autograd.grad(d_hat.sum(), x_hat, create_graph=True)
        grad_norm = grad.flatten(1).norm(2, dim=1)  # (B,)
        return weight * (grad_norm - 1.0).pow(2).mean()
