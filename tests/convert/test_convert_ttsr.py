"""Official TTSR checkpoints load into our TTSR (strict) and give the official forward pass.

Official-shaped state_dicts are built from the key dumps in shared/anchors (``key shape`` lines).
The official forward is written out below from reference/ttsr.md §1.3-1.6 with the official key
names, so a name mapped to the wrong layer of the same shape fails here.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from revive.convert.ttsr import (
    convert_ttsr_checkpoint,
    convert_ttsr_discriminator,
    load_official_ttsr,
)
from revive.nets.texture_transformer import TextureSearch
from revive.nets.ttsr import TTSR, Discriminator

# reference/ttsr.md §4
MAIN_NET_PARAMS = 6_174_275
LTE_PARAMS = 555_340
DISCRIMINATOR_PARAMS = 17_821_473


def anchors_dir() -> Path:
    """shared/anchors beside the repository (repo root's parent)."""
    path = Path(__file__).resolve().parents[3] / "shared" / "anchors"
    if not path.is_dir():
        pytest.skip(f"official key dumps not found at {path}")
    return path


def official_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` from an anchors key dump, lines like ``conv1.weight 32x3x3x3``."""
    shapes = {}
    for line in (anchors_dir() / name).read_text().splitlines():
        key, shape = line.split()
        shapes[key] = tuple(int(n) for n in shape.split("x"))
    return shapes


def official_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of the official shapes, scaled by fan-in so that 60 layers stay finite."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_shapes(name).items():
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 100
        state[key] = torch.randn(shape, generator=g) * 0.5 / math.sqrt(fan_in)
    return state


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread


@pytest.fixture(scope="module")
def paper_model() -> TTSR:
    # built once: constructing the LTE builds a whole torchvision VGG19 (seconds)
    return TTSR().eval()


def test_anchor_parameter_counts_are_the_reference_counts():
    def count(name: str) -> int:
        return sum(math.prod(shape) for shape in official_shapes(name).values())

    assert count("ttsr_MainNet_keys.txt") == MAIN_NET_PARAMS
    assert count("ttsr_LTE_keys.txt") == LTE_PARAMS
    assert count("ttsr_Discriminator_keys.txt") == DISCRIMINATOR_PARAMS
    assert count("ttsr_checkpoint_keys.txt") == MAIN_NET_PARAMS + LTE_PARAMS


def test_official_checkpoint_loads_strict(paper_model, tmp_path):
    official = official_state("ttsr_checkpoint_keys.txt")
    path = tmp_path / "TTSR-rec.pt"
    torch.save(official, path)
    state = load_official_ttsr(path)
    paper_model.load_state_dict(state, strict=True)
    assert sum(p.numel() for p in paper_model.net.parameters()) == MAIN_NET_PARAMS
    assert sum(p.numel() for p in paper_model.lte.parameters()) == LTE_PARAMS
    # every official tensor arrives unchanged, and each under exactly one name
    assert len(state) == len(official)
    assert torch.equal(state["lte.lv3.10.weight"], official["LTE.slice3.10.weight"])
    assert torch.equal(state["net.csfi3.down.31.1.bias"], official["MainNet.ex123.conv31_2.bias"])


def test_converted_model_gives_the_official_forward(paper_model):
    official = official_state("ttsr_checkpoint_keys.txt", seed=1)
    paper_model.load_state_dict(convert_ttsr_checkpoint(official), strict=True)
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(1, 3, 6, 5, generator=g) * 2 - 1
    ref = torch.rand(1, 3, 20, 28, generator=g) * 2 - 1
    lr_up = F.interpolate(lr, scale_factor=4, mode="bicubic")
    ref_down_up = F.interpolate(F.avg_pool2d(ref, 4), scale_factor=4, mode="bicubic")
    with torch.no_grad():
        ours = paper_model(lr, lr_up, ref, ref_down_up)
        expected = official_ttsr(official, lr, lr_up, ref, ref_down_up)
    assert 0.1 < (ours.sr.abs() < 1).float().mean()  # not saturated by the clamp
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_copy_and_data_parallel_keys_are_handled():
    official = official_state("ttsr_checkpoint_keys.txt")
    wrapped = {f"module.{key}": value for key, value in official.items()}
    wrapped |= {
        key.replace("LTE.", "module.LTE_copy."): value
        for key, value in official.items()
        if key.startswith("LTE.")
    }
    assert convert_ttsr_checkpoint(wrapped).keys() == convert_ttsr_checkpoint(official).keys()


def test_unexpected_key_is_named():
    official = official_state("ttsr_checkpoint_keys.txt")
    official["MainNet.conv99_extra.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="conv99_extra"):
        convert_ttsr_checkpoint(official)


@pytest.mark.parametrize(
    "content", [{"net.weight": torch.zeros(1)}, torch.zeros(3)], ids=["other-dict", "tensor"]
)
def test_wrong_file_gives_a_clear_error(tmp_path, content):
    path = tmp_path / "x.pt"
    torch.save(content, path)
    with pytest.raises(
        ValueError, match=r"'.*x\.pt' is not a TTSR checkpoint \(no MainNet\.\* keys\)"
    ):
        load_official_ttsr(path)


def test_discriminator_converts_and_gives_the_official_scores():
    official = official_state("ttsr_Discriminator_keys.txt")
    disc = Discriminator(in_size=160)
    disc.load_state_dict(convert_ttsr_discriminator(official), strict=True)
    assert sum(p.numel() for p in disc.parameters()) == DISCRIMINATOR_PARAMS
    x = torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(disc(x), official_discriminator(official, x))


# ---- the official networks, written out with their state_dict names (reference/ttsr.md §1) ----


def _conv(p: dict, name: str, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
    weight = p[f"{name}.weight"]
    return F.conv2d(x, weight, p[f"{name}.bias"], stride=stride, padding=weight.shape[-1] // 2)


def _up(x: torch.Tensor, factor: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bicubic")


def official_lte(p: dict, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = _conv(p, "LTE.sub_mean", x)
    lv1 = F.relu(_conv(p, "LTE.slice1.0", x))
    x = F.max_pool2d(F.relu(_conv(p, "LTE.slice2.2", lv1)), 2)
    lv2 = F.relu(_conv(p, "LTE.slice2.5", x))
    x = F.max_pool2d(F.relu(_conv(p, "LTE.slice3.7", lv2)), 2)
    lv3 = F.relu(_conv(p, "LTE.slice3.10", x))
    return lv1, lv2, lv3


def official_main_net(p: dict, lr, S, t_lv3, t_lv2, t_lv1, blocks=(16, 16, 8, 4)) -> torch.Tensor:
    m = "MainNet."

    def conv(name, x, stride=1):
        return _conv(p, m + name, x, stride)

    def res_blocks(prefix, x, n):
        for i in range(n):
            x = x + conv(f"{prefix}.{i}.conv2", F.relu(conv(f"{prefix}.{i}.conv1", x)))
        return x

    x = F.relu(conv("SFE.conv_head", lr))
    x = x + conv("SFE.conv_tail", res_blocks("SFE.RBs", x, blocks[0]))
    x11 = x + conv("conv11_head", torch.cat((x, t_lv3), 1)) * S
    x11 = x11 + conv("conv11_tail", res_blocks("RB11", x11, blocks[1]))

    x21 = x11
    x22 = F.relu(F.pixel_shuffle(conv("conv12", x11), 2))
    x22 = x22 + conv("conv22_head", torch.cat((x22, t_lv2), 1)) * _up(S, 2)
    x12 = F.relu(conv("ex12.conv12", _up(x21, 2)))
    x21_ = F.relu(conv("ex12.conv21", x22, 2))
    b1 = F.relu(conv("ex12.conv_merge1", torch.cat((x21, x21_), 1)))
    b2 = F.relu(conv("ex12.conv_merge2", torch.cat((x22, x12), 1)))
    x21 = x21 + conv("conv21_tail", res_blocks("RB21", b1, blocks[2]))
    x22 = x22 + conv("conv22_tail", res_blocks("RB22", b2, blocks[2]))

    x31, x32 = x21, x22
    x33 = F.relu(F.pixel_shuffle(conv("conv23", x22), 2))
    x33 = x33 + conv("conv33_head", torch.cat((x33, t_lv1), 1)) * _up(S, 4)
    e = "ex123."
    x12 = F.relu(conv(e + "conv12", _up(x31, 2)))
    x13 = F.relu(conv(e + "conv13", _up(x31, 4)))
    x21_ = F.relu(conv(e + "conv21", x32, 2))
    x23 = F.relu(conv(e + "conv23", _up(x32, 2)))
    x31_ = F.relu(conv(e + "conv31_2", F.relu(conv(e + "conv31_1", x33, 2)), 2))
    x32_ = F.relu(conv(e + "conv32", x33, 2))
    b1 = F.relu(conv(e + "conv_merge1", torch.cat((x31, x21_, x31_), 1)))
    b2 = F.relu(conv(e + "conv_merge2", torch.cat((x32, x12, x32_), 1)))
    b3 = F.relu(conv(e + "conv_merge3", torch.cat((x33, x13, x23), 1)))
    x31 = x31 + conv("conv31_tail", res_blocks("RB31", b1, blocks[3]))
    x32 = x32 + conv("conv32_tail", res_blocks("RB32", b2, blocks[3]))
    x33 = x33 + conv("conv33_tail", res_blocks("RB33", b3, blocks[3]))

    t = "merge_tail."
    x13 = F.relu(conv(t + "conv13", _up(x31, 4)))
    x23 = F.relu(conv(t + "conv23", _up(x32, 2)))
    x = F.relu(conv(t + "conv_merge", torch.cat((x33, x13, x23), 1)))
    return conv(t + "conv_tail2", conv(t + "conv_tail1", x)).clamp(-1, 1)


def official_ttsr(p: dict, lr, lr_up, ref, ref_down_up) -> tuple[torch.Tensor, ...]:
    """Official data flow (§1.2); the search is the official unfold + bmm code (``naive``)."""
    q = official_lte(p, (lr_up + 1) / 2)[2]
    k = official_lte(p, (ref_down_up + 1) / 2)[2]
    S, t_lv3, t_lv2, t_lv1 = TextureSearch("naive")(q, k, *official_lte(p, (ref + 1) / 2))
    return official_main_net(p, lr, S, t_lv3, t_lv2, t_lv1), S, t_lv3, t_lv2, t_lv1


def official_discriminator(p: dict, x: torch.Tensor) -> torch.Tensor:
    for i in range(1, 11):
        x = F.leaky_relu(_conv(p, f"conv{i}", x, stride=1 if i % 2 else 2), 0.2)
    x = F.leaky_relu(F.linear(x.flatten(1), p["fc1.weight"], p["fc1.bias"]), 0.2)
    return F.linear(x, p["fc2.weight"], p["fc2.bias"])
