"""revive-convert bopbtl: an official-shaped release converts in one go and restores a photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from revive.convert.bopbtl import OFFICIAL_RELEASE
from revive.pipelines.restore import OldPhotoRestorer
from tests.conftest import run_cli
from tests.convert.test_convert_bopbtl import ANCHORS, official_state

pytestmark = pytest.mark.skipif(not ANCHORS.is_dir(), reason="shared/anchors not beside the repo")

ANCHOR_OF = {
    "vae_a_quality": "bopbtl_vaeA_G_keys.txt",
    "vae_b_scratch": "bopbtl_vaeB_G_keys.txt",
    "mapping_scratch": "bopbtl_mapping_scratch_keys.txt",
}


def official_release(root: Path) -> Path:
    """The official layout with random weights: the detector and the scratch restorer's files."""
    for seed, (name, anchor) in enumerate(ANCHOR_OF.items()):
        path = root / OFFICIAL_RELEASE[name].path
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(official_state(anchor, seed), path)
    detection = root / OFFICIAL_RELEASE["detection"].path
    detection.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_state": official_state("bopbtl_detection_unet_keys.txt")}, detection)
    return root


def test_release_converts_in_one_go_and_restores(tmp_path: Path) -> None:
    src, dst = official_release(tmp_path / "official"), tmp_path / "converted"
    result = run_cli("revive-convert", ["bopbtl", str(src), str(dst)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert {p.name for p in dst.iterdir()} == {"detector.ckpt", "mapping_scratch.ckpt"}
    for ckpt in dst.iterdir():
        torch.load(ckpt, weights_only=True)  # plain tensors and values only

    restorer = OldPhotoRestorer.from_dir(dst)
    photo = np.random.default_rng(0).integers(0, 256, (36, 52, 3), dtype=np.uint8)
    restored, mask = restorer.restore(photo)
    assert restored.shape == photo.shape and mask.shape == photo.shape[:2]

    # the converted mapping equals the official weights, key for key
    official = torch.load(src / OFFICIAL_RELEASE["mapping_scratch"].path, weights_only=True)
    ours = restorer.scratch_mapping.mapping.state_dict()
    assert sum(v.numel() for v in ours.values()) == sum(v.numel() for v in official.values())


def test_a_folder_without_the_release_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli(
        "revive-convert", ["bopbtl", str(tmp_path), str(tmp_path / "out")], cwd=tmp_path
    )
    assert result.returncode == 2
    assert "Global/checkpoints" in result.stderr
