"""TTSR's transferal perceptual loss (TPL): SR texture features against the transferred textures T.

Two variants (SPEC §2: the default follows the official code, the paper's form is an option):

- ``"official"`` (``loss/loss.py`` of researchmm/TTSR): a plain feature loss,
  ``(1/3) * sum_i MSE(LTE_copy(sr)_i * S_i, T_i * S_i)`` over i = lv1, lv2, lv3, with
  ``S_i = 1`` by default (``tpl_use_S=False``) and ``sigmoid(bicubic_up(S))`` when ``use_s``.
  ``T_i`` is NOT detached, so this term also trains the LTE through the V features.
- ``"gram"`` (the paper): ``(1/3) * sum_i MSE(G(LTE(sr)_i * S_i), G(T_i * S_i))`` with the Gram
  matrix ``G(F) = F F^T / (C H W)`` and the raw soft-attention map ``S_i`` (bicubic-upsampled).

The caller computes the SR features with a frozen copy of the LTE on ``(sr + 1) / 2``; gradient
flows through that copy to SR.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from revive.losses.layout import l1_loss, mse_loss


def gram_matrix(feat: Tensor) -> Tensor:
    """Normalised Gram matrix ``F F^T / (C H W)`` of a (B, C, H, W) map, shape (B, C, C)."""
    b, c, h, w = feat.shape
    f = feat.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


class TransferalPerceptualLoss(nn.Module):
    """TTSR's transferal perceptual loss over the three texture levels (see the module doc)."""

    def __init__(
        self,
        variant: Literal["official", "gram"] = "official",
        use_s: bool | None = None,
        criterion: Literal["l2", "l1"] = "l2",
    ) -> None:
        """:param use_s: weight by the soft attention S; default False (official), True (gram)."""
        super().__init__()
        if variant not in ("official", "gram"):
            raise ValueError(f"TPL variant={variant!r}; use 'official' or 'gram'.")
        if criterion not in ("l2", "l1"):
            raise ValueError(f"TPL criterion={criterion!r}; use 'l2' or 'l1'.")
        self.variant = variant
        self.use_s = (variant == "gram") if use_s is None else use_s
        self.criterion = mse_loss if criterion == "l2" else l1_loss

    def _s_weights(self, s: Tensor | None) -> list[Tensor | float]:
        """S at lv1 (x4), lv2 (x2), lv3 (x1) resolution; sigmoid-squashed in the official code."""
        if not self.use_s:
            return [1.0, 1.0, 1.0]
        if s is None:
            raise ValueError("TPL with use_s=True needs the soft-attention map S.")
        h, w = s.shape[-2:]
        maps = [F.interpolate(s, size=(h * k, w * k), mode="bicubic") for k in (4, 2)] + [s]
        return [torch.sigmoid(m) for m in maps] if self.variant == "official" else maps

    def forward(
        self, sr_feats: Sequence[Tensor], t_feats: Sequence[Tensor], s: Tensor | None = None
    ) -> Tensor:
        """:param sr_feats: LTE_copy((sr+1)/2) as (lv1, lv2, lv3).
        :param t_feats: transferred textures (T_lv1, T_lv2, T_lv3).
        :param s: soft attention (B, 1, h, w) at lv3 resolution.
        """
        loss = 0.0
        for f_sr, t, s_i in zip(sr_feats, t_feats, self._s_weights(s)):
            a, b = f_sr * s_i, t * s_i
            if self.variant == "gram":
                a, b = gram_matrix(a), gram_matrix(b)
            loss = loss + self.criterion(a, b)
        return loss / 3.0
