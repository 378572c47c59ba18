"""bf16-mixed training and channels_last for every model at tiny widths.

One bf16-mixed step of each model gives finite losses, steps every optimizer and keeps the weights
in channels_last; the loss terms and the WGAN-GP penalty are computed in fp32 under autocast;
channels_last changes strides, not results.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from revive.config import register_configs
from revive.models.mapping import MappingModule
from revive.models.scratch import ScratchDetector
from revive.models.ttsr import TTSRModule
from revive.models.vae import VAEModule
from tests.conftest import TINY_D, TINY_VAE, compose_cfg, make_tiny_stages

MODELS = ["scratch", "vae1", "vae2", "mapping_quality", "mapping_scratch", "ttsr"]
TTSR_NET = {"n_feats": 4, "num_res_blocks": [1, 1, 1, 1]}
SIZE = 32  # TTSR: HR 32, LR 8


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> dict[str, Path]:
    return make_tiny_stages(tmp_path_factory.mktemp("stages"))


def build(name: str, stages: dict[str, Path], channels_last: bool) -> pl.LightningModule:
    """A tiny module of ``name``; the perceptual terms use a random VGG19 where they exist."""
    torch.manual_seed(0)
    if name == "scratch":
        return ScratchDetector(net={"depth": 2, "wf": 2}, channels_last=channels_last)
    if name in ("vae1", "vae2"):
        return VAEModule(
            net=TINY_VAE, image_d=TINY_D, latent_d={"ndf": 4}, latent_gan=name == "vae1",
            vgg_on_missing="random", channels_last=channels_last,
        )  # fmt: skip
    if name.startswith("mapping"):
        # 32 channels, not 8: at width 8 the partial nonlocal block's W(y) starts so small that
        # its bf16 ResnetBlock convs return their bias alone and InstanceNorm zeroes the rest
        return MappingModule(
            mapping={"kind": name.split("_")[1], "channels": 32, "n_blocks": 1},
            vae1_ckpt=str(stages["vae1"]), vae2_ckpt=str(stages["vae2"]), image_d=TINY_D,
            vgg_on_missing="random", channels_last=channels_last,
        )  # fmt: skip
    return TTSRModule(
        net=TTSR_NET, vgg_on_missing="random", disc_size=SIZE, channels_last=channels_last
    )


def samples(name: str, n: int = 2) -> list[dict[str, torch.Tensor]]:
    """Samples with the keys of each model's datamodule."""
    g = torch.Generator().manual_seed(1)
    image = torch.rand(n, 3, SIZE, SIZE, generator=g) * 2 - 1
    mask = torch.zeros(n, 1, SIZE, SIZE)
    mask[..., 8:12, 4:28] = 1
    if name == "scratch":
        return [{"image": image[i, :1], "mask": mask[i]} for i in range(n)]
    if name in ("vae1", "vae2"):
        return [{"image": image[i], "domain": torch.tensor(i % 2)} for i in range(n)]
    if name.startswith("mapping"):
        degraded = image * (1 - mask) + mask
        return [{"degraded": degraded[i], "clean": image[i], "mask": mask[i]} for i in range(n)]
    lr = F.avg_pool2d(image, 4)
    ref = image.roll(5, dims=-1)
    items = {"hr": image, "lr": lr, "lr_up": F.interpolate(lr, scale_factor=4, mode="bicubic"),
             "ref": ref, "ref_down_up": F.interpolate(F.avg_pool2d(ref, 4), scale_factor=4)}  # fmt: skip
    return [{k: v[i] for k, v in items.items()} for i in range(n)]


def fit_one_step(model: pl.LightningModule, items: list, precision: str) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, precision=precision, max_epochs=1, limit_train_batches=1,
        limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, DataLoader(items, batch_size=len(items)))
    return trainer


@pytest.mark.parametrize("name", MODELS)
def test_one_bf16_mixed_step_is_finite_and_steps_every_optimizer(name, stages) -> None:
    model = build(name, stages, channels_last=True)
    before = {id(p): p.detach().clone() for p in model.parameters()}
    layouts: list[bool] = []
    step = model.training_step

    def recording_step(batch, *args, **kwargs):
        layouts.extend(
            v.is_contiguous(memory_format=torch.channels_last)
            for v in batch.values()
            if v.dim() == 4
        )
        return step(batch, *args, **kwargs)

    model.training_step = recording_step
    trainer = fit_one_step(model, samples(name), "bf16-mixed")
    assert layouts and all(layouts)  # the step received its images in channels_last

    losses = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
    assert "train/loss" in losses
    assert all(torch.isfinite(v) for v in losses.values()), losses
    for i, optimizer in enumerate(trainer.optimizers):  # generator, then each discriminator
        params = [p for group in optimizer.param_groups for p in group["params"]]
        pushed = [p.grad is not None and bool(p.grad.any()) for p in params]
        moved = [not torch.equal(before[id(p)], p.detach()) for p in params]
        # Discriminators: weights only. A WGAN critic's biases can cancel exactly in
        # E[D(fake)] - E[D(real)] (its last one always; the ones before it where real and fake
        # share their LeakyReLU slopes).
        counted = [g for p, g in zip(params, pushed) if i == 0 or p.dim() > 1]
        assert sum(counted) >= 0.9 * len(counted), (
            f"optimizer {i}: only {sum(counted)}/{len(counted)} parameters got a gradient"
        )
        assert all(m for m, g in zip(moved, pushed) if g), (
            "a parameter with a gradient did not move"
        )
    for p in model.parameters():  # the optimizers keep the memory format
        assert p.dtype == torch.float32
        if p.dim() == 4:
            assert p.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", ["vae1", "ttsr"])
