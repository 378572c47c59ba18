"""The global branch of the BOPBTL scratch mapping: partial nonlocal block and patch attention.

``PartialNonLocal`` is the official ``NonLocalBlock2D_with_mask_Res`` (mode "combine", re_norm,
temperature 1): every latent position attends to the positions outside the scratch mask, and
hole positions take the attended feature. The official code materialises several hw x hw
matrices (a 1184x768 photo needs 12.9 GB for one); ``partial_attention`` computes the same
result with ``scaled_dot_product_attention`` over query chunks, in memory linear in hw.

``PatchAttention`` is the HR mode's ``Patch_Attention_4`` (``inference_forward``): each hole
patch is replaced by its most similar non-hole patch.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from revive.nets.vae import ResnetBlock, init_weights

MaskDownsample = Literal["official", "maxpool"]
Attention = Literal["sdpa", "naive"]

# F.normalize's default eps: the official L1 renormalisation divides by max(row sum, eps).
_RENORM_EPS = 1e-12
# Most scores the sentinel logsumexp / the patch matching hold at once (floats).
_SCORE_BUDGET = 2**25
# The extended query / key / value rows are zero-padded to a multiple of this width: the CPU
# flash kernel's bf16 forward ran 4x slower at width 514 (512 + 2 indicators) than at 520.
_WIDTH_MULTIPLE = 8


def downsample_mask(
    mask: torch.Tensor, size: tuple[int, int], mode: MaskDownsample = "official"
) -> torch.Tensor:
    """Bring an image-resolution scratch mask to latent resolution; returns the hole map.

    :param mask: (B, 1, H, W), 1 = scratch.
    :param size: latent (h, w).
    :param mode: ``official`` reproduces the released code,
        ``hole = 1 - (1 - [bilinear(mask) > 0]) * nearest(1 - mask)``: at a x4 ratio a cell is a
        hole only if its pixel (0, 0) (nearest) or one of its central 2x2 pixels (bilinear) is
        scratched, so thin lines on offset 3 vanish. ``maxpool`` marks a cell as soon as any of
        its pixels is scratched.
    :return: (B, 1, h, w), 1 = hole.
    """
    mask = mask.float() if not mask.is_floating_point() else mask
    if mode == "maxpool":
        return F.adaptive_max_pool2d(mask, size)
    if mode == "official":
        touched = (F.interpolate(mask, size, mode="bilinear", align_corners=False) > 0).to(mask)
        valid = (1 - touched) * F.interpolate(1 - mask, size, mode="nearest")
        return 1 - valid
    raise ValueError(f"mask_downsample must be 'official' or 'maxpool', got {mode!r}.")


def naive_partial_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """The official partial attention, hw x hw matrix and all (reference for tests, benchmark).

    softmax over all keys (no 1/sqrt(d) scale), zero the hole-key columns, L1-renormalise each
    row, multiply with the values. A row whose keys are all holes gives zeros.

    :param query, key, value: (B, L, C).
    :param key_valid: (B, L) in [0, 1] (1 = usable key) or None for plain attention.
    :return: (B, L, C).
    """
    affinity = torch.softmax(query @ key.transpose(1, 2), dim=2)  # (B, L, L)
    if key_valid is not None:
        affinity = F.normalize(affinity * key_valid[:, None, :], p=1, dim=2, eps=_RENORM_EPS)
    return affinity @ value


def _sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    # (L, D) x (N, D) x (N, D) -> (L, D) attention with unscaled logits. As 4-D inputs with
    # equal widths the CPU flash kernel runs it without building the L x N matrix.
    return F.scaled_dot_product_attention(
        query[None, None], key[None, None], value[None, None], scale=1.0
    )[0, 0]


def _logsumexp_scores(query: torch.Tensor, key_t: torch.Tensor) -> torch.Tensor:
    # logsumexp_j(q_i . k_j) per query row, (n,), holding at most _SCORE_BUDGET scores.
    rows = max(1, _SCORE_BUDGET // max(1, key_t.shape[1]))
    return torch.cat(
        [torch.logsumexp(query[s : s + rows] @ key_t, dim=1) for s in range(0, len(query), rows)]
    )


def _partial_attention_single(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    valid: torch.Tensor,
    chunk: int,
    out: torch.Tensor,
) -> None:
    """One image: (L, C) query / key / value, (L,) validity; writes the result into out (L, C)."""
    # Official: y_i = sum_j valid_j e_ij v_j / max(sum_j valid_j e_ij, eps * sum_all e_ij),
    # e_ij = exp(q_i . k_j). A masked softmax equals this except where the valid keys hold less
    # than eps of the softmax mass, so that denominator is rebuilt with one extra "sentinel" key
    # whose logit is log(eps * sum over hole keys e_ij) and whose value is zero. Two indicator
    # channels read off the valid-key mass u and the sentinel mass w; then
    # y = out / max(u, eps * u + w) is the official result, and 0 when no key is valid.
    c = query.shape[1]
    pad = -(c + 2) % _WIDTH_MULTIPLE  # zero columns: they change no dot product
    keep = valid > 0
    holes = ~keep
    n_keep = int(keep.sum())
    # logit(i, j) = q_i . k_j + log valid_j for kept keys (log 1 = 0 for binary masks).
    k_ext = torch.cat([key[keep], valid[keep].log()[:, None], key.new_zeros(n_keep, 1 + pad)], 1)
    v_ext = torch.cat(
        [value[keep], value.new_ones(n_keep, 1), value.new_zeros(n_keep, 1 + pad)], dim=1
    )
    hole_keys_t = None
    if holes.any():
        sentinel = key.new_zeros(1, c + 2 + pad)
        sentinel[0, c + 1] = 1
        k_ext = torch.cat([k_ext, sentinel])  # (n_keep + 1, C+2+pad)
        v_ext = torch.cat([v_ext, sentinel])
        hole_keys_t = key[holes].t().contiguous()  # (C, n_holes)
    for s in range(0, len(query), chunk):
        q = query[s : s + chunk]
        sentinel_logit = q.new_zeros(len(q))
        if hole_keys_t is not None:
            sentinel_logit = _logsumexp_scores(q, hole_keys_t) + math.log(_RENORM_EPS)
        q_ext = torch.cat(
            [q, q.new_ones(len(q), 1), sentinel_logit[:, None], q.new_zeros(len(q), pad)], dim=1
        )
        attended = _sdpa(q_ext, k_ext, v_ext)  # (chunk, C+2+pad)
        u, w = attended[:, c : c + 1], attended[:, c + 1 : c + 2]
        out[s : s + chunk] = attended[:, :c] / torch.maximum(u, _RENORM_EPS * u + w)


def partial_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_valid: torch.Tensor | None = None,
    query_chunk: int = 1024,
) -> torch.Tensor:
    """Partial attention equal to ``naive_partial_attention`` without the hw x hw matrix.

    Memory is O(L * C): the CPU flash-attention kernel works in blocks, and the sentinel
    scores against hole keys are computed ``query_chunk`` rows at a time. Images whose keys are
    all holes give zeros, as the official code does.

    :param query, key, value: (B, L, C).
    :param key_valid: (B, L) in [0, 1] (1 = usable key) or None for plain attention.
    :param query_chunk: queries per attention call.
    :return: (B, L, C), a transposed view of channels-first (B, C, L) storage, so that the
        caller's reshape back to a feature map is free.
    """
    b, n, c = query.shape
    out = query.new_empty(b, c, n).transpose(1, 2)
    for i in range(b):
        if key_valid is None:
            k, v = key[i].contiguous(), value[i].contiguous()
            for s in range(0, n, query_chunk):
                out[i, s : s + query_chunk] = _sdpa(query[i, s : s + query_chunk], k, v)
        else:
            _partial_attention_single(query[i], key[i], value[i], key_valid[i], query_chunk, out[i])
    return out


class PartialNonLocal(nn.Module):
    """Partial nonlocal block: hole positions are filled by attention over non-hole positions.

    ``theta``, ``phi``, ``g`` (1x1 convs) give queries, keys and values; the attended values go
    through ``W`` (1x1 conv) and ``res_block`` (3 ResnetBlocks), then the "combine" fusion
    ``valid * x + (1 - valid) * res_block(W(y))`` keeps the input outside the holes.

    With ``mask=None`` every key is used and the fusion is the residual ``x + res_block(W(y))``
    of a standard nonlocal block (with an all-valid mask the combine fusion would return ``x``
    unchanged): the "nonlocal without mask" ablation.

    :param channels: feature width (512 in the official mapping).
    :param n_blocks: ResnetBlocks after ``W`` (official 3).
    :param mask_downsample: ``official`` or ``maxpool``, see ``downsample_mask``.
    :param attention: ``sdpa`` (memory-linear) or ``naive`` (the official hw x hw matrices).
    :param query_chunk: queries per attention call for ``sdpa``.
    """

    def __init__(
        self,
        channels: int = 512,
        n_blocks: int = 3,
        mask_downsample: MaskDownsample = "official",
        attention: Attention = "sdpa",
        query_chunk: int = 1024,
    ) -> None:
        super().__init__()
        if attention not in ("sdpa", "naive"):
            raise ValueError(f"attention must be 'sdpa' or 'naive', got {attention!r}.")
        if mask_downsample not in ("official", "maxpool"):
            raise ValueError(
                f"mask_downsample must be 'official' or 'maxpool', got {mask_downsample!r}."
            )
        self.mask_downsample = mask_downsample
        self.attention = attention
        self.query_chunk = query_chunk
        self.g = nn.Conv2d(channels, channels, 1)
        self.W = nn.Conv2d(channels, channels, 1)
        self.theta = nn.Conv2d(channels, channels, 1)
        self.phi = nn.Conv2d(channels, channels, 1)
        self.res_block = nn.Sequential(*(ResnetBlock(channels) for _ in range(n_blocks)))
        init_weights(self)
        nn.init.zeros_(self.W.bias)

    def attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        valid: torch.Tensor | None,
    ) -> torch.Tensor:
        """(B, L, C) attention with the configured implementation."""
        if self.attention == "naive":
            return naive_partial_attention(query, key, value, valid)
        return partial_attention(query, key, value, valid, self.query_chunk)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, h, w) latent features; mask: (B, 1, H, W) image-resolution, 1 = scratch."""
        b, c, h, w = x.shape
        # (B, hw, C): one row per latent position
        query = self.theta(x).flatten(2).transpose(1, 2)
        key = self.phi(x).flatten(2).transpose(1, 2)
        value = self.g(x).flatten(2).transpose(1, 2)
        valid = None
        if mask is not None:
            valid = 1 - downsample_mask(mask.to(x.dtype), (h, w), self.mask_downsample)
        y = self.attend(query, key, value, None if valid is None else valid.flatten(1))
        del query, key, value  # free them before the ResnetBlocks run at full width
        filled = self.W(y.transpose(1, 2).reshape(b, c, h, w))
        del y
        filled = self.res_block(filled)
        if valid is None:
            return x + filled
        return valid * x + (1 - valid) * filled


