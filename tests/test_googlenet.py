"""GoogLeNet: exact counts with and without auxiliary heads, the paper's Inception table and grid sizes, LRN placement
and constants, auxiliary heads in training, and parity with torchvision's ``googlenet`` through the converter."""

from __future__ import annotations

import pytest
import torch
import torchvision
from parity import (
    Perturbation,
    assert_logits_close,
    assert_logits_differ,
    check_perturbation,
    combined,
    norm_identity,
    one_element,
    scaled,
    swapped,
)
from torch import nn
from torch.nn import functional as F

from milestones import count_macs, count_params
from milestones.errors import CheckpointError, ConfigError
from milestones.models import create_model, get_converter, get_spec
from milestones.models.googlenet import Inception

# Typed from the paper's Table 1 (and PAPERS.md §2.4), independently of the module's own table:
# name: (input channels, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj, output grid at 224)
TABLE1 = {
    "3a": (192, 64, 96, 128, 16, 32, 32, 28),
    "3b": (256, 128, 128, 192, 32, 96, 64, 28),
    "4a": (480, 192, 96, 208, 16, 48, 64, 14),
    "4b": (512, 160, 112, 224, 24, 64, 64, 14),
    "4c": (512, 128, 128, 256, 24, 64, 64, 14),
    "4d": (512, 112, 144, 288, 32, 64, 64, 14),
    "4e": (528, 256, 160, 320, 32, 128, 128, 14),
    "5a": (832, 256, 160, 320, 32, 128, 128, 7),
    "5b": (832, 384, 192, 384, 48, 128, 128, 7),
}
TABLE1_OUT = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528, "4e": 832, "5a": 832, "5b": 1024}


def _inceptions(model: nn.Module) -> dict[str, Inception]:
    return {name: m for stage in model.stages for name, m in stage.named_children() if isinstance(m, Inception)}


@pytest.mark.parametrize(
    ("name", "aux", "expected"),
    [
        ("googlenet", False, 6_998_552),
        ("googlenet", True, 13_378_280),
        ("googlenet_tv", False, 6_624_904),
        ("googlenet_tv", True, 13_004_888),
    ],
)
def test_param_counts(name: str, aux: bool, expected: int) -> None:
    """PAPERS.md §1.4: 6,998,552 / 13,378,280 (paper net), 6,624,904 / 13,004,888 (torchvision) without / with aux."""
    with torch.device("meta"):
        model = create_model(name, aux_logits=aux)
    assert count_params(model) == expected
    if not aux:
        assert get_spec(name).counts.params == expected  # the registered count is the default (aux-free) build


@pytest.mark.parametrize("aux", [False, True])
def test_tv_counts_match_torchvision(aux: bool) -> None:
    with torch.device("meta"):
        ours = create_model("googlenet_tv", aux_logits=aux)
        tv = torchvision.models.googlenet(aux_logits=aux, init_weights=False)
    assert count_params(ours) == count_params(tv)
    assert count_macs(ours, (3, 224, 224)) == count_macs(tv, (3, 224, 224))


def test_macs_near_design_budget() -> None:
    """§1: "a computational budget of 1.5 billion multiply-adds at inference time"; PAPERS.md: fvcore 1.58."""
    spec = get_spec("googlenet")
    assert spec.reported.gmacs == 1.5 and spec.reported.top5_err == 10.07
    assert spec.counts.gmacs == pytest.approx(1.5, rel=0.06)


@pytest.mark.parametrize("name", ["googlenet", "googlenet_tv"])
def test_inception_table(name: str) -> None:
    """Every module has Table 1's branch widths; its output channels are the sum of its branches and feed the next."""
    model = create_model(name)
    modules = _inceptions(model)
    assert list(modules) == list(TABLE1)
    kernel5 = 5 if name == "googlenet" else 3
    for key, m in modules.items():
        in_ch, c1, c3r, c3, c5r, c5, pp, _ = TABLE1[key]
        assert m.branch1.conv.in_channels == in_ch
        assert m.branch1.conv.out_channels == c1
        assert (m.branch2[0].conv.out_channels, m.branch2[1].conv.out_channels) == (c3r, c3)
        assert (m.branch3[0].conv.out_channels, m.branch3[1].conv.out_channels) == (c5r, c5)
        assert m.branch3[1].conv.kernel_size == (kernel5, kernel5)
        assert m.branch4[1].conv.out_channels == pp
        assert m.out_channels == c1 + c3 + c5 + pp == TABLE1_OUT[key]
    assert model.head.in_features == TABLE1_OUT["5b"]


