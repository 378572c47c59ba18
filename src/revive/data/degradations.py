"""Synthetic old-photo degradation: the official BOPBTL pipeline and the paper's richer presets.

Build a pipeline with ``build_degradation(preset)`` and call it with a mask so overlays can
report the damage they draw::

    compose = build_degradation("paper", holes=False, seed=0)
    out = compose(image=img, mask=np.zeros(img.shape[:2], np.uint8))
    degraded, mask = out["image"], out["mask"]  # mask: H x W uint8 {0, 1}

Presets (``PRESETS``):

- ``official``: exactly what the released code does (``online_add_degradation_v2``): Gaussian
  blur, one of three noises, low resolution and JPEG, each with p=0.7 in a random order per
  sample, then 3-channel grayscale with p=0.1. Its mask stays empty.
- ``paper``: the official four plus what the paper describes and the release omits: fading and
  contrast loss, sepia / yellowing, film grain, halftone, blotches exposing paper texture,
  creases, scratches and dust. Overlays run last, so the mask marks exactly their pixels.
- ``mild`` / ``severe``: the paper mix with gentler / harsher strengths and probabilities.
- ``rstandin``: a STAND-IN for real old photos (domain R) when no folder of real old photos is
  given: sepia + film grain + fading + scratches and dust in a fixed order. It is synthetic
  data with a different look from ``paper``, not real data; results trained on it say nothing
  about real photos.

``holes=True`` appends ``AddHoles`` (irregular white holes with p=0.5, the scratch mapping's
training data). Images may be gray (H x W or H x W x 1) or RGB, uint8, uint16 or float32 in
[0, 1]; every transform works in the image's native range, except JPEG, which has no 16-bit
or float baseline codec: those images are quantised to 8 bit for the round trip and scaled
back, so the result carries 8-bit steps (as a 16-bit scan of a JPEG print would).

DataLoader workers copy a Compose with its RNG state, so all workers would produce the same
augmentations; datasets reseed theirs per worker (``revive.data.datasets.seed_worker``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
from PIL import Image

from revive.data.scratches import (
    AddCreases,
    AddDust,
    AddScratches,
    Layer,
    OverlayTransform,
    check_range,
    dtype_white,
    to_dtype,
)
from revive.data.seeding import seed_compose

PRESETS = ("official", "paper", "mild", "severe", "rstandin")

__all__ = [
    "PRESETS",
    "AddHoles",
    "Blotches",
    "Fading",
    "FilmGrain",
    "Grayscale",
    "Halftone",
    "JPEGCompression",
    "OfficialBlur",
    "OfficialLowResolution",
    "OfficialNoise",
    "SepiaTone",
    "Yellowing",
    "build_degradation",
]


def _channels_last(img: np.ndarray) -> np.ndarray:
    """View an image as H x W x C (gray H x W gains a channel axis)."""
    return img[..., None] if img.ndim == 2 else img


def _like(out: np.ndarray, img: np.ndarray) -> np.ndarray:
    """Give ``out`` the layout of ``img``; cv2 and PIL drop a trailing singleton channel."""
    return out.reshape(img.shape)


def _luminance(x: np.ndarray) -> np.ndarray:
    """H x W luminance (Rec. 601 weights) of an H x W x C float image; gray is itself."""
    if x.shape[-1] < 3:
        return x[..., 0]
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def _smooth_noise(h: int, w: int, cell: float, rng: np.random.Generator) -> np.ndarray:
    """Band-limited noise (H x W float32, about unit variance) with features ``cell`` px wide."""
    gh, gw = max(2, math.ceil(h / cell) + 1), max(2, math.ceil(w / cell) + 1)
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


# --------------------------------------------------------------------------- official (§1d)


class OfficialBlur(A.ImageOnlyTransform):
    """Gaussian blur as released: kernel uniformly from {3, 5, 7}, sigma ~ U(1, 5) (cv2)."""

    def __init__(
        self,
        kernel_sizes: Sequence[int] = (3, 5, 7),
        sigma: Sequence[float] = (1.0, 5.0),
        p: float = 0.7,
    ) -> None:
        super().__init__(p=p)
        if not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"OfficialBlur kernel_sizes={list(kernel_sizes)}: use odd sizes >= 1.")
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.sigma = check_range(sigma, "sigma")

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("kernel_sizes", "sigma")

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "kernel": self.py_random.choice(self.kernel_sizes),
            "sigma": self.py_random.uniform(*self.sigma),
        }

    def apply(self, img: np.ndarray, kernel: int, sigma: float, **params: Any) -> np.ndarray:
        return _like(cv2.GaussianBlur(img, (kernel, kernel), sigma), img)


class OfficialNoise(A.ImageOnlyTransform):
    """One of three noises as released, i.i.d. per pixel and channel, clipped to the range.

    ``gaussian``: x + n; ``speckle``: x + x * n, n ~ N(0, sigma) with sigma ~ U(5, 50) / 255 of
    white; ``salt_pepper``: a fraction ``amount`` ~ U(0, 0.01) of values set to white (with
    probability ``salt_ratio`` ~ U(0.3, 0.8)) or black. Integer results are truncated toward zero,
    as the release's ``astype(uint8)`` does. The noise field comes from ``noise_seed`` (drawn
    from the transform's generator) so the logged parameters stay small.
    """

    def __init__(
        self,
        kinds: Sequence[str] = ("gaussian", "speckle", "salt_pepper"),
        sigma: Sequence[float] = (5 / 255, 50 / 255),
        amount: Sequence[float] = (0.0, 0.01),
        salt_ratio: Sequence[float] = (0.3, 0.8),
        p: float = 0.7,
    ) -> None:
        super().__init__(p=p)
        valid = ("gaussian", "speckle", "salt_pepper")
        if not kinds or set(kinds) - set(valid):
            raise ValueError(f"OfficialNoise kinds={list(kinds)}: use a subset of {list(valid)}.")
        self.kinds = tuple(kinds)
        self.sigma = check_range(sigma, "sigma")
        self.amount = check_range(amount, "amount")
        self.salt_ratio = check_range(salt_ratio, "salt_ratio")

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("kinds", "sigma", "amount", "salt_ratio")

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        kind = self.py_random.choice(self.kinds)
        drawn: dict[str, Any] = {"kind": kind, "noise_seed": self.py_random.getrandbits(63)}
        if kind == "salt_pepper":
            drawn["amount"] = self.py_random.uniform(*self.amount)
            drawn["salt_ratio"] = self.py_random.uniform(*self.salt_ratio)
        else:
            drawn["sigma"] = self.py_random.uniform(*self.sigma)
        return drawn

    def apply(self, img: np.ndarray, kind: str, noise_seed: int, **params: Any) -> np.ndarray:
        rng = np.random.default_rng(noise_seed)
        white = dtype_white(img.dtype)
        if kind == "salt_pepper":
            out = img.copy()
            flipped = rng.random(img.shape, dtype=np.float32) < params["amount"]
            # which flipped values become salt: drawn only for the flipped ones (same law)
            salt = rng.random(int(flipped.sum()), dtype=np.float32) < params["salt_ratio"]
            out[flipped] = np.where(salt, white, 0).astype(img.dtype)
            return out
        # float32 throughout: the noise field dominates the cost, float64 would double it
        noise = rng.standard_normal(img.shape, dtype=np.float32)
        noise *= np.float32(params["sigma"] * white)
        x = img.astype(np.float32)
        if kind == "speckle":
            noise *= x * np.float32(1.0 / white)
        x += noise
        np.clip(x, 0.0, white, out=x)
        return x.astype(img.dtype)


class OfficialLowResolution(A.ImageOnlyTransform):
    """Low resolution as released: PIL bicubic down to (U_int[w/2, w], U_int[h/2, h]), drawn
    independently per axis, then back with nearest or bilinear (p 0.5 each).

    ``scale`` sets the lower end of the per-axis size (0.5 as released). PIL is used, not cv2,
    because its bicubic antialiases when downscaling and cv2's does not.
    """

    def __init__(self, scale: Sequence[float] = (0.5, 1.0), p: float = 0.7) -> None:
        super().__init__(p=p)
        self.scale = check_range(scale, "scale")

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale",)

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        h, w = params["shape"][:2]
        lo, hi = self.scale
        return {
            "size": (
                self.py_random.randint(max(1, int(w * lo)), max(1, int(w * hi))),
                self.py_random.randint(max(1, int(h * lo)), max(1, int(h * hi))),
            ),
            "upsample": "nearest" if self.py_random.random() < 0.5 else "bilinear",
        }

    def apply(
        self, img: np.ndarray, size: tuple[int, int], upsample: str, **params: Any
    ) -> np.ndarray:
        h, w = img.shape[:2]
        back = Image.Resampling.NEAREST if upsample == "nearest" else Image.Resampling.BILINEAR
        x = _channels_last(img)
        if img.dtype == np.uint8 and x.shape[-1] in (1, 3):
            pil = Image.fromarray(x[..., 0] if x.shape[-1] == 1 else x)
            small = pil.resize(tuple(size), Image.Resampling.BICUBIC)
            return _like(np.asarray(small.resize((w, h), back)), img)
        # other dtypes: PIL's 32-bit float mode, one channel at a time, in the native range
        planes = []
        for c in range(x.shape[-1]):
            pil = Image.fromarray(np.ascontiguousarray(x[..., c], dtype=np.float32), "F")
            small = pil.resize(tuple(size), Image.Resampling.BICUBIC)
            planes.append(np.asarray(small.resize((w, h), back)))
        return _like(to_dtype(np.stack(planes, axis=-1), img.dtype), img)


class JPEGCompression(A.ImageOnlyTransform):
    """JPEG re-encoding, quality ~ U_int[40, 100] as released.

    Encoded with PIL (libjpeg, default 4:2:0 subsampling) exactly as the release does; OpenCV's
    encoder gives byte-identical files but measured no faster here. uint16 / float images are
    quantised to 8 bit for the round trip and scaled back (JPEG baseline is 8-bit only).
    """

    def __init__(self, quality: Sequence[int] = (40, 100), p: float = 0.7) -> None:
        super().__init__(p=p)
        lo, hi = check_range(quality, "quality")
        if not 1 <= lo <= hi <= 100:
            raise ValueError(f"JPEGCompression quality=({lo}, {hi}): use integers in [1, 100].")
        self.quality = (int(lo), int(hi))

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("quality",)

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        return {"quality": self.py_random.randint(*self.quality)}

    def apply(self, img: np.ndarray, quality: int, **params: Any) -> np.ndarray:
        x = _channels_last(img)
        if x.shape[-1] not in (1, 3):
            raise ValueError(
                f"JPEGCompression got a {x.shape[-1]}-channel image; pass gray or RGB."
            )
        white = dtype_white(img.dtype)
        x8 = x if img.dtype == np.uint8 else to_dtype(x * (255.0 / white), np.uint8)
        with io.BytesIO() as buf:
            Image.fromarray(x8[..., 0] if x8.shape[-1] == 1 else x8).save(
                buf, format="JPEG", quality=int(quality)
            )
            buf.seek(0)
            with Image.open(buf) as decoded:
                dec = np.asarray(decoded)
        if img.dtype != np.uint8:
            dec = to_dtype(dec.astype(np.float32) * np.float32(white / 255.0), img.dtype)
        return _like(dec, img)


class Grayscale(A.ImageOnlyTransform):
    """Grayscale kept as 3 channels, like the release's ``convert("L").convert("RGB")``.

    uint8 uses PIL's exact fixed-point ITU-R 601-2 weights; other dtypes the same weights in
    float. Gray (1-channel) images are returned unchanged.
    """

    def __init__(self, p: float = 0.1) -> None:
        super().__init__(p=p)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        x = _channels_last(img)
        if x.shape[-1] < 3:
            return img
        if img.dtype == np.uint8:
            rgb = x[..., :3].astype(np.uint32)
            lum = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
            lum = lum.astype(np.uint8)
        else:
            lum = to_dtype(_luminance(x.astype(np.float32)), img.dtype)
        out = x.copy()
        out[..., :3] = lum[..., None]
        return out


# --------------------------------------------------------------------------- paper additions


class FilmGrain(A.ImageOnlyTransform):
    """Film grain: monochrome clumpy noise, strongest in the mid-tones as in silver emulsions.

    Args:
        sigma: grain strength, fraction of white.
        grain_size: grain clump size in pixels (noise drawn at 1/size resolution, upsampled).
    """

    def __init__(
        self,
        sigma: Sequence[float] = (0.02, 0.08),
        grain_size: Sequence[float] = (1.0, 2.5),
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        self.sigma = check_range(sigma, "sigma")
        self.grain_size = check_range(grain_size, "grain_size")

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("sigma", "grain_size")

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "sigma": self.py_random.uniform(*self.sigma),
            "grain_size": self.py_random.uniform(*self.grain_size),
            "noise_seed": self.py_random.getrandbits(63),
        }

    def apply(
        self, img: np.ndarray, sigma: float, grain_size: float, noise_seed: int, **params: Any
    ) -> np.ndarray:
        h, w = img.shape[:2]
        rng = np.random.default_rng(noise_seed)
        gh, gw = max(1, round(h / grain_size)), max(1, round(w / grain_size))
        grain = rng.standard_normal((gh, gw), dtype=np.float32)
        if (gh, gw) != (h, w):
            grain = cv2.resize(grain, (w, h), interpolation=cv2.INTER_LINEAR)
            grain *= np.float32(grain_size)  # upsampling averages the noise down; restore its std
        white = dtype_white(img.dtype)
        x = _channels_last(img).astype(np.float32)
        lum = _luminance(x) * np.float32(1.0 / white)
        weight = 0.4 + 2.4 * lum * (1.0 - lum)  # 0.4 in black and white, 1.0 in mid-gray
        x += (grain * weight * np.float32(sigma * white))[..., None]
        return _like(to_dtype(x, img.dtype), img)


class Fading(A.ImageOnlyTransform):
    """Fading and contrast loss: contrast shrinks toward the mean, blacks lift, colour drains.

    Args:
        contrast: factor on deviations from the mean luminance.
        lift: black level raised to this fraction of white.
        saturation: remaining colour saturation (RGB only).
    """

    def __init__(
        self,
        contrast: Sequence[float] = (0.5, 0.9),
        lift: Sequence[float] = (0.0, 0.15),
        saturation: Sequence[float] = (0.3, 0.9),
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        self.contrast = check_range(contrast, "contrast")
        self.lift = check_range(lift, "lift")
        self.saturation = check_range(saturation, "saturation")

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("contrast", "lift", "saturation")

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "contrast": self.py_random.uniform(*self.contrast),
            "lift": self.py_random.uniform(*self.lift),
            "saturation": self.py_random.uniform(*self.saturation),
        }

    def apply(
        self, img: np.ndarray, contrast: float, lift: float, saturation: float, **params: Any
    ) -> np.ndarray:
        white = dtype_white(img.dtype)
        x = _channels_last(img).astype(np.float32) * np.float32(1.0 / white)
        lum = _luminance(x)[..., None]
        if x.shape[-1] >= 3:
            x = lum + (x - lum) * np.float32(saturation)
        mean = np.float32(lum.mean())
        x = mean + (x - mean) * np.float32(contrast)
        x = np.float32(lift) + x * np.float32(1.0 - lift)
        return _like(to_dtype(x * np.float32(white), img.dtype), img)


class SepiaTone(A.ImageOnlyTransform):
    """Sepia toning: luminance mapped to a brown tone whose highlights stay near white.

    Needs 3 channels; gray images are returned unchanged.

    Args:
        strength: blend weight of the toned image.
        warmth: how far the tone's blue (and half as far its green) drops below red.
    """

    def __init__(
        self,
        strength: Sequence[float] = (0.4, 1.0),
        warmth: Sequence[float] = (0.25, 0.45),
        p: float = 0.3,
    ) -> None:
        super().__init__(p=p)
        self.strength = check_range(strength, "strength")
        self.warmth = check_range(warmth, "warmth")

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("strength", "warmth")

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "strength": self.py_random.uniform(*self.strength),
            "warmth": self.py_random.uniform(*self.warmth),
        }

    def apply(self, img: np.ndarray, strength: float, warmth: float, **params: Any) -> np.ndarray:
        x = _channels_last(img)
        if x.shape[-1] < 3:
            return img
        white = dtype_white(img.dtype)
        rgb = x[..., :3].astype(np.float32) * np.float32(1.0 / white)
        lum = _luminance(rgb)[..., None]
        tone = np.array([1.0, 1.0 - warmth / 2, 1.0 - warmth], np.float32)
        toned = lum * tone + lum**3 * (1.0 - tone)  # tinted shadows, neutral highlights
        rgb += (toned - rgb) * np.float32(strength)
        out = x.copy()
        out[..., :3] = to_dtype(rgb * np.float32(white), img.dtype)
        return _like(out, img)


class Yellowing(A.ImageOnlyTransform):
    """Yellowed paper: blue (and some green) absorbed, unevenly across the print.

    Needs 3 channels; gray images are returned unchanged.

    Args:
        strength: mean fraction of blue absorbed.
        unevenness: relative spatial variation of the strength (a smooth random field).
    """

    def __init__(
        self,
        strength: Sequence[float] = (0.05, 0.3),
        unevenness: Sequence[float] = (0.0, 0.5),
        p: float = 0.3,
    ) -> None:
        super().__init__(p=p)
        self.strength = check_range(strength, "strength")
        self.unevenness = check_range(unevenness, "unevenness")

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("strength", "unevenness")

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "strength": self.py_random.uniform(*self.strength),
            "unevenness": self.py_random.uniform(*self.unevenness),
            "noise_seed": self.py_random.getrandbits(63),
        }

    def apply(
        self, img: np.ndarray, strength: float, unevenness: float, noise_seed: int, **params: Any
    ) -> np.ndarray:
        x = _channels_last(img)
        if x.shape[-1] < 3:
            return img
        h, w = img.shape[:2]
        field = _smooth_noise(h, w, max(h, w) / 3, np.random.default_rng(noise_seed))
        s = np.clip(strength * (1.0 + unevenness * field), 0.0, 1.0)[..., None]
        gain = 1.0 - s * np.array([0.0, 0.35, 1.0], np.float32)
        out = x.copy()
        out[..., :3] = to_dtype(x[..., :3].astype(np.float32) * gain, img.dtype)
        return _like(out, img)


class Halftone(A.ImageOnlyTransform):
    """Halftone printing: a rotated dot screen thresholds each channel, blended with the image.

    Args:
        cell: dot pitch in pixels.
        angle: screen angle in degrees.
        strength: blend weight of the screened image.
    """

    def __init__(
        self,
        cell: Sequence[float] = (3.0, 6.0),
        angle: Sequence[float] = (0.0, 90.0),
        strength: Sequence[float] = (0.3, 0.8),
        p: float = 0.1,
    ) -> None:
        super().__init__(p=p)
        self.cell = check_range(cell, "cell")
        self.angle = check_range(angle, "angle")
        self.strength = check_range(strength, "strength")

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("cell", "angle", "strength")

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "cell": self.py_random.uniform(*self.cell),
            "angle": self.py_random.uniform(*self.angle),
            "strength": self.py_random.uniform(*self.strength),
        }

    def apply(
        self, img: np.ndarray, cell: float, angle: float, strength: float, **params: Any
    ) -> np.ndarray:
        h, w = img.shape[:2]
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        a = math.radians(angle)
        u = (xs * math.cos(a) + ys * math.sin(a)) * np.float32(2 * math.pi / cell)
        v = (-xs * math.sin(a) + ys * math.cos(a)) * np.float32(2 * math.pi / cell)
        screen = (np.cos(u) + np.cos(v)) * 0.25 + 0.5  # threshold in [0, 1], dots at the peaks
        white = dtype_white(img.dtype)
        x = _channels_last(img).astype(np.float32) * np.float32(1.0 / white)
        # a soft threshold (ramp 0.15 wide) avoids aliasing of dots smaller than a pixel
        dots = np.clip((x - screen[..., None]) / 0.15 + 0.5, 0.0, 1.0)
        x += (dots - x) * np.float32(strength)
        return _like(to_dtype(x * np.float32(white), img.dtype), img)


def _paper_texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Procedural photo-paper base (H x W x 3 in [0, 1]): warm off-white with cloudy fibres."""
    base = np.array([0.93, 0.89, 0.80], np.float32) + rng.uniform(-0.04, 0.04, 3).astype(np.float32)
    cloud = 0.05 * _smooth_noise(h, w, 12.0, rng) + 0.025 * _smooth_noise(h, w, 2.5, rng)
    return np.clip(base * (1.0 + cloud[..., None]), 0.0, 1.0)


