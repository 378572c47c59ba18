"""Clusters: the SLURM preset's rank layout, 2 submitit tasks as one DDP job, requeue and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from omegaconf import OmegaConf

from revive.utils.cluster import cluster_plugins, requeued_checkpoint
from revive.utils.wandb_offline import find_runs, read_run
from tests.conftest import BIN, compose_cfg, run_cli

TINY_SCRATCH = [
    "experiment=bopb/scratch_small",
    "model.net.wf=2",
    "model.net.depth=2",
    "data.crop_size=32",
    "data.batch_size=4",
    "data.train_length=8",
    "data.val_length=4",
    "extras.print_config=false",
    "trainer.log_every_n_steps=1",
    "test=false",
]
FAKE_SLURM = {
    "SLURM_NTASKS": "1",
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NAME": "revive",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_NODELIST": "localhost",
}


def test_slurm_preset_starts_one_task_per_device_on_every_node(tmp_path: Path) -> None:
    overrides = ["hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2"]
    cfg = compose_cfg("train", overrides, tmp_path)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.nodes == cfg.trainer.num_nodes == 2
    assert launcher.tasks_per_node == launcher.gpus_per_node == cfg.trainer.devices == 4
    assert launcher.signal_delay_s > 0  # the requeue signal comes before the time limit
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.sync_batchnorm is True


def test_slurm_environment_takes_the_requeue_signal_from_submitit(tmp_path, monkeypatch) -> None:
    for key, value in FAKE_SLURM.items():
        monkeypatch.setenv(key, value)
    previous = signal.signal(signal.SIGUSR2, lambda *_: None)  # as submitit's handler
    try:
        (env,) = cluster_plugins(OmegaConf.create({"devices": 1, "num_nodes": 1}))
        assert isinstance(env, SLURMEnvironment) and env.auto_requeue
        assert env.requeue_signal == signal.SIGUSR2  # the signal submitit asks SLURM for
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL  # free for Lightning's handler
        # 1 task for 2 devices: srun did not start the ranks, Lightning must (no requeue then)
        assert cluster_plugins(OmegaConf.create({"devices": 2, "num_nodes": 1})) is None
    finally:
        signal.signal(signal.SIGUSR2, previous)

    assert requeued_checkpoint(tmp_path) is None  # a fresh job
    (tmp_path / "checkpoints").mkdir()
    last, hpc = tmp_path / "checkpoints" / "last.ckpt", tmp_path / "hpc_ckpt_1.ckpt"
    hpc.write_bytes(b"")
    last.write_bytes(b"")
    os.utime(hpc, (time.time() - 60, time.time() - 60))
    assert requeued_checkpoint(tmp_path) == str(last)  # the newest of the two
    os.utime(last, (time.time() - 120, time.time() - 120))
    assert requeued_checkpoint(tmp_path) == str(hpc)
    monkeypatch.delenv("SLURM_NTASKS")
    assert requeued_checkpoint(tmp_path) is None  # off SLURM, only ckpt_path resumes


@pytest.mark.slow
def test_submitit_local_two_tasks_train_one_ddp_job(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_cli(
        "revive-train",
        [
            "-m",
            "hydra/launcher=local_ddp",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.sync_batchnorm=false",  # SyncBatchNorm needs GPUs
            *TINY_SCRATCH,
            "trainer.max_epochs=1",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir()) == [".submitit", "0", "multirun.yaml"]
    assert not (tmp_path / "logs").exists()  # no second (phantom) output dir
    (job,) = [p for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]  # one job

    def task_log(rank: int) -> str:
        return "".join((job / f"{job.name}_{rank}_log.{s}").read_text() for s in ("out", "err"))

    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in task_log(0)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in task_log(1)
    # 8 crops, global batch 4 over 2 ranks: 2 steps of 2 crops on each rank
    last = torch.load(sweep / "0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2
    assert len(find_runs(sweep)) == 1  # rank 0 alone logs to W&B


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"training ended before {path.name} appeared"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.05)


@pytest.mark.slow
def test_preempted_slurm_job_requeues_and_resume_continues_the_wandb_run(tmp_path: Path) -> None:
    run_dir, marker = tmp_path / "run", tmp_path / "scontrol.txt"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {marker}\n')
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {**os.environ, **FAKE_SLURM, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    args = [str(BIN / "revive-train"), *TINY_SCRATCH, f"hydra.run.dir={run_dir}"]

    # 1. the job gets the time-limit signal mid-training: Lightning checkpoints and requeues it
    proc = subprocess.Popen(
        [*args, "trainer.max_epochs=6"], cwd=tmp_path, env=slurm,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(run_dir / "checkpoints" / "last.ckpt", proc)
        proc.send_signal(signal.SIGUSR2)
        wait_for(marker, proc)  # written after the checkpoint
        proc.send_signal(signal.SIGTERM)  # then SLURM stops the job
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert marker.read_text().split() == ["requeue", "4242"]
    assert (run_dir / "hpc_ckpt_1.ckpt").is_file()
    (first_run,) = find_runs(run_dir)
    run_id = read_run(first_run, wait=0)["run_id"]

    # 2. the requeued job runs the same command in the same folder and finishes the schedule
    requeued = subprocess.run(
        [*args, "trainer.max_epochs=6"], cwd=tmp_path, env=slurm, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert "Requeued SLURM job: resuming from" in requeued.stdout + requeued.stderr
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 12  # 6 epochs x 2 steps

    # 3. ckpt_path=last continues it again (off SLURM): more steps, the same W&B run
    resumed = run_cli(
        "revive-train",
        [*TINY_SCRATCH, f"hydra.run.dir={run_dir}", "trainer.max_epochs=7", "ckpt_path=last"],
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(last, weights_only=True)["global_step"] == 14

    runs = [read_run(r, wait=0) for r in find_runs(run_dir)]  # oldest first (timestamped)
    assert len(runs) == 3 and {r["run_id"] for r in runs} == {run_id}
    steps = [
        [h["trainer/global_step"] for h in r["history"] if "trainer/global_step" in h] for r in runs
    ]
    assert steps[1][0] > 0 and max(steps[1]) == 12  # the requeued run did not start over
    assert min(steps[2]) >= 12 and max(steps[2]) == 14
