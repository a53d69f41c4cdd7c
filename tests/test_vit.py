"""Vision Transformer: torchvision parity, SDPA vs explicit attention, attention maps, pos-embed resizing, init."""

from __future__ import annotations

import math
import re

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
    swapped_chunks,
)
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer as TVViT
from torchvision.models.vision_transformer import interpolate_embeddings

from milestones.models import create_model, get_converter, vit
from milestones.models._layers import explicit_attention
from milestones.models.vit import resize_pos_embed

# A narrow ViT (same code path as every variant) that builds and runs in milliseconds.
TINY = dict(patch_size=8, dim=32, depth=2, num_heads=2)


def _randomise_head(model: nn.Module) -> None:
    """The official init zeroes the head (and the class token), which would make logits trivially equal."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "head" in name or "class_token" in name or "cls_token" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def _tiny_tv(image_size: int = 32, **kwargs) -> TVViT:
    torch.manual_seed(0)
    tv = TVViT(
        image_size=image_size,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=128,
        num_classes=10,
        **kwargs,
    )
    _randomise_head(tv)
    return tv.eval()


def _convert(tv: nn.Module) -> dict[str, torch.Tensor]:
    return get_converter("vit_b_16").fn(tv.state_dict())


def test_parity_vit_b_16() -> None:
    """Randomly initialised torchvision vit_b_16 -> converter -> vit_b16: identical logits (64x64, 16 patches)."""
    torch.manual_seed(0)
    tv = torchvision.models.vit_b_16(image_size=64).eval()
    _randomise_head(tv)
    conv = get_converter("vit_b_16")
    assert conv.target == "vit_b16"
    with torch.device("meta"):  # skip initialising 86M weights that the load replaces
        ours = create_model(conv.target, img_size=64, **conv.target_kwargs).eval()
    ours.load_state_dict(conv.fn(tv.state_dict()), strict=True, assign=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = tv(x), ours(x)
    assert expected.abs().max() > 0.1  # the logits are not trivially zero
    assert_logits_close(got, expected)


def test_parity_pre_logits_representation_layer() -> None:
    """torchvision's representation_size (pre-logits Linear + tanh) maps onto ours with identical logits."""
    tv = _tiny_tv(representation_size=16)
    ours = create_model("vit_ti16", img_size=32, num_classes=10, representation_size=16, **TINY).eval()
    ours.load_state_dict(_convert(tv), strict=True)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert_logits_close(ours(x), tv(x))
        assert ours.forward_features(x).shape == (3, 32)
    ours.reset_classifier(5, drop_pre_logits=True)
    assert ours.pre_logits is None and ours(x).shape == (3, 5)


@pytest.mark.parametrize("source", ["vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14"])
def test_converters_strict_load_on_meta(source: str) -> None:
    """Every torchvision ViT's state dict loads strictly into its target, shapes included (meta device: free)."""
    conv = get_converter(source)
    with torch.device("meta"):
        tv = getattr(torchvision.models, source)()
        ours = create_model(conv.target, **conv.target_kwargs)
    converted = conv.fn(tv.state_dict())
    ours_sd = ours.state_dict()
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in ours_sd.items()}
    ours.load_state_dict(converted, strict=True, assign=True)


