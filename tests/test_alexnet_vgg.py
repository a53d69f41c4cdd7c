"""AlexNet and VGG against independent references: the paper's LRN formula recomputed in float64, the two-tower
connectivity, the paper's init, hand counts from PAPERS.md, and torchvision's implementations with the same weights."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision
from parity import (
    Perturbation,
    assert_logits_close,
    assert_logits_differ,
    check_perturbation,
    norm_identity,
    one_element,
    randomise_norms,
    scaled,
    swapped,
)
from torch import nn

from milestones import count_macs, count_params
from milestones.errors import ConfigError
from milestones.models import create_model, get_converter

TV_VGG = ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]


def paper_lrn(a: torch.Tensor, *, towers: int = 1, n: int = 5, k: float = 2.0, alpha: float = 1e-4,
              beta: float = 0.75) -> torch.Tensor:
    """AlexNet §3.3 in float64, written out: b_i = a_i / (k + alpha * sum_{j=i-n/2}^{i+n/2} a_j^2)^beta, the sum
    clipped to the maps of the tower (GPU) that holds map i."""
    a = a.double()
    per = a.shape[1] // towers
    out = torch.empty_like(a)
    for i in range(a.shape[1]):
        lo, hi = (i // per) * per, (i // per + 1) * per
        window = a[:, max(lo, i - n // 2) : min(hi, i + n // 2 + 1)]
        out[:, i] = a[:, i] / (k + alpha * window.pow(2).sum(1)) ** beta
    return out


def test_alexnet_lrn_is_the_papers() -> None:
    torch.manual_seed(0)
    model = create_model("alexnet", img_size=67)
    a = torch.rand(2, 96, 4, 4) * 60  # post-ReLU magnitudes large enough that alpha * sum a^2 matters (~1)
    ours = model.stages[0].lrn(a)
    ref = paper_lrn(a, towers=2)
    assert_logits_close(ours.double(), ref)
    # The test can fail: PyTorch's LocalResponseNorm with the paper's alpha divides it by n (5x weaker), and a
    # window running across the towers is another function.
    assert_logits_differ(nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(a).double(), ref)
    assert_logits_differ(paper_lrn(a, towers=1), ref)
    # conv2's LRN (256 maps, 128 per tower) too
    b = torch.rand(1, 256, 2, 2) * 60
    assert_logits_close(model.stages[1].lrn(b).double(), paper_lrn(b, towers=2))


def test_vgg_a_lrn_uses_alexnets_lrn_after_the_first_conv() -> None:
    stage = create_model("vgg11_lrn", img_size=32).stages[0]
    assert list(dict(stage.named_children())) == ["conv1", "relu1", "lrn", "pool"]  # Table 1: conv3-64, LRN, maxpool
    a = torch.rand(1, 64, 3, 3) * 60
    assert_logits_close(stage.lrn(a).double(), paper_lrn(a))
    assert all(not isinstance(m, nn.LocalResponseNorm) for m in create_model("vgg11", img_size=32).modules())


@pytest.mark.parametrize("layer, grouped", [(1, True), (2, False), (3, True), (4, True)])
def test_alexnet_towers(layer: int, grouped: bool) -> None:
    """Perturbing tower 1's input maps of conv2/conv4/conv5 (with their ReLU, LRN and pool) leaves tower 2's outputs
    unchanged; conv3 reads both towers."""
    torch.manual_seed(0)
    stage = create_model("alexnet", img_size=67).stages[layer].eval()
    conv = stage.conv
    assert conv.groups == (2 if grouped else 1)
    x = torch.randn(1, conv.in_channels, 9, 9)
    x2 = x.clone()
    x2[:, : conv.in_channels // 2] += torch.randn(1, conv.in_channels // 2, 9, 9)
    with torch.no_grad():
        y, y2 = stage(x), stage(x2)
    half = y.shape[1] // 2
    assert not torch.equal(y[:, :half], y2[:, :half])
    assert torch.equal(y[:, half:], y2[:, half:]) == grouped


def test_alexnet_lrn_window_stays_in_its_tower() -> None:
    lrn = create_model("alexnet", img_size=67).stages[0].lrn
    a = torch.rand(1, 96, 2, 2) + 1
    a2 = a.clone()
    a2[:, 48] += 100.0  # first map of tower 2
    b, b2 = lrn(a), lrn(a2)
    assert torch.equal(b[:, :48], b2[:, :48])
    assert not torch.equal(b[:, 49], b2[:, 49])


def test_alexnet_init_is_the_papers() -> None:
    """§5: weights N(0, 0.01); bias 1 in conv2, conv4, conv5, FC6, FC7; 0 in conv1, conv3, FC8."""
    torch.manual_seed(0)
    model = create_model("alexnet")
    ones = {"stages.1.conv", "stages.3.conv", "stages.4.conv", "pre_logits.fc6", "pre_logits.fc7"}
    zeros = {"stages.0.conv", "stages.2.conv", "head"}
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert set(layers) == ones | zeros
    for name, m in layers.items():
        assert torch.all(m.bias == (1.0 if name in ones else 0.0)), name
        assert m.weight.std().item() == pytest.approx(0.01, rel=0.05), name
        assert abs(m.weight.mean().item()) < 1e-3, name


def test_alexnet_counts_by_hand() -> None:
    """PAPERS.md §1.2: 60,965,224 with towers, 62,378,344 with the same widths and no groups; MACs layer by layer."""
    with torch.device("meta"):
        assert count_params(create_model("alexnet")) == 60_965_224
        assert count_params(create_model("alexnet", towers=1)) == 62_378_344
        macs = count_macs(create_model("alexnet"), (3, 227, 227))
    convs = [55 * 55 * 96 * 3 * 11 * 11, 27 * 27 * 256 * 48 * 25, 13 * 13 * 384 * 256 * 9,
             13 * 13 * 384 * 192 * 9, 13 * 13 * 256 * 192 * 9]
    assert macs == sum(convs) + 9216 * 4096 + 4096 * 4096 + 4096 * 1000


def test_alexnet_input_size() -> None:
    """The paper's "224" does not fit its 11x11/4 conv: a clear error at 224, and FC6 has 6400 inputs when built so."""
    with torch.device("meta"):
        model = create_model("alexnet")
        with pytest.raises(ConfigError, match="227"):
            model(torch.zeros(1, 3, 224, 224))
        assert create_model("alexnet", img_size=224).pre_logits.fc6.in_features == 6400
        assert create_model("alexnet").pre_logits.fc6.in_features == 9216
    with pytest.raises(ConfigError, match="stem='cifar'"):
        create_model("alexnet", img_size=32)


