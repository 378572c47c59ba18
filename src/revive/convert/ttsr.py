"""Official TTSR checkpoints (``TTSR.pt``, ``TTSR-rec.pt``, researchmm/TTSR) -> our ``TTSR`` state_dict.

The official files are plain state_dicts with ``MainNet.*`` and ``LTE.*`` keys (316 tensors,
anchors/ttsr_checkpoint_keys.txt). Shapes are identical to ours; only names differ, so conversion
is renaming. The result loads into ``revive.nets.ttsr.TTSR()`` (paper widths) with ``strict=True``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from torch import Tensor

from revive.models.stages import load_weights_only

# Rules are tried in order; the first whose pattern matches the start of a key renames that part.
Rule = tuple[str, str | Callable[[re.Match[str]], str]]


def _csfi(match: re.Match[str]) -> str:
    """``ex12.conv21`` -> ``csfi2.down.21.0``; ``ex123.conv31_2`` -> ``csfi3.down.31.1``."""
    module = "csfi2" if match[1] == "12" else "csfi3"
    src, dst, step = int(match[2]), int(match[3]), int(match[4] or 1)
    if src < dst:
        return f"{module}.up.{src}{dst}."
    return f"{module}.down.{src}{dst}.{step - 1}."


_MAIN_NET_RULES: list[Rule] = [
    (r"SFE\.conv_head\.", "sfe.conv_head."),
    (r"SFE\.RBs\.(\d+)\.", r"sfe.body.blocks.\1."),
    (r"SFE\.conv_tail\.", "sfe.body.conv_tail."),
    (r"conv(11|22|33)_head\.", lambda m: f"soft_attention.{int(m[1][0]) - 1}.conv."),
    (r"conv(12|23)\.", lambda m: f"upsample.{int(m[1][0]) - 1}.0."),
    (r"RB(\d)(\d)\.(\d+)\.", lambda m: f"stage{m[1]}.{int(m[2]) - 1}.blocks.{m[3]}."),
    (r"conv(\d)(\d)_tail\.", lambda m: f"stage{m[1]}.{int(m[2]) - 1}.conv_tail."),
    (r"ex(12|123)\.conv(\d)(\d)(?:_(\d))?\.", _csfi),
    (
        r"ex(12|123)\.conv_merge(\d)\.",
        lambda m: f"csfi{len(m[1])}.merge.{int(m[2]) - 1}.",
    ),
    (r"merge_tail\.conv(\d)(\d)\.", r"merge_tail.up.\1\2."),
    (r"merge_tail\.(conv_merge|conv_tail1|conv_tail2)\.", r"merge_tail.\1."),
]

_LTE_RULES: list[Rule] = [
    (r"slice(\d)\.(\d+)\.", r"lv\1.\2."),
    (r"sub_mean\.", "normalize."),
]

_DISCRIMINATOR_RULES: list[Rule] = [
    # conv{i} and its LeakyReLU are the (2i-2)-th and (2i-1)-th layers of ``features``.
    (r"conv(\d+)\.", lambda m: f"features.{2 * int(m[1]) - 2}."),
    (r"fc1\.", "classifier.0."),
    (r"fc2\.", "classifier.2."),
]


def _rename(key: str, rules: list[Rule], what: str) -> str:
    for pattern, replacement in rules:
        renamed, count = re.subn(f"^{pattern}", replacement, key, count=1)
        if count:
            return renamed
    raise KeyError(f"unexpected key '{key}' in the official TTSR {what} state_dict.")


def convert_ttsr_checkpoint(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an official TTSR state_dict (``MainNet.*``, ``LTE.*``) to ``TTSR().state_dict()``.

    ``LTE_copy.*`` (the frozen LTE of the transferal perceptual loss, which our model does not
    store) is dropped, as the official trainer does when saving.
    """
    converted = {}
    for key, value in state.items():
        # nn.DataParallel, which the official trainer uses with several GPUs, prefixes "module.".
        key = key.removeprefix("module.")
        if key.startswith("LTE_copy."):
            continue
        if key.startswith("MainNet."):
            name = "net." + _rename(key.removeprefix("MainNet."), _MAIN_NET_RULES, "MainNet")
        elif key.startswith("LTE."):
            name = "lte." + _rename(key.removeprefix("LTE."), _LTE_RULES, "LTE")
        else:
            raise KeyError(
                f"unexpected key '{key}' in the official TTSR checkpoint (expected MainNet.*, "
                "LTE.* or LTE_copy.*)."
            )
        converted[name] = value
    return converted


def convert_ttsr_discriminator(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an official TTSR ``Discriminator`` state_dict (``conv1``..``conv10``, ``fc1``,
    ``fc2``) to ``revive.nets.ttsr.Discriminator().state_dict()``."""
    return {
        _rename(key.removeprefix("module."), _DISCRIMINATOR_RULES, "Discriminator"): value
        for key, value in state.items()
    }


def load_official_ttsr(path: str | Path) -> dict[str, Tensor]:
    """Read an official ``TTSR.pt`` / ``TTSR-rec.pt`` and return it converted for ``TTSR``.

    The file is read with ``weights_only=True``. Load the result with
    ``TTSR().load_state_dict(state, strict=True)``.
    """
    path = Path(path)
    state = load_weights_only(path)
    if not isinstance(state, Mapping) or not any(
        isinstance(key, str) and key.removeprefix("module.").startswith("MainNet.") for key in state
    ):
        raise ValueError(
            f"'{path}' is not a TTSR checkpoint (no MainNet.* keys); expected the official "
            "TTSR.pt or TTSR-rec.pt."
        )
    return convert_ttsr_checkpoint(state)
