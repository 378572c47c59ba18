"""The quickstart's proof: damage the held-back sample photos, restore them, measure PSNR."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch

from revive.data.datasets import degrade
from revive.data.degradations import build_degradation
from revive.data.sample import VAL_PHOTOS, sample_photo
from revive.data.scratches import AddScratches
from revive.data.seeding import seed_compose
from revive.metrics.image import psnr, ssim
from revive.pipelines.batch import write_image_atomic, write_index_html
from revive.pipelines.restore import OldPhotoRestorer

log = logging.getLogger(__name__)


def damage(photo: np.ndarray, degradation: str, scratches: bool, seed: int) -> np.ndarray:
    """A reproducible old-photo version of ``photo``: a preset, then (optionally) scratches."""
    return damage_with_mask(photo, degradation, scratches, seed)[0]


def damage_with_mask(
    photo: np.ndarray, degradation: str, scratches: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``damage`` and the exact mask (H, W) uint8 {0, 1} of the scratches it drew."""
    damaged, _ = degrade(build_degradation(degradation, seed=seed), photo)
    out = {"image": damaged, "mask": np.zeros(photo.shape[:2], np.uint8)}
    if scratches:
        out = seed_compose(A.Compose([AddScratches(p=1.0)]), seed + 1)(**out)
    return out["image"], out["mask"]


def unit(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> (1, 3, H, W) in [0, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


def restore_heldback(
    checkpoints: Path,
    out_dir: Path,
    degradation: str = "official",
    scratches: bool = True,
    seed: int = 0,
    crop: int = 256,
) -> dict[str, Any]:
    """Restore damaged copies of the val photos; write them, the page and a PSNR/SSIM table."""
    restorer = OldPhotoRestorer.from_dir(checkpoints)
    rows = []
    for k, name in enumerate(VAL_PHOTOS):
        clean = np.ascontiguousarray(sample_photo(name)[:crop, :crop])  # top-left crop: fixed
        damaged = damage(clean, degradation, scratches, seed + 10 * k)
        restored, mask = restorer.restore(damaged)
        for folder, image in (("clean", clean), ("damaged", damaged), ("restored", restored)):
            write_image_atomic(image, out_dir / folder / f"{name}.png")
        if mask is not None:
            write_image_atomic(mask * 255, out_dir / "mask" / f"{name}.png")
        target = unit(clean)
        rows.append(
            {
                "photo": name,
                "psnr_damaged": psnr(unit(damaged), target).item(),
                "psnr_restored": psnr(unit(restored), target).item(),
                "ssim_damaged": ssim(unit(damaged), target).item(),
                "ssim_restored": ssim(unit(restored), target).item(),
            }
        )
    means = {key: float(np.mean([r[key] for r in rows])) for key in rows[0] if key != "photo"}
    (out_dir / "metrics.json").write_text(json.dumps({"photos": rows, "mean": means}, indent=2))
    write_index_html(
        out_dir,
        list(VAL_PHOTOS),
        ["clean", "damaged", "mask", "restored"],
        "revive quickstart: held-back photos",
    )
    log.info(
        "Held-back photos: PSNR damaged %.2f dB -> restored %.2f dB (SSIM %.3f -> %.3f); see %s",
        means["psnr_damaged"],
        means["psnr_restored"],
        means["ssim_damaged"],
        means["ssim_restored"],
        out_dir / "index.html",
    )
    return means
