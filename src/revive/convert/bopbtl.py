"""Official "Bringing Old Photos Back to Life" checkpoints -> our state_dicts.

Shapes are identical to the official networks (anchors/bopbtl_*_keys.txt); conversion renames
keys and, for multiscale discriminators, reverses the scale order. Every converted state_dict is
checked against the target network's keys and shapes, so the result loads with ``strict=True``.

``OFFICIAL_RELEASE`` lists the files of the official download (relative to the repository
root); ``convert_release`` converts whichever of them exist into ``DST/<name>.pt``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from revive.models.stages import load_weights_only
from revive.nets.discriminators import MultiscaleDiscriminator
from revive.nets.mapping import PatchAttentionMapping, QualityMapping, ScratchMapping
from revive.nets.unet import ScratchUNet
from revive.nets.vae import VAE

log = logging.getLogger(__name__)

# Rules are tried in order; the first whose pattern matches the start of a key renames that part.
Rule = tuple[str, str | Callable[[re.Match[str]], str]]

_QUALITY_MAPPING_RULES: list[Rule] = [
    # ``model`` = 4 Conv-IN-ReLU (indices 0-11), then ResnetBlocks and convs (12-27).
    (r"model\.(\d+)\.", lambda m: _split_index(int(m[1]), 12)),
]
_SCRATCH_MAPPING_RULES: list[Rule] = [
    (r"before_NL\.", "head."),
    (r"NL\.", "global_branch."),
    (r"after_NL\.", "tail."),
]
_PATCH_ATTENTION_MAPPING_RULES: list[Rule] = [
    (r"before_NL\.", "head."),
    (r"NL_scale_(\d)\.F_Combine\.", lambda m: f"attention.{int(m[1]) - 1}.combine."),
    (r"NL_scale_(\d)\.res_block\.", lambda m: f"attention.{int(m[1]) - 1}.res_block."),
    (r"res_block_(\d)\.", lambda m: f"res_blocks.{int(m[1]) - 1}."),
    (r"after_NL\.", "tail."),
]
_IDENTITY_RULES: list[Rule] = [(r"", "")]

_VAE = "VAE generator (latest_net_G)"
_IMAGE_D = "image discriminator (latest_net_D)"
_LATENT_D = "latent discriminator (latest_net_featD)"
_MAPPING_D = "mapping discriminator (latest_net_D)"
_QUALITY = "quality mapping (Mapping_Model)"
_SCRATCH = "scratch mapping (Mapping_Model_with_mask)"
_PATCH_ATTENTION = "HR patch-attention mapping (Mapping_Model_with_mask_2)"
_DETECTION = "scratch-detection UNet (FT_Epoch_latest)"


def _split_index(index: int, head_length: int) -> str:
    if index < head_length:
        return f"head.{index}."
    return f"tail.{index - head_length}."


def _rename(key: str, rules: list[Rule], source: str, network: str) -> str:
    for pattern, replacement in rules:
        renamed, count = re.subn(f"^{pattern}", replacement, key, count=1)
        if count:
            return renamed
    raise ValueError(f"{source}: unexpected key '{key}' for the official BOPBTL {network}.")


def _strip_module(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    # nn.DataParallel (the official multi-GPU training) prefixes every key with "module.".
    return {key.removeprefix("module."): value for key, value in state.items()}


def _check_against(
    state: Mapping[str, Tensor], net: nn.Module, source: str, network: str
) -> dict[str, Tensor]:
    """Raise a ValueError naming ``source`` unless ``state`` fits ``net`` key for key."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != expected[k].shape]
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys (e.g. '{missing[0]}')")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys (e.g. '{unexpected[0]}')")
        if wrong:
            k = wrong[0]
            problems.append(
                f"{len(wrong)} shape mismatches (e.g. '{k}': {tuple(state[k].shape)} vs "
                f"{tuple(expected[k].shape)})"
            )
        raise ValueError(
            f"{source} is not an official BOPBTL {network} checkpoint: {'; '.join(problems)}."
        )
    return dict(state)


def _convert(
    state: Mapping[str, Tensor],
    rules: list[Rule],
    build: Callable[[], nn.Module],
    source: str,
    network: str,
) -> dict[str, Tensor]:
    if not isinstance(state, Mapping):
        raise ValueError(f"{source} is not a state_dict; expected the official BOPBTL {network}.")
    renamed = {_rename(k, rules, source, network): v for k, v in _strip_module(state).items()}
    with torch.device("meta"):  # shapes only: no memory, no init cost
        net = build()
    return _check_against(renamed, net, source, network)


