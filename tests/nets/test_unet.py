"""The scratch U-Net matches the official layout and behaves as a segmentation net."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from revive.nets.unet import BlurPool, ScratchUNet

ANCHORS = Path(__file__).resolve().parents[2].parent / "shared" / "anchors"


def test_official_size_has_the_reference_parameter_count() -> None:
    net = ScratchUNet()
    assert sum(p.numel() for p in net.parameters()) == 37_626_177


@pytest.mark.skipif(not ANCHORS.is_dir(), reason="shared/anchors not beside the repo")
def test_state_dict_keys_and_shapes_equal_the_official_ones() -> None:
    official = {}
    for line in (ANCHORS / "bopbtl_detection_unet_keys.txt").read_text().splitlines():
        key, shape = line.split()
        official[key] = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
    ours = {k: tuple(v.shape) for k, v in ScratchUNet().state_dict().items()}
    assert ours == official


@pytest.mark.parametrize("size", [(32, 32), (48, 80)])
def test_tiny_net_keeps_the_input_size(size: tuple[int, int]) -> None:
    net = ScratchUNet(depth=3, wf=2)
    assert net.multiple == 8
    out = net(torch.randn(2, 1, *size))
    assert out.shape == (2, 1, *size)


def test_blurpool_halves_and_preserves_a_constant() -> None:
    pool = BlurPool(3)
    x = torch.full((1, 3, 8, 6), 0.7)
    y = pool(x)
    assert y.shape == (1, 3, 4, 3)
    torch.testing.assert_close(y, torch.full_like(y, 0.7))
