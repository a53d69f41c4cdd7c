"""Swin Transformer: torchvision parity, the shifted-window mask, the relative position index, attention maps."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torchvision
from parity import (
    Perturbation,
    assert_logits_close,
    check_perturbation,
    combined,
    norm_identity,
    one_element,
    randomise_norms,
    scaled,
    swapped,
    swapped_chunks,
)

from milestones import count_macs
from milestones.errors import CheckpointError
from milestones.models import create_model, get_converter, get_spec
from milestones.models._layers import explicit_attention
from milestones.models.swin import ShiftedWindowAttention, relative_position_index


@pytest.fixture(scope="module")
def swin_t_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    """A randomly initialised torchvision swin_t and ours with its converted weights, both in eval mode."""
    torch.manual_seed(0)
    theirs = torchvision.models.swin_t().eval()
    ours = create_model("swin_t").eval()
    ours.load_state_dict(get_converter("swin_t").fn(theirs.state_dict()), strict=True)
    return theirs, ours


@pytest.mark.parametrize("shape", [(1, 3, 224, 224), (2, 3, 100, 76)])
def test_swin_t_logits_match_torchvision(swin_t_pair, shape: tuple[int, ...]) -> None:
    """Identical logits at 224, and at a non-square size that needs padding in every stage (25 x 19 at stage 1)."""
    theirs, ours = swin_t_pair
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = theirs(x), ours(x)
    assert actual.shape == (shape[0], 1000)
    assert_logits_close(actual, expected)


@pytest.mark.parametrize("name", ["swin_s", "swin_b"])
def test_converted_state_dict_loads_strictly(name: str) -> None:
    """Every torchvision key maps to one of ours with the same shape, and none of ours is left out (meta: no memory)."""
    with torch.device("meta"):
        theirs = getattr(torchvision.models, name)()
        ours = create_model(name)
    converted = get_converter(name).fn(theirs.state_dict())
    assert converted.keys() == ours.state_dict().keys()
    assert all(converted[k].shape == v.shape for k, v in ours.state_dict().items())
    ours.load_state_dict(converted, strict=True)


def test_converter_rejects_swin_v2() -> None:
    """A v2 state dict (log-spaced continuous position bias, cosine attention) is not silently half-loaded."""
    with torch.device("meta"):
        v2 = torchvision.models.swin_v2_t()
    with pytest.raises(CheckpointError):
        get_converter("swin_t").fn(v2.state_dict())


def test_gmacs_equal_torchvision_count() -> None:
    """Our COUNTS agree with the same counter run on torchvision's swin_t (PAPERS.md: 4.491 GMACs)."""
    with torch.device("meta"):
        theirs = torchvision.models.swin_t()
    assert count_macs(theirs, (3, 224, 224)) == get_spec("swin_t").counts.macs


