"""revive-sr on a tiny trained-format TTSR checkpoint: odd sizes, folders, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from revive.cli.sr import run
from revive.models.ttsr import TTSRModule
from revive.models.vae import VAEModule
from revive.pipelines.super_resolve import SuperResolver, load_ttsr
from tests.conftest import TINY_D, TINY_VAE, compose_cfg, run_cli, save_stage


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = TTSRModule(
        net={"n_feats": 4, "num_res_blocks": [1, 1, 1, 1]}, losses="rec", vgg_on_missing="disable"
    )
    return save_stage(model, tmp_path_factory.mktemp("ckpt") / "ttsr.ckpt")


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(image: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def run_in_process(tmp_path: Path, overrides: list[str]) -> int:
    cfg = compose_cfg("sr", overrides, tmp_path / "log")
    try:
        return run(cfg)
    finally:
        GlobalHydra.instance().clear()


def test_cli_super_resolves_an_odd_sized_image_and_writes_the_attention_map(checkpoint, tmp_path):
    lr = save(photo(13, 17), tmp_path / "lr.png")
    ref = save(photo(30, 43, 1), tmp_path / "ref.png")  # not a multiple of 4: cropped to 28x40
    out = tmp_path / "out" / "sr.png"
    args = [f"lr={lr}", f"ref={ref}", f"out={out}", f"checkpoint={checkpoint}",
            "attention_map=true", f"hydra.run.dir={tmp_path / 'log'}"]  # fmt: skip
    result = run_cli("revive-sr", args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert Image.open(out).size == (68, 52)  # x4 of 17x13, no padding left over
    attention = np.asarray(Image.open(out.with_name("sr_attention.png")))
    assert attention.shape == (52, 68) and attention.max() > 0


def test_super_resolver_matches_the_model_and_runs_in_bf16(checkpoint) -> None:
    lr, ref = photo(9, 11), photo(24, 20, 1)
    sr, S = SuperResolver.from_checkpoint(checkpoint).super_resolve(lr, ref)
    assert sr.shape == (36, 44, 3) and sr.dtype == np.uint8 and S.shape == (9, 11)
    sr_bf16, _ = SuperResolver.from_checkpoint(checkpoint, "bf16").super_resolve(lr, ref)
    assert np.abs(sr_bf16.astype(int) - sr).mean() < 8


def test_folder_mode_skips_bad_inputs_reports_them_and_exits_1(checkpoint, tmp_path) -> None:
    lr_dir, ref_dir = tmp_path / "lr", tmp_path / "ref"
    save(photo(10, 12), lr_dir / "a.png")
    save(photo(8, 8), lr_dir / "b.png")
    (lr_dir / "notes.png").write_text("not an image")
    save(photo(32, 32, 1), ref_dir / "a.png")
    save(photo(8, 8, 2), ref_dir / "b.png")  # too small for one texture patch
    out = tmp_path / "out"
    code = run_in_process(
        tmp_path, [f"lr={lr_dir}", f"ref={ref_dir}", f"out={out}", f"checkpoint={checkpoint}"]
    )
    assert code == 1
    assert [p.name for p in (out / "sr").iterdir()] == ["a.png"]
    assert Image.open(out / "sr" / "a.png").size == (48, 40)
    skipped = json.loads((out / "report.json").read_text())["skipped"]
    assert set(skipped) == {"b.png", "notes.png"}
    assert "8x8" in skipped["b.png"] and "12x12" in skipped["b.png"]
    assert (out / "index.html").is_file()


def test_too_small_reference_is_one_clear_error(checkpoint, tmp_path, capsys) -> None:
    lr = save(photo(10, 10), tmp_path / "lr.png")
    ref = save(photo(8, 30, 1), tmp_path / "tiny_ref.png")
    code = run_in_process(
        tmp_path,
        [f"lr={lr}", f"ref={ref}", f"out={tmp_path / 'sr.png'}", f"checkpoint={checkpoint}"],
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "tiny_ref.png" in err and "30x8" in err and "12x12" in err


def test_wrong_missing_or_absent_checkpoint_is_refused(tmp_path, capsys) -> None:
    lr = save(photo(10, 10), tmp_path / "lr.png")
    ref = save(photo(16, 16, 1), tmp_path / "ref.png")
    vae = save_stage(VAEModule(net=TINY_VAE, image_d=TINY_D, vgg_on_missing="disable"),
                     tmp_path / "vae2.ckpt")  # fmt: skip
    common = [f"lr={lr}", f"ref={ref}", f"out={tmp_path / 'sr.png'}"]
    cases = {
        f"checkpoint={vae}": ["vae2.ckpt", "another model", "experiment=ttsr"],
        f"checkpoint={tmp_path / 'nope.ckpt'}": ["nope.ckpt", "does not exist"],
        "checkpoint=null": ["checkpoint= is required", "random weights"],
    }
    for option, phrases in cases.items():
        assert run_in_process(tmp_path, [*common, option]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert all(phrase in err for phrase in phrases), err
    assert not (tmp_path / "sr.png").exists()


def test_official_checkpoint_loads_through_the_converter(tmp_path) -> None:
    from tests.convert.test_convert_ttsr import official_state

    path = tmp_path / "TTSR.pt"
    torch.save(official_state("ttsr_checkpoint_keys.txt"), path)
    model = load_ttsr(path)
    assert model.net.sfe.conv_head.out_channels == 64  # the paper's width
    sr, _ = SuperResolver(model).super_resolve(photo(5, 6), photo(16, 16, 1))
    assert sr.shape == (20, 24, 3)


def test_channels_last_inference_gives_the_contiguous_result(checkpoint):
    lr, ref = photo(11, 14, 2), photo(44, 36, 3)
    contiguous = SuperResolver(load_ttsr(checkpoint), channels_last=False)
    channels_last = SuperResolver(load_ttsr(checkpoint), channels_last=True)
    conv = next(m for m in channels_last.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    sr_a, s_a = contiguous.super_resolve(lr, ref)
    sr_b, s_b = channels_last.super_resolve(lr, ref)
    assert np.abs(sr_a.astype(int) - sr_b.astype(int)).max() <= 1  # float rounding only
    np.testing.assert_allclose(s_a, s_b, atol=1e-5)
