"""Callbacks shared by every model: image grids to every logger and to the run folder."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from torchvision.utils import save_image

log = logging.getLogger(__name__)


class ImageGridLogger(pl.Callback):
    """After validation, log the model's ``image_grid()`` to W&B / TensorBoard and save a PNG.

    A model opts in by defining ``image_grid() -> (3, H, W) tensor in [0, 1] | None``.

    :param dirpath: where PNGs go (``<run>/images``); null disables the files.
    :param every_n_epochs: log every n-th validation.
    """

    def __init__(self, dirpath: str | None = None, every_n_epochs: int = 1) -> None:
        self.dirpath = Path(dirpath) if dirpath else None
        self.every_n_epochs = every_n_epochs

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if trainer.current_epoch % self.every_n_epochs:
            return
        make = getattr(pl_module, "image_grid", None)
        grid = make() if make is not None else None
        if grid is None:
            return
        grid = grid.float().clamp(0, 1).cpu()
        key, step = "val/images", trainer.global_step
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(
                    key, images=[grid], caption=[f"epoch {trainer.current_epoch}"], step=step
                )
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(key, grid, global_step=step)
            elif not isinstance(logger, CSVLogger):
                log.debug("Logger %s takes no images", type(logger).__name__)
        if self.dirpath is not None:
            self.dirpath.mkdir(parents=True, exist_ok=True)
            save_image(grid, self.dirpath / f"epoch_{trainer.current_epoch:03d}.png")