@pytest.mark.parametrize("name", ["googlenet", "googlenet_tv"])
def test_grid_sizes_at_224(name: str) -> None:
    """Table 1's output sizes: 112 (conv1), 56 (pool1, conv2), 28 (3a-3b), 14 (4a-4e), 7 (5a-5b)."""
    with torch.device("meta"):
        model = create_model(name).eval()
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
        for n, m in [*model.stem.named_children(), *_inceptions(model).items()]
    ]
    model(torch.zeros(1, 3, 224, 224, device="meta"))
    for h in hooks:
        h.remove()
    assert shapes["conv1"] == (1, 64, 112, 112)
    assert shapes["conv2"] == (1, 192, 56, 56)
    assert shapes["pool2"] == (1, 192, 28, 28)
    for key, row in TABLE1.items():
        assert shapes[key] == (1, TABLE1_OUT[key], row[-1], row[-1]), key


@pytest.mark.parametrize(("stem", "stride", "grids"), [("cifar", 1, [32, 16, 8]), ("cifar16", 2, [16, 8, 4])])
def test_cifar_stem_grids(stem: str, stride: int, grids: list[int]) -> None:
    """stem="cifar" keeps every Inception module and reaches 3a at 32x32, 4a at 16x16, 5a at 8x8; "cifar16" halves
    each grid with a stride-2 first convolution, so it costs a quarter of the multiply-adds (the 1x1 head aside)."""
    with torch.device("meta"):
        model = create_model("googlenet", stem=stem, num_classes=10).eval()
        full = create_model("googlenet", stem="cifar", num_classes=10)
    assert list(_inceptions(model)) == list(TABLE1)
    assert model.stem.conv1.conv.kernel_size == (3, 3) and model.stem.conv1.conv.stride == (stride, stride)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.stem)
    x = model.stem(torch.zeros(1, 3, 32, 32, device="meta"))
    sizes = []
    for stage in model.stages:
        x = stage(x)
        sizes.append(x.shape[-1])
    assert sizes == grids
    ratio = count_macs(model, (3, 32, 32)) / count_macs(full, (3, 32, 32))
    assert ratio == pytest.approx(1 / stride**2, rel=0.01)


def test_lrn_placement_and_constants() -> None:
    """Paper stem: conv 7x7/2, max-pool, LRN, conv 1x1, conv 3x3, LRN, max-pool; LRN nowhere else; none in tv."""
    paper = create_model("googlenet")
    assert list(dict(paper.stem.named_children())) == [
        "conv1", "pool1", "norm1", "conv2_reduce", "conv2", "norm2", "pool2"
    ]  # fmt: skip
    lrns = [n for n, m in paper.named_modules() if isinstance(m, nn.LocalResponseNorm)]
    assert lrns == ["stem.norm1", "stem.norm2"]
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in create_model("googlenet_tv").modules())
    # Caffe's LRN (BVLC replica: size 5, alpha 1e-4, beta 0.75, k 1), recomputed by hand:
    # b_c = a_c / (k + alpha / n * sum_{|c' - c| <= 2} a_c'^2) ^ beta
    torch.manual_seed(0)
    a = torch.randn(2, 12, 5, 5) * 30
    sq = F.pad(a.pow(2), (0, 0, 0, 0, 2, 2))
    window = sum(sq[:, i : i + 12] for i in range(5))
    expected = a / (1.0 + 1e-4 / 5 * window) ** 0.75
    assert_logits_close(paper.stem.norm1(a), expected)
    assert_logits_differ(expected, a)  # the constants matter at this scale