def _discriminator_rules(num_scales: int) -> list[Rule]:
    # Official ``scale{i}`` with the largest i sees full resolution; our ``scales[0]`` does.
    return [
        (
            r"scale(\d+)_layer(\d+)\.",
            lambda m: f"scales.{num_scales - 1 - int(m[1])}.layers.{m[2]}.",
        )
    ]


def convert_vae(state: Mapping[str, Tensor], source: str = "state_dict") -> dict[str, Tensor]:
    """Official ``GlobalGenerator_DCDCv2`` (``VAE_*/latest_net_G.pth``) -> ``VAE()``."""
    return _convert(state, _IDENTITY_RULES, VAE, source, _VAE)


def convert_image_discriminator(
    state: Mapping[str, Tensor], source: str = "state_dict"
) -> dict[str, Tensor]:
    """Official VAE image D (``latest_net_D.pth``) -> ``MultiscaleDiscriminator(3)``."""
    return _convert(
        state,
        _discriminator_rules(2),
        lambda: MultiscaleDiscriminator(3),
        source,
        _IMAGE_D,
    )


def convert_latent_discriminator(
    state: Mapping[str, Tensor], source: str = "state_dict"
) -> dict[str, Tensor]:
    """Official VAE1 latent D (``latest_net_featD.pth``) -> ``MultiscaleDiscriminator(64, 1)``."""
    return _convert(
        state,
        _discriminator_rules(1),
        lambda: MultiscaleDiscriminator(64, num_scales=1),
        source,
        _LATENT_D,
    )


def convert_mapping_discriminator(
    state: Mapping[str, Tensor], source: str = "state_dict"
) -> dict[str, Tensor]:
    """Official mapping D (6-channel, 2 scales) -> ``MultiscaleDiscriminator(6, ...)``.

    Spectral norm (the scratch setting) is recognised by its ``weight_orig`` keys; build the
    target with ``spectral_norm=True`` then.
    """
    spectral = isinstance(state, Mapping) and any(str(k).endswith("weight_orig") for k in state)
    return _convert(
        state,
        _discriminator_rules(2),
        lambda: MultiscaleDiscriminator(6, spectral_norm=spectral),
        source,
        _MAPPING_D,
    )


def convert_quality_mapping(
    state: Mapping[str, Tensor], source: str = "state_dict"
) -> dict[str, Tensor]:
    """Official ``Mapping_Model`` (``mapping_quality``) -> ``QualityMapping()``."""
    return _convert(state, _QUALITY_MAPPING_RULES, QualityMapping, source, _QUALITY)


def convert_scratch_mapping(
    state: Mapping[str, Tensor], source: str = "state_dict"
) -> dict[str, Tensor]:
    """Official ``Mapping_Model_with_mask`` (``mapping_scratch``) -> ``ScratchMapping()``."""
    return _convert(
        state,
        _SCRATCH_MAPPING_RULES,
        ScratchMapping,
        source,
        _SCRATCH,
    )


def convert_patch_attention_mapping(
    state: Mapping[str, Tensor], source: str = "state_dict"
) -> dict[str, Tensor]:
    """Official ``Mapping_Model_with_mask_2`` (``mapping_Patch_Attention``) ->
    ``PatchAttentionMapping()``."""
    return _convert(
        state,
        _PATCH_ATTENTION_MAPPING_RULES,
        PatchAttentionMapping,
        source,
        _PATCH_ATTENTION,
    )


def convert_detection_unet(state: Mapping, source: str = "state_dict") -> dict[str, Tensor]:
    """Official detection checkpoint content (``FT_Epoch_latest.pt``) -> ``ScratchUNet()``.

    Accepts the whole file content (a dict with ``model_state``) or the bare state_dict.
    """
    if isinstance(state, Mapping) and "model_state" in state:
        state = state["model_state"]
    return _convert(state, _IDENTITY_RULES, ScratchUNet, source, _DETECTION)


@dataclass(frozen=True)
class OfficialNetwork:
    """How to build one of our networks and convert its official checkpoint."""

    description: str
    build: Callable[[], nn.Module]  # our network at the official sizes
    convert: Callable[..., dict[str, Tensor]]  # (official content, source) -> our state_dict


