"""Bicubic upsampling by matmuls equals torch's bicubic kernel, in values, gradients and layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from revive.nets.resample import bicubic_matrix, upsample_bicubic

pytestmark = pytest.mark.usefixtures("one_thread")


def torch_bicubic(x: torch.Tensor, factor: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bicubic")


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("shape", [(2, 5, 7, 4), (1, 1, 3, 9), (1, 3, 1, 2)], ids=str)
def test_equals_torch_bicubic_with_gradients(shape, channels_last, factor):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    expected, got = torch_bicubic(x, factor), upsample_bicubic(x, factor)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    g = torch.randn_like(expected)
    (grad_expected,) = torch.autograd.grad(expected, x, g)
    (grad_got,) = torch.autograd.grad(got, x, g)
    torch.testing.assert_close(grad_got, grad_expected, rtol=0, atol=1e-12)


def test_channels_last_stays_channels_last_and_contiguous_stays_contiguous():
    x = torch.randn(2, 8, 6, 5)
    assert upsample_bicubic(x, 2).is_contiguous()
    out = upsample_bicubic(x.contiguous(memory_format=torch.channels_last), 2)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()


def test_bf16_autocast_runs_in_bf16_close_to_fp32():
    torch.manual_seed(1)
    x = torch.randn(2, 16, 10, 10).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = upsample_bicubic(x.bfloat16(), 4)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), torch_bicubic(x, 4), rtol=0.02, atol=0.03)


def test_matrix_rows_sum_to_one():
    """Bicubic weights sum to 1, also where the edge taps are clamped."""
    for n, factor in ((1, 2), (5, 4), (40, 2)):
        rows = bicubic_matrix(n, factor, torch.float64, torch.device("cpu")).sum(dim=1)
        torch.testing.assert_close(rows, torch.ones(factor * n, dtype=torch.float64))


def test_bad_input_names_the_shape():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        upsample_bicubic(torch.zeros(3, 4, 4), 2)
