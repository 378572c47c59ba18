"""The detector's data: exact masks, per-worker streams, reproducible seeds, sample split."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from revive.data.datamodules import ScratchDataModule
from revive.data.datasets import ScratchDataset, seed_worker
from revive.data.sample import TRAIN_PHOTOS, VAL_PHOTOS, sample_photos
from revive.data.sources import PhotoSource


def make_dataset(seed: int = 0, length: int = 8) -> ScratchDataset:
    return ScratchDataset(PhotoSource(None, "train"), crop_size=64, length=length, seed=seed)


def test_sample_split_is_fixed_and_disjoint() -> None:
    assert not set(TRAIN_PHOTOS) & set(VAL_PHOTOS)
    photos = sample_photos("val")
    assert len(photos) == len(VAL_PHOTOS)
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in photos)
    assert all(max(p.shape[:2]) <= 512 for p in photos)


def test_sample_has_gray_image_and_mask_in_range() -> None:
    sample = make_dataset()[0]
    assert sample["image"].shape == (1, 64, 64)
    assert sample["mask"].shape == (1, 64, 64)
    assert -1.0 <= sample["image"].min() and sample["image"].max() <= 1.0
    assert set(sample["mask"].unique().tolist()) <= {0.0, 1.0}
    assert sample["mask"].sum() > 0  # scratches are always drawn


def test_fixed_seed_reproduces_and_another_seed_differs() -> None:
    a = [make_dataset(seed=3)[i]["mask"] for i in range(4)]
    b = [make_dataset(seed=3)[i]["mask"] for i in range(4)]
    c = [make_dataset(seed=4)[i]["mask"] for i in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


class OnePhoto:
    """A source holding a single photo, so every index shows the same picture."""

    def __init__(self) -> None:
        self.photo = sample_photos("train")[0]

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> np.ndarray:
        return self.photo


def loader_masks(seed: int, reseed: bool = True) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    dataset = ScratchDataset(OnePhoto(), crop_size=64, length=2, seed=0)
    loader = DataLoader(
        dataset, batch_size=1, num_workers=2, worker_init_fn=seed_worker if reseed else None
    )
    return [batch["mask"][0] for batch in loader]  # sample i comes from worker i


def test_two_workers_draw_different_scratches_and_a_seed_reproduces_them() -> None:
    # without reseeding both workers start from a copy of the same RNG: identical damage
    plain = loader_masks(seed=11, reseed=False)
    assert torch.equal(plain[0], plain[1])
    first = loader_masks(seed=11)
    assert not torch.equal(first[0], first[1])
    assert all(torch.equal(x, y) for x, y in zip(first, loader_masks(seed=11)))
    assert not all(torch.equal(x, y) for x, y in zip(first, loader_masks(seed=12)))


def test_datamodule_yields_batches_and_fixed_validation() -> None:
    dm = ScratchDataModule(crop_size=32, batch_size=4, train_length=8, val_length=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 32, 32)
    first = next(iter(dm.val_dataloader()))["mask"]
    again = ScratchDataModule(crop_size=32, batch_size=4, train_length=8, val_length=4, seed=99)
    again.setup("fit")
    assert torch.equal(first, next(iter(again.val_dataloader()))["mask"])


def test_dust_probability_reaches_the_masks() -> None:
    # dust specks are small round blobs: with dust_p=1 every mask holds more marked pixels than
    # the same crops' scratches alone (same seed: the same crops and scratches are drawn)
    def marked(dust_p: float) -> list[float]:
        dm = ScratchDataModule(
            crop_size=64, batch_size=2, train_length=6, val_length=2, dust_p=dust_p
        )
        dm.setup("fit")
        return [dm.train_set[i]["mask"].sum().item() for i in range(6)]

    assert sum(marked(1.0)) > sum(marked(0.0))
