"""Scratch, dust and crease overlays that draw on a photo and write the exact damage mask.

Every transform here is an albumentations 2 ``DualTransform``: call it (or a ``Compose`` holding
it) as ``t(image=img, mask=mask)``. The image may be gray (H x W or H x W x 1) or RGB, uint8,
uint16 or float32 in [0, 1]; brightness values are fractions of the dtype's white (255, 65535,
1.0). The mask is H x W uint8 in {0, 1} and may already hold damage from an earlier transform;
the output mask is ``input mask OR changed``, where ``changed`` is exactly
``np.any(out != in, axis=-1)``: a drawn pixel whose blended value rounds back to the original is
*not* marked, so the scratch detector never learns from invisible damage.

All randomness is drawn in ``get_params_dependent_on_data`` from ``self.py_random`` /
``self.random_generator``, so ``A.Compose(..., seed=s)`` and ``compose.set_random_seed(s)``
reproduce the overlays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

SCRATCH_KINDS = ("line", "curve", "crack")

# cv2 drawing with sub-pixel precision: coordinates are fixed point with this many fraction bits.
_SHIFT = 4
_SCALE = 1 << _SHIFT


def dtype_white(dtype: np.dtype | type) -> float:
    """Value of white for an image dtype: 255 (uint8), 65535 (uint16), 1.0 (float)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if np.issubdtype(dtype, np.floating):
        return 1.0
    raise TypeError(
        f"Image dtype {dtype} is not supported; convert it to uint8, uint16 or float32 in [0, 1]."
    )


