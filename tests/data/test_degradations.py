"""Degradation presets: official ranges, exact masks, seeding, DataLoader workers, dtypes."""

from __future__ import annotations

import io
from collections import defaultdict

import albumentations as A
import numpy as np
import pytest
from PIL import Image

from revive.data.degradations import (
    PRESETS,
    AddHoles,
    Blotches,
    Grayscale,
    JPEGCompression,
    OfficialLowResolution,
    build_degradation,
)


def photo(
    shape: tuple[int, ...] = (48, 64, 3), dtype: type = np.uint8, seed: int = 0
) -> np.ndarray:
    """A smooth gradient with texture, in the dtype's full range."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    base = np.linspace(0.1, 0.9, w)[None, :] * np.linspace(0.5, 1.0, h)[:, None]
    x = base.reshape(h, w, *([1] * (len(shape) - 2))) + 0.1 * rng.standard_normal(shape)
    x = np.clip(x, 0, 1)
    if dtype is np.float32:
        return x.astype(np.float32)
    white = 255 if dtype is np.uint8 else 65535
    return np.rint(x * white).astype(dtype)


def run(compose: A.Compose, img: np.ndarray) -> dict:
    return compose(image=img, mask=np.zeros(img.shape[:2], np.uint8))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(48, 64), (48, 64, 3)])
def test_blotch_mask_is_exactly_the_changed_pixels(dtype, shape):
    img = photo(shape, dtype)
    out = run(A.Compose([Blotches(num_blotches=(2, 3), p=1.0)], seed=2), img)
    diff = img != out["image"]
    diff = diff.any(-1) if diff.ndim == 3 else diff
    assert diff.any()
    np.testing.assert_array_equal(out["mask"].astype(bool), diff)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_holes_are_white_and_masked_exactly(dtype):
    img = photo((64, 64, 3), dtype)
    out = run(A.Compose([AddHoles(p=1.0)], seed=1), img)
    holes = out["mask"].astype(bool)
    white = {np.uint8: 255, np.uint16: 65535, np.float32: 1.0}[dtype]
    assert 0 < holes.mean() < 1
    assert (out["image"][holes] == white).all()
    np.testing.assert_array_equal(out["image"][~holes], img[~holes])


def test_paper_preset_mask_is_the_union_of_the_overlays_changes():
    # overlays run last in "paper"; each reports the pixels it changed, the mask is their union
    compose = build_degradation("paper", seed=0, save_applied_params=True)
    img = photo((64, 64, 3))
    seen = 0
    for _ in range(8):
        out = run(compose, img)
        assert out["mask"].dtype == np.uint8 and set(np.unique(out["mask"])) <= {0, 1}
        union = np.zeros(img.shape[:2], bool)
        for _, params in out["applied_transforms"]:
            if "changed" in params:
                union |= params["changed"]
                seen += 1
        np.testing.assert_array_equal(out["mask"].astype(bool), union)
    assert seen > 0


def drawn_params(n: int = 300) -> tuple[dict[str, list[dict]], list[list[str]]]:
    """Parameters the official preset drew over n calls, by transform name, and call orders."""
    compose = build_degradation("official", seed=123, save_applied_params=True)
    img = photo((40, 30, 3))
    by_name: dict[str, list[dict]] = defaultdict(list)
    orders = []
    for _ in range(n):
        applied = run(compose, img)["applied_transforms"]
        orders.append([name for name, _ in applied])
        for name, params in applied:
            by_name[name].append(params)
    return by_name, orders


def test_official_preset_draws_the_release_ranges():
    n = 300
    by_name, orders = drawn_params(n)

    blur = by_name["OfficialBlur"]
    assert {p["kernel"] for p in blur} == {3, 5, 7}
    sigmas = [p["sigma"] for p in blur]
    assert 1.0 <= min(sigmas) < 1.3 and 4.7 < max(sigmas) <= 5.0

    noise = by_name["OfficialNoise"]
    assert {p["kind"] for p in noise} == {"gaussian", "speckle", "salt_pepper"}
    sig = [p["sigma"] for p in noise if p["kind"] != "salt_pepper"]
    assert 5 / 255 <= min(sig) < 8 / 255 and 45 / 255 < max(sig) <= 50 / 255
    amounts = [p["amount"] for p in noise if p["kind"] == "salt_pepper"]
    ratios = [p["salt_ratio"] for p in noise if p["kind"] == "salt_pepper"]
    assert 0.0 <= min(amounts) and max(amounts) <= 0.01
    assert 0.3 <= min(ratios) and max(ratios) <= 0.8

    lowres = by_name["OfficialLowResolution"]
    widths = {p["size"][0] for p in lowres}
    heights = {p["size"][1] for p in lowres}
    assert widths == set(range(15, 31)) and heights == set(range(20, 41))
    assert {p["upsample"] for p in lowres} == {"nearest", "bilinear"}

    quality = [p["quality"] for p in by_name["JPEGCompression"]]
    assert all(isinstance(q, int) for q in quality)
    assert min(quality) == 40 and max(quality) == 100

    # each task with p=0.7, grayscale with p=0.1 (binomial 5-sigma bounds for n=300)
    for name in ("OfficialBlur", "OfficialNoise", "OfficialLowResolution", "JPEGCompression"):
        assert 0.7 * n - 40 < len(by_name[name]) < 0.7 * n + 40, name
    assert 5 < len(by_name["Grayscale"]) < 60

    # a fresh random order per call: every task comes first sometimes, gray always last
    firsts = {order[0] for order in orders if len(order) >= 4}
    assert firsts >= {"OfficialBlur", "OfficialNoise", "OfficialLowResolution", "JPEGCompression"}
    assert all(order[-1] == "Grayscale" for order in orders if "Grayscale" in order)


def test_jpeg_matches_pil_as_released():
    img = photo((48, 64, 3))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=57)
    buf.seek(0)
    expected = np.asarray(Image.open(buf).convert("RGB"))
    np.testing.assert_array_equal(JPEGCompression().apply(img, quality=57), expected)


def test_grayscale_matches_pil_convert_l():
    img = photo((48, 64, 3))
    expected = np.asarray(Image.fromarray(img).convert("L").convert("RGB"))
    np.testing.assert_array_equal(Grayscale().apply(img), expected)


def test_low_resolution_matches_pil_as_released():
    img = photo((48, 64, 3))
    pil = Image.fromarray(img).resize((40, 30), Image.BICUBIC).resize((64, 48), Image.BILINEAR)
    out = OfficialLowResolution().apply(img, size=(40, 30), upsample="bilinear")
    np.testing.assert_array_equal(out, np.asarray(pil))


@pytest.mark.parametrize("preset", PRESETS)
def test_same_seed_reproduces(preset):
    img = photo((48, 48, 3))
    c1, c2 = (
        build_degradation(preset, holes=True, seed=9),
        build_degradation(preset, holes=True, seed=9),
    )
    first = [run(c1, img) for _ in range(4)]
    second = [run(c2, img) for _ in range(4)]
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["mask"], y["mask"])
    assert any(not np.array_equal(x["image"], first[0]["image"]) for x in first[1:])


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((40, 48), np.uint8),
        ((40, 48, 1), np.uint8),
        ((40, 48, 3), np.uint16),
        ((40, 48, 3), np.float32),
    ],
)
def test_presets_keep_shape_and_dtype(preset, shape, dtype):
    compose = build_degradation(preset, holes=True, seed=0)
    img = photo(shape, dtype)
    for _ in range(4):
        out = run(compose, img)
        assert out["image"].shape == shape and out["image"].dtype == dtype
        assert out["mask"].shape == shape[:2] and out["mask"].dtype == np.uint8


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_serialises(preset):
    compose = build_degradation(preset, holes=True, seed=4)
    restored = A.from_dict(A.to_dict(compose))
    restored.set_random_seed(4)
    compose.set_random_seed(4)
    img = photo((40, 40, 3))
    for _ in range(3):
        np.testing.assert_array_equal(run(compose, img)["image"], run(restored, img)["image"])


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(ValueError, match="official, paper, mild, severe, rstandin"):
        build_degradation("vintage")
