"""Where photos come from: the embedded sample set or a folder given by path.

A source is a list of photos for one split. Folder sources read lazily (a real dataset does not
fit in memory) and are scanned once at setup, so unreadable files are reported then, never mid-epoch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from revive.data import imageio
from revive.data.sample import sample_photos

log = logging.getLogger(__name__)

VAL_EVERY = 10  # a folder without train/ and val/ subfolders gives every 10th photo to val


class PhotoSource:
    """Photos of one split, as uint8 RGB arrays, from the sample set or a folder."""

    def __init__(self, data_dir: str | None, split: str, min_size: int | None = None) -> None:
        self.data_dir = data_dir
        self.split = split
        self._arrays: list[np.ndarray] | None = None
        self._paths: list[Path] = []
        if data_dir is None:
            self._arrays = sample_photos(split)
        else:
            self._paths = self._scan(Path(data_dir).expanduser(), split, min_size)

    @staticmethod
    def _scan(root: Path, split: str, min_size: int | None) -> list[Path]:
        if not root.is_dir():
            raise FileNotFoundError(
                f"data_dir '{root}' is not a folder. Point data.data_dir at a folder of images, "
                "or set it to null for the embedded sample photos."
            )
        if (root / "train").is_dir() and (root / "val").is_dir():
            paths = imageio.list_images(root / split)
        else:
            every = imageio.list_images(root)
            paths = [p for i, p in enumerate(every) if (i % VAL_EVERY == 0) == (split == "val")]
        good, skipped = imageio.scan_images(paths, min_size=min_size)
        if not good:
            raise FileNotFoundError(
                f"No readable images for split '{split}' under '{root}' "
                f"({len(skipped)} skipped). Check the folder and the image extensions."
            )
        return good

    def __len__(self) -> int:
        return len(self._arrays) if self._arrays is not None else len(self._paths)

    def __getitem__(self, index: int) -> np.ndarray:
        if self._arrays is not None:
            return self._arrays[index]
        return imageio.read_image(self._paths[index])

    def name(self, index: int) -> str:
        """A short name for photo ``index`` (file stem, or its sample-set position)."""
        if self._arrays is not None:
            return f"{self.split}_{index:03d}"
        return self._paths[index].stem
