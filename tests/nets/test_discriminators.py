"""Multiscale PatchGAN discriminators: feature lists per scale, spectral-norm option."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from revive.nets.discriminators import MultiscaleDiscriminator, NLayerDiscriminator


def _patchgan_sizes(size: int, n_layers: int) -> list[int]:
    # 4x4 convs with padding 2: stride 2 for the first n_layers, stride 1 for the last two
    sizes = []
    for stride in [2] * n_layers + [1, 1]:
        size = (size + 4 - 4) // stride + 1
        sizes.append(size)
    return sizes


def test_patchgan_returns_every_layer_with_capped_widths() -> None:
    d = NLayerDiscriminator(5, ndf=8, n_layers=3)
    features = d(torch.randn(2, 5, 32, 32))
    assert [f.shape[1] for f in features] == [8, 16, 32, 64, 1]
    assert [f.shape[-1] for f in features] == _patchgan_sizes(32, 3)
    assert [
        f.shape[1] for f in NLayerDiscriminator(3, ndf=256, n_layers=3)(torch.randn(1, 3, 16, 16))
    ] == [
        256,
        512,
        512,
        512,
        1,
    ]


def test_multiscale_scales_see_the_input_pooled_k_times() -> None:
    d = MultiscaleDiscriminator(3, ndf=4, n_layers=2, num_scales=3)
    image = torch.randn(2, 3, 40, 40)
    outputs = d(image)
    assert len(outputs) == 3 and all(len(features) == 4 for features in outputs)
    pooled = image
    for k, features in enumerate(outputs):
        if k > 0:
            pooled = F.avg_pool2d(pooled, 3, stride=2, padding=1, count_include_pad=False)
        torch.testing.assert_close(features[-1], d.scales[k](pooled)[-1])
        assert [f.shape[-1] for f in features] == _patchgan_sizes(pooled.shape[-1], 2)


def test_spectral_norm_keeps_official_keys_and_normalises_the_weights() -> None:
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(6, ndf=4, n_layers=2, num_scales=1, spectral_norm=True).train()
    keys = d.state_dict().keys()
    assert "scales.0.layers.0.0.weight_orig" in keys and "scales.0.layers.0.0.weight_u" in keys
    conv = d.scales[0].layers[1][0]
    u_before = conv.weight_u.clone()
    image = torch.randn(1, 6, 16, 16)
    for _ in range(50):  # one power iteration per training forward
        d(image)
    assert not torch.equal(conv.weight_u, u_before)
    matrix = conv.weight_orig.detach().flatten(1)
    estimate = conv.weight_u @ matrix @ conv.weight_v
    torch.testing.assert_close(conv.weight.detach(), conv.weight_orig.detach() / estimate)
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert abs(sigma.item() - 1) < 2e-2

    plain = MultiscaleDiscriminator(6, ndf=4, n_layers=2, num_scales=1)
    assert not any(k.endswith("weight_orig") for k in plain.state_dict())


def test_spectral_norm_does_not_update_in_eval() -> None:
    d = MultiscaleDiscriminator(3, ndf=4, n_layers=2, num_scales=1, spectral_norm=True).eval()
    conv = d.scales[0].layers[0][0]
    u_before = conv.weight_u.clone()
    d(torch.randn(1, 3, 16, 16))
    assert torch.equal(conv.weight_u, u_before)
