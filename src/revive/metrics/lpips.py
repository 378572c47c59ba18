"""LPIPS from the ``lpips`` package, strictly offline (SPEC §4, framework.md §2d).

``lpips`` ships its linear heads but lets torchvision download the backbone. We never let it:
the network is built with a random backbone (``pnet_rand=True``) and the torchvision backbone
file is then loaded by us, from an explicit path or the torch hub cache. Without that file,
:func:`build_lpips` returns None and says LPIPS is skipped; a random backbone only on request.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lpips
import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


class LPIPSMetric(nn.Module):
    """LPIPS distance per image (B,) for images in [0, 1]; frozen, eval mode."""

    def __init__(self, model: nn.Module, backbone_source: str) -> None:
        super().__init__()
        self.model = model.requires_grad_(False).eval()
        self.backbone_source = backbone_source

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        # lpips expects [-1, 1]; returns (B, 1, 1, 1).
        return self.model(pred * 2 - 1, target * 2 - 1).flatten()


def find_lpips_backbone(net: str, path: str | Path | None = None) -> Path | None:
    """The torchvision backbone file for ``net``: ``path`` (must exist) or the hub cache copy."""
    if net not in BACKBONE_FILES:
        raise ValueError(
            f"LPIPS net '{net}' is not supported; use one of {sorted(BACKBONE_FILES)}."
        )
    if path:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"LPIPS backbone '{path}' does not exist ({BACKBONE_FILES[net]})."
            )
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]
    return cached if cached.is_file() else None


def _load_backbone(model: nn.Module, weights: Path) -> None:
    """Copy torchvision ``features.<i>.*`` weights into lpips' ``slice<k>.<i>.*`` modules."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    own = model.net.state_dict()
    # lpips keeps torchvision's layer indices as module names: slice2.3.weight <- features.3.weight
    mapped = {key: state["features." + key.split(".", 1)[1]] for key in own}
    model.net.load_state_dict(mapped)


def build_lpips(
    net: str = "alex",
    *,
    weights_path: str | Path | None = None,
    allow_random_backbone: bool = False,
) -> LPIPSMetric | None:
    """An LPIPS metric, or None (logged) when the backbone weights are absent.

    :param net: "alex" (``alexnet-owt-7be5be79.pth``) or "vgg" (``vgg16-397923af.pth``).
    :param weights_path: explicit backbone file; default: ``torch.hub.get_dir()/checkpoints``.
    :param allow_random_backbone: tests only: build with a random backbone instead of None.
    """
    weights = find_lpips_backbone(net, weights_path)
    if weights is None and not allow_random_backbone:
        log.warning(
            "LPIPS skipped: no %s in %s (set the LPIPS weights path to enable it).",
            BACKBONE_FILES[net],
            Path(torch.hub.get_dir()) / "checkpoints",
        )
        return None
    with warnings.catch_warnings():  # lpips 0.1.4 passes torchvision's deprecated `pretrained`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
    if weights is None:
        log.warning("LPIPS uses a RANDOM %s backbone: its scores are NOT meaningful.", net)
        return LPIPSMetric(model, "random")
    _load_backbone(model, weights)
    log.info("LPIPS (%s) backbone loaded from %s", net, weights)
    return LPIPSMetric(model, str(weights))
