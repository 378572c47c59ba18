"""Seeded pipelines give every transform its own random stream (albumentations 2 does not)."""

import albumentations as A
import numpy as np

from revive.data.degradations import build_degradation
from revive.data.seeding import seed_compose
from revive.data.sr import dihedral

OFFICIAL_TASKS = {"OfficialBlur", "OfficialNoise", "OfficialLowResolution", "JPEGCompression"}


def applied(compose: A.Compose, image: np.ndarray) -> set[str]:
    out = compose(image=image, mask=np.zeros(image.shape[:2], np.uint8))
    return {name for name, _ in out["applied_transforms"]}


def test_first_image_after_seeding_draws_the_official_tasks_independently():
    # each task fires with p=0.7: none of the four on 0.3^4 = 0.8 % of images, all four on 24 %
    image = np.full((32, 32, 3), 128, np.uint8)
    counts = [
        len(
            applied(build_degradation("official", seed=s, save_applied_params=True), image)
            & OFFICIAL_TASKS
        )
        for s in range(200)
    ]
    assert sum(c == 0 for c in counts) <= 8  # with shared seeds: 54 of 200
    assert 0 < sum(c == 4 for c in counts) <= 80  # shared seeds: about 140 of 200
    assert sum(c in (1, 2, 3) for c in counts) >= 80  # shared seeds: none


def test_dihedral_flips_are_independent():
    # two p=0.5 flips from one seed fired together forever: rotations only, never a mirror image
    compose = dihedral(3)
    compose.save_applied_params = True
    image = np.zeros((8, 8, 3), np.uint8)
    one_flip = sum(
        len(applied(compose, image) & {"HorizontalFlip", "VerticalFlip"}) == 1 for _ in range(400)
    )
    assert 150 <= one_flip <= 250  # expected 200


def test_same_seed_reproduces_nested_pipelines_and_none_stays_random():
    image = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    a = build_degradation("paper", seed=5)
    b = build_degradation("paper", seed=5)
    runs_a = [a(image=image, mask=np.zeros((48, 48), np.uint8))["image"] for _ in range(3)]
    runs_b = [b(image=image, mask=np.zeros((48, 48), np.uint8))["image"] for _ in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(runs_a, runs_b))
    seed_compose(b, 6)
    other = [b(image=image, mask=np.zeros((48, 48), np.uint8))["image"] for _ in range(3)]
    assert not all(np.array_equal(x, y) for x, y in zip(runs_a, other))
    unseeded = seed_compose(A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]), None)
    assert unseeded.transforms[0].py_random.random() != unseeded.transforms[1].py_random.random()