def test_every_generator_term_is_fp32_under_bf16_autocast(name, stages) -> None:
    model = build(name, stages, channels_last=False).train()
    batch = next(iter(DataLoader(samples(name), batch_size=2)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if name == "vae1":
            terms, _ = model.generator_losses(batch["image"], batch["domain"])
        else:
            out = model.ttsr(batch["lr"], batch["lr_up"], batch["ref"], batch["ref_down_up"])
            terms = model.generator_losses(out, batch["hr"])
    # VAE1: image GAN, feature matching, VGG, KL, L1, latent GAN; TTSR: rec, per, tpl, adv
    assert len(terms) == (6 if name == "vae1" else 4)
    assert {k: v.dtype for k, v in terms.items()} == {k: torch.float32 for k in terms}


@pytest.mark.parametrize("channels_last", [False, True])
def test_wgan_gp_penalty_under_autocast_equals_fp32(channels_last, stages) -> None:
    model = build("ttsr", stages, channels_last)
    batch = next(iter(DataLoader(samples("ttsr"), batch_size=2)))
    hr, sr = batch["hr"], batch["hr"].flip(-1) * 0.5
    torch.manual_seed(3)  # the interpolation weights
    _, gp32 = model.critic_loss(hr, sr)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(3)
        loss_amp, gp_amp = model.critic_loss(hr, sr)
    assert gp_amp.dtype == torch.float32 and loss_amp.dtype == torch.float32
    assert gp32.item() > 1.0  # an untrained critic is far from 1-Lipschitz: a real penalty
    assert abs(gp_amp.item() - gp32.item()) <= 1e-3


def test_the_critic_sees_its_updated_weights_within_a_bf16_step(stages) -> None:
    # Lightning runs a manual-optimization step in one autocast region; autocast caches the bf16
    # copy of each weight, so without clearing it the 2nd critic update would run the old critic
    model = build("ttsr", stages, channels_last=False)
    critic = torch.optim.Adam(model.discriminator.parameters(), lr=0.1)
    model.optimizers = lambda: [None, critic]
    model.manual_backward = lambda loss: loss.backward()
    batch = next(iter(DataLoader(samples("ttsr"), batch_size=2)))
    hr, sr = batch["hr"], batch["hr"].flip(-1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        before = model.discriminator(hr).float()
        model.critic_steps(hr, sr)
        inside = model.discriminator(hr).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fresh = model.discriminator(hr).float()
    assert not torch.equal(before, fresh)  # the steps changed the critic
    torch.testing.assert_close(inside, fresh, rtol=0, atol=0)


@pytest.mark.parametrize("name", MODELS)
def test_channels_last_changes_strides_not_results(name, stages) -> None:
    contiguous, nhwc = build(name, stages, False), build(name, stages, True)
    assert all(p.is_contiguous() for p in contiguous.parameters())
    nhwc_4d = [p for p in nhwc.parameters() if p.dim() == 4]
    assert nhwc_4d and all(p.is_contiguous(memory_format=torch.channels_last) for p in nhwc_4d)
    batch = next(iter(DataLoader(samples(name), batch_size=2)))
    moved = dict(batch)
    nhwc.on_train_batch_start(moved, 0)
    assert all(
        v.is_contiguous(memory_format=torch.channels_last) for v in moved.values() if v.dim() == 4
    )
    with torch.no_grad():
        ours, reference = inference(nhwc.eval(), moved), inference(contiguous.eval(), batch)
    # other summation orders only; InstanceNorm after the nonlocal block's small W(y) amplifies
    # them to ~1e-3 at these widths, a quarter of a uint8 level
    torch.testing.assert_close(ours, reference, rtol=0, atol=2e-3)


def inference(model: pl.LightningModule, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """What the inference pipeline runs of each module."""
    if isinstance(model, ScratchDetector):
        return model(batch["image"])
    if isinstance(model, VAEModule):
        return model.vae(batch["image"], sample=False).image
    if isinstance(model, MappingModule):
        return model(batch["degraded"], batch["mask"])
    return model.ttsr(batch["lr"], batch["lr_up"], batch["ref"], batch["ref_down_up"]).sr


@pytest.mark.parametrize("group", ["scratch", "vae", "mapping", "ttsr"])
def test_channels_last_is_a_config_option_of_every_model_group(group, tmp_path) -> None:
    register_configs()
    cfg = compose_cfg(
        "train", ["~experiment", f"model={group}", "model.channels_last=true"], tmp_path
    )
    assert cfg.model.channels_last is True
    with pytest.raises(Exception, match="channels_lst"):
        compose_cfg("train", ["~experiment", f"model={group}", "model.channels_lst=true"], tmp_path)
