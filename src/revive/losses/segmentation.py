"""Pixel-wise losses for the scratch detector: logits in, a float {0, 1} scratch mask as target.

Scratches cover a few percent of a photo, so plain BCE is dominated by the background; the
official release only hints at its choice (``--use_focal_loss``, ``--positive_weight``), so all
three common remedies are offered.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def focal_loss(logits: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Sigmoid focal loss ``mean(-alpha_t (1 - p_t)^gamma log p_t)`` (Lin et al. 2017).

    ``p_t`` is the predicted probability of the true class, ``alpha_t = alpha`` on scratch pixels
    and ``1 - alpha`` on background; ``alpha < 0`` switches the class weighting off.
    """
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # -log p_t
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    return loss.mean()


def weighted_bce(logits: Tensor, target: Tensor, pos_weight: float = 1.0) -> Tensor:
    """BCE with scratch pixels weighted by ``pos_weight``: ``mean(-(w t log p + (1-t) log(1-p)))``."""
    weight = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)


def soft_dice_loss(logits: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """``1 - (2 |P T| + s) / (|P| + |T| + s)`` per image, averaged; P = sigmoid(logits)."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return (1 - dice).mean()


def bce_dice_loss(logits: Tensor, target: Tensor, dice_weight: float = 1.0) -> Tensor:
    """``BCE + dice_weight * (1 - soft Dice)``: BCE for calibration, Dice against class imbalance."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    return bce + dice_weight * soft_dice_loss(logits, target)


SEGMENTATION_LOSSES: dict[str, Callable[..., Tensor]] = {
    "focal": focal_loss,
    "bce": weighted_bce,
    "bce_dice": bce_dice_loss,
}


def build_segmentation_loss(name: str, **kwargs: float) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss ``name`` ("focal", "bce", "bce_dice") with its keyword options bound."""
    if name not in SEGMENTATION_LOSSES:
        raise ValueError(
            f"Unknown segmentation loss '{name}'; choose one of {sorted(SEGMENTATION_LOSSES)}."
        )
    return functools.partial(SEGMENTATION_LOSSES[name], **kwargs)
