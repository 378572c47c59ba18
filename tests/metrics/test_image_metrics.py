"""PSNR / SSIM against scikit-image, the Y conversion, and the official TTSR convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from revive.metrics.image import psnr, psnr_ssim, psnr_ssim_ttsr_official, rgb_to_y, ssim


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Two astronaut crops (B=2, 40x48) and noisy, slightly shifted versions of them."""
    rng = np.random.default_rng(0)
    img = data.astronaut().astype(np.float64) / 255.0
    gt = np.stack([img[100:140, 150:198], img[300:340, 220:268]])
    noisy = np.clip(gt + rng.normal(0, 0.05, gt.shape) + 0.02, 0, 1)
    return _torch(noisy), _torch(gt)


def _torch(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).numpy()


def _sk_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    return structural_similarity(
        a,
        b,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
    )


def _y_np(img: np.ndarray) -> np.ndarray:
    """BasicSR luma written out: (65.481 R + 128.553 G + 24.966 B + 16) / 255, HW1."""
    y = img[..., 0] * 65.481 + img[..., 1] * 128.553 + img[..., 2] * 24.966 + 16.0
    return (y / 255.0)[..., None]


def test_psnr_and_ssim_match_skimage_per_image(pair):
    pred, gt = pair
    p, s = psnr(pred, gt), ssim(pred, gt)
    assert p.shape == s.shape == (2,)
    for i in range(2):
        a, b = _np(pred)[i], _np(gt)[i]
        assert p[i].item() == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1.0), abs=1e-9)
        assert abs(s[i].item() - _sk_ssim(a, b)) < 1e-6


def test_y_channel_and_crop_border_match_skimage(pair):
    pred, gt = pair
    p = psnr(pred, gt, crop_border=4, y_channel=True)
    s = ssim(pred, gt, crop_border=4, y_channel=True)
    for i in range(2):
        a, b = _y_np(_np(pred)[i])[4:-4, 4:-4], _y_np(_np(gt)[i])[4:-4, 4:-4]
        assert p[i].item() == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1.0), abs=1e-9)
        assert abs(s[i].item() - _sk_ssim(a, b)) < 1e-6
    assert not torch.allclose(p, psnr(pred, gt, y_channel=True))  # the crop changed something


def test_data_range_255(pair):
    pred, gt = pair
    torch.testing.assert_close(psnr(pred * 255, gt * 255, data_range=255.0), psnr(pred, gt))
    torch.testing.assert_close(ssim(pred * 255, gt * 255, data_range=255.0), ssim(pred, gt))


def test_rgb_to_y_known_values():
    colours = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    y = rgb_to_y(colours.view(4, 3, 1, 1)).flatten()
    expected = torch.tensor([235.0, 16.0, 16 + 65.481, 16 + 24.966]) / 255
    torch.testing.assert_close(y, expected)


def test_ttsr_official_convention(pair):
    pred, gt = pair
    p, s = psnr_ssim_ttsr_official(pred, gt)
    for i in range(2):
        # official: round to uint8 levels, Y = (65.738 R + 129.057 G + 25.064 B) / 256 + 16
        a, b = (np.round(_np(x)[i] * 255.0) for x in (pred, gt))
        ya = a @ np.array([65.738, 129.057, 25.064]) / 256.0 + 16.0
        yb = b @ np.array([65.738, 129.057, 25.064]) / 256.0 + 16.0
        mse = np.mean((ya - yb) ** 2)
        assert p[i].item() == pytest.approx(10 * np.log10(255.0**2 / mse), abs=1e-9)
        ref_ssim = structural_similarity(
            ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
        )
        assert abs(s[i].item() - ref_ssim) < 1e-6
    # sizes that differ are cropped to the common top-left part
    p_crop, _ = psnr_ssim_ttsr_official(pred, gt[..., :36, :44])
    torch.testing.assert_close(
        p_crop, psnr_ssim_ttsr_official(pred[..., :36, :44], gt[..., :36, :44])[0]
    )
    torch.testing.assert_close(psnr_ssim(pred, gt, convention="ttsr_official")[0], p)


def test_psnr_ssim_dispatch(pair):
    pred, gt = pair
    p, s = psnr_ssim(pred, gt, crop_border=2, y_channel=True)
    torch.testing.assert_close(p, psnr(pred, gt, crop_border=2, y_channel=True))
    torch.testing.assert_close(s, ssim(pred, gt, crop_border=2, y_channel=True))
    with pytest.raises(ValueError, match="ttsr_official"):
        psnr_ssim(pred, gt, convention="matlab")
