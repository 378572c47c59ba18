"""Shared fixtures: compose revive's Hydra configs in-process, and run the CLIs as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from revive.config import CONF_DIR, register_configs

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# tiny, fast settings for any experiment: one process, no workers, short epochs
TINY = [
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "data.num_workers=0",
    "extras.print_config=false",
]


def compose_cfg(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with overrides, as the CLI would, writing to output_dir."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
        cfg.hydra.job.id = "0"
    HydraConfig().set_config(cfg)
    return cfg


@pytest.fixture
def train_cfg(tmp_path: Path):
    """A factory: ``train_cfg(["experiment=...", ...])`` -> composed train config in tmp_path."""

    def make(overrides: list[str]) -> DictConfig:
        return compose_cfg("train", [*TINY, *overrides], tmp_path)

    yield make
    GlobalHydra.instance().clear()


def run_cli(
    name: str, args: list[str], cwd: Path, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run a console script of the installed package (e.g. ``revive-train``) and capture output."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        [str(BIN / name), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def save_stage(module, path: Path) -> Path:
    """Save a LightningModule the way a stage checkpoint stores it (state_dict + hparams)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


TINY_VAE = {"ngf": 8, "mc": 8}
TINY_D = {"ndf": 4, "n_layers": 2, "num_scales": 1}


def make_tiny_stages(root: Path) -> dict[str, Path]:
    """Random-weight tiny detector, VAE1, VAE2 and scratch/quality mappings as stage checkpoints.

    Files carry the names ``revive-restore`` expects, so ``root`` is a checkpoints folder.
    """
    from revive.models.mapping import MappingModule
    from revive.models.scratch import ScratchDetector
    from revive.models.vae import VAEModule

    vae = {"net": TINY_VAE, "image_d": TINY_D, "vgg_on_missing": "disable"}
    paths = {
        "vae1": save_stage(
            VAEModule(**vae, latent_gan=True, latent_d={"ndf": 4}), root / "vae1.ckpt"
        ),
        "vae2": save_stage(VAEModule(**vae), root / "vae2.ckpt"),
        "detector": save_stage(ScratchDetector(net={"depth": 2, "wf": 2}), root / "detector.ckpt"),
    }
    for kind in ("scratch", "quality"):
        mapping = MappingModule(
            mapping={"kind": kind, "channels": 8, "n_blocks": 1},
            vae1_ckpt=str(paths["vae1"]),
            vae2_ckpt=str(paths["vae2"]),
            image_d=TINY_D,
            vgg_on_missing="disable",
        )
        paths[kind] = save_stage(mapping, root / f"mapping_{kind}.ckpt")
    return paths


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: on a shared 2-core box, thread contention costs far more than threads save.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
