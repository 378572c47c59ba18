"""Stage 1 of old-photo restoration: VAE1 (real R + synthetic X, latent D) and VAE2 (clean Y).

One module trains either VAE; ``latent_gan=True`` makes it VAE1. Losses follow the official code
(reference/bopbtl.md §1b): LSGAN on images, D feature matching, VGG19 perceptual, the "reduced"
KL, and for VAE1 the latent LSGAN that pushes R latents toward X latents. The three optimizers
step in the official order: generator, image D, latent D.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor

from revive.losses.gan import feature_matching_loss, lsgan_loss
from revive.losses.kl import gaussian_kl, reduced_kl
from revive.losses.layout import l1_loss, memory_order
from revive.losses.perceptual import VGGPerceptualLoss
from revive.metrics.domain import mmd_rbf, patch_accuracy
from revive.metrics.image import psnr, ssim
from revive.models.base import GANModule, linear_decay_schedulers
from revive.models.compiled import CompiledNetworks
from revive.models.memory_format import ChannelsLastBatches, to_channels_last
from revive.models.stages import load_vae
from revive.nets.discriminators import MultiscaleDiscriminator
from revive.nets.vae import VAE
from revive.utils.images import make_grid, to_unit

log = logging.getLogger(__name__)

REAL, SYNTHETIC = 1, 0  # the official per-sample domain flag ("inst")


class VAEModule(CompiledNetworks, ChannelsLastBatches, GANModule):
    """Train VAE1 (``latent_gan=True``) or VAE2 with the official losses and schedule.

    :param net: ``VAE`` arguments (``ngf``, ``mc``, ``learned_variance``).
    :param image_d: ``MultiscaleDiscriminator`` arguments for the image D.
    :param latent_gan: VAE1's latent discriminator on the encoder means (R vs X).
    :param variational: False = plain autoencoder (no noise, no KL).
    :param weights: loss weights ``gan``, ``feat``, ``vgg``, ``kl``, ``latent_gan``, ``l1``.
    :param l1_if_no_vgg: pixel L1 weight used instead when the VGG term is disabled.
    :param channels_last: weights and batches in channels_last memory format.
    :param torch_compile: compile the training step's networks in place (``CompiledNetworks``).
    :param init_from: a VAE1 or VAE2 checkpoint whose VAE weights start a fresh run (not
        official). The small VAE1 starts from the small VAE2: minutes of fine-tuning then keep
        its latent close to VAE2's, which a residual mapping needs to start at the identity.
    """

    compiled_networks = ("vae.encoder", "vae.decoder", "image_d", "latent_d", "vgg")

    def __init__(
        self,
        net: dict[str, Any],
        image_d: dict[str, Any],
        latent_d: dict[str, Any] | None = None,
        latent_gan: bool = False,
        variational: bool = True,
        weights: dict[str, float] | None = None,
        l1_if_no_vgg: float = 0.0,
        vgg_weights: str | None = None,
        vgg_on_missing: str = "error",
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        epochs_constant: int = 100,
        epochs_decay: int = 100,
        channels_last: bool = False,
        torch_compile: bool = False,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.vae = VAE(**net)
        self.image_d = MultiscaleDiscriminator(in_channels=net.get("out_channels", 3), **image_d)
        self.latent_d = None
        if latent_gan:
            latent_d = {"ndf": 64, "n_layers": 3, **(latent_d or {}), "num_scales": 1}
            self.latent_d = MultiscaleDiscriminator(self.vae.latent_channels, **latent_d)
        self.w = {"gan": 1.0, "feat": 10.0, "vgg": 10.0, "kl": 1.0, "latent_gan": 1.0, "l1": 0.0}
        self.w.update(weights or {})
        self.vgg = VGGPerceptualLoss(vgg_weights, vgg_on_missing, "model.vgg_weights")
        if not self.vgg.enabled and l1_if_no_vgg > 0:
            self.w["l1"] = l1_if_no_vgg
        self.run_notes = {"vgg19": self.vgg.weights_source, "effective_weights": dict(self.w)}
        self.val_outputs: dict[str, list[Tensor]] = {}
        self.grid_batch: dict[str, Tensor] | None = None
        if channels_last:
            to_channels_last(self)

    def on_fit_start(self) -> None:
        # Here rather than in __init__: a resumed run keeps its own weights, and loading this
        # checkpoint later does not need the init_from file.
        if self.hparams.init_from and self.trainer.ckpt_path is None:
            warm_start(self.vae, self.hparams.init_from, self.hparams.net)

    # ---- losses -----------------------------------------------------------------------------

    def kl_term(self, mean: Tensor, logvar: Tensor | None) -> Tensor:
        """The official reduced KL, the Gaussian KL with a learned variance, or 0 for an AE.

        In fp32 under bf16 autocast: a mean of squares over the whole latent.
        """
        if not self.hparams.variational:
            return mean.new_zeros((), dtype=torch.float32)
        if logvar is None:
            return reduced_kl(mean.float())
        return gaussian_kl(mean.float(), logvar.float())

    def generator_losses(
        self, real: Tensor, domain: Tensor | None
    ) -> tuple[dict[str, Tensor], Any]:
        """Every generator term for one batch, and what the discriminators need."""
        out = self.vae(real, sample=self.hparams.variational)
        pred_fake, pred_real = self.image_d(out.image), self.image_d(real)
        d_cfg = self.hparams.image_d
        terms = {
            "gan": lsgan_loss(pred_fake, True),
            "feat": feature_matching_loss(
                pred_fake, pred_real, d_cfg.get("n_layers", 3), d_cfg.get("num_scales", 2), 1.0
            ),
            "vgg": self.vgg(out.image, real),
            "kl": self.kl_term(out.mean, out.logvar),
            "l1": l1_loss(out.image, real),
        }
        latents = None
        if self.latent_d is not None:
            latents = split_domains(out.mean, domain)
            if latents is not None:
                terms["latent_gan"] = lsgan_loss(self.latent_d(latents[0]), True)
        return terms, (out, latents)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        real = batch["image"]
        opts = self.optimizers()
        opt_g, opt_d = opts[0], opts[1]
        terms, (out, latents) = self.generator_losses(real, batch.get("domain"))
        loss_g = sum(self.w[k] * v for k, v in terms.items() if self.w.get(k, 0) > 0)
        opt_g.zero_grad()
        self.manual_backward(loss_g)
        opt_g.step()

        fake = out.image.detach()
        loss_d = 0.5 * (
            lsgan_loss(self.image_d(fake), False) + lsgan_loss(self.image_d(real), True)
        )
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        opt_d.step()

        logs = {f"train/loss_{k}": v.detach() for k, v in terms.items()}
        logs.update({"train/loss_g": loss_g.detach(), "train/loss_d": loss_d.detach()})
        if latents is not None:
            r_lat, x_lat = (z.detach() for z in latents)
            # the latent D's "real" are synthetic latents, its "fake" the real-old ones
            loss_ld = 0.5 * (
                lsgan_loss(self.latent_d(r_lat), False) + lsgan_loss(self.latent_d(x_lat), True)
            )
            opt_ld = opts[2]
            opt_ld.zero_grad()
            self.manual_backward(loss_ld)
            opt_ld.step()
            logs["train/loss_latent_d"] = loss_ld.detach()
        self.log_dict(logs, prog_bar=False)
        self.log("train/loss", loss_g.detach(), prog_bar=True)

    # ---- validation -------------------------------------------------------------------------

    def evaluate(self, batch: dict[str, Tensor], batch_idx: int, stage: str) -> None:
        real = batch["image"]
        mean, _ = self.vae.encode(real)
        recon = self.vae.decode(mean)
        if batch_idx == 0 and stage == "val":
            self.grid_batch = {"image": real[:4], "recon": recon[:4]}
        domains = batch.get("domain")
        names = {REAL: "real", SYNTHETIC: "synthetic"}
        groups = [("clean", torch.ones_like(real[:, 0, 0, 0], dtype=torch.bool))]
        if domains is not None:
            groups = [(names[d], domains == d) for d in (REAL, SYNTHETIC)]
        for name, keep in groups:
            if keep.any():
                pred, target = to_unit(recon[keep]), to_unit(real[keep])
                self.log(
                    f"{stage}/psnr_{name}", psnr(pred, target).mean(), batch_size=int(keep.sum())
                )
                self.log(
                    f"{stage}/ssim_{name}", ssim(pred, target).mean(), batch_size=int(keep.sum())
                )
        self.log(f"{stage}/psnr", psnr(to_unit(recon), to_unit(real)).mean(), prog_bar=True)
        if domains is not None:
            pooled = mean.mean(dim=(2, 3))  # (B, C): one vector per photo for the gap measure
            self.val_outputs.setdefault("real", []).append(pooled[domains == REAL])
            self.val_outputs.setdefault("synthetic", []).append(pooled[domains == SYNTHETIC])
            latents = split_domains(mean, domains)
            if self.latent_d is not None and latents is not None:
                r_logits = self.latent_d(latents[0])[0][-1]
                x_logits = self.latent_d(latents[1])[0][-1]
                self.log(f"{stage}/latent_d_acc", patch_accuracy(x_logits, r_logits))

    def on_validation_epoch_end(self) -> None:
        self._log_domain_gap("val")

    def on_test_epoch_end(self) -> None:
        self._log_domain_gap("test")

    def _log_domain_gap(self, stage: str) -> None:
        """MMD between the pooled R and X latents of the whole evaluation set."""
        if self.val_outputs.get("real") and self.val_outputs.get("synthetic"):
            r = torch.cat(self.val_outputs["real"])
            x = torch.cat(self.val_outputs["synthetic"])
            if len(r) > 1 and len(x) > 1:
                self.log(f"{stage}/latent_mmd", mmd_rbf(r, x))
        self.val_outputs = {}

    def image_grid(self) -> Tensor | None:
        """Rows of input | reconstruction (from the mean) for the first validation photos."""
        if self.grid_batch is None:
            return None
        return make_grid([to_unit(self.grid_batch["image"]), to_unit(self.grid_batch["recon"])])

    # ---- optimizers ---------------------------------------------------------------------------

    def configure_optimizers(self):
        hp = self.hparams
        betas = tuple(hp.betas)
        params = [self.vae.parameters(), self.image_d.parameters()]
        if self.latent_d is not None:
            params.append(self.latent_d.parameters())
        optimizers = [torch.optim.Adam(p, lr=hp.lr, betas=betas) for p in params]
        return optimizers, linear_decay_schedulers(optimizers, hp.epochs_constant, hp.epochs_decay)


def warm_start(vae: VAE, path: str, net: dict[str, Any]) -> None:
    """Copy the VAE weights of the checkpoint at ``path`` (option ``model.init_from``) into ``vae``."""
    source, source_net = load_vae(path, None)
    mine = {k: v.shape for k, v in vae.state_dict().items()}
    theirs = {k: v.shape for k, v in source.state_dict().items()}
    if mine != theirs or source_net.get("norm", "instance") != net.get("norm", "instance"):
        raise ValueError(
            f"model.init_from='{path}' holds a VAE built with {source_net}, which does not match "
            f"model.net={dict(net)}; give a checkpoint with the same ngf, mc and norm."
        )
    vae.load_state_dict(source.state_dict())
    log.info("VAE weights initialised from %s", path)


def split_domains(latent: Tensor, domain: Tensor | None) -> tuple[Tensor, Tensor] | None:
    """(R latents, X latents), both cut to the shorter length as official; None if one is empty."""
    if domain is None:
        return None
    # Select in memory order: a boolean index returns (and its backward builds) NCHW tensors,
    # which would send NCHW gradients into a channels_last encoder.
    view = memory_order(latent)
    real, synthetic = view[domain == REAL], view[domain == SYNTHETIC]
    if view is not latent:
        real, synthetic = real.permute(0, 3, 1, 2), synthetic.permute(0, 3, 1, 2)
    n = min(len(real), len(synthetic))
    if n == 0:
        return None
    return real[:n], synthetic[:n]
