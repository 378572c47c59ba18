"""Reference-based super-resolution data (TTSR): LR, LR-up, HR, Ref and Ref down-up, built as the
official code builds them (reference/ttsr.md §1.2, §3).

Every sample is ``{"lr", "lr_up", "hr", "ref", "ref_down_up"}`` in [-1, 1]: LR is HR bicubic /4,
LR-up is LR bicubic x4, Ref down-up is Ref bicubic /4 then x4, all with PIL's bicubic as official.

Training layouts (``layout``):

- ``views`` (default): one folder of photos, or with ``data_dir=null`` the embedded sample photos.
  GT is a random crop; Ref is another view of the same scene: a shifted, rescaled, sometimes
  mirrored crop around the same place, or, for the stereo pair ``motorcycle_left`` /
  ``motorcycle_right``, the crop of the other eye.
- ``cufed``: SRNTT's CUFED training folder, ``input/`` and ``ref/`` paired by sorted name. HR is
  a ``crop_size`` crop (the whole 160x160 image at the official size); Ref is zero-padded (black)
  into a ``crop_size`` canvas at its top-left corner, after its down-up is computed.
- ``pairs``: custom paired folders ``hr/`` and ``ref/`` (same stems, or sorted order); Ref is cut
  around the place of the HR crop, then padded like ``cufed``.

Training flips and 90-degree rotations are drawn independently for the GT group (HR, LR, LR-up)
and the Ref group (Ref, Ref down-up), after the images are made, as official.

Evaluation (``test_dir``, batch 1, whole images): a CUFED5-style folder, ``XXX_0.png`` the ground
truth and ``XXX_1.png`` ... ``XXX_5.png`` references from most to least similar. Protocols
(``test_protocol``): ``single`` (official code: one Ref at ``ref_level``), ``stitch`` (the paper's
Table-1 CUFED5 number, per the author in TTSR issue #3: all five refs each padded with black to
500x500 and stacked vertically), ``lr_as_ref`` (Urban100 / Manga109 in the paper: Ref is the LR
image itself, Ref down-up is LR /4 x4; any folder of images works, ``_0`` files are taken as GT
when present).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from revive.data.datamodules import PhotoDataModule
from revive.data.datasets import ReseedableDataset, to_tensor, upscale_to
from revive.data.imageio import list_images, read_image
from revive.data.sample import TRAIN_PHOTOS, VAL_PHOTOS, sample_photo
from revive.data.seeding import seed_compose
from revive.data.sources import VAL_EVERY, PhotoSource

log = logging.getLogger(__name__)

SCALE = 4  # TTSR is x4 only: its textures are transferred at 1x, 2x and 4x
LAYOUTS = {"views": None, "cufed": "input", "pairs": "hr"}  # layout -> folder of the HR images
TEST_PROTOCOLS = ("single", "stitch", "lr_as_ref")
STEREO_PARTNERS = {"motorcycle_left": "motorcycle_right", "motorcycle_right": "motorcycle_left"}
STITCH_SIDE = 500  # the paper's per-reference canvas for the 5-reference stitch
VIEW_SCALES = (0.8, 1.25)  # range of the rescaling between GT and its reference view
VIEW_FLIP_P = 0.25  # chance that a reference view is mirrored


# ---- resampling and layout helpers ---------------------------------------------------------


def bicubic(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """PIL bicubic resize of a uint8 image, the official resampler for every TTSR input."""
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


def down_up(image: np.ndarray) -> np.ndarray:
    """Bicubic /4 then x4 (the size must be a multiple of 4): what the search compares LR-up with."""
    h, w = image.shape[:2]
    return bicubic(bicubic(image, w // SCALE, h // SCALE), w, h)


def crop_to_multiple(image: np.ndarray, multiple: int = SCALE) -> np.ndarray:
    """Top-left crop to a multiple of ``multiple`` in height and width (official test code)."""
    h, w = image.shape[:2]
    return image[: h - h % multiple, : w - w % multiple]


def pad_to_canvas(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Place ``image`` at the top-left of a black canvas (black is -1 once normalised), as official."""
    canvas = np.zeros((height, width, *image.shape[2:]), image.dtype)
    canvas[: image.shape[0], : image.shape[1]] = image
    return canvas


