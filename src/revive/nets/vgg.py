"""VGG19 feature extractor with explicit, reported weight loading (SPEC §4).

Weights are torchvision's ``vgg19-dcbb9e9d.pth``. They are looked up at an explicit path or in the
torch hub cache (``$TORCH_HOME/hub/checkpoints``); nothing is ever downloaded. Callers decide what a
missing file means (stop, or disable the term with a warning), so this module only finds and loads.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torchvision.models import vgg19

log = logging.getLogger(__name__)

VGG19_FILE = "vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def hub_checkpoint_dir() -> Path:
    """The folder torchvision would download pretrained weights to."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_vgg19_weights(path: str | Path | None = None) -> Path | None:
    """Return the VGG19 weight file to use, or None when there is none.

    :param path: an explicit file; when given it must exist.
    """
    if path:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"VGG19 weights '{path}' do not exist. Put torchvision's {VGG19_FILE} there "
                f"or in {hub_checkpoint_dir()}."
            )
        return path
    cached = hub_checkpoint_dir() / VGG19_FILE
    return cached if cached.is_file() else None


def missing_vgg19_message(option: str) -> str:
    """One sentence telling the user where the VGG19 weights go."""
    return (
        f"VGG19 weights not found: put torchvision's {VGG19_FILE} in {hub_checkpoint_dir()} "
        f"or set {option}=/path/to/{VGG19_FILE}."
    )


def vgg19_features(weights: Path | None, upto: int = 30) -> nn.Sequential:
    """``torchvision.models.vgg19().features[:upto]``, loaded from ``weights`` when given.

    The file is read with ``weights_only=True``. With ``weights=None`` the layers keep their random
    init; the caller must have decided (and said) that this is acceptable.
    """
    # build on the meta device: the 102M-parameter classifier is never allocated or initialised
    with torch.device("meta"):
        features = vgg19().features[:upto]
    features = features.to_empty(device="cpu")
    if weights is None:
        for module in features.modules():
            if isinstance(module, nn.Conv2d):
                module.reset_parameters()
        return features
    state = torch.load(weights, map_location="cpu", weights_only=True)
    prefix = "features."
    own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    features.load_state_dict({k: v for k, v in own.items() if k in features.state_dict()})
    log.info("Loaded VGG19 weights from %s", weights)
    return features
