"""Every experiment composes and runs one fast_dev_run step; config mistakes fail by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from revive.cli.train import train
from revive.config import CONF_DIR

EXPERIMENTS = sorted(
    str(p.relative_to(CONF_DIR / "experiment").with_suffix(""))
    for p in (CONF_DIR / "experiment").rglob("*.yaml")
)


def test_experiments_found() -> None:
    assert "bopb/scratch_small" in EXPERIMENTS


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_one_fast_dev_run_step(experiment: str, train_cfg) -> None:
    # paper presets keep their network sizes; only batch and crop shrink to keep the smoke run short
    cfg = train_cfg(
        [f"experiment={experiment}", "debug=fdr", "data.batch_size=2", "data.crop_size=64", "logger=csv"]
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
