"""The one-command quickstart: stages chain their checkpoints, finished stages are reused."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.conftest import run_cli

TINY_STAGES = (
    'chain.common_overrides=["trainer.max_epochs=1","data.train_length=8","data.val_length=2",'
    '"data.crop_size=32","extras.print_config=false","logger=csv"]'
)


def test_quickstart_chains_stages_restores_heldback_photos_and_reuses_them(tmp_path: Path) -> None:
    args = [
        "experiment=bopb/quickstart",
        f"paths.log_dir={tmp_path / 'logs'}",
        TINY_STAGES,
        "chain.heldback.crop=64",
        "extras.print_config=false",
    ]
    first = run_cli("revive-train", args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    root = tmp_path / "logs" / "quickstart"
    markers = {
        s: json.loads((root / s / "done.json").read_text())
        for s in ("scratch", "vae1", "vae2", "mapping_scratch")
    }
    # the mapping was built on the VAEs this run trained
    mapping = torch.load(markers["mapping_scratch"]["checkpoint"], weights_only=True)
    assert mapping["hyper_parameters"]["vae1_ckpt"] == markers["vae1"]["checkpoint"]
    assert mapping["hyper_parameters"]["vae2_ckpt"] == markers["vae2"]["checkpoint"]
    vae1 = torch.load(markers["vae1"]["checkpoint"], weights_only=True)
    assert vae1["hyper_parameters"]["init_from"] == markers["vae2"]["checkpoint"]  # VAE1 from VAE2
    assert {p.name for p in (root / "restore_checkpoints").iterdir()} == {
        "detector.ckpt",
        "mapping_scratch.ckpt",
    }
    metrics = json.loads((root / "heldback" / "metrics.json").read_text())
    assert len(metrics["photos"]) == 4 and "psnr_restored" in metrics["mean"]
    assert (root / "heldback" / "index.html").is_file()
    assert len(list((root / "heldback" / "restored").glob("*.png"))) == 4

    stamps = {s: (root / s / "done.json").stat().st_mtime_ns for s in markers}
    second = run_cli("revive-train", args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("already trained") + second.stderr.count("already trained") == 4
    assert {s: (root / s / "done.json").stat().st_mtime_ns for s in markers} == stamps

    # a changed stage config retrains that stage and those fed by it; the old run is kept
    changed = [*args, 'chain.stages.vae1.overrides=["model.lr=1e-4"]']
    third = run_cli("revive-train", changed, cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    assert third.stdout.count("already trained") + third.stderr.count("already trained") == 2
    after = {s: (root / s / "done.json").stat().st_mtime_ns for s in markers}
    assert [s for s in markers if after[s] != stamps[s]] == ["vae1", "mapping_scratch"]
    assert len(list(root.glob("vae1-*/done.json"))) == 1  # the previous VAE1 run, moved aside
    vae1 = torch.load(
        json.loads((root / "vae1" / "done.json").read_text())["checkpoint"], weights_only=True
    )
    assert vae1["hyper_parameters"]["lr"] == 1e-4
