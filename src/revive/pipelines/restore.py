"""Restore old photos end to end: scratch detection, VAE1 encoder, mapping, VAE2 decoder.

Works on any image size (padded to the networks' multiple, cropped back), gray / RGBA / 16-bit
input (``imageio.read_image`` converts), and large photos: the partial nonlocal attention never
builds the hw x hw matrix. A stage after the global restoration (the paper's face refinement)
plugs in through ``OldPhotoRestorer.post_stages``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from revive.models.mapping import Restorer
from revive.models.stages import freeze, load_detector, read_checkpoint, submodule_state
from revive.nets.unet import ScratchUNet

log = logging.getLogger(__name__)

CHECKPOINT_FILES = {
    "detector": "detector.ckpt",
    "quality": "mapping_quality.ckpt",
    "scratch": "mapping_scratch.ckpt",
    "hr": "mapping_hr.ckpt",
}
MIN_SCRATCH_FRACTION = 1e-4  # scratch=auto uses the scratch mapping above this masked fraction
PRECISIONS = ("fp32", "bf16")

PostStage = Callable[[np.ndarray, np.ndarray], np.ndarray]


def load_restorer(path: str | Path) -> Restorer:
    """A frozen Restorer (VAE1 enc + mapping + VAE2 dec) from a mapping checkpoint."""
    state = read_checkpoint(path, "mapping")
    hp = state["hyper_parameters"]
    if "mapping" not in hp or "vae1_net" not in hp:
        raise ValueError(
            f"'{path}' is not a mapping checkpoint (no mapping / vae1_net hyperparameters). "
            "Use a checkpoint of experiment=bopb/mapping* or one written by revive-convert."
        )
    restorer = Restorer.from_hparams(hp)
    restorer.load_state_dict(submodule_state(state["state_dict"], "restorer"))
    return freeze(restorer)


def to_input(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> (1, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1)[None].float().div(127.5).sub(1)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] -> uint8 (H, W, 3)."""
    return ((image[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad H and W up to ``multiple``; return the padded tensor and the original size."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


@dataclass
class OldPhotoRestorer:
    """The whole global-restoration pipeline, ready to run on uint8 RGB photos.

    :param scratch: ``auto`` (scratch mapping where the detector finds scratches), ``on``, ``off``.
    :param detect_short_side: the detector runs at this short side and its mask is upsampled
        (official 256); 0 runs it at full resolution.
    :param threshold: scratch probability above which a pixel is masked; ``from_dir`` takes the
        detector checkpoint's (official 0.4) unless given.
    :param precision: ``fp32`` (exact, as the official networks) or ``bf16`` (autocast: faster on
        CPUs with AMX and on GPUs, not bit-exact; experiments/benchmarks/throughput.py measures
        how far it drifts).
    :param hr: scratched photos go through the official high-resolution patch-attention mapping
        (``mapping_hr.ckpt``) instead of the exact partial nonlocal one.
    :param channels_last: run the networks in channels_last (NHWC): the same results up to float
        summation order, and the convolutions skip oneDNN's reorders (bf16 mapping forward at
        512 px 1.7x faster, paper width).
    """

    detector: ScratchUNet | None
    quality: Restorer | None
    scratch_mapping: Restorer | None
    hr_mapping: Restorer | None = None
    threshold: float = 0.4
    scratch: str = "auto"
    detect_short_side: int = 256
    precision: str = "fp32"
    hr: bool = False
    post_stages: list[PostStage] = field(default_factory=list)
    channels_last: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision='{self.precision}' is unknown; use fp32 (exact) or bf16 (faster)."
            )
        if self.channels_last:  # NCHW photos go in; the first conv's NHWC weights set the layout
            for net in (self.detector, self.quality, self.scratch_mapping, self.hr_mapping):
                if net is not None:
                    net.to(memory_format=torch.channels_last)

    @classmethod
    def from_dir(cls, checkpoints: str | Path, **options: object) -> OldPhotoRestorer:
        """Load every stage found in ``checkpoints`` (file names in ``CHECKPOINT_FILES``)."""
        root = Path(checkpoints).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(
                f"checkpoints='{root}' is not a folder. Give the folder written by the quickstart "
                "(logs/quickstart/restore_checkpoints) or by revive-convert."
            )
        files = {k: root / v for k, v in CHECKPOINT_FILES.items() if (root / v).is_file()}
        if options.get("hr") and "hr" not in files:
            raise FileNotFoundError(
                f"hr=true needs {CHECKPOINT_FILES['hr']} in '{root}' (revive-convert writes it "
                "from the official mapping_Patch_Attention)."
            )
        if "quality" not in files and "scratch" not in files:
            raise FileNotFoundError(
                f"No mapping checkpoint in '{root}': expected {CHECKPOINT_FILES['quality']} "
                f"and/or {CHECKPOINT_FILES['scratch']}."
            )
        detector, threshold = None, 0.4
        if "detector" in files:
            detector, hp = load_detector(files["detector"])
            detector, threshold = freeze(detector), hp["threshold"]
        given = options.pop("threshold", None)
        if given is not None:
            if not 0 < given < 1:
                raise ValueError(f"threshold={given} must lie between 0 and 1 (a probability).")
            threshold = float(given)
        if detector is not None:
            source = "given" if given is not None else "from detector.ckpt"
            log.info("Scratch threshold %.2f (%s)", threshold, source)
        for name, path in files.items():
            log.info("Restore stage %s: %s", name, path)
        return cls(
            detector=detector,
            quality=load_restorer(files["quality"]) if "quality" in files else None,
            scratch_mapping=load_restorer(files["scratch"]) if "scratch" in files else None,
            hr_mapping=load_restorer(files["hr"]) if options.get("hr") else None,
            threshold=threshold,
            **options,
        )

    def _autocast(self) -> torch.autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @torch.no_grad()
    def detect(self, image: np.ndarray) -> np.ndarray:
        """Scratch mask (H, W) uint8 {0, 1} of a uint8 RGB photo."""
        if self.detector is None:
            raise ValueError(
                "scratch detection needs detector.ckpt in the checkpoints folder; "
                "add it or run with scratch=off."
            )
        h, w = image.shape[:2]
        gray = torch.from_numpy(image).float().mul(torch.tensor([0.299, 0.587, 0.114])).sum(-1)
        x = gray[None, None].div(127.5).sub(1)
        if self.detect_short_side:
            scale = self.detect_short_side / min(h, w)
            mult = self.detector.multiple
            size = (
                max(mult, round(h * scale / mult) * mult),
                max(mult, round(w * scale / mult) * mult),
            )
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x, (xh, xw) = pad_to(x, self.detector.multiple)
        with self._autocast():
            prob = torch.sigmoid(self.detector(x).float())[..., :xh, :xw]
        prob = F.interpolate(prob, size=(h, w), mode="nearest")
        return (prob[0, 0] >= self.threshold).numpy().astype(np.uint8)

    def choose(self, mask: np.ndarray | None) -> tuple[Restorer, bool]:
        """The restorer for this photo and whether it gets the scratch mask."""
        scratched = mask is not None and mask.mean() > MIN_SCRATCH_FRACTION
        if scratched and self.hr and self.hr_mapping is not None:
            return self.hr_mapping, True
        if scratched and self.scratch_mapping is not None:
            return self.scratch_mapping, True
        if self.quality is not None:
            return self.quality, False
        return self.scratch_mapping, True  # an empty mask makes the scratch mapping a quality one

    @torch.no_grad()
    def restore(
        self, image: np.ndarray, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Restore a uint8 RGB photo; return the restored photo and the scratch mask used.

        ``mask`` (H, W) {0, 1}, when given, replaces the detector's (with ``scratch`` auto or on).
        """
        if self.scratch == "off":
            mask = None
        elif mask is None:
            mask = self.detect(image)
        if self.scratch == "on" and self.scratch_mapping is None:
            raise ValueError("scratch=on needs mapping_scratch.ckpt in the checkpoints folder.")
        restorer, with_mask = self.choose(mask)
        x = to_input(image)
        m = torch.zeros_like(x[:, :1])
        if with_mask and mask is not None:
            m = torch.from_numpy(mask)[None, None].float()
            x = x * (1 - m) + m  # holes painted white, as the scratch mapping was trained
        multiple = 32 if restorer.kind == "patch_attention" else 4
        x, (h, w) = pad_to(x, multiple)
        m, _ = pad_to(m, multiple)
        with self._autocast():
            out = restorer(x, m if with_mask else None).float()
        restored = to_uint8(out[..., :h, :w])
        for stage in self.post_stages:
            restored = stage(restored, image)
        return restored, mask
