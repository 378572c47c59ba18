"""LightningDataModules: each takes a folder path and defaults to the embedded sample photos."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from revive.data.datasets import (
    CleanDataset,
    OldPhotoMixDataset,
    PairedDegradationDataset,
    ReseedableDataset,
    ScratchDataset,
    collate_domains,
    seed_worker,
)
from revive.data.degradations import build_degradation
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

    collate_fn = None  # the default collation; VAE1 overrides it

    def __init__(
        self,
        data_dir: str | None = None,
        crop_size: int = 256,
        batch_size: int = 8,
        num_workers: int = 0,
        train_length: int = 1000,
        val_length: int = 32,
        seed: int = 0,
        **options: object,
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
            self.train_set,
            batch_size=self.device_batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            worker_init_fn=seed_worker,
            persistent_workers=workers > 0,
            collate_fn=self.collate_fn,
        )

    def val_dataloader(self) -> DataLoader:
        items: Dataset = self.val_items  # a list of samples is a valid map-style dataset
        return DataLoader(
            items, batch_size=self.device_batch_size, shuffle=False, collate_fn=self.collate_fn
        )

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()


class ScratchDataModule(PhotoDataModule):
    """Gray crops with synthetic scratches and their exact masks, for the scratch detector.

    Extra options: ``degradation`` (a preset applied before the scratches, or None) and
    ``dust_p`` (probability of dust specks, labelled as damage).
    """

    def make_dataset(self, split: str, length: int, seed: int) -> ReseedableDataset:
        source = PhotoSource(self.hparams.data_dir, split)
        preset = self.hparams.get("degradation")
        before = build_degradation(preset, seed=seed + 1) if preset else None
        dust_p = self.hparams.get("dust_p", 0.5)
        return ScratchDataset(source, self.hparams.crop_size, length, seed, before, dust_p)


class VAE2DataModule(PhotoDataModule):
    """Clean photos Y for VAE2. Extra option: ``gray_p``."""

    def make_dataset(self, split: str, length: int, seed: int) -> ReseedableDataset:
        source = PhotoSource(self.hparams.data_dir, split)
        return CleanDataset(
            source, self.hparams.crop_size, length, seed, self.hparams.get("gray_p", 0.1)
        )


class VAE1DataModule(PhotoDataModule):
    """Real old photos R and synthetic old photos X, both in every batch, with a domain flag.

    Extra options: ``real_dir`` (folder of real old photos; null = a degraded stand-in),
    ``degradation`` (preset for X), ``real_standin`` (preset for the stand-in R), ``gray_p``.
    ``batch_size`` counts images: half R, half X.
    """

    collate_fn = staticmethod(collate_domains)

    def setup(self, stage: str | None = None) -> None:
        if self.hparams.batch_size % 2:
            raise ValueError(
                f"data.batch_size={self.hparams.batch_size} must be even: half R, half X."
            )
        super().setup(stage)
        self.device_batch_size //= 2  # each item holds one R and one X

    def make_dataset(self, split: str, length: int, seed: int) -> ReseedableDataset:
        hp = self.hparams
        real_dir = hp.get("real_dir")
        real = PhotoSource(real_dir, split) if real_dir else None
        return OldPhotoMixDataset(
            PhotoSource(hp.data_dir, split),
            real,
            hp.crop_size,
            length // 2,
            seed,
            hp.get("degradation", "official"),
            hp.get("real_standin", "rstandin"),
            hp.get("gray_p", 0.1),
        )


class MappingDataModule(PhotoDataModule):
    """Paired (X, Y, mask) crops for the mapping network.

    Extra options: ``degradation`` (preset), ``holes`` (irregular white holes, scratch mapping),
    ``gray_p``.
    """

    def make_dataset(self, split: str, length: int, seed: int) -> ReseedableDataset:
        hp = self.hparams
        return PairedDegradationDataset(
            PhotoSource(hp.data_dir, split),
            hp.crop_size,
            length,
            seed,
            hp.get("degradation", "official"),
            hp.get("holes", False),
            hp.get("gray_p", 0.1),
        )