class PatchAttention(nn.Module):
    """HR-mode patch attention: copy the best non-hole patch into every hole patch.

    Official ``Patch_Attention_4.inference_forward``: x = ResnetBlock(z); the mask is brought
    to (h, w) by ``bilinear > 0``; a non-overlapping p x p patch is a hole patch when more than
    60 % of it is masked; each hole patch is replaced by the non-hole patch of highest cosine
    similarity (flattened C*p*p vectors; the official softmax before the argmax does not change
    it); ``combine`` = Conv3x3 on concat(z, composed, mask). Only hole x non-hole similarities
    are computed, in query chunks.

    Differences from the official code, all where it is undefined or batch-blind: each image uses
    its own mask (the official uses image 0's for the whole batch); an image without non-hole
    patches is left unchanged (the official crashes).

    :param channels: feature width (512 official).
    :param patch_size: p.
    :param fill_border: the official fold leaves zeros in the right / bottom strip that is not a
        whole patch whenever an image has a hole patch; True copies x there instead.
    """

    def __init__(
        self,
        channels: int = 512,
        patch_size: int = 8,
        fill_border: bool = False,
        query_chunk: int = 1024,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.fill_border = fill_border
        self.query_chunk = query_chunk
        self.res_block = nn.Sequential(ResnetBlock(channels))
        self.combine = nn.Conv2d(2 * channels + 1, channels, 3, padding=1)
        init_weights(self)

    def _best_matches(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        # (D, nq), (D, nk) patch columns -> (nq,) index of the most cosine-similar key
        keys_t = F.normalize(keys, dim=0).t()  # (nk, D)
        queries = F.normalize(queries, dim=0)
        chunk = max(1, min(self.query_chunk, _SCORE_BUDGET // max(1, keys.shape[1])))
        return torch.cat(
            [
                (keys_t @ queries[:, s : s + chunk]).argmax(dim=0)
                for s in range(0, queries.shape[1], chunk)
            ]
        )

    def _compose(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        # x: (C, h, w), hole: (1, h, w) -> x with hole patches replaced
        p = self.patch_size
        h, w = x.shape[-2:]
        patches = F.unfold(x[None], p, stride=p)[0]  # (C*p*p, n): one column per patch
        hole_patch = F.unfold(hole[None], p, stride=p)[0].mean(dim=0) > 0.6  # (n,)
        if not hole_patch.any() or hole_patch.all():
            return x
        keys = patches[:, ~hole_patch]
        composed = patches.clone()
        composed[:, hole_patch] = keys[:, self._best_matches(patches[:, hole_patch], keys)]
        composed = F.fold(composed[None], (h, w), p, stride=p)[0]
        if self.fill_border:
            hp, wp = h // p * p, w // p * p
            composed[:, hp:, :] = x[:, hp:, :]
            composed[:, :, wp:] = x[:, :, wp:]
        return composed

    def forward(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """z: (B, C, h, w); mask: (B, 1, H, W) image-resolution, 1 = scratch."""
        x = self.res_block(z)
        hole = F.interpolate(mask.to(z.dtype), x.shape[-2:], mode="bilinear", align_corners=False)
        hole = (hole > 0).to(z.dtype)
        composed = torch.stack([self._compose(xi, hi) for xi, hi in zip(x, hole)])
        return self.combine(torch.cat([z, composed, hole], dim=1))
