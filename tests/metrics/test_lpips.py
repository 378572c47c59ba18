"""LPIPS builds offline from a local backbone file and is skipped (not faked) without one."""

from __future__ import annotations

import logging

import pytest
import torch
from torchvision.models import alexnet

from revive.metrics.lpips import BACKBONE_FILES, build_lpips


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub dir for the test; afterwards torch follows TORCH_HOME again."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub"


def _save_fake_alexnet(path) -> dict[str, torch.Tensor]:
    """A random torchvision alexnet state_dict; classifier tensors are broadcast constants so
    the file stays small (LPIPS only uses ``features``)."""
    torch.manual_seed(0)
    state = {
        k: v if k.startswith("features.") else torch.zeros(1).expand(v.shape)
        for k, v in alexnet().state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_missing_backbone_returns_none_and_says_so(hub_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="revive.metrics.lpips"):
        assert build_lpips("alex") is None
    assert any("LPIPS skipped" in r.getMessage() for r in caplog.records)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_lpips("alex", weights_path=hub_dir / "nope.pth")


def test_fake_backbone_in_hub_dir_loads_without_network(hub_dir):
    state = _save_fake_alexnet(hub_dir / "checkpoints" / BACKBONE_FILES["alex"])
    metric = build_lpips("alex")
    assert metric is not None
    assert metric.backbone_source.endswith(BACKBONE_FILES["alex"])
    torch.testing.assert_close(metric.model.net.slice1[0].weight, state["features.0.weight"])
    net_state = metric.model.net.state_dict()
    torch.testing.assert_close(net_state["slice5.10.weight"], state["features.10.weight"])
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        same = metric(x, x)
        diff = metric(x, (x + 0.3 * torch.rand_like(x)).clamp(0, 1))
    assert same.shape == (2,)
    assert same.abs().max().item() < 1e-6
    assert (diff > same).all()


def test_random_backbone_only_on_request(hub_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="revive.metrics.lpips"):
        metric = build_lpips("alex", allow_random_backbone=True)
    assert metric is not None and metric.backbone_source == "random"
    assert any("NOT meaningful" in r.getMessage() for r in caplog.records)