def test_paper_vs_torchvision_details() -> None:
    paper, tv = create_model("googlenet", aux_logits=True), create_model("googlenet_tv", aux_logits=True)
    assert (paper.drop.p, tv.drop.p) == (0.4, 0.2)
    assert all(a.drop.p == 0.7 for a in [*paper.aux.values(), *tv.aux.values()])
    assert (paper.stages[2].pool.kernel_size, tv.stages[2].pool.kernel_size) == (3, 2)
    assert paper.stages[1].pool.kernel_size == tv.stages[1].pool.kernel_size == 3
    assert isinstance(paper.aux["4a"].pool, nn.AvgPool2d) and paper.aux["4a"].pool.kernel_size == 5
    assert paper.aux["4a"].pool.stride == 3
    convs_paper = [m for m in paper.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is not None for c in convs_paper)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in paper.modules())
    bns = [m for m in tv.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(b.eps == 1e-3 for b in bns)
    assert all(c.bias is None for c in tv.modules() if isinstance(c, nn.Conv2d))
    assert len(convs_paper) == 3 + 9 * 6 + 2  # stem, 6 convs per Inception module, one per aux head


def test_paper_init() -> None:
    """BVLC Caffe replica: xavier U(+-sqrt(3/fan_in)), biases 0.2, classifier biases 0."""
    model = create_model("googlenet", aux_logits=True)
    w = model.stem.conv1.conv.weight
    assert w.abs().max() <= (3 / w[0].numel()) ** 0.5
    assert (model.stem.conv1.conv.bias == 0.2).all() and (model.aux["4d"].fc.bias == 0.2).all()
    assert (model.head.bias == 0).all() and (model.aux["4a"].head.bias == 0).all()


def test_forward_with_aux_in_train_mode() -> None:
    """forward_with_aux -> (logits, [aux 4a, aux 4d]) in train mode; forward still returns only logits; the weighted
    loss reaches every parameter, the auxiliary heads included. (googlenet_tv's heads: the train-mode parity test.)"""
    torch.manual_seed(0)
    model = create_model("googlenet", aux_logits=True, stem="cifar", num_classes=10).train()
    x, y = torch.randn(2, 3, 28, 28), torch.tensor([1, 7])  # 3a/4a/5a at 28/14/7, as at 224 with the paper's stem
    logits, aux = model.forward_with_aux(x)
    assert logits.shape == (2, 10) and isinstance(aux, list) and [a.shape for a in aux] == [(2, 10), (2, 10)]
    loss = F.cross_entropy(logits, y) + 0.3 * sum(F.cross_entropy(a, y) for a in aux)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"
    assert any(n.startswith("aux.4a.") for n, _ in model.named_parameters())
    assert any(n.startswith("aux.4d.") for n, _ in model.named_parameters())
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)
    model.reset_classifier(3)
    with torch.no_grad():
        _, aux = model.eval().forward_with_aux(x)
    assert [a.shape for a in aux] == [(2, 3), (2, 3)]


def test_forward_with_aux_errors() -> None:
    with pytest.raises(ConfigError, match="aux_logits=True"):
        create_model("googlenet", num_classes=5).forward_with_aux(torch.randn(1, 3, 64, 64))
    model = create_model("googlenet", aux_logits=True, num_classes=5)
    with pytest.raises(ValueError, match="4x4"):  # the paper's 5x5/3 pool on a 4x4 grid (64x64 input)
        model.forward_with_aux(torch.randn(1, 3, 64, 64))
    with pytest.raises(ConfigError):
        create_model("googlenet", stem="tiny")


