"""The texture transformer of TTSR (Yang et al., CVPR 2020, Fig. 2), one class per box of the figure.

- ``TextureExtractor`` (LTE): VGG19 conv1_1..relu3_1, giving Q, K and V at three levels.
- ``RelevanceEmbedding``: cosine relevance of 3x3 lv3 patches; its max over the Ref positions is the
  soft-attention map S, its argmax the hard-attention index H.
- ``HardAttention``: transfers the V patches at H onto the LR grid, giving T at three levels.
- ``SoftAttention``: fuses T into the backbone features, ``F + Conv(F || T) * S``.
- ``TextureSearch``: relevance embedding + hard attention, the official ``SearchTransfer``.

The search has two implementations with the same S and T (to float tolerance), chosen by
``TextureSearch(impl=...)``:

- ``naive`` (``search_transfer_naive``): the official unfold + bmm code. It materialises the
  (Hr*Wr) x (h*w) relevance matrix and the unfolded V of every Ref position (16,128 floats each),
  which is what makes the official code run out of memory at LR 240 / Ref 960
  (reference/ttsr.md §5). Kept as the reference and the benchmark baseline.
- ``bounded`` (default, SPEC §3; ``RelevanceEmbedding`` + ``HardAttention``): queries are taken
  in bands of LR rows; for each band the keys are scanned in bands of Ref rows with a running
  max / argmax. The chosen V patches are never unfolded: each output block is summed from the 9
  V blocks its neighbours' patches put there. The search's working memory is set by
  ``query_chunk`` and ``key_chunk``, not by the image sizes; what grows with them is the output
  (S, T), the LTE features and one copy of V per level, rearranged into blocks.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from revive.nets.layers import is_channels_last
from revive.nets.resample import upsample_bicubic
from revive.nets.vgg import IMAGENET_MEAN, IMAGENET_STD, vgg19_features

SearchImpl = Literal["bounded", "naive"]
SEARCH_IMPLS = ("bounded", "naive")

# Channels of the LTE levels lv1 (1x), lv2 (1/2x), lv3 (1/4x): VGG19 relu1_1, relu2_1, relu3_1.
LTE_CHANNELS = (64, 128, 256)

# Every output pixel inside the image is covered by 3x3 transferred patches at every level (3x3
# patches at stride 1, 6x6 at stride 2, 12x12 at stride 4), so the official code divides each
# level by this constant, also on the border band where fewer patches overlap.
OFFICIAL_FOLD_DIVISOR = 9.0


class ImageNetNormalization(nn.Conv2d):
    """Fixed 1x1 conv computing ``(x - mean) / std`` on [0, 1] RGB, as the official ``MeanShift``.

    It is a conv rather than two buffers so that the official ``LTE.sub_mean.*`` tensors load into
    it unchanged; its parameters never train.
    """

    def __init__(self) -> None:
        super().__init__(3, 3, kernel_size=1)
        std = torch.tensor(IMAGENET_STD)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1) / std.view(3, 1, 1, 1))
            self.bias.copy_(-torch.tensor(IMAGENET_MEAN) / std)
        self.requires_grad_(False)


class TextureExtractor(nn.Module):
    """Learnable texture extractor (LTE): VGG19 features of a [0, 1] image at 1x, 1/2x and 1/4x.

    Initialised from ImageNet VGG19 when ``weights`` is given (random init otherwise; the caller
    decides whether that is acceptable) and trained with the network when ``trainable``.
    """

    def __init__(self, weights: Path | None = None, trainable: bool = True) -> None:
        super().__init__()
        features = vgg19_features(weights, upto=12)
        self.normalize = ImageNetNormalization()
        # Slicing keeps torchvision's layer indices (lv2.5 is conv2_1, lv3.10 is conv3_1), so the
        # official ``LTE.slice{i}.{j}`` keys map by renaming the prefix only.
        self.lv1 = features[0:2]  # conv1_1, relu1_1
        self.lv2 = features[2:7]  # conv1_2, relu1_2, pool1, conv2_1, relu2_1
        self.lv3 = features[7:12]  # conv2_2, relu2_2, pool2, conv3_1, relu3_1
        for level in (self.lv1, self.lv2, self.lv3):
            level.requires_grad_(trainable)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return (lv1, lv2, lv3): (B, 64, H, W), (B, 128, H/2, W/2), (B, 256, H/4, W/4)."""
        lv1 = self.lv1(self.normalize(x))
        lv2 = self.lv2(lv1)
        lv3 = self.lv3(lv2)
        return lv1, lv2, lv3


