"""TTSR training (Yang et al., CVPR 2020): losses, optimizers and evaluation of the official code.

Losses (reference/ttsr.md §2): ``L = 1 L_rec + 1e-2 L_per + 1e-2 L_tpl + 1e-3 L_adv``, with L1
reconstruction, the VGG19-relu5_1 feature MSE, the transferal perceptual loss (the LTE features of
SR against the transferred textures T) and WGAN-GP. Like the official ``AdversarialLoss``, each
step first updates the critic ``d_steps`` times (2) on the detached SR, then computes the generator
term with the updated critic. The first ``warmup_epochs`` train with L1 only. One Adam holds the
backbone (lr 1e-4) and the trainable LTE (lr 1e-5); its StepLR never decays at the official settings.

``losses="rec"`` is TTSR-rec (L1 only, no critic). Evaluation logs PSNR / SSIM on Y in the official
TTSR convention and in BasicSR's (crop 4), the bicubic baseline, and the same LR with an unrelated
reference (another sample's Ref) to measure what the texture transfer adds.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor
from torch.optim.lr_scheduler import StepLR

from revive.losses.gan import gradient_penalty, wgan_d_loss, wgan_g_loss
from revive.losses.layout import l1_loss
from revive.losses.perceptual import VGGFeatureMSE
from revive.losses.transferal import TransferalPerceptualLoss
from revive.metrics.image import psnr_ssim
from revive.models.base import BackwardOutsideAutocast
from revive.models.compiled import CompiledNetworks
from revive.models.memory_format import ChannelsLastBatches, to_channels_last
from revive.nets.ttsr import TTSR, Discriminator, TTSROutput
from revive.nets.vgg import find_vgg19_weights, missing_vgg19_message
from revive.utils.images import gray_to_rgb, make_grid, to_unit

log = logging.getLogger(__name__)

OFFICIAL_WEIGHTS = {"rec": 1.0, "per": 1e-2, "tpl": 1e-2, "adv": 1e-3}  # train.sh (TTSR)
LOSS_SETS = ("rec", "all")
SCALE = 4


class TTSRModule(CompiledNetworks, ChannelsLastBatches, BackwardOutsideAutocast):
    """Train TTSR (``losses="all"``) or TTSR-rec (``losses="rec"``) with the official recipe.

    :param net: ``TTSR`` arguments: ``n_feats``, ``num_res_blocks``, ``res_scale`` and the ablation
        switches ``use_csfi``, ``use_hard_attention``, ``use_soft_attention``, ``lte_trainable``
        (plus the search's ``search_impl``, ``query_chunk``, ``key_chunk``, ``coverage_correct``).
    :param losses: ``all`` (rec + per + tpl + adv) or ``rec`` (L1 only).
    :param weights: loss weights ``rec``, ``per``, ``tpl``, ``adv`` (official by default).
    :param tpl_variant: ``official`` (feature MSE) or ``gram`` (the paper's Gram form).
    :param vgg_weights: VGG19 file for the LTE init and the perceptual loss; null = hub cache.
    :param vgg_on_missing: ``error`` (stop), ``disable`` (random LTE, no perceptual term) or
        ``random`` (tests: random LTE and random perceptual VGG).
    :param disc_size: HR patch size the critic is built for (its linear layer fixes it).
    :param warmup_epochs: epochs of L1 only before the other terms start (official 2).
    :param lr_decay_epochs, lr_gamma: the official StepLR of the generator optimizer: its learning
        rates are multiplied by ``lr_gamma`` every ``lr_decay_epochs`` epochs after the warm-up
        (official ``decay=999999``: constant).
    :param channels_last: weights and batches in channels_last memory format.
    :param torch_compile: compile the training step's networks in place (``CompiledNetworks``).
    """

    # not the WGAN-GP critic: its penalty differentiates a gradient (double backward)
    compiled_networks = ("ttsr", "perceptual")

    def __init__(
        self,
        net: dict[str, Any],
        losses: str = "all",
        weights: dict[str, float] | None = None,
        tpl_variant: str = "official",
        vgg_weights: str | None = None,
        vgg_on_missing: str = "error",
        lr: float = 1e-4,
        lr_lte: float = 1e-5,
        lr_d: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        betas_d: tuple[float, float] = (0.0, 0.9),
        eps: float = 1e-8,
        d_steps: int = 2,
        gp_weight: float = 10.0,
        disc_size: int = 160,
        warmup_epochs: int = 0,
        lr_decay_epochs: int = 999999,
        lr_gamma: float = 0.5,
        channels_last: bool = False,
        torch_compile: bool = False,
    ) -> None:
        super().__init__()
        if losses not in LOSS_SETS:
            raise ValueError(f"model.losses='{losses}' is unknown; use one of {LOSS_SETS}.")
        self.save_hyperparameters()
        self.automatic_optimization = False
        lte_weights = self._lte_weights(vgg_weights, vgg_on_missing)
        self.ttsr = TTSR(**net, vgg_weights=lte_weights)
        unknown = set(weights or {}) - set(OFFICIAL_WEIGHTS)
        if unknown:
            raise ValueError(
                f"model.weights has unknown terms {sorted(unknown)}; use {list(OFFICIAL_WEIGHTS)}."
            )
        self.w = {**OFFICIAL_WEIGHTS, **(weights or {})}
        if losses == "rec":
            self.w = {"rec": self.w["rec"]}
        self.perceptual = None
        if self.w.get("per", 0) > 0:
            self.perceptual = VGGFeatureMSE(vgg_weights, vgg_on_missing, "model.vgg_weights")
            if not self.perceptual.enabled:
                self.w["per"], self.perceptual = 0.0, None
        self.tpl = TransferalPerceptualLoss(tpl_variant)
        self.discriminator = Discriminator(disc_size) if self.w.get("adv", 0) > 0 else None
        self.w = {name: weight for name, weight in self.w.items() if weight > 0}
        self.run_notes = {
            "lte_init": str(lte_weights) if lte_weights else "random (no VGG19 weights)",
            "effective_weights": dict(self.w),
        }
        self.grid_batch: dict[str, Tensor] | None = None
        self._previous_ref: tuple[Tensor, Tensor] | None = None
        if channels_last:
            to_channels_last(self)

    @staticmethod
    def _lte_weights(path: str | None, on_missing: str) -> str | None:
        """The VGG19 file the LTE starts from, or None (random LTE) when allowed."""
        if on_missing not in ("error", "disable", "random"):
            raise ValueError(
                f"model.vgg_on_missing='{on_missing}' is unknown; use error, disable or random."
            )
        weights = find_vgg19_weights(path)
        if weights is None and on_missing == "error":
            raise FileNotFoundError(missing_vgg19_message("model.vgg_weights"))
        if weights is None:
            log.warning(
                "TTSR's LTE starts from RANDOM weights: %s",
                missing_vgg19_message("model.vgg_weights"),
            )
        return str(weights) if weights else None

    # ---- losses -----------------------------------------------------------------------------

    @property
    def in_warmup(self) -> bool:
        """The official init epochs: reconstruction only, the critic untouched."""
        return self.current_epoch < self.hparams.warmup_epochs

    def generator_losses(self, out: TTSROutput, hr: Tensor) -> dict[str, Tensor]:
        """Every active generator term (unweighted) for one batch."""
        terms = {"rec": l1_loss(out.sr, hr)}
        if self.in_warmup:
            return terms
        if "per" in self.w:
            terms["per"] = self.perceptual(out.sr, hr)
        if "tpl" in self.w:
            # T is not detached: the official TPL also trains the LTE through the V features
            textures = (out.T_lv1, out.T_lv2, out.T_lv3)
            terms["tpl"] = self.tpl(self.ttsr.texture_features(out.sr), textures, out.S)
        if "adv" in self.w:
            # the critic's weights need no gradient here; SR still gets it through the critic
            self.discriminator.requires_grad_(False)
            terms["adv"] = wgan_g_loss(self.discriminator(out.sr))
            self.discriminator.requires_grad_(True)
        return terms

    def critic_loss(self, hr: Tensor, sr: Tensor) -> tuple[Tensor, Tensor]:
        """WGAN-GP critic loss ``E[D(sr)] - E[D(hr)] + 10 GP`` on detached SR; also the GP alone."""
        fake = sr.detach()
        gp = gradient_penalty(self.discriminator, hr, fake, self.hparams.gp_weight)
        return wgan_d_loss(self.discriminator(hr), self.discriminator(fake)) + gp, gp

    def critic_steps(self, hr: Tensor, sr: Tensor) -> dict[str, Tensor]:
        """The official critic update: ``d_steps`` Adam steps on the same (detached) SR batch."""
        opt_d = self.optimizers()[1]
        for _ in range(self.hparams.d_steps):
            loss_d, gp = self.critic_loss(hr, sr)
            opt_d.zero_grad()
            self.manual_backward(loss_d)
            opt_d.step()
            # bf16-mixed: the whole step runs in one autocast region, whose cache would hand the
            # next critic pass the bf16 copies of the weights before this update
            torch.clear_autocast_cache()
        return {"train/loss_d": loss_d.detach(), "train/gp": gp.detach()}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        hr = batch["hr"]
        out = self.ttsr(batch["lr"], batch["lr_up"], batch["ref"], batch["ref_down_up"])
        # official order: the critic first (after the warm-up), then the generator
        logs = self.critic_steps(hr, out.sr) if "adv" in self.w and not self.in_warmup else {}
        # L = w_rec L_rec + w_per L_per + w_tpl L_tpl + w_adv L_adv  (L_rec alone in the warm-up)
        terms = self.generator_losses(out, hr)
        loss = sum(self.w[name] * term for name, term in terms.items())
        opts = self.optimizers()
        opt_g = opts[0] if isinstance(opts, list) else opts
        opt_g.zero_grad()
        self.manual_backward(loss)
        opt_g.step()

        logs.update({f"train/loss_{name}": term.detach() for name, term in terms.items()})
        self.log_dict(logs, batch_size=hr.shape[0])
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=hr.shape[0])

    def on_train_epoch_end(self) -> None:
        if not self.in_warmup:
            self.lr_schedulers().step()

    # ---- evaluation ---------------------------------------------------------------------------

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def _evaluate(self, batch: dict[str, Tensor], batch_idx: int, stage: str) -> None:
        lr, lr_up, hr = batch["lr"], batch["lr_up"], batch["hr"]
        n = hr.shape[0]
        out = self.ttsr(lr, lr_up, batch["ref"], batch["ref_down_up"])
        psnr_y, ssim_y = psnr_ssim(to_unit(out.sr), to_unit(hr), "ttsr_official")
        psnr_b, ssim_b = psnr_ssim(
            to_unit(out.sr), to_unit(hr), "basicsr", crop_border=SCALE, y_channel=True
        )
        self.log(f"{stage}/psnr_y", psnr_y.mean(), batch_size=n, prog_bar=True)
        self.log(f"{stage}/ssim_y", ssim_y.mean(), batch_size=n)
        self.log(f"{stage}/psnr_y_basicsr", psnr_b.mean(), batch_size=n)
        self.log(f"{stage}/ssim_y_basicsr", ssim_b.mean(), batch_size=n)
        self.log(f"{stage}/psnr_bicubic", official_psnr_y(lr_up, hr).mean(), batch_size=n)
        psnr_bicubic_b = psnr_ssim(
            to_unit(lr_up), to_unit(hr), "basicsr", crop_border=SCALE, y_channel=True
        )[0]
        self.log(f"{stage}/psnr_bicubic_basicsr", psnr_bicubic_b.mean(), batch_size=n)
        self.log(f"{stage}/s_mean", out.S.mean(), batch_size=n)
        unrelated = self._unrelated_ref(batch)
        if unrelated is not None:
            other = self.ttsr(lr, lr_up, *unrelated)
            psnr_other = official_psnr_y(other.sr, hr).mean()
            self.log(f"{stage}/psnr_unrelated_ref", psnr_other, batch_size=n)
            self.log(f"{stage}/s_mean_unrelated_ref", other.S.mean(), batch_size=n)
        if batch_idx == 0 and stage == "val":
            first = slice(0, 4)
            self.grid_batch = {
                "lr_up": lr_up[first], "ref": batch["ref"][first], "sr": out.sr[first],
                "hr": hr[first], "S": out.S[first],
            }  # fmt: skip

    def _unrelated_ref(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor] | None:
        """Another sample's (Ref, Ref down-up): the batch rolled by one, or with batch size 1 the
        previous batch's (None for the first)."""
        ref, ref_down_up = batch["ref"], batch["ref_down_up"]
        if ref.shape[0] > 1:
            return ref.roll(1, dims=0), ref_down_up.roll(1, dims=0)
        previous, self._previous_ref = self._previous_ref, (ref, ref_down_up)
        return previous

    def on_validation_epoch_start(self) -> None:
        self._previous_ref = None

    def on_test_epoch_start(self) -> None:
        self._previous_ref = None

    def image_grid(self) -> Tensor | None:
        """Rows of LR-up | Ref | SR | GT | S (soft attention) for the first validation samples."""
        if self.grid_batch is None:
            return None
        g = self.grid_batch
        columns = [to_unit(g[key]) for key in ("lr_up", "ref", "sr", "hr")]
        return make_grid([*columns, gray_to_rgb(g["S"].clamp(0, 1))])

    # ---- optimizers ---------------------------------------------------------------------------

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[StepLR]]:
        hp = self.hparams
        groups = [{"params": list(self.ttsr.net.parameters()), "lr": hp.lr, "name": "net"}]
        lte = [p for p in self.ttsr.lte.parameters() if p.requires_grad]
        if lte:
            groups.append({"params": lte, "lr": hp.lr_lte, "name": "lte"})
        betas = tuple(float(b) for b in hp.betas)
        optimizers = [torch.optim.Adam(groups, betas=betas, eps=hp.eps)]
        if self.discriminator is not None:
            betas_d = tuple(float(b) for b in hp.betas_d)  # torch refuses (0, 0.9): int and float
            optimizers.append(
                torch.optim.Adam(
                    self.discriminator.parameters(), lr=hp.lr_d, betas=betas_d, eps=hp.eps
                )
            )
        decay = StepLR(optimizers[0], step_size=hp.lr_decay_epochs, gamma=hp.lr_gamma)
        return optimizers, [decay]


def official_psnr_y(pred: Tensor, hr: Tensor) -> Tensor:
    """Per-image Y-PSNR of [-1, 1] images in the official TTSR convention (rounded, no crop)."""
    return psnr_ssim(to_unit(pred), to_unit(hr), "ttsr_official")[0]