def make_sample(
    hr: np.ndarray, ref: np.ndarray, ref_down_up: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The five uint8 images of one sample from HR and Ref (both multiples of 4 in size)."""
    h, w = hr.shape[:2]
    lr = bicubic(hr, w // SCALE, h // SCALE)
    return {
        "lr": lr,
        "lr_up": bicubic(lr, w, h),
        "hr": hr,
        "ref": ref,
        "ref_down_up": down_up(ref) if ref_down_up is None else ref_down_up,
    }


def to_tensors(sample: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """uint8 images -> (3, H, W) float tensors in [-1, 1]."""
    return {key: to_tensor(image) for key, image in sample.items()}


def pair_files(first: Path, second: Path) -> list[tuple[Path, Path]]:
    """Pair the images of two folders: by equal stem when every stem matches, else by sorted order.

    Raises when neither works, naming both folders.
    """
    a, b = list_images(first), list_images(second)
    b_by_stem = {p.stem: p for p in b}
    if a and len(b_by_stem) == len(b) and all(p.stem in b_by_stem for p in a):
        return [(p, b_by_stem[p.stem]) for p in a]
    if a and len(a) == len(b):
        return list(zip(a, b))
    raise FileNotFoundError(
        f"Cannot pair '{first}' ({len(a)} images) with '{second}' ({len(b)} images): give the same "
        "stems in both folders, or the same number of images (paired by sorted name)."
    )


def dihedral(seed: int, *also: str) -> A.Compose:
    """Official augmentation: horizontal and vertical flips (p=0.5 each), then rot90 k in 0..3,
    applied alike to ``image`` and the images named in ``also``."""
    compose = A.Compose(
        [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=1.0)],
        additional_targets=dict.fromkeys(also, "image"),
        is_check_shapes=False,  # LR is a quarter of HR; flips and rot90 need no equal sizes
    )
    return seed_compose(compose, seed)


# ---- training datasets ---------------------------------------------------------------------


class ReferencePairDataset(ReseedableDataset):
    """Base of the training sets: a (GT, Ref) pair per item, then the official augmentation.

    The geometry of each pair (crop positions, view scale) is drawn from ``self.rng``; the GT and Ref
    groups get independent dihedral transforms. ``reseed`` restarts all three streams.
    """

    def __init__(self, crop_size: int, length: int, seed: int, augment: bool) -> None:
        self.crop_size = crop_size
        self.length = length
        self.augment = augment
        self.transform = dihedral(seed + 1, "lr", "lr_up")  # GT group
        self.ref_transform = dihedral(seed + 2, "ref_down_up")  # Ref group
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        seed_compose(self.transform, seed + 1)
        seed_compose(self.ref_transform, seed + 2)

    def __len__(self) -> int:
        return self.length

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """uint8 (GT, Ref, Ref down-up) of item ``index``; GT is ``crop_size`` square."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = make_sample(*self.pair(index))
        if self.augment:
            gt = self.transform(image=sample["hr"], lr=sample["lr"], lr_up=sample["lr_up"])
            ref = self.ref_transform(image=sample["ref"], ref_down_up=sample["ref_down_up"])
            sample.update(hr=gt["image"], lr=gt["lr"], lr_up=gt["lr_up"], ref=ref["image"])
            sample["ref_down_up"] = ref["ref_down_up"]
        return to_tensors(sample)

    def random_crop(self, image: np.ndarray) -> tuple[np.ndarray, int, int]:
        """A ``crop_size`` square of ``image`` (upscaled first if smaller) and its top-left corner."""
        image = upscale_to(image, self.crop_size)
        c = self.crop_size
        y = int(self.rng.integers(0, image.shape[0] - c + 1))
        x = int(self.rng.integers(0, image.shape[1] - c + 1))
        return image[y : y + c, x : x + c], y, x


class ViewsDataset(ReferencePairDataset):
    """GT a random crop of a photo, Ref another view of the same scene (see the module doc).

    :param photos: the photos (a ``PhotoSource`` or any sequence of uint8 RGB arrays).
    :param partners: photo index -> the other eye of a stereo pair, used as the Ref's photo.
    """

    def __init__(
        self,
        photos: Sequence[np.ndarray] | PhotoSource,
        crop_size: int,
        length: int,
        seed: int,
        augment: bool = True,
        partners: dict[int, np.ndarray] | None = None,
    ) -> None:
        self.photos = photos
        self.partners = partners or {}
        super().__init__(crop_size, length, seed, augment)

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        i = index % len(self.photos)
        photo = upscale_to(self.photos[i], self.crop_size)
        hr, y, x = self.random_crop(photo)
        ref = self.view(photo, self.partners.get(i), y, x)
        return hr, ref, down_up(ref)

    def view(self, photo: np.ndarray, partner: np.ndarray | None, y: int, x: int) -> np.ndarray:
        """A ``crop_size`` crop of the scene around the GT crop at (y, x), seen differently."""
        c = self.crop_size
        if partner is not None:
            scene = upscale_to(partner, c)  # the other eye: the stereo shift is the change of view
        else:
            scale = float(np.exp(self.rng.uniform(*np.log(VIEW_SCALES))))
            h, w = photo.shape[:2]
            scene = upscale_to(bicubic(photo, round(w * scale), round(h * scale)), c)
        sy, sx = scene.shape[0] / photo.shape[0], scene.shape[1] / photo.shape[1]
        dy, dx = self.rng.uniform(-c / 4, c / 4, size=2)
        top = int(np.clip(round((y + c / 2) * sy - c / 2 + dy), 0, scene.shape[0] - c))
        left = int(np.clip(round((x + c / 2) * sx - c / 2 + dx), 0, scene.shape[1] - c))
        ref = scene[top : top + c, left : left + c]
        if self.rng.random() < VIEW_FLIP_P:
            ref = ref[:, ::-1]
        return np.ascontiguousarray(ref)


class FolderPairsDataset(ReferencePairDataset):
    """Paired HR and Ref files (``cufed`` / ``pairs`` layouts): HR cropped, Ref padded to a canvas.

    The Ref is cut to at most ``crop_size`` around the place of the HR crop (relative position),
    cropped to a multiple of 4, its down-up made, then both are padded with black into the
    ``crop_size`` canvas so that batches stack (official CUFED training).
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        crop_size: int,
        length: int,
        seed: int,
        augment: bool = True,
    ) -> None:
        self.pairs = list(pairs)
        super().__init__(crop_size, length, seed, augment)

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hr_path, ref_path = self.pairs[index % len(self.pairs)]
        photo = upscale_to(read_image(hr_path), self.crop_size)
        hr, y, x = self.random_crop(photo)
        ref = self.ref_window(read_image(ref_path), y / photo.shape[0], x / photo.shape[1])
        ref = crop_to_multiple(ref)
        c = self.crop_size
        return hr, pad_to_canvas(ref, c, c), pad_to_canvas(down_up(ref), c, c)

    def ref_window(self, ref: np.ndarray, rel_y: float, rel_x: float) -> np.ndarray:
        """At most ``crop_size`` square of the Ref, at the HR crop's relative position."""
        c = self.crop_size
        h, w = ref.shape[:2]
        top = min(round(rel_y * h), max(h - c, 0))
        left = min(round(rel_x * w), max(w - c, 0))
        return ref[top : top + c, left : left + c]


# ---- evaluation ----------------------------------------------------------------------------


class ReferenceTestDataset(Dataset):
    """Whole test images with their references under a protocol (module doc); batch size 1.

    :param root: a CUFED5-style folder (``XXX_0`` GT, ``XXX_1..5`` refs), or for ``lr_as_ref`` any
        folder of images.
    :param protocol: ``single``, ``stitch`` or ``lr_as_ref``.
    :param ref_level: the reference used by ``single`` (1 = most similar, official).
    """

    def __init__(self, root: str | Path, protocol: str = "single", ref_level: int = 1) -> None:
        if protocol not in TEST_PROTOCOLS:
            raise ValueError(
                f"data.test_protocol='{protocol}' is unknown; use one of {TEST_PROTOCOLS}."
            )
        self.root = Path(root).expanduser()
        self.protocol = protocol
        self.ref_level = ref_level
        images = list_images(self.root)
        by_stem = {p.stem: p for p in images}
        ground_truths = [p for p in images if p.stem.endswith("_0")]
        if protocol == "lr_as_ref":
            self.items = [(p, []) for p in (ground_truths or images)]
            return
        levels = [ref_level] if protocol == "single" else range(1, 6)
        self.items = []
        for gt in ground_truths:
            group = gt.stem[:-2]
            missing = [f"{group}_{k}" for k in levels if f"{group}_{k}" not in by_stem]
            if missing:
                raise FileNotFoundError(
                    f"Test folder '{self.root}': {gt.name} has no reference {missing[0]}.* "
                    f"(protocol '{protocol}'); add it or choose another data.ref_level."
                )
            self.items.append((gt, [by_stem[f"{group}_{k}"] for k in levels]))
        if not self.items:
            raise FileNotFoundError(
                f"Test folder '{self.root}' has no XXX_0 ground-truth images (CUFED5 layout); "
                "use data.test_protocol=lr_as_ref for a folder of plain images."
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        gt_path, ref_paths = self.items[index]
        hr = crop_to_multiple(read_image(gt_path))
        if self.protocol == "lr_as_ref":
            h, w = hr.shape[:2]
            ref = crop_to_multiple(bicubic(hr, w // SCALE, h // SCALE))
            return to_tensors(make_sample(hr, ref))
        refs = [crop_to_multiple(read_image(p)) for p in ref_paths]
        if self.protocol == "single":
            return to_tensors(make_sample(hr, refs[0]))
        return to_tensors(make_sample(hr, *stitch(refs)))


def stitch(refs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The paper's multi-reference Ref: each ref (and its down-up) padded with black to a square
    canvas (500, or the largest side if bigger, rounded up to 4) and stacked vertically."""
    side = max(STITCH_SIDE, *(max(r.shape[:2]) for r in refs))
    side += -side % SCALE
    refs_padded = [pad_to_canvas(r, side, side) for r in refs]
    down_ups = [pad_to_canvas(down_up(r), side, side) for r in refs]
    return np.concatenate(refs_padded), np.concatenate(down_ups)


# ---- datamodule ----------------------------------------------------------------------------


class SRDataModule(PhotoDataModule):
    """Reference-based SR data for TTSR.

    ``crop_size`` is the HR (GT) crop, a multiple of 4 (LR is ``crop_size / 4``); the Ref of a
    training sample has the same size. Extra options: ``layout`` (``views`` | ``cufed`` |
    ``pairs``), ``test_dir`` (a CUFED5-style folder: then validation uses its first
    ``val_length`` images and test all of them, batch 1), ``test_protocol`` (``single`` |
    ``stitch`` | ``lr_as_ref``), ``ref_level`` (1..5, for ``single``).
    """

    test_set: ReferenceTestDataset | None = None  # built at setup when test_dir is given

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if hp.crop_size % SCALE:
            raise ValueError(
                f"data.crop_size={hp.crop_size} is not a multiple of {SCALE}: the LR crop is "
                f"crop_size / {SCALE}. Use e.g. {hp.crop_size - hp.crop_size % SCALE}."
            )
        if hp.get("layout", "views") not in LAYOUTS:
            raise ValueError(f"data.layout='{hp.layout}' is unknown; use one of {list(LAYOUTS)}.")
        if hp.get("test_dir") and self.test_set is None:
            self.test_set = ReferenceTestDataset(
                hp.test_dir, hp.get("test_protocol", "single"), hp.get("ref_level", 1)
            )
            self.val_items = []  # the test folder replaces the drawn validation samples
        super().setup(stage)

    def make_dataset(self, split: str, length: int, seed: int) -> ReseedableDataset:
        hp = self.hparams
        layout = hp.get("layout", "views")
        augment = split == "train"
        if layout == "views":
            return self._views(split, length, seed, augment)
        if not hp.data_dir:
            raise ValueError(
                f"data.layout={layout} needs data.data_dir: a folder with {LAYOUTS[layout]}/ and "
                "ref/ (or train/ and val/ holding them)."
            )
        pairs = self._folder_pairs(Path(hp.data_dir).expanduser(), LAYOUTS[layout], split)
        return FolderPairsDataset(pairs, hp.crop_size, length, seed, augment)

    def _views(self, split: str, length: int, seed: int, augment: bool) -> ViewsDataset:
        source = PhotoSource(self.hparams.data_dir, split)
        partners = {}
        if self.hparams.data_dir is None:
            names = TRAIN_PHOTOS if split == "train" else VAL_PHOTOS  # the order of PhotoSource
            partners = {
                i: sample_photo(STEREO_PARTNERS[n])
                for i, n in enumerate(names)
                if n in STEREO_PARTNERS
            }
        return ViewsDataset(source, self.hparams.crop_size, length, seed, augment, partners)

    def _folder_pairs(self, root: Path, hr_folder: str, split: str) -> list[tuple[Path, Path]]:
        """This split's (HR, Ref) files: ``train/`` and ``val/`` subfolders, or every 10th pair for
        validation (all of them for training when a test folder validates)."""
        if (root / "train").is_dir() and (root / "val").is_dir():
            return pair_files(root / split / hr_folder, root / split / "ref")
        pairs = pair_files(root / hr_folder, root / "ref")
        if self.hparams.get("test_dir"):
            return pairs
        return [p for i, p in enumerate(pairs) if (i % VAL_EVERY == 0) == (split == "val")]

    def val_dataloader(self) -> DataLoader:
        if self.test_set is None:
            return super().val_dataloader()
        first = range(min(self.hparams.val_length, len(self.test_set)))
        return DataLoader(Subset(self.test_set, first), batch_size=1, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            return super().val_dataloader()
        return DataLoader(self.test_set, batch_size=1, shuffle=False)
