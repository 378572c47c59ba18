"""Latent mapping networks: shapes, the ablation switches, HR hard patch attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from revive.nets.mapping import PatchAttentionMapping, QualityMapping, ScratchMapping, fill_holes
from revive.nets.non_local import PatchAttention, downsample_mask

C, WIDTH = 8, 32  # tiny latent channels and middle width


def _line_mask(size: int, row: int) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    mask[0, 0, row, :] = 1
    return mask


@pytest.mark.parametrize(
    "net",
    [
        QualityMapping(C, WIDTH, n_blocks=2),
        ScratchMapping(C, WIDTH, n_blocks=2),
        PatchAttentionMapping(C, WIDTH, patch_sizes=(4, 2), n_blocks=1),
    ],
    ids=["quality", "scratch", "patch_attention"],
)
def test_mappings_keep_the_latent_shape(net: torch.nn.Module) -> None:
    z = torch.randn(2, C, 8, 12)
    mask = torch.zeros(2, 1, 32, 48)
    mask[:, :, 10:20, 5:9] = 1
    out = net(z) if isinstance(net, QualityMapping) else net(z, mask)
    assert out.shape == z.shape


def test_mapping_width_cannot_exceed_four_doublings() -> None:
    with pytest.raises(ValueError, match="channels=512"):
        QualityMapping(in_channels=16, channels=512)


def test_scratch_mapping_without_global_branch_is_the_quality_mapping() -> None:
    torch.manual_seed(0)
    scratch = ScratchMapping(C, WIDTH, n_blocks=2, global_branch=False).eval()
    quality = QualityMapping(C, WIDTH, n_blocks=2).eval()
    assert scratch.global_branch is None
    quality.load_state_dict(scratch.state_dict())
    z = torch.randn(1, C, 6, 6)
    with torch.no_grad():
        out = scratch(z, _line_mask(24, 9))
        torch.testing.assert_close(out, quality(z))
        torch.testing.assert_close(out, scratch(z, torch.zeros(1, 1, 24, 24)))


def test_scratch_mapping_uses_the_mask_unless_told_not_to() -> None:
    torch.manual_seed(0)
    masked = ScratchMapping(C, WIDTH, n_blocks=1).eval()
    unmasked = ScratchMapping(C, WIDTH, n_blocks=1, use_mask=False).eval()
    unmasked.load_state_dict(masked.state_dict())
    z = torch.randn(1, C, 6, 6)
    scratch, clean = _line_mask(24, 9), torch.zeros(1, 1, 24, 24)
    with torch.no_grad():
        assert (masked(z, scratch) - masked(z, clean)).abs().max() > 1e-4
        torch.testing.assert_close(unmasked(z, scratch), unmasked(z, clean))
        # plain nonlocal (residual fusion) differs from partial nonlocal without holes (identity)
        assert (unmasked(z, clean) - masked(z, clean)).abs().max() > 1e-4


def test_maxpool_mask_downsampling_sees_lines_the_official_misses() -> None:
    torch.manual_seed(0)
    official = ScratchMapping(C, WIDTH, n_blocks=1).eval()
    maxpool = ScratchMapping(C, WIDTH, n_blocks=1, mask_downsample="maxpool").eval()
    maxpool.load_state_dict(official.state_dict())
    z = torch.randn(1, C, 6, 6)
    line, clean = _line_mask(24, 11), torch.zeros(1, 1, 24, 24)  # row offset 3 of latent row 2
    with torch.no_grad():
        torch.testing.assert_close(official(z, line), official(z, clean))
        assert (maxpool(z, line) - maxpool(z, clean)).abs().max() > 1e-4


def test_attention_option_reaches_the_block() -> None:
    assert (
        ScratchMapping(C, WIDTH, n_blocks=1, attention="naive").global_branch.attention == "naive"
    )


def _brute_force_compose(x: torch.Tensor, hole: torch.Tensor, p: int) -> torch.Tensor:
    # Every hole patch (> 60 % masked) takes the non-hole patch of highest cosine similarity.
    patches = F.unfold(x[None], p, stride=p)[0]
    is_hole = F.unfold(hole[None], p, stride=p)[0].mean(0) > 0.6
    similarity = F.normalize(patches, dim=0).t() @ F.normalize(patches, dim=0)
    similarity[:, is_hole] = -2  # hole patches are never sources
    composed = patches.clone()
    for i in torch.nonzero(is_hole).flatten():
        composed[:, i] = patches[:, similarity[i].argmax()]
    return F.fold(composed[None], x.shape[-2:], p, stride=p)[0]


def test_patch_attention_copies_the_most_similar_non_hole_patch() -> None:
    attention = PatchAttention(channels=4, patch_size=2, query_chunk=3)
    x = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(0))
    hole = torch.zeros(1, 8, 8)
    hole[:, 2:4, :] = 1  # one row of hole patches
    hole[:, 6, 0:2] = 1  # half a patch: 50 % is not > 60 %, stays a source
    composed = attention._compose(x, hole)
    torch.testing.assert_close(composed, _brute_force_compose(x, hole, 2))
    assert torch.equal(composed[:, 6:8, 0:2], x[:, 6:8, 0:2])
    assert not torch.equal(composed[:, 2:4], x[:, 2:4])


def test_patch_attention_border_strip_is_zero_officially_and_copied_on_request() -> None:
    x = torch.randn(4, 9, 10)  # not multiples of the patch size 4
    hole = torch.zeros(1, 9, 10)
    hole[:, 0:4, 0:4] = 1
    official = PatchAttention(channels=4, patch_size=4)._compose(x, hole)
    fixed = PatchAttention(channels=4, patch_size=4, fill_border=True)._compose(x, hole)
    assert torch.equal(official[:, 8:], torch.zeros_like(official[:, 8:]))
    assert torch.equal(official[:, :, 8:], torch.zeros_like(official[:, :, 8:]))
    assert torch.equal(fixed[:, 8:], x[:, 8:]) and torch.equal(fixed[:, :, 8:], x[:, :, 8:])
    torch.testing.assert_close(fixed[:, :8, :8], official[:, :8, :8])
    # without hole patches nothing is folded: the input passes unchanged
    assert torch.equal(PatchAttention(4, 4)._compose(x, torch.zeros(1, 9, 10)), x)


def test_patch_attention_mapping_depends_on_the_mask() -> None:
    torch.manual_seed(0)
    net = PatchAttentionMapping(C, WIDTH, patch_sizes=(4, 2), n_blocks=1).eval()
    z = torch.randn(1, C, 8, 8)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 0:16, 0:16] = 1
    with torch.no_grad():
        assert (net(z, mask) - net(z, torch.zeros_like(mask))).abs().max() > 1e-4


@pytest.mark.parametrize(
    "cls, extra",
    [
        (QualityMapping, {"n_blocks": 2}),
        (ScratchMapping, {"n_blocks": 2}),
        (PatchAttentionMapping, {"patch_sizes": (4, 2), "n_blocks": 1}),
    ],
    ids=["quality", "scratch", "patch_attention"],
)
@pytest.mark.parametrize("norm", ["instance", "none"])
def test_residual_mapping_starts_as_the_identity_with_the_official_keys(cls, extra, norm) -> None:
    torch.manual_seed(0)
    residual = cls(C, WIDTH, norm=norm, residual=True, **extra)
    plain = cls(C, WIDTH, norm=norm, **extra)
    assert residual.state_dict().keys() == plain.state_dict().keys()
    z, mask = torch.randn(2, C, 8, 8), _line_mask(32, 5).expand(2, 1, 32, 32)
    args = (z,) if cls is QualityMapping else (z, mask)
    # the scratch mappings skip z with its scratched cells inpainted; the rest passes unchanged
    start = z if cls is QualityMapping else fill_holes(z, downsample_mask(mask, (8, 8), "maxpool"))
    with torch.no_grad():
        torch.testing.assert_close(residual(*args), start)
        assert (plain(*args) - z).abs().max() > 0.1
        residual.tail[-1].bias.fill_(0.5)  # once trained, the tail adds to z
        torch.testing.assert_close(residual(*args), start + 0.5)
    if cls is not QualityMapping:
        with torch.no_grad():  # an empty mask leaves nothing to inpaint: the identity again
            torch.testing.assert_close(residual(z, torch.zeros_like(mask)), z + 0.5)


def test_fill_holes_inpaints_a_smooth_latent_from_both_sides_of_a_scratch() -> None:
    ramp = torch.linspace(-1, 1, 16)
    z = (ramp[None, :] + 2 * ramp[:, None]).expand(1, 3, 16, 16)  # a plane: z = x + 2y
    hole = torch.zeros(1, 1, 16, 16)
    hole[..., 7:9, :] = 1  # a scratch two cells wide across the latent
    hole[..., 2:6, 3:7] = 1  # and a 4x4 blotch
    filled = fill_holes(z, hole)
    assert torch.equal(filled[..., hole[0, 0] == 0], z[..., hole[0, 0] == 0])
    # averaging neighbours of a plane is exact away from the border
    inner = hole[0, 0].bool().clone()
    inner[:, [0, -1]] = False
    err = (filled - z).abs()[..., inner]
    # each ring copies its own side, one cell behind the plane (0.27 in y); the plane spans 6
    assert err.max() < 0.4 and err.mean() < 0.3
    assert torch.equal(fill_holes(z, torch.ones_like(hole)), torch.zeros_like(z))  # nothing known
