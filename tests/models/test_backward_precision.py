"""Manual backward under bf16-mixed runs outside autocast: the WGAN-GP critic gradients are fp32's."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from revive.losses.gan import gradient_penalty
from revive.models.base import BackwardOutsideAutocast


class PenaltyOnly(BackwardOutsideAutocast):
    """One manual step: the gradient penalty of a small critic, its gradients kept."""

    def __init__(self, plain_backward: bool = False) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.plain_backward = plain_backward
        torch.manual_seed(0)
        self.critic = nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.LeakyReLU(0.2), nn.Flatten(),
            nn.Linear(8 * 14 * 14, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1),
        )  # fmt: skip
        self.grads: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        real, fake = batch[0], batch[0].flip(-1)
        torch.manual_seed(5)
        gp = gradient_penalty(self.critic, real, fake)
        if self.plain_backward:  # what Lightning's manual_backward does by itself
            pl.LightningModule.manual_backward(self, gp)
        else:
            self.manual_backward(gp)
        self.grads = [p.grad.clone() for p in self.critic.parameters() if p.grad is not None]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def critic_grads(precision: str, plain_backward: bool = False) -> list[torch.Tensor]:
    model = PenaltyOnly(plain_backward)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, precision=precision, max_epochs=1, limit_train_batches=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, DataLoader([(images,)], batch_size=None))
    return model.grads


def test_penalty_gradients_under_bf16_mixed_equal_fp32():
    reference = critic_grads("32-true")
    assert reference
    for got, expected in zip(critic_grads("bf16-mixed"), reference):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    # inside autocast the double backward runs in bf16: visibly off
    plain = critic_grads("bf16-mixed", plain_backward=True)
    worst = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(plain, reference))
    assert worst > 1e-4
