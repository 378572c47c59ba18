"""The embedded sample data: real photos bundled with scikit-image, split once and for all.

The split is a fixed list, so every run, worker and machine sees the same train and val photos.
Large photos are downscaled so their long side is at most ``MAX_SIDE``: the sample set exists to
train small presets in minutes, not to benchmark resolution.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image
from skimage import data as skdata

MAX_SIDE = 512

TRAIN_PHOTOS = (
    "astronaut", "camera", "rocket", "motorcycle_left", "brick", "grass", "gravel", "page",
    "text", "moon", "hubble_deep_field", "immunohistochemistry", "retina", "horse", "clock",
)  # fmt: skip
VAL_PHOTOS = ("coffee", "chelsea", "coins", "motorcycle_right")


def _load_raw(name: str) -> np.ndarray:
    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _disparity = skdata.stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    image = getattr(skdata, name)()
    if image.dtype == bool:  # the horse silhouette
        image = np.where(image, 255, 0).astype(np.uint8)
    return image


@cache
def sample_photo(name: str) -> np.ndarray:
    """One bundled photo as uint8 RGB (H, W, 3), long side at most ``MAX_SIDE``."""
    if name not in TRAIN_PHOTOS + VAL_PHOTOS:
        raise ValueError(f"Unknown sample photo '{name}'; choose from {TRAIN_PHOTOS + VAL_PHOTOS}.")
    image = _load_raw(name)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = np.ascontiguousarray(image[..., :3])
    h, w = image.shape[:2]
    if max(h, w) > MAX_SIDE:
        scale = MAX_SIDE / max(h, w)
        size = (round(w * scale), round(h * scale))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
    image.setflags(write=False)
    return image


def sample_photos(split: str) -> list[np.ndarray]:
    """All photos of ``split`` ('train' or 'val') as uint8 RGB arrays."""
    names = {"train": TRAIN_PHOTOS, "val": VAL_PHOTOS}.get(split)
    if names is None:
        raise ValueError(f"split must be 'train' or 'val', got '{split}'.")
    return [sample_photo(n) for n in names]
