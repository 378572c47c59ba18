"""Stage 1: VAE1 / VAE2 training logic — losses, options, optimizer order, domain-gap metrics."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from revive.models.base import constant_then_linear
from revive.models.vae import VAEModule, split_domains
from tests.conftest import TINY_D, TINY_VAE


def vae1(**options) -> VAEModule:
    return VAEModule(
        net=TINY_VAE,
        image_d=TINY_D,
        latent_d={"ndf": 4},
        latent_gan=True,
        vgg_on_missing="disable",
        **options,
    )


def domain_batches(n: int = 4, size: int = 16) -> list[dict[str, torch.Tensor]]:
    return [
        {"image": torch.rand(3, size, size) * 2 - 1, "domain": torch.tensor(i % 2)}
        for i in range(n)
    ]


def fit(model: VAEModule, epochs: int = 1) -> pl.Trainer:
    loader = DataLoader(domain_batches(), batch_size=4)
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader, loader)
    return trainer


def test_optimizers_step_in_the_official_order(monkeypatch) -> None:
    model = vae1()
    order: list[str] = []
    trainer = pl.Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    original = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        names = {id(p) for p in self.param_groups[0]["params"]}
        for name, net in (
            ("generator", model.vae),
            ("image_d", model.image_d),
            ("latent_d", model.latent_d),
        ):
            if id(next(net.parameters())) in names:
                order.append(name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    trainer.fit(model, DataLoader(domain_batches(), batch_size=4))
    assert order == ["generator", "image_d", "latent_d"]


def test_vae1_logs_losses_psnr_and_the_domain_gap() -> None:
    trainer = fit(vae1())
    metrics = trainer.callback_metrics
    for key in (
        "train/loss_latent_gan",
        "train/loss_latent_d",
        "val/psnr_real",
        "val/psnr_synthetic",
        "val/latent_mmd",
        "val/latent_d_acc",
    ):
        assert key in metrics, key
    assert torch.isfinite(metrics["train/loss_g"])


def test_latent_d_off_has_two_optimizers_and_no_latent_terms() -> None:
    model = VAEModule(net=TINY_VAE, image_d=TINY_D, vgg_on_missing="disable")
    trainer = fit(model)
    assert model.latent_d is None and len(trainer.optimizers) == 2
    assert "train/loss_latent_gan" not in trainer.callback_metrics
    assert "val/latent_mmd" in trainer.callback_metrics  # the gap is measured either way


def test_plain_autoencoder_has_no_noise_and_no_kl() -> None:
    model = vae1(variational=False)
    x = torch.rand(2, 3, 16, 16)
    terms, (out, _) = model.generator_losses(x, torch.tensor([1, 0]))
    assert terms["kl"] == 0
    torch.testing.assert_close(out.image, model.vae.decode(model.vae.encode(x)[0]))


def test_reduced_kl_is_the_mean_square_of_the_latent() -> None:
    model = vae1()
    mean = torch.full((1, 8, 2, 2), 3.0)
    assert model.kl_term(mean, None).item() == pytest.approx(9.0)


def test_learned_variance_uses_the_gaussian_kl() -> None:
    model = vae1()
    model_lv = VAEModule(
        net={**TINY_VAE, "learned_variance": True}, image_d=TINY_D, vgg_on_missing="disable"
    )
    mean, logvar = torch.zeros(1, 8, 2, 2), torch.zeros(1, 8, 2, 2)
    assert model_lv.kl_term(mean, logvar).item() == pytest.approx(0.0)
    assert model.vae.logvar_head is None and model_lv.vae.logvar_head is not None


def test_missing_vgg_is_recorded_and_l1_stands_in() -> None:
    model = vae1(l1_if_no_vgg=10.0)
    assert model.run_notes["vgg19"] == "disabled"
    assert model.w["l1"] == 10.0


def test_paper_setting_without_vgg_weights_stops_naming_the_option(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="model.vgg_weights"):
        VAEModule(net=TINY_VAE, image_d=TINY_D, vgg_on_missing="error")


def test_latents_are_split_by_domain_and_cut_to_equal_length() -> None:
    latent = torch.arange(5.0).view(5, 1, 1, 1)
    real, synthetic = split_domains(latent, torch.tensor([1, 1, 1, 0, 0]))
    assert real.flatten().tolist() == [0.0, 1.0] and synthetic.flatten().tolist() == [3.0, 4.0]
    assert split_domains(latent, torch.ones(5, dtype=torch.long)) is None


def test_schedule_is_constant_then_linear_to_zero() -> None:
    factor = constant_then_linear(3, 2)
    assert [factor(e) for e in range(6)] == [1.0, 1.0, 1.0, 0.5, 0.0, 0.0]


def save_vae2(path, net=TINY_VAE) -> VAEModule:
    source = VAEModule(net=net, image_d=TINY_D, vgg_on_missing="disable")
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": dict(source.hparams)}, path)
    return source


def test_init_from_copies_the_source_vae_when_a_fresh_run_starts(tmp_path) -> None:
    source = save_vae2(tmp_path / "vae2.ckpt")
    model = vae1(init_from=str(tmp_path / "vae2.ckpt"), lr=0.0)  # lr 0: weights stay as loaded
    assert not torch.equal(model.vae.encoder[1].weight, source.vae.encoder[1].weight)
    fit(model)
    for key, value in source.vae.state_dict().items():
        torch.testing.assert_close(model.vae.state_dict()[key], value)


def test_init_from_a_differently_shaped_vae_names_the_option(tmp_path) -> None:
    save_vae2(tmp_path / "wide.ckpt", {**TINY_VAE, "mc": 2 * TINY_VAE["mc"]})
    with pytest.raises(ValueError, match="model.init_from"):
        fit(vae1(init_from=str(tmp_path / "wide.ckpt")))


def test_init_from_a_missing_file_names_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
        fit(vae1(init_from=str(tmp_path / "nowhere.ckpt")))


def test_init_from_leaves_a_resumed_run_its_own_weights(tmp_path) -> None:
    save_vae2(tmp_path / "vae2.ckpt")
    model = vae1(init_from=str(tmp_path / "vae2.ckpt"))
    own = {k: v.clone() for k, v in model.vae.state_dict().items()}
    model.trainer = pl.Trainer(logger=False, enable_checkpointing=False)
    model.trainer.ckpt_path = "last.ckpt"  # as when fit(ckpt_path=...) restored the run
    model.on_fit_start()
    assert all(torch.equal(model.vae.state_dict()[k], v) for k, v in own.items())
    model.trainer.ckpt_path = None  # a fresh run does load it
    model.on_fit_start()
    assert not all(torch.equal(model.vae.state_dict()[k], v) for k, v in own.items())
