"""PatchGAN discriminators of BOPBTL (pix2pixHD multiscale discriminator with feature outputs).

Used on images (VAE training: 3 channels, 2 scales), on latents (VAE1's latent discriminator:
64 channels, 1 scale) and on (degraded, restored) image pairs (mapping training: 6 channels,
2 scales, spectral norm in the scratch setting). Every forward returns the intermediate
features of each layer so the training module can compute the feature-matching loss; the last
entry of each scale is the patch logits.
"""

from __future__ import annotations

import torch
from torch import nn

from revive.nets.layers import InstanceNorm2d
from revive.nets.vae import init_weights


def _conv(in_channels: int, out_channels: int, stride: int, spectral_norm: bool) -> nn.Module:
    # 4x4 kernel with padding 2 (pix2pixHD's ceil((4 - 1) / 2)): each layer grows the map by one.
    conv = nn.Conv2d(in_channels, out_channels, 4, stride=stride, padding=2)
    # The classic hook-based spectral norm keeps the official key names
    # (weight_orig / weight_u / weight_v); the parametrization API would rename them.
    return nn.utils.spectral_norm(conv) if spectral_norm else conv


class NLayerDiscriminator(nn.Module):
    """One PatchGAN: n_layers + 2 conv layers; returns every layer's output.

    Layers (n_layers = 3, ndf = 64): Conv/2 (in->64) LReLU; Conv/2 (64->128) IN LReLU;
    Conv/2 (128->256) IN LReLU; Conv/1 (256->512) IN LReLU; Conv/1 (512->1). Widths are capped
    at 512. InstanceNorm has no affine parameters.
    """

    def __init__(
        self, in_channels: int, ndf: int = 64, n_layers: int = 3, spectral_norm: bool = False
    ) -> None:
        super().__init__()
        layers = [nn.Sequential(_conv(in_channels, ndf, 2, spectral_norm), nn.LeakyReLU(0.2, True))]
        width = ndf
        for n in range(1, n_layers + 1):
            prev, width = width, min(width * 2, 512)
            stride = 2 if n < n_layers else 1
            layers.append(
                nn.Sequential(
                    _conv(prev, width, stride, spectral_norm),
                    InstanceNorm2d(width),
                    nn.LeakyReLU(0.2, True),
                )
            )
        layers.append(nn.Sequential(_conv(width, 1, 1, spectral_norm)))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the n_layers + 2 layer outputs; the last one is the patch logits."""
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nn.Module):
    """``num_scales`` PatchGANs on the input downsampled 0, 1, ... times.

    ``scales[k]`` sees the input average-pooled k times (AvgPool 3x3, stride 2, padding 1,
    padding excluded from the average). Note: the official module stores its scales in the
    opposite order (``scale{num_D-1}`` sees full resolution); the converter reverses them.
    """

    def __init__(
        self,
        in_channels: int,
        ndf: int = 64,
        n_layers: int = 3,
        num_scales: int = 2,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            NLayerDiscriminator(in_channels, ndf, n_layers, spectral_norm)
            for _ in range(num_scales)
        )
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Return, per scale (full resolution first), the list of layer outputs (logits last)."""
        outputs = []
        for k, discriminator in enumerate(self.scales):
            if k > 0:
                x = self.downsample(x)
            outputs.append(discriminator(x))
        return outputs