def _rows_per_chunk(chunk: int, width: int) -> int:
    """Chunks are whole rows of positions: as many as fit in ``chunk``, at least one."""
    if chunk < 1:
        raise ValueError(f"chunk sizes must be positive, got {chunk}.")
    return max(1, chunk // width)


def _band(x: Tensor, r0: int, r1: int) -> Tensor:
    """Rows [r0, r1) of x with one halo row above and below, zero outside the image.

    :return: (B, C, r1-r0+2, W); 3x3 windows over it (with columns zero-padded by 1) are exactly
        the zero-padded 3x3 patches centred on rows [r0, r1).
    """
    height = x.shape[-2]
    band = x[:, :, max(r0 - 1, 0) : min(r1 + 1, height)]
    return F.pad(band, (0, 0, int(r0 == 0), int(r1 == height)))


def _gather_patches(k: Tensor, index: Tensor) -> Tensor:
    """The zero-padded 3x3 patches of ``k`` at flat positions ``index``, without unfolding ``k``.

    Equals ``F.unfold(k, 3, padding=1)[..., index]`` column by column.

    :param k: (B, C, H, W); ``index``: (B, n) in [0, H*W).
    :return: (B, C*9, n), channel-major like ``F.unfold``.
    """
    batch, channels, height, width = k.shape
    offsets = torch.arange(3, device=k.device)
    rows = (index // width)[:, None, None, :] + offsets[None, :, None, None] - 1  # (B, 3, 1, n)
    cols = (index % width)[:, None, None, :] + offsets[None, None, :, None] - 1  # (B, 1, 3, n)
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)  # (B, 3, 3, n)
    flat = rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)  # (B, 3, 3, n)
    flat = flat.view(batch, 1, -1).expand(batch, channels, -1)
    patches = k.flatten(2).gather(2, flat)  # (B, C, 9*n): kernel row, kernel col, position
    # Positions outside k read the zero padding of the official unfold.
    patches = patches.view(batch, channels, 9, -1)
    patches.masked_fill_(~inside.view(batch, 1, 9, -1), 0.0)
    return patches.view(batch, channels * 9, -1)


