"""An ablation preset as a study: one multirun, grouped and tagged W&B runs, then the study table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from experiments.gather import gather
from revive.config import CONF_DIR
from revive.utils.wandb_offline import find_runs, read_run
from tests.conftest import run_cli

TINY_VAE1 = [
    "model.net.ngf=8",
    "model.net.mc=8",
    "model.image_d.ndf=4",
    "model.image_d.n_layers=2",
    "model.image_d.num_scales=1",
    "model.latent_d.ndf=4",
    "data.crop_size=32",
    "data.batch_size=4",
    "data.train_length=8",
    "data.val_length=4",
    "extras.print_config=false",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
]
METRICS = ["val/psnr", "val/latent_mmd", "test/psnr"]


def test_every_ablation_preset_declares_its_study() -> None:
    presets = sorted((CONF_DIR / "experiment" / "ablation").glob("*.yaml"))
    assert len(presets) >= 12
    for path in presets:
        cfg = yaml.safe_load(path.read_text())
        switches = cfg["hydra"]["sweeper"]["params"]
        assert switches and all("," in str(v) for v in switches.values()), path.name
        assert cfg["logger"]["wandb"]["group"] == f"ablation_{path.stem}"
        assert path.stem in cfg["hydra"]["sweep"]["dir"]
        # a tag per switch names its value, so every run of the study is told apart in W&B
        for key in switches:
            assert any("${" + key + "}" in tag for tag in cfg["tags"]), (path.name, key)


@pytest.mark.slow
def test_ablation_multirun_gives_grouped_runs_and_a_study_table(
    tmp_path: Path, monkeypatch
) -> None:
    # as a user runs it: no WANDB_MODE and no login, so revive decides to log offline
    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    sweep = tmp_path / "sweep"
    result = run_cli(
        "revive-train",
        ["-m", "experiment=ablation/bopb_latent_d", *TINY_VAE1, f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]

    runs = {}
    for job in ("0", "1"):
        (run_dir,) = find_runs(sweep / job)
        run = read_run(run_dir)
        runs[job] = run
        assert run["group"] == "ablation_bopb_latent_d"
        assert run["config"]["model"]["latent_gan"] == (job == "0")  # the config is logged
        assert any("val/latent_mmd" in row for row in run["history"])
        assert list((sweep / job / "images").glob("epoch_*.png"))  # the image grids
        # the per-run table of final metrics
        (table_file,) = run_dir.glob("files/media/table/final/metrics_*.table.json")
        table = json.loads(table_file.read_text())
        assert table["columns"] == ["metric", "value"]
        assert "test/psnr" in [row[0] for row in table["data"]]
    assert "latent_gan=True" in runs["0"]["tags"] and "latent_gan=False" in runs["1"]["tags"]
    assert {"ablation", "bopb", "latent_d"} <= set(runs["0"]["tags"])
    assert runs["0"]["run_id"] != runs["1"]["run_id"]

    studied = gather([sweep], METRICS, tmp_path / "study", source="wandb")
    table = (tmp_path / "study" / "table.md").read_text().splitlines()
    assert table[0] == "| run | group | val/psnr | val/latent_mmd | test/psnr |"
    assert [r.label for r in studied] == ["latent_gan=True", "latent_gan=False"]
    assert table[2].startswith("| latent_gan=True | ablation_bopb_latent_d | ")
    last_psnr = [h["val/psnr"] for h in runs["0"]["history"] if "val/psnr" in h][-1]
    assert f"{last_psnr:.4f}" in table[2]
    assert (tmp_path / "study" / "curves.png").stat().st_size > 1000

    from_csv = gather([sweep], METRICS, tmp_path / "study_csv", source="csv")
    assert [r.label for r in from_csv] == ["model.latent_gan=True", "model.latent_gan=False"]
    assert from_csv[0].series["val/psnr"][-1][1] == studied[0].series["val/psnr"][-1][1]
