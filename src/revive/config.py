"""Structured-config schemas: they make a typo in a model or data override fail with its name.

Each ``conf/model/*.yaml`` and ``conf/data/*.yaml`` lists its schema first in its defaults, so
``model.net.depht=3`` fails with ``Key 'depht' not in ...`` before any work starts.
Register them with ``register_configs()`` before Hydra composes (the CLIs do it on import).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.config_store import ConfigStore

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


@dataclass
class PhotoDataSchema:
    """Fields every photo datamodule takes (see ``revive.data.datamodules.PhotoDataModule``)."""

    _target_: str = "revive.data.datamodules.ScratchDataModule"
    data_dir: str | None = None
    crop_size: int = 256
    batch_size: int = 8
    num_workers: int = 0
    train_length: int = 1000
    val_length: int = 32
    seed: int = 0


@dataclass
class UNetSchema:
    """``revive.nets.unet.ScratchUNet`` arguments."""

    in_channels: int = 1
    out_channels: int = 1
    depth: int = 4
    wf: int = 6
    batch_norm: bool = True


@dataclass
class ScratchModelSchema:
    """``revive.models.scratch.ScratchDetector`` arguments."""

    _target_: str = "revive.models.scratch.ScratchDetector"
    _convert_: str = "all"
    net: UNetSchema = field(default_factory=UNetSchema)
    loss: str = "bce_dice"
    loss_kwargs: dict[str, float] = field(default_factory=dict)
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    threshold: float = 0.4
    tta_flip: bool = False


SCHEMAS = {
    ("data", "photo_schema"): PhotoDataSchema,
    ("model", "scratch_schema"): ScratchModelSchema,
}


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    for (group, name), node in SCHEMAS.items():
        store.store(group=group, name=name, node=node)
