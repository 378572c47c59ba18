"""revive-eval on tiny checkpoints of every model: tables, per-image rows, conventions, LPIPS."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from revive.cli.eval import evaluate, mask_scores
from revive.metrics.image import psnr_ssim
from revive.models.ttsr import TTSRModule
from tests.conftest import compose_cfg, make_tiny_stages, save_stage

SMALL_DATA = ["data.batch_size=2", "data.val_length=2", "extras.print_config=false"]
CASES = {
    "detector": ("bopb/scratch_small", ["data.crop_size=32"], "scratch"),
    "vae1": ("bopb/vae1_small", ["data.crop_size=32"], "vae"),
    "vae2": ("bopb/vae2_small", ["data.crop_size=32"], "vae"),
    "scratch": ("bopb/mapping_scratch_small", ["data.crop_size=32"], "mapping"),
    "ttsr": ("ttsr/small", ["data.crop_size=32"], "ttsr"),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Random-weight tiny checkpoints of the detector, both VAEs, a mapping and TTSR."""
    root = tmp_path_factory.mktemp("ckpts")
    paths = make_tiny_stages(root)
    torch.manual_seed(0)
    ttsr = TTSRModule(
        net={"n_feats": 4, "num_res_blocks": [1, 1, 1, 1]}, losses="rec", vgg_on_missing="disable"
    )
    paths["ttsr"] = save_stage(ttsr, root / "ttsr.ckpt")
    return paths


def run_eval(tmp_path: Path, stage: str, checkpoints: dict[str, Path], extra=()) -> dict:
    experiment, data, _ = CASES[stage]
    overrides = [f"experiment={experiment}", f"ckpt_path={checkpoints[stage]}", "logger=csv"]
    cfg = compose_cfg("eval", [*overrides, *SMALL_DATA, *data, *extra], tmp_path)
    summary, _ = evaluate(cfg)
    return summary


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path) as file:
        return list(csv.DictReader(file))


@pytest.mark.parametrize("stage", sorted(CASES))
def test_every_model_gets_a_table_and_per_image_rows(tmp_path, stage, checkpoints) -> None:
    summary = run_eval(tmp_path, stage, checkpoints)
    kind = CASES[stage][2]
    (row,) = read_rows(tmp_path / "metrics.csv")
    assert row["model"] == kind and row["checkpoint"] == str(checkpoints[stage])
    per_image = read_rows(tmp_path / "per_image.csv")
    assert int(row["images"]) == len(per_image) == 2
    markdown = (tmp_path / "metrics.md").read_text()
    if kind == "scratch":
        assert {"test/iou", "test/f1", "test/precision", "test/recall"} <= set(summary)
        assert 0.0 <= summary["test/iou"] <= 1.0
        return
    names = {"psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y"}
    assert {f"test/{n}" for n in names} <= set(summary) and names <= set(per_image[0])
    mean = sum(float(r["psnr_y"]) for r in per_image) / len(per_image)
    assert summary["test/psnr_y"] == pytest.approx(mean, rel=1e-5)  # per image, then averaged
    assert "| test/psnr_rgb |" in markdown and "crop_border" in markdown
    assert "LPIPS: skipped" in markdown  # no AlexNet weights in this hub cache
    if stage == "vae1":
        assert {r["group"] for r in per_image} == {"real", "synthetic"}
        assert "test/psnr_y_real" in summary
    if kind in ("mapping", "ttsr"):
        assert "test/psnr_y_input" in summary  # the degraded / bicubic baseline
    if kind == "ttsr":
        assert "crop_border=4" in markdown and "test/psnr_y_ttsr" in summary


def test_sr_conventions_differ_as_documented(tmp_path, checkpoints) -> None:
    summary = run_eval(tmp_path, "ttsr", checkpoints)
    # Y with a border crop, RGB, and the official uint8 convention are three different numbers
    values = {summary[k] for k in ("test/psnr_y", "test/psnr_rgb", "test/psnr_y_ttsr")}
    assert len(values) == 3
    pred, target = torch.rand(1, 3, 24, 24), torch.rand(1, 3, 24, 24)
    assert psnr_ssim(pred, target, "basicsr", 4, True)[0] != psnr_ssim(pred, target)[0]


def test_lpips_column_when_backbone_weights_exist(tmp_path, checkpoints, monkeypatch) -> None:
    import torchvision

    hub = tmp_path / "torch_home"
    (hub / "hub" / "checkpoints").mkdir(parents=True)
    features = torchvision.models.alexnet().features.state_dict()
    state = {f"features.{k}": v for k, v in features.items()}
    torch.save(state, hub / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    monkeypatch.setenv("TORCH_HOME", str(hub))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # follow TORCH_HOME, whatever ran before
    summary = run_eval(tmp_path / "run", "scratch", checkpoints)
    per_image = read_rows(tmp_path / "run" / "per_image.csv")
    assert "test/lpips" in summary and all(float(r["lpips"]) >= 0 for r in per_image)
    assert "LPIPS: alex, backbone" in (tmp_path / "run" / "metrics.md").read_text()


def test_wrong_data_for_the_checkpoint_names_the_fix(tmp_path, checkpoints) -> None:
    cfg = compose_cfg(
        "eval",
        ["experiment=bopb/scratch_small", f"ckpt_path={checkpoints['ttsr']}", *SMALL_DATA],
        tmp_path,
    )
    with pytest.raises(ValueError, match="ttsr checkpoint.*experiment=ttsr/small"):
        evaluate(cfg)


def test_mask_scores_pool_and_empty_images() -> None:
    tp, fp, fn = torch.tensor([2.0, 0.0]), torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    scores = mask_scores(tp, fp, fn)
    assert scores["iou"].tolist() == [0.5, 1.0]  # an empty prediction of an empty mask is right
    assert scores["recall"].tolist() == [1.0, 1.0] and scores["precision"][0] == 0.5
