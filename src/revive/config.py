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
class ScratchDataSchema(PhotoDataSchema):
    """``ScratchDataModule``: a degradation preset may run before the scratches."""

    degradation: str | None = None
    dust_p: float = 0.5


@dataclass
class VAE2DataSchema(PhotoDataSchema):
    """``VAE2DataModule``: clean photos."""

    _target_: str = "revive.data.datamodules.VAE2DataModule"
    gray_p: float = 0.1


@dataclass
class VAE1DataSchema(PhotoDataSchema):
    """``VAE1DataModule``: real old photos (or a stand-in) and synthetic ones."""

    _target_: str = "revive.data.datamodules.VAE1DataModule"
    real_dir: str | None = None
    degradation: str = "official"
    real_standin: str = "rstandin"
    gray_p: float = 0.1


@dataclass
class MappingDataSchema(PhotoDataSchema):
    """``MappingDataModule``: paired degraded / clean crops with the damage mask."""

    _target_: str = "revive.data.datamodules.MappingDataModule"
    degradation: str = "official"
    holes: bool = False
    gray_p: float = 0.1


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
    channels_last: bool = True
    torch_compile: bool = False


@dataclass
class VAENetSchema:
    """``revive.nets.vae.VAE`` arguments."""

    in_channels: int = 3
    out_channels: int = 3
    ngf: int = 64
    mc: int = 64
    learned_variance: bool = False
    norm: str = "instance"


@dataclass
class PatchDSchema:
    """``revive.nets.discriminators.MultiscaleDiscriminator`` arguments (without in_channels)."""

    ndf: int = 64
    n_layers: int = 3
    num_scales: int = 2
    spectral_norm: bool = False


@dataclass
class LatentDSchema:
    """The latent discriminator: one PatchGAN scale on the 64-channel latent."""

    ndf: int = 64
    n_layers: int = 3


@dataclass
class VAEModelSchema:
    """``revive.models.vae.VAEModule`` arguments."""

    _target_: str = "revive.models.vae.VAEModule"
    _convert_: str = "all"
    net: VAENetSchema = field(default_factory=VAENetSchema)
    image_d: PatchDSchema = field(default_factory=PatchDSchema)
    latent_d: LatentDSchema = field(default_factory=LatentDSchema)
    latent_gan: bool = False
    variational: bool = True
    weights: dict[str, float] = field(default_factory=dict)
    l1_if_no_vgg: float = 0.0
    vgg_weights: str | None = None
    vgg_on_missing: str = "error"
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    epochs_constant: int = 100
    epochs_decay: int = 100
    channels_last: bool = True
    torch_compile: bool = False
    init_from: str | None = None


@dataclass
class MappingNetSchema:
    """The mapping network: ``kind`` and the arguments of ``revive.nets.mapping``'s classes."""

    kind: str = "quality"
    channels: int = 512
    n_blocks: int = 6
    global_branch: bool = True
    use_mask: bool = True
    mask_downsample: str = "official"
    norm: str = "instance"
    residual: bool = False


@dataclass
class MappingModelSchema:
    """``revive.models.mapping.MappingModule`` arguments."""

    _target_: str = "revive.models.mapping.MappingModule"
    _convert_: str = "all"
    mapping: MappingNetSchema = field(default_factory=MappingNetSchema)
    vae1_ckpt: str | None = None
    vae2_ckpt: str | None = None
    image_d: PatchDSchema = field(default_factory=PatchDSchema)
    end_to_end: bool = False
    image_space: bool = False
    vae_net: VAENetSchema = field(default_factory=VAENetSchema)
    weights: dict[str, float] = field(default_factory=dict)
    l1_if_no_vgg: float = 0.0
    vgg_weights: str | None = None
    vgg_on_missing: str = "error"
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    betas: list[float] = field(default_factory=lambda: [0.0, 0.9])
    epochs_constant: int = 150
    epochs_decay: int = 100
    channels_last: bool = True
    torch_compile: bool = False


SCHEMAS = {
    ("data", "scratch_schema"): ScratchDataSchema,
    ("data", "vae1_schema"): VAE1DataSchema,
    ("data", "vae2_schema"): VAE2DataSchema,
    ("data", "mapping_schema"): MappingDataSchema,
    ("model", "scratch_schema"): ScratchModelSchema,
    ("model", "vae_schema"): VAEModelSchema,
    ("model", "mapping_schema"): MappingModelSchema,
}


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    for (group, name), node in SCHEMAS.items():
        store.store(group=group, name=name, node=node)


@dataclass
class SRDataSchema(PhotoDataSchema):
    """``revive.data.sr.SRDataModule``: reference-based SR samples (crop_size = HR crop)."""

    _target_: str = "revive.data.sr.SRDataModule"
    crop_size: int = 160
    layout: str = "views"
    test_dir: str | None = None
    test_protocol: str = "single"
    ref_level: int = 1


@dataclass
class TTSRNetSchema:
    """``revive.nets.ttsr.TTSR`` arguments (the VGG19 file is the model's ``vgg_weights``)."""

    n_feats: int = 64
    num_res_blocks: list[int] = field(default_factory=lambda: [16, 16, 8, 4])
    res_scale: float = 1.0
    use_csfi: bool = True
    use_hard_attention: bool = True
    use_soft_attention: bool = True
    lte_trainable: bool = True
    search_impl: str = "bounded"
    query_chunk: int = 2048
    key_chunk: int = 4096
    coverage_correct: bool = False
    bicubic_residual: bool = False


@dataclass
class TTSRModelSchema:
    """``revive.models.ttsr.TTSRModule`` arguments."""

    _target_: str = "revive.models.ttsr.TTSRModule"
    _convert_: str = "all"
    net: TTSRNetSchema = field(default_factory=TTSRNetSchema)
    losses: str = "all"
    weights: dict[str, float] = field(default_factory=dict)
    tpl_variant: str = "official"
    vgg_weights: str | None = None
    vgg_on_missing: str = "error"
    lr: float = 1e-4
    lr_lte: float = 1e-5
    lr_d: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    betas_d: list[float] = field(default_factory=lambda: [0.0, 0.9])
    eps: float = 1e-8
    d_steps: int = 2
    gp_weight: float = 10.0
    disc_size: int = 160
    warmup_epochs: int = 0
    lr_decay_epochs: int = 999999
    lr_gamma: float = 0.5
    channels_last: bool = True
    torch_compile: bool = False


SCHEMAS[("data", "sr_schema")] = SRDataSchema
SCHEMAS[("model", "ttsr_schema")] = TTSRModelSchema
