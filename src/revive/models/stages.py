"""Stage checkpoints: load a trained (or converted official) VAE or detector by path, checked.

A stage checkpoint is a Lightning checkpoint (``state_dict`` + ``hyper_parameters``); the
converters write the same layout, so official weights and our runs load the same way. Everything
is read with ``weights_only=True``.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from revive.nets.unet import ScratchUNet
from revive.nets.vae import VAE

STAGES = {
    "vae1": "VAE1 (experiment=bopb/vae1*: model.latent_gan=true)",
    "vae2": "VAE2 (experiment=bopb/vae2*: model.latent_gan=false)",
    "scratch": "the scratch detector (experiment=bopb/scratch*)",
}


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class UnsafeCheckpointError(ValueError):
    """A checkpoint that needs more than tensors and plain values to load (pickled code)."""

    def __init__(self, path: str | Path, error: Exception) -> None:
        found = _GLOBAL.search(str(error))
        what = f"pickled code ({found.group(1)})" if found else "objects other than tensors"
        super().__init__(
            f"Checkpoint '{path}' holds {what}; it was refused without running anything. Use "
            "a checkpoint written by revive (or revive-convert) from a source you trust."
        )


def load_weights_only(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; pickled code raises ``UnsafeCheckpointError``."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(path, err) from None


def read_checkpoint(path: str | Path, expected: str) -> dict[str, Any]:
    """Read a checkpoint safely; errors name the file and the stage it should come from."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"Checkpoint '{path}' for {STAGES.get(expected, expected)} does not exist. Train that "
            "stage first or fix the path."
        )
    try:
        state = load_weights_only(path)
    except UnsafeCheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - a damaged file raises many types
        raise ValueError(
            f"Checkpoint '{path}' cannot be read ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}). Give a complete revive checkpoint."
        ) from err
    if not isinstance(state, dict) or "state_dict" not in state or "hyper_parameters" not in state:
        raise ValueError(
            f"'{path}' is not a revive stage checkpoint (no state_dict/hyper_parameters); expected "
            f"{STAGES.get(expected, expected)}. Convert official weights with revive-convert."
        )
    return state


def submodule_state(state_dict: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix.`` with the prefix removed."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in state_dict.items() if k.startswith(prefix + ".")}


def load_vae(path: str | Path | None, expected: str | None) -> tuple[VAE, dict[str, Any]]:
    """Build and load the VAE of a stage-1 checkpoint (``vae1``, ``vae2`` or None for either);
    also return its net args."""
    if path is None and expected is None:
        raise ValueError("No VAE checkpoint given.")
    if path is None:
        raise ValueError(
            f"model.{expected}_ckpt is not set: give the {STAGES[expected]} checkpoint, "
            f"e.g. model.{expected}_ckpt=logs/train/runs/<run>/checkpoints/last.ckpt."
        )
    state = read_checkpoint(path, expected or "a VAE1 or VAE2 checkpoint")
    hp = state["hyper_parameters"]
    if "latent_gan" not in hp or "net" not in hp:
        wanted = STAGES[expected] if expected else "VAE1 or VAE2"
        raise ValueError(f"'{path}' is not a VAE checkpoint; expected {wanted}.")
    stage = "vae1" if hp["latent_gan"] else "vae2"
    if expected is not None and stage != expected:
        raise ValueError(
            f"'{path}' holds {STAGES[stage]}, but {STAGES[expected]} is expected here. "
            "Swap the two paths."
        )
    vae = VAE(**hp["net"])
    vae.load_state_dict(submodule_state(state["state_dict"], "vae"))
    return vae, dict(hp["net"])


def load_detector(path: str | Path) -> tuple[ScratchUNet, dict[str, Any]]:
    """Build and load the scratch U-Net of a detector checkpoint; also return its hparams."""
    state = read_checkpoint(path, "scratch")
    hp = state["hyper_parameters"]
    if "threshold" not in hp or "net" not in hp:
        raise ValueError(
            f"'{path}' is not a scratch-detector checkpoint; expected {STAGES['scratch']}."
        )
    net = ScratchUNet(**hp["net"])
    net.load_state_dict(submodule_state(state["state_dict"], "net"))
    return net, hp


def freeze(module: nn.Module) -> nn.Module:
    """No gradients, eval mode."""
    return module.requires_grad_(False).eval()
