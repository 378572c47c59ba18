"""Latent mapping networks of BOPBTL: VAE1 latent (old photo) -> VAE2 latent (clean photo).

All three share the official layout: a ``head`` of four 3x3 convs lifting the 64-channel latent
to 512 channels, then ResnetBlocks, then a ``tail`` of convs back to 64 channels; the spatial
size never changes. They differ in the global branch inserted in between:

- ``QualityMapping`` (official ``Mapping_Model``): none; unstructured degradation only.
- ``ScratchMapping`` (official ``Mapping_Model_with_mask``): a ``PartialNonLocal`` block that
  fills the scratched positions from the rest of the photo.
- ``PatchAttentionMapping`` (official ``Mapping_Model_with_mask_2``, the ``--HR`` mode): three
  hard patch attentions at patch sizes 8, 4, 2 instead of the hw x hw nonlocal block.

Widths generalise the official ones: stage widths are ``in_channels * 2**k`` capped at
``channels`` (64 -> 128 -> 256 -> 512 -> 512 officially). Two switches that are not official,
for the small presets, keep the state_dict keys: ``norm="none"`` (no InstanceNorm, for the
norm-free small VAEs) and ``residual=True`` (see ``LatentMapping``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from revive.nets.non_local import (
    Attention,
    MaskDownsample,
    PartialNonLocal,
    PatchAttention,
    downsample_mask,
)
from revive.nets.vae import ResnetBlock, init_weights, norm_layer


def _conv_in_relu(in_channels: int, out_channels: int, norm: str) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        norm_layer(norm, out_channels),
        nn.ReLU(inplace=True),
    ]


def _widths(in_channels: int, channels: int) -> list[int]:
    # [c, 2c, 4c, 8c, 16c] capped at ``channels``: the head walks it up, the tail down.
    if channels > 16 * in_channels:
        raise ValueError(
            f"Mapping width channels={channels} exceeds 16 x in_channels={in_channels}; "
            "the head's four doublings cannot reach it. Lower channels."
        )
    return [min(in_channels * 2**k, channels) for k in range(5)]


def mapping_head(
    in_channels: int, channels: int, n_blocks: int = 0, norm: str = "instance"
) -> nn.Sequential:
    """Four Conv3x3-IN-ReLU lifting the latent to ``channels``, then ``n_blocks`` ResnetBlocks."""
    widths = _widths(in_channels, channels)
    layers = [m for k in range(4) for m in _conv_in_relu(widths[k], widths[k + 1], norm)]
    layers += [ResnetBlock(widths[-1], norm) for _ in range(n_blocks)]
    return nn.Sequential(*layers)


def mapping_tail(
    in_channels: int, channels: int, n_blocks: int, norm: str = "instance"
) -> nn.Sequential:
    """``n_blocks`` ResnetBlocks, three Conv3x3-IN-ReLU down, and a last Conv3x3 to the latent."""
    widths = _widths(in_channels, channels)
    layers: list[nn.Module] = [ResnetBlock(widths[-1], norm) for _ in range(n_blocks)]
    layers += [m for k in range(4, 1, -1) for m in _conv_in_relu(widths[k], widths[k - 1], norm)]
    layers.append(nn.Conv2d(widths[1], in_channels, 3, padding=1))
    return nn.Sequential(*layers)


def fill_holes(z: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """``z`` with its hole cells filled from the known ones, one ring at a time.

    Each step gives every hole cell that touches a known cell (3x3) the mean of its known
    neighbours and marks it known, so a hole of radius r takes r steps; an image without a
    known cell keeps zeros. A parameter-free inpainting of the latent: thin scratches, one or two
    cells wide at latent resolution, are filled from both sides in one or two steps.

    :param z: (B, C, h, w) latent.
    :param hole: (B, 1, h, w), 1 = hole.
    """
    known = 1 - hole.to(z.dtype)
    z = z * known
    for _ in range(max(z.shape[-2:])):
        count = F.avg_pool2d(known, 3, stride=1, padding=1)
        new = (count > 0) & (known == 0)
        if not new.any():
            break
        mean = F.avg_pool2d(z, 3, stride=1, padding=1) / count.clamp_min(1e-6)
        z = torch.where(new, mean, z)
        known = known + new.to(z.dtype)
    return z


class LatentMapping(nn.Module):
    """What the three mappings share: a ``head`` lifting the latent, a ``tail`` bringing it back.

    Subclasses add their global branch between the two, then call ``init_parameters``.
    ``residual=True`` (not official) returns ``z + tail(...)`` with the tail's last conv
    zero-initialised, so an untrained mapping is the identity. With a VAE1 that starts from
    VAE2's weights, the restored image then starts close to the damaged photo (VAE2 decoding
    VAE1's latent of it) instead of noise, which minutes of training can improve on. The
    mappings that take a scratch mask skip ``fill_holes(z)`` instead of ``z``: the latent of the
    painted-white scratches is replaced by that of their surroundings (every cell any scratched
    pixel falls in), so an untrained scratch mapping inpaints by local averaging rather than
    keeping the white paint, and training learns the correction.

    Parameters every mapping takes:

    :param in_channels: latent channels (64).
    :param channels: width of the middle (``map_mc``, 512).
    :param n_blocks: ResnetBlocks after the global branch (``mapping_n_block``: 6; HR mode 2).
    :param norm: ``instance`` (official) or ``none`` in every block, see
        ``revive.nets.vae.norm_layer``.
    :param residual: the skip described above.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        n_blocks: int,
        norm: str,
        residual: bool,
        head_blocks: int = 0,
    ) -> None:
        super().__init__()
        self.residual = residual
        self.head = mapping_head(in_channels, channels, head_blocks, norm)
        self.tail = mapping_tail(in_channels, channels, n_blocks, norm)

    def init_parameters(self) -> None:
        """The official init; then, when residual, a zero last conv (identity at the start)."""
        init_weights(self)
        if self.residual:
            nn.init.zeros_(self.tail[-1].weight)
            nn.init.zeros_(self.tail[-1].bias)

    def finish(
        self, z: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The output latent from the input latent ``z``, the middle features ``x`` and, for the
        scratch mappings, the image-resolution ``mask`` (1 = scratch)."""
        out = self.tail(x)
        if not self.residual:
            return out
        if mask is not None:
            z = fill_holes(z, downsample_mask(mask.to(z.dtype), z.shape[-2:], "maxpool"))
        return z + out


class QualityMapping(LatentMapping):
    """Mapping for unstructured degradation (official ``Mapping_Model``): z -> z'.

    Parameters as in ``LatentMapping``; no global branch.
    """

    def __init__(
        self,
        in_channels: int = 64,
        channels: int = 512,
        n_blocks: int = 6,
        norm: str = "instance",
        residual: bool = False,
    ) -> None:
        super().__init__(in_channels, channels, n_blocks, norm, residual)
        self.init_parameters()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, in_channels, h, w) VAE1 latent -> (B, in_channels, h, w) VAE2 latent."""
        return self.finish(z, self.head(z))


class ScratchMapping(LatentMapping):
    """Mapping with the partial nonlocal global branch (official ``Mapping_Model_with_mask``).

    head -> ``global_branch`` (PartialNonLocal) -> tail (``n_blocks`` ResnetBlocks + convs).
    Parameters of ``LatentMapping`` (in_channels, channels, n_blocks, norm, residual), and:

    :param global_branch: False drops the nonlocal block (ablation "no global branch"); the net
        is then a QualityMapping and ignores the mask.
    :param use_mask: False runs the block as a plain nonlocal block with residual fusion
        (ablation "nonlocal without mask"), see ``PartialNonLocal``.
    :param mask_downsample: ``official`` or ``maxpool`` (SPEC §2), see ``downsample_mask``.
    :param attention: ``sdpa`` (memory-linear) or ``naive`` (official hw x hw).
    :param query_chunk: queries per attention call.
    """

    def __init__(
        self,
        in_channels: int = 64,
        channels: int = 512,
        n_blocks: int = 6,
        global_branch: bool = True,
        use_mask: bool = True,
        mask_downsample: MaskDownsample = "official",
        attention: Attention = "sdpa",
        query_chunk: int = 1024,
        norm: str = "instance",
        residual: bool = False,
    ) -> None:
        super().__init__(in_channels, channels, n_blocks, norm, residual)
        self.use_mask = use_mask
        self.global_branch = (
            PartialNonLocal(
                channels,
                mask_downsample=mask_downsample,
                attention=attention,
                query_chunk=query_chunk,
            )
            if global_branch
            else None
        )
        self.init_parameters()
        if self.global_branch is not None:
            nn.init.zeros_(self.global_branch.W.bias)

    def forward(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """z: (B, in_channels, h, w); mask: (B, 1, 4h, 4w) image-resolution, 1 = scratch."""
        x = self.head(z)
        if self.global_branch is not None:
            x = self.global_branch(x, mask if self.use_mask else None)
        return self.finish(z, x, mask if self.use_mask else None)


class PatchAttentionMapping(LatentMapping):
    """HR mapping with multi-scale hard patch attention (official ``Mapping_Model_with_mask_2``).

    head (4 convs + 2 ResnetBlocks) -> attention(8) -> 2 ResnetBlocks -> attention(4) ->
    2 ResnetBlocks -> attention(2) -> tail (2 ResnetBlocks + convs). The latent sides should be
    multiples of the largest patch size (image multiple of 32), see ``PatchAttention``.
    Parameters of ``LatentMapping``, with ``n_blocks`` the ResnetBlocks before, between and after
    the attentions (official 2), and:

    :param patch_sizes: one PatchAttention per size, coarse to fine.
    :param fill_border: see ``PatchAttention``.
    :param query_chunk: hole patches per similarity block.
    """

    def __init__(
        self,
        in_channels: int = 64,
        channels: int = 512,
        patch_sizes: tuple[int, ...] = (8, 4, 2),
        n_blocks: int = 2,
        fill_border: bool = False,
        query_chunk: int = 1024,
        norm: str = "instance",
        residual: bool = False,
    ) -> None:
        super().__init__(in_channels, channels, n_blocks, norm, residual, head_blocks=n_blocks)
        self.attention = nn.ModuleList(
            PatchAttention(channels, p, fill_border, query_chunk) for p in patch_sizes
        )
        self.res_blocks = nn.ModuleList(
            nn.Sequential(*(ResnetBlock(channels, norm) for _ in range(n_blocks)))
            for _ in patch_sizes[1:]
        )
        self.init_parameters()

    def forward(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """z: (B, in_channels, h, w); mask: (B, 1, 4h, 4w) image-resolution, 1 = scratch."""
        x = self.head(z)
        for k, attention in enumerate(self.attention):
            if k > 0:
                x = self.res_blocks[k - 1](x)
            x = attention(x, mask)
        return self.finish(z, x, mask)
