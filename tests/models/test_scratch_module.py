"""The scratch detector's LightningModule: losses switch, metrics, TTA and image grids."""

from __future__ import annotations

import pytest
import torch

from revive.models.scratch import ScratchDetector

TINY = {"depth": 2, "wf": 2}


def batch(b: int = 2, size: int = 16) -> dict[str, torch.Tensor]:
    mask = torch.zeros(b, 1, size, size)
    mask[:, :, :, size // 2] = 1.0
    return {"image": torch.rand(b, 1, size, size) * 2 - 1, "mask": mask}


@pytest.mark.parametrize("loss", ["focal", "bce", "bce_dice"])
def test_training_step_gives_a_finite_loss(loss: str) -> None:
    model = ScratchDetector(net=TINY, loss=loss)
    value = model.training_step(batch(), 0)
    assert value.ndim == 0 and torch.isfinite(value)


def test_unknown_loss_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="focal"):
        ScratchDetector(net=TINY, loss="dice_only")


def test_flip_tta_averages_with_the_mirrored_prediction() -> None:
    torch.manual_seed(0)
    model = ScratchDetector(net=TINY, tta_flip=True).eval()
    x = batch()["image"]
    with torch.no_grad():
        plain = torch.sigmoid(model(x))
        mirrored = torch.sigmoid(model(x.flip(-1))).flip(-1)
        torch.testing.assert_close(model.predict_proba(x), (plain + mirrored) / 2)


def test_image_grid_has_three_columns_per_sample() -> None:
    model = ScratchDetector(net=TINY).eval()
    model.validation_step(batch(b=2, size=16), 0)
    grid = model.image_grid()
    assert grid.shape == (3, 2 * 18 + 2, 3 * 18 + 2)
    assert 0.0 <= grid.min() and grid.max() <= 1.0
