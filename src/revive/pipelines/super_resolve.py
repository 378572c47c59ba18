"""Reference-based x4 super-resolution with TTSR on photos of any size.

The LR image needs no padding: every TTSR stage works on exact x1 / x2 / x4 multiples of the LR
size (the strided convs only bring 2x and 4x maps back down). The Ref is cropped to a multiple of
4 (at most 3 pixel rows and columns, as the official test code) and must hold at least one 3x3
patch of the 1/4-scale texture features. The relevance search is tiled, so large Ref images fit.

Weights come from a TTSRModule checkpoint (``revive-train experiment=ttsr/...``) or an official
``TTSR.pt`` / ``TTSR-rec.pt`` (converted on load). There is no random-weight fallback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from revive.convert.ttsr import load_official_ttsr
from revive.data.datasets import to_tensor
from revive.data.sr import SCALE, bicubic, crop_to_multiple, down_up
from revive.models.stages import (
    UnsafeCheckpointError,
    freeze,
    read_checkpoint,
    submodule_state,
)
from revive.nets.ttsr import TTSR

log = logging.getLogger(__name__)

MIN_REF_SIDE = 3 * SCALE  # one 3x3 patch of the LTE's 1/4-scale features
PRECISIONS = ("fp32", "bf16")
EXPECTED = "TTSR (a .ckpt of revive-train experiment=ttsr/..., or the official TTSR.pt)"


def load_ttsr(path: str | Path, **search: int) -> TTSR:
    """A frozen TTSR from a TTSRModule checkpoint or an official ``TTSR.pt``.

    :param search: ``query_chunk`` / ``key_chunk`` for the relevance search (memory per tile).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint='{path}' does not exist. Give a TTSRModule .ckpt (revive-train "
            "experiment=ttsr/small writes checkpoints/last.ckpt) or the official TTSR.pt."
        )
    try:
        state = read_checkpoint(path, EXPECTED)
    except UnsafeCheckpointError:
        raise
    except ValueError:
        return freeze(_load_official(path, search))
    hp = state["hyper_parameters"]
    net = hp.get("net")
    weights = submodule_state(state["state_dict"], "ttsr")
    if not isinstance(net, dict) or "n_feats" not in net or not weights:
        modules = sorted({key.split(".", 1)[0] for key in state["state_dict"]})
        raise ValueError(
            f"'{path}' is a checkpoint of another model (modules: {', '.join(modules)}), not TTSR. "
            "Use a checkpoint of revive-train experiment=ttsr/... or the official TTSR.pt."
        )
    model = TTSR(**{**net, **search})
    model.load_state_dict(weights)
    log.info("Loaded TTSR (n_feats=%s) from %s", net["n_feats"], path)
    return freeze(model)


def _load_official(path: Path, search: dict[str, int]) -> TTSR:
    """The official TTSR.pt (paper sizes), or a clear error when the file is neither kind."""
    try:
        weights = load_official_ttsr(path)
    except Exception as err:  # noqa: BLE001 - unpickling and key errors of any type mean "not TTSR"
        raise ValueError(
            f"'{path}' is neither a TTSRModule checkpoint nor an official TTSR.pt / TTSR-rec.pt "
            f"({type(err).__name__}). Give checkpoint= one of those."
        ) from err
    model = TTSR(**search)
    model.load_state_dict(weights)
    log.info("Loaded the official TTSR weights from %s", path)
    return model


def prepare_ref(ref: np.ndarray, name: str) -> np.ndarray:
    """The Ref cropped to a multiple of 4; a Ref too small for one texture patch is refused."""
    h, w = ref.shape[:2]
    if min(h, w) < MIN_REF_SIDE:
        raise ValueError(
            f"Ref image '{name}' is {w}x{h}; it must be at least {MIN_REF_SIDE}x{MIN_REF_SIDE} "
            "(one 3x3 patch of the 1/4-scale texture features). Use a larger reference."
        )
    return crop_to_multiple(ref)


def attention_picture(S: np.ndarray) -> np.ndarray:
    """The soft-attention map S (h, w) as a uint8 gray picture at the SR size (4h, 4w).

    S is a cosine relevance; 0 (black) is no match, 1 (white) a perfect one.
    """
    levels = (np.clip(S, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return np.repeat(np.repeat(levels, SCALE, axis=0), SCALE, axis=1)


@dataclass
class SuperResolver:
    """TTSR ready to run on uint8 RGB images: ``super_resolve(lr, ref) -> (sr, S)``."""

    model: TTSR
    precision: str = "fp32"
    channels_last: bool = True  # same output; oneDNN skips reordering the 4x feature maps

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision='{self.precision}' is unknown; use one of {PRECISIONS}.")
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, precision: str = "fp32", **search: int
    ) -> SuperResolver:
        """Load the weights (see ``load_ttsr``) and wrap them."""
        return cls(load_ttsr(path, **search), precision)

    @torch.no_grad()
    def super_resolve(
        self, lr: np.ndarray, ref: np.ndarray, ref_name: str = "ref"
    ) -> tuple[np.ndarray, np.ndarray]:
        """x4 SR of a uint8 (h, w, 3) image with textures from ``ref``.

        :return: SR uint8 (4h, 4w, 3) and the soft-attention map S, float (h, w).
        """
        ref = prepare_ref(ref, ref_name)
        h, w = lr.shape[:2]
        inputs = [lr, bicubic(lr, SCALE * w, SCALE * h), ref, down_up(ref)]
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        lr_t, lr_up, ref_t, ref_down_up = (
            to_tensor(x)[None].contiguous(memory_format=layout) for x in inputs
        )
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = self.model(lr_t, lr_up, ref_t, ref_down_up, keep_textures=False)
        sr = ((out.sr[0].float().clamp(-1, 1) + 1) * 127.5).round().byte()
        return sr.permute(1, 2, 0).numpy(), out.S[0, 0].float().numpy()
