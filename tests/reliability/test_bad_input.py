"""Bad input: the restore, SR and degrade CLIs over a folder of every kind of broken or odd file;
one-line errors for wrong references and checkpoints; config mistakes caught before any work."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from PIL import Image

from revive.cli import degrade, restore, sr
from revive.cli.train import train
from revive.models.ttsr import TTSRModule
from revive.models.vae import VAEModule
from revive.pipelines.batch import inside, output_names
from revive.pipelines.restore import OldPhotoRestorer
from revive.pipelines.super_resolve import SuperResolver
from tests.conftest import TINY_D, TINY_VAE, compose_cfg, make_tiny_stages, save_stage


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(image: np.ndarray, path: Path, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, **options)
    return path


def png_claiming(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's header)."""
    save(photo(8, 8), path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


# file -> the reason it is skipped with (None: processed)
FILES: dict[str, str | None] = {
    "good.png": None,
    "a.jpg": None,  # with a.png: both keep their extension in the output name
    "a.png": None,
    "sub/a.png": None,  # and sub__a.png: would collide once flattened
    "sub__a.png": None,
    "cmyk.jpg": None,
    "deep16.png": None,
    "alpha.png": None,
    "rotated.jpg": None,  # EXIF orientation 6: stored 32x20, shown 20x32
    "tiny.png": None,  # 3x2: revive-restore refuses it (below its minimum), the others work
    "corrupt.png": "truncated or corrupt",
    "truncated.jpg": "truncated or corrupt",
    "empty.png": "is empty (0 bytes)",
    "notes.jpg": "is not an image",
    "huge.png": "is 100000x100000 = 10000.0 MP, over the limit max_pixels=64000000",
    "sub/empty.png": "is empty (0 bytes)",  # listed under its path: two empty.png, two entries
}
SHOWN = {  # output stem -> (height, width) of the input as displayed
    "good": (24, 32),
    "a_jpg": (24, 32),
    "a_png": (24, 32),
    "sub__a_png": (24, 32),
    "sub__a_png_2": (24, 32),
    "cmyk": (24, 32),
    "deep16": (24, 32),
    "alpha": (24, 32),
    "rotated": (32, 20),
    "tiny": (2, 3),
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for i, name in enumerate(["good.png", "a.jpg", "a.png", "sub/a.png", "sub__a.png"]):
        save(photo(24, 32, i), root / name)
    Image.new("CMYK", (32, 24), (0, 255, 255, 0)).save(root / "cmyk.jpg")
    cv2.imwrite(
        str(root / "deep16.png"),
        (np.arange(24 * 32 * 3) * 83 % 65536).astype(np.uint16).reshape(24, 32, 3),
    )
    rgba = np.zeros((24, 32, 4), np.uint8)
    rgba[..., 2], rgba[:, 16:, 3] = 255, 255  # left half transparent
    Image.fromarray(rgba, "RGBA").save(root / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    save(photo(20, 32, 5), root / "rotated.jpg", exif=exif)
    save(photo(2, 3, 6), root / "tiny.png")
    good = (root / "good.png").read_bytes()
    (root / "corrupt.png").write_bytes(good[:60] + b"\0" * 140 + good[200:])
    save(photo(64, 64, 7), root / "full.jpg", quality=90)
    (root / "truncated.jpg").write_bytes((root / "full.jpg").read_bytes()[:1000])
    (root / "full.jpg").unlink()
    (root / "empty.png").write_bytes(b"")
    (root / "sub" / "empty.png").write_bytes(b"")
    (root / "notes.jpg").write_text("a shopping list, not a photo")
    png_claiming(root / "huge.png", 100_000, 100_000)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.*")) == sorted(FILES)
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ckpts")
    make_tiny_stages(root)
    torch.manual_seed(0)
    ttsr = TTSRModule(
        net={"n_feats": 4, "num_res_blocks": [1, 1, 1, 1]}, losses="rec", vgg_on_missing="disable"
    )
    save_stage(ttsr, root / "ttsr.ckpt")
    vae = VAEModule(net=TINY_VAE, image_d=TINY_D, vgg_on_missing="disable")
    save_stage(vae, root / "wrong" / "vae2.ckpt")
    return root


def run_in_process(main: Callable, config: str, overrides: list[str], tmp_path: Path) -> int:
    """A CLI's ``run(cfg)`` in this process, configured as on the command line."""
    cfg = compose_cfg(config, overrides, tmp_path / "log")
    try:
        return main(cfg)
    finally:
        GlobalHydra.instance().clear()


def from_report(out: Path, main_output: str) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """(output stem -> (h, w), skipped file -> reason) of a restore / SR folder run."""
    sizes = {p.stem: np.asarray(Image.open(p)).shape[:2] for p in (out / main_output).glob("*")}
    return sizes, json.loads((out / "report.json").read_text())["skipped"]


def restore_folder(photos: Path, out: Path, checkpoints: Path, tmp_path: Path):
    args = [f"input={photos}", f"output={out}", f"checkpoints={checkpoints}"]
    return run_in_process(restore.run, "restore", args, tmp_path), *from_report(out, "restored")


def sr_folder(photos: Path, out: Path, checkpoints: Path, tmp_path: Path):
    refs = tmp_path / "refs"
    for stem in ("good", "a", "sub__a", "cmyk", "deep16", "alpha", "rotated", "tiny"):
        save(photo(32, 32, 9), refs / f"{stem}.png")
    args = [f"lr={photos}", f"ref={refs}", f"out={out}", f"checkpoint={checkpoints / 'ttsr.ckpt'}"]
    code = run_in_process(sr.run, "sr", args, tmp_path)
    sizes, skipped = from_report(out, "sr")
    return code, {stem: (h // 4, w // 4) for stem, (h, w) in sizes.items()}, skipped


def degrade_folder(photos: Path, out: Path, checkpoints: Path, tmp_path: Path):
    args = [f"input={photos}", f"output={out}", "preset=official", "n=1"]
    code = run_in_process(degrade.run, "degrade", args, tmp_path)
    suffix = "_official_0"
    sizes = {
        p.stem.removesuffix(suffix): np.asarray(Image.open(p)).shape[:2]
        for p in out.glob(f"*{suffix}.png")
    }
    lines = (out / "skipped.txt").read_text().splitlines()
    cut = len(f"  {photos}/")  # lines are "  <path> <reason>"
    skipped = dict(line[cut:].split(" ", 1) for line in lines)
    return code, sizes, skipped


@pytest.mark.parametrize(
    ("cli", "refused"),
    [
        (restore_folder, {"tiny.png": "below the 8x8 minimum"}),
        (sr_folder, {}),
        (degrade_folder, {}),
    ],
    ids=["restore", "sr", "degrade"],
)
def test_good_files_are_processed_bad_ones_listed_and_nothing_written_is_lost(
    photos, checkpoints, tmp_path, cli, refused
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier_notes.txt").write_text("written before this run")
    code, sizes, skipped = cli(photos, out, checkpoints, tmp_path)

    assert code == 1  # some files were skipped
    expected_skips = {name: reason for name, reason in FILES.items() if reason} | refused
    assert set(skipped) == set(expected_skips)
    for name, reason in expected_skips.items():
        assert reason in skipped[name], (name, skipped[name])
        assert "\n" not in skipped[name]
    processed = {stem: hw for stem, hw in SHOWN.items() if f"{stem}.png" not in refused}
    assert sizes == processed  # every good file, at its displayed size, under its own name
    assert (out / "earlier_notes.txt").read_text() == "written before this run"


def test_an_interrupted_folder_run_keeps_its_outputs_and_redoes_only_the_rest(
    photos, checkpoints, tmp_path
) -> None:
    out = tmp_path / "out"
    restore_folder(photos, out, checkpoints, tmp_path)
    kept = {p.name: p.read_bytes() for p in (out / "restored").iterdir()}
    (out / "restored" / "cmyk.png").unlink()  # as if the run had been killed before it
    restore_folder(photos, out, checkpoints, tmp_path)
    report = json.loads((out / "report.json").read_text())
    assert report["done"] == ["cmyk"] and len(report["resumed"]) == len(kept) - 1
    assert {p.name: p.read_bytes() for p in (out / "restored").iterdir()} == kept


def test_output_names_never_collide_and_never_leave_the_output_folder(tmp_path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    inputs = [
        root / name
        for name in ["a.jpg", "a.png", "A.PNG", "a_png.png", "sub/a.png", "sub__a.png", "...png"]
    ]
    inputs += [root / ".." / "up.png", Path("/elsewhere/abs.png")]
    names = output_names(sorted(inputs), root)
    assert len({n.lower() for n in names.values()}) == len(inputs)
    for name in names.values():
        assert inside(out, f"{name}.png").parent == out


@pytest.mark.parametrize("name", ["../x.png", "/abs/x.png", "sub/x.png", ".."])
def test_an_output_name_that_would_escape_is_refused(tmp_path, name) -> None:
    with pytest.raises(ValueError, match="would leave the output folder"):
        inside(tmp_path / "out", name)


# ---- one-line errors ------------------------------------------------------------------------


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    ("case", "phrases"),
    [
        ("small_ref", ["small_ref.png", "is 10x8", "at least 12x12", "larger reference"]),
        ("missing_checkpoint", ["nope.ckpt", "does not exist", "TTSRModule .ckpt"]),
        ("wrong_checkpoint", ["vae2.ckpt", "another model", "experiment=ttsr"]),
        ("no_checkpoint", ["checkpoint= is required", "random weights"]),
    ],
)
def test_sr_errors_are_one_line_naming_the_file_and_the_fix(
    checkpoints, tmp_path, capsys, case, phrases
) -> None:
    lr = save(photo(10, 10), tmp_path / "lr.png")
    small = case == "small_ref"
    ref = save(photo(8, 10, 1) if small else photo(16, 16, 1), tmp_path / f"{case}.png")
    checkpoint = {
        "missing_checkpoint": tmp_path / "nope.ckpt",
        "wrong_checkpoint": checkpoints / "wrong" / "vae2.ckpt",
        "no_checkpoint": None,
    }.get(case, checkpoints / "ttsr.ckpt")
    option = f"checkpoint={checkpoint}" if checkpoint else "checkpoint=null"
    args = [f"lr={lr}", f"ref={ref}", f"out={tmp_path / 'sr.png'}", option]
    assert run_in_process(sr.run, "sr", args, tmp_path) == 2
    err = one_line_error(capsys)
    assert all(phrase in err for phrase in phrases), err
    assert not (tmp_path / "sr.png").exists()


@pytest.mark.parametrize(("lr_hw", "ref_hw"), [((13, 17), (30, 43)), ((1, 1), (12, 13))])
def test_sr_takes_sizes_that_are_not_multiples_of_4(checkpoints, lr_hw, ref_hw) -> None:
    resolver = SuperResolver.from_checkpoint(checkpoints / "ttsr.ckpt")
    out, attention = resolver.super_resolve(photo(*lr_hw), photo(*ref_hw, 1))
    assert out.shape == (4 * lr_hw[0], 4 * lr_hw[1], 3) and attention.shape == lr_hw


@pytest.mark.parametrize(
    ("case", "phrases"),
    [
        ("no_folder", ["checkpoints=", "not a folder", "revive-convert"]),
        (
            "wrong_checkpoint",
            ["mapping_quality.ckpt", "not a mapping checkpoint", "experiment=bopb/mapping"],
        ),
        ("no_input", ["input=", "is not a folder of images"]),
    ],
)
def test_restore_errors_are_one_line_naming_the_file_and_the_fix(
    photos, checkpoints, tmp_path, capsys, case, phrases
) -> None:
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    vae = (checkpoints / "wrong" / "vae2.ckpt").read_bytes()
    (ckpts / "mapping_quality.ckpt").write_bytes(vae)  # a VAE where the mapping should be
    option = {
        "no_folder": f"checkpoints={tmp_path / 'nowhere'}",
        "wrong_checkpoint": f"checkpoints={ckpts}",
    }
    inputs = tmp_path / "missing_photos" if case == "no_input" else photos
    args = [
        f"input={inputs}",
        f"output={tmp_path / 'out'}",
        option.get(case, f"checkpoints={checkpoints}"),
    ]
    assert run_in_process(restore.run, "restore", args, tmp_path) == 2
    err = one_line_error(capsys)
    assert all(phrase in err for phrase in phrases), err
    assert not (tmp_path / "out" / "restored").exists()


# ---- config mistakes, caught before any work -------------------------------------------------

NO_WORK = "the CLI started working before checking its options"


@pytest.fixture
def no_work(monkeypatch):
    """Loading a model or building a degradation fails the test: errors come before any work."""

    def refuse(*args, **kwargs):
        raise AssertionError(NO_WORK)

    monkeypatch.setattr(OldPhotoRestorer, "from_dir", refuse)
    monkeypatch.setattr(SuperResolver, "from_checkpoint", refuse)
    monkeypatch.setattr(degrade, "build_degradation", refuse)


@pytest.mark.parametrize(
    ("cli", "config", "overrides", "key"),
    [
        (restore.run, "restore", ["input=in", "output=out", "max_pixels=many"], "max_pixels"),
        (restore.run, "restore", ["output=out"], "input"),
        (restore.run, "restore", ["input=in", "output=out", "hr=maybe"], "hr"),
        (sr.run, "sr", ["lr=a.png", "ref=b.png", "out=c.png", "query_chunk=1.5"], "query_chunk"),
        (sr.run, "sr", ["ref=b.png", "out=c.png"], "lr"),
        (degrade.run, "degrade", ["n=two"], "n"),
        (degrade.run, "degrade", ["holes=3"], "holes"),
    ],
)
def test_missing_or_mistyped_options_fail_naming_the_key_before_any_work(
    no_work, tmp_path, capsys, cli, config, overrides, key
) -> None:
    assert run_in_process(cli, config, overrides, tmp_path) == 2
    err = one_line_error(capsys)
    assert f"option {key}" in err.lower(), err


@pytest.mark.parametrize("config", ["restore", "sr", "degrade", "train"])
def test_an_unknown_option_fails_naming_it(tmp_path, config) -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(config, ["max_pixles=100"], tmp_path)
    GlobalHydra.instance().clear()
    assert "max_pixles" in str(err.value)


def test_a_missing_stage_checkpoint_is_named_before_training(train_cfg) -> None:
    cfg = train_cfg(["experiment=bopb/mapping_small", "model.vae1_ckpt=null", "logger=csv"])
    with pytest.raises(Exception, match=r"model\.vae1_ckpt is not set"):
        train(cfg)
