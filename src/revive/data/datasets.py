"""Datasets that cut random crops from a photo source and damage them on the fly.

Every dataset draws all its randomness from one albumentations ``Compose`` seeded at construction.
DataLoader workers get a copy of that RNG, so ``seed_worker`` reseeds it per worker (albumentations
ignores numpy/torch seeding; reference/framework.md §2e).
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from revive.data.scratches import AddCreases, AddDust, AddScratches
from revive.data.sources import PhotoSource


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 H x W (x C) -> float (C, H, W) in [-1, 1], the range of the official networks."""
    if image.ndim == 2:
        image = image[..., None]
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    return tensor.float().div_(127.5).sub_(1.0)


def upscale_to(photo: np.ndarray, crop_size: int) -> np.ndarray:
    """Upscale a photo whose short side is below ``crop_size`` (bicubic, as official)."""
    h, w = photo.shape[:2]
    if min(h, w) >= crop_size:
        return photo
    scale = crop_size / min(h, w)
    size = (max(crop_size, round(w * scale)), max(crop_size, round(h * scale)))
    return cv2.resize(photo, size, interpolation=cv2.INTER_CUBIC)


def crop_transforms(crop_size: int) -> list[A.BasicTransform]:
    """Random crop + horizontal flip, as the official training data."""
    return [A.RandomCrop(crop_size, crop_size, p=1.0), A.HorizontalFlip(p=0.5)]


def scratch_overlays() -> list[A.BasicTransform]:
    """The detector's damage: scratches always, dust and creases sometimes."""
    return [AddScratches(p=1.0), AddDust(p=0.5), AddCreases(p=0.2)]


class ReseedableDataset(Dataset):
    """A dataset whose randomness lives in ``self.transform`` (an albumentations Compose)."""

    transform: A.Compose

    def reseed(self, seed: int) -> None:
        """Restart the augmentation RNG from ``seed``."""
        self.transform.set_random_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: give each worker its own augmentation stream.

    ``torch.initial_seed()`` in a worker is the loader's base seed + worker id, so streams differ
    between workers and epochs and repeat exactly under the same global seed.
    """
    info = get_worker_info()
    dataset = info.dataset if info is not None else None
    if isinstance(dataset, ReseedableDataset):
        dataset.reseed(torch.initial_seed() % 2**32)


class ScratchDataset(ReseedableDataset):
    """Gray crops with synthetic scratches, dust and creases, and their exact mask.

    Returns ``{"image": (1, S, S) in [-1, 1], "mask": (1, S, S) in {0, 1}}``.
    """

    def __init__(
        self, source: PhotoSource, crop_size: int, length: int, seed: int,
        degradation: A.BasicTransform | None = None,
    ) -> None:
        self.source = source
        self.crop_size = crop_size
        self.length = length
        before = [degradation] if degradation is not None else []
        self.transform = A.Compose(
            [
                *crop_transforms(crop_size),
                *before,
                A.ToGray(num_output_channels=1, p=1.0),
                *scratch_overlays(),
            ],
            seed=seed,
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        photo = upscale_to(self.source[index % len(self.source)], self.crop_size)
        mask = np.zeros(photo.shape[:2], np.uint8)
        out = self.transform(image=photo, mask=mask)
        return {"image": to_tensor(out["image"]), "mask": torch.from_numpy(out["mask"])[None].float()}
