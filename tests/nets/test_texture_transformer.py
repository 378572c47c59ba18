"""TTSR texture transformer: the memory-bounded search equals the official unfold + bmm search,
fold normalisation both ways, and the LTE's levels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from revive.nets.texture_transformer import (
    LTE_CHANNELS,
    TextureExtractor,
    TextureSearch,
    fold_coverage,
)

# small stand-ins for the LTE channel counts (64, 128, 256): the search is channel-agnostic
CHANNELS = (3, 4, 6)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread


def ltefeatures(batch: int, lr: tuple[int, int], ref: tuple[int, int], seed: int = 0):
    """Random non-negative (post-ReLU-like) Q, K, V_lv1, V_lv2, V_lv3 for an LR / Ref lv3 size."""
    g = torch.Generator().manual_seed(seed)
    (h, w), (hr, wr) = lr, ref
    c1, c2, c3 = CHANNELS
    q = torch.rand(batch, c3, h, w, generator=g)
    k = torch.rand(batch, c3, hr, wr, generator=g)
    v_lv1 = torch.rand(batch, c1, 4 * hr, 4 * wr, generator=g)
    v_lv2 = torch.rand(batch, c2, 2 * hr, 2 * wr, generator=g)
    v_lv3 = torch.rand(batch, c3, hr, wr, generator=g)
    return q, k, v_lv1, v_lv2, v_lv3


SIZES = [
    pytest.param((5, 7), (9, 6), id="ref-larger-nonsquare"),
    pytest.param((8, 6), (4, 5), id="ref-smaller"),
    pytest.param((6, 6), (6, 6), id="same-size"),
    pytest.param((1, 3), (2, 1), id="one-row"),
]
CHUNKS = [
    pytest.param(5, 7, id="multi-tile"),
    pytest.param(1, 1, id="one-row-tiles"),
    pytest.param(4096, 4096, id="single-tile"),
]


@pytest.mark.parametrize("lr, ref", SIZES)
@pytest.mark.parametrize("query_chunk, key_chunk", CHUNKS)
@pytest.mark.parametrize("coverage_correct", [False, True])
def test_bounded_search_equals_naive(lr, ref, query_chunk, key_chunk, coverage_correct):
    features = ltefeatures(2, lr, ref)
    naive = TextureSearch("naive", coverage_correct=coverage_correct)(*features)
    bounded = TextureSearch("bounded", query_chunk, key_chunk, coverage_correct)(*features)
    for name, a, b in zip(("S", "T_lv3", "T_lv2", "T_lv1"), naive, bounded):
        assert a.shape == b.shape, name
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5, msg=name)


def test_search_output_shapes():
    batch, (h, w), (hr, wr) = 2, (5, 7), (9, 6)
    S, t_lv3, t_lv2, t_lv1 = TextureSearch()(*ltefeatures(batch, (h, w), (hr, wr)))
    c1, c2, c3 = CHANNELS
    assert S.shape == (batch, 1, h, w)
    assert t_lv3.shape == (batch, c3, h, w)
    assert t_lv2.shape == (batch, c2, 2 * h, 2 * w)
    assert t_lv1.shape == (batch, c1, 4 * h, 4 * w)


def test_bounded_search_gradients_equal_naive():
    """LTE trains through S and T, so the bounded search must also give the official gradients."""
    features = [x.requires_grad_() for x in ltefeatures(2, (5, 7), (6, 4), seed=1)]
    weights = [torch.rand_like(x) for x in TextureSearch("naive")(*features)]

    def grads(search: TextureSearch):
        loss = sum((out * w).sum() for out, w in zip(search(*features), weights))
        return torch.autograd.grad(loss, features)

    for a, b in zip(grads(TextureSearch("naive")), grads(TextureSearch("bounded", 6, 5))):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


def test_relevance_is_the_best_patch_cosine():
    """S at an LR position is the max over Ref positions of the cosine of zero-padded 3x3 patches."""
    features = ltefeatures(1, (4, 5), (3, 4), seed=2)
    q, k = features[:2]
    S = TextureSearch("bounded", 3, 2)(*features)[0]
    q_pad, k_pad = F.pad(q, (1, 1, 1, 1)), F.pad(k, (1, 1, 1, 1))
    i, j = 0, 2  # a border position: the zero padding is part of the patch
    patch = q_pad[0, :, i : i + 3, j : j + 3].flatten()
    cosines = [
        F.cosine_similarity(patch, k_pad[0, :, y : y + 3, x : x + 3].flatten(), dim=0)
        for y in range(3)
        for x in range(4)
    ]
    torch.testing.assert_close(S[0, 0, i, j], torch.stack(cosines).max(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("impl", ["naive", "bounded"])
def test_self_reference_transfers_v_itself(impl):
    """Ref = LR-up: every patch finds itself (S = 1), so with coverage-correct folding T equals V at
    every level; the official constant-9 folding differs from V only on the border band."""
    q, _, v_lv1, v_lv2, v_lv3 = ltefeatures(2, (6, 5), (6, 5), seed=3)
    corrected = TextureSearch(impl, 7, 9, coverage_correct=True)(q, q, v_lv1, v_lv2, v_lv3)
    official = TextureSearch(impl, 7, 9)(q, q, v_lv1, v_lv2, v_lv3)
    torch.testing.assert_close(corrected[0], torch.ones_like(corrected[0]), rtol=0, atol=1e-5)
    for t_corr, t_off, v, s in zip(corrected[1:], official[1:], (v_lv3, v_lv2, v_lv1), (1, 2, 4)):
        torch.testing.assert_close(t_corr, v, rtol=0, atol=1e-5)
        inner = (..., slice(s, -s), slice(s, -s))
        torch.testing.assert_close(t_off[inner], v[inner], rtol=0, atol=1e-5)
        assert (t_off[..., :s, :] - v[..., :s, :]).abs().max() > 1e-2


@pytest.mark.parametrize("impl", ["naive", "bounded"])
def test_constant_v_gives_constant_t_only_with_coverage_correct(impl):
    q, k, v_lv1, v_lv2, v_lv3 = ltefeatures(2, (5, 6), (7, 4), seed=4)
    ones = [torch.ones_like(v) for v in (v_lv1, v_lv2, v_lv3)]
    corrected = TextureSearch(impl, 6, 5, coverage_correct=True)(q, k, *ones)
    official = TextureSearch(impl, 6, 5)(q, k, *ones)
    for t_corr, t_off, s in zip(corrected[1:], official[1:], (1, 2, 4)):
        torch.testing.assert_close(t_corr, torch.ones_like(t_corr), rtol=0, atol=1e-6)
        # official: interior 9/9, edge band 6/9, corners 4/9, the band `s` pixels wide
        inner = t_off[..., s:-s, s:-s]
        torch.testing.assert_close(inner, torch.ones_like(inner), rtol=0, atol=1e-6)
        torch.testing.assert_close(t_off[..., 0, s:-s], torch.full_like(t_off[..., 0, s:-s], 6 / 9))
        torch.testing.assert_close(t_off[..., :s, :s], torch.full_like(t_off[..., :s, :s], 4 / 9))


def test_coverage_correct_rescales_only_the_border():
    features = ltefeatures(2, (5, 6), (7, 4), seed=5)
    corrected = TextureSearch("bounded", 6, 5, coverage_correct=True)(*features)
    official = TextureSearch("bounded", 6, 5)(*features)
    torch.testing.assert_close(corrected[0], official[0], rtol=0, atol=0)  # S untouched
    for t_corr, t_off, s in zip(corrected[1:], official[1:], (1, 2, 4)):
        h, w = t_off.shape[-2] // s, t_off.shape[-1] // s
        coverage = fold_coverage(h, w, s)
        assert torch.equal(t_corr[..., s:-s, s:-s], t_off[..., s:-s, s:-s])
        torch.testing.assert_close(t_corr, t_off * 9 / coverage)


def test_fold_coverage_counts_overlapping_patches():
    for scale in (1, 2, 4):
        coverage = fold_coverage(4, 3, scale)
        ones = torch.ones(1, (3 * scale) ** 2, 12)
        k = 3 * scale
        folded = F.fold(ones, (4 * scale, 3 * scale), k, padding=scale, stride=scale)[0, 0]
        assert torch.equal(coverage, folded)
        assert coverage.max() == 9 and coverage.min() == 4


def test_ref_size_not_multiple_of_four_is_rejected():
    q, k, v_lv1, v_lv2, v_lv3 = ltefeatures(1, (4, 4), (4, 4))
    with pytest.raises(ValueError, match="multiples of 4"):
        TextureSearch()(q, k, v_lv1[..., :-1], v_lv2, v_lv3)


def test_unknown_impl_is_rejected():
    with pytest.raises(ValueError, match="unknown"):
        TextureSearch("fast")


@pytest.fixture(scope="module")
def lte() -> TextureExtractor:
    # built once: torchvision's vgg19() initialises its 124M-parameter classifier too (seconds)
    return TextureExtractor(weights=None)


def test_texture_extractor_levels(lte):
    lv1, lv2, lv3 = lte(torch.rand(2, 3, 16, 12))
    assert lv1.shape == (2, LTE_CHANNELS[0], 16, 12)
    assert lv2.shape == (2, LTE_CHANNELS[1], 8, 6)
    assert lv3.shape == (2, LTE_CHANNELS[2], 4, 3)
    assert min(lv1.min(), lv2.min(), lv3.min()) >= 0  # post-ReLU
    assert not any(p.requires_grad for p in lte.normalize.parameters())
    assert all(p.requires_grad for name, p in lte.named_parameters() if name.startswith("lv"))


def test_texture_extractor_normalises_with_imagenet_statistics(lte):
    x = torch.rand(1, 3, 4, 4)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(lte.normalize(x), (x - mean) / std)


@pytest.mark.parametrize("lr, ref", SIZES)
def test_hard_attention_equal_on_channels_last_features(lr, ref):
    """The block sums read channels_last V in place: same T (and gradients) as contiguous V."""
    features = [x.requires_grad_() for x in ltefeatures(2, lr, ref, seed=6)]
    last = [
        x.detach().contiguous(memory_format=torch.channels_last).requires_grad_() for x in features
    ]
    outs = TextureSearch("bounded", 5, 7)(*features)
    outs_last = TextureSearch("bounded", 5, 7)(*last)
    for a, b in zip(outs, outs_last):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    weights = [torch.rand_like(t) for t in outs]
    grads = torch.autograd.grad(sum((t * w).sum() for t, w in zip(outs, weights)), features)
    grads_last = torch.autograd.grad(sum((t * w).sum() for t, w in zip(outs_last, weights)), last)
    for a, b in zip(grads, grads_last):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


def test_hard_attention_keeps_the_memory_format_of_v():
    features = ltefeatures(1, (5, 7), (9, 6), seed=7)
    last = [x.contiguous(memory_format=torch.channels_last) for x in features]
    for t in TextureSearch()(*features)[1:]:
        assert t.is_contiguous()
    for t in TextureSearch()(*last)[1:]:
        assert t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def test_all_zero_patches_give_finite_official_gradients():
    """Dark regions are all zero after the LTE's ReLU: their patch norms are clamped (as
    F.normalize does), never a square root's infinite slope times zero."""
    q, k, v_lv1, v_lv2, v_lv3 = ltefeatures(1, (6, 7), (6, 5), seed=8)
    q[..., :4, :4] = 0.0
    k[..., 2:, :4] = 0.0
    features = [x.requires_grad_() for x in (q, k, v_lv1, v_lv2, v_lv3)]
    weights = [torch.rand_like(x) for x in TextureSearch("naive")(*features)]

    def grads(search: TextureSearch):
        loss = sum((out * w).sum() for out, w in zip(search(*features), weights))
        return torch.autograd.grad(loss, features)

    for a, b in zip(grads(TextureSearch("naive")), grads(TextureSearch("bounded", 6, 5))):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
