"""TTSR training logic: loss terms, WGAN-GP step order, warm-up, optimizer groups, ablations, metrics."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from revive.models.ttsr import TTSRModule, official_psnr_y
from revive.nets.ttsr import TTSROutput

TINY_NET = {"n_feats": 4, "num_res_blocks": [1, 1, 1, 1]}
CROP = 32  # HR 32, LR 8: SSIM with crop_border 4 needs 11x11 left


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread


def module(**options) -> TTSRModule:
    torch.manual_seed(0)
    options = {"vgg_on_missing": "random", "disc_size": CROP, **options}
    return TTSRModule(net={**TINY_NET, **options.pop("net", {})}, **options)


def samples(n: int = 4, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Samples as the datamodule gives them (Ref = a shifted copy of HR)."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(n):
        hr = torch.rand(1, 3, CROP, CROP, generator=g) * 2 - 1
        lr = F.avg_pool2d(hr, 4)
        ref = hr.roll(3, dims=-1)
        items.append({
            "lr": lr[0], "lr_up": F.interpolate(lr, scale_factor=4, mode="bicubic")[0], "hr": hr[0],
            "ref": ref[0],
            "ref_down_up": F.interpolate(F.avg_pool2d(ref, 4), scale_factor=4, mode="bicubic")[0],
        })  # fmt: skip
    return items


def trainer(**options) -> pl.Trainer:
    defaults = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                "enable_model_summary": False, "max_epochs": 1}  # fmt: skip
    return pl.Trainer(**{**defaults, **options})


def batch_of(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return next(iter(DataLoader(items, batch_size=len(items))))


def test_official_defaults_weights_and_optimizers() -> None:
    model = module()
    assert model.w == {"rec": 1.0, "per": 1e-2, "tpl": 1e-2, "adv": 1e-3}
    (opt_g, opt_d), _ = model.configure_optimizers()
    names = [g["name"] for g in opt_g.param_groups]
    assert names == ["net", "lte"]
    assert [g["lr"] for g in opt_g.param_groups] == [1e-4, 1e-5]
    assert opt_g.defaults["betas"] == (0.9, 0.999) and opt_g.defaults["eps"] == 1e-8
    assert opt_d.defaults["lr"] == 1e-4 and opt_d.defaults["betas"] == (0.0, 0.9)
    lte_ids = {id(p) for p in model.ttsr.lte.parameters() if p.requires_grad}
    assert {id(p) for p in opt_g.param_groups[1]["params"]} == lte_ids
    assert not lte_ids & {id(p) for p in opt_g.param_groups[0]["params"]}


def test_frozen_lte_has_no_parameter_group() -> None:
    (opt_g,), _ = module(net={"lte_trainable": False}, losses="rec").configure_optimizers()
    assert [g["name"] for g in opt_g.param_groups] == ["net"]


def test_generator_terms_on_known_inputs() -> None:
    model = module().train()
    b = batch_of(samples(2))
    out = model.ttsr(b["lr"], b["lr_up"], b["ref"], b["ref_down_up"])
    terms = model.generator_losses(out, b["hr"])
    assert set(terms) == {"rec", "per", "tpl", "adv"}
    torch.testing.assert_close(terms["rec"], (out.sr - b["hr"]).abs().mean())
    torch.testing.assert_close(terms["per"], model.perceptual(out.sr, b["hr"]))
    sr_feats = model.ttsr.texture_features(out.sr)  # official: mean of the 3 level MSEs
    expected_tpl = (
        sum(F.mse_loss(f, t) for f, t in zip(sr_feats, (out.T_lv1, out.T_lv2, out.T_lv3))) / 3
    )
    torch.testing.assert_close(terms["tpl"], expected_tpl)
    torch.testing.assert_close(terms["adv"], -model.discriminator(out.sr).mean())


def test_tpl_is_zero_when_sr_features_equal_the_textures() -> None:
    model = module()
    x = torch.rand(1, 3, CROP, CROP) * 2 - 1
    lv1, lv2, lv3 = model.ttsr.texture_features(x)
    S = torch.ones(1, 1, CROP // 4, CROP // 4)
    out = TTSROutput(x, S, lv3, lv2, lv1)
    assert model.generator_losses(out, x)["tpl"] == 0
    assert model.generator_losses(out, x)["rec"] == 0


def test_adversarial_term_leaves_no_gradient_on_the_critic() -> None:
    model = module()
    b = batch_of(samples(2))
    out = model.ttsr(b["lr"], b["lr_up"], b["ref"], b["ref_down_up"])
    model.generator_losses(out, b["hr"])["adv"].backward()
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert all(p.requires_grad for p in model.discriminator.parameters())
    assert model.ttsr.net.merge_tail.conv_tail2.weight.grad is not None


def test_critic_loss_is_wgan_plus_penalty() -> None:
    model = module()
    hr, sr = torch.rand(2, 3, CROP, CROP), torch.rand(2, 3, CROP, CROP)
    torch.manual_seed(1)
    loss, gp = model.critic_loss(hr, sr)
    wgan = model.discriminator(sr).mean() - model.discriminator(hr).mean()
    torch.testing.assert_close(loss, wgan + gp)
    assert gp > 0


def record_steps(monkeypatch, model: TTSRModule) -> list[str]:
    """Which optimizer steps, in order: 'D' (critic) or 'G' (generator)."""
    order: list[str] = []
    critic = {id(p) for p in model.discriminator.parameters()}
    original = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        first = self.param_groups[0]["params"][0]
        order.append("D" if id(first) in critic else "G")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    return order


def test_critic_steps_twice_before_each_generator_step(monkeypatch) -> None:
    model = module()
    order = record_steps(monkeypatch, model)
    trainer(limit_train_batches=2, limit_val_batches=0).fit(
        model, DataLoader(samples(4), batch_size=2)
    )
    assert order == ["D", "D", "G", "D", "D", "G"]


def test_warmup_trains_l1_only_and_leaves_the_critic_alone(monkeypatch) -> None:
    model = module(warmup_epochs=1)
    order = record_steps(monkeypatch, model)
    run = trainer(max_epochs=2, limit_val_batches=0, log_every_n_steps=1)
    logged: list[set[str]] = []
    original_log_dict = TTSRModule.log_dict

    def capture(self, metrics, *args, **kwargs):
        logged.append(set(metrics))
        return original_log_dict(self, metrics, *args, **kwargs)

    monkeypatch.setattr(TTSRModule, "log_dict", capture)
    run.fit(model, DataLoader(samples(2), batch_size=2))
    assert order == ["G", "D", "D", "G"]  # epoch 0: warm-up; epoch 1: the official order
    assert logged[0] == {"train/loss_rec"}
    assert logged[1] >= {"train/loss_rec", "train/loss_per", "train/loss_tpl", "train/loss_adv",
                         "train/loss_d", "train/gp"}  # fmt: skip


def test_step_lr_decays_both_groups_after_the_warmup_only() -> None:
    model = module(losses="rec", warmup_epochs=1, lr_decay_epochs=1, lr_gamma=0.5)
    run = trainer(max_epochs=3, limit_val_batches=0)
    run.fit(model, DataLoader(samples(2), batch_size=2))
    lrs = [group["lr"] for group in run.optimizers[0].param_groups]
    assert lrs == pytest.approx([1e-4 / 4, 1e-5 / 4])  # epochs 1 and 2 decayed, not epoch 0


def test_rec_loss_set_is_l1_only_without_critic() -> None:
    model = module(losses="rec")
    assert model.w == {"rec": 1.0} and model.discriminator is None and model.perceptual is None
    assert len(model.configure_optimizers()[0]) == 1


def test_missing_vgg_weights_stop_paper_presets_and_are_noted_in_small_ones(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    with pytest.raises(FileNotFoundError, match="model.vgg_weights"):
        module(vgg_on_missing="error")
    small = module(vgg_on_missing="disable")
    assert small.run_notes["lte_init"].startswith("random")
    assert "per" not in small.w and small.run_notes["effective_weights"]["tpl"] == 1e-2


def test_unknown_loss_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="model.weights"):
        module(weights={"percep": 1.0})


@pytest.mark.parametrize(
    "switch",
    [{"use_csfi": False}, {"use_hard_attention": False}, {"use_soft_attention": False},
     {"lte_trainable": False}],
)  # fmt: skip
def test_ablation_switches_build_and_train_a_step(switch) -> None:
    model = module(net=switch, losses="rec")
    run = trainer(max_steps=1, limit_val_batches=0)
    run.fit(model, DataLoader(samples(2), batch_size=2))
    assert run.global_step == 1 and torch.isfinite(run.callback_metrics["train/loss"])


def test_validation_logs_both_conventions_bicubic_and_unrelated_reference() -> None:
    model = module(losses="rec")
    run = trainer(max_epochs=1, limit_train_batches=1)
    items = samples(4)
    run.fit(model, DataLoader(items, batch_size=2), DataLoader(items, batch_size=2))
    metrics = run.callback_metrics
    for key in ("val/psnr_y", "val/ssim_y", "val/psnr_y_basicsr", "val/ssim_y_basicsr",
                "val/psnr_bicubic", "val/psnr_bicubic_basicsr", "val/psnr_unrelated_ref", "val/s_mean"):  # fmt: skip
        assert key in metrics and torch.isfinite(metrics[key]), key
    b = batch_of(items)
    expected_bicubic = official_psnr_y(b["lr_up"], b["hr"]).mean()
    torch.testing.assert_close(metrics["val/psnr_bicubic"], expected_bicubic, rtol=1e-5, atol=1e-4)
    grid = model.image_grid()
    assert grid.shape[0] == 3 and grid.shape[2] == 5 * (CROP + 2) + 2  # LR-up|Ref|SR|GT|S


def test_unrelated_reference_is_another_sample() -> None:
    model = module(losses="rec")
    b = batch_of(samples(3))
    ref, _ = model._unrelated_ref(b)
    torch.testing.assert_close(ref[1], b["ref"][0])
    singles = [batch_of([item]) for item in samples(2)]
    assert model._unrelated_ref(singles[0]) is None  # batch size 1: the previous batch's Ref
    torch.testing.assert_close(model._unrelated_ref(singles[1])[0], singles[0]["ref"])


def test_test_step_logs_under_test() -> None:
    model = module(losses="rec")
    run = trainer()
    run.test(model, DataLoader(samples(2), batch_size=2), verbose=False)
    assert (
        "test/psnr_y" in run.callback_metrics and "test/psnr_unrelated_ref" in run.callback_metrics
    )
