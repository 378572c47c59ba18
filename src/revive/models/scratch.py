"""The scratch detector as a LightningModule: segmentation losses, IoU / F1 / ROC-AUC, flip TTA."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAUROC, BinaryF1Score, BinaryJaccardIndex

from revive.losses.segmentation import build_segmentation_loss
from revive.models.compiled import CompiledNetworks
from revive.models.memory_format import ChannelsLastBatches, to_channels_last
from revive.nets.unet import ScratchUNet
from revive.utils.images import gray_to_rgb, make_grid, to_unit


class ScratchDetector(CompiledNetworks, ChannelsLastBatches, pl.LightningModule):
    """Train the scratch U-Net on synthetic scratches with their exact masks.

    :param net: ``ScratchUNet`` arguments (``depth``, ``wf``, ...).
    :param loss: ``focal``, ``bce`` (with ``pos_weight``) or ``bce_dice``.
    :param threshold: probability above which a pixel is a scratch (official 0.4).
    :param tta_flip: average the prediction with that of the horizontally flipped input.
    :param channels_last: weights and batches in channels_last memory format (faster convs).
    :param torch_compile: compile the training step's networks in place (``CompiledNetworks``).
    """

    # none: compiled, the U-Net's bf16 training loss went non-finite at paper width and its step
    # was slower than eager bf16 + channels_last (0.33 vs 0.87 img/s, experiments/benchmarks)
    compiled_networks = ()

    def __init__(
        self,
        net: dict[str, Any],
        loss: str = "bce_dice",
        loss_kwargs: dict[str, float] | None = None,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        threshold: float = 0.4,
        tta_flip: bool = False,
        channels_last: bool = False,
        torch_compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = ScratchUNet(**net)
        self.loss_fn = build_segmentation_loss(loss, **(loss_kwargs or {}))
        self.val_metrics = MetricCollection(
            {
                "iou": BinaryJaccardIndex(threshold=threshold),
                "dice": BinaryF1Score(threshold=threshold),
                "auroc": BinaryAUROC(thresholds=200),
            },
            prefix="val/",
        )
        self.test_metrics = self.val_metrics.clone(prefix="test/")
        self.grid_batch: dict[str, torch.Tensor] | None = None
        if channels_last:
            to_channels_last(self)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Scratch logits for a gray image in [-1, 1]."""
        return self.net(image)

    def predict_proba(self, image: torch.Tensor) -> torch.Tensor:
        """Scratch probability, with horizontal-flip test-time augmentation when enabled."""
        prob = torch.sigmoid(self.net(image).float())
        if self.hparams.tta_flip:
            flipped = torch.sigmoid(self.net(image.flip(-1)).float()).flip(-1)
            prob = (prob + flipped) / 2
        return prob

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # fp32 logits under bf16 autocast: the soft Dice sums over every pixel of the image
        loss = self.loss_fn(self.net(batch["image"]).float(), batch["mask"])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _evaluate(
        self, batch: dict[str, torch.Tensor], metrics: MetricCollection, stage: str
    ) -> None:
        logits = self.net(batch["image"]).float()
        self.log(f"{stage}/loss", self.loss_fn(logits, batch["mask"]), sync_dist=True)
        prob = self.predict_proba(batch["image"]) if self.hparams.tta_flip else logits.sigmoid()
        metrics.update(prob.flatten(), batch["mask"].flatten().long())
        self.log_dict(metrics, prog_bar=stage == "val")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        if batch_idx == 0:
            self.grid_batch = {k: v[:4].detach() for k, v in batch.items()}
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def image_grid(self) -> torch.Tensor | None:
        """Rows of input | predicted mask | true mask for the first validation samples."""
        if self.grid_batch is None:
            return None
        batch = self.grid_batch
        with torch.no_grad():
            pred = (self.predict_proba(batch["image"]) >= self.hparams.threshold).float()
        columns = [to_unit(batch["image"]), pred, batch["mask"]]
        return make_grid([gray_to_rgb(c) for c in columns])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self.parameters(),
            lr=self.hparams.lr,
            betas=tuple(self.hparams.betas),
            weight_decay=self.hparams.weight_decay,
        )
