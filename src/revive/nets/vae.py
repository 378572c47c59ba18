"""The BOPBTL VAEs: image <-> 64-channel latent at 1/4 resolution (official GlobalGenerator_DCDCv2).

VAE1 (domain of real and synthetic old photos) and VAE2 (clean photos) share this architecture.
The layer layout, including the positions of parameter-free layers, follows the official network
with the README options (``--n_downsample_global 3 --k_size 4 --mc 64 --start_r 1``), so the
official ``encoder.N`` / ``decoder.N`` state_dict keys load unchanged:

    encoder  ReflPad3 Conv7x7 IN ReLU | Conv4x4/2 IN ReLU | Conv4x4/2 IN ReLU | 4 ResnetBlocks
    decoder  4 ResnetBlocks | ConvT4x4/2 IN ReLU | ConvT4x4/2 IN ReLU | ReflPad3 Conv7x7 Tanh

Although the option is called ``n_downsample_global 3``, the official encoder has only two
stride-2 convolutions: the latent is at H/4 x W/4 (reference bopbtl.md §1b, §6.7).

The first layer (conv, then InstanceNorm without affine, reflection padding) makes the encoder
blind to a constant added to any colour channel and to a global contrast scale: the latent does
not carry a photo's mean colour or contrast, and the decoder infers them from content. Trained
for days on Pascal VOC it learns that prior; trained for minutes it does not, which caps the
small presets' reconstruction PSNR (tests/nets/test_vae_nets.py shows the invariance).
``norm="none"`` removes the normalisations (same keys) and with them the invariance: in a probe
with the same 400 L1 steps, 128 px val crops reconstructed at 17.0 dB with InstanceNorm and
22.2 dB without (25.6 dB after 1600 steps).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from revive.nets.layers import InstanceNorm2d, ReflectionPad2d, is_channels_last


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Draw every conv weight from N(0, std), as the official ``weights_init`` does.

    Biases keep their construction-time values (the official init leaves them alone too, which
    is why the partial nonlocal block's zero-initialised ``W`` bias stays zero). For spectrally
    normalised convs the raw weight ``weight_orig`` is drawn.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            weight = m.weight_orig if hasattr(m, "weight_orig") else m.weight
            nn.init.normal_(weight, 0.0, std)


NORMS = ("instance", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The official InstanceNorm (no affine) or, for ``none``, an identity in the same slot.

    Neither has parameters or buffers, so both load the same state_dicts.
    """
    if kind == "instance":
        return InstanceNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"VAE norm must be one of {NORMS}, got '{kind}' (option model.net.norm).")


class ResnetBlock(nn.Module):
    """pix2pixHD residual block: x + IN(Conv3x3(ReLU(IN(Conv3x3(x))))), reflection padding.

    ``conv_block`` indices match the official keys (``conv_block.1`` and ``conv_block.5``).
    """

    def __init__(self, channels: int, norm: str = "instance") -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            norm_layer(norm, channels),
            nn.ReLU(inplace=True),
            ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            norm_layer(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def _vae_widths(ngf: int, mc: int) -> tuple[int, int, int]:
    # Channels at full, 1/2 and 1/4 resolution: doubling per stride-2 conv, capped at ``mc``.
    return min(ngf, mc), min(2 * ngf, mc), min(4 * ngf, mc)


class VAEEncoder(nn.Sequential):
    """Image (B, in, H, W) -> latent mean (B, latent_channels, H/4, W/4).

    A Sequential so its indices are the official ``encoder.N`` keys.
    """

    def __init__(
        self, in_channels: int = 3, ngf: int = 64, mc: int = 64, norm: str = "instance"
    ) -> None:
        c0, c1, c2 = _vae_widths(ngf, mc)
        super().__init__(
            ReflectionPad2d(3),
            nn.Conv2d(in_channels, c0, 7),
            norm_layer(norm, c0),
            nn.ReLU(inplace=True),
            nn.Conv2d(c0, c1, 4, stride=2, padding=1),
            norm_layer(norm, c1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1),
            norm_layer(norm, c2),
            nn.ReLU(inplace=True),
            *(ResnetBlock(c2, norm) for _ in range(4)),
        )
        self.latent_channels = c2


class VAEDecoder(nn.Sequential):
    """Latent (B, latent_channels, h, w) -> image (B, out, 4h, 4w) in [-1, 1].

    A Sequential so its indices are the official ``decoder.N`` keys.
    """

    def __init__(
        self, out_channels: int = 3, ngf: int = 64, mc: int = 64, norm: str = "instance"
    ) -> None:
        c0, c1, c2 = _vae_widths(ngf, mc)
        super().__init__(
            *(ResnetBlock(c2, norm) for _ in range(4)),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),
            norm_layer(norm, c1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c1, c0, 4, stride=2, padding=1),
            norm_layer(norm, c0),
            nn.ReLU(inplace=True),
            ReflectionPad2d(3),
            nn.Conv2d(c0, out_channels, 7),
            nn.Tanh(),
        )
        self.latent_channels = c2