def test_alexnet_cifar_stem() -> None:
    torch.manual_seed(0)
    model = create_model("alexnet", stem="cifar", img_size=32, num_classes=10)
    assert model.stages[0].conv.kernel_size == (5, 5) and model.stages[0].conv.stride == (1, 1)
    assert model.pre_logits.fc6.in_features == 256 * 3 * 3
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_alexnet_kaiming_init_option() -> None:
    """init="kaiming": He-normal weights (std sqrt(2 / fan_in)) and zero biases everywhere but FC8 (paper's N(0, 0.01));
    the logits then depend on the input, which the paper's init nearly hides at 32x32 (see the module docstring)."""
    torch.manual_seed(0)
    model = create_model("alexnet", stem="cifar", img_size=32, num_classes=10, init="kaiming")
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            want = 0.01 if name == "head" else (2.0 / fan_in) ** 0.5
            assert m.weight.std().item() == pytest.approx(want, rel=0.1), name
            assert torch.all(m.bias == 0), name
    x = torch.randn(64, 3, 32, 32)
    paper = create_model("alexnet", stem="cifar", img_size=32, num_classes=10).eval()
    with torch.no_grad():
        spread_he, spread_paper = model.eval()(x).std(0).mean().item(), paper(x).std(0).mean().item()
    assert spread_he > 100 * spread_paper
    with pytest.raises(ConfigError, match="init must be"):
        create_model("alexnet", init="xavier")


