"""Robust image reading for datasets and CLIs: one call gives RGB pixels or a one-line reason.

- ``list_images(folder)``: the image files under a folder, sorted.
- ``scan_images(paths, min_size=...)``: verify every file once at setup and split them into
  readable ones and ``(path, reason)`` pairs, so a dataset never crashes mid-epoch on a bad file.
- ``read_image(path)``: uint8 RGB H x W x 3 with the EXIF orientation applied; gray, palette,
  CMYK and alpha (composited on white) are converted, 16-bit PNG / TIFF scaled to 8 bit (or kept
  with ``keep_16bit=True``). Failures raise ``ImageReadError`` with a human reason.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"})
_EXIF_ORIENTATION = 0x0112


class ImageReadError(Exception):
    """An image that cannot be used, with a one-line reason (``str()`` = path + reason)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path} {reason}")


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` (extensions in ``IMAGE_EXTENSIONS``, any case), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Image folder '{folder}' does not exist or is not a folder.")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


@contextlib.contextmanager
def _own_pixel_limit() -> Iterator[None]:
    """Switch PIL's decompression-bomb check off while ``_open`` runs its own.

    ``_open`` compares the header's size with ``max_pixels`` before decoding anything, and its
    message names the option to change; PIL's would only name its own constant.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _open(path: Path, max_pixels: int, draft: bool = False) -> tuple[Image.Image, tuple[int, int]]:
    """Open and fully decode ``path``; return it and its stored size (before any draft).

    Every failure becomes an ``ImageReadError``.
    """
    if not path.is_file():
        raise ImageReadError(path, "does not exist")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "is empty (0 bytes)")
    with _own_pixel_limit():
        try:
            im = Image.open(path)
        except UnidentifiedImageError:
            raise ImageReadError(path, "is not an image PIL can read") from None
        except OSError as err:
            raise ImageReadError(path, f"cannot be opened ({err})") from None
        w, h = im.size
        if w * h > max_pixels:
            raise ImageReadError(
                path,
                f"is {w}x{h} = {w * h / 1e6:.1f} MP, over the limit max_pixels={max_pixels} "
                f"({max_pixels / 1e6:g} MP); raise max_pixels or downscale it",
            )
        if draft and im.format == "JPEG":
            # decode at 1/8 scale: still reads the whole stream, so truncation is still caught
            im.draft(im.mode, (max(1, w // 8), max(1, h // 8)))
        try:
            im.load()
        except (OSError, SyntaxError, ValueError) as err:
            raise ImageReadError(path, f"is truncated or corrupt ({err})") from None
    return im, (w, h)


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an H x W (x C) array, as ``ImageOps.exif_transpose``."""
    swap = (1, 0, *range(2, arr.ndim))
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.transpose(swap)
    if orientation == 6:
        return np.rot90(arr, -1)
    if orientation == 7:
        return arr[::-1, ::-1].transpose(swap)
    if orientation == 8:
        return np.rot90(arr, 1)
    return arr


def _is_16bit_color(path: Path, im: Image.Image) -> bool:
    """True for 16-bit colour PNG / TIFF, which PIL silently reduces to 8-bit RGB(A)."""
    if im.mode.startswith("I") or im.mode == "F":
        return False
    if im.format == "PNG":
        with path.open("rb") as f:
            header = f.read(26)
        return len(header) == 26 and header[24] == 16  # IHDR bit depth
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        return max(bits if isinstance(bits, tuple) else (bits,)) == 16
    return False


def _composite_on_white(arr: np.ndarray, white: float) -> np.ndarray:
    """RGB from an RGBA (or gray + alpha) float array, transparent parts shown on white."""
    color, alpha = arr[..., :-1], arr[..., -1:] / white
    return color * alpha + white * (1.0 - alpha)


def _read_16bit_color(path: Path, orientation: int) -> np.ndarray:
    """uint16 RGB of a 16-bit colour PNG / TIFF via OpenCV (which keeps all 16 bits)."""
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16:
        raise ImageReadError(path, "is a 16-bit colour image OpenCV cannot decode")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] >= 3:
        arr = np.concatenate([arr[..., 2::-1], arr[..., 3:]], axis=-1)  # BGR(A) -> RGB(A)
    if arr.shape[-1] in (2, 4):
        arr = np.rint(_composite_on_white(arr.astype(np.float32), 65535.0)).astype(np.uint16)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(_orient(arr, orientation))


def _pil_to_array(im: Image.Image) -> np.ndarray:
    """H x W x 3 uint8 or uint16 RGB from an oriented, loaded PIL image of any mode."""
    if im.mode.startswith("I;16") or im.mode == "I":
        gray = np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
        return np.repeat(gray[..., None], 3, axis=-1)
    if im.mode == "F":
        gray = np.asarray(im, dtype=np.float32)
        # float TIFFs are usually in [0, 1]; anything larger is taken as 16-bit counts
        scale = 65535.0 if gray.max(initial=0.0) <= 1.0 else 1.0
        gray = np.rint(np.clip(gray * scale, 0, 65535)).astype(np.uint16)
        return np.repeat(gray[..., None], 3, axis=-1)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(im.convert("RGB"))


def read_image(
    path: str | Path, *, max_pixels: int = 64_000_000, keep_16bit: bool = False
) -> np.ndarray:
    """Read an image as RGB H x W x 3: uint8, or uint16 for 16-bit files with ``keep_16bit``.

    The EXIF orientation is applied; gray, palette and CMYK are converted to RGB; transparency
    is composited on white. 16-bit PNG / TIFF (gray or colour) are scaled to 8 bit by rounding
    ``x / 257``, unless ``keep_16bit=True``, which returns them as uint16 (8-bit files still
    come back as uint8, so check the dtype). Raises ``ImageReadError`` with a one-line reason.
    """
    path = Path(path)
    im, _ = _open(path, max_pixels)
    orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    if _is_16bit_color(path, im):
        arr = _read_16bit_color(path, orientation)
    else:
        try:
            im = ImageOps.exif_transpose(im)
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("Ignoring the unreadable EXIF orientation of %s (%s)", path, err)
        arr = _pil_to_array(im)
    if arr.dtype == np.uint16 and not keep_16bit:
        arr = np.rint(arr.astype(np.float32) / 257.0).astype(np.uint8)
    return np.ascontiguousarray(arr)


def check_image(
    path: str | Path,
    *,
    min_size: int | None = None,
    upscale_small: bool = False,
    max_pixels: int = 64_000_000,
) -> tuple[int, int]:
    """Verify one file cheaply (JPEGs decode at 1/8 scale); return its oriented (width, height).

    Raises ``ImageReadError`` for unreadable files and, unless ``upscale_small``, for files whose
    shorter side is below ``min_size``.
    """
    path = Path(path)
    im, (w, h) = _open(path, max_pixels, draft=True)
    if im.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
        w, h = h, w
    if min_size is not None and min(w, h) < min_size and not upscale_small:
        raise ImageReadError(
            path,
            f"is {w}x{h}, smaller than min_size={min_size} on its shorter side; "
            "drop it, lower min_size or enable upscale_small",
        )
    return w, h


def scan_images(
    paths: Iterable[str | Path],
    *,
    min_size: int | None = None,
    upscale_small: bool = False,
    max_pixels: int = 64_000_000,
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Split ``paths`` into readable images and ``(path, reason)`` for the rest, verifying each once.

    Datasets call this at setup so a bad file is reported there, not mid-epoch. Images whose
    shorter side is below ``min_size`` are skipped, or kept when ``upscale_small`` (the caller
    then upscales them on reading). Logs one warning per skipped file and a summary.
    """
    good: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in map(Path, paths):
        try:
            check_image(path, min_size=min_size, upscale_small=upscale_small, max_pixels=max_pixels)
        except ImageReadError as err:
            log.warning("Skipping %s", err)
            skipped.append((path, err.reason))
        else:
            good.append(path)
    if skipped:
        log.warning(
            "Scanned %d images: %d readable, %d skipped",
            len(good) + len(skipped),
            len(good),
            len(skipped),
        )
    else:
        log.info("Scanned %d images: all readable", len(good))
    return good, skipped


def format_skipped(skipped: Sequence[tuple[Path, str]]) -> str:
    """One line per skipped file, ``path reason``, for CLI summaries."""
    return "\n".join(f"  {path} {reason}" for path, reason in skipped)
