"""The six models of the throughput benchmark: configs, training batches, 512 px inference inputs.

Each model is composed by Hydra from its paper preset (``conf/experiment/...``), so widths, losses
and optimizers are the ones a user trains; the loss curves use the small presets on the embedded
photos instead. Without VGG19 weights the perceptual terms and TTSR's LTE use a random VGG19:
same FLOPs, meaningless values, which is all a throughput measurement needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor

from revive.config import CONF_DIR, register_configs
from revive.data.datasets import to_tensor
from revive.data.sample import TRAIN_PHOTOS, sample_photo
from revive.data.sr import bicubic, down_up
from revive.nets.vgg import find_vgg19_weights

MODELS = ("scratch", "vae1", "vae2", "mapping_quality", "mapping_scratch", "ttsr")

TINY_VAE = ["model.net.ngf=8", "model.net.mc=8", "model.image_d.ndf=4", "model.latent_d.ndf=4"]
TINY_D = ["model.image_d.ndf=4", "model.image_d.n_layers=2"]


@dataclass(frozen=True)
class ModelSpec:
    """How the benchmark builds and feeds one model.

    :param paper: the paper preset (widths, crop, losses); ``small``: the embedded-data preset.
    :param batch: training batch of the benchmark; ``paper_batch``: the preset's.
    :param overrides: applied to both presets; ``tiny``: ``--quick`` widths on top.
    """

    paper: str
    small: str
    family: str  # scratch | vae | mapping | ttsr: the batch layout
    batch: int
    paper_batch: int
    overrides: tuple[str, ...] = ()
    tiny: tuple[str, ...] = field(default_factory=tuple)


SPECS = {
    "scratch": ModelSpec(
        "bopb/scratch", "bopb/scratch_small", "scratch", 4, 16,
        tiny=("model.net.wf=2", "model.net.depth=2"),
    ),
    "vae1": ModelSpec("bopb/vae1", "bopb/vae1_small", "vae", 4, 16, tiny=tuple(TINY_VAE)),
    "vae2": ModelSpec("bopb/vae2", "bopb/vae2_small", "vae", 4, 16, tiny=tuple(TINY_VAE)),
    "mapping_quality": ModelSpec(
        "bopb/mapping", "bopb/mapping_small", "mapping", 1, 16,
        tiny=("model.mapping.channels=16", "model.mapping.n_blocks=1", *TINY_D),
    ),
    "mapping_scratch": ModelSpec(
        "bopb/mapping_scratch", "bopb/mapping_scratch_small", "mapping", 1, 16,
        tiny=("model.mapping.channels=16", "model.mapping.n_blocks=1", *TINY_D),
    ),
    "ttsr": ModelSpec(
        "ttsr/gan", "ttsr/small", "ttsr", 2, 9,
        overrides=("model.warmup_epochs=0",),  # the full loss from the first step
        tiny=("model.net.n_feats=4", "model.net.num_res_blocks=[1,1,1,1]"),
    ),
}  # fmt: skip


def compose_config(preset: str, overrides: list[str]) -> DictConfig:
    """``conf/train.yaml`` with ``experiment=preset`` and the overrides, as revive-train composes."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("train", overrides=[f"experiment={preset}", *overrides])
    GlobalHydra.instance().clear()
    return cfg


def vgg_override() -> list[str]:
    """Random VGG19 weights when the real ones are absent (the paper presets would stop)."""
    return [] if find_vgg19_weights() else ["model.vgg_on_missing=random"]


