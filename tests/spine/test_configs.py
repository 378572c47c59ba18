"""Every experiment composes and runs one fast_dev_run step; config mistakes fail by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from revive.cli.train import train
from revive.config import CONF_DIR
from revive.models.vae import VAEModule
from tests.conftest import TINY_D, make_tiny_stages, save_stage

EXPERIMENTS = sorted(
    str(p.relative_to(CONF_DIR / "experiment").with_suffix(""))
    for p in (CONF_DIR / "experiment").rglob("*.yaml")
)
CHAINS = {"bopb/quickstart"}  # run stages of other experiments; tested in test_quickstart.py


@pytest.fixture(scope="module")
def fake_vgg19(tmp_path_factory) -> Path:
    """A torchvision-format VGG19 features file with constant weights (a few KB on disk)."""
    from revive.nets.vgg import VGG19_FILE, vgg19_features

    features = vgg19_features(None, 37)
    state = {
        f"features.{k}": torch.full((1,), 0.01).expand(v.shape)
        for k, v in features.state_dict().items()
    }
    path = tmp_path_factory.mktemp("hub") / VGG19_FILE
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def stage_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Tiny stage-1 VAEs for the small presets, official-size ones for the paper presets."""
    root = tmp_path_factory.mktemp("stages")
    stages = make_tiny_stages(root)
    for name, latent_gan in (("paper_vae1", True), ("paper_vae2", False)):
        vae = VAEModule(net={}, image_d=TINY_D, latent_gan=latent_gan, vgg_on_missing="disable")
        stages[name] = save_stage(vae, root / f"{name}.ckpt")
    return stages


def needs(experiment: str, fake_vgg19: Path, stages: dict[str, Path]) -> list[str]:
    """Inputs an experiment requires from the user: VGG19 weights, stage-1 checkpoints."""
    cfg = OmegaConf.load(CONF_DIR / "experiment" / f"{experiment}.yaml")
    model = cfg.get("model") or {}
    extra = []
    if model.get("vgg_on_missing") == "error":
        extra.append(f"model.vgg_weights={fake_vgg19}")
    if "mapping" in experiment:
        size = "" if experiment.endswith("_small") else "paper_"
        extra += [
            f"model.vae1_ckpt={stages[size + 'vae1']}",
            f"model.vae2_ckpt={stages[size + 'vae2']}",
        ]
    return extra


def test_experiments_found() -> None:
    assert "bopb/scratch_small" in EXPERIMENTS


@pytest.mark.parametrize("experiment", sorted(set(EXPERIMENTS) - CHAINS))
def test_experiment_runs_one_fast_dev_run_step(
    experiment: str, train_cfg, fake_vgg19, stage_checkpoints
) -> None:
    # paper presets keep their network sizes; only batch and crop shrink to keep the smoke run short
    cfg = train_cfg(
        [
            f"experiment={experiment}",
            "debug=fdr",
            "data.batch_size=2",
            "data.crop_size=64",
            "logger=csv",
            *needs(experiment, fake_vgg19, stage_checkpoints),
        ]
    )
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step >= 1 or objects["trainer"].fast_dev_run
    assert any(k.startswith("train/") for k in metrics), metrics


def test_typo_in_model_option_fails_naming_the_key(train_cfg) -> None:
    with pytest.raises(ConfigCompositionException) as err:
        train_cfg(["model.net.depht=3"])
    assert "depht" in str(err.value.__cause__ or err.value)


def test_wrong_type_fails_naming_the_key(train_cfg) -> None:
    with pytest.raises(ConfigCompositionException) as err:
        train_cfg(["data.batch_size=many"])
    cause = err.value.__cause__
    assert isinstance(cause, ValidationError | ConfigKeyError)
    assert "batch_size" in str(cause)


def test_every_yaml_option_has_a_comment() -> None:
    missing = []
    for path in Path(CONF_DIR).rglob("*.yaml"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            text = line.strip()
            is_option = ":" in text and not text.startswith(("#", "-")) and not text.endswith(":")
            if is_option and "#" not in text and not text.startswith("_target_"):
                missing.append(f"{path.relative_to(CONF_DIR)}:{number}: {text}")
    assert not missing, "options without a comment:\n" + "\n".join(missing)