def test_drop_path_and_shift_schedule() -> None:
    """Stochastic depth 0 -> 0.2 linearly over the 12 blocks as torchvision's; shifts alternate 0, M // 2 per stage."""
    with torch.device("meta"):
        theirs = torchvision.models.swin_t()
        ours = create_model("swin_t")
    expected = [m.p for m in theirs.modules() if isinstance(m, torchvision.ops.StochasticDepth)]
    blocks = [b for stage in ours.stages for b in stage.blocks]
    assert [b.drop_path.p for b in blocks] == pytest.approx(expected)
    assert blocks[-1].drop_path.p == pytest.approx(0.2)
    for stage in ours.stages:
        assert [b.attn.shift_size for b in stage.blocks] == [0, 3] * (len(stage.blocks) // 2)


def test_relative_position_index_2x2() -> None:
    """For a 2 x 2 window the (2M - 1)^2 = 9-row table is indexed by (dy + 1) * 3 + (dx + 1), (dy, dx) = p_i - p_j."""
    # tokens in row-major order: (0, 0), (0, 1), (1, 0), (1, 1); worked out by hand
    expected = torch.tensor(
        [
            [4, 3, 1, 0],
            [5, 4, 2, 1],
            [7, 6, 4, 3],
            [8, 7, 5, 4],
        ]
    )
    assert torch.equal(relative_position_index(2), expected)
    attn = ShiftedWindowAttention(8, 2, window_size=2, shift_size=0)
    assert attn.relative_position_bias_table.shape == (9, 2)
    assert attn.relative_position_bias().shape == (2, 4, 4)


def test_relative_position_index_7x7_matches_recompute_and_torchvision() -> None:
    M = 7
    coords = list(itertools.product(range(M), range(M)))
    recomputed = torch.tensor(
        [[(ri - rj + M - 1) * (2 * M - 1) + (ci - cj + M - 1) for rj, cj in coords] for ri, ci in coords]
    )
    ours = relative_position_index(M)
    assert torch.equal(ours, recomputed)
    assert ours.min() == 0 and ours.max() == (2 * M - 1) ** 2 - 1
    theirs = torchvision.models.swin_transformer.ShiftedWindowAttention(8, [M, M], [0, 0], 2)
    assert torch.equal(theirs.relative_position_index.view(M * M, M * M), ours)


def _shifted_regions(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """Region id of every token of every window, ``(nW, N)``, from first principles.

    The grid is padded to a multiple of the window (Hp x Wp) and rolled by ``-shift``: rolled position p holds the
    original position (p + shift) mod Hp, which wrapped around iff p + shift >= Hp. Two tokens share a region iff they
    lie in the same window and wrapped (or not) alike along each axis.
    """
    Hp, Wp = -(-height // window) * window, -(-width // window) * window
    ids = torch.empty(Hp // window, Wp // window, window, window, dtype=torch.long)
    for r, c in itertools.product(range(Hp), range(Wp)):
        wrapped_r, wrapped_c = int(r + shift >= Hp), int(c + shift >= Wp)
        ids[r // window, c // window, r % window, c % window] = 2 * wrapped_r + wrapped_c
    return ids.flatten(2).flatten(0, 1)


@pytest.mark.parametrize("grid", [(8, 8), (7, 10)])
def test_shift_mask_blocks_attention_across_wrapped_regions(grid: tuple[int, int]) -> None:
    """In SW-MSA a query's weights are zero on keys from other regions of its window, and sum to 1 over its own."""
    torch.manual_seed(0)
    window, shift, heads = 4, 2, 2
    attn = ShiftedWindowAttention(8, heads, window_size=window, shift_size=shift).eval()
    torch.nn.init.normal_(attn.relative_position_bias_table, std=0.5)
    with torch.no_grad():
        _, weights = attn(torch.randn(2, *grid, 8), need_weights=True)
    regions = _shifted_regions(*grid, window, shift)  # (nW, N)
    assert weights.shape == (2, regions.shape[0], heads, window**2, window**2)
    other = (regions[:, :, None] != regions[:, None, :])[None, :, None].expand_as(weights)  # query i, key j
    assert other.any(), "the test grid should have wrapped regions"
    assert weights[other].max().item() < 1e-30
    assert weights[~other].min().item() > 1e-4
    assert torch.allclose(weights.masked_fill(other, 0).sum(-1), torch.ones(()), atol=1e-5)


def test_unshifted_windows_are_not_masked() -> None:
    attn = ShiftedWindowAttention(8, 2, window_size=4, shift_size=0).eval()
    with torch.no_grad():
        _, weights = attn(torch.randn(1, 8, 8, 8), need_weights=True)
    assert weights.min().item() > 1e-4


def _bands(size: int, window: int, shift: int) -> list[tuple[int, int]]:
    """The shifted partition of one axis in image coordinates: [0, s), [s, s + M), ..., [.., size)."""
    cuts = [0, *range(shift, size, window), size]
    return list(itertools.pairwise(cuts))


@pytest.mark.parametrize("grid", [(8, 8), (8, 12)])
def test_shifted_windows_equal_naive_shifted_partition(grid: tuple[int, int]) -> None:
    """The paper's claim (§3.2, Fig. 4): cyclic shift + mask computes exactly the attention of the shifted partition,
    whose border windows are smaller, computed here window by window in image coordinates."""
    torch.manual_seed(0)
    H, W = grid
    M, s, heads, C = 4, 2, 2, 8
    attn = ShiftedWindowAttention(C, heads, window_size=M, shift_size=s).eval()
    torch.nn.init.normal_(attn.relative_position_bias_table, std=0.5)
    x = torch.randn(1, H, W, C)
    with torch.no_grad():
        actual, _ = attn(x)
        q, k, v = attn.qkv(x[0]).view(H, W, 3, heads, C // heads).unbind(2)  # (H, W, h, d) each
        expected = torch.empty(H, W, C)
        for (r0, r1), (c0, c1) in itertools.product(_bands(H, M, s), _bands(W, M, s)):
            pos = list(itertools.product(range(r0, r1), range(c0, c1)))
            rows, cols = torch.tensor([p[0] for p in pos]), torch.tensor([p[1] for p in pos])
            qw, kw, vw = (t[rows, cols].transpose(0, 1) for t in (q, k, v))  # (h, n, d)
            rel = torch.tensor(
                [[(ri - rj + M - 1) * (2 * M - 1) + ci - cj + M - 1 for rj, cj in pos] for ri, ci in pos]
            )
            logits = qw @ kw.transpose(1, 2) * (C // heads) ** -0.5 + attn.relative_position_bias_table[rel].permute(
                2, 0, 1
            )
            out = (logits.softmax(-1) @ vw).transpose(0, 1).reshape(len(pos), C)
            expected[rows, cols] = attn.proj(out)
    assert_logits_close(actual[0], expected)


def test_attention_maps_and_explicit_attention_cifar_config() -> None:
    """The CIFAR options (2 x 2 patches, 4 x 4 windows at 32 x 32): one map per block, shaped (B, nW, heads, N, N),
    rows summing to 1; the explicit softmax(QK^T)V path gives the same logits as SDPA."""
    torch.manual_seed(0)
    model = create_model("swin_t", patch_size=2, window_size=4, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = model.attention_maps(x)
        logits = model(x)
        with explicit_attention():
            explicit = model(x)
    assert logits.shape == (2, 10)
    assert_logits_close(logits, explicit)
    # grids 16, 8, 4, 2 (the last padded to 4): 16, 4, 1, 1 windows of 16 tokens; depths 2, 2, 6, 2
    expected = [
        (2, nw, h, 16, 16)
        for nw, h, d in zip((16, 4, 1, 1), (3, 6, 12, 24), (2, 2, 6, 2), strict=True)
        for _ in range(d)
    ]
    assert [tuple(m.shape) for m in maps] == expected
    for m in maps:
        assert torch.allclose(m.sum(-1), torch.ones(()), atol=1e-5)


# Converter mistakes the parity checks must catch (tests/parity.py), in block 1 of stage 3 (a shifted-window block).
_BLOCK = "stages.2.blocks.1"
PERTURBATIONS = {
    "qkv-weight-scaled-1.01": scaled(f"{_BLOCK}.attn.qkv.weight"),
    "one-weight-negated": one_element(f"{_BLOCK}.attn.proj.weight"),
    "q-k-swapped": combined(*(swapped_chunks(f"{_BLOCK}.attn.qkv.{p}", 0, 1) for p in ("weight", "bias"))),
    "window-and-shifted-bias-tables-swapped": swapped(
        "stages.2.blocks.0.attn.relative_position_bias_table", f"{_BLOCK}.attn.relative_position_bias_table"
    ),
    "layernorm-unmapped": norm_identity(f"{_BLOCK}.norm1"),
}


@pytest.fixture(scope="module")
def swin_t_reference(swin_t_pair) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """The parity pair's torchvision swin_t with non-trivial LayerNorms: its converted weights, an input, its logits."""
    theirs = randomise_norms(copy.deepcopy(swin_t_pair[0]))
    x = torch.randn(1, 3, 112, 112, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return get_converter("swin_t").fn(theirs.state_dict()), x, theirs(x)


@pytest.mark.parametrize("perturb", list(PERTURBATIONS.values()), ids=list(PERTURBATIONS))
def test_perturbed_conversion_fails_parity(swin_t_pair, swin_t_reference, perturb: Perturbation) -> None:
    state, x, expected = swin_t_reference
    check_perturbation(lambda: copy.deepcopy(swin_t_pair[1]), state, perturb, x, expected)
