"""TTSR backbone, full model and discriminator: shapes at x4, the ablation switches, gradients."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from revive.nets.texture_transformer import LTE_CHANNELS, TextureSearch, concat_conv
from revive.nets.ttsr import TTSR, CrossScaleFusion, Discriminator, TTSRNet

TINY = {"n_feats": 8, "num_res_blocks": (1, 1, 1, 1)}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread


def images(batch: int = 2, lr: tuple[int, int] = (8, 6), ref: tuple[int, int] = (28, 36), seed=0):
    """LR, LR-up, Ref, Ref down-up in [-1, 1], as the data pipeline would give them."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3, *lr, generator=g) * 2 - 1
    reference = torch.rand(batch, 3, *ref, generator=g) * 2 - 1
    down_up = F.interpolate(F.avg_pool2d(reference, 4), scale_factor=4, mode="bicubic")
    return low, F.interpolate(low, scale_factor=4, mode="bicubic"), reference, down_up


@pytest.fixture(scope="module")
def model() -> TTSR:
    # built once: constructing the LTE builds a whole torchvision VGG19 (seconds)
    torch.manual_seed(0)
    return TTSR(**TINY).eval()


def with_switches(model: TTSR, **switches: bool) -> TTSR:
    """The same weights with other attention switches (they only steer the forward pass)."""
    variant = copy.deepcopy(model)
    for name, value in switches.items():
        setattr(variant, name, value)
    return variant


def test_forward_shapes_at_x4(model):
    lr, lr_up, ref, ref_down_up = images()
    with torch.no_grad():
        out = model(lr, lr_up, ref, ref_down_up)
    c1, c2, c3 = LTE_CHANNELS
    assert out.sr.shape == (2, 3, 32, 24)
    assert out.S.shape == (2, 1, 8, 6)
    assert out.T_lv3.shape == (2, c3, 8, 6)
    assert out.T_lv2.shape == (2, c2, 16, 12)
    assert out.T_lv1.shape == (2, c1, 32, 24)
    assert out.sr.min() >= -1 and out.sr.max() <= 1


def test_bicubic_residual_adds_the_tail_output_to_the_bicubic_image(model):
    lr, lr_up, ref, ref_down_up = images()
    residual = with_switches(model, bicubic_residual=True)
    with torch.no_grad():
        plain = model(lr, lr_up, ref, ref_down_up).sr
        out = residual(lr, lr_up, ref, ref_down_up).sr
        # the official output is the tail alone (|tail| < 1 here, so its clamp changes nothing);
        # the residual one is the tail plus LR-up, clamped
        assert plain.abs().max() < 1
        torch.testing.assert_close(out, (plain + lr_up).clamp(-1, 1))
        zeroed = copy.deepcopy(residual)
        tail2 = zeroed.net.merge_tail.conv_tail2
        tail2.weight.zero_(), tail2.bias.zero_()
        torch.testing.assert_close(zeroed(lr, lr_up, ref, ref_down_up).sr, lr_up.clamp(-1, 1))


def test_inference_without_kept_textures_gives_the_same_image(model):
    inputs = images()
    with torch.no_grad():
        kept = model(*inputs)
        freed = model(*inputs, keep_textures=False)
    torch.testing.assert_close(freed.sr, kept.sr)
    torch.testing.assert_close(freed.S, kept.S)
    assert freed.T_lv3 is None and freed.T_lv2 is None and freed.T_lv1 is None
    textures = [kept.T_lv3, kept.T_lv2, kept.T_lv1]
    with torch.no_grad():
        model.net(inputs[0], kept.S, textures)
    assert textures == []  # a list is consumed level by level


def test_naive_and_bounded_search_give_the_same_model_output(model):
    naive = copy.deepcopy(model)
    naive.search = TextureSearch("naive")
    bounded = copy.deepcopy(model)
    bounded.search = TextureSearch("bounded", query_chunk=5, key_chunk=7)
    x = images()
    with torch.no_grad():
        for a, b in zip(naive(*x), bounded(*x)):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


def test_soft_attention_off_adds_textures_unweighted(model):
    x = images()
    full = with_switches(model)
    off = with_switches(model, use_soft_attention=False)
    with torch.no_grad():
        out_full, out_off = full(*x), off(*x)
        lr = x[0]
        textures = (out_full.T_lv3, out_full.T_lv2, out_full.T_lv1)
        unweighted = model.net(lr, torch.ones_like(out_full.S), textures)
        torch.testing.assert_close(model.net(lr, None, textures), unweighted)
    assert torch.equal(out_off.S, torch.ones_like(out_off.S))
    torch.testing.assert_close(out_off.sr, unweighted)
    assert (out_off.sr - out_full.sr).abs().max() > 1e-4


def test_hard_attention_off_transfers_nothing_and_skips_the_transfer(model):
    x = images()
    off = with_switches(model, use_hard_attention=False)
    calls = []
    off.search.hard_attention.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        out_full, out_off = model(*x), off(*x)
    assert not calls
    for t in (out_off.T_lv3, out_off.T_lv2, out_off.T_lv1):
        assert not t.any()
    torch.testing.assert_close(out_off.S, out_full.S)  # soft attention still uses the relevance
    assert (out_off.sr - out_full.sr).abs().max() > 1e-4


