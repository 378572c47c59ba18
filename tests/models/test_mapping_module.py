"""Stage 2: the mapping trains on frozen stage-1 VAEs; bad stage checkpoints fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from revive.models.mapping import MappingModule, Restorer
from revive.models.stages import read_checkpoint, submodule_state
from tests.conftest import TINY_D, make_tiny_stages, save_stage


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> dict[str, Path]:
    return make_tiny_stages(tmp_path_factory.mktemp("stages"))


def mapping(stages: dict[str, Path], kind: str = "scratch", **options) -> MappingModule:
    return MappingModule(
        mapping={"kind": kind, "channels": 8, "n_blocks": 1},
        vae1_ckpt=str(stages["vae1"]),
        vae2_ckpt=str(stages["vae2"]),
        image_d=TINY_D,
        vgg_on_missing="disable",
        **options,
    )


def pairs(n: int = 4, size: int = 16) -> list[dict[str, torch.Tensor]]:
    mask = torch.zeros(1, size, size)
    mask[:, 4:8, 4:8] = 1
    return [
        {
            "degraded": torch.rand(3, size, size) * 2 - 1,
            "clean": torch.rand(3, size, size) * 2 - 1,
            "mask": mask,
        }
        for _ in range(n)
    ]


def train_steps(model: MappingModule, batches: int = 2) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=batches,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, DataLoader(pairs(), batch_size=2), DataLoader(pairs(2), batch_size=2))
    return trainer


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_vaes_stay_frozen_and_the_mapping_learns(stages) -> None:
    model = mapping(stages)
    vae1, vae2, net = (
        snapshot(m) for m in (model.restorer.vae1, model.restorer.vae2, model.restorer.mapping)
    )
    trainer = train_steps(model)
    assert not changed(vae1, model.restorer.vae1) and not changed(vae2, model.restorer.vae2)
    assert changed(net, model.restorer.mapping)
    assert not model.restorer.vae1.training
    for key in (
        "train/loss_latent",
        "val/psnr",
        "val/psnr_degraded",
        "val/psnr_vae2_recon",
        "val/ssim",
    ):
        assert key in trainer.callback_metrics, key


def test_end_to_end_ablation_trains_the_vaes(stages) -> None:
    model = mapping(stages, end_to_end=True)
    vae1 = snapshot(model.restorer.vae1)
    train_steps(model)
    assert changed(vae1, model.restorer.vae1)


def test_image_space_baseline_needs_no_stage_checkpoints() -> None:
    model = MappingModule(
        mapping={"kind": "quality", "channels": 8, "n_blocks": 1},
        vae1_ckpt=None,
        vae2_ckpt=None,
        image_d=TINY_D,
        image_space=True,
        vae_net={"ngf": 8, "mc": 8},
        vgg_on_missing="disable",
    )
    assert model.w["latent"] == 0.0
    train_steps(model, batches=1)


def test_swapped_vae_checkpoints_fail_naming_the_file_and_stage(stages) -> None:
    with pytest.raises(ValueError, match="VAE2") as err:
        MappingModule(
            mapping={"kind": "quality", "channels": 8, "n_blocks": 1},
            vae1_ckpt=str(stages["vae2"]),
            vae2_ckpt=str(stages["vae1"]),
            image_d=TINY_D,
            vgg_on_missing="disable",
        )
    assert str(stages["vae2"]) in str(err.value)


def test_missing_checkpoint_names_the_file_and_stage(tmp_path, stages) -> None:
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError, match="VAE1") as err:
        MappingModule(
            mapping={"kind": "quality"},
            vae1_ckpt=str(missing),
            vae2_ckpt=str(stages["vae2"]),
            image_d=TINY_D,
            vgg_on_missing="disable",
        )
    assert "nope.ckpt" in str(err.value)


def test_checkpoint_with_pickled_code_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"f": print}}, path)
    with pytest.raises(ValueError, match="refused"):
        read_checkpoint(path, "vae1")


def test_mapping_checkpoint_rebuilds_the_restorer_alone(stages, tmp_path) -> None:
    model = mapping(stages, kind="scratch")
    path = save_stage(model, tmp_path / "m.ckpt")
    state = read_checkpoint(path, "mapping")
    restorer = Restorer.from_hparams(state["hyper_parameters"])
    restorer.load_state_dict(submodule_state(state["state_dict"], "restorer"))
    x, mask = torch.rand(1, 3, 16, 16), torch.zeros(1, 1, 16, 16)
    torch.testing.assert_close(restorer.eval()(x, mask), model.restorer.eval()(x, mask))


def test_an_undamaged_validation_pair_does_not_make_the_degraded_psnr_infinite(stages) -> None:
    model = mapping(stages)
    batch = {key: torch.stack([p[key] for p in pairs(2)]) for key in ("degraded", "clean", "mask")}
    batch["degraded"][1] = batch["clean"][1]  # the preset left this pair untouched
    logged: dict[str, float] = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, float(value))  # noqa: ARG005
    with torch.no_grad():
        model.evaluate(batch, 0, "val")
    x, y = (batch[k][:1].add(1).div(2) for k in ("degraded", "clean"))
    expected = -10 * torch.log10(((x - y) ** 2).mean())  # the damaged pair alone
    assert logged["val/psnr_degraded"] == pytest.approx(float(expected), abs=1e-3)
    assert torch.isfinite(torch.tensor(logged["val/psnr_on_damaged"]))