class VAEOutput(NamedTuple):
    """What a VAE forward returns."""

    image: torch.Tensor  # decoded image, (B, out, H, W) in [-1, 1]
    latent: torch.Tensor  # what the decoder saw: the mean, or a reparameterised sample
    mean: torch.Tensor  # encoder output, (B, latent_channels, H/4, W/4)
    logvar: torch.Tensor | None  # learned log-variance, or None for the official fixed variance


class VAE(nn.Module):
    """VAE1 / VAE2 of BOPBTL: encoder + decoder, with the official or the paper's latent noise.

    Official (``learned_variance=False``, the default): the encoder output is the mean; training
    decodes ``mean + N(0, 1)`` (unit variance, MUNIT style) and the KL term reduces to
    ``mean(mean**2)`` (computed in ``losses/``).

    Paper variant (``learned_variance=True``): a separate 3x3 conv head ``logvar_head`` predicts a
    per-element log-variance from the mean features; training decodes
    ``mean + exp(logvar / 2) * N(0, 1)`` and the proper Gaussian KL
    ``0.5 * (mean**2 + exp(logvar) - 1 - logvar)`` applies. The head starts at zero, i.e. at the
    official unit variance. Its weights are extra keys (``logvar_head.*``) that official
    checkpoints do not have.

    Inference always decodes the mean.

    ``norm="none"`` (not official) drops every InstanceNorm, so the latent keeps each photo's
    colour and contrast; the small presets use it (see the module docstring). The state_dict
    keys are the same either way.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        mc: int = 64,
        learned_variance: bool = False,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        self.encoder = VAEEncoder(in_channels, ngf, mc, norm)
        self.decoder = VAEDecoder(out_channels, ngf, mc, norm)
        self.latent_channels = self.encoder.latent_channels
        self.logvar_head: nn.Conv2d | None = None
        init_weights(self)
        if learned_variance:
            c = self.latent_channels
            self.logvar_head = nn.Conv2d(c, c, 3, padding=1, padding_mode="reflect")
            nn.init.zeros_(self.logvar_head.weight)
            nn.init.zeros_(self.logvar_head.bias)

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return the latent mean and, with ``learned_variance``, the log-variance."""
        mean = self.encoder(image)
        logvar = self.logvar_head(mean) if self.logvar_head is not None else None
        return mean, logvar

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Return the image for a latent (4x the latent's spatial size)."""
        return self.decoder(latent)

    @staticmethod
    def reparameterize(mean: torch.Tensor, logvar: torch.Tensor | None) -> torch.Tensor:
        """Sample ``mean + std * N(0, 1)``; std is 1 when there is no learned variance."""
        # Drawn contiguous in fp32, then given mean's dtype and layout: the same noise for a seed
        # in every precision and format, and torch's normal sampler is 5x slower on NHWC output.
        noise = torch.randn(mean.shape, device=mean.device).to(mean.dtype)
        if is_channels_last(mean):
            noise = noise.contiguous(memory_format=torch.channels_last)
        if logvar is None:
            return mean + noise
        return mean + torch.exp(0.5 * logvar) * noise

    def forward(self, image: torch.Tensor, sample: bool | None = None) -> VAEOutput:
        """Encode, optionally sample, decode. ``sample`` defaults to ``self.training``."""
        sample = self.training if sample is None else sample
        mean, logvar = self.encode(image)
        latent = self.reparameterize(mean, logvar) if sample else mean
        return VAEOutput(self.decode(latent), latent, mean, logvar)
