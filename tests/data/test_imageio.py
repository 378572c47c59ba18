"""Robust image reading: good files load right, bad ones are reported with a reason."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from revive.data.imageio import (
    ImageReadError,
    _orient,
    list_images,
    read_image,
    scan_images,
)


def pattern(h: int, w: int) -> np.ndarray:
    """An asymmetric RGB pattern, so flips and rotations are visible."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[:4, :4] = (255, 0, 0)
    return img


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder of good and bad images, one of each kind a user's photo folder might hold."""
    good = pattern(48, 64)
    Image.fromarray(good).save(tmp_path / "plain.png")

    buf = (tmp_path / "plain.png").read_bytes()
    corrupt = bytearray(buf)
    corrupt[60:200] = b"\x00" * 140  # inside IDAT: the header still parses
    (tmp_path / "corrupt.png").write_bytes(bytes(corrupt))
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not a photo, just text\n")
    (tmp_path / "readme.txt").write_text("ignored: not an image extension\n")

    Image.fromarray(pattern(96, 128)).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "truncated.JPG").write_bytes(data[: len(data) // 2])

    gray16 = (np.arange(48 * 64).reshape(48, 64) * 21 % 65536).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "gray16.png")
    bgr16 = (np.arange(48 * 64 * 3).reshape(48, 64, 3) * 7 % 65536).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "color16.png"), bgr16)

    Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., 2] = 255
    rgba[:, 32:, 3] = 255  # left half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    (tmp_path / "sub").mkdir()
    Image.fromarray(pattern(20, 40)).save(tmp_path / "sub" / "rotated.jpg", exif=exif)
    Image.fromarray(pattern(20, 20)).save(tmp_path / "small.png")
    return tmp_path


def test_list_images_is_sorted_recursive_and_case_insensitive(folder):
    names = [p.relative_to(folder).as_posix() for p in list_images(folder)]
    assert names == sorted(names)
    assert "truncated.JPG" in names and "sub/rotated.jpg" in names
    assert "readme.txt" not in names
    assert "sub/rotated.jpg" not in [p.name for p in list_images(folder, recursive=False)]


def test_good_files_load_with_the_right_shape_dtype_and_content(folder):
    plain = read_image(folder / "plain.png")
    np.testing.assert_array_equal(plain, pattern(48, 64))

    rotated = read_image(folder / "sub" / "rotated.jpg")
    assert rotated.shape == (40, 20, 3)
    assert rotated[:4, -4:, 0].mean() > 200 and rotated[:4, -4:, 1].mean() < 60  # red corner moved

    gray16 = read_image(folder / "gray16.png")
    assert gray16.dtype == np.uint8 and gray16.shape == (48, 64, 3)
    expected = (np.arange(48 * 64).reshape(48, 64) * 21 % 65536).astype(np.uint16)
    np.testing.assert_array_equal(
        read_image(folder / "gray16.png", keep_16bit=True)[..., 1], expected
    )
    np.testing.assert_array_equal(gray16[..., 0], np.rint(expected / 257).astype(np.uint8))

    bgr16 = (np.arange(48 * 64 * 3).reshape(48, 64, 3) * 7 % 65536).astype(np.uint16)
    color16 = read_image(folder / "color16.png", keep_16bit=True)
    assert color16.dtype == np.uint16
    np.testing.assert_array_equal(color16, bgr16[..., ::-1])
    np.testing.assert_array_equal(
        read_image(folder / "color16.png"), np.rint(bgr16[..., ::-1] / 257).astype(np.uint8)
    )

    cmyk = read_image(folder / "cmyk.jpg")
    assert cmyk.shape == (48, 64, 3) and cmyk.dtype == np.uint8
    assert cmyk[..., 0].mean() > 200 and cmyk[..., 1:].mean() < 60  # C=0, M=Y=255 is red

    rgba = read_image(folder / "rgba.png")
    assert rgba.shape == (48, 64, 3)
    assert (rgba[:, :32] == 255).all()  # transparent: white
    assert (rgba[:, 32:] == (0, 0, 255)).all()


def test_bad_files_raise_with_a_reason(folder):
    reasons = {
        "empty.jpg": "empty",
        "notes.jpg": "not an image",
        "truncated.JPG": "truncated or corrupt",
        "corrupt.png": "truncated or corrupt",
    }
    for name, reason in reasons.items():
        with pytest.raises(ImageReadError, match=reason) as info:
            read_image(folder / name)
        assert info.value.path == folder / name and "\n" not in str(info.value)


def test_pixel_limit_message_says_what_to_do(folder):
    with pytest.raises(ImageReadError) as info:
        read_image(folder / "plain.png", max_pixels=1000)
    assert "is 64x48" in str(info.value) and "raise max_pixels or downscale it" in str(info.value)


def test_scan_splits_good_and_skipped_and_logs_each(folder, caplog):
    with caplog.at_level(logging.WARNING, logger="revive.data.imageio"):
        good, skipped = scan_images(list_images(folder), min_size=32)
    good_names = {p.name for p in good}
    assert good_names == {
        "plain.png",
        "full.jpg",
        "gray16.png",
        "color16.png",
        "cmyk.jpg",
        "rgba.png",
    }
    reasons = {p.name: r for p, r in skipped}
    assert set(reasons) == {
        "corrupt.png",
        "empty.jpg",
        "notes.jpg",
        "truncated.JPG",
        "small.png",
        "rotated.jpg",
    }
    assert "smaller than min_size=32" in reasons["small.png"]
    assert "is 20x40" in reasons["rotated.jpg"]  # the size as displayed, after EXIF rotation
    skip_lines = [r for r in caplog.records if r.getMessage().startswith("Skipping")]
    assert len(skip_lines) == 6
    assert any("6 skipped" in r.getMessage() for r in caplog.records)
    for path in good:
        read_image(path)  # everything scan accepts must read


def test_scan_upscale_small_keeps_small_images(folder):
    good, skipped = scan_images(
        [folder / "small.png", folder / "plain.png"], min_size=32, upscale_small=True
    )
    assert [p.name for p in good] == ["small.png", "plain.png"] and skipped == []


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pil_exif_transpose(orientation):
    img = pattern(6, 10)
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = orientation
    pil.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(pil))
    np.testing.assert_array_equal(_orient(img, orientation), expected)
