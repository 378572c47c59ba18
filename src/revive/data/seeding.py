"""Seeding albumentations pipelines so that every transform draws its own random numbers.

albumentations 2.0.8 seeds a Compose by handing its seed unchanged to every child transform
(``BaseCompose.set_random_seed``), so siblings draw identical numbers: two ``p=0.5`` transforms
fire together or not at all, and keep doing so as long as they consume the same number of draws.
Measured on the ``official`` preset: the first image after seeding got either all four of the
release's degradations or none of them (none 27 % of the time instead of 0.3^4 = 0.8 %), and the
official dihedral augmentation (horizontal flip p=0.5, vertical flip p=0.5) only ever flipped both
ways at once, which is a rotation: no mirrored sample. ``seed_compose`` gives every transform,
at every depth, its own stream derived from the seed.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from albumentations.core.composition import BaseCompose

ComposeT = TypeVar("ComposeT", bound=BaseCompose)


def seed_compose(compose: ComposeT, seed: int | None) -> ComposeT:
    """Seed ``compose`` and give each transform inside it an independent stream; returns it.

    The same seed reproduces the same outputs; ``None`` draws fresh entropy for every transform
    (albumentations' own behaviour, already independent).
    """
    compose.set_random_seed(seed)
    if seed is not None:
        _spread(compose, np.random.SeedSequence(seed))
    return compose


def _spread(compose: BaseCompose, sequence: np.random.SeedSequence) -> None:
    """Reseed the children of ``compose`` from independent children of ``sequence``."""
    for transform, child in zip(compose.transforms, sequence.spawn(len(compose.transforms))):
        transform.set_random_seed(int(child.generate_state(1)[0]))
        if isinstance(transform, BaseCompose):
            _spread(transform, child)