def save_stage(module: torch.nn.Module, path: Path) -> Path:
    """A LightningModule as a stage checkpoint (what the mapping loads its VAEs from)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    torch.save(state, path)
    return path


def random_stage_vaes(root: Path, quick: bool) -> list[str]:
    """Random-weight VAE1 / VAE2 checkpoints at the paper widths; the mapping overrides for them."""
    overrides = []
    for name in ("vae1", "vae2"):
        tiny = list(SPECS[name].tiny) if quick else []
        cfg = compose_config(SPECS[name].paper, ["model.vgg_on_missing=disable", *tiny])
        path = save_stage(instantiate(cfg.model), root / f"{name}.ckpt")
        overrides.append(f"model.{name}_ckpt={path}")
    return overrides


def benchmark_config(name: str, quick: bool, stage_dir: Path, crop: int = 0) -> DictConfig:
    """The paper preset of ``name``; ``crop`` > 0 replaces its crop; ``quick``: tiny, crop 32."""
    spec = SPECS[name]
    overrides = [*spec.overrides, *(vgg_override() if spec.family != "scratch" else [])]
    if crop or quick:
        overrides.append(f"data.crop_size={32 if quick else crop}")
    if quick:
        overrides += spec.tiny
    if spec.family == "mapping":
        overrides += random_stage_vaes(stage_dir, quick)
    return compose_config(spec.paper, overrides)


def load_trained(model, name: str, path: str) -> None:
    """Replace the random weights of the network ``name`` runs at inference with trained ones.

    ``path`` is what the pipelines load: a stage checkpoint of ours or a converted official one
    (detector.ckpt, a VAE stage, mapping_*.ckpt), or for TTSR also the official ``TTSR.pt``. Its
    widths must be the preset's.
    """
    from revive.models.stages import load_detector, load_vae
    from revive.pipelines.restore import load_restorer
    from revive.pipelines.super_resolve import load_ttsr

    family = SPECS[name].family
    if family == "scratch":
        model.net.load_state_dict(load_detector(path)[0].state_dict())
    elif family == "vae":
        model.vae.load_state_dict(load_vae(path, name)[0].state_dict())
    elif family == "mapping":
        model.restorer.load_state_dict(load_restorer(path).state_dict())
    else:
        model.ttsr.load_state_dict(load_ttsr(path).state_dict())


# ---- inputs ---------------------------------------------------------------------------------


def line_mask(size: int, rng: np.random.Generator, n_lines: int = 6) -> np.ndarray:
    """(size, size) float32 mask of thin random line segments (1-3 px), 1 = damage."""
    mask = np.zeros((size, size), np.float32)
    for _ in range(n_lines):
        (x0, y0), (x1, y1) = rng.uniform(0, size, (2, 2))
        half = int(rng.integers(0, 2))  # 1 or 3 px wide
        for t in np.linspace(0, 1, 2 * size):
            x, y = int(x0 + t * (x1 - x0)), int(y0 + t * (y1 - y0))
            mask[max(y - half, 0) : y + half + 1, max(x - half, 0) : x + half + 1] = 1
    return mask


def photo_crops(size: int, count: int, seed: int) -> list[np.ndarray]:
    """Random ``size`` x ``size`` uint8 RGB crops of the embedded training photos."""
    rng = np.random.default_rng(seed)
    photos = [p for p in map(sample_photo, TRAIN_PHOTOS) if min(p.shape[:2]) >= size]
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        top = int(rng.integers(0, photo.shape[0] - size + 1))
        left = int(rng.integers(0, photo.shape[1] - size + 1))
        crops.append(photo[top : top + size, left : left + size])
    return crops


def _gray(image: Tensor) -> Tensor:
    return (image * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)


def make_sample(family: str, kind: str, crop: np.ndarray, ref: np.ndarray, index: int, seed: int):
    """One unbatched sample with the keys the family's datamodule yields."""
    size = crop.shape[0]
    image = to_tensor(crop)
    mask = torch.from_numpy(line_mask(size, np.random.default_rng(seed + index)))[None]
    if family == "scratch":
        return {"image": torch.maximum(_gray(image), mask * 2 - 1), "mask": mask}
    if family == "vae":
        sample = {"image": image}
        if kind == "vae1":
            sample["domain"] = torch.tensor(index % 2)
        return sample
    if family == "mapping":
        noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(seed + index))
        noisy = (image + 0.1 * noise).clamp(-1, 1)
        if kind == "mapping_scratch":
            noisy = noisy * (1 - mask) + mask  # holes painted white, as the training data
        else:
            mask = torch.zeros_like(mask)
        return {"degraded": noisy, "clean": image, "mask": mask}
    lr = bicubic(crop, size // 4, size // 4)
    images = {"hr": crop, "lr": lr, "lr_up": bicubic(lr, size, size), "ref": ref,
              "ref_down_up": down_up(ref)}  # fmt: skip
    return {key: to_tensor(value) for key, value in images.items()}


def training_samples(name: str, size: int, count: int, seed: int = 0) -> list[dict[str, Tensor]]:
    """``count`` samples of photo crops for ``name``'s training step."""
    crops = photo_crops(size, 2 * count, seed)
    family = SPECS[name].family
    return [make_sample(family, name, crops[i], crops[count + i], i, seed) for i in range(count)]


def inference_inputs(name: str, size: int) -> dict[str, Tensor]:
    """Batch-1 inputs at ``size`` px (TTSR: LR size/4, Ref size) from the astronaut photo."""
    photo = sample_photo("astronaut")
    if photo.shape[0] != size:
        photo = bicubic(photo, size, size)
    ref = np.ascontiguousarray(photo[:, ::-1])  # the mirrored photo: a well-matching reference
    sample = make_sample(SPECS[name].family, name, photo, ref, 0, 0)
    return {key: value[None] for key, value in sample.items() if value.dim() == 3}


def _scratch_forward(model, x: dict[str, Tensor]) -> Tensor:
    return model.net(x["image"])


def _vae_forward(model, x: dict[str, Tensor]) -> Tensor:
    return model.vae(x["image"], sample=False).image


def _mapping_forward(model, x: dict[str, Tensor]) -> Tensor:
    mask = x["mask"] if model.restorer.kind != "quality" else None
    return model.restorer(x["degraded"], mask)


def _ttsr_forward(model, x: dict[str, Tensor]) -> Tensor:
    return model.ttsr(x["lr"], x["lr_up"], x["ref"], x["ref_down_up"]).sr


FORWARDS: dict[str, Callable[..., Tensor]] = {
    "scratch": _scratch_forward,
    "vae": _vae_forward,
    "mapping": _mapping_forward,
    "ttsr": _ttsr_forward,
}


def inference_forward(name: str) -> Callable[..., Tensor]:
    """``forward(model, inputs)``: what the inference pipeline runs of the trained module."""
    return FORWARDS[SPECS[name].family]