NETWORKS: dict[str, OfficialNetwork] = {
    "vae": OfficialNetwork(_VAE, VAE, convert_vae),
    "image_discriminator": OfficialNetwork(
        _IMAGE_D, lambda: MultiscaleDiscriminator(3), convert_image_discriminator
    ),
    "latent_discriminator": OfficialNetwork(
        _LATENT_D, lambda: MultiscaleDiscriminator(64, num_scales=1), convert_latent_discriminator
    ),
    "mapping_discriminator_quality": OfficialNetwork(
        _MAPPING_D, lambda: MultiscaleDiscriminator(6), convert_mapping_discriminator
    ),
    "mapping_discriminator_scratch": OfficialNetwork(
        _MAPPING_D,
        lambda: MultiscaleDiscriminator(6, spectral_norm=True),
        convert_mapping_discriminator,
    ),
    "quality_mapping": OfficialNetwork(_QUALITY, QualityMapping, convert_quality_mapping),
    "scratch_mapping": OfficialNetwork(_SCRATCH, ScratchMapping, convert_scratch_mapping),
    "patch_attention_mapping": OfficialNetwork(
        _PATCH_ATTENTION, PatchAttentionMapping, convert_patch_attention_mapping
    ),
    "detection_unet": OfficialNetwork(_DETECTION, ScratchUNet, convert_detection_unet),
}


@dataclass(frozen=True)
class ReleaseFile:
    """One file of the official download."""

    path: str  # relative to the official repository root
    network: str  # key of NETWORKS


_RESTORATION = "Global/checkpoints/restoration"
OFFICIAL_RELEASE: dict[str, ReleaseFile] = {
    "vae_a_quality": ReleaseFile(f"{_RESTORATION}/VAE_A_quality/latest_net_G.pth", "vae"),
    "vae_b_quality": ReleaseFile(f"{_RESTORATION}/VAE_B_quality/latest_net_G.pth", "vae"),
    "vae_b_scratch": ReleaseFile(f"{_RESTORATION}/VAE_B_scratch/latest_net_G.pth", "vae"),
    "mapping_quality": ReleaseFile(
        f"{_RESTORATION}/mapping_quality/latest_net_mapping_net.pth", "quality_mapping"
    ),
    "mapping_scratch": ReleaseFile(
        f"{_RESTORATION}/mapping_scratch/latest_net_mapping_net.pth", "scratch_mapping"
    ),
    "mapping_patch_attention": ReleaseFile(
        f"{_RESTORATION}/mapping_Patch_Attention/latest_net_mapping_net.pth",
        "patch_attention_mapping",
    ),
    "detection": ReleaseFile("Global/checkpoints/detection/FT_Epoch_latest.pt", "detection_unet"),
}
"""Which official file restores with which network. Test-time pairing (reference §1c):
quality = VAE_A_quality enc -> mapping_quality -> VAE_B_quality dec; scratch =
VAE_A_quality enc -> mapping_scratch -> VAE_B_scratch dec; HR: mapping_patch_attention."""


def load_official(path: str | Path, network: str) -> dict[str, Tensor]:
    """Read an official checkpoint file and return it converted for ``NETWORKS[network]``.

    :raises ValueError: the file cannot be read as weights or is not that network.
    """
    if network not in NETWORKS:
        raise ValueError(f"Unknown BOPBTL network '{network}'; choose one of {sorted(NETWORKS)}.")
    path = Path(path)
    try:
        content = load_weights_only(path)
    except Exception as error:  # unpickling errors have several types; all mean the same here
        reason = str(error).splitlines()[0] if str(error) else ""
        raise ValueError(
            f"'{path}' could not be read as a weights file ({type(error).__name__}: {reason}); "
            f"expected the official BOPBTL {NETWORKS[network].description} checkpoint."
        ) from error
    return NETWORKS[network].convert(content, source=f"'{path}'")


def convert_release(src: str | Path, dst: str | Path) -> dict[str, Path]:
    """Convert every file of ``OFFICIAL_RELEASE`` found under ``src`` into ``dst/<name>.pt``.

    :param src: the official repository root (holding ``Global/checkpoints``).
    :return: name -> written file. Missing files are skipped with a warning.
    :raises FileNotFoundError: none of the release files exists under ``src``.
    """
    src, dst = Path(src), Path(dst)
    written = {}
    for name, release in OFFICIAL_RELEASE.items():
        path = src / release.path
        if not path.is_file():
            log.warning("Skipping %s: %s does not exist", name, path)
            continue
        log.info("Converting %s <%s> -> %s", path, release.network, dst / f"{name}.pt")
        state = load_official(path, release.network)
        dst.mkdir(parents=True, exist_ok=True)
        torch.save(state, dst / f"{name}.pt")
        written[name] = dst / f"{name}.pt"
    if not written:
        raise FileNotFoundError(
            f"No official BOPBTL checkpoint under '{src}': expected e.g. "
            f"'{src / OFFICIAL_RELEASE['mapping_scratch'].path}'. Point SRC at the repository root "
            "that holds Global/checkpoints."
        )
    return written
