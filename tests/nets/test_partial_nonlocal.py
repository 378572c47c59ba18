"""Partial nonlocal block: memory-linear attention equals the official hw x hw formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from revive.nets.non_local import (
    PartialNonLocal,
    downsample_mask,
    naive_partial_attention,
    partial_attention,
)


def _qkv(batch: int, length: int, channels: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return list(torch.randn(3, batch, length, channels, generator=g).unbind(0))


@pytest.mark.parametrize(
    ("length", "hole_fraction", "chunk"), [(37, 0.3, 8), (64, 0.0, 1024), (50, 0.9, 5)]
)
def test_partial_attention_matches_naive(length: int, hole_fraction: float, chunk: int) -> None:
    query, key, value = _qkv(3, length, 8)
    valid = torch.rand(3, length, generator=torch.Generator().manual_seed(1)) >= hole_fraction
    valid = valid.float()
    valid[2] = 0  # an image whose keys are all holes: the official gives zeros
    expected = naive_partial_attention(query, key, value, valid)
    got = partial_attention(query, key, value, valid, query_chunk=chunk)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(got[2], torch.zeros_like(got[2]))


def test_partial_attention_without_mask_is_plain_softmax_attention() -> None:
    query, key, value = _qkv(2, 30, 4)
    expected = torch.softmax(query @ key.transpose(1, 2), dim=2) @ value
    torch.testing.assert_close(partial_attention(query, key, value, None, 7), expected)
    torch.testing.assert_close(naive_partial_attention(query, key, value, None), expected)


def test_partial_attention_reproduces_the_official_renormalisation_clamp() -> None:
    # Hole keys score a_i for query i, valid keys ~0: the valid softmax mass falls below the
    # official L1-renormalisation eps (1e-12) for large a_i, where the official output shrinks
    # instead of being a convex combination. A plain masked softmax misses that.
    length, n_hole = 64, 16
    a = torch.linspace(0, 80, length)
    query = torch.stack([a, torch.ones(length)], dim=1)[None]
    key = torch.zeros(1, length, 2)
    key[0, :n_hole, 0] = 1
    key[0, n_hole:, 1] = 0.5 * torch.randn(
        length - n_hole, generator=torch.Generator().manual_seed(0)
    )
    value = torch.randn(1, length, 2, generator=torch.Generator().manual_seed(1))
    valid = torch.ones(1, length)
    valid[0, :n_hole] = 0

    expected = naive_partial_attention(query, key, value, valid)
    got = partial_attention(query, key, value, valid)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)

    masked_softmax = F.scaled_dot_product_attention(
        query, key, value, attn_mask=valid.bool()[:, None, :], scale=1.0
    )
    assert (masked_softmax - expected).abs().max() > 1e-2


def _block_pair(channels: int, **kwargs) -> tuple[PartialNonLocal, PartialNonLocal]:
    torch.manual_seed(0)
    ours = PartialNonLocal(channels, attention="sdpa", query_chunk=16, **kwargs).eval()
    # The official N(0, 0.02) init makes attention almost uniform, so y is nearly constant over
    # positions and the InstanceNorms after W amplify rounding noise; trained-like, sharper
    # attention keeps the comparison well conditioned.
    for conv in (ours.theta, ours.phi, ours.g):
        torch.nn.init.normal_(conv.weight, 0.0, 0.5)
    naive = PartialNonLocal(channels, attention="naive", **kwargs).eval()
    naive.load_state_dict(ours.state_dict())
    return ours, naive


def _scratch_mask(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch, 1, height, width)
    for b in range(batch):
        rows = torch.randint(0, height, (2,), generator=g)
        col = int(torch.randint(0, width, (1,), generator=g))
        mask[b, 0, rows, :] = 1
        mask[b, 0, :, col : col + 2] = 1
    return mask


@pytest.mark.parametrize("size", [(8, 8), (6, 10), (5, 3)])
@pytest.mark.parametrize("mask_downsample", ["official", "maxpool"])
def test_block_equals_naive_formula(size: tuple[int, int], mask_downsample: str) -> None:
    h, w = size
    ours, naive = _block_pair(8, mask_downsample=mask_downsample)
    x = torch.randn(3, 8, h, w, generator=torch.Generator().manual_seed(2))
    mask = _scratch_mask(3, 4 * h, 4 * w, seed=3)
    mask[2] = 1  # all keys masked in image 2
    with torch.no_grad():
        got, expected = ours(x, mask), naive(x, mask)
        torch.testing.assert_close(got[:2], expected[:2], atol=1e-5, rtol=1e-5)
        # Image 2 attends to nothing: W(0) is a constant map, and the InstanceNorms after it
        # amplify the rounding of its mean by 1/sqrt(eps); the naive path's result is NHWC, so
        # another (equally exact) kernel normalises it.
        torch.testing.assert_close(got[2], expected[2], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours(x, None), naive(x, None), atol=1e-5, rtol=1e-5)


def test_block_fusion_keeps_valid_positions_and_fills_holes() -> None:
    block, _ = _block_pair(8)
    x = torch.randn(2, 8, 6, 6)
    mask = torch.zeros(2, 1, 24, 24)
    mask[0, :, 8:12, :] = 1  # latent row 2 of image 0 is a hole
    mask[1] = 1  # image 1: everything is a hole, nothing to attend to
    with torch.no_grad():
        out = block(x, mask)
        filled_from_nothing = block.res_block(block.W(torch.zeros_like(x[1:])))
    hole = torch.zeros(6, 6, dtype=torch.bool)
    hole[2] = True
    torch.testing.assert_close(out[0][:, ~hole], x[0][:, ~hole], atol=0, rtol=0)
    assert (out[0][:, hole] - x[0][:, hole]).abs().min() > 0
    torch.testing.assert_close(out[1:], filled_from_nothing)


def test_block_without_mask_is_a_residual_nonlocal_block() -> None:
    block, _ = _block_pair(8)
    x = torch.randn(1, 8, 5, 7)
    with torch.no_grad():
        rows = [m(x).flatten(2).transpose(1, 2) for m in (block.theta, block.phi, block.g)]
        y = torch.softmax(rows[0] @ rows[1].transpose(1, 2), dim=2) @ rows[2]
        expected = x + block.res_block(block.W(y.transpose(1, 2).reshape(1, 8, 5, 7)))
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


def test_block_backpropagates_through_memory_linear_attention() -> None:
    block, naive = _block_pair(4)
    x = torch.randn(1, 4, 6, 6, requires_grad=True)
    mask = _scratch_mask(1, 24, 24, seed=5)
    block(x, mask).square().sum().backward()
    grad = x.grad.clone()
    x.grad = None
    naive(x, mask).square().sum().backward()
    torch.testing.assert_close(grad, x.grad, atol=1e-4, rtol=1e-4)


def _dot_mask(dy: int, dx: int) -> torch.Tensor:
    # an 8x8 image (2x2 latent cells of 4x4) with one scratched pixel in cell (1, 0)
    mask = torch.zeros(1, 1, 8, 8)
    mask[0, 0, 4 + dy, dx] = 1
    return mask


def test_official_mask_downsampling_sees_only_some_pixels_of_a_cell() -> None:
    seen = {
        (dy, dx)
        for dy in range(4)
        for dx in range(4)
        if downsample_mask(_dot_mask(dy, dx), (2, 2), "official")[0, 0, 1, 0] == 1
    }
    # nearest samples the cell's pixel (0, 0); bilinear (align_corners=False) its central 2x2
    assert seen == {(0, 0), (1, 1), (1, 2), (2, 1), (2, 2)}
    for dy in range(4):
        for dx in range(4):
            hole = downsample_mask(_dot_mask(dy, dx), (2, 2), "official")
            assert hole.sum() == int((dy, dx) in seen)  # never marks another cell


def test_maxpool_mask_downsampling_marks_any_scratched_pixel() -> None:
    for dy in range(4):
        for dx in range(4):
            hole = downsample_mask(_dot_mask(dy, dx), (2, 2), "maxpool")
            expected = torch.zeros(1, 1, 2, 2)
            expected[0, 0, 1, 0] = 1
            assert torch.equal(hole, expected)


def test_thin_line_on_offset_three_is_invisible_officially() -> None:
    mask = torch.zeros(1, 1, 16, 16)
    mask[0, 0, 7, :] = 1  # 1-px line on row offset 3 of latent row 1
    assert downsample_mask(mask, (4, 4), "official").sum() == 0
    assert torch.equal(downsample_mask(mask, (4, 4), "maxpool")[0, 0, 1], torch.ones(4))


def test_unknown_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="mask_downsample"):
        PartialNonLocal(4, mask_downsample="bilinear")
    with pytest.raises(ValueError, match="attention"):
        PartialNonLocal(4, attention="flash")