def test_sdpa_equals_explicit_attention() -> None:
    """The default SDPA path and the textbook softmax(QK^T)V path give the same logits and features."""
    torch.manual_seed(0)
    model = create_model("vit_s16", img_size=32, patch_size=8, depth=2, num_classes=10).eval()
    _randomise_head(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fast = model(x)
        with explicit_attention():
            slow = model(x)
    assert fast.abs().max() > 0.1
    assert_logits_close(fast, slow)


def test_forward_uses_sdpa_and_no_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """forward calls F.scaled_dot_product_attention once per block; attention_maps never does (it needs weights)."""
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    model = create_model("vit_ti16", img_size=32, **TINY).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        model(x)
        assert len(calls) == TINY["depth"]
        model.attention_maps(x)
        assert len(calls) == TINY["depth"]


def test_attention_maps_shape_rows_and_torchvision() -> None:
    """One (B, heads, N, N) map per block, rows summing to 1, equal to torchvision's per-head MHA weights."""
    tv = _tiny_tv()
    ours = create_model("vit_ti16", img_size=32, num_classes=10, **TINY).eval()
    ours.load_state_dict(_convert(tv), strict=True)
    x = torch.randn(2, 3, 32, 32)
    inputs: list[torch.Tensor] = []
    hooks = [layer.register_forward_pre_hook(lambda _m, a: inputs.append(a[0])) for layer in tv.encoder.layers]
    with torch.no_grad():
        maps = ours.attention_maps(x)
        tv(x)
        expected = [
            layer.self_attention(*(layer.ln_1(h),) * 3, need_weights=True, average_attn_weights=False)[1]
            for layer, h in zip(tv.encoder.layers, inputs, strict=True)
        ]
    for h in hooks:
        h.remove()
    n = 1 + (32 // 8) ** 2
    assert len(maps) == TINY["depth"]
    for got, want in zip(maps, expected, strict=True):
        assert got.shape == (2, TINY["num_heads"], n, n)
        torch.testing.assert_close(got.sum(-1), torch.ones(2, TINY["num_heads"], n))
        assert_logits_close(got, want)


def test_resize_to_same_grid_is_identity() -> None:
    pos = torch.randn(1, 1 + 7 * 5, 16)
    for align_corners in (True, False):
        out = resize_pos_embed(pos, (7, 5), old_grid=(7, 5), align_corners=align_corners)
        assert_logits_close(out, pos)


def test_resize_matches_torchvision_interpolate_embeddings() -> None:
    """A 32x32 checkpoint loaded into a 64x64 model (resized on load) equals torchvision's own resize + model."""
    tv32 = _tiny_tv(32)
    sd = tv32.state_dict()
    tv64 = _tiny_tv(64)
    tv64.load_state_dict(interpolate_embeddings(64, 8, dict(sd)), strict=True)
    ours = create_model("vit_ti16", img_size=64, num_classes=10, **TINY).eval()
    ours.load_state_dict(_convert(tv32), strict=True)  # pos_embed 1+16 -> 1+64 inside load_state_dict
    assert ours.pos_embed.shape == (1, 1 + 64, 32)
    torch.testing.assert_close(ours.pos_embed[:, 0], sd["encoder.pos_embedding"][:, 0])  # class token kept
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_logits_close(ours(x), tv64(x))


def test_load_at_other_sizes_non_square_and_gap() -> None:
    """A square checkpoint loads into non-square and CIFAR-size models; GAP models have no prefix token."""
    src = create_model("vit_ti16", img_size=64, **TINY)
    for size in [(32, 64), 16, (48, 24)]:
        dst = create_model("vit_ti16", img_size=size, **TINY).eval()
        dst.load_state_dict(src.state_dict(), strict=True)
        h, w = (size, size) if isinstance(size, int) else size
        assert dst.pos_embed.shape == (1, 1 + (h // 8) * (w // 8), 32)
        assert dst(torch.randn(1, 3, h, w)).shape == (1, 1000)
    gap_src = create_model("vit_ti16", img_size=32, classifier="gap", **TINY)
    gap = create_model("vit_ti16", img_size=48, classifier="gap", **TINY)
    gap.load_state_dict(gap_src.state_dict(), strict=True)
    expected = resize_pos_embed(gap_src.pos_embed.detach(), 6, num_prefix_tokens=0)
    torch.testing.assert_close(gap.pos_embed.detach(), expected)
    assert gap.pos_embed.shape == (1, 36, 32) and gap.cls_token is None


def test_non_square_source_grid_needs_old_grid() -> None:
    pos = torch.randn(1, 1 + 4 * 8, 16)
    with pytest.raises(ValueError, match="old_grid"):
        resize_pos_embed(pos, (4, 4))
    assert resize_pos_embed(pos, (8, 8), old_grid=(4, 8)).shape == (1, 65, 16)


def test_cifar_patch4_and_wrong_size() -> None:
    model = create_model("vit_ti16", img_size=32, patch_size=4, depth=2, num_classes=10)
    assert model.pos_embed.shape == (1, 1 + 64, 192)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="img_size"):
        model(torch.randn(2, 3, 64, 64))
    with pytest.raises(ValueError, match="multiple"):
        create_model("vit_ti16", img_size=30, patch_size=4)


def test_gap_classifier_is_mean_of_normed_tokens() -> None:
    model = create_model("vit_ti16", img_size=32, classifier="gap", **TINY).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = model.stages(model._embed(x))
        torch.testing.assert_close(model.forward_features(x), model.norm(tokens).mean(1))
    assert tokens.shape == (2, 16, 32)


def test_official_init() -> None:
    """Zero head and class token, N(0, 0.02) position embeddings, Xavier per q/k/v, MLP bias N(0, 1e-6), LN eps."""
    torch.manual_seed(0)
    model = create_model("vit_s16", depth=2)  # S/16 widths at 224; two blocks suffice to check the scheme
    d = 384
    assert model.head.weight.abs().max() == 0 and model.head.bias.abs().max() == 0
    assert model.cls_token.abs().max() == 0
    assert model.pos_embed.shape == (1, 197, d)
    assert model.pos_embed.std().item() == pytest.approx(0.02, rel=0.02)
    assert model.pos_embed.mean().abs().item() < 1e-3
    bound = math.sqrt(6 / (d + d))  # Xavier on each (D, D) projection, not on the fused (3D, D) matrix
    for block in model.stages:
        for w in block.attn.qkv.weight.chunk(3):
            assert w.abs().max().item() <= bound
            assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
        assert block.attn.qkv.bias.abs().max() == 0
        fc1 = block.mlp.fc1
        assert fc1.weight.abs().max().item() <= math.sqrt(6 / (d + 4 * d))
        assert fc1.bias.std().item() == pytest.approx(1e-6, rel=0.2)
        assert block.norm1.eps == 1e-6 and block.norm2.eps == 1e-6
    assert model.norm.eps == 1e-6
    assert model.stem.kernel_size == (16, 16) and model.stem.stride == (16, 16)
    std = math.sqrt(1 / (3 * 16 * 16))  # flax lecun_normal: variance 1 / fan_in after truncation at 2 sigma
    assert model.stem.weight.std().item() == pytest.approx(std, rel=0.02)
    assert model.stem.weight.abs().max().item() <= 2 * std / 0.87962566103423978
    assert model.stem.bias.abs().max() == 0
    reset = create_model("vit_ti16", img_size=32, **TINY)
    reset.reset_classifier(3)
    assert reset.head.weight.abs().max() == 0 and reset.head.out_features == 3


def test_official_dropout_per_variant() -> None:
    """vit_jax configs: dropout 0.1 for L/16 and H/14, 0 elsewhere; never attention dropout."""
    from milestones.models.vit import VARIANTS

    assert {n for n, c in VARIANTS.items() if c.drop_rate} == {"vit_l16", "vit_h14"}
    assert all(c.drop_rate in (0.0, 0.1) and c.attn_drop_rate == 0 for c in VARIANTS.values())


def test_docstring_errors_cite_the_reported_table() -> None:
    """Each docstring row's top-1 error cites the same table(s) as REPORTED's source (ViT Table 5 / Table 2, DeiT
    Table 5), checked against the paper's Appendix C and §4.2 tables."""
    rows = {line.split("|")[1].strip(): line for line in (vit.__doc__ or "").splitlines() if line.startswith("| vit_")}
    assert set(rows) == set(vit.REPORTED)
    for name, r in vit.REPORTED.items():
        cell = rows[name].split("|")[-2]
        assert cell.strip().startswith(f"{r.top1_err} ("), name
        refs = re.findall(r"(?:DeiT )?Table \d+", cell)
        assert refs, f"{name}: the docstring row names no table"
        for ref in refs:
            assert ref.removeprefix("DeiT ") in r.source and ("DeiT" in r.source) == ref.startswith("DeiT"), name


# Converter mistakes the parity checks must catch (tests/parity.py), on the narrow ViT with non-trivial LayerNorms.
PERTURBATIONS = {
    "mlp-weight-scaled-1.01": scaled("stages.1.mlp.fc1.weight"),
    "one-weight-negated": one_element("stages.0.attn.proj.weight"),
    "q-k-swapped": combined(*(swapped_chunks(f"stages.0.attn.qkv.{p}", 0, 1) for p in ("weight", "bias"))),
    "layernorm-unmapped": norm_identity("stages.0.norm1"),
}


@pytest.fixture(scope="module")
def tiny_reference() -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """The narrow torchvision ViT with non-trivial LayerNorms: its converted weights, an input, its logits."""
    tv = randomise_norms(_tiny_tv())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return _convert(tv), x, tv(x)


@pytest.mark.parametrize("perturb", list(PERTURBATIONS.values()), ids=list(PERTURBATIONS))
def test_perturbed_conversion_fails_parity(tiny_reference, perturb: Perturbation) -> None:
    state, x, expected = tiny_reference
    check_perturbation(lambda: create_model("vit_ti16", img_size=32, num_classes=10, **TINY), state, perturb, x,
                       expected)
