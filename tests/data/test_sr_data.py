"""TTSR data: the five images of a sample, reference views, CUFED / CUFED5 layouts, seeding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from revive.data.sr import (
    STITCH_SIDE,
    ReferenceTestDataset,
    SRDataModule,
    ViewsDataset,
    bicubic,
    down_up,
)

KEYS = ("lr", "lr_up", "hr", "ref", "ref_down_up")


def smooth_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A textured photo whose crops differ from place to place."""
    g = np.random.default_rng(seed)
    coarse = g.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC))


def save(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def embedded(**options) -> SRDataModule:
    dm = SRDataModule(crop_size=32, batch_size=4, train_length=8, val_length=4, seed=0, **options)
    dm.setup()
    return dm


def test_embedded_sample_has_the_five_images_at_x4_in_range() -> None:
    batch = next(iter(embedded().train_dataloader()))
    assert set(batch) == set(KEYS)
    assert batch["lr"].shape == (4, 3, 8, 8)
    for key in ("lr_up", "hr", "ref", "ref_down_up"):
        assert batch[key].shape == (4, 3, 32, 32), key
    for key, x in batch.items():
        assert x.dtype == torch.float32 and -1.0 <= x.min() and x.max() <= 1.0, key


def test_lr_is_pil_bicubic_of_hr_and_ref_down_up_of_ref() -> None:
    sample = embedded().val_items[0]  # validation: no augmentation between the images
    hr, ref = to_uint8(sample["hr"]), to_uint8(sample["ref"])
    np.testing.assert_array_equal(to_uint8(sample["lr"]), bicubic(hr, 8, 8))
    np.testing.assert_array_equal(to_uint8(sample["lr_up"]), bicubic(bicubic(hr, 8, 8), 32, 32))
    np.testing.assert_array_equal(to_uint8(sample["ref_down_up"]), down_up(ref))


DIHEDRAL = [
    lambda x, k=k, flip=flip: np.rot90(x[:, ::-1] if flip else x, k)
    for k in range(4)
    for flip in (False, True)
]


def which_transform(before: list[np.ndarray], after: list[np.ndarray]) -> int | None:
    """Index of the dihedral transform that maps every image of ``before`` onto ``after``."""
    for i, transform in enumerate(DIHEDRAL):
        if all(np.array_equal(transform(b), a) for b, a in zip(before, after)):
            return i
    return None


def test_augmentation_moves_each_group_together_and_the_groups_independently() -> None:
    photo = smooth_photo(96, 96)
    plain = ViewsDataset([photo], 32, length=12, seed=1, augment=False)
    augmented = ViewsDataset([photo], 32, length=12, seed=1)  # same geometry stream
    gt_moves, ref_moves = [], []
    for i in range(12):
        p, a = plain[i], augmented[i]
        groups = (("hr", "lr", "lr_up"), ("ref", "ref_down_up"))
        gt, ref = (
            which_transform([to_uint8(p[k]) for k in keys], [to_uint8(a[k]) for k in keys])
            for keys in groups
        )
        assert gt is not None and ref is not None  # one flip / rotation for the whole group
        gt_moves.append(gt)
        ref_moves.append(ref)
    assert len(set(gt_moves)) > 2 and gt_moves != ref_moves


def find_crop(photo: np.ndarray, crop: np.ndarray) -> tuple[int, int] | None:
    """Top-left corner where ``crop`` sits exactly in ``photo``, or None."""
    c = crop.shape[0]
    for y in range(photo.shape[0] - c + 1):
        for x in range(photo.shape[1] - c + 1):
            if np.array_equal(photo[y : y + c, x : x + c], crop):
                return y, x
    return None


def test_reference_is_a_shifted_view_around_the_gt_crop(monkeypatch) -> None:
    monkeypatch.setattr("revive.data.sr.VIEW_SCALES", (1.0, 1.0))  # bicubic at scale 1 = copy
    monkeypatch.setattr("revive.data.sr.VIEW_FLIP_P", 0.0)
    photo = smooth_photo(80, 80)
    dataset = ViewsDataset([photo], 32, length=6, seed=0, augment=False)
    shifts = []
    for i in range(6):
        s = dataset[i]
        gt_at, ref_at = find_crop(photo, to_uint8(s["hr"])), find_crop(photo, to_uint8(s["ref"]))
        assert gt_at is not None and ref_at is not None
        dy, dx = ref_at[0] - gt_at[0], ref_at[1] - gt_at[1]
        assert abs(dy) <= 8 and abs(dx) <= 8  # within a quarter crop: the views overlap
        shifts.append((dy, dx))
    assert any(shift != (0, 0) for shift in shifts)


def test_reference_views_are_rescaled_and_never_the_gt_itself() -> None:
    dataset = ViewsDataset([smooth_photo(128, 128)], 32, length=8, seed=0, augment=False)
    for i in range(8):
        s = dataset[i]
        assert not torch.equal(s["hr"], s["ref"])


def test_stereo_partner_is_the_reference_of_the_motorcycle() -> None:
    dm = embedded()
    names = ("coffee", "chelsea", "coins", "motorcycle_right")
    val_views = dm.make_dataset("val", 4, 0)
    assert set(val_views.partners) == {names.index("motorcycle_right")}
    train_views = dm.make_dataset("train", 4, 0)
    assert len(train_views.partners) == 1  # motorcycle_left sees motorcycle_right


def test_same_seed_same_samples_other_seed_differs() -> None:
    def samples(seed: int) -> list[torch.Tensor]:
        dataset = ViewsDataset([smooth_photo(96, 96)], 32, length=4, seed=seed)
        return [dataset[i]["ref"] for i in range(4)]

    a, b, c = samples(3), samples(3), samples(4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_crop_size_must_be_a_multiple_of_four() -> None:
    with pytest.raises(ValueError, match="data.crop_size=30"):
        SRDataModule(crop_size=30).setup()


def cufed_folder(root: Path, n: int = 10) -> Path:
    for i in range(n):
        save(smooth_photo(40, 40, i), root / "input" / f"{i:05d}.png")
        save(smooth_photo(28 + 4 * (i % 3), 36, 100 + i), root / "ref" / f"{i:05d}_ref.png")
    return root


def test_cufed_layout_pairs_by_sorted_name_and_pads_the_ref(tmp_path) -> None:
    root = cufed_folder(tmp_path / "CUFED" / "train")
    dm = SRDataModule(data_dir=str(root), layout="cufed", crop_size=40, batch_size=3,
                      train_length=9, val_length=1)  # fmt: skip
    dm.setup()
    assert len(dm.train_set.pairs) == 9 and len(dm.val_items) == 1  # every 10th pair validates
    first = dm.train_set.pairs[0]
    assert (first[0].name, first[1].name) == ("00001.png", "00001_ref.png")
    batch = next(iter(dm.train_dataloader()))
    assert batch["hr"].shape == (3, 3, 40, 40) and batch["lr"].shape == (3, 3, 10, 10)
    assert batch["ref"].shape == (3, 3, 40, 40)  # padded into the HR-sized canvas
    sample = dm.val_items[0]  # no augmentation: the padding sits at the bottom / right
    ref_h = 28  # pair 0: 28x36 ref
    assert (sample["ref"][:, ref_h:] == -1).all() and (sample["ref"][:, :, 36:] == -1).all()
    assert (sample["ref_down_up"][:, ref_h:] == -1).all()


def cufed5_folder(root: Path, groups: int = 2) -> Path:
    for g in range(groups):
        save(smooth_photo(50, 43, g), root / f"{g:03d}_0.png")
        for level in range(1, 6):
            save(smooth_photo(30 + 2 * level, 41, 10 * g + level), root / f"{g:03d}_{level}.png")
    return root


@pytest.mark.parametrize("level", [1, 3])
def test_cufed5_single_reference_at_a_level(tmp_path, level) -> None:
    dataset = ReferenceTestDataset(cufed5_folder(tmp_path / "CUFED5"), "single", level)
    assert len(dataset) == 2
    sample = dataset[1]
    assert sample["hr"].shape == (3, 48, 40)  # cropped to a multiple of 4
    assert sample["lr"].shape == (3, 12, 10)
    expected = np.asarray(Image.open(tmp_path / "CUFED5" / f"001_{level}.png"))
    h, w = (30 + 2 * level) // 4 * 4, 40
    np.testing.assert_array_equal(to_uint8(sample["ref"]), expected[:h, :w])


def test_cufed5_stitch_stacks_five_padded_references(tmp_path) -> None:
    sample = ReferenceTestDataset(cufed5_folder(tmp_path / "CUFED5"), "stitch")[0]
    assert sample["ref"].shape == (3, 5 * STITCH_SIDE, STITCH_SIDE)
    assert sample["ref_down_up"].shape == sample["ref"].shape
    expected = np.asarray(Image.open(tmp_path / "CUFED5" / "000_2.png"))[:32, :40]
    block = to_uint8(sample["ref"][:, STITCH_SIDE : 2 * STITCH_SIDE])
    np.testing.assert_array_equal(block[:32, :40], expected)
    assert (block[32:] == 0).all()  # black padding


def test_lr_as_reference_protocol(tmp_path) -> None:
    root = tmp_path / "Urban"
    save(smooth_photo(64, 48), root / "img001.png")
    sample = ReferenceTestDataset(root, "lr_as_ref")[0]
    assert sample["lr"].shape == (3, 16, 12)
    torch.testing.assert_close(sample["ref"], sample["lr"])


def test_missing_reference_level_names_the_file(tmp_path) -> None:
    root = cufed5_folder(tmp_path / "CUFED5")
    (root / "001_4.png").unlink()
    with pytest.raises(FileNotFoundError, match="001_4"):
        ReferenceTestDataset(root, "single", 4)


def test_test_dir_drives_validation_and_test_with_batch_one(tmp_path) -> None:
    dm = embedded(test_dir=str(cufed5_folder(tmp_path / "CUFED5", groups=3)))
    dm.hparams.val_length = 2
    assert len(dm.val_dataloader()) == 2 and len(dm.test_dataloader()) == 3
    batch = next(iter(dm.test_dataloader()))
    assert batch["hr"].shape[0] == 1 and set(batch) == set(KEYS)


def test_pairs_layout_pairs_by_stem_and_cuts_the_ref_where_the_hr_crop_is(tmp_path) -> None:
    root = tmp_path / "pairs"
    for i in range(3):
        scene = smooth_photo(64, 64, i)
        save(scene, root / "train" / "hr" / f"scene{i}.png")
        save(scene, root / "train" / "ref" / f"scene{i}.png")  # the same view: the ref cut = GT
        save(scene, root / "val" / "hr" / f"v{i}.png")
        save(scene, root / "val" / "ref" / f"v{i}.png")
    dm = SRDataModule(data_dir=str(root), layout="pairs", crop_size=32, batch_size=2,
                      train_length=4, val_length=3)  # fmt: skip
    dm.setup()
    assert [(a.stem, b.stem) for a, b in dm.train_set.pairs] == [
        (f"scene{i}",) * 2 for i in range(3)
    ]
    for sample in dm.val_items:
        torch.testing.assert_close(sample["ref"], sample["hr"])
