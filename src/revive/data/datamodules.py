"""LightningDataModules: each takes a folder path and defaults to the embedded sample photos."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from revive.data.datasets import ReseedableDataset, ScratchDataset, seed_worker
from revive.data.sources import PhotoSource

log = logging.getLogger(__name__)

VAL_SEED = 2020  # validation samples are drawn once with this seed: identical in every run


class PhotoDataModule(pl.LightningDataModule):
    """Shared plumbing: splits, per-device batch size, seeded workers, a fixed validation set.

    :param data_dir: folder of images (with ``train/`` and ``val/`` or flat), null = sample photos.
    :param batch_size: global batch size; divided by the number of devices under DDP.
    :param train_length: samples per training epoch (crops are random, so this is nominal).
    :param val_length: number of fixed validation samples drawn once at setup.
    """

    def __init__(
        self, data_dir: str | None = None, crop_size: int = 256, batch_size: int = 8,
        num_workers: int = 0, train_length: int = 1000, val_length: int = 32, seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.train_set: ReseedableDataset | None = None
        self.val_items: list | None = None
        self.device_batch_size = batch_size

    def make_dataset(self, split: str, length: int, seed: int) -> ReseedableDataset:
        """Build the dataset of one split; subclasses decide what a sample is."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        world, rank = 1, 0
        if self.trainer is not None:
            world, rank = self.trainer.world_size, self.trainer.global_rank
        if self.hparams.batch_size % world:
            raise ValueError(
                f"data.batch_size={self.hparams.batch_size} is not divisible by the "
                f"{world} devices; pick a multiple of {world}."
            )
        self.device_batch_size = self.hparams.batch_size // world
        if self.train_set is None:
            # ranks draw different crops from the same photos
            self.train_set = self.make_dataset(
                "train", self.hparams.train_length, self.hparams.seed + rank
            )
        if self.val_items is None:
            val_set = self.make_dataset("val", self.hparams.val_length, VAL_SEED)
            self.val_items = [val_set[i] for i in range(len(val_set))]

    def train_dataloader(self) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            self.train_set, batch_size=self.device_batch_size, shuffle=True, drop_last=True,
            num_workers=workers, worker_init_fn=seed_worker, persistent_workers=workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        items: Dataset = self.val_items  # a list of samples is a valid map-style dataset
        return DataLoader(items, batch_size=self.device_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()


class ScratchDataModule(PhotoDataModule):
    """Gray crops with synthetic scratches and their exact masks, for the scratch detector."""

    def make_dataset(self, split: str, length: int, seed: int) -> ReseedableDataset:
        source = PhotoSource(self.hparams.data_dir, split)
        return ScratchDataset(source, self.hparams.crop_size, length, seed)