def _check_parity(tv: nn.Module, source: str, x: torch.Tensor) -> None:
    conv = get_converter(source)
    with torch.device("meta"):  # built without memory or init; the converted tensors are assigned in
        ours = create_model(conv.target, **conv.target_kwargs).eval()
    ours.load_state_dict(conv.fn(tv.state_dict()), strict=True, assign=True)
    with torch.no_grad():
        ref, out = tv.eval()(x), ours(x)
    assert ref.abs().max() > 1e-3  # the comparison below means something
    assert_logits_close(out, ref)


def test_torchvision_alexnet_parity() -> None:
    torch.manual_seed(0)
    tv = torchvision.models.alexnet(weights=None)
    for m in tv.modules():  # torchvision's default init gives logits ~1e-3; make them larger
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.05)
    _check_parity(tv, "alexnet", torch.randn(1, 3, 224, 224))


@pytest.mark.parametrize("source", ["vgg11", "vgg11_bn"])
def test_torchvision_vgg_parity(source: str) -> None:
    torch.manual_seed(0)
    tv = getattr(torchvision.models, source)(weights=None)
    for m in tv.modules():  # non-trivial running statistics and affine parameters, so BN mapping errors show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.1, 0.1)
    _check_parity(tv, source, torch.randn(1, 3, 224, 224))


@pytest.mark.parametrize("source", TV_VGG)
def test_torchvision_vgg_state_dicts_convert(source: str) -> None:
    """Every torchvision VGG converts key for key onto ours (strict load, same shapes, the very same tensors)."""
    with torch.device("meta"):
        tv_sd = getattr(torchvision.models, source)(weights=None).state_dict()
        conv = get_converter(source)
        assert conv.target == source
        ours = create_model(conv.target, **conv.target_kwargs)
    converted = conv.fn(tv_sd)
    assert len(converted) == len(tv_sd)
    assert {id(v) for v in converted.values()} == {id(v) for v in tv_sd.values()}
    ours.load_state_dict(converted, strict=True)


def test_vgg_configurations() -> None:
    """Table 1: convs per stage, and C's 1x1 convs as the third conv of stages 3-5."""
    depths = {"vgg11": (1, 1, 2, 2, 2), "vgg13": (2, 2, 2, 2, 2), "vgg16_c": (2, 2, 3, 3, 3), "vgg16": (2, 2, 3, 3, 3),
              "vgg19": (2, 2, 4, 4, 4)}
    for name, depth in depths.items():
        with torch.device("meta"):
            model = create_model(name)
        convs = [[m for m in stage if isinstance(m, nn.Conv2d)] for stage in model.stages]
        assert tuple(len(c) for c in convs) == depth, name
        ones = [(s, j) for s, c in enumerate(convs) for j, m in enumerate(c) if m.kernel_size == (1, 1)]
        assert ones == ([(2, 2), (3, 2), (4, 2)] if name == "vgg16_c" else []), name
        assert [c[-1].out_channels for c in convs] == [64, 128, 256, 512, 512]


