"""What the GAN-trained LightningModules share: manual optimization, epoch schedules, val/test."""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch import Tensor


def constant_then_linear(epochs_constant: int, epochs_decay: int) -> Callable[[int], float]:
    """LR factor per epoch: 1 for ``epochs_constant``, then linear to 0 over ``epochs_decay``."""

    def factor(epoch: int) -> float:
        if epoch < epochs_constant or epochs_decay <= 0:
            return 1.0
        return max(0.0, 1.0 - (epoch - epochs_constant + 1) / epochs_decay)

    return factor


def linear_decay_schedulers(
    optimizers: list[torch.optim.Optimizer], epochs_constant: int, epochs_decay: int
) -> list[torch.optim.lr_scheduler.LambdaLR]:
    """The official pix2pixHD schedule for every optimizer: constant, then linear to zero."""
    factor = constant_then_linear(epochs_constant, epochs_decay)
    return [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in optimizers]


class BackwardOutsideAutocast(pl.LightningModule):
    """``manual_backward`` with autocast off, as Lightning's automatic optimization runs backward.

    Manual optimization calls backward inside ``training_step``, i.e. inside bf16-mixed's
    autocast region, and autocast then also applies to the ops that backward formulas call: the
    WGAN-GP penalty's double backward ran its convs and matmuls in bf16 (critic gradients 5e-3
    off fp32's, where the penalty is meant to be fp32) and recast the critic's fp32 weights to
    bf16 at every call (17 casts of its 13 M-weight classifier per TTSR step). Backward ops run
    in the dtypes their forward saved, with or without autocast.
    """

    def manual_backward(self, loss: Tensor, *args, **kwargs) -> None:
        with torch.autocast(loss.device.type, enabled=False):
            super().manual_backward(loss, *args, **kwargs)


class GANModule(BackwardOutsideAutocast):
    """Base for modules that step their optimizers by hand (generator, then discriminators).

    Subclasses implement ``training_step`` and ``evaluate(batch, batch_idx, stage)``; schedulers
    step once per epoch, as the official code updates its learning rates.
    """

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def on_train_epoch_end(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()

    def evaluate(self, batch: dict[str, Tensor], batch_idx: int, stage: str) -> None:
        """Log ``stage``/metrics for one batch (``stage`` is ``val`` or ``test``)."""
        raise NotImplementedError

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.evaluate(batch, batch_idx, "test")
