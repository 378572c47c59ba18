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

from revive.data.degradations import build_degradation
from revive.data.scratches import AddDust, AddScratches
from revive.data.seeding import seed_compose
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


def scratch_overlays(dust_p: float = 0.5) -> list[A.BasicTransform]:
    """The detector's damage: scratches always, dust specks with probability ``dust_p``.

    Creases are left out: their shading band changes wide areas that are not scratches.
    """
    return [AddScratches(p=1.0), AddDust(p=dust_p)]


class ReseedableDataset(Dataset):
    """A dataset whose randomness lives in ``self.transform`` (an albumentations Compose)."""

    transform: A.Compose

    def reseed(self, seed: int) -> None:
        """Restart the augmentation RNG from ``seed``."""
        seed_compose(self.transform, seed)


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
        self,
        source: PhotoSource,
        crop_size: int,
        length: int,
        seed: int,
        degradation: A.BasicTransform | None = None,
        dust_p: float = 0.5,
    ) -> None:
        self.source = source
        self.crop_size = crop_size
        self.length = length
        before = [degradation] if degradation is not None else []
        self.transform = seed_compose(
            A.Compose(
                [
                    *crop_transforms(crop_size),
                    *before,
                    A.ToGray(num_output_channels=1, p=1.0),
                    *scratch_overlays(dust_p),
                ]
            ),
            seed,
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        photo = upscale_to(self.source[index % len(self.source)], self.crop_size)
        mask = np.zeros(photo.shape[:2], np.uint8)
        out = self.transform(image=photo, mask=mask)
        return {
            "image": to_tensor(out["image"]),
            "mask": torch.from_numpy(out["mask"])[None].float(),
        }


def crop_compose(crop_size: int, gray_p: float, seed: int) -> A.Compose:
    """Random crop, flip and (with ``gray_p``) 3-channel grayscale of a clean photo, as official."""
    transforms = [*crop_transforms(crop_size), A.ToGray(num_output_channels=3, p=gray_p)]
    return seed_compose(A.Compose(transforms), seed)


class CleanDataset(ReseedableDataset):
    """Clean crops Y for VAE2: ``{"image": (3, S, S) in [-1, 1]}``."""

    def __init__(
        self, source: PhotoSource, crop_size: int, length: int, seed: int, gray_p: float = 0.1
    ) -> None:
        self.source = source
        self.crop_size = crop_size
        self.length = length
        self.transform = crop_compose(crop_size, gray_p, seed)

    def __len__(self) -> int:
        return self.length

    def crop(self, index: int) -> np.ndarray:
        """A random crop of photo ``index`` (cycled over the source)."""
        photo = upscale_to(self.source[index % len(self.source)], self.crop_size)
        return self.transform(image=photo)["image"]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": to_tensor(self.crop(index))}


def degrade(compose: A.Compose, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run a degradation Compose; return the damaged image and its damage mask (H x W {0,1})."""
    out = compose(image=image, mask=np.zeros(image.shape[:2], np.uint8))
    return out["image"], out["mask"]


class OldPhotoMixDataset(CleanDataset):
    """VAE1's data: each item is one real old photo R and one synthetic old photo X.

    Pairing R and X in every item makes every batch hold both domains in equal numbers, which the
    latent discriminator needs. Without a folder of real old photos, R is a stand-in: clean sample
    photos damaged with a different preset (``real_standin``), which is NOT real data.
    Collate with ``collate_domains``.
    """

    def __init__(
        self,
        source: PhotoSource,
        real_source: PhotoSource | None,
        crop_size: int,
        length: int,
        seed: int,
        degradation: str = "official",
        real_standin: str = "rstandin",
        gray_p: float = 0.1,
    ) -> None:
        super().__init__(source, crop_size, length, seed, gray_p)
        self.real_source = real_source
        self.real_crop = crop_compose(crop_size, 0.0, seed + 1)
        self.synthetic = build_degradation(degradation, seed=seed + 2, gray=False)
        self.standin = (
            build_degradation(real_standin, seed=seed + 3) if real_source is None else None
        )

    def reseed(self, seed: int) -> None:
        for offset, compose in enumerate(
            (self.transform, self.real_crop, self.synthetic, self.standin)
        ):
            if compose is not None:
                seed_compose(compose, seed + offset)

    def real_photo(self, index: int) -> np.ndarray:
        """R: a crop of a real old photo, or of a clean photo damaged by the stand-in preset."""
        if self.standin is not None:
            return degrade(self.standin, self.crop(index + 1))[0]
        photo = upscale_to(self.real_source[index % len(self.real_source)], self.crop_size)
        return self.real_crop(image=photo)["image"]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        synthetic, _ = degrade(self.synthetic, self.crop(index))
        return {"real": to_tensor(self.real_photo(index)), "synthetic": to_tensor(synthetic)}


def collate_domains(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack (R, X) items into ``{"image": (2B, 3, S, S), "domain": (2B,)}``, R first (flag 1)."""
    real = torch.stack([item["real"] for item in items])
    synthetic = torch.stack([item["synthetic"] for item in items])
    domain = torch.cat([torch.ones(len(items)), torch.zeros(len(items))]).long()
    return {"image": torch.cat([real, synthetic]), "domain": domain}


class PairedDegradationDataset(CleanDataset):
    """The mapping's data: the same crop clean (Y) and degraded (X), with the damage mask.

    ``{"degraded": X, "clean": Y, "mask": (1, S, S) in {0, 1}}``; grayscale (p=0.1) applies to both
    as official; ``holes`` adds the scratch mapping's irregular white holes (half the samples).
    """

    def __init__(
        self,
        source: PhotoSource,
        crop_size: int,
        length: int,
        seed: int,
        degradation: str = "official",
        holes: bool = False,
        gray_p: float = 0.1,
    ) -> None:
        super().__init__(source, crop_size, length, seed, gray_p)
        self.damage = build_degradation(degradation, holes=holes, seed=seed + 1, gray=False)

    def reseed(self, seed: int) -> None:
        seed_compose(self.transform, seed)
        seed_compose(self.damage, seed + 1)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clean = self.crop(index)
        degraded, mask = degrade(self.damage, clean)
        return {
            "degraded": to_tensor(degraded),
            "clean": to_tensor(clean),
            "mask": torch.from_numpy(mask)[None].float(),
        }