def to_dtype(x: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """Round (integer dtypes) and clip a float array back into ``dtype``'s range."""
    dtype = np.dtype(dtype)
    white = dtype_white(dtype)
    if np.issubdtype(dtype, np.integer):
        x = np.rint(x)
    return np.clip(x, 0.0, white).astype(dtype, copy=False)


def check_range(value: Sequence[float], name: str) -> tuple[float, float]:
    """Validate a (low, high) constructor range; lists come back from ``A.from_dict``."""
    lo, hi = value
    if lo > hi:
        raise ValueError(f"{name}=({lo}, {hi}): the low end must not exceed the high end.")
    return (lo, hi)


def blend_pixels(
    img: np.ndarray, alpha: np.ndarray, color: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Blend a premultiplied layer onto the pixels it covers: ``img * (1 - alpha) + color * white``.

    ``alpha`` is H x W float32 in [0, 1]; ``color`` is the premultiplied colour in [0, 1], either
    H x W (gray, broadcast over channels) or H x W x 3 (averaged for 1-channel images). Returns
    the flat indices of the covered pixels (``alpha > 0``) and their new values (N x C, img dtype).
    Only covered pixels are computed: overlays touch a few percent of the image.
    """
    idx = np.flatnonzero(alpha)
    channels = 1 if img.ndim == 2 else img.shape[-1]
    src = img.reshape(-1, channels)[idx].astype(np.float32)
    col = color.reshape(-1, 1 if color.ndim == 2 else color.shape[-1])[idx]
    if col.shape[-1] not in (1, channels):
        if channels != 1:
            raise ValueError(
                f"A {col.shape[-1]}-channel overlay cannot be blended onto a "
                f"{channels}-channel image; pass a gray or RGB image."
            )
        col = col.mean(axis=-1, keepdims=True)
    a = alpha.reshape(-1)[idx][:, None]
    src *= 1.0 - a
    src += col * np.float32(dtype_white(img.dtype))
    return idx, to_dtype(src, img.dtype)


def blend_layer(img: np.ndarray, alpha: np.ndarray, color: np.ndarray) -> np.ndarray:
    """``img`` with the layer composited on (see ``blend_pixels``); uncovered pixels are exact."""
    out = np.array(img, copy=True, order="C")
    idx, values = blend_pixels(img, alpha, color)
    out.reshape(len(alpha.reshape(-1)), -1)[idx] = values
    return out


class Layer:
    """A premultiplied RGBA-like layer being painted: alpha and colour, composited "over"."""

    def __init__(self, h: int, w: int, channels: int = 1) -> None:
        self.alpha = np.zeros((h, w), np.float32)
        shape = (h, w) if channels == 1 else (h, w, channels)
        self.color = np.zeros(shape, np.float32)

    def paint(
        self,
        coverage: np.ndarray,
        value: float | np.ndarray,
        box: tuple[int, int, int, int] | None = None,
    ) -> None:
        """Composite a stroke of ``coverage`` in [0, 1] and ``value`` over the layer.

        ``coverage`` covers the whole layer, or only ``box = (y0, y1, x0, x1)`` when given (cheap
        for small strokes). ``value`` is a scalar, an RGB triple or a full-size H x W x 3 array.
        """
        h, w = self.alpha.shape
        y0, y1, x0, x1 = box if box is not None else (0, h, 0, w)
        alpha = self.alpha[y0:y1, x0:x1]
        color = self.color[y0:y1, x0:x1]
        value = np.asarray(value, np.float32)
        if value.ndim == 3:
            value = value[y0:y1, x0:x1]
        keep = 1.0 - coverage
        alpha *= keep
        alpha += coverage
        if color.ndim == 3:
            color *= keep[..., None]
            color += coverage[..., None] * value
        else:
            color *= keep
            color += coverage * value


class OverlayTransform(A.DualTransform):
    """Base for overlays: subclasses paint a ``Layer``; this class blends it and writes the mask.

    The changed-pixel mask is computed in ``get_params_dependent_on_data`` from the image being
    transformed, with the same blend ``apply`` performs, so mask and image agree exactly.
    """

    def draw(self, h: int, w: int) -> tuple[Layer, dict[str, Any]]:
        """Paint this transform's layer for an h x w image; return it and loggable parameters."""
        raise NotImplementedError

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        h, w = params["shape"][:2]
        layer, info = self.draw(h, w)
        image = data.get("image")
        if image is None and data.get("images") is not None:
            image = data["images"][0]
        if image is not None:
            idx, values = blend_pixels(image, layer.alpha, layer.color)
            before = image.reshape(len(layer.alpha.reshape(-1)), -1)[idx]
            changed = np.zeros(layer.alpha.shape, bool)
            changed.reshape(-1)[idx] = (values != before).any(axis=-1)
        else:
            changed = layer.alpha > 0
        return {"alpha": layer.alpha, "color": layer.color, "changed": changed, **info}

    def apply(
        self, img: np.ndarray, alpha: np.ndarray, color: np.ndarray, **params: Any
    ) -> np.ndarray:
        return blend_layer(img, alpha, color)

    def apply_to_mask(self, mask: np.ndarray, changed: np.ndarray, **params: Any) -> np.ndarray:
        if mask.shape[:2] != changed.shape:
            raise ValueError(
                f"Mask is {mask.shape[:2]} but the image is {changed.shape}; pass an H x W mask "
                "of the image's size."
            )
        out = mask.copy()
        out[changed] = 1
        return out

    def apply_to_bboxes(self, bboxes: np.ndarray, **params: Any) -> np.ndarray:
        return bboxes

    def apply_to_keypoints(self, keypoints: np.ndarray, **params: Any) -> np.ndarray:
        return keypoints

    def _value(self, bright_range: tuple[float, float], dark_range: tuple[float, float]) -> float:
        """Brightness of one mark: bright (emulsion scraped off) with p_bright, else dark."""
        lo, hi = bright_range if self.py_random.random() < self.p_bright else dark_range
        return self.py_random.uniform(lo, hi)


def _stroke(
    h: int, w: int, points: np.ndarray, width: int
) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """Anti-aliased coverage (float32 in [0, 1]) of a polyline, on its bounding box in the image.

    Returns ``(coverage, (y0, y1, x0, x1))``, or None when the line misses the image.
    """
    pad = int(width) + 2
    x0 = max(0, int(np.floor(points[:, 0].min())) - pad)
    x1 = min(w, int(np.ceil(points[:, 0].max())) + pad + 1)
    y0 = max(0, int(np.floor(points[:, 1].min())) - pad)
    y1 = min(h, int(np.ceil(points[:, 1].max())) + pad + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pts = np.round((points - (x0, y0)) * _SCALE).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [pts], False, 255, max(1, int(width)), cv2.LINE_AA, _SHIFT)
    return canvas.astype(np.float32) * np.float32(1.0 / 255.0), (y0, y1, x0, x1)


class AddScratches(OverlayTransform):
    """Scratches on the print: straight lines, curves (Bezier or sine) and random-walk cracks.

    Args:
        num_scratches: how many scratches per image, inclusive integer range.
        width: stroke width in pixels, inclusive integer range (cracks use at most 2).
        length: scratch length as a fraction of the image's longer side.
        opacity: per-scratch opacity range.
        p_bright: probability that a scratch is bright (scraped emulsion) rather than dark.
        bright: brightness range of bright scratches, fraction of white.
        dark: brightness range of dark scratches, fraction of white.
        kinds: subset of ``("line", "curve", "crack")`` drawn with equal probability.
    """

    def __init__(
        self,
        num_scratches: Sequence[int] = (1, 6),
        width: Sequence[int] = (1, 4),
        length: Sequence[float] = (0.2, 1.0),
        opacity: Sequence[float] = (0.4, 1.0),
        p_bright: float = 0.75,
        bright: Sequence[float] = (0.75, 1.0),
        dark: Sequence[float] = (0.0, 0.25),
        kinds: Sequence[str] = SCRATCH_KINDS,
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        self.num_scratches = check_range(num_scratches, "num_scratches")
        self.width = check_range(width, "width")
        self.length = check_range(length, "length")
        self.opacity = check_range(opacity, "opacity")
        self.p_bright = p_bright
        self.bright = check_range(bright, "bright")
        self.dark = check_range(dark, "dark")
        unknown = set(kinds) - set(SCRATCH_KINDS)
        if unknown or not kinds:
            raise ValueError(
                f"AddScratches kinds={list(kinds)}: use a non-empty subset of {list(SCRATCH_KINDS)}."
            )
        self.kinds = tuple(kinds)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return (
            "num_scratches",
            "width",
            "length",
            "opacity",
            "p_bright",
            "bright",
            "dark",
            "kinds",
        )

    def draw(self, h: int, w: int) -> tuple[Layer, dict[str, Any]]:
        rnd = self.py_random
        layer = Layer(h, w)
        n = rnd.randint(int(self.num_scratches[0]), int(self.num_scratches[1]))
        kinds = [rnd.choice(self.kinds) for _ in range(n)]
        for kind in kinds:
            points, width = self._shape(kind, h, w)
            opacity, value = rnd.uniform(*self.opacity), self._value(self.bright, self.dark)
            stroke = _stroke(h, w, points, width)
            if stroke is not None:
                layer.paint(stroke[0] * np.float32(opacity), value, stroke[1])
        return layer, {"num_scratches": n, "kinds": kinds}

    def _shape(self, kind: str, h: int, w: int) -> tuple[np.ndarray, int]:
        """Polyline points (N x 2, x/y) and stroke width of one scratch."""
        rnd = self.py_random
        size = max(h, w)
        length = rnd.uniform(*self.length) * size
        width = rnd.randint(int(self.width[0]), int(self.width[1]))
        center = np.array([rnd.uniform(0, w), rnd.uniform(0, h)])
        angle = rnd.uniform(0, math.pi)
        direction = np.array([math.cos(angle), math.sin(angle)])
        normal = np.array([-direction[1], direction[0]])
        if kind == "line":
            t = np.array([-0.5, 0.5])[:, None]
            return center + t * length * direction, width
        if kind == "curve":
            t = np.linspace(0.0, 1.0, max(16, int(length / 4)))[:, None]
            if rnd.random() < 0.5:
                # cubic Bezier: two control points pushed off the chord
                p0 = center - 0.5 * length * direction
                p3 = center + 0.5 * length * direction
                p1 = p0 + length / 3 * direction + rnd.gauss(0, 0.25) * length * normal
                p2 = p0 + 2 * length / 3 * direction + rnd.gauss(0, 0.25) * length * normal
                pts = (
                    (1 - t) ** 3 * p0
                    + 3 * (1 - t) ** 2 * t * p1
                    + 3 * (1 - t) * t**2 * p2
                    + t**3 * p3
                )
                return pts, width
            amplitude = rnd.uniform(0.01, 0.06) * length
            cycles = rnd.uniform(0.5, 3.0)
            phase = rnd.uniform(0, 2 * math.pi)
            offset = amplitude * np.sin(2 * math.pi * cycles * t + phase)
            return center + (t - 0.5) * length * direction + offset * normal, width
        return self._crack(center, angle, length), min(width, 2)

    def _crack(self, start: np.ndarray, angle: float, length: float) -> np.ndarray:
        """Random walk with a wandering heading; branches are drawn as extra walks joined here."""
        rng = self.random_generator
        step = max(2.0, length / 40)
        n = max(4, int(length / step))
        headings = angle + np.cumsum(rng.normal(0.0, 0.35, n))
        steps = step * np.stack([np.cos(headings), np.sin(headings)], axis=1)
        main = start + np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
        if self.py_random.random() < 0.5:
            # a branch leaves from a point on the crack and returns along itself, so one
            # polyline draws both without a visible connecting segment
            k = self.py_random.randint(1, n - 1)
            m = max(3, n // 3)
            turn = self.py_random.choice((-1, 1)) * self.py_random.uniform(0.3, 1.2)
            b_head = headings[k] + turn + np.cumsum(rng.normal(0.0, 0.35, m))
            b_steps = step * np.stack([np.cos(b_head), np.sin(b_head)], axis=1)
            branch = main[k] + np.cumsum(b_steps, axis=0)
            main = np.concatenate([main[: k + 1], branch, branch[-2::-1], main[k:]])
        return main


class AddDust(OverlayTransform):
    """Dust on the print: small specks and irregular blobs, bright or dark.

    Args:
        num_specks: how many specks per image, inclusive integer range.
        radius: speck radius in pixels.
        p_blob: probability that a speck is an irregular blob (a cluster of overlapping ellipses).
        opacity: per-speck opacity range.
        p_bright: probability that a speck is bright rather than dark.
        bright: brightness range of bright specks, fraction of white.
        dark: brightness range of dark specks, fraction of white.
    """

    def __init__(
        self,
        num_specks: Sequence[int] = (5, 40),
        radius: Sequence[float] = (0.5, 3.0),
        p_blob: float = 0.3,
        opacity: Sequence[float] = (0.5, 1.0),
        p_bright: float = 0.5,
        bright: Sequence[float] = (0.8, 1.0),
        dark: Sequence[float] = (0.0, 0.2),
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        self.num_specks = check_range(num_specks, "num_specks")
        self.radius = check_range(radius, "radius")
        self.p_blob = p_blob
        self.opacity = check_range(opacity, "opacity")
        self.p_bright = p_bright
        self.bright = check_range(bright, "bright")
        self.dark = check_range(dark, "dark")

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("num_specks", "radius", "p_blob", "opacity", "p_bright", "bright", "dark")

    def draw(self, h: int, w: int) -> tuple[Layer, dict[str, Any]]:
        rnd = self.py_random
        n = rnd.randint(int(self.num_specks[0]), int(self.num_specks[1]))
        # one canvas per polarity keeps the cost at two full-size blends however many specks
        canvases = {True: np.zeros((h, w), np.uint8), False: np.zeros((h, w), np.uint8)}
        for _ in range(n):
            bright = rnd.random() < self.p_bright
            level = int(round(255 * rnd.uniform(*self.opacity)))
            x, y = rnd.uniform(0, w), rnd.uniform(0, h)
            parts = rnd.randint(2, 5) if rnd.random() < self.p_blob else 1
            for _ in range(parts):
                r = rnd.uniform(*self.radius)
                axes = (
                    max(1, round(r * _SCALE)),
                    max(1, round(r * rnd.uniform(0.4, 1.0) * _SCALE)),
                )
                cx = round((x + rnd.uniform(-r, r) * (parts > 1)) * _SCALE)
                cy = round((y + rnd.uniform(-r, r) * (parts > 1)) * _SCALE)
                cv2.ellipse(
                    canvases[bright],
                    (cx, cy),
                    axes,
                    rnd.uniform(0, 180),
                    0,
                    360,
                    level,
                    -1,
                    cv2.LINE_AA,
                    _SHIFT,
                )
        layer = Layer(h, w)
        layer.paint(canvases[False].astype(np.float32) / 255.0, rnd.uniform(*self.dark))
        layer.paint(canvases[True].astype(np.float32) / 255.0, rnd.uniform(*self.bright))
        return layer, {"num_specks": n}


class AddCreases(OverlayTransform):
    """Fold creases: a long, slightly wavy line with a shaded band (dark on one side, bright on
    the other, as light falls across a fold) and a thin cracked-emulsion line along its ridge.

    Args:
        num_creases: how many creases per image, inclusive integer range.
        band_width: half-width of the shaded band in pixels.
        shading: strength of the band's shading (blend weight toward black / white).
        line_width: width of the ridge line in pixels, inclusive integer range.
        line_opacity: opacity of the ridge line.
        p_bright: probability that the ridge line is bright rather than dark.
        bright: brightness range of a bright ridge, fraction of white.
        dark: brightness range of a dark ridge, fraction of white.
    """

    def __init__(
        self,
        num_creases: Sequence[int] = (1, 2),
        band_width: Sequence[float] = (2.0, 6.0),
        shading: Sequence[float] = (0.04, 0.15),
        line_width: Sequence[int] = (1, 2),
        line_opacity: Sequence[float] = (0.3, 0.9),
        p_bright: float = 0.7,
        bright: Sequence[float] = (0.75, 1.0),
        dark: Sequence[float] = (0.0, 0.3),
        p: float = 0.3,
    ) -> None:
        super().__init__(p=p)
        self.num_creases = check_range(num_creases, "num_creases")
        self.band_width = check_range(band_width, "band_width")
        self.shading = check_range(shading, "shading")
        self.line_width = check_range(line_width, "line_width")
        self.line_opacity = check_range(line_opacity, "line_opacity")
        self.p_bright = p_bright
        self.bright = check_range(bright, "bright")
        self.dark = check_range(dark, "dark")

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return (
            "num_creases",
            "band_width",
            "shading",
            "line_width",
            "line_opacity",
            "p_bright",
            "bright",
            "dark",
        )

    def draw(self, h: int, w: int) -> tuple[Layer, dict[str, Any]]:
        rnd = self.py_random
        layer = Layer(h, w)
        n = rnd.randint(int(self.num_creases[0]), int(self.num_creases[1]))
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        for _ in range(n):
            cx, cy = rnd.uniform(0.2 * w, 0.8 * w), rnd.uniform(0.2 * h, 0.8 * h)
            angle = rnd.uniform(0, math.pi)
            dx, dy = math.cos(angle), math.sin(angle)
            along = (xs - cx) * dx + (ys - cy) * dy
            amplitude = rnd.uniform(0.0, 0.01) * max(h, w)
            period = rnd.uniform(0.3, 1.0) * max(h, w)
            phase = rnd.uniform(0, 2 * math.pi)
            # signed distance to a gently waving fold line
            dist = (ys - cy) * dx - (xs - cx) * dy
            dist -= amplitude * np.sin(2 * math.pi * along / period + phase)
            band = rnd.uniform(*self.band_width)
            profile = np.exp(-((dist / band) ** 2)) * np.float32(rnd.uniform(*self.shading))
            profile[np.abs(dist) > 3 * band] = 0.0
            dark_side = rnd.random() < 0.5
            layer.paint(np.where((dist < 0) == dark_side, profile, 0.0), 0.0)
            layer.paint(np.where((dist < 0) != dark_side, profile, 0.0), 1.0)
            t = np.linspace(-1.5, 1.5, 64)[:, None] * max(h, w)
            wave = amplitude * np.sin(2 * math.pi * t / period + phase)
            ridge = np.array([cx, cy]) + t * np.array([dx, dy]) + wave * np.array([-dy, dx])
            width = rnd.randint(*map(int, self.line_width))
            opacity, value = rnd.uniform(*self.line_opacity), self._value(self.bright, self.dark)
            stroke = _stroke(h, w, ridge, width)
            if stroke is not None:
                layer.paint(stroke[0] * np.float32(opacity), value, stroke[1])
        return layer, {"num_creases": n}
