"""PSNR and SSIM, per image, in two documented conventions.

``"basicsr"`` (default, SPEC §4): float images, optional ``crop_border`` and Y channel
(BT.601, Y in [16, 235] / 255 as BasicSR / MATLAB ``rgb2ycbcr``); SSIM with an 11x11 Gaussian
(sigma 1.5) over the "valid" part of the SSIM map, i.e. skimage's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.

``"ttsr_official"`` (researchmm/TTSR ``utils.calc_psnr_and_ssim``): images rounded to uint8
levels, Y = (65.738 R + 129.057 G + 25.064 B) / 256 (+ 16) on [0, 255], peak 255, no crop.

All inputs are float tensors (B, C, H, W) in [0, data_range]; every function returns one value
per image, shape (B,), so callers average over images (not over pooled pixels).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Convention = Literal["basicsr", "ttsr_official"]

_BT601_Y = (65.481, 128.553, 24.966)  # on [0, 1] input, Y in [16, 235]
_TTSR_Y = (65.738, 129.057, 25.064)  # on [0, 255] input, divided by 256


def rgb_to_y(img: Tensor) -> Tensor:
    """Luma of an RGB image in [0, 1] as BasicSR's ``rgb2ycbcr(y_only=True)``: (B, 1, H, W).

    ``Y = (65.481 R + 128.553 G + 24.966 B + 16) / 255``, so Y spans [16/255, 235/255].
    """
    w = img.new_tensor(_BT601_Y).view(1, 3, 1, 1)
    return ((img * w).sum(1, keepdim=True) + 16.0) / 255.0


def _prepare(
    pred: Tensor, target: Tensor, data_range: float, crop_border: int, y_channel: bool
) -> tuple[Tensor, Tensor]:
    """Float64 copies, optionally converted to Y and cropped by ``crop_border`` on each side."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ.")
    x, y = pred.double(), target.double()
    if y_channel and x.shape[1] == 3:
        x = rgb_to_y(x / data_range) * data_range
        y = rgb_to_y(y / data_range) * data_range
    if crop_border > 0:
        c = crop_border
        x, y = x[..., c:-c, c:-c], y[..., c:-c, c:-c]
    return x, y


def _psnr(x: Tensor, y: Tensor, data_range: float) -> Tensor:
    mse = (x - y).pow(2).flatten(1).mean(1)  # (B,)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def _ssim(x: Tensor, y: Tensor, data_range: float) -> Tensor:
    """Mean of the valid-region SSIM map per image; x, y float64 (B, C, H, W)."""
    channels = x.shape[1]
    window = _gaussian_window().to(x.device).expand(channels, 1, 11, 11)

    def blur(t: Tensor) -> Tensor:
        # No padding: keeping only full windows is the same as skimage's crop of (11-1)//2 px.
        return F.conv2d(t, window, groups=channels)

    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov_xy = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim_map.flatten(1).mean(1)


def psnr(
    pred: Tensor,
    target: Tensor,
    data_range: float = 1.0,
    crop_border: int = 0,
    y_channel: bool = False,
) -> Tensor:
    """PSNR in dB per image (B,), BasicSR convention (see the module doc)."""
    x, y = _prepare(pred, target, data_range, crop_border, y_channel)
    return _psnr(x, y, data_range).to(pred.dtype)


def ssim(
    pred: Tensor,
    target: Tensor,
    data_range: float = 1.0,
    crop_border: int = 0,
    y_channel: bool = False,
) -> Tensor:
    """SSIM per image (B,), BasicSR / skimage convention (see the module doc).

    Equals ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range, channel_axis=-1)``.
    """
    x, y = _prepare(pred, target, data_range, crop_border, y_channel)
    return _ssim(x, y, data_range).to(pred.dtype)


def psnr_ssim_ttsr_official(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(PSNR, SSIM) per image as the official TTSR evaluation computes them.

    Images in [0, 1] are scaled to [0, 255] and rounded; both metrics use the official luma
    ``(65.738 R + 129.057 G + 25.064 B) / 256`` (+16, which only SSIM sees), peak 255, no border
    crop. Differing sizes are cropped to the common top-left part, as the official code does.
    """
    h = min(pred.shape[-2], target.shape[-2])
    w = min(pred.shape[-1], target.shape[-1])
    w_y = torch.tensor(_TTSR_Y, dtype=torch.float64, device=pred.device).view(1, 3, 1, 1)

    def luma(img: Tensor) -> Tensor:
        levels = (img[..., :h, :w].double() * 255.0).round()
        return (levels * w_y).sum(1, keepdim=True) / 256.0 + 16.0

    x, y = luma(pred), luma(target)
    return _psnr(x, y, 255.0).to(pred.dtype), _ssim(x, y, 255.0).to(pred.dtype)


def psnr_ssim(
    pred: Tensor,
    target: Tensor,
    convention: Convention = "basicsr",
    crop_border: int = 0,
    y_channel: bool = False,
) -> tuple[Tensor, Tensor]:
    """(PSNR, SSIM) per image for images in [0, 1] in the chosen convention.

    ``crop_border`` and ``y_channel`` apply to "basicsr"; "ttsr_official" fixes them (Y, no crop).
    """
    if convention == "ttsr_official":
        return psnr_ssim_ttsr_official(pred, target)
    if convention != "basicsr":
        raise ValueError(
            f"Unknown metric convention '{convention}'; use 'basicsr' or 'ttsr_official'."
        )
    return (
        psnr(pred, target, 1.0, crop_border, y_channel),
        ssim(pred, target, 1.0, crop_border, y_channel),
    )
