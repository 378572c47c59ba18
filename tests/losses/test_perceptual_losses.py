"""VGG perceptual losses: layer slices and weights, and the missing-weights policy."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import vgg19

from revive.losses.perceptual import VGGFeatureMSE, VGGPerceptualLoss
from revive.nets.vgg import VGG19_FILE


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub dir for the test; afterwards torch follows TORCH_HOME again."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub"


def _save_fake_vgg19(path) -> dict[str, torch.Tensor]:
    """A torchvision-format vgg19 state_dict with one constant per tensor.

    Each tensor is a broadcast view of a single number, so the 548 MB file shrinks to a few KB
    while keeping torchvision's keys and shapes.
    """
    with torch.device("meta"):  # shapes only, no 143M-parameter init
        shapes = {key: value.shape for key, value in vgg19().state_dict().items()}
    state = {
        key: torch.full((1,), 0.001 * (i + 1)).expand(shape)
        for i, (key, shape) in enumerate(shapes.items())
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_bopbtl_vgg_loss_layers_and_weights(hub_dir):
    torch.manual_seed(0)
    loss_fn = VGGPerceptualLoss(on_missing="random")
    assert loss_fn.weights_source == "random" and loss_fn.enabled
    vgg = loss_fn.vgg
    # the slices end at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
    for stop, channels in zip((2, 7, 12, 21, 30), (64, 128, 256, 512, 512)):
        assert isinstance(vgg[stop - 1], nn.ReLU)
        assert vgg[stop - 2].out_channels == channels
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss_fn(x, x).item() == 0.0
    with torch.no_grad():
        expected = sum(
            w * F.l1_loss(vgg[:stop](x), vgg[:stop](y))
            for w, stop in zip((1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0), (2, 7, 12, 21, 30))
        )
    assert loss_fn(x, y).item() == pytest.approx(expected.item(), rel=1e-5)
    assert all(not p.requires_grad for p in loss_fn.parameters())


def test_ttsr_vgg_mse_normalises_and_detaches_target(hub_dir):
    torch.manual_seed(0)
    loss_fn = VGGFeatureMSE(on_missing="random")
    sr = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_(True)
    hr = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_(True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def relu5_1(img):
        return loss_fn.vgg[:30](((img + 1) / 2 - mean) / std)

    loss = loss_fn(sr, hr)
    assert loss.item() == pytest.approx(F.mse_loss(relu5_1(sr), relu5_1(hr)).item(), rel=1e-5)
    loss.backward()
    assert sr.grad is not None and hr.grad is None


def test_missing_weights_error_names_the_option(hub_dir):
    with pytest.raises(FileNotFoundError, match=r"model\.loss\.vgg_path"):
        VGGPerceptualLoss(on_missing="error", option_name="model.loss.vgg_path")
    with pytest.raises(FileNotFoundError, match="my.option"):
        VGGFeatureMSE(option_name="my.option")


def test_missing_weights_disable_gives_zero_and_one_warning(hub_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="revive.losses.perceptual"):
        loss_fn = VGGPerceptualLoss(on_missing="disable")
    assert not loss_fn.enabled and loss_fn.weights_source == "disabled"
    warnings = [r for r in caplog.records if "disabled" in r.getMessage()]
    assert len(warnings) == 1 and VGG19_FILE in warnings[0].getMessage()
    x = torch.rand(2, 3, 16, 16)
    out = loss_fn(x, torch.rand(2, 3, 16, 16))
    assert out.shape == () and out.item() == 0.0
    assert VGGFeatureMSE(on_missing="disable")(x, x).item() == 0.0


def test_fake_hub_weights_are_found_and_loaded(hub_dir):
    state = _save_fake_vgg19(hub_dir / "checkpoints" / VGG19_FILE)
    loss_fn = VGGPerceptualLoss(on_missing="error")
    assert loss_fn.weights_source == str(hub_dir / "checkpoints" / VGG19_FILE)
    torch.testing.assert_close(loss_fn.vgg[28].weight, state["features.28.weight"])
    torch.testing.assert_close(loss_fn.vgg[0].bias, state["features.0.bias"])


def test_frozen_vgg_stays_out_of_checkpoints(hub_dir):
    torch.manual_seed(0)
    owner = nn.Module()
    owner.head = nn.Conv2d(3, 3, 1)
    owner.vgg_loss = VGGFeatureMSE(on_missing="random")
    state = owner.state_dict()
    assert set(state) == {"head.weight", "head.bias"}
    before = owner.vgg_loss.vgg[0].weight.clone()
    owner.load_state_dict(state, strict=True)  # no missing-key error for the VGG
    torch.testing.assert_close(owner.vgg_loss.vgg[0].weight, before)
    owner.vgg_loss.train()
    assert owner.vgg_loss.training and not owner.vgg_loss.vgg.training
