"""Transferal perceptual loss, scratch-segmentation losses and KL terms on known inputs."""

from __future__ import annotations

import math

import pytest
import torch

from revive.losses.kl import gaussian_kl, reduced_kl
from revive.losses.segmentation import (
    bce_dice_loss,
    build_segmentation_loss,
    focal_loss,
    weighted_bce,
)
from revive.losses.transferal import TransferalPerceptualLoss, gram_matrix


def _levels(values: tuple[float, float, float], requires_grad: bool = False) -> list[torch.Tensor]:
    """Constant (lv1, lv2, lv3) maps at 4h, 2h, h for h = 2."""
    return [
        torch.full((1, c, s, s), v, requires_grad=requires_grad)
        for v, c, s in zip(values, (2, 3, 4), (8, 4, 2))
    ]


def test_tpl_official_is_mean_of_level_mses_and_trains_t():
    sr = _levels((1.0, 2.0, 3.0))
    t = _levels((0.0, 0.0, 0.0), requires_grad=True)
    loss = TransferalPerceptualLoss()(sr, t)
    assert loss.item() == pytest.approx((1 + 4 + 9) / 3)
    loss.backward()
    assert all(level.grad is not None for level in t)  # T is not detached, as official


def test_tpl_official_with_s_uses_sigmoid_weights():
    sr, t = _levels((1.0, 2.0, 3.0)), _levels((0.0, 0.0, 0.0))
    s = torch.zeros(1, 1, 2, 2)  # sigmoid(0) = 0.5 on every level, so each MSE shrinks by 4
    loss = TransferalPerceptualLoss(use_s=True)(sr, t, s)
    assert loss.item() == pytest.approx((1 + 4 + 9) / 3 / 4)
    with pytest.raises(ValueError, match="soft-attention"):
        TransferalPerceptualLoss(use_s=True)(sr, t)


def test_tpl_gram_variant():
    # a constant map a (C channels) weighted by a constant S = s has every Gram entry (a s)^2 / C
    sr, t = _levels((1.0, 2.0, 3.0)), _levels((0.0, 1.0, 1.0))
    s = torch.full((1, 1, 2, 2), 0.5)
    loss = TransferalPerceptualLoss(variant="gram")(sr, t, s)
    pairs = ((1, 0, 2), (2, 1, 3), (3, 1, 4))  # (a, b, C) per level
    expected = sum(((a**2 - b**2) * 0.25 / c) ** 2 for a, b, c in pairs) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    f = torch.randn(2, 3, 4, 5)
    manual = torch.einsum("bchw,bdhw->bcd", f, f) / (3 * 4 * 5)
    torch.testing.assert_close(gram_matrix(f), manual)


def test_focal_loss_hand_values():
    target = torch.tensor([1.0, 0.0])
    # logits 0: p = 0.5, -log p_t = ln 2, (1 - p_t)^2 = 1/4; alpha_t = 0.25 / 0.75
    expected = (0.25 * 0.25 * math.log(2) + 0.75 * 0.25 * math.log(2)) / 2
    assert focal_loss(torch.zeros(2), target).item() == pytest.approx(expected)
    # p = 0.75 on a scratch pixel: 0.25 * 0.25^2 * -ln 0.75
    logit = torch.tensor([math.log(3.0)])
    expected = 0.25 * 0.0625 * -math.log(0.75)
    assert focal_loss(logit, torch.ones(1)).item() == pytest.approx(expected)
    assert focal_loss(logit, torch.ones(1), alpha=-1, gamma=0).item() == pytest.approx(
        -math.log(0.75)
    )


def test_weighted_bce_hand_value():
    loss = weighted_bce(torch.zeros(2), torch.tensor([1.0, 0.0]), pos_weight=3.0)
    assert loss.item() == pytest.approx((3 * math.log(2) + math.log(2)) / 2)


def test_bce_dice():
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # p = 0.5 everywhere: dice = (2 * 0.5 + 1) / (2 + 1 + 1) = 0.5
    loss = bce_dice_loss(torch.zeros(1, 1, 2, 2), target, dice_weight=2.0)
    assert loss.item() == pytest.approx(math.log(2) + 2 * 0.5)
    perfect = (target * 2 - 1) * 30.0
    assert bce_dice_loss(perfect, target).item() < 1e-6


def test_build_segmentation_loss():
    loss_fn = build_segmentation_loss("bce", pos_weight=3.0)
    assert loss_fn(torch.zeros(2), torch.tensor([1.0, 0.0])).item() == pytest.approx(
        2 * math.log(2)
    )
    assert build_segmentation_loss("focal")(torch.zeros(2), torch.ones(2)).item() > 0
    with pytest.raises(ValueError, match="bce_dice"):
        build_segmentation_loss("dice")


def test_kl_terms():
    h = torch.tensor([1.0, -2.0, 0.0, 3.0])
    assert reduced_kl(h).item() == pytest.approx((1 + 4 + 0 + 9) / 4)
    assert gaussian_kl(h, torch.zeros(4)).item() == pytest.approx(0.5 * (1 + 4 + 0 + 9) / 4)
    logvar = torch.tensor([math.log(2.0)])
    # KL(N(0, 2) || N(0, 1)) = 0.5 (2 - 1 - ln 2)
    assert gaussian_kl(torch.zeros(1), logvar).item() == pytest.approx(0.5 * (1 - math.log(2)))
