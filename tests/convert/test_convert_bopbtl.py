"""Official BOPBTL checkpoints (keys and shapes from the anchors) convert and load strictly."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from revive.convert.bopbtl import (
    NETWORKS,
    OFFICIAL_RELEASE,
    convert_detection_unet,
    convert_release,
    load_official,
)

ANCHORS = Path(__file__).resolve().parents[2].parent / "shared" / "anchors"
pytestmark = pytest.mark.skipif(
    not ANCHORS.is_dir(), reason=f"official key anchors not found at {ANCHORS}"
)


def official_state(anchor: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the official keys and shapes of ``anchors/<anchor>``."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for line in (ANCHORS / anchor).read_text().splitlines():
        key, shape = line.split()
        if shape == "scalar":
            state[key] = torch.tensor(7)  # BatchNorm's num_batches_tracked
            continue
        size = [int(s) for s in shape.split("x")]
        value = torch.rand(size, generator=g) - 0.5
        if key.endswith("running_var"):
            value = value + 1.0
        elif key.endswith(("weight_u", "weight_v")):
            value = value / value.norm()
        elif value.dim() == 4:
            value = value * 2 / math.sqrt(value[0].numel())  # keep activations O(1)
        state[key] = value
    return state


def _n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _image(net: nn.Module) -> torch.Tensor:
    return net.decode(net.encode(torch.rand(1, 3, 16, 16) * 2 - 1)[0])


def _latent_d(net: nn.Module) -> torch.Tensor:
    return net(torch.randn(1, 64, 16, 16))[-1][-1]


def _pair_d(net: nn.Module) -> torch.Tensor:
    return net(torch.randn(1, 6, 16, 16))[-1][-1]


def _image_d(net: nn.Module) -> torch.Tensor:
    return net(torch.randn(1, 3, 16, 16))[-1][-1]


def _quality(net: nn.Module) -> torch.Tensor:
    return net(torch.randn(1, 64, 8, 8))


def _masked(net: nn.Module) -> torch.Tensor:
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 20:44, 8:40] = 1
    return net(torch.randn(1, 64, 16, 16), mask)


CASES = [
    ("bopbtl_vaeA_G_keys.txt", "vae", 872_131, _image),
    ("bopbtl_vaeB_G_keys.txt", "vae", 872_131, _image),
    ("bopbtl_vaeA_imageD_keys.txt", "image_discriminator", 5_529_474, _image_d),
    ("bopbtl_vaeA_latentD_keys.txt", "latent_discriminator", 2_827_201, _latent_d),
    ("bopbtl_mapping_D_quality_keys.txt", "mapping_discriminator_quality", 5_535_618, _pair_d),
    ("bopbtl_mapping_D_scratch_keys.txt", "mapping_discriminator_scratch", 5_535_618, _pair_d),
    ("bopbtl_mapping_quality_keys.txt", "quality_mapping", 36_135_232, _quality),
    ("bopbtl_mapping_scratch_keys.txt", "scratch_mapping", 51_344_704, _masked),
    ("bopbtl_mapping_hr_patch_attention_keys.txt", "patch_attention_mapping", 73_904_448, _masked),
]


@pytest.mark.parametrize(
    ("anchor", "network", "n_params", "forward"), CASES, ids=[c[0][7:-9] for c in CASES]
)
def test_official_checkpoint_loads_strictly(
    tmp_path: Path,
    anchor: str,
    network: str,
    n_params: int,
    forward: Callable[[nn.Module], torch.Tensor],
) -> None:
    official = official_state(anchor)
    path = tmp_path / "latest_net.pth"
    torch.save(official, path)

    state = load_official(path, network)
    with torch.device("meta"):  # skip the init of up to 74M parameters; the load assigns them
        net = NETWORKS[network].build().eval()
    net.load_state_dict(state, strict=True, assign=True)
    assert _n_params(net) == n_params
    # every official tensor arrives unchanged under some name
    assert sorted(tuple(v.flatten()[:4].tolist()) for v in state.values()) == sorted(
        tuple(v.flatten()[:4].tolist()) for v in official.values()
    )
    with torch.no_grad():
        assert torch.isfinite(forward(net)).all()


def test_discriminator_scales_are_reversed_to_full_resolution_first() -> None:
    official = official_state("bopbtl_vaeA_imageD_keys.txt")
    state = NETWORKS["image_discriminator"].convert(official)
    # official scale1 runs on the full-resolution input (its forward walks scales backwards)
    assert state["scales.0.layers.0.0.weight"] is official["scale1_layer0.0.weight"]
    assert state["scales.1.layers.4.0.bias"] is official["scale0_layer4.0.bias"]


def test_mapping_keys_land_in_head_attention_and_tail() -> None:
    quality = NETWORKS["quality_mapping"].convert(official_state("bopbtl_mapping_quality_keys.txt"))
    assert {"head.9.weight", "tail.0.conv_block.1.weight", "tail.15.bias"} <= quality.keys()
    hr = official_state("bopbtl_mapping_hr_patch_attention_keys.txt")
    state = NETWORKS["patch_attention_mapping"].convert(hr)
    assert state["attention.2.combine.weight"] is hr["NL_scale_3.F_Combine.weight"]
    assert state["res_blocks.1.0.conv_block.5.bias"] is hr["res_block_2.0.conv_block.5.bias"]


def test_detection_checkpoint_with_model_state_and_module_prefix(tmp_path: Path) -> None:
    official = official_state("bopbtl_detection_unet_keys.txt")
    path = tmp_path / "FT_Epoch_latest.pt"
    torch.save({"epoch": 3, "model_state": {f"module.{k}": v for k, v in official.items()}}, path)
    state = load_official(path, "detection_unet")
    with torch.device("meta"):
        net = NETWORKS["detection_unet"].build().eval()
    net.load_state_dict(state, strict=True, assign=True)
    assert _n_params(net) == 37_626_177
    assert convert_detection_unet(official).keys() == state.keys()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 32, 32)).shape == (1, 1, 32, 32)


def test_wrong_file_names_the_file_and_the_expected_network(tmp_path: Path) -> None:
    path = tmp_path / "latest_net_G.pth"
    torch.save(official_state("bopbtl_vaeA_G_keys.txt"), path)
    with pytest.raises(ValueError, match=r"latest_net_G\.pth.*scratch mapping"):
        load_official(path, "scratch_mapping")
    with pytest.raises(ValueError, match="latest_net_G.pth.*image discriminator"):
        load_official(path, "image_discriminator")

    not_weights = tmp_path / "notes.pth"
    not_weights.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pth.*VAE generator"):
        load_official(not_weights, "vae")

    wrong_shape = official_state("bopbtl_vaeA_G_keys.txt")
    wrong_shape["encoder.1.weight"] = torch.zeros(32, 3, 7, 7)
    with pytest.raises(ValueError, match="shape mismatch"):
        NETWORKS["vae"].convert(wrong_shape, source="'x.pth'")


def test_release_table_points_at_the_official_layout() -> None:
    assert OFFICIAL_RELEASE["mapping_scratch"].path == (
        "Global/checkpoints/restoration/mapping_scratch/latest_net_mapping_net.pth"
    )
    assert OFFICIAL_RELEASE["detection"].path == "Global/checkpoints/detection/FT_Epoch_latest.pt"
    assert all(release.network in NETWORKS for release in OFFICIAL_RELEASE.values())


def test_convert_release_converts_what_exists(tmp_path: Path) -> None:
    src, dst = tmp_path / "official", tmp_path / "converted"
    for name in ("vae_a_quality", "vae_b_scratch"):
        file = src / OFFICIAL_RELEASE[name].path
        file.parent.mkdir(parents=True)
        torch.save(official_state("bopbtl_vaeA_G_keys.txt"), file)
    written = convert_release(src, dst)
    assert sorted(written) == ["vae_a_quality", "vae_b_scratch"]
    state = torch.load(written["vae_b_scratch"], weights_only=True)
    NETWORKS["vae"].build().load_state_dict(state, strict=True)

    with pytest.raises(FileNotFoundError, match="Global/checkpoints"):
        convert_release(tmp_path / "empty", dst)


# The official forward passes, restated with functional ops on the official state_dicts
# (reference/bopbtl.md §1b, §1c), to check that converted weights give the official outputs.


def _conv(x, state, name, stride=1, padding=0, reflect=0):
    if reflect:
        x = F.pad(x, [reflect] * 4, mode="reflect")
    return F.conv2d(x, state[f"{name}.weight"], state[f"{name}.bias"], stride, padding)


def _in_relu(x):
    return F.relu(F.instance_norm(x))


def _resblock(x, state, name):
    y = _in_relu(_conv(x, state, f"{name}.conv_block.1", reflect=1))
    return x + F.instance_norm(_conv(y, state, f"{name}.conv_block.5", reflect=1))


def _official_vae(state, image):
    x = _in_relu(_conv(image, state, "encoder.1", reflect=3))
    x = _in_relu(_conv(x, state, "encoder.4", stride=2, padding=1))
    x = _in_relu(_conv(x, state, "encoder.7", stride=2, padding=1))
    for i in range(10, 14):
        x = _resblock(x, state, f"encoder.{i}")
    for i in range(4):
        x = _resblock(x, state, f"decoder.{i}")
    for i in (4, 7):
        w, b = state[f"decoder.{i}.weight"], state[f"decoder.{i}.bias"]
        x = _in_relu(F.conv_transpose2d(x, w, b, stride=2, padding=1))
    return torch.tanh(_conv(x, state, "decoder.11", reflect=3))


def _official_multiscale_d(state, x, num_d):
    outputs = []
    for i in range(num_d):
        features, h = [], x
        for j in range(5):  # scale num_d - 1 - i runs on the input pooled i times
            h = _conv(h, state, f"scale{num_d - 1 - i}_layer{j}.0", 2 if j < 3 else 1, 2)
            h = F.instance_norm(h) if 0 < j < 4 else h
            h = F.leaky_relu(h, 0.2) if j < 4 else h
            features.append(h)
        outputs.append(features)
        x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    return outputs


def _official_scratch_mapping(state, z, mask):
    x = z
    for i in (0, 3, 6, 9):
        x = _in_relu(_conv(x, state, f"before_NL.{i}", padding=1))
    b, c, h, w = x.shape
    g = _conv(x, state, "NL.g").view(b, c, -1).permute(0, 2, 1)
    theta = _conv(x, state, "NL.theta").view(b, c, -1).permute(0, 2, 1)
    phi = _conv(x, state, "NL.phi").view(b, c, -1)
    f = torch.softmax(theta @ phi, dim=2)
    valid = (F.interpolate(mask, (h, w), mode="bilinear") <= 0).float()
    valid = valid * F.interpolate(1 - mask, (h, w))
    f = F.normalize(f * valid.view(b, 1, -1), p=1, dim=2)
    y = (f @ g).permute(0, 2, 1).reshape(b, c, h, w)
    filled = _conv(y, state, "NL.W")
    for i in range(3):
        filled = _resblock(filled, state, f"NL.res_block.{i}")
    x = valid * x + (1 - valid) * filled
    for i in range(6):
        x = _resblock(x, state, f"after_NL.{i}")
    for i in (6, 9, 12):
        x = _in_relu(_conv(x, state, f"after_NL.{i}", padding=1))
    return _conv(x, state, "after_NL.15", padding=1)


def _load(network: str, official: dict[str, torch.Tensor]) -> nn.Module:
    with torch.device("meta"):
        net = NETWORKS[network].build().eval()
    net.load_state_dict(NETWORKS[network].convert(official), strict=True, assign=True)
    return net


def test_converted_vae_and_discriminator_give_the_official_outputs() -> None:
    official = official_state("bopbtl_vaeB_G_keys.txt")
    image = torch.rand(2, 3, 24, 16) * 2 - 1
    with torch.no_grad():
        out = _load("vae", official)(image).image
        torch.testing.assert_close(out, _official_vae(official, image), rtol=1e-5, atol=1e-5)

        official = official_state("bopbtl_vaeA_imageD_keys.txt")
        ours = _load("image_discriminator", official)(image)
        for got, expected in zip(ours, _official_multiscale_d(official, image, 2), strict=True):
            for a, b in zip(got, expected, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_converted_scratch_mapping_gives_the_official_output() -> None:
    official = official_state("bopbtl_mapping_scratch_keys.txt")
    z = torch.randn(1, 64, 8, 8)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 9:14, :] = 1
    mask[..., :, 20] = 1
    mask[..., :, 27] = 1  # offset 3 of its cell: the official downsampling ignores it
    with torch.no_grad():
        expected = _official_scratch_mapping(official, z, mask)
        got = _load("scratch_mapping", official)(z, mask)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
