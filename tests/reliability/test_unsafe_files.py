"""Unsafe files: every load is ``weights_only=True``; a checkpoint carrying code is refused
unexecuted, wherever a user can hand one in."""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from revive.cli import convert, restore, sr
from revive.cli.eval import load_evaluable
from revive.cli.train import train
from revive.convert.bopbtl import OFFICIAL_RELEASE
from revive.models.stages import UnsafeCheckpointError
from revive.utils.reliability import AtomicCheckpointIO
from tests.conftest import REPO, TINY, compose_cfg, make_tiny_stages

REFUSED = "holds pickled code (posix.system); it was refused without running anything"


class Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.system, (f"touch {self.marker}",))


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint laid out like ours (and like the official files) with code in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "state_dict": {"net.weight": torch.zeros(2)},
        "hyper_parameters": {"net": {"depth": 2}, "threshold": 0.4, "hook": Payload(marker)},
        "MainNet.conv.weight": torch.zeros(2),
        "global_step": 1,
    }
    torch.save(state, path)
    return path


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "code_ran"


def test_the_crafted_checkpoint_does_run_code_when_loaded_unsafely(tmp_path, marker) -> None:
    path = malicious_checkpoint(tmp_path / "evil.ckpt", marker)
    torch.load(path, weights_only=False)  # what every loader here must never do
    assert marker.exists()


def refuse_in_restore(path: Path, tmp_path: Path, capsys) -> tuple[str, str]:
    ckpts = tmp_path / "ckpts"
    make_tiny_stages(ckpts)
    shutil.copy(path, ckpts / "mapping_quality.ckpt")
    (tmp_path / "in").mkdir()
    args = [f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", f"checkpoints={ckpts}"]
    cfg = compose_cfg("restore", args, tmp_path / "log")
    GlobalHydra.instance().clear()
    assert restore.run(cfg) == 2
    return capsys.readouterr().err, "mapping_quality.ckpt"


def refuse_in_sr(path: Path, tmp_path: Path, capsys) -> tuple[str, str]:
    args = ["lr=lr.png", "ref=ref.png", f"out={tmp_path / 'sr.png'}", f"checkpoint={path}"]
    cfg = compose_cfg("sr", args, tmp_path / "log")
    GlobalHydra.instance().clear()
    assert sr.run(cfg) == 2
    return capsys.readouterr().err, path.name


def refuse_in_convert_ttsr(path: Path, tmp_path: Path, capsys) -> tuple[str, str]:
    assert convert.main(["ttsr", str(path), str(tmp_path / "out.pt")]) == 2
    return capsys.readouterr().err, path.name


def refuse_in_convert_bopbtl(path: Path, tmp_path: Path, capsys) -> tuple[str, str]:
    release = tmp_path / "release"
    official = release / OFFICIAL_RELEASE["detection"].path
    official.parent.mkdir(parents=True)
    shutil.copy(path, official)
    assert convert.main(["bopbtl", str(release), str(tmp_path / "converted")]) == 2
    return capsys.readouterr().err, official.name


def refuse_in_resume(path: Path, tmp_path: Path, capsys) -> tuple[str, str]:
    overrides = [*TINY, "experiment=bopb/scratch_small", "logger=csv"]
    cfg = compose_cfg("train", [*overrides, f"ckpt_path={path}"], tmp_path / "run")
    try:
        with pytest.raises(UnsafeCheckpointError) as info:
            train(cfg)
    finally:
        GlobalHydra.instance().clear()
    return str(info.value), path.name


def refuse_in_eval(path: Path, tmp_path: Path, capsys) -> tuple[str, str]:
    with pytest.raises(UnsafeCheckpointError) as info:
        load_evaluable(path)
    return str(info.value), path.name


def refuse_in_checkpoint_io(path: Path, tmp_path: Path, capsys) -> tuple[str, str]:
    with pytest.raises(UnsafeCheckpointError) as info:
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)  # asked for; not granted
    return str(info.value), path.name


@pytest.mark.parametrize(
    "refuse",
    [
        refuse_in_restore,
        refuse_in_sr,
        refuse_in_convert_ttsr,
        refuse_in_convert_bopbtl,
        refuse_in_resume,
        refuse_in_eval,
        refuse_in_checkpoint_io,
    ],
    ids=lambda f: f.__name__.removeprefix("refuse_in_"),
)
def test_a_checkpoint_with_code_is_refused_unexecuted(tmp_path, marker, capsys, refuse) -> None:
    path = malicious_checkpoint(tmp_path / "evil.ckpt", marker)
    message, loaded = refuse(path, tmp_path, capsys)
    assert not marker.exists()  # the payload never ran
    assert REFUSED in message and loaded in message, message
    assert len(message.strip().splitlines()) == 1, message


# ---- every torch.load in src/ is weights_only=True ---------------------------------------

LOADERS = {"load", "load_state_dict_from_url", "load_from_checkpoint"}


def unsafe_loads(source: str, filename: str = "<src>") -> list[str]:
    """``file:line`` of every checkpoint load without ``weights_only=True``, and every pickle load."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = ast.unparse(node.func.value)
        name = node.func.attr
        if owner in ("pickle", "dill", "cloudpickle") and name in ("load", "loads"):
            found.append(f"{filename}:{node.lineno}: {owner}.{name}")
            continue
        if name not in LOADERS or (name == "load" and owner != "torch"):
            continue
        safe = any(
            k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in node.keywords
        )
        if not safe:
            found.append(f"{filename}:{node.lineno}: {ast.unparse(node.func)}")
    return found


def test_the_scanner_finds_unsafe_loads() -> None:
    code = (
        "torch.load(p)\n"
        "torch.load(p, weights_only=False)\n"
        "torch.load(p, weights_only=True)\n"
        "pickle.loads(b)\n"
        "Model.load_from_checkpoint(p)\n"
        "json.load(f)\n"
    )
    assert [f.split(": ")[1] for f in unsafe_loads(code)] == [
        "torch.load",
        "torch.load",
        "pickle.loads",
        "Model.load_from_checkpoint",
    ]


def test_every_load_in_src_is_weights_only() -> None:
    found = []
    for path in sorted((REPO / "src" / "revive").rglob("*.py")):
        found += unsafe_loads(path.read_text(), str(path.relative_to(REPO)))
    assert not found, "loads that could run pickled code:\n" + "\n".join(found)
