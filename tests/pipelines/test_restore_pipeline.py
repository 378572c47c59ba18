"""revive-restore on tiny random-weight stages: outputs, bad files, resume, odd sizes, gray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from revive.pipelines.batch import output_names
from revive.pipelines.restore import OldPhotoRestorer
from tests.conftest import make_tiny_stages, run_cli


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ckpts")
    make_tiny_stages(root)
    return root


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def folder_with_good_and_bad_files(root: Path) -> Path:
    root.mkdir()
    Image.fromarray(photo(37, 50)).save(root / "odd.png")
    Image.fromarray(photo(40, 40, 1)[..., 0]).save(root / "gray.png")
    Image.fromarray(photo(32, 48, 2)).save(root / "a.jpg")
    Image.fromarray(photo(32, 48, 3)).save(root / "a.png")
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.png").write_text("not an image")
    return root


@pytest.mark.parametrize("size", [(37, 50), (16, 16), (61, 23)])
@pytest.mark.parametrize("scratch", ["auto", "off"])
def test_any_size_comes_back_at_its_size(checkpoints, size, scratch) -> None:
    restorer = OldPhotoRestorer.from_dir(checkpoints, scratch=scratch)
    restored, mask = restorer.restore(photo(*size))
    assert restored.shape == (*size, 3) and restored.dtype == np.uint8
    assert (mask is None) == (scratch == "off")
    if mask is not None:
        assert mask.shape == size and set(np.unique(mask)) <= {0, 1}


def test_full_resolution_detection_gives_a_mask_of_the_photo_size(checkpoints) -> None:
    restorer = OldPhotoRestorer.from_dir(checkpoints, detect_short_side=0)
    assert restorer.detect(photo(45, 70)).shape == (45, 70)


def test_a_given_mask_replaces_the_detector_unless_scratch_is_off(checkpoints) -> None:
    image = photo(32, 32, 4)
    given = np.zeros((32, 32), np.uint8)
    given[10:14, :] = 1
    restorer = OldPhotoRestorer.from_dir(checkpoints, scratch="on")
    restored, used = restorer.restore(image, given)
    assert used is given
    assert not np.array_equal(restored, restorer.restore(image, np.zeros_like(given))[0])
    off = OldPhotoRestorer.from_dir(checkpoints, scratch="off")
    assert off.restore(image, given)[1] is None


def test_output_names_never_collide() -> None:
    root = Path("/x")
    names = output_names(
        [root / "a.jpg", root / "a.png", root / "b.png", root / "sub" / "b.png"], root
    )
    assert sorted(names.values()) == ["a_jpg", "a_png", "b", "sub__b"]


def test_cli_restores_good_files_reports_bad_ones_and_resumes(checkpoints, tmp_path) -> None:
    inputs = folder_with_good_and_bad_files(tmp_path / "in")
    out = tmp_path / "out"
    args = [
        f"input={inputs}",
        f"output={out}",
        f"checkpoints={checkpoints}",
        f"hydra.run.dir={tmp_path / 'log'}",
    ]
    first = run_cli("revive-restore", args, cwd=tmp_path)
    assert first.returncode == 1, first.stderr[-2000:]  # some files were skipped
    restored = sorted(p.name for p in (out / "restored").iterdir())
    assert restored == ["a_jpg.png", "a_png.png", "gray.png", "odd.png"]
    assert Image.open(out / "restored" / "odd.png").size == (50, 37)
    report = json.loads((out / "report.json").read_text())
    assert set(report["skipped"]) == {"empty.jpg", "notes.png"}
    assert "index.html" in {p.name for p in out.iterdir()}
    assert 'src="restored/odd.png"' in (out / "index.html").read_text()

    # an interrupted run: one output lost, the rest kept; the rerun redoes only the lost one
    (out / "restored" / "odd.png").unlink()
    kept = (out / "restored" / "gray.png").stat().st_mtime_ns
    second = run_cli("revive-restore", args, cwd=tmp_path)
    assert second.returncode == 1
    report = json.loads((out / "report.json").read_text())
    assert report["done"] == ["odd"] and len(report["resumed"]) == 3
    assert (out / "restored" / "gray.png").stat().st_mtime_ns == kept


def test_a_given_threshold_replaces_the_detectors(checkpoints) -> None:
    image = photo(32, 32, 5)
    stored = OldPhotoRestorer.from_dir(checkpoints)
    low = OldPhotoRestorer.from_dir(checkpoints, threshold=0.01)
    high = OldPhotoRestorer.from_dir(checkpoints, threshold=0.99)
    assert low.threshold == 0.01 and high.threshold == 0.99 and stored.threshold != 0.01
    assert low.detect(image).sum() >= stored.detect(image).sum() >= high.detect(image).sum()
    assert low.detect(image).sum() > high.detect(image).sum()
    with pytest.raises(ValueError, match="threshold=1.5"):
        OldPhotoRestorer.from_dir(checkpoints, threshold=1.5)
