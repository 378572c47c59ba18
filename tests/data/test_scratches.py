"""Scratch / dust / crease overlays: the mask is exactly the changed pixels, and seeding works."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from revive.data.scratches import AddCreases, AddDust, AddScratches

TRANSFORMS = {
    "scratches": lambda: AddScratches(num_scratches=(3, 6), p=1.0),
    "cracks": lambda: AddScratches(kinds=("crack",), num_scratches=(2, 4), p=1.0),
    "dust": lambda: AddDust(num_specks=(20, 40), p=1.0),
    "creases": lambda: AddCreases(p=1.0),
}
WHITE = {np.uint8: 255, np.uint16: 65535, np.float32: 1.0}


def make_image(shape: tuple[int, ...], dtype: type, seed: int = 0) -> np.ndarray:
    """A textured test image in the dtype's full range (mid-gray plus noise)."""
    rng = np.random.default_rng(seed)
    x = np.clip(0.5 + 0.25 * rng.standard_normal(shape), 0, 1)
    if dtype is np.float32:
        return x.astype(np.float32)
    return np.rint(x * WHITE[dtype]).astype(dtype)


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a != b
    return d.any(axis=-1) if d.ndim == 3 else d


@pytest.mark.parametrize("name", TRANSFORMS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(64, 80), (64, 80, 1), (64, 80, 3)])
def test_mask_is_exactly_the_changed_pixels(name, dtype, shape):
    img = make_image(shape, dtype)
    compose = A.Compose([TRANSFORMS[name]()], seed=11)
    out = compose(image=img, mask=np.zeros((64, 80), np.uint8))
    assert out["image"].shape == img.shape and out["image"].dtype == img.dtype
    assert out["mask"].dtype == np.uint8 and set(np.unique(out["mask"])) <= {0, 1}
    diff = changed(img, out["image"])
    assert diff.any(), "the overlay changed nothing"
    np.testing.assert_array_equal(out["mask"].astype(bool), diff)


def test_unchanged_drawn_pixels_are_not_marked():
    # a white image under bright, opaque scratches: drawn pixels that stay white are not damage
    img = np.full((64, 64, 3), 255, np.uint8)
    t = AddScratches(bright=(1.0, 1.0), p_bright=1.0, opacity=(1.0, 1.0), p=1.0)
    out = A.Compose([t], seed=0)(image=img, mask=np.zeros((64, 64), np.uint8))
    assert (out["image"] == 255).all()
    assert out["mask"].sum() == 0


def test_preexisting_mask_is_kept():
    img = make_image((64, 64, 3), np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[:5, :5] = 1
    out = A.Compose([AddDust(p=1.0), AddScratches(p=1.0)], seed=3)(image=img, mask=mask)
    assert out["mask"][:5, :5].all()
    expected = changed(img, out["image"]) | mask.astype(bool)
    np.testing.assert_array_equal(out["mask"].astype(bool), expected)


def _run(compose: A.Compose, n: int = 3) -> list[np.ndarray]:
    img = make_image((64, 64, 3), np.uint8)
    return [compose(image=img, mask=np.zeros((64, 64), np.uint8))["image"] for _ in range(n)]


def _pipeline(seed: int | None = None) -> A.Compose:
    return A.Compose([AddScratches(p=1.0), AddDust(p=1.0), AddCreases(p=1.0)], seed=seed)


def test_same_compose_seed_reproduces_and_calls_differ():
    a, b = _run(_pipeline(seed=5)), _run(_pipeline(seed=5))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], a[1])


def test_set_random_seed_reproduces_and_different_seeds_differ():
    c = _pipeline()
    c.set_random_seed(1)
    first = _run(c)
    c.set_random_seed(2)
    other = _run(c)
    c.set_random_seed(1)
    again = _run(c)
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(first[0], other[0])


def test_to_dict_from_dict_round_trip():
    c = A.Compose(
        [
            AddScratches(num_scratches=(2, 3), width=(1, 2), kinds=("line", "crack"), p=0.9),
            AddDust(num_specks=(7, 9), p=0.8),
            AddCreases(num_creases=(1, 1), p=0.7),
        ],
        seed=4,
    )
    restored = A.from_dict(A.to_dict(c))
    scratches, dust, creases = restored.transforms
    assert isinstance(scratches, AddScratches) and scratches.kinds == ("line", "crack")
    assert scratches.num_scratches == (2, 3) and scratches.p == 0.9
    assert dust.num_specks == (7, 9) and creases.num_creases == (1, 1)
    c.set_random_seed(9)
    restored.set_random_seed(9)
    for x, y in zip(_run(c), _run(restored)):
        np.testing.assert_array_equal(x, y)


def test_bad_options_are_rejected_with_the_option_name():
    with pytest.raises(ValueError, match="kinds"):
        AddScratches(kinds=("zigzag",))
    with pytest.raises(ValueError, match="width"):
        AddScratches(width=(4, 1))