def fold_coverage(
    height: int,
    width: int,
    scale: int,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """How many transferred patches cover each pixel of a level: 9 inside, 6 on edges, 4 at corners.

    :param height: LR (lv3 query) grid height; the level is ``scale`` times larger.
    :return: (scale*height, scale*width); the border band is ``scale`` pixels wide.
    """

    def along(n: int) -> Tensor:
        # Coverage is separable: fold 1-D columns of ones with the level's kernel, stride, padding.
        ones = torch.ones(1, 3 * scale, n, device=device, dtype=dtype)
        covered = F.fold(
            ones, (scale * n, 1), kernel_size=(3 * scale, 1), stride=(scale, 1), padding=(scale, 0)
        )
        return covered.view(-1)

    return along(height)[:, None] * along(width)[None, :]


def _normalize_fold(t: Tensor, scale: int, coverage_correct: bool) -> Tensor:
    """Divide the folded sum of patches as the official code (constant 9) or by the true coverage."""
    if coverage_correct:
        height, width = t.shape[-2] // scale, t.shape[-1] // scale
        return t.div_(fold_coverage(height, width, scale, t.device, t.dtype))
    return t.div_(OFFICIAL_FOLD_DIVISOR)


class RelevanceEmbedding(nn.Module):
    """Relevance embedding: for every LR patch, the most relevant Ref patch and its relevance.

    Relevance is the cosine similarity of zero-padded 3x3 patches of Q (LTE lv3 of LR-up) and K
    (LTE lv3 of Ref down-up). The max over Ref positions is the soft-attention map S (raw cosine, no
    softmax or temperature, as official); the argmax is the hard-attention index H. Queries are
    taken in bands of LR rows and keys in bands of Ref rows with a running max / argmax, so the
    full relevance matrix never exists.

    :param query_chunk: LR positions per tile (rounded down to whole LR rows, at least one row).
    :param key_chunk: Ref positions per tile (rounded down to whole Ref rows, at least one row).
    """

    def __init__(self, query_chunk: int = 2048, key_chunk: int = 4096) -> None:
        super().__init__()
        self.query_chunk = query_chunk
        self.key_chunk = key_chunk

    def forward(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """Return S (B, 1, h, w) and H (B, h*w), flat lv3 Ref positions, for q (B, C, h, w) and
        k (B, C, Hr, Wr)."""
        height, width = q.shape[-2:]
        ref_width = k.shape[-1]
        q_rows = _rows_per_chunk(self.query_chunk, width)
        k_rows = _rows_per_chunk(self.key_chunk, ref_width)
        # Patch norms from a 3x3 box sum of squares, with gradient: S trains the LTE through them.
        q_norms, k_norms = _patch_norms(q), _patch_norms(k)
        soft, hard = [], []
        for r0 in range(0, height, q_rows):
            r1 = min(r0 + q_rows, height)
            # (B, C*9, n): the zero-padded 3x3 patches of these rows, as F.unfold(q, 3, padding=1)
            q_patches = F.unfold(_band(q, r0, r1), 3, padding=(0, 1))
            band_norms = q_norms[:, r0 * width : r1 * width]  # (B, n)
            with torch.no_grad():
                unit = q_patches / band_norms[:, None, :]
            index = _most_relevant(unit, k.detach(), k_norms.detach(), k_rows)
            # Recomputing the winning cosine gives S the gradient of torch.max (it flows to the
            # chosen pair only) without keeping every relevance tile alive for backward. Dividing
            # the dot product by both norms, rather than normalising both patch matrices, spares
            # two passes over them forward and four backward.
            dots = (q_patches * _gather_patches(k, index)).sum(dim=1)
            soft.append(dots / (band_norms * k_norms.gather(1, index)))
            hard.append(index)
        return torch.cat(soft, dim=1).view(q.shape[0], 1, height, width), torch.cat(hard, dim=1)


def _patch_norms(x: Tensor) -> Tensor:
    """L2 norm of every zero-padded 3x3 patch of x, clamped like ``F.normalize``: (B, H*W)."""
    # In fp32 (a bf16 sum of 2304 squares keeps three digits), clamped before the square root:
    # an all-zero patch (a dark region after the ReLU) then gets a zero gradient, not 0 * inf.
    with torch.autocast(x.device.type, enabled=False):
        squares = x.float().pow(2).sum(dim=1, keepdim=True)  # (B, 1, H, W)
        sums = F.conv2d(squares, squares.new_ones(1, 1, 3, 3), padding=1)
        return sums.clamp_min(1e-24).sqrt().flatten(1)


@torch.no_grad()
def _most_relevant(q_patches: Tensor, k: Tensor, k_norms: Tensor, k_rows: int) -> Tensor:
    """Flat index of the most relevant Ref patch for each query column, by a running argmax over
    bands of ``k_rows`` Ref rows.

    Each query patch serves as a 3x3 conv filter over a band of K: the conv computes its dot
    product with every Ref patch of the band without unfolding K (an unfold of K per query band
    would cost as much as the products themselves when the LR image is large).

    :param q_patches: (B, C*9, n) L2-normalised query patches.
    :param k_norms: (B, Hr*Wr) from ``_patch_norms``.
    :return: (B, n) int64.
    """
    batch, _, n = q_patches.shape
    channels, ref_height, ref_width = k.shape[1:]
    index = torch.empty(batch, n, dtype=torch.long, device=k.device)
    for b in range(batch):
        filters = q_patches[b].t().reshape(n, channels, 3, 3)  # one filter per LR patch
        best = q_patches.new_full((n,), float("-inf"))
        best_index = torch.zeros(n, dtype=torch.long, device=k.device)
        for r0 in range(0, ref_height, k_rows):
            r1 = min(r0 + k_rows, ref_height)
            products = F.conv2d(_band(k[b : b + 1], r0, r1), filters, padding=(0, 1))
            relevance = products.view(
                n, -1
            )  # (n, m): one row per LR patch, one column per Ref patch
            relevance.div_(k_norms[b, r0 * ref_width : r1 * ref_width])
            tile_best, tile_index = relevance.max(dim=1)
            # Strictly greater: on ties the earlier Ref position wins, as in torch.max.
            better = tile_best > best
            best = torch.where(better, tile_best, best)
            best_index = torch.where(better, tile_index + r0 * ref_width, best_index)
        index[b] = best_index
    return index


class HardAttention(nn.Module):
    """Hard-attention texture transfer: each LR position receives the V patches of its most
    relevant Ref position, folded back onto the LR-up grid at three levels.

    Level lv3 uses 3x3 patches, lv2 6x6 at stride 2 and lv1 12x12 at stride 4 (the x2 and x4
    geometry of the same lv3 position). Overlapping patches are summed and divided by 9 as in the
    official code, which also divides the 1-lv3-pixel border band (covered by only 6 or 4 patches)
    by 9; ``coverage_correct=True`` divides by the true coverage instead.

    The fold is computed block by block, never unfolding V nor gathering whole patches: cut a level
    into ``scale`` x ``scale`` blocks, one per lv3 position. The patch chosen for LR position
    q + d (d in {-1, 0, 1}^2) puts, on the block of q, the V block at its Ref position minus d. So
    each output block is a sum of 9 V blocks, which ``F.embedding_bag`` computes in one pass
    (backward: one scatter-add into V). It equals unfold + gather + fold up to float summation
    order, and 14-19x faster forward and backward than gathering patches and folding them.
    """

    def __init__(self, coverage_correct: bool = False) -> None:
        super().__init__()
        self.coverage_correct = coverage_correct

    def forward(
        self, index: Tensor, lr_size: tuple[int, int], v_lv1: Tensor, v_lv2: Tensor, v_lv3: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Return T_lv3 (B, C3, h, w), T_lv2 (B, C2, 2h, 2w), T_lv1 (B, C1, 4h, 4w).

        :param index: (B, h*w) flat lv3 Ref positions (the H of ``RelevanceEmbedding``).
        :param lr_size: (h, w) of the lv3 query grid.
        """
        bags, inside = _neighbour_blocks(index, lr_size, tuple(v_lv3.shape[-2:]))
        textures = []
        for v, scale in ((v_lv3, 1), (v_lv2, 2), (v_lv1, 4)):
            t = _sum_blocks(v, bags, inside.to(v.dtype), lr_size, scale)
            textures.append(_normalize_fold(t, scale, self.coverage_correct))
        return textures[0], textures[1], textures[2]


def _neighbour_blocks(
    index: Tensor, lr_size: tuple[int, int], ref_size: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """For each LR position q, the 9 lv3 Ref blocks that the patches of q's neighbours put on q.

    :param index: (B, h*w) flat lv3 Ref positions.
    :return: (B*h*w, 9) flat blocks over the batch (row b*Hr*Wr + r*Wr + c), and (B*h*w, 9)
        booleans: False where the neighbour is outside the LR grid or its block outside the Ref
        (the official unfold's zero padding).
    """
    batch = index.shape[0]
    (height, width), (ref_height, ref_width) = lr_size, ref_size
    outside = -4  # any row / column that stays outside the Ref after a shift of at most 1
    grid = index.view(batch, height, width)
    rows = F.pad(grid.div(ref_width, rounding_mode="floor"), (1, 1, 1, 1), value=outside)
    cols = F.pad(grid.remainder(ref_width), (1, 1, 1, 1), value=outside)
    bags, inside = [], []
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            # neighbour q + (di, dj) chose (r, c); its patch puts block (r - di, c - dj) on q
            r = rows[:, 1 + di : 1 + di + height, 1 + dj : 1 + dj + width] - di
            c = cols[:, 1 + di : 1 + di + height, 1 + dj : 1 + dj + width] - dj
            inside.append((r >= 0) & (r < ref_height) & (c >= 0) & (c < ref_width))
            bags.append(r.clamp(0, ref_height - 1) * ref_width + c.clamp(0, ref_width - 1))
    first = torch.arange(batch, device=index.device).view(batch, 1, 1, 1) * ref_height * ref_width
    blocks = (torch.stack(bags, dim=-1) + first).view(-1, 9)
    return blocks, torch.stack(inside, dim=-1).view(-1, 9)


def _sum_blocks(
    v: Tensor, bags: Tensor, weights: Tensor, lr_size: tuple[int, int], scale: int
) -> Tensor:
    """Per LR position, the weighted sum of its 9 ``scale`` x ``scale`` blocks of V: (B, C, sh, sw).

    The result has V's memory format (channels_last or contiguous).
    """
    batch, channels, height, width = v.shape
    (h, w), (ref_h, ref_w) = lr_size, (height // scale, width // scale)
    # (B*Hr*Wr, s*s*C): one row per lv3 Ref position, its block pixel-major then channel
    blocks = v.permute(0, 2, 3, 1).reshape(batch, ref_h, scale, ref_w, scale, channels)
    blocks = blocks.transpose(2, 3).reshape(-1, scale * scale * channels)
    summed = F.embedding_bag(bags, blocks, mode="sum", per_sample_weights=weights)
    summed = summed.view(batch, h, w, scale, scale, channels)
    if is_channels_last(v):
        nhwc = summed.transpose(2, 3).reshape(batch, scale * h, scale * w, channels)
        return nhwc.permute(0, 3, 1, 2)
    nchw = summed.permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, scale * h, scale * w)
    return nchw.contiguous()  # at scale 1 the reshape is a strided view


def concat_conv(conv: nn.Conv2d, parts: Iterable[Tensor]) -> Tensor:
    """``conv(torch.cat(parts, dim=1))`` without building the concatenation.

    Each part is convolved with its slice of the weight and the results are summed, so a part
    given by a generator is freed as soon as it has been used. At 4x in the backbone this saves the
    concatenated map (2-3 feature maps of the output size) and its copy inside the conv. Equal to
    the concatenating conv up to float summation order.
    """
    out, start = None, 0
    for x in parts:
        stop = start + x.shape[1]
        weight = conv.weight[:, start:stop]
        y = F.conv2d(x, weight, conv.bias if out is None else None, conv.stride, conv.padding)
        # In place on a conv output, which no backward needs.
        out = y if out is None else out.add_(y)
        start = stop
    if out is None or start != conv.in_channels:
        raise ValueError(f"parts have {start} channels in all; the conv takes {conv.in_channels}.")
    return out


class SoftAttention(nn.Module):
    """Soft-attention texture fusion: ``F + Conv(F || T) * S``, S upsampled bicubically to F's scale.

    With ``S=None`` (the soft-attention ablation) the texture term is added unweighted. The conv has
    no activation, as in the official code.
    """

    def __init__(self, n_feats: int, texture_channels: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(n_feats + texture_channels, n_feats, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor, S: Tensor | None) -> Tensor:
        texture = concat_conv(self.conv, (x, t))
        if S is not None:
            if self.scale > 1:
                S = upsample_bicubic(S, self.scale)
            # In place saves a feature map at 4x, but autograd needs the product's inputs intact.
            texture = texture * S if torch.is_grad_enabled() else texture.mul_(S)
        # In place on a fresh tensor that no backward needs: saves one feature map at 4x.
        return texture.add_(x)


def search_transfer_naive(
    q: Tensor,
    k: Tensor,
    v_lv1: Tensor,
    v_lv2: Tensor,
    v_lv3: Tensor,
    coverage_correct: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The official search (``SearchTransfer.forward``): unfold, one bmm, max, gather, fold.

    Kept as the reference and the memory baseline: like the official code it holds the relevance
    matrix and every unfolded tensor until it returns. Arguments and outputs as
    ``TextureSearch.forward``.
    """
    height, width = q.shape[-2:]
    # (B, C*9, h*w): one LR patch per column; (B, Hr*Wr, C*9): one Ref patch per row
    q_patches = F.normalize(F.unfold(q, 3, padding=1), dim=1)
    k_patches = F.normalize(F.unfold(k, 3, padding=1).transpose(1, 2), dim=2)  # (B, Hr*Wr, C*9)
    relevance = torch.bmm(k_patches, q_patches)  # (B, Hr*Wr, h*w)
    S, index = torch.max(relevance, dim=1)  # (B, h*w) each
    # One unfolded patch per Ref position at every level: 3x3, 6x6 stride 2, 12x12 stride 4.
    v_patches = [
        F.unfold(v, 3 * scale, padding=scale, stride=scale)  # (B, C*(3s)^2, Hr*Wr)
        for v, scale in ((v_lv3, 1), (v_lv2, 2), (v_lv1, 4))
    ]
    chosen = [p.gather(2, index[:, None, :].expand(-1, p.shape[1], -1)) for p in v_patches]
    textures = [
        _normalize_fold(
            F.fold(t, (s * height, s * width), 3 * s, padding=s, stride=s), s, coverage_correct
        )
        for t, s in zip(chosen, (1, 2, 4))
    ]
    return S.view(-1, 1, height, width), textures[0], textures[1], textures[2]


class TextureSearch(nn.Module):
    """Relevance embedding + hard attention: S and T from Q, K and V (official ``SearchTransfer``).

    No parameters. The chunk sizes and ``coverage_correct`` are described in
    ``RelevanceEmbedding`` and ``HardAttention``.

    :param impl: ``bounded`` (default; ``RelevanceEmbedding`` + ``HardAttention``) or ``naive``
        (``search_transfer_naive``, the official code).
    """

    def __init__(
        self,
        impl: SearchImpl = "bounded",
        query_chunk: int = 2048,
        key_chunk: int = 4096,
        coverage_correct: bool = False,
    ) -> None:
        super().__init__()
        if impl not in SEARCH_IMPLS:
            raise ValueError(f"search impl '{impl}' is unknown; use one of {SEARCH_IMPLS}.")
        self.impl = impl
        self.coverage_correct = coverage_correct
        self.relevance = RelevanceEmbedding(query_chunk, key_chunk)
        self.hard_attention = HardAttention(coverage_correct)

    def forward(
        self, q: Tensor, k: Tensor, v_lv1: Tensor, v_lv2: Tensor, v_lv3: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Return S (B, 1, h, w), T_lv3 (B, C3, h, w), T_lv2 (B, C2, 2h, 2w), T_lv1 (B, C1, 4h, 4w).

        :param q: LTE lv3 of LR-up, (B, C, h, w).
        :param k: LTE lv3 of Ref down-up, (B, C, Hr, Wr).
        :param v_lv1: LTE lv1 of Ref, (B, C1, 4Hr, 4Wr); ``v_lv2`` (B, C2, 2Hr, 2Wr); ``v_lv3``
            (B, C3, Hr, Wr).
        """
        ref_size = tuple(k.shape[-2:])
        for v, scale in ((v_lv3, 1), (v_lv2, 2), (v_lv1, 4)):
            if tuple(v.shape[-2:]) != (scale * ref_size[0], scale * ref_size[1]):
                raise ValueError(
                    f"V at {scale}x the lv3 size must be {scale * ref_size[0]}x"
                    f"{scale * ref_size[1]}, got {v.shape[-2]}x{v.shape[-1]}: the Ref image height "
                    "and width must be multiples of 4 (crop it)."
                )
        if self.impl == "naive":
            return search_transfer_naive(q, k, v_lv1, v_lv2, v_lv3, self.coverage_correct)
        S, index = self.relevance(q, k)
        t_lv3, t_lv2, t_lv1 = self.hard_attention(index, tuple(q.shape[-2:]), v_lv1, v_lv2, v_lv3)
        return S, t_lv3, t_lv2, t_lv1
