"""TTSR networks (Yang et al., CVPR 2020): the backbone, the full model and the discriminator.

- ``TTSRNet`` is the official ``MainNet``: shallow feature extractor, texture fusion at 1x/2x/4x by
  soft attention, cross-scale feature integration (CSFI) between the scale branches, merge tail.
  Output in [-1, 1], x4 only (the texture levels are fixed to 1x/2x/4x).
- ``TTSR`` runs the official data flow: LTE on LR-up, Ref down-up and Ref, the texture search,
  then ``TTSRNet``.
- ``Discriminator`` is the official WGAN-GP critic.

Ablation switches (paper §4.4):

- ``use_csfi=False``: a single stream. Each stage keeps only its newest, finest branch (1x, then
  2x, then 4x), with no cross-scale exchange and no coarser branches; the merge tail sees the 4x
  branch alone. At 64 channels this removes 2.06M parameters (MainNet 6.17M -> 4.12M), matching
  the paper's CSFI row (6.42M vs 4.42M: +2.0M for CSFI).
- ``use_soft_attention=False``: S is replaced by ones, the transferred texture is added unweighted.
- ``use_hard_attention=False``: no texture is transferred (T is zero at every level) and the V
  search is skipped; the fusion convs still run on [F, 0], so the depth and parameter shapes stay.
  With soft attention on, S is still computed by the relevance embedding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from revive.nets.resample import upsample_bicubic
from revive.nets.texture_transformer import (
    LTE_CHANNELS,
    SearchImpl,
    SoftAttention,
    TextureExtractor,
    TextureSearch,
    concat_conv,
)

PAPER_RES_BLOCKS = (16, 16, 8, 4)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1)


def _conv1x1_up(conv: nn.Conv2d, x: Tensor, factor: int) -> Tensor:
    """``relu(conv1x1(bicubic(x)))`` of the official code, computed as ``relu(bicubic(conv1x1(x)))``.

    Both are linear and bicubic weights sum to 1 (bias included), so the two orders agree up to
    float rounding; convolving before upsampling needs one upsampled map less and 1/factor**2 of
    the conv work.
    """
    return F.relu(upsample_bicubic(conv(x), factor), inplace=True)


class ResBlock(nn.Module):
    """Residual block without normalisation: ``x + res_scale * conv(relu(conv(x)))``."""

    def __init__(self, n_feats: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = _conv3x3(n_feats, n_feats)
        self.conv2 = _conv3x3(n_feats, n_feats)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(F.relu(self.conv1(x), inplace=True))
        if self.res_scale != 1.0:
            out = out.mul_(self.res_scale)
        return out.add_(x)


class ScaleBranch(nn.Module):
    """ResBlocks then a 3x3 conv: the body of one scale branch (official ``RBxy`` + ``convxy_tail``).

    The skip connection around it is added by the caller, because in stages 2 and 3 it also spans
    the cross-scale fusion.
    """

    def __init__(self, n_feats: int, num_blocks: int, res_scale: float) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(ResBlock(n_feats, res_scale) for _ in range(num_blocks)))
        self.conv_tail = _conv3x3(n_feats, n_feats)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_tail(self.blocks(x))


class ShallowFeatureExtractor(nn.Module):
    """SFE: features of the LR image, ``relu(conv(x))`` plus a residual branch body."""

    def __init__(self, n_feats: int, num_blocks: int, res_scale: float) -> None:
        super().__init__()
        self.conv_head = _conv3x3(3, n_feats)
        self.body = ScaleBranch(n_feats, num_blocks, res_scale)

    def forward(self, lr: Tensor) -> Tensor:
        x = F.relu(self.conv_head(lr), inplace=True)
        return self.body(x).add_(x)


class CrossScaleFusion(nn.Module):
    """Cross-scale feature integration (CSFI): every branch receives all others at its own scale
    and merges them with a 3x3 conv.

    Branches are ordered coarse to fine (scale 2**i for branch i). A coarser branch is brought up by
    bicubic interpolation and a 1x1 conv, a finer one down by stride-2 3x3 convs, each followed by a
    ReLU. Module keys ``up["12"]``, ``down["31"]`` name the source and destination branch (1-based),
    as the official ``conv12``, ``conv31_1``.
    """

    def __init__(self, num_branches: int, n_feats: int) -> None:
        super().__init__()
        self.up = nn.ModuleDict()
        self.down = nn.ModuleDict()
        for src in range(1, num_branches + 1):
            for dst in range(1, num_branches + 1):
                if src < dst:
                    self.up[f"{src}{dst}"] = _conv1x1(n_feats, n_feats)
                elif src > dst:
                    steps = (_conv3x3(n_feats, n_feats, stride=2) for _ in range(src - dst))
                    self.down[f"{src}{dst}"] = nn.ModuleList(steps)
        self.merge = nn.ModuleList(
            _conv3x3(num_branches * n_feats, n_feats) for _ in range(num_branches)
        )

    def forward(self, *branches: Tensor) -> list[Tensor]:
        return [
            F.relu(concat_conv(merge, self._resampled_to(branches, dst)), inplace=True)
            for dst, merge in enumerate(self.merge, start=1)
        ]

    def _resampled_to(self, branches: Sequence[Tensor], dst: int) -> Iterator[Tensor]:
        """Branch ``dst``, then every other branch resampled to its scale (the merge conv's input
        channels, in the official order), one at a time."""
        yield branches[dst - 1]
        for src, x in enumerate(branches, start=1):
            if src < dst:
                yield _conv1x1_up(self.up[f"{src}{dst}"], x, 2 ** (dst - src))
            elif src > dst:
                for conv in self.down[f"{src}{dst}"]:
                    x = F.relu(conv(x), inplace=True)
                yield x


class MergeTail(nn.Module):
    """Final merge: coarser branches upsampled to 4x and merged with the 4x branch, then two convs
    to RGB, clamped to [-1, 1]."""

    def __init__(self, num_branches: int, n_feats: int) -> None:
        super().__init__()
        self.up = nn.ModuleDict(
            {f"{src}{num_branches}": _conv1x1(n_feats, n_feats) for src in range(1, num_branches)}
        )
        self.conv_merge = _conv3x3(num_branches * n_feats, n_feats)
        self.conv_tail1 = _conv3x3(n_feats, n_feats // 2)
        self.conv_tail2 = _conv1x1(n_feats // 2, 3)

    def forward(self, branches: list[Tensor], base: Tensor | None = None) -> Tensor:
        """Return the RGB image from the branches (coarse to fine), added to ``base`` if given.

        The list is emptied as the branches are used, so that at 4x each can be freed early.
        """
        x = F.relu(concat_conv(self.conv_merge, self._resampled(branches)), inplace=True)
        out = self.conv_tail2(self.conv_tail1(x))
        if base is not None:
            out = out + base
        return out.clamp(-1.0, 1.0)

    def _resampled(self, branches: list[Tensor]) -> Iterator[Tensor]:
        """The 4x branch, then the coarser branches upsampled to 4x, one at a time."""
        finest = len(branches)
        yield branches.pop()
        for src in range(1, finest):
            yield _conv1x1_up(self.up[f"{src}{finest}"], branches.pop(0), 2 ** (finest - src))


class TTSRNet(nn.Module):
    """The TTSR backbone (official ``MainNet``): LR image, S and T at three levels -> x4 SR image.

    At 4x every feature map costs as much as 64 channels of the output image, so the forward keeps
    few alive: concatenating convs run part by part (``concat_conv``), 1x1 convs run before the
    bicubic upsampling, and maps are released as soon as they are used. The result equals the
    official op order up to float rounding (tests/convert/test_convert_ttsr.py).

    :param n_feats: channels of every branch (64 in the paper).
    :param num_res_blocks: ResBlocks in the SFE, stage 1, each stage-2 branch and each stage-3
        branch (paper: 16, 16, 8, 4).
    :param res_scale: scale of each ResBlock's residual (1 in the paper).
    :param use_csfi: cross-scale feature integration; ``False`` is the single-stream ablation
        described in the module docstring.
    """

    def __init__(
        self,
        n_feats: int = 64,
        num_res_blocks: Sequence[int] = PAPER_RES_BLOCKS,
        res_scale: float = 1.0,
        use_csfi: bool = True,
    ) -> None:
        super().__init__()
        if len(num_res_blocks) != 4:
            raise ValueError(
                f"num_res_blocks must give 4 counts (SFE, stage 1, 2, 3), got {list(num_res_blocks)}."
            )
        n_sfe, n_stage1, n_stage2, n_stage3 = num_res_blocks
        self.use_csfi = use_csfi
        t_lv1, t_lv2, t_lv3 = LTE_CHANNELS
        self.sfe = ShallowFeatureExtractor(n_feats, n_sfe, res_scale)
        self.soft_attention = nn.ModuleList(
            [
                SoftAttention(n_feats, t_lv3, scale=1),
                SoftAttention(n_feats, t_lv2, scale=2),
                SoftAttention(n_feats, t_lv1, scale=4),
            ]
        )
        self.upsample = nn.ModuleList(
            nn.Sequential(_conv3x3(n_feats, 4 * n_feats), nn.PixelShuffle(2), nn.ReLU(inplace=True))
            for _ in range(2)
        )
        branches2, branches3 = (2, 3) if use_csfi else (1, 1)
        self.stage1 = nn.ModuleList([ScaleBranch(n_feats, n_stage1, res_scale)])
        self.stage2 = nn.ModuleList(
            ScaleBranch(n_feats, n_stage2, res_scale) for _ in range(branches2)
        )
        self.stage3 = nn.ModuleList(
            ScaleBranch(n_feats, n_stage3, res_scale) for _ in range(branches3)
        )
        self.csfi2 = CrossScaleFusion(2, n_feats) if use_csfi else None
        self.csfi3 = CrossScaleFusion(3, n_feats) if use_csfi else None
        self.merge_tail = MergeTail(branches3, n_feats)

    def forward(
        self,
        lr: Tensor,
        S: Tensor | None,
        textures: Sequence[Tensor],
        base: Tensor | None = None,
    ) -> Tensor:
        """Return the SR image (B, 3, 4h, 4w) in [-1, 1].

        :param lr: (B, 3, h, w) in [-1, 1].
        :param S: soft-attention map (B, 1, h, w), or None to add textures unweighted.
        :param textures: transferred textures ``(T_lv3, T_lv2, T_lv1)``: (B, 256, h, w),
            (B, 128, 2h, 2w), (B, 64, 4h, 4w). A list is emptied as they are fused, so that
            each is freed once used when the caller keeps no other reference (inference).
        :param base: an image (B, 3, 4h, 4w) the output is added to (global residual), or None
            (official: the tail's output is the image).
        """
        textures = textures if isinstance(textures, list) else list(textures)
        x = self.soft_attention[0](self.sfe(lr), textures.pop(0), S)
        branches = [self.stage1[0](x).add_(x)]  # [1x]
        branches = self._next_stage(1, branches, textures.pop(0), S, self.csfi2, self.stage2)
        branches = self._next_stage(2, branches, textures.pop(0), S, self.csfi3, self.stage3)
        return self.merge_tail(branches, base)  # branches: [1x, 2x, 4x]

    def _next_stage(
        self,
        stage: int,
        branches: list[Tensor],
        t: Tensor,
        S: Tensor | None,
        csfi: CrossScaleFusion | None,
        bodies: nn.ModuleList,
    ) -> list[Tensor]:
        """Upsample the finest branch x2 and fuse its texture, exchange features across scales,
        then run each branch body; the skip connection spans the exchange and the body.

        No feature map outlives this call unless returned: at 4x each one costs output-size memory.
        """
        finer = self.soft_attention[stage](self.upsample[stage - 1](branches[-1]), t, S)
        del t  # fused: with no other reference left, this level's textures are freed here
        if csfi is None:
            return [bodies[0](finer).add_(finer)]
        branches = [*branches, finer]
        mixed = csfi(*branches)
        # pop: the body holds the only reference to its input, so it is freed while the body runs
        return [body(mixed.pop(0)).add_(x) for x, body in zip(branches, bodies)]


class TTSROutput(NamedTuple):
    """What ``TTSR.forward`` returns; S and T are what the backbone used."""

    sr: Tensor  # (B, 3, 4h, 4w) in [-1, 1]
    S: Tensor  # (B, 1, h, w); ones when soft attention is off
    T_lv3: Tensor | None  # (B, 256, h, w); zeros when hard attention is off; None if not kept
    T_lv2: Tensor | None  # (B, 128, 2h, 2w)
    T_lv1: Tensor | None  # (B, 64, 4h, 4w)


class TTSR(nn.Module):
    """The full TTSR model: texture extractor, texture search and backbone (official ``TTSR``).

    :param n_feats, num_res_blocks, res_scale, use_csfi: see ``TTSRNet``.
    :param use_hard_attention: transfer Ref textures (else T = 0, no V search; S, if used, then
        comes from the bounded ``RelevanceEmbedding`` whatever ``search_impl``).
    :param use_soft_attention: weight the textures by S (else S = 1).
    :param vgg_weights: torchvision VGG19 file to initialise the LTE from; None keeps random init.
    :param lte_trainable: train the LTE with the network (the paper's "+LTE"); False freezes it.
    :param search_impl: ``bounded`` (memory-bounded, default) or ``naive`` (official unfold + bmm).
    :param query_chunk: LR positions per search tile (whole LR rows, at least one row).
    :param key_chunk: Ref positions per search tile (whole Ref rows, at least one row).
    :param coverage_correct: divide folded textures by the true patch coverage instead of the
        official constant 9 (which darkens a 1-lv3-pixel border band).
    :param bicubic_residual: the backbone predicts the difference to the bicubic upsampling
        ``lr_up`` (global residual learning, not in the paper: small models trained for minutes
        beat bicubic with it; official ``False``). No parameters change: checkpoints convert.
    """

    def __init__(
        self,
        n_feats: int = 64,
        num_res_blocks: Sequence[int] = PAPER_RES_BLOCKS,
        res_scale: float = 1.0,
        use_csfi: bool = True,
        use_hard_attention: bool = True,
        use_soft_attention: bool = True,
        vgg_weights: str | Path | None = None,
        lte_trainable: bool = True,
        search_impl: SearchImpl = "bounded",
        query_chunk: int = 2048,
        key_chunk: int = 4096,
        coverage_correct: bool = False,
        bicubic_residual: bool = False,
    ) -> None:
        super().__init__()
        self.bicubic_residual = bicubic_residual
        self.use_hard_attention = use_hard_attention
        self.use_soft_attention = use_soft_attention
        self.lte = TextureExtractor(Path(vgg_weights) if vgg_weights else None, lte_trainable)
        self.search = TextureSearch(search_impl, query_chunk, key_chunk, coverage_correct)
        self.net = TTSRNet(n_feats, num_res_blocks, res_scale, use_csfi)

    def forward(
        self,
        lr: Tensor,
        lr_up: Tensor,
        ref: Tensor,
        ref_down_up: Tensor,
        keep_textures: bool = True,
    ) -> TTSROutput:
        """Super-resolve ``lr`` x4 with textures from ``ref``.

        :param lr: (B, 3, h, w) in [-1, 1].
        :param lr_up: ``lr`` bicubic x4, (B, 3, 4h, 4w); used only to search (Q).
        :param ref: (B, 3, H, W) in [-1, 1], H and W multiples of 4.
        :param ref_down_up: ``ref`` bicubic /4 then x4, (B, 3, H, W).
        :param keep_textures: return T (training needs it for the transferal perceptual loss);
            False frees each level once the backbone has fused it, for inference on large images
            (T_lv1 alone is 64 channels at the output size), and returns None for T.
        """
        _check_sizes(lr, lr_up, ref, ref_down_up)
        S, textures = self._transfer(lr, lr_up, ref, ref_down_up)
        base = lr_up if self.bicubic_residual else None
        S_used = S if self.use_soft_attention else None
        if keep_textures:
            sr = self.net(lr, S_used, textures, base=base)
        else:
            consumed, textures = list(textures), (None, None, None)
            sr = self.net(lr, S_used, consumed, base=base)
        if not self.use_soft_attention:
            S = lr.new_ones(lr.shape[0], 1, *lr.shape[-2:])
        return TTSROutput(sr, S, *textures)

    def _transfer(
        self, lr: Tensor, lr_up: Tensor, ref: Tensor, ref_down_up: Tensor
    ) -> tuple[Tensor | None, tuple[Tensor, Tensor, Tensor]]:
        """S and (T_lv3, T_lv2, T_lv1) as the switches ask; a separate function so that the LTE
        features are freed before the backbone runs."""
        batch, _, height, width = lr.shape
        S = None
        if self.use_hard_attention:
            q = self.lte(_to_unit(lr_up))[2]
            k = self.lte(_to_unit(ref_down_up))[2]
            S, *textures = self.search(q, k, *self.lte(_to_unit(ref)))
            return S, tuple(textures)
        if self.use_soft_attention:
            q = self.lte(_to_unit(lr_up))[2]
            k = self.lte(_to_unit(ref_down_up))[2]
            S, _ = self.search.relevance(q, k)
        textures = tuple(
            lr.new_zeros(batch, channels, scale * height, scale * width)
            for channels, scale in zip(reversed(LTE_CHANNELS), (1, 2, 4))
        )
        return S, textures

    def texture_features(self, sr: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """LTE features (lv1, lv2, lv3) of an SR image for the transferal perceptual loss.

        Runs the LTE with detached weights (the official ``LTE_copy``): gradients reach ``sr`` but
        not the LTE.
        """
        frozen = {name: p.detach() for name, p in self.lte.named_parameters()}
        return torch.func.functional_call(self.lte, frozen, ((sr + 1) / 2,))


def _to_unit(x: Tensor) -> Tensor:
    """[-1, 1] image to the LTE's [0, 1] input; detached, as official (no gradient to the inputs)."""
    return (x.detach() + 1) / 2


def _check_sizes(lr: Tensor, lr_up: Tensor, ref: Tensor, ref_down_up: Tensor) -> None:
    height, width = lr.shape[-2:]
    if tuple(lr_up.shape[-2:]) != (4 * height, 4 * width):
        raise ValueError(
            f"lr_up is {lr_up.shape[-2]}x{lr_up.shape[-1]}; it must be lr ({height}x{width}) "
            "upsampled x4."
        )
    ref_height, ref_width = ref.shape[-2:]
    if ref_height % 4 or ref_width % 4:
        raise ValueError(
            f"Ref is {ref_height}x{ref_width}; its height and width must be multiples of 4. Crop it."
        )
    if ref_down_up.shape[-2:] != ref.shape[-2:]:
        raise ValueError(
            f"ref_down_up is {ref_down_up.shape[-2]}x{ref_down_up.shape[-1]}; it must have the "
            f"size of ref ({ref_height}x{ref_width})."
        )


class Discriminator(nn.Module):
    """TTSR's WGAN-GP critic: ten 3x3 convs (every second with stride 2) and two linear layers,
    one score per image of size ``in_size`` x ``in_size`` (160 in the paper)."""

    CHANNELS = (32, 32, 64, 64, 128, 128, 256, 256, 512, 512)

    def __init__(self, in_size: int = 160) -> None:
        super().__init__()
        self.in_size = in_size
        layers: list[nn.Module] = []
        in_channels, size = 3, in_size
        for i, out_channels in enumerate(self.CHANNELS):
            stride = 2 if i % 2 else 1
            layers += [_conv3x3(in_channels, out_channels, stride), nn.LeakyReLU(0.2)]
            in_channels = out_channels
            size = (size - 1) // stride + 1  # 3x3, padding 1
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(size * size * in_channels, 1024), nn.LeakyReLU(0.2), nn.Linear(1024, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Return (B, 1) critic scores for (B, 3, in_size, in_size) images."""
        if tuple(x.shape[-2:]) != (self.in_size, self.in_size):
            raise ValueError(
                f"Discriminator was built for {self.in_size}x{self.in_size} inputs, got "
                f"{x.shape[-2]}x{x.shape[-1]}; set its in_size to the training patch size."
            )
        features = self.features(x).flatten(1)
        # The classifier reads its 13 M weights once per batch of a few images: under bf16
        # autocast, casting them at every pass costs more than the bf16 matmul saves (critic
        # fwd+bwd at 2 x 160 px: 107 ms with it in bf16, 81 ms in fp32; fp32 throughout: 98 ms).
        with torch.autocast(x.device.type, enabled=False):
            return self.classifier(features.float())