def _random_tv(aux: bool, **kwargs: object) -> nn.Module:
    """torchvision googlenet with its own random init, its BN statistics calibrated on a random batch and its BN
    affine parameters moved off (1, 0), so that eval-mode BN is far from the identity and the logits far from zero
    (a comparison that can fail)."""
    torch.manual_seed(0)
    tv = torchvision.models.googlenet(aux_logits=aux, init_weights=True, **kwargs)
    bns = [m for m in tv.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.momentum = None  # cumulative average: one batch sets the running statistics
    with torch.no_grad():
        tv.train()(torch.randn(4, 3, 64, 64))
        for m in bns:
            m.momentum = 0.1
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
    return tv


def test_torchvision_parity_eval() -> None:
    """Converted random torchvision weights give the same eval logits. torchvision's ``transform_input=True`` maps
    ImageNet-normalised input to (x - 0.5) / 0.5 inside the model; ours never re-normalises, so converted weights
    see the same numbers only when fed (x - 0.5) / 0.5 directly."""
    tv = _random_tv(False, transform_input=False).eval()
    converter = get_converter("googlenet")
    assert converter.target == "googlenet_tv"
    ours = create_model(converter.target, **converter.target_kwargs).eval()
    ours.load_state_dict(converter.fn(tv.state_dict()), strict=True)
    torch.manual_seed(1)
    x01 = torch.rand(1, 3, 224, 224)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (x01 - mean) / std
    with torch.no_grad():
        ref, out = tv(x), ours(x)
        assert ref.std() > 0.05  # the comparison is not between two near-zero tensors
        assert_logits_close(out, ref)
        tv.transform_input = True
        ref = tv(x)
        # the two roundings of the input transform differ by float eps, so this one is close, not identical
        assert_logits_close(ours((x01 - 0.5) / 0.5), ref)
        assert_logits_differ(out, ref)  # the input transform matters, and ours does not apply it


def test_torchvision_parity_aux_train_mode() -> None:
    """With the aux heads kept, train-mode outputs (batch-statistics BN, dropout off) match torchvision's
    ``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)``, which lists the heads in reverse order."""
    tv = _random_tv(True, transform_input=False, dropout=0.0, dropout_aux=0.0).train()
    ours = create_model("googlenet_tv", aux_logits=True, dropout=0.0, aux_dropout=0.0).train()
    ours.load_state_dict(get_converter("googlenet").fn(tv.state_dict(), keep_aux=True), strict=True)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        ref = tv(x)
        logits, (aux1, aux2) = ours.forward_with_aux(x)
    assert_logits_close(logits, ref.logits)
    assert_logits_close(aux1, ref.aux_logits1)
    assert_logits_close(aux2, ref.aux_logits2)


def test_converter_drops_untrained_aux_by_default() -> None:
    tv = torchvision.models.googlenet(aux_logits=True, init_weights=False)
    sd = get_converter("googlenet").fn(tv.state_dict())
    assert not any(k.startswith("aux") for k in sd)
    create_model("googlenet_tv").load_state_dict(sd, strict=True)
    with pytest.raises(CheckpointError):
        get_converter("googlenet").fn({"features.0.weight": torch.zeros(1)})


# Converter mistakes the parity checks must catch (tests/parity.py): inception 3a's two 32-map branches (3x3 and
# pool projection) with their batch norms exchanged, and single-tensor slips.
PERTURBATIONS = {
    "conv-weight-scaled-1.01": scaled("stages.1.4c.branch2.1.conv.weight"),
    "one-weight-negated": one_element("stem.conv2.conv.weight"),
    "branch-batchnorms-swapped": combined(*(
        swapped(f"stages.0.3a.branch3.1.bn.{k}", f"stages.0.3a.branch4.1.bn.{k}")
        for k in ("weight", "bias", "running_mean", "running_var")
    )),
    "batchnorm-unmapped": norm_identity("stages.1.4c.branch1.bn"),
}


@pytest.fixture(scope="module")
def googlenet_reference() -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """The eval parity test's torchvision model: its converted weights, an input at 96 x 96, its logits."""
    tv = _random_tv(False, transform_input=False).eval()
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return get_converter("googlenet").fn(tv.state_dict()), x, tv(x)


@pytest.mark.parametrize("perturb", list(PERTURBATIONS.values()), ids=list(PERTURBATIONS))
def test_perturbed_conversion_fails_parity(googlenet_reference, perturb: Perturbation) -> None:
    state, x, expected = googlenet_reference
    conv = get_converter("googlenet")
    check_perturbation(lambda: create_model(conv.target, **conv.target_kwargs), state, perturb, x, expected)


def test_no_reductions_against_closed_form() -> None:
    """reductions=False (Figure 2a, pool projection kept): each module's 3x3 and 5x5 convolutions read all its input
    channels; output widths, and so every other layer, are unchanged. Counted from TABLE1 alone."""
    extra = 0
    for c_in, _, r3, c3, r5, c5, _, _ in TABLE1.values():
        with_red = (c_in * r3 + r3) + (9 * r3 * c3 + c3) + (c_in * r5 + r5) + (25 * r5 * c5 + c5)
        extra += (9 * c_in * c3 + c3) + (25 * c_in * c5 + c5) - with_red
    with torch.device("meta"):
        model = create_model("googlenet", reductions=False)
    assert count_params(model) == 6_998_552 + extra == 25_305_944
    block = _inceptions(model)["4a"]
    assert [len(block.branch2), len(block.branch3)] == [1, 1] and block.branch3[0].conv.in_channels == 480
    assert block.out_channels == TABLE1_OUT["4a"]
    with pytest.raises(ConfigError, match="reductions must be true or false"):
        create_model("googlenet", reductions="no")


@pytest.mark.parametrize(("stem", "img_size", "grid"), [("imagenet", 224, 7), ("cifar", 32, 8), ("cifar16", 32, 4)])
def test_fc_head(stem: str, img_size: int, grid: int) -> None:
    """head="fc": FC 1024 on the flattened 1024 x grid x grid maps, then the same dropout and classifier."""
    with torch.device("meta"):
        gap = create_model("googlenet", stem=stem, num_classes=10)
        fc = create_model("googlenet", stem=stem, num_classes=10, head="fc", img_size=img_size)
    assert count_params(fc) - count_params(gap) == 1024 * grid * grid * 1024 + 1024
    torch.manual_seed(0)
    model = create_model("googlenet_tv", stem=stem, num_classes=10, head="fc", img_size=img_size, aux_logits=True,
                         aux_pool="adaptive").eval()
    x = torch.randn(1, 3, img_size, img_size)
    with torch.no_grad():
        assert model.forward_features(x).shape == (1, 1024) and model(x).shape == (1, 10)
        logits, aux = model.forward_with_aux(x)
        assert logits.shape == (1, 10) and len(aux) == 2
        with pytest.raises(ConfigError, match=f"img_size={img_size + 64}"):
            model(torch.randn(1, 3, img_size + 64, img_size + 64))
    with pytest.raises(ConfigError, match="head must be 'gap'"):
        create_model("googlenet", head="avg")


def test_half_width() -> None:
    """width=0.5 halves every channel count (stem, Table 1, the heads), so a convolution costs a quarter."""
    with torch.device("meta"):
        full = create_model("googlenet", stem="cifar16", num_classes=10)
        half = create_model("googlenet", stem="cifar16", num_classes=10, width=0.5, aux_logits=True,
                            aux_pool="adaptive")
        fc = create_model("googlenet", stem="cifar16", num_classes=10, width=0.5, head="fc", img_size=32)
    blocks = _inceptions(half)
    assert [blocks["3a"].branch1.conv.out_channels, blocks["5b"].out_channels] == [32, 512]
    assert half.stem.conv2.conv.out_channels == 96 and half.aux["4a"].conv.conv.out_channels == 64
    assert half.aux["4a"].fc.out_features == 512 and fc.pre_logits.fc.out_features == 512 == fc.num_features
    assert count_macs(half, (3, 32, 32)) == pytest.approx(count_macs(full, (3, 32, 32)) / 4, rel=0.05)
    torch.manual_seed(0)
    model = create_model("googlenet", stem="cifar16", num_classes=10, width=0.5, aux_logits=True,
                         aux_pool="adaptive", batch_norm=True).train()
    logits, aux = model.forward_with_aux(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and [a.shape for a in aux] == [(2, 10), (2, 10)]
    with pytest.raises(ConfigError, match="width must be in"):
        create_model("googlenet", width=0)
