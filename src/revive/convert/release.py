"""Turn the official BOPBTL release into the checkpoints folder ``revive-restore`` reads.

``convert_release`` (convert/bopbtl.py) converts each official file; this module assembles them
into stage checkpoints (``state_dict`` + plain ``hyper_parameters``) with the official test-time
pairing: quality = VAE_A_quality -> mapping_quality -> VAE_B_quality; scratch = VAE_A_quality
-> mapping_scratch -> VAE_B_scratch; HR = VAE_A_quality -> mapping_Patch_Attention -> VAE_B_scratch.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from revive.convert.bopbtl import convert_release
from revive.pipelines.restore import CHECKPOINT_FILES

log = logging.getLogger(__name__)

OFFICIAL_VAE = {"in_channels": 3, "out_channels": 3, "ngf": 64, "mc": 64, "learned_variance": False}
OFFICIAL_UNET = {"in_channels": 1, "out_channels": 1, "depth": 4, "wf": 6, "batch_norm": True}
RESTORERS = {
    "quality": ("vae_a_quality", "mapping_quality", "vae_b_quality", "quality"),
    "scratch": ("vae_a_quality", "mapping_scratch", "vae_b_scratch", "scratch"),
    "hr": ("vae_a_quality", "mapping_patch_attention", "vae_b_scratch", "patch_attention"),
}


def prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``state`` with ``prefix.`` put before every key."""
    return {f"{prefix}.{k}": v for k, v in state.items()}


def stage_checkpoint(
    state_dict: dict[str, torch.Tensor], hparams: dict[str, Any]
) -> dict[str, Any]:
    """The layout every revive stage checkpoint has; ``source`` records where it came from."""
    return {
        "state_dict": state_dict,
        "hyper_parameters": {**hparams, "source": "official BOPBTL release"},
    }


def export_official_bopbtl(src: str | Path, dst: str | Path) -> dict[str, Path]:
    """Convert the official release under ``src`` into ``dst/{detector,mapping_*}.ckpt``."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = convert_release(src, tmp)
        nets = {name: torch.load(path, weights_only=True) for name, path in files.items()}
    written = {}
    if "detection" in nets:
        ckpt = stage_checkpoint(
            prefixed(nets["detection"], "net"), {"net": OFFICIAL_UNET, "threshold": 0.4}
        )
        written["detector"] = dst / CHECKPOINT_FILES["detector"]
        torch.save(ckpt, written["detector"])
    for target, (vae1, mapping, vae2, kind) in RESTORERS.items():
        if not all(name in nets for name in (vae1, mapping, vae2)):
            log.warning(
                "Not writing %s: the release lacks one of %s",
                CHECKPOINT_FILES[target],
                (vae1, mapping, vae2),
            )
            continue
        state = {
            **prefixed(nets[vae1], "restorer.vae1"),
            **prefixed(nets[mapping], "restorer.mapping"),
            **prefixed(nets[vae2], "restorer.vae2"),
        }
        hparams = {"mapping": {"kind": kind}, "vae1_net": OFFICIAL_VAE, "vae2_net": OFFICIAL_VAE}
        written[target] = dst / CHECKPOINT_FILES[target]
        torch.save(stage_checkpoint(state, hparams), written[target])
    for name, path in written.items():
        log.info("Wrote %s: %s", name, path)
    return written
