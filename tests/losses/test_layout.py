"""Losses over channels_last tensors: same value as torch's, gradient in the input's format."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from revive.losses.gan import feature_matching_loss
from revive.losses.kl import gaussian_kl, reduced_kl
from revive.losses.layout import l1_loss, memory_order, mse_loss
from revive.models.vae import split_domains

CL = torch.channels_last


def is_nhwc(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=CL) and not t.is_contiguous()


def pair(seed: int = 0, channels_last: bool = True):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(2, 5, 4, 3, generator=g), torch.randn(2, 5, 4, 3, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=CL)
    return x.requires_grad_(), y


@pytest.mark.parametrize("ours, torchs", [(l1_loss, F.l1_loss), (mse_loss, F.mse_loss)])
def test_loss_equals_torch_and_keeps_the_gradient_channels_last(ours, torchs):
    x, y = pair()
    (grad_ours,) = torch.autograd.grad(ours(x, y), x)
    (grad_torch,) = torch.autograd.grad(torchs(x, y), x)
    torch.testing.assert_close(ours(x, y), torchs(x, y))
    torch.testing.assert_close(grad_ours, grad_torch)
    assert is_nhwc(grad_ours)
    assert not is_nhwc(grad_torch)  # what the helper is for: torch's gradient comes back NCHW


def test_contiguous_input_is_untouched():
    x, y = pair(channels_last=False)
    assert memory_order(x) is x
    (grad,) = torch.autograd.grad(l1_loss(x, y), x)
    assert grad.is_contiguous()


def test_kl_and_feature_matching_gradients_stay_channels_last():
    x, y = pair(1)
    for loss in (reduced_kl(x), gaussian_kl(x, x.detach() * 0.1), feature_matching_loss(
        [[x, x.sum()]], [[y, y.sum()]], n_layers_D=1, num_D=1
    )):  # fmt: skip
        (grad,) = torch.autograd.grad(loss, x)
        assert is_nhwc(grad)
    torch.testing.assert_close(reduced_kl(x), x.pow(2).mean())


def test_split_domains_keeps_channels_last_both_ways():
    x, _ = pair(2)
    domain = torch.tensor([1, 0])  # REAL, SYNTHETIC
    real, synthetic = split_domains(x, domain)
    torch.testing.assert_close(real, x[:1])
    torch.testing.assert_close(synthetic, x[1:])
    assert is_nhwc(real) and is_nhwc(synthetic)
    (grad,) = torch.autograd.grad((real * 2 + synthetic).sum(), x)
    assert is_nhwc(grad)
    torch.testing.assert_close(grad[0], torch.full_like(grad[0], 2.0))
    torch.testing.assert_close(grad[1], torch.ones_like(grad[1]))
