"""Stage 2 of old-photo restoration: map VAE1 latents of X to VAE2 latents of Y.

Both VAEs come from stage-1 checkpoints and stay frozen (in eval mode); only the mapping (and its
conditional discriminator) trains. Losses as official (reference/bopbtl.md §1c): latent L1 x60,
LSGAN on (degraded, restored) pairs, D feature matching x10, VGG x10.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from revive.losses.gan import feature_matching_loss, lsgan_loss
from revive.losses.layout import l1_loss
from revive.losses.perceptual import VGGPerceptualLoss
from revive.metrics.image import psnr, ssim
from revive.metrics.lpips import build_lpips
from revive.models.base import GANModule, linear_decay_schedulers
from revive.models.compiled import CompiledNetworks
from revive.models.memory_format import ChannelsLastBatches, to_channels_last
from revive.models.stages import freeze, load_vae
from revive.nets.discriminators import MultiscaleDiscriminator
from revive.nets.mapping import PatchAttentionMapping, QualityMapping, ScratchMapping
from revive.nets.vae import VAE
from revive.utils.images import gray_to_rgb, make_grid, to_unit

MAPPINGS = {
    "quality": QualityMapping,
    "scratch": ScratchMapping,
    "patch_attention": PatchAttentionMapping,
}


def build_mapping(kind: str, **kwargs: Any) -> nn.Module:
    """The mapping network ``kind`` (quality | scratch | patch_attention).

    Options that do not apply to ``kind`` (e.g. ``use_mask`` for quality) are ignored, so one
    config block serves every kind.
    """
    if kind not in MAPPINGS:
        raise ValueError(
            f"model.mapping.kind='{kind}' is unknown; choose one of {sorted(MAPPINGS)}."
        )
    cls = MAPPINGS[kind]
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in kwargs.items() if k in accepted})


class Restorer(nn.Module):
    """VAE1 encoder -> mapping -> VAE2 decoder: the global restoration network of the paper."""

    @classmethod
    def from_hparams(cls, hp: dict[str, Any]) -> Restorer:
        """An untrained restorer shaped as a mapping checkpoint's hyperparameters describe."""
        vae1, vae2 = VAE(**hp["vae1_net"]), VAE(**hp["vae2_net"])
        kind = hp["mapping"]["kind"]
        args = {k: v for k, v in hp["mapping"].items() if k != "kind"}
        args.setdefault("in_channels", vae1.latent_channels)
        return cls(vae1, build_mapping(kind, **args), vae2, kind)

    def __init__(self, vae1: VAE, mapping: nn.Module, vae2: VAE, kind: str) -> None:
        super().__init__()
        self.vae1, self.mapping, self.vae2, self.kind = vae1, mapping, vae2, kind

    def map_latent(self, degraded: Tensor, mask: Tensor | None) -> Tensor:
        """The mapped latent of a degraded image (mask at image resolution, 1 = damage)."""
        z = self.vae1.encode(degraded)[0]
        return self.mapping(z) if self.kind == "quality" else self.mapping(z, mask)

    def forward(self, degraded: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.vae2.decode(self.map_latent(degraded, mask))


class MappingModule(CompiledNetworks, ChannelsLastBatches, GANModule):
    """Train the latent mapping (quality or scratch) on top of two frozen stage-1 VAEs.

    :param mapping: ``kind`` plus the network's arguments (``channels``, ``n_blocks``, ...).
    :param vae1_ckpt: / :param vae2_ckpt: stage-1 checkpoints (ours or converted official).
    :param end_to_end: ablation: train the VAEs together with the mapping.
    :param image_space: ablation "pix2pix": the same encoder-mapping-decoder from random init,
        trained end to end on images only (no stage-1 weights, no latent loss).
    :param weights: ``latent``, ``gan``, ``feat``, ``vgg``, ``l1``.
    :param channels_last: weights and batches in channels_last memory format.
    :param torch_compile: compile the training step's networks in place (``CompiledNetworks``).
    """

    def __init__(
        self,
        mapping: dict[str, Any],
        vae1_ckpt: str | None,
        vae2_ckpt: str | None,
        image_d: dict[str, Any],
        end_to_end: bool = False,
        image_space: bool = False,
        vae_net: dict[str, Any] | None = None,
        weights: dict[str, float] | None = None,
        l1_if_no_vgg: float = 0.0,
        vgg_weights: str | None = None,
        vgg_on_missing: str = "error",
        lr_g: float = 2e-4,
        lr_d: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        epochs_constant: int = 150,
        epochs_decay: int = 100,
        channels_last: bool = False,
        torch_compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if image_space:
            net1 = net2 = dict(vae_net or {})
            vae1, vae2 = VAE(**net1), VAE(**net2)
        else:
            vae1, net1 = load_vae(vae1_ckpt, "vae1")
            vae2, net2 = load_vae(vae2_ckpt, "vae2")
        # recorded so the checkpoint rebuilds the whole restorer without the stage-1 files
        self.hparams["vae1_net"], self.hparams["vae2_net"] = net1, net2
        kind = mapping["kind"]
        net_args = {k: v for k, v in mapping.items() if k != "kind"}
        net_args.setdefault("in_channels", vae1.latent_channels)
        self.restorer = Restorer(vae1, build_mapping(kind, **net_args), vae2, kind)
        self.trains_vaes = end_to_end or image_space
        if not self.trains_vaes:
            freeze(self.restorer.vae1)
            freeze(self.restorer.vae2)
        self.image_d = MultiscaleDiscriminator(in_channels=6, **image_d)
        self.w = {
            "latent": 0.0 if image_space else 60.0,
            "gan": 1.0,
            "feat": 10.0,
            "vgg": 10.0,
            "l1": 0.0,
        }
        self.w.update(weights or {})
        self.vgg = VGGPerceptualLoss(vgg_weights, vgg_on_missing, "model.vgg_weights")
        if not self.vgg.enabled and l1_if_no_vgg > 0:
            self.w["l1"] = l1_if_no_vgg
        self.lpips = build_lpips("alex")
        self.run_notes = {
            "vgg19": self.vgg.weights_source,
            "lpips": self.lpips.backbone_source if self.lpips else "skipped (no backbone weights)",
            "effective_weights": dict(self.w),
        }
        self.grid_batch: dict[str, Tensor] | None = None
        if channels_last:
            to_channels_last(self)

    @property
    def compiled_networks(self) -> tuple[str, ...]:
        """What ``model.torch_compile`` compiles. Not the mapping: compiled, its bf16 gradients
        went non-finite at paper width after the first step (torch 2.14.1; the rest compiled
        stays finite, experiments/benchmarks). The image D only without spectral norm: its
        power iteration updates a buffer in place in every forward, and compiled, the second D
        call before one backward fails autograd's version check (the scratch mapping's D)."""
        nets = ("restorer.vae1.encoder", "restorer.vae2.encoder", "restorer.vae2.decoder", "vgg")
        return nets if self.hparams.image_d.get("spectral_norm") else (*nets, "image_d")

    def train(self, mode: bool = True) -> MappingModule:
        """Switch mode; frozen VAEs stay in eval (instance norm has no running stats, but be exact)."""
        super().train(mode)
        if not self.trains_vaes:
            self.restorer.vae1.eval()
            self.restorer.vae2.eval()
        return self

    def forward(self, degraded: Tensor, mask: Tensor | None = None) -> Tensor:
        """The restored image of a degraded one, in [-1, 1]."""
        return self.restorer(degraded, mask)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        x, y, mask = batch["degraded"], batch["clean"], batch["mask"]
        opt_g, opt_d = self.optimizers()
        z_mapped = self.restorer.map_latent(x, mask)
        restored = self.restorer.vae2.decode(z_mapped)
        pred_fake = self.image_d(torch.cat([x, restored], 1))
        pred_real = self.image_d(torch.cat([x, y], 1))
        d_cfg = self.hparams.image_d
        terms = {
            "gan": lsgan_loss(pred_fake, True),
            "feat": feature_matching_loss(
                pred_fake, pred_real, d_cfg.get("n_layers", 3), d_cfg.get("num_scales", 2), 1.0
            ),
            "vgg": self.vgg(restored, y),
            "l1": l1_loss(restored, y),
        }
        if self.w["latent"] > 0:
            with torch.no_grad():
                z_target = self.restorer.vae2.encode(y)[0]
            terms["latent"] = l1_loss(z_mapped, z_target)
        loss_g = sum(self.w[k] * v for k, v in terms.items() if self.w.get(k, 0) > 0)
        opt_g.zero_grad()
        self.manual_backward(loss_g)
        opt_g.step()

        fake_pair = torch.cat([x, restored.detach()], 1)
        real_pair = torch.cat([x, y], 1)
        loss_d = 0.5 * (
            lsgan_loss(self.image_d(fake_pair), False) + lsgan_loss(self.image_d(real_pair), True)
        )
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        opt_d.step()
        self.log_dict({f"train/loss_{k}": v.detach() for k, v in terms.items()})
        self.log_dict(
            {"train/loss_d": loss_d.detach(), "train/loss": loss_g.detach()}, prog_bar=True
        )

    def evaluate(self, batch: dict[str, Tensor], batch_idx: int, stage: str) -> None:
        x, y, mask = batch["degraded"], batch["clean"], batch["mask"]
        restored = self.restorer(x, mask)
        if batch_idx == 0 and stage == "val":
            self.grid_batch = {
                "degraded": x[:4],
                "mask": mask[:4],
                "restored": restored[:4],
                "clean": y[:4],
            }
        pred, target, degraded = to_unit(restored), to_unit(y), to_unit(x)
        restored_psnr, degraded_psnr = psnr(pred, target), psnr(degraded, target)
        self.log(f"{stage}/psnr", restored_psnr.mean(), prog_bar=True)
        self.log(f"{stage}/ssim", ssim(pred, target).mean())
        # a degradation preset can leave a pair untouched (infinite PSNR): compare restored and
        # degraded on the damaged pairs only
        damaged = torch.isfinite(degraded_psnr)
        if damaged.any():
            n = int(damaged.sum())
            self.log(f"{stage}/psnr_degraded", degraded_psnr[damaged].mean(), batch_size=n)
            self.log(f"{stage}/psnr_on_damaged", restored_psnr[damaged].mean(), batch_size=n)
        self.log(f"{stage}/ssim_degraded", ssim(degraded, target).mean())
        # the ceiling of any latent mapping: VAE2's own reconstruction of the clean photo
        vae2 = self.restorer.vae2
        ceiling = to_unit(vae2.decode(vae2.encode(y)[0]))
        self.log(f"{stage}/psnr_vae2_recon", psnr(ceiling, target).mean())
        if self.lpips is not None:
            self.log(f"{stage}/lpips", self.lpips(pred, target).mean())

    def image_grid(self) -> Tensor | None:
        """Rows of degraded | mask | restored | clean."""
        if self.grid_batch is None:
            return None
        g = self.grid_batch
        return make_grid(
            [
                to_unit(g["degraded"]),
                gray_to_rgb(g["mask"]),
                to_unit(g["restored"]),
                to_unit(g["clean"]),
            ]
        )

    def configure_optimizers(self):
        hp = self.hparams
        betas = tuple(hp.betas)
        g_params = [p for p in self.restorer.parameters() if p.requires_grad]
        opt_g = torch.optim.Adam(g_params, lr=hp.lr_g, betas=betas)
        opt_d = torch.optim.Adam(self.image_d.parameters(), lr=hp.lr_d, betas=betas)
        optimizers = [opt_g, opt_d]
        return optimizers, linear_decay_schedulers(optimizers, hp.epochs_constant, hp.epochs_decay)
