"""precision=bf16 in revive-restore and revive-sr: close to fp32, and a clear error otherwise.

The >= 40 dB target of issue #10 is for the paper-width networks (measured by
experiments/benchmarks/throughput.py); these tiny random stages, 8 channels wide, only have to
stay above 30 dB: a broken bf16 path (wrong range, a dtype that leaks into the uint8 conversion,
a garbled memory format) lands far below that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from revive.data.sample import sample_photo
from revive.data.sr import bicubic
from revive.models.ttsr import TTSRModule
from revive.pipelines.restore import OldPhotoRestorer
from revive.pipelines.super_resolve import SuperResolver
from tests.conftest import REPO, make_tiny_stages, save_stage

MIN_PSNR = 30.0


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("restore_ckpts")
    make_tiny_stages(root)
    return root


@pytest.fixture(scope="module")
def ttsr_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = TTSRModule(
        net={"n_feats": 8, "num_res_blocks": [1, 1, 1, 1]}, losses="rec", vgg_on_missing="disable"
    )
    return save_stage(model, tmp_path_factory.mktemp("ttsr") / "ttsr.ckpt")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def photo(size: int) -> np.ndarray:
    """A real photo (not noise), so the networks see structure as in use."""
    return bicubic(sample_photo("astronaut"), size, size).copy()


def restore_both(stages: Path, image: np.ndarray, mask: np.ndarray | None) -> list[np.ndarray]:
    """The photo restored in fp32 and in bf16; with ``mask``, through the scratch mapping."""
    outputs = []
    for precision in ("fp32", "bf16"):
        scratch = "off" if mask is None else "on"
        pipeline = OldPhotoRestorer.from_dir(stages, scratch=scratch, precision=precision)
        if mask is not None:
            pipeline.detect = lambda image: mask  # the random detector flags every pixel
        restored, _ = pipeline.restore(image)
        outputs.append(restored)
    return outputs


def test_bf16_restore_stays_close_to_fp32(stages) -> None:
    fp32, bf16 = restore_both(stages, photo(64), None)
    assert bf16.dtype == np.uint8 and bf16.shape == fp32.shape == (64, 64, 3)
    assert not np.array_equal(bf16, fp32)  # bf16 really ran
    assert MIN_PSNR < psnr(bf16, fp32) < float("inf")


def test_bf16_restore_runs_the_scratch_mapping(stages) -> None:
    """No PSNR bound here: a random partial nonlocal block attends almost uniformly, so its
    output is nearly constant, and the InstanceNorms after it scale bf16's rounding of that
    constant up to the signal (about 20 dB at these widths, whatever the attention's dtype).
    A trained block attends to few keys; the benchmark measures it with ``--weights``."""
    image, mask = photo(64), np.zeros((64, 64), np.uint8)
    mask[20:23, 5:60] = 1
    image[mask == 1] = 255
    fp32, bf16 = restore_both(stages, image, mask)
    assert bf16.dtype == np.uint8 and bf16.shape == fp32.shape == (64, 64, 3)
    assert not np.array_equal(bf16, fp32)
    assert bf16.std() > 5  # a picture, not a constant or an overflowed range


def test_bf16_super_resolution_stays_close_to_fp32(ttsr_checkpoint) -> None:
    lr, ref = photo(16), photo(64)[:, ::-1].copy()
    fp32, s32 = SuperResolver.from_checkpoint(ttsr_checkpoint).super_resolve(lr, ref)
    bf16, s16 = SuperResolver.from_checkpoint(ttsr_checkpoint, "bf16").super_resolve(lr, ref)
    assert bf16.dtype == np.uint8 and bf16.shape == fp32.shape == (64, 64, 3)
    assert not np.array_equal(bf16, fp32)
    assert MIN_PSNR < psnr(bf16, fp32) < float("inf")
    assert np.abs(s16 - s32).max() < 0.05  # the soft attention map, a cosine in [-1, 1]


def test_unknown_restore_precision_names_the_option(stages) -> None:
    with pytest.raises(ValueError, match="precision='fp16'.*fp32.*bf16"):
        OldPhotoRestorer.from_dir(stages, precision="fp16")


@pytest.mark.parametrize("config", ["restore", "sr"])
def test_both_clis_default_to_fp32(config) -> None:
    cfg = OmegaConf.load(REPO / "conf" / f"{config}.yaml")
    assert cfg.precision == "fp32"


def _is_channels_last(net: torch.nn.Module) -> bool:
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    return conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_restore_gives_the_contiguous_result(stages) -> None:
    image = photo(64)
    outputs = []
    for channels_last in (False, True):
        pipeline = OldPhotoRestorer.from_dir(stages, scratch="off", channels_last=channels_last)
        assert _is_channels_last(pipeline.quality) == channels_last
        outputs.append(pipeline.restore(image)[0])
    contiguous, channels_last = outputs
    assert np.abs(contiguous.astype(int) - channels_last.astype(int)).max() <= 1  # rounding only


def test_channels_last_restore_runs_the_detector_and_scratch_mapping_in_it(stages) -> None:
    """No equality here: a random partial nonlocal block's near-constant output is rounding
    noise after its InstanceNorms (see the bf16 test above), in any layout."""
    pipeline = OldPhotoRestorer.from_dir(stages, scratch="on")
    assert _is_channels_last(pipeline.detector) and _is_channels_last(pipeline.scratch_mapping)
    restored, _ = pipeline.restore(photo(64))
    assert restored.dtype == np.uint8 and restored.shape == (64, 64, 3) and restored.std() > 5
