"""revive-degrade: write synthetically aged copies of photos, their damage masks, contact sheets.

``revive-degrade input=DIR output=DIR preset=paper n=4 seed=0`` writes, for every photo and
preset, ``<name>_<preset>_<k>.png`` and ``<name>_<preset>_<k>_mask.png`` (k = 0..n-1; mask 0/255)
and one ``contact_sheet_<preset>.png`` (rows of clean | degraded | mask). ``<name>`` is the file
stem, with sub-folders joined by ``__``; when two inputs share a stem (``a.jpg``, ``a.png``) the
extension is appended to both (``a_jpg``, ``a_png``) so names never collide. ``preset`` may be
one name, a list ``[official,paper]`` or ``all``; ``input=null`` uses the embedded sample photos.
Unreadable files are skipped and listed with their reason (also in ``skipped.txt``); the exit
code is then 1, and the outputs already written are kept.
"""

from __future__ import annotations

import logging
import sys
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, ListConfig
from PIL import Image

from revive.config import CONF_DIR
from revive.data.degradations import PRESETS, build_degradation
from revive.data.imageio import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    format_skipped,
    list_images,
    read_image,
)
from revive.data.seeding import seed_compose
from revive.pipelines.batch import inside, output_names, write_image_atomic
from revive.utils.reliability import check_options

log = logging.getLogger(__name__)

SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "camera", "rocket")


def parse_presets(preset: str | Sequence[str]) -> list[str]:
    """Preset names from ``paper``, ``official,paper``, ``[official, paper]`` or ``all``."""
    names = preset.split(",") if isinstance(preset, str) else list(preset)
    names = [str(n).strip() for n in names if str(n).strip()]
    if names == ["all"]:
        return list(PRESETS)
    unknown = [n for n in names if n not in PRESETS]
    if unknown or not names:
        raise ValueError(
            f"preset={preset!r}: unknown {unknown or 'empty'}; use one of {', '.join(PRESETS)}, "
            "a list like [official,paper], or all."
        )
    return names


def iter_photos(
    input_dir: str | None, max_pixels: int
) -> Iterator[tuple[str, np.ndarray | ImageReadError]]:
    """Yield ``(name, image)`` per photo, or ``(name, error)`` for a file that cannot be read."""
    if input_dir is None:
        from revive.data.sample import sample_photo  # noqa: PLC0415 - only without input

        for name in SAMPLE_PHOTOS:
            yield name, sample_photo(name)
        return
    root = Path(input_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"input='{root}' is not a folder of images.")
    paths = list_images(root)
    if not paths:
        raise FileNotFoundError(
            f"input='{root}' holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})."
        )
    for path, name in output_names(paths, root).items():
        try:
            yield name, read_image(path, max_pixels=max_pixels)
        except ImageReadError as err:
            yield name, err


def _fit(image: np.ndarray, cell: int) -> np.ndarray:
    """An image fitted into a cell x cell white square (no crop), as uint8 RGB."""
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    h, w = image.shape[:2]
    scale = cell / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    out = np.full((cell, cell, 3), 255, np.uint8)
    y, x = (cell - size[1]) // 2, (cell - size[0]) // 2
    out[y : y + size[1], x : x + size[0]] = small
    return out


def contact_sheet(rows: list[list[np.ndarray]], cell: int, gap: int = 4) -> np.ndarray:
    """Rows of fitted cells (clean | degraded | mask | ...) on a white background."""
    cols = max(len(r) for r in rows)
    sheet = np.full((len(rows) * (cell + gap) + gap, cols * (cell + gap) + gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            y, x = gap + i * (cell + gap), gap + j * (cell + gap)
            sheet[y : y + cell, x : x + cell] = _fit(image, cell)
    return sheet


OPTION_TYPES = {
    "n": int,
    "seed": int,
    "holes": bool,
    "max_pixels": int,
    "sheet_rows": int,
    "sheet_copies": int,
    "sheet_cell": int,
}


def degrade_photos(cfg: DictConfig) -> int:
    """Write the degraded copies, masks and contact sheets of ``cfg``; return the exit code."""
    check_options(cfg, OPTION_TYPES)
    preset = list(cfg.preset) if isinstance(cfg.preset, ListConfig) else cfg.preset
    presets = parse_presets(preset)
    if cfg.n < 1:
        raise ValueError(f"n={cfg.n}: ask for at least one degraded copy per photo.")
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    composes = {p: build_degradation(p, holes=cfg.holes) for p in presets}
    sheets: dict[str, list[list[np.ndarray]]] = {p: [] for p in presets}
    skipped: list[tuple[Path, str]] = []
    written = 0
    for name, image in iter_photos(cfg.input, cfg.max_pixels):
        if isinstance(image, ImageReadError):
            log.warning("Skipped %s", image)
            skipped.append((image.path, image.reason))
            continue
        for preset, compose in composes.items():
            # the seed depends on the photo's name only, so adding photos changes no other output
            seed_compose(compose, (cfg.seed * 1_000_003 + zlib.crc32(name.encode())) % 2**32)
            row = [image]
            for k in range(cfg.n):
                res = compose(image=image, mask=np.zeros(image.shape[:2], np.uint8))
                stem = f"{name}_{preset}_{k}"
                write_image_atomic(res["mask"] * np.uint8(255), inside(out, f"{stem}_mask.png"))
                write_image_atomic(res["image"], inside(out, f"{stem}.png"))
                written += 1
                if k < cfg.sheet_copies:
                    row += [res["image"], res["mask"] * np.uint8(255)]
            if len(sheets[preset]) < cfg.sheet_rows:
                sheets[preset].append([_fit(x, cfg.sheet_cell) for x in row])
    for preset, rows in sheets.items():
        if rows:
            path = out / f"contact_sheet_{preset}.png"
            write_image_atomic(contact_sheet(rows, cfg.sheet_cell), path)
            log.info("Contact sheet (clean | degraded | mask): %s", path)
    log.info("Wrote %d degraded copies (%s) to %s", written, ", ".join(presets), out)
    if skipped:
        (out / "skipped.txt").write_text(format_skipped(skipped) + "\n")
        log.warning("Skipped %d unreadable file(s):\n%s", len(skipped), format_skipped(skipped))
        return 1
    return 0


def run(cfg: DictConfig) -> int:
    """Degrade the photos; return the exit code (2 = a usage error, printed on one line)."""
    try:
        return degrade_photos(cfg)
    except (FileNotFoundError, ValueError) as err:
        print(f"revive-degrade: {err}", file=sys.stderr)
        return 2


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="degrade")
def main(cfg: DictConfig) -> None:
    """Console entry point: ``revive-degrade input=DIR output=DIR preset=paper n=4 seed=0``."""
    code = run(cfg)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
