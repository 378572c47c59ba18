"""revive-degrade on a folder with good and bad files: outputs, masks, contact sheets, exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from revive.cli.degrade import degrade_photos, parse_presets
from revive.config import CONF_DIR


def degrade(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "revive.cli.degrade", *args, "hydra.run.dir=run"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "a.jpg", "b.png"):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / name)
    (folder / "broken.jpg").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    return folder


def test_degrade_folder_writes_copies_masks_sheets_and_reports_bad_files(photos, tmp_path):
    out = tmp_path / "out"
    res = degrade([f"input={photos}", f"output={out}", "preset=[official,paper]", "n=2"], tmp_path)
    assert res.returncode == 1, res.stderr[-2000:]
    names = {p.name for p in out.iterdir()}
    for stem in ("a_jpg", "a_png", "b"):  # a.jpg and a.png would collide: extension appended
        for preset in ("official", "paper"):
            for k in range(2):
                assert f"{stem}_{preset}_{k}.png" in names
                mask = np.asarray(Image.open(out / f"{stem}_{preset}_{k}_mask.png"))
                assert mask.shape == (48, 64) and set(np.unique(mask)) <= {0, 255}
    assert {"contact_sheet_official.png", "contact_sheet_paper.png"} <= names
    sheet = Image.open(out / "contact_sheet_paper.png")
    assert sheet.width > sheet.height  # three photos x (clean + 2 x (degraded, mask)) cells
    skipped = (out / "skipped.txt").read_text()
    assert "broken.jpg is not an image" in skipped and "empty.png is empty" in skipped
    assert "broken.jpg" in res.stderr + res.stdout


def options(**overrides) -> DictConfig:
    """The CLI's options as ``conf/degrade.yaml`` sets them, without Hydra's run folder."""
    cfg = OmegaConf.load(CONF_DIR / "degrade.yaml")
    del cfg["defaults"]
    return OmegaConf.merge(cfg, overrides)


def test_same_seed_reproduces_and_good_folder_exits_zero(photos, tmp_path):
    for bad in ("broken.jpg", "empty.png"):
        (photos / bad).unlink()
    common = {"input": str(photos), "preset": "mild", "n": 1, "seed": 3}
    assert degrade_photos(options(**common, output=str(tmp_path / "x"))) == 0
    assert degrade_photos(options(**common, output=str(tmp_path / "y"))) == 0
    for name in ("a_png_mild_0.png", "b_mild_0_mask.png"):
        a = np.asarray(Image.open(tmp_path / "x" / name))
        b = np.asarray(Image.open(tmp_path / "y" / name))
        np.testing.assert_array_equal(a, b)


def test_embedded_sample_photos_are_the_default_input(tmp_path):
    assert degrade_photos(options(output=str(tmp_path), preset="official", n=1)) == 0
    assert (tmp_path / "astronaut_official_0.png").is_file()
    assert (tmp_path / "contact_sheet_official.png").is_file()


def test_parse_presets():
    assert parse_presets("all") == ["official", "paper", "mild", "severe", "rstandin"]
    assert parse_presets("official, paper") == ["official", "paper"]
    assert parse_presets(["severe"]) == ["severe"]
    with pytest.raises(ValueError, match="vintage"):
        parse_presets("vintage")
