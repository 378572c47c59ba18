"""LSGAN, feature matching and WGAN-GP against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from revive.losses.gan import (
    feature_matching_loss,
    gradient_penalty,
    lsgan_loss,
    wgan_d_loss,
    wgan_g_loss,
)


def _two_scale_output() -> list:
    # scale 1 with an intermediate feature (ignored by LSGAN), scale 2 as bare logits
    return [
        [torch.full((1, 2), 9.0), torch.tensor([[0.5, 1.5]])],
        torch.tensor([2.0, 0.0, 1.0]),
    ]


def test_lsgan_sums_mse_of_last_output_over_scales():
    pred = _two_scale_output()
    # real: mean(0.25, 0.25) + mean(1, 1, 0);  fake: mean(0.25, 2.25) + mean(4, 0, 1)
    assert lsgan_loss(pred, True).item() == pytest.approx(0.25 + 2 / 3)
    assert lsgan_loss(pred, False).item() == pytest.approx(1.25 + 5 / 3)


def test_feature_matching_official_weighting_and_detached_real():
    fake = [
        [torch.zeros(1, 4, requires_grad=True), torch.zeros(2, 2), torch.zeros(1)],
        [torch.zeros(3), torch.zeros(5)],
    ]
    real = [
        [torch.ones(1, 4, requires_grad=True), torch.full((2, 2), 2.0), torch.full((1,), 100.0)],
        [torch.full((3,), 3.0), torch.full((5,), 100.0)],
    ]
    # w = 4/(3+1) * 1/2 * 10 = 5; L1 terms (logits excluded): 1 + 2 (scale 1) + 3 (scale 2)
    loss = feature_matching_loss(fake, real, n_layers_D=3, num_D=2, weight=10.0)
    assert loss.item() == pytest.approx(5 * (1 + 2 + 3))
    loss.backward()
    assert fake[0][0].grad is not None
    assert real[0][0].grad is None
    w_other = (4 / (2 + 1)) * (1 / 1) * 1.0
    one_scale = feature_matching_loss(fake[:1], real[:1], n_layers_D=2, num_D=1, weight=1.0)
    assert one_scale.item() == pytest.approx(w_other * (1 + 2))


def test_wgan_losses():
    d_real = torch.tensor([1.0, 3.0])
    d_fake = torch.tensor([-1.0, 0.0])
    assert wgan_d_loss(d_real, d_fake).item() == pytest.approx(-0.5 - 2.0)
    assert wgan_g_loss(d_fake).item() == pytest.approx(0.5)


def test_gradient_penalty_on_linear_critic_matches_hand_value():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 1))
    w = torch.linspace(-0.3, 0.5, 12)
    with torch.no_grad():
        critic[1].weight.copy_(w)
    real, fake = torch.rand(4, 3, 2, 2), torch.rand(4, 3, 2, 2)
    # D is linear, so grad_x D = w at every x_hat, whatever epsilon is.
    norm = w.norm().item()
    gp = gradient_penalty(critic, real, fake, weight=10.0)
    assert gp.item() == pytest.approx(10 * (norm - 1) ** 2, rel=1e-6)
    # create_graph: the penalty trains D, d/dw 10 (|w| - 1)^2 = 20 (|w| - 1) w / |w|
    gp.backward()
    expected = 20 * (norm - 1) * w / norm
    torch.testing.assert_close(critic[1].weight.grad.flatten(), expected, rtol=1e-5, atol=1e-7)


def test_gradient_penalty_is_fp32_under_bf16_autocast():
    torch.manual_seed(1)
    critic = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 3), nn.Flatten(), nn.Linear(4, 1)
    )
    real, fake = torch.rand(2, 3, 6, 6), torch.rand(2, 3, 6, 6)
    torch.manual_seed(7)
    gp32 = gradient_penalty(critic, real, fake)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(7)
        gp_amp = gradient_penalty(critic, real, fake)
        torch.manual_seed(7)
        gp_bf16_inputs = gradient_penalty(critic, real.bfloat16(), fake.bfloat16())
    assert gp_amp.dtype == torch.float32
    # autocast is off inside: the same as fp32 (a bf16 critic pass differs here by ~1e-3)
    assert gp_amp.item() == pytest.approx(gp32.item(), rel=1e-6)
    # bf16 inputs are only rounded once; the rest is still fp32
    assert math.isclose(gp_bf16_inputs.item(), gp32.item(), abs_tol=1e-3)