class Blotches(OverlayTransform):
    """Blotches where the emulsion is gone: irregular feathered patches exposing paper texture.

    The damage mask marks every pixel the blotches changed.

    Args:
        num_blotches: how many per image, inclusive integer range.
        radius: blotch radius as a fraction of the image's shorter side.
        opacity: per-blotch opacity range.
        feather: edge softness in pixels.
    """

    def __init__(
        self,
        num_blotches: Sequence[int] = (1, 4),
        radius: Sequence[float] = (0.03, 0.12),
        opacity: Sequence[float] = (0.6, 1.0),
        feather: Sequence[float] = (0.5, 3.0),
        p: float = 0.3,
    ) -> None:
        super().__init__(p=p)
        self.num_blotches = check_range(num_blotches, "num_blotches")
        self.radius = check_range(radius, "radius")
        self.opacity = check_range(opacity, "opacity")
        self.feather = check_range(feather, "feather")

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("num_blotches", "radius", "opacity", "feather")

    def draw(self, h: int, w: int) -> tuple[Layer, dict[str, Any]]:
        rnd, rng = self.py_random, self.random_generator
        n = rnd.randint(int(self.num_blotches[0]), int(self.num_blotches[1]))
        layer = Layer(h, w, channels=3)
        paper = _paper_texture(h, w, rng)
        for _ in range(n):
            radius = max(2.0, rnd.uniform(*self.radius) * min(h, w))
            cx, cy = rnd.uniform(0, w), rnd.uniform(0, h)
            x0, x1 = max(0, int(cx - 1.6 * radius)), min(w, int(cx + 1.6 * radius) + 1)
            y0, y1 = max(0, int(cy - 1.6 * radius)), min(h, int(cy + 1.6 * radius) + 1)
            if x0 >= x1 or y0 >= y1:
                continue
            ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            r = np.hypot(xs - cx, ys - cy) / radius
            # a disc whose edge is pushed in and out by smooth noise: an irregular outline
            wobble = _smooth_noise(y1 - y0, x1 - x0, radius / 2, rng)
            shape = ((1.0 - r + 0.35 * wobble) > 0.0).astype(np.float32)
            sigma = rnd.uniform(*self.feather)
            shape = cv2.GaussianBlur(shape, (0, 0), sigma) if sigma > 0.3 else shape
            coverage = shape * np.float32(rnd.uniform(*self.opacity))
            layer.paint(coverage, paper, (y0, y1, x0, x1))
        return layer, {"num_blotches": n}


