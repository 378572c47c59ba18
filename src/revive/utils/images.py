"""Small tensor-image helpers for logging: ranges, channels and grids."""

from __future__ import annotations

import torch


def to_unit(image: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((image + 1) / 2).clamp(0, 1)


def gray_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Repeat a 1-channel (B, 1, H, W) image to 3 channels; RGB passes through."""
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image


def make_grid(columns: list[torch.Tensor], pad: int = 2) -> torch.Tensor:
    """Tile columns of (B, 3, H, W) images in [0, 1] into one (3, H', W') picture: a row per sample.

    Columns may differ in size (e.g. LR and SR); each is resized to the first column's size.
    """
    height, width = columns[0].shape[-2:]
    resized = [
        c
        if c.shape[-2:] == (height, width)
        else torch.nn.functional.interpolate(c, size=(height, width), mode="nearest")
        for c in columns
    ]
    rows = torch.stack(resized, dim=1)  # (B, n_columns, 3, H, W)
    b, n = rows.shape[:2]
    canvas = torch.ones(3, b * (height + pad) + pad, n * (width + pad) + pad)
    for i in range(b):
        for j in range(n):
            top, left = pad + i * (height + pad), pad + j * (width + pad)
            canvas[:, top : top + height, left : left + width] = rows[i, j].float().cpu()
    return canvas
