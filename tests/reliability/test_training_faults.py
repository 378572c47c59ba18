"""Training faults: SIGKILL and SIGTERM mid-epoch, half-written checkpoints, NaN / Inf losses."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from revive.cli.train import train
from revive.utils.reliability import AtomicCheckpointIO, NonFiniteLossError, NonFiniteLossGuard
from revive.utils.wandb_offline import find_runs, read_run
from tests.conftest import BIN, REPO, TINY, compose_cfg
from tests.reliability.helpers import Snapshot

STEPS_PER_EPOCH = 5  # 20 crops, global batch 4
EPOCHS = 2
COMMON = [
    "trainer.log_every_n_steps=1",
    "test=false",
    "extras.print_config=false",
]
CSV = ["logger=csv"]
SCRATCH = [
    "experiment=bopb/scratch_small",
    "model.net.wf=2",
    "model.net.depth=2",
    "data.crop_size=32",
    "data.batch_size=4",
    "data.train_length=20",
    "data.val_length=4",
    f"trainer.max_epochs={EPOCHS}",
]
EVERY_2_STEPS = [
    "callbacks.model_checkpoint.every_n_epochs=null",
    "+callbacks.model_checkpoint.every_n_train_steps=2",
    "callbacks.model_checkpoint.monitor=null",
]


def train_in_process(
    run_dir: Path, overrides: list[str], model: list[str] = SCRATCH, logger: list[str] = CSV
):
    """``revive-train`` in this process; returns the trainer."""
    cfg = compose_cfg("train", [*TINY, *COMMON, *logger, *model, *overrides], run_dir)
    try:
        _, objects = train(cfg)
    finally:
        GlobalHydra.instance().clear()
    return objects["trainer"]


def start_stalled_run(run_dir: Path, overrides: list[str], stall_step: int) -> subprocess.Popen:
    """``revive-train`` as a process that will stop before the batch of ``stall_step``."""
    args = [
        *TINY,
        *COMMON,
        *CSV,
        *SCRATCH,
        *overrides,
        f"hydra.run.dir={run_dir}",
        "+callbacks.stall._target_=tests.reliability.helpers.StallAt",
        f"+callbacks.stall.step={stall_step}",
        f"+callbacks.stall.marker={run_dir / 'stalled'}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run_dir.mkdir(parents=True)
    with open(run_dir / "process.log", "w") as out:
        return subprocess.Popen(
            [str(BIN / "revive-train"), *args], cwd=run_dir, env=env, stdout=out, stderr=out
        )


def wait_until_stalled(process: subprocess.Popen, run_dir: Path) -> None:
    deadline = time.monotonic() + 300
    while not (run_dir / "stalled").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail((run_dir / "process.log").read_text()[-3000:])
        time.sleep(0.1)


@pytest.fixture(scope="module")
def stalled_runs(tmp_path_factory):
    """Two runs started at once (they spend most of their time importing): to kill, to stop."""
    root = tmp_path_factory.mktemp("signals")
    runs = {
        "kill": (start_stalled_run(root / "kill", EVERY_2_STEPS, 3), root / "kill"),
        "term": (start_stalled_run(root / "term", [], 3), root / "term"),  # epoch-end saves only
    }
    yield runs
    for process, _ in runs.values():
        if process.poll() is None:
            process.kill()


def global_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


@pytest.fixture(scope="module")
def uninterrupted_steps(tmp_path_factory) -> int:
    trainer = train_in_process(tmp_path_factory.mktemp("uninterrupted"), EVERY_2_STEPS)
    assert trainer.global_step == STEPS_PER_EPOCH * EPOCHS
    return trainer.global_step


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_step_count(
    stalled_runs, uninterrupted_steps
) -> None:
    process, run_dir = stalled_runs["kill"]
    wait_until_stalled(process, run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert global_step(last) == 2  # mid-epoch: step 3 is done, but not saved
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert not list((run_dir / "checkpoints").glob(".*tmp"))

    resumed = train_in_process(run_dir, [*EVERY_2_STEPS, "ckpt_path=last"])
    assert resumed.global_step == uninterrupted_steps
    assert resumed.current_epoch == EPOCHS


def test_sigterm_saves_a_checkpoint_before_exit_and_the_run_resumes(
    stalled_runs, uninterrupted_steps
) -> None:
    process, run_dir = stalled_runs["term"]
    wait_until_stalled(process, run_dir)
    assert not (run_dir / "checkpoints").exists()
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=120)
    log = (run_dir / "process.log").read_text()
    assert "SIGTERM: saving" in log, log[-3000:]
    assert code == 128 + signal.SIGTERM  # not 0: the run did not finish
    # the running batch finishes, then the state is saved: step 4 of 5 in epoch 0
    assert global_step(run_dir / "checkpoints" / "last.ckpt") == 4

    resumed = train_in_process(run_dir, ["ckpt_path=last"])
    assert resumed.global_step == uninterrupted_steps


def test_a_failing_save_keeps_the_previous_checkpoint_and_leaves_no_temp_file(
    tmp_path, monkeypatch
) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    path.parent.mkdir()
    (path.parent / ".last.ckpt.4242.tmp").write_bytes(b"PK")  # a writer killed mid-write
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # litter cleared
    before = path.read_bytes()

    def write_half_then_die(obj, file) -> None:  # noqa: ANN001
        file.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", write_half_then_die)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
    assert io.load_checkpoint(path)["global_step"] == 1


def test_weights_with_nan_are_never_written(tmp_path) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "global_step": 1}, path)
    bad = {"state_dict": {"net.w": torch.tensor([1.0, math.nan])}, "global_step": 2}
    with pytest.raises(ValueError, match=r"net\.w.*previous checkpoint is kept"):
        io.save_checkpoint(bad, path)
    assert global_step(path) == 1


@pytest.mark.parametrize("preset", ["cpu", "gpu", "ddp", "ddp_sim"])
def test_every_trainer_preset_writes_through_the_atomic_checkpoint_io(train_cfg, preset) -> None:
    cfg = train_cfg([f"trainer={preset}"])
    targets = [p._target_ for p in cfg.trainer.plugins]
    assert targets == ["revive.utils.reliability.AtomicCheckpointIO"]


# ---- NaN / Inf ------------------------------------------------------------------------------

VAE2 = [
    "experiment=bopb/vae2_small",
    "model.net.ngf=8",
    "model.net.mc=8",
    "model.image_d.ndf=4",
    "model.image_d.n_layers=2",
    "model.image_d.num_scales=1",
    "data.crop_size=32",
    "data.batch_size=2",
    "data.train_length=12",
    "data.val_length=2",
    "trainer.max_epochs=1",
]
VAE_STEPS_PER_BATCH = 2  # manual optimization: the generator's and the discriminator's step


def poison(attribute: str, step: int, value: str = "nan") -> list[str]:
    return [
        "+callbacks.poison._target_=tests.reliability.helpers.PoisonLoss",
        f"+callbacks.poison.attribute={attribute}",
        f"+callbacks.poison.steps=[{step}]",
        f"+callbacks.poison.value={value}",
    ]


@pytest.mark.parametrize(
    ("model", "attribute", "value", "term", "step"),
    [
        (VAE2, "kl_term", "nan", "train/loss_kl=nan", 4),  # manual optimization, GAN
        (SCRATCH, "loss_fn", "inf", "train/loss=inf", 3),  # automatic optimization
    ],
    ids=["vae2-nan", "scratch-inf"],
)
def test_a_nonfinite_term_stops_the_run_naming_it_and_keeps_the_last_good_checkpoint(
    tmp_path, model, attribute, value, term, step
) -> None:
    wandb = model is VAE2
    with pytest.raises(NonFiniteLossError) as info:
        train_in_process(
            tmp_path,
            [*EVERY_2_STEPS, *poison(attribute, step, value)],
            model,
            logger=["logger=default"] if wandb else CSV,
        )
    message = str(info.value)
    assert term in message and f"at step {step} " in message, message
    assert "last good one" in message and "action=skip" in message

    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] <= step  # written before the bad batch, never after it
    assert all(
        torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point()
    )
    if wandb:  # the event is in the W&B run (offline) with its message
        run = read_run(find_runs(tmp_path)[0])
        assert term in run["summary"]["train/nonfinite_event"]
        assert any(row.get("train/nonfinite_batches") == 1 for row in run["history"])


def test_skip_drops_the_bad_batch_and_training_goes_on(tmp_path) -> None:
    bad, good = 4, 2  # global steps at the start of a poisoned and of a clean batch
    trainer = train_in_process(
        tmp_path,
        [
            "callbacks.nonfinite_guard.action=skip",
            *poison("kl_term", bad),
            "+callbacks.snapshot._target_=tests.reliability.helpers.Snapshot",
            f"+callbacks.snapshot.steps=[{good},{bad}]",
        ],
        VAE2,
    )
    snapshot = next(c for c in trainer.callbacks if isinstance(c, Snapshot))
    guard = next(c for c in trainer.callbacks if isinstance(c, NonFiniteLossGuard))
    unchanged = [torch.equal(a, b) for a, b in zip(snapshot.before[bad], snapshot.after[bad])]
    assert all(unchanged)  # weights and Adam state: the bad batch left no trace
    changed = [torch.equal(a, b) for a, b in zip(snapshot.before[good], snapshot.after[good])]
    assert not all(changed)  # a clean batch does update them
    assert guard.skipped == 1
    assert trainer.global_step == 6 * VAE_STEPS_PER_BATCH  # 12 images / batch 2, none lost
    weights = trainer.lightning_module.state_dict().values()
    assert all(torch.isfinite(w).all() for w in weights if w.is_floating_point())