class AddHoles(A.DualTransform):
    """Irregular white holes for the scratch mapping's training data (official: p=0.5 no holes).

    The release paints holes from an unreleased mask file white, ``img * (1 - m) + white * m``;
    here the masks are drawn procedurally as random thick strokes with round joints (free-form
    masks). The mask marks the whole hole, also where the photo was already white: a hole loses
    the content whatever its colour, and the mapping is trained to fill all of it.

    Args:
        num_strokes: strokes per image, inclusive integer range.
        vertices: vertices per stroke, inclusive integer range.
        width: stroke width as a fraction of the shorter side.
        segment: segment length as a fraction of the shorter side.
    """

    def __init__(
        self,
        num_strokes: Sequence[int] = (1, 4),
        vertices: Sequence[int] = (2, 8),
        width: Sequence[float] = (0.02, 0.08),
        segment: Sequence[float] = (0.05, 0.25),
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        self.num_strokes = check_range(num_strokes, "num_strokes")
        self.vertices = check_range(vertices, "vertices")
        self.width = check_range(width, "width")
        self.segment = check_range(segment, "segment")

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("num_strokes", "vertices", "width", "segment")

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        h, w = params["shape"][:2]
        rnd = self.py_random
        short = min(h, w)
        holes = np.zeros((h, w), np.uint8)
        n = rnd.randint(int(self.num_strokes[0]), int(self.num_strokes[1]))
        for _ in range(n):
            x, y = rnd.uniform(0, w), rnd.uniform(0, h)
            thickness = max(1, round(rnd.uniform(*self.width) * short))
            heading = rnd.uniform(0, 2 * math.pi)
            cv2.circle(holes, (round(x), round(y)), thickness // 2, 1, -1)
            for _ in range(rnd.randint(int(self.vertices[0]), int(self.vertices[1]))):
                heading += rnd.uniform(-math.pi / 2, math.pi / 2)
                step = rnd.uniform(*self.segment) * short
                nx = min(max(x + step * math.cos(heading), 0), w - 1)
                ny = min(max(y + step * math.sin(heading), 0), h - 1)
                cv2.line(holes, (round(x), round(y)), (round(nx), round(ny)), 1, thickness)
                cv2.circle(holes, (round(nx), round(ny)), thickness // 2, 1, -1)
                x, y = nx, ny
        holes = holes.astype(bool)
        return {"holes": holes, "num_strokes": n, "hole_fraction": float(holes.mean())}

    def apply(self, img: np.ndarray, holes: np.ndarray, **params: Any) -> np.ndarray:
        out = img.copy()
        out[holes] = dtype_white(img.dtype)
        return out

    def apply_to_mask(self, mask: np.ndarray, holes: np.ndarray, **params: Any) -> np.ndarray:
        out = mask.copy()
        out[holes] = 1
        return out

    def apply_to_bboxes(self, bboxes: np.ndarray, **params: Any) -> np.ndarray:
        return bboxes

    def apply_to_keypoints(self, keypoints: np.ndarray, **params: Any) -> np.ndarray:
        return keypoints


# --------------------------------------------------------------------------- presets


def _official_tasks(p: float = 0.7, **overrides: A.BasicTransform) -> A.RandomOrder:
    """The release's four tasks, each with probability ``p``, in a fresh random order per call."""
    tasks = {
        "blur": OfficialBlur(p=p),
        "noise": OfficialNoise(p=p),
        "lowres": OfficialLowResolution(p=p),
        "jpeg": JPEGCompression(p=p),
    }
    tasks.update(overrides)
    return A.RandomOrder(list(tasks.values()), n=len(tasks), replace=False, p=1.0)


def _preset(name: str, gray: bool) -> list[A.BasicTransform]:
    """The transforms of one preset (before the optional holes)."""
    gray_t = [Grayscale(p=0.1)] if gray else []
    if name == "official":
        return [_official_tasks(), *gray_t]
    if name == "paper":
        return [
            Fading(p=0.5),
            SepiaTone(p=0.3),
            Yellowing(p=0.3),
            FilmGrain(p=0.5),
            _official_tasks(),
            Halftone(p=0.1),
            *gray_t,
            Blotches(p=0.3),
            AddCreases(p=0.2),
            AddScratches(p=0.6),
            AddDust(p=0.5),
        ]
    if name == "mild":
        return [
            Fading(contrast=(0.75, 0.95), lift=(0.0, 0.06), saturation=(0.6, 0.95), p=0.3),
            SepiaTone(strength=(0.2, 0.6), p=0.2),
            FilmGrain(sigma=(0.01, 0.03), p=0.3),
            _official_tasks(
                p=0.5,
                blur=OfficialBlur(sigma=(1.0, 2.0), p=0.5),
                noise=OfficialNoise(sigma=(5 / 255, 20 / 255), amount=(0.0, 0.003), p=0.5),
                lowres=OfficialLowResolution(scale=(0.75, 1.0), p=0.5),
                jpeg=JPEGCompression(quality=(60, 100), p=0.5),
            ),
            *gray_t,
            AddScratches(num_scratches=(1, 3), width=(1, 2), opacity=(0.3, 0.7), p=0.4),
            AddDust(num_specks=(3, 15), p=0.3),
        ]
    if name == "severe":
        return [
            Fading(contrast=(0.35, 0.7), lift=(0.05, 0.25), saturation=(0.1, 0.6), p=0.8),
            SepiaTone(strength=(0.6, 1.0), p=0.5),
            Yellowing(strength=(0.2, 0.5), p=0.5),
            FilmGrain(sigma=(0.04, 0.12), grain_size=(1.5, 3.0), p=0.8),
            _official_tasks(p=0.9),
            Halftone(p=0.15),
            *gray_t,
            Blotches(num_blotches=(2, 6), radius=(0.05, 0.18), p=0.6),
            AddCreases(num_creases=(1, 3), p=0.5),
            AddScratches(num_scratches=(3, 10), width=(1, 5), p=0.9),
            AddDust(num_specks=(20, 80), radius=(0.5, 4.0), p=0.8),
        ]
    if name == "rstandin":
        # fixed order, no halftone / salt-and-pepper: a different look from "paper", so a
        # domain discriminator has something to tell apart; still synthetic, not real photos
        return [
            SepiaTone(strength=(0.5, 1.0), warmth=(0.3, 0.5), p=0.8),
            Fading(contrast=(0.5, 0.8), lift=(0.03, 0.2), p=0.9),
            Yellowing(p=0.4),
            OfficialBlur(kernel_sizes=(3, 5), sigma=(0.8, 2.0), p=0.6),
            FilmGrain(sigma=(0.03, 0.09), grain_size=(1.2, 2.5), p=0.9),
            JPEGCompression(quality=(50, 95), p=0.5),
            AddScratches(num_scratches=(1, 5), p=0.7),
            AddDust(num_specks=(10, 50), p=0.6),
        ]
    raise ValueError(f"Unknown degradation preset '{name}'; choose one of {', '.join(PRESETS)}.")


def build_degradation(
    preset: str,
    *,
    holes: bool = False,
    seed: int | None = None,
    gray: bool = True,
    save_applied_params: bool = False,
) -> A.Compose:
    """Build a degradation pipeline; call it as ``compose(image=img, mask=mask)``.

    Args:
        preset: one of ``PRESETS`` (see the module docstring).
        holes: append irregular white holes (p=0.5), the scratch mapping's training damage.
        seed: seed of the pipeline's RNGs (None: random). Reseed later with
            ``revive.data.seeding.seed_compose``, not ``set_random_seed`` (see that module).
        gray: include the 10 % grayscale step. Paired datasets that grayscale clean and degraded
            together (as the release does) pass False and do it themselves.
        save_applied_params: record each applied transform's drawn parameters in
            ``out["applied_transforms"]``.
    """
    transforms = _preset(preset, gray)
    if holes:
        transforms.append(AddHoles(p=0.5))
    return seed_compose(A.Compose(transforms, save_applied_params=save_applied_params), seed)