def test_base_model_ignores_the_reference():
    """All texture-transformer switches off and no CSFI: the paper's Base model."""
    torch.manual_seed(1)
    base = TTSR(
        **TINY,
        use_csfi=False,
        use_hard_attention=False,
        use_soft_attention=False,
        lte_trainable=False,
    ).eval()
    lr, lr_up, ref, ref_down_up = images()
    other_ref = torch.rand_like(ref) * 2 - 1
    with torch.no_grad():
        sr = base(lr, lr_up, ref, ref_down_up).sr
        sr_other = base(lr, lr_up, other_ref, other_ref).sr
    assert sr.shape == (2, 3, 32, 24)
    assert torch.equal(sr, sr_other)
    assert base.net.csfi2 is None and base.net.csfi3 is None
    assert len(base.net.stage2) == 1 and len(base.net.stage3) == 1
    assert not any(p.requires_grad for p in base.lte.parameters())


def test_output_depends_on_the_reference(model):
    lr, lr_up, ref, ref_down_up = images()
    other_ref = torch.rand_like(ref) * 2 - 1
    with torch.no_grad():
        sr = model(lr, lr_up, ref, ref_down_up).sr
        sr_other = model(lr, lr_up, other_ref, other_ref).sr
    assert (sr - sr_other).abs().max() > 1e-4


def test_single_stream_without_csfi_is_smaller_and_keeps_shapes():
    torch.manual_seed(0)
    full = TTSRNet(n_feats=16, num_res_blocks=(1, 2, 1, 1))
    single = TTSRNet(n_feats=16, num_res_blocks=(1, 2, 1, 1), use_csfi=False)
    assert sum(p.numel() for p in single.parameters()) < sum(p.numel() for p in full.parameters())
    lr = torch.rand(1, 3, 5, 7) * 2 - 1
    S = torch.rand(1, 1, 5, 7)
    textures = tuple(
        torch.rand(1, c, s * 5, s * 7) for c, s in zip(reversed(LTE_CHANNELS), (1, 2, 4))
    )
    with torch.no_grad():
        assert single(lr, S, textures).shape == full(lr, S, textures).shape == (1, 3, 20, 28)


def test_cross_scale_fusion_mixes_every_branch_into_every_other():
    torch.manual_seed(0)
    csfi = CrossScaleFusion(3, n_feats=4)
    branches = [torch.rand(1, 4, 3 * s, 5 * s, requires_grad=True) for s in (1, 2, 4)]
    outputs = csfi(*branches)
    for out, branch in zip(outputs, branches):
        assert out.shape == branch.shape
    for out in outputs:
        grads = torch.autograd.grad(out.sum(), branches, retain_graph=True)
        assert all(g.abs().sum() > 0 for g in grads)


def test_l1_gradient_reaches_the_lte_and_the_backbone(model):
    trained = copy.deepcopy(model).train()
    lr, lr_up, ref, ref_down_up = images(batch=1)
    out = trained(lr, lr_up, ref, ref_down_up)
    F.l1_loss(out.sr, torch.zeros_like(out.sr)).backward()
    assert trained.lte.lv3[-2].weight.grad.abs().sum() > 0  # conv3_1, via S and T
    assert trained.net.sfe.conv_head.weight.grad.abs().sum() > 0


def test_texture_features_pass_gradient_to_sr_only(model):
    trained = copy.deepcopy(model)
    sr = (torch.rand(1, 3, 16, 12) * 2 - 1).requires_grad_()
    lv1, lv2, lv3 = trained.texture_features(sr)
    assert lv3.shape == (1, LTE_CHANNELS[2], 4, 3)
    (lv1.mean() + lv2.mean() + lv3.mean()).backward()
    assert sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in trained.lte.parameters())


def test_reference_size_must_be_a_multiple_of_four(model):
    lr, lr_up, ref, ref_down_up = images(ref=(30, 36))
    with pytest.raises(ValueError, match="multiples of 4"):
        model(lr, lr_up, ref, ref_down_up)


def test_concat_conv_equals_the_conv_of_the_concatenation():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(7, 5, 3, padding=1)
    parts = [torch.rand(2, c, 6, 9) for c in (3, 1, 3)]
    torch.testing.assert_close(concat_conv(conv, iter(parts)), conv(torch.cat(parts, dim=1)))
    with pytest.raises(ValueError, match="7"):
        concat_conv(conv, parts[:2])


@pytest.mark.parametrize("in_size", [160, 96, 100])
def test_discriminator_scores_one_value_per_image(in_size):
    torch.manual_seed(0)
    disc = Discriminator(in_size)
    with torch.no_grad():
        assert disc(torch.rand(2, 3, in_size, in_size)).shape == (2, 1)
    with pytest.raises(ValueError, match="in_size"):
        disc(torch.rand(1, 3, in_size + 32, in_size + 32))
