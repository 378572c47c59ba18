"""VGG19 perceptual losses: BOPBTL's multi-layer L1 and TTSR's relu5_1 MSE.

Weight policy (SPEC §4), chosen per loss with ``on_missing`` when no VGG19 file is found:
``"error"`` stops with a message naming the option, ``"disable"`` turns the term into an explicit
zero (``.enabled == False``), ``"random"`` (tests only) keeps a random-init VGG. ``.weights_source``
says which happened (a path, ``"random"`` or ``"disabled"``) so the run config can record it.

The frozen VGG is left out of ``state_dict()``: checkpoints stay small, and a checkpoint from a
machine with the weights loads on one without them (and back).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from revive.losses.layout import l1_loss, mse_loss
from revive.nets.vgg import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    find_vgg19_weights,
    missing_vgg19_message,
    vgg19_features,
)

log = logging.getLogger(__name__)

OnMissing = Literal["error", "disable", "random"]


class _FrozenVGGLoss(nn.Module):
    """Base for losses on a frozen ``vgg19.features[:upto]``; owns the weight policy."""

    def __init__(
        self,
        upto: int,
        term: str,
        weights_path: str | Path | None,
        on_missing: OnMissing,
        option_name: str,
    ) -> None:
        super().__init__()
        if on_missing not in ("error", "disable", "random"):
            raise ValueError(
                f"on_missing={on_missing!r} for {term}; use 'error', 'disable' or 'random'."
            )
        self.vgg: nn.Sequential | None = None
        weights = find_vgg19_weights(weights_path)
        if weights is not None:
            self.vgg = vgg19_features(weights, upto)
            self.weights_source = str(weights)
        elif on_missing == "error":
            raise FileNotFoundError(missing_vgg19_message(option_name))
        elif on_missing == "disable":
            self.weights_source = "disabled"
            log.warning("%s disabled (loss is 0): %s", term, missing_vgg19_message(option_name))
        else:
            self.vgg = vgg19_features(None, upto)
            self.weights_source = "random"
            log.warning("%s uses a RANDOM-init VGG19: its values are not perceptual.", term)
        if self.vgg is not None:
            self.vgg.requires_grad_(False).eval()
        self.register_state_dict_post_hook(_drop_vgg_keys)
        self.register_load_state_dict_pre_hook(_keep_own_vgg_keys)

    @property
    def enabled(self) -> bool:
        """False when the weights were absent and the term was disabled."""
        return self.vgg is not None

    def train(self, mode: bool = True) -> _FrozenVGGLoss:
        """Switch mode, but keep the frozen VGG in eval."""
        super().train(mode)
        if self.vgg is not None:
            self.vgg.eval()
        return self

    def _zero(self, like: Tensor) -> Tensor:
        return like.new_zeros(())


def _drop_vgg_keys(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any
) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "vgg.")]:
        del state_dict[key]


def _keep_own_vgg_keys(
    module: _FrozenVGGLoss, state_dict: dict[str, Any], prefix: str, *args: Any
) -> None:
    # Checkpoints carry no VGG keys; supply the current frozen weights so strict loading passes
    # and never replaces them.
    for key in [k for k in state_dict if k.startswith(prefix + "vgg.")]:
        del state_dict[key]
    if module.vgg is not None:
        for name, value in module.vgg.state_dict().items():
            state_dict[prefix + "vgg." + name] = value


class VGGPerceptualLoss(_FrozenVGGLoss):
    """BOPBTL's ``VGGLoss``: ``sum_i w_i * L1(phi_i(x), phi_i(y))`` over relu1_1 ... relu5_1.

    ``phi_i`` are the slices ``features[0:2], [2:7], [7:12], [12:21], [21:30]`` with weights
    1/32, 1/16, 1/8, 1/4, 1. Images in [-1, 1] are fed as they are, without ImageNet
    normalisation, exactly as the official code; the target's features are detached. The caller
    multiplies by ``lambda_feat`` (10 in BOPBTL).
    """

    SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))
    LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)

    def __init__(
        self,
        weights_path: str | Path | None = None,
        on_missing: OnMissing = "error",
        option_name: str = "model.vgg_weights",
    ) -> None:
        super().__init__(30, "VGG perceptual loss", weights_path, on_missing, option_name)

    def features(self, x: Tensor) -> list[Tensor]:
        """relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 of ``x``."""
        feats = []
        for start, stop in self.SLICES:
            x = self.vgg[start:stop](x)
            feats.append(x)
        return feats

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if self.vgg is None:
            return self._zero(x)
        loss = 0.0
        for w, fx, fy in zip(self.LAYER_WEIGHTS, self.features(x), self.features(y)):
            loss = loss + w * l1_loss(fx, fy.detach())
        return loss


class VGGFeatureMSE(_FrozenVGGLoss):
    """TTSR's perceptual loss: ``MSE(phi(sr), phi(hr))`` on VGG19 relu5_1.

    ``phi`` = ``features[0:30]`` applied to ``((x + 1) / 2 - mean) / std`` (ImageNet statistics),
    so inputs are in [-1, 1]; the HR features carry no gradient, as in the official trainer.
    """

    def __init__(
        self,
        weights_path: str | Path | None = None,
        on_missing: OnMissing = "error",
        option_name: str = "model.vgg_weights",
    ) -> None:
        super().__init__(30, "TTSR perceptual loss", weights_path, on_missing, option_name)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def relu5_1(self, x: Tensor) -> Tensor:
        """VGG19 relu5_1 features of an image in [-1, 1]."""
        return self.vgg(((x + 1.0) / 2.0 - self.mean) / self.std)

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        if self.vgg is None:
            return self._zero(sr)
        with torch.no_grad():
            target = self.relu5_1(hr)
        return mse_loss(self.relu5_1(sr), target)
