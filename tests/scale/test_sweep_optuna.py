"""Optuna sweeps: results on disk, a study that resumes from SQLite, DDP ranks from the launcher."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write

from revive.utils.cluster import check_sweep_strategy
from tests.conftest import compose_cfg, run_cli

TINY_TTSR = [
    "hparams_search=ttsr_optuna",
    "experiment=ttsr/small",
    "model.net.n_feats=4",  # a fixed value leaves the search space
    "model.net.num_res_blocks=[1,1,1,1]",
    "data.crop_size=32",
    "data.batch_size=2",
    "data.train_length=4",
    "data.val_length=2",
    "trainer.max_epochs=1",
    "test=false",
    "logger=csv",
    "extras.print_config=false",
]


@pytest.mark.slow
def test_optuna_sweep_writes_results_and_resumes_from_sqlite(tmp_path: Path) -> None:
    first = run_cli(
        "revive-train",
        [*TINY_TTSR, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={tmp_path / 's1'}"],
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    results = yaml.safe_load((tmp_path / "s1" / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"model.lr", "model.weights.tpl"}
    storage = f"sqlite:///{tmp_path / 'logs' / 'optuna_ttsr.db'}"  # the preset's default place
    study = optuna.load_study(study_name="ttsr", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert results["best_value"] == pytest.approx(study.best_value)
    earlier = [t.params for t in study.trials]

    second = run_cli(
        "revive-train",
        [
            *TINY_TTSR,
            "hydra.sweeper.n_trials=1",
            "hydra.sweeper.sampler.seed=7",  # a new seed: no repeat of the first start-up point
            f"hydra.sweep.dir={tmp_path / 's2'}",
        ],
        cwd=tmp_path,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Using an existing study" in second.stdout + second.stderr
    resumed = optuna.load_study(study_name="ttsr", storage=storage)
    assert len(resumed.trials) == 4
    assert [t.params for t in resumed.trials[:3]] == earlier
    assert resumed.trials[3].params not in earlier


def in_multirun(cfg) -> None:
    with read_write(cfg.hydra):
        cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig().set_config(cfg)


def test_lightning_launched_ddp_is_refused_inside_a_sweep(tmp_path: Path) -> None:
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
    cfg = compose_cfg("train", ddp, tmp_path)
    check_sweep_strategy(cfg, None)  # a single run: Lightning's own ddp launch is fine
    in_multirun(cfg)
    with pytest.raises(ValueError, match="hydra/launcher=local_ddp"):
        check_sweep_strategy(cfg, None)
    check_sweep_strategy(cfg, [object()])  # ranks started by the launcher: every rank, one trial

    spawn = compose_cfg("train", ["trainer=ddp_sim"], tmp_path)
    in_multirun(spawn)
    check_sweep_strategy(spawn, None)  # ddp_spawn forks inside the trial's own job