def test_vgg_gap_head() -> None:
    """head='gap': the convolutional part of D (14,714,688 params, PAPERS/Keras include_top=False) + one linear."""
    with torch.device("meta"):
        model = create_model("vgg16", head="gap")
    assert count_params(model) == 14_714_688 + 512 * 1000 + 1000
    torch.manual_seed(0)
    model = create_model("vgg11", head="gap", num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert model.forward_features(x).shape == (1, 512)
        assert model(x).shape == (1, 10)
        model.reset_classifier(4)
        assert model(x).shape == (1, 4)


def _vgg_conv_params(kernels: tuple[tuple[int, ...], ...], widths: tuple[int, ...]) -> int:
    """Closed form: every conv has k*k*in*out weights and out biases."""
    total, c_in = 0, 3
    for width, ks in zip(widths, kernels, strict=True):
        for k in ks:
            total += k * k * c_in * width + width
            c_in = width
    return total


@pytest.mark.parametrize("img_size", [224, 32])
@pytest.mark.parametrize("widths", [(64, 128, 256, 512, 512), (32, 64, 128, 256, 256)])
def test_vgg_heads_against_closed_form(img_size: int, widths: tuple[int, ...]) -> None:
    """The three heads of D: paper FC6-FC8 (138,357,544 at 224), GAP + linear, GAP + one hidden FC + linear."""
    d = ((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
    hidden, k, c = 4096 * widths[0] // 64, 1000, widths[-1]
    conv = _vgg_conv_params(d, widths)
    grid = img_size // 32
    fc = (c * grid**2 * hidden + hidden) + (hidden * hidden + hidden) + (hidden * k + k)
    expect = {"fc": conv + fc, "gap": conv + c * k + k, "gap_fc": conv + (c * hidden + hidden) + (hidden * k + k)}
    for head, params in expect.items():
        with torch.device("meta"):
            model = create_model("vgg16", head=head, img_size=img_size, widths=widths, hidden=hidden)
        assert count_params(model) == params, head
    if widths[0] == 64 and img_size == 224:
        assert expect["fc"] == 138_357_544 and expect["gap"] == 15_227_688 and expect["gap_fc"] == 20_912_936


def test_vgg_gap_fc_head() -> None:
    torch.manual_seed(0)
    model = create_model("vgg11", head="gap_fc", hidden=64, num_classes=10).eval()
    assert [n for n, _ in model.pre_logits.named_children()] == ["fc6", "relu6", "drop6"]
    x = torch.randn(2, 3, 48, 48)  # any size of 32 px or more: the head sees pooled maps
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, 64)
        assert model(x).shape == (2, 10)
    with pytest.raises(ConfigError, match="head must be 'fc', 'gap' or 'gap_fc', got 'avg'"):
        create_model("vgg11", head="avg")


def test_vgg_img_size() -> None:
    with torch.device("meta"):
        assert create_model("vgg16", img_size=32).pre_logits.fc6.in_features == 512
        assert create_model("vgg16").pre_logits.fc6.in_features == 512 * 7 * 7
        with pytest.raises(ConfigError, match="img_size=32"):
            create_model("vgg16")(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ConfigError, match="too small"):
        create_model("vgg16", img_size=16)


def test_vgg_skip_pools() -> None:
    """skip_pools=(5,) at 32 px ends on a 2x2 map (FC6 reads 4 x 512 values) with the same conv MACs; (4,) runs stage
    5 on 4x4 maps; the default keeps every pool, parameter count and checkpoint key."""
    with torch.device("meta"):
        d, last = create_model("vgg16", img_size=32), create_model("vgg16", img_size=32, skip_pools=(5,))
        assert last.pre_logits.fc6.in_features == 4 * 512 and d.pre_logits.fc6.in_features == 512
        assert count_params(last) - count_params(d) == 3 * 512 * 4096
        assert [hasattr(s, "pool") for s in last.stages] == [True, True, True, True, False]
        assert count_macs(last.stages, (3, 32, 32)) == count_macs(d.stages, (3, 32, 32))
        assert create_model("vgg16", skip_pools=(5,)).pre_logits.fc6.in_features == 14 * 14 * 512
        assert list(d.state_dict()) == list(last.state_dict())  # a max-pool holds no parameters
    torch.manual_seed(0)
    net = create_model("vgg13_bn", widths=(8, 8, 16, 16, 16), img_size=32, skip_pools=[4], head="gap",
                       num_classes=10).eval()
    x, seen = torch.randn(2, 3, 32, 32), []
    hook = net.stages[4].conv1.register_forward_hook(lambda m, a, out: seen.append(tuple(a[0].shape[-2:])))
    with torch.no_grad():
        assert net(x).shape == (2, 10) and net.stages(x).shape == (2, 16, 2, 2)
    hook.remove()
    assert seen == [(4, 4), (4, 4)]  # both forward passes: stage 5 reads 4x4 maps
    with pytest.raises(ConfigError, match="skip_pools numbers stages 1 to 5"):
        create_model("vgg11", skip_pools=(6,))


# Converter mistakes the parity checks must catch (tests/parity.py), at the parity tests' 224 x 224.
PERTURBATIONS = {
    "alexnet/fc-weight-scaled-1.01": ("alexnet", scaled("pre_logits.fc6.weight")),
    "alexnet/one-weight-negated": ("alexnet", one_element("stages.2.conv.weight")),
    "vgg11_bn/conv-weight-scaled-1.01": ("vgg11_bn", scaled("stages.3.conv2.weight")),
    "vgg11_bn/one-weight-negated": ("vgg11_bn", one_element("stages.0.conv1.weight")),
    "vgg11_bn/stage-convs-swapped": ("vgg11_bn", swapped("stages.4.conv1.weight", "stages.4.conv2.weight")),
    "vgg11_bn/batchnorm-unmapped": ("vgg11_bn", norm_identity("stages.2.bn1")),
}


def _reference(source: str) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """torchvision's ``source`` made non-trivial as the parity tests make theirs (larger FC weights for AlexNet, BN
    statistics and affine parameters for VGG): its converted weights, an input, its logits."""
    torch.manual_seed(0)
    tv = getattr(torchvision.models, source)(weights=None)
    for m in tv.modules():
        if isinstance(m, nn.Linear) and source == "alexnet":
            nn.init.normal_(m.weight, 0.0, 0.05)
    randomise_norms(tv)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return get_converter(source).fn(tv.state_dict()), x, tv.eval()(x)


@pytest.fixture(scope="module")
def alexnet_reference() -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    return _reference("alexnet")


@pytest.fixture(scope="module")
def vgg11_bn_reference() -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    return _reference("vgg11_bn")


@pytest.mark.parametrize(("source", "perturb"), list(PERTURBATIONS.values()), ids=list(PERTURBATIONS))
def test_perturbed_conversion_fails_parity(source: str, perturb: Perturbation, request: pytest.FixtureRequest) -> None:
    state, x, expected = request.getfixturevalue(f"{source}_reference")  # built once per module, for each source
    conv = get_converter(source)

    def build() -> nn.Module:
        with torch.device("meta"):  # every buffer is in the state dict: assign replaces them all
            return create_model(conv.target, **conv.target_kwargs)

    check_perturbation(build, state, perturb, x, expected)


def test_alexnet_ablation_options() -> None:
    """§3.3 / §3.4 / §4.2 switched off: lrn=False drops the LRN layers (no parameters), dropout=0 makes training
    deterministic, overlap=False pools 2x2/2; at 227 that gives pool5 the same 6x6 maps (the paper's "equivalent
    dimensions"), so the counts are unchanged, while at 32 with the CIFAR stem pool5 is 4x4 instead of 3x3."""
    with torch.device("meta"):
        assert count_params(create_model("alexnet", lrn=False)) == 60_965_224
        flat = create_model("alexnet", overlap=False)
        assert count_params(flat) == 60_965_224 and flat.grid == 6
        pools = [m for m in flat.modules() if isinstance(m, nn.MaxPool2d)]
        assert [(p.kernel_size, p.stride) for p in pools] == [(2, 2)] * 3
        paper = [m for m in create_model("alexnet").modules() if isinstance(m, nn.MaxPool2d)]
        assert [(p.kernel_size, p.stride) for p in paper] == [(3, 2)] * 3
        cifar = dict(stem="cifar", img_size=32, num_classes=10)
        overlap, non = create_model("alexnet", **cifar), create_model("alexnet", overlap=False, **cifar)
        assert (overlap.grid, non.grid) == (3, 4)
        assert count_params(non) - count_params(overlap) == 256 * (4 * 4 - 3 * 3) * 4096
    no_lrn = create_model("alexnet", lrn=False, img_size=67)
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in no_lrn.modules())
    torch.manual_seed(0)
    model = create_model("alexnet", dropout=0.0, stem="cifar", img_size=32, num_classes=10).train()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        assert model.stages(x).shape[-1] == 3
        assert create_model("alexnet", overlap=False, stem="cifar", img_size=32)(x).shape == (2, 1000)


@pytest.mark.parametrize("kwargs, words", [
    ({"overlap": "yes"}, "overlap must be true or false"),
    ({"lrn": 1}, "lrn must be true or false"),
    ({"dropout": 1.5}, "dropout must be in [0, 1)"),
    ({"widths": (96, 256, 384, 256)}, "widths must give the 5 conv layers"),
])
def test_alexnet_bad_ablation_options_are_config_errors(kwargs: dict, words: str) -> None:
    with torch.device("meta"), pytest.raises(ConfigError, match=re.escape(words)):
        create_model("alexnet", **kwargs)


def test_vgg_small_filter_arithmetic() -> None:
    """§2.3: with C channels in and out, three 3x3 convs hold 27 C^2 weights and one 7x7 conv 49 C^2 (two 3x3: 18 C^2,
    one 5x5: 25 C^2), counted on the layers as built; the resolution is kept either way (padding k // 2)."""
    from milestones.models.vgg import VGGStage

    c = 64
    for kernels, per_c2 in (((3, 3, 3), 27), ((7,), 49), ((3, 3), 18), ((5,), 25)):
        stage = VGGStage(c, c, kernels, batch_norm=False, lrn=False)
        weights = sum(m.weight.numel() for m in stage.modules() if isinstance(m, nn.Conv2d))
        assert weights == per_c2 * c * c, kernels
        assert count_params(stage) == per_c2 * c * c + len(kernels) * c  # + one bias per output map and layer
        assert stage(torch.zeros(1, c, 8, 8)).shape == (1, c, 4, 4)  # convs keep 8x8, the pool halves it


def test_vgg_kernels_option() -> None:
    """kernels=((5,),) * 5 on B is §4.1's shallow net: five 5x5 convs, the same 224 -> 7x7 maps and FC layers."""
    with torch.device("meta"):
        b, shallow = create_model("vgg13"), create_model("vgg13", kernels=((5,),) * 5)
    convs = [m for m in shallow.modules() if isinstance(m, nn.Conv2d)]
    assert [m.kernel_size for m in convs] == [(5, 5)] * 5
    widths, c_in, delta = (64, 128, 256, 512, 512), 3, 0
    for w in widths:  # B: 3x3 (c_in -> w) + 3x3 (w -> w) + 2 biases; shallow: 5x5 (c_in -> w) + 1 bias
        delta += 25 * c_in * w + w - (9 * c_in * w + 9 * w * w + 2 * w)
        c_in = w
    assert count_params(shallow) - count_params(b) == delta
    torch.manual_seed(0)
    small = create_model("vgg13_bn", kernels=((7,),) * 5, widths=(8, 8, 16, 16, 16), img_size=32, num_classes=10)
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("kwargs, words", [
    ({"kernels": ((4,),) * 5}, "kernel sizes must be odd"),
    ({"kernels": ((3,),) * 4}, "kernels must list at least one kernel size for each of the 5 stages"),
    ({"kernels": ((3,), (3,), (), (3,), (3,))}, "kernels must list at least one"),
])
def test_vgg_bad_kernels_are_config_errors(kwargs: dict, words: str) -> None:
    with torch.device("meta"), pytest.raises(ConfigError, match=re.escape(words)):
        create_model("vgg13", **kwargs)
