"""The training CLI as a user runs it: multirun, simulated DDP, resume, outputs on disk."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from revive.utils.wandb_offline import find_runs, read_run
from tests.conftest import run_cli

SHORT = [
    "experiment=bopb/scratch_small",
    "model.net.wf=2",
    "model.net.depth=2",
    "data.crop_size=32",
    "data.batch_size=4",
    "data.train_length=8",
    "data.val_length=4",
    "extras.print_config=false",
    "trainer.log_every_n_steps=1",
]


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "version_0" / "metrics.csv") as file:
        return list(csv.DictReader(file))


def test_multirun_writes_two_job_dirs_and_two_wandb_runs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_cli(
        "revive-train",
        [
            "-m",
            *SHORT,
            "trainer.max_epochs=1",
            "test=false",
            "model.lr=0.001,0.002",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    run_ids = set()
    for job in jobs:
        assert (job / "checkpoints" / "last.ckpt").is_file()
        runs = find_runs(job)
        assert len(runs) == 1, runs
        run = read_run(runs[0])
        run_ids.add(run["run_id"])
        assert any("train/loss" in row for row in run["history"])
        assert any("val/iou" in row for row in run["history"])
    assert len(run_ids) == 2


def test_ddp_sim_trains_with_two_processes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_cli(
        "revive-train",
        [
            *SHORT,
            "trainer=ddp_sim",
            "trainer.max_epochs=1",
            "test=false",
            "logger=csv",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert "world_size: 2" in out or "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in out
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    # 8 crops, global batch 4 split over 2 ranks -> 2 steps per epoch on each rank
    assert ckpt["global_step"] == 2


def test_resume_from_last_continues_the_step_count(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    common = [*SHORT, "test=false", "logger=csv", f"hydra.run.dir={run_dir}"]
    first = run_cli("revive-train", [*common, "trainer.max_epochs=1"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    steps_after_one = torch.load(last, weights_only=True)["global_step"]
    assert steps_after_one == 2

    second = run_cli(
        "revive-train", [*common, "trainer.max_epochs=2", "ckpt_path=last"], cwd=tmp_path
    )
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = torch.load(last, weights_only=True)
    assert resumed["global_step"] == 2 * steps_after_one
    steps = [int(r["step"]) for r in metrics_rows(run_dir) if r.get("val/iou")]
    assert steps == sorted(steps) and len(steps) == 2


def test_checkpoint_hyperparameters_are_plain(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_cli(
        "revive-train",
        [*SHORT, "trainer.max_epochs=1", "logger=csv", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
        state = torch.load(ckpt, weights_only=True)  # raises on any pickled object
        assert state["hyper_parameters"]["net"]["wf"] == 2
    assert (run_dir / "config_tree.log").is_file() is False  # print_config=false writes none
    evaluated = run_cli(
        "revive-eval",
        [
            *SHORT[:5],
            f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
            f"hydra.run.dir={tmp_path / 'eval'}",
        ],
        cwd=tmp_path,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    table = (tmp_path / "eval" / "metrics.md").read_text()
    assert "test/iou" in table
