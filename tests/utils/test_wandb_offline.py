"""Read back history, summary and config of a real offline W&B run."""

from __future__ import annotations

import os
import time

import pytest
import wandb

from revive.utils.wandb_offline import find_runs, iter_records, read_run


@pytest.fixture
def offline_env(tmp_path, monkeypatch):
    """Keep wandb silent, offline and inside tmp_path (no writes to ~/.config or ~/.cache)."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    return tmp_path


def test_read_offline_run(offline_env):
    save_dir = offline_env / "logs" / "job0"
    save_dir.mkdir(parents=True)
    run = wandb.init(
        mode="offline",
        dir=save_dir,
        project="revive-test",
        group="study",
        tags=["tiny"],
        config={"lr": 1e-4, "model": {"depth": 3}},
    )
    for epoch in range(3):
        run.log({"val/psnr": 20.0 + epoch, "epoch": epoch})
    run.config.update({"seed": 7})
    run.summary["best/psnr"] = 22.0
    run_id = run.id
    run.finish()

    runs = find_runs(offline_env / "logs")
    assert len(runs) == 1 and runs[0].name.endswith(run_id)

    result = read_run(runs[0])
    assert result["run_id"] == run_id and result["exit_code"] == 0
    assert result["group"] == "study" and result["tags"] == ["tiny"]
    assert result["config"] == {"lr": 1e-4, "model": {"depth": 3}, "seed": 7}
    assert [row["val/psnr"] for row in result["history"]] == [20.0, 21.0, 22.0]
    assert [row["_step"] for row in result["history"]] == [0, 1, 2]
    assert result["summary"]["best/psnr"] == 22.0
    assert result["summary"]["epoch"] == 2

    wandb_file = next(runs[0].glob("run-*.wandb"))
    assert read_run(wandb_file)["history"] == result["history"]
    kinds = {record.WhichOneof("record_type") for record in iter_records(wandb_file)}
    assert {"run", "history", "summary"} <= kinds

    # a killed run: cut mid-record, no exit record, file not touched for a minute -> no waiting
    partial = offline_env / "killed" / wandb_file.name
    partial.parent.mkdir()
    data = wandb_file.read_bytes()
    partial.write_bytes(data[: len(data) * 2 // 3])
    os.utime(partial, (time.time() - 60, time.time() - 60))
    start = time.monotonic()
    killed = read_run(partial)
    assert time.monotonic() - start < 1.0
    assert killed["exit_code"] is None and killed["run_id"] == run_id
    assert killed["history"] == result["history"][: len(killed["history"])]


def test_rejects_other_files(tmp_path):
    bogus = tmp_path / "run-x.wandb"
    bogus.write_bytes(b"not a wandb file")
    with pytest.raises(ValueError, match="not a W&B"):
        list(iter_records(bogus))
    with pytest.raises(FileNotFoundError, match="offline-run"):
        read_run(tmp_path / "empty_dir_that_is_missing")
