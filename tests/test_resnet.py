"""ResNet family: torchvision parity, shortcut options, plain twins, v1/v1.5 strides, zero-init, paper numbers.

References are independent of our code: torchvision's implementation (same weights), PAPERS.md §1.5/§2.5 counts, the
paper's Table 1 FLOPs, and closed-form recounts.
"""

from __future__ import annotations

import functools

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
    scaled,
    swapped,
)
from torch import nn
from torch.nn import functional as F

from milestones import count_macs, count_params
from milestones.errors import CheckpointError, ConfigError
from milestones.models import create_model, get_converter, get_spec, list_models
from milestones.models.resnet import BasicBlock, Bottleneck, ZeroPadShortcut

CIFAR_N = {"20": 3, "32": 5, "44": 7, "56": 9, "110": 18, "1202": 200}
# PAPERS.md §1.5: exact counts with option A (also the plain nets) and option B.
CIFAR_A = {"20": 269_722, "32": 464_154, "44": 658_586, "56": 853_018, "110": 1_727_962, "1202": 19_421_274}
CIFAR_B = {"20": 272_474, "32": 466_906, "44": 661_338, "56": 855_770, "110": 1_730_714, "1202": 19_424_026}
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}
TABLE1_GFLOPS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}


def _meta(name: str, **kwargs: object) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


@functools.cache
def _meta_default(name: str) -> nn.Module:
    """The default build on the meta device, shared by read-only tests (building ResNet-1202 takes seconds)."""
    return _meta(name)


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so a mis-mapped BN layer changes the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _converted(name: str, tv: nn.Module, **extra: object) -> nn.Module:
    conv = get_converter(name)
    ours = create_model(conv.target, **{**conv.target_kwargs, **extra})
    ours.load_state_dict(conv.fn(tv.state_dict()), strict=True)
    return ours.eval()


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_parity(name: str) -> None:
    """Converted torchvision weights give the same eval logits (v1.5, as the converter records)."""
    torch.manual_seed(0)
    tv = torchvision.models.get_model(name, weights=None)
    _randomise_bn(tv)
    tv.eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = tv(x)
        assert_logits_close(_converted(name, tv)(x), expected)
        if name == "resnet50":  # the same weights with the paper's v1 strides compute something else
            assert_logits_differ(_converted(name, tv, version="v1")(x), expected)


def test_cifar_stem_parity_with_torchvision() -> None:
    """stem="cifar" on resnet18 is torchvision's resnet18 with a 3x3/1 conv1 and no max-pool (kuangliu layout)."""
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(num_classes=10)
    tv.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
    tv.maxpool = nn.Identity()
    _randomise_bn(tv, seed=1)
    tv.eval()
    assert count_params(tv) == 11_173_962  # PAPERS.md §2.5
    ours = _converted("resnet18", tv, stem="cifar", num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert_logits_close(ours(x), tv(x))


@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_converted_state_dict_loads_strictly(name: str) -> None:
    """Every key and shape of torchvision's state dict maps onto ours (meta device: no memory, no init cost)."""
    conv = get_converter(name)
    assert conv.target == name and conv.target_kwargs == {"version": "v1.5"}  # v1 has the same shapes, other strides
    with torch.device("meta"):
        tv = torchvision.models.get_model(name, weights=None)
        ours = create_model(conv.target, **conv.target_kwargs)
    result = ours.load_state_dict(conv.fn(tv.state_dict()), strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_converter_rejects_foreign_keys() -> None:
    with pytest.raises(CheckpointError):
        get_converter("resnet18").fn({"features.0.weight": torch.zeros(1)})


@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_imagenet_params_match_torchvision(name: str) -> None:
    """Params equal torchvision's build and PAPERS.md; v1 and v1.5 have the same layers."""
    with torch.device("meta"):
        tv = count_params(torchvision.models.get_model(name, weights=None))
    ours_v1, ours_v15 = count_params(_meta_default(name)), count_params(_meta(name, version="v1.5"))
    assert ours_v1 == ours_v15 == tv == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", list(TABLE1_GFLOPS))
def test_macs_v1_match_table1_and_v1_5_match_torchvision(name: str) -> None:
    """v1 lands within 2% of Table 1's FLOPs (multiply-adds); v1.5 counts exactly what torchvision's net counts."""
    v1 = count_macs(_meta_default(name), (3, 224, 224)) / 1e9
    assert v1 == pytest.approx(TABLE1_GFLOPS[name], rel=0.02)
    if name in ("resnet18", "resnet50"):  # the deeper nets repeat the same blocks; keep the suite fast
        with torch.device("meta"):
            tv = torchvision.models.get_model(name, weights=None)
        assert count_macs(_meta(name, version="v1.5"), (3, 224, 224)) == count_macs(tv, (3, 224, 224))


def test_v1_5_resnet50_macs_leave_table1() -> None:
    """The v1.5 stride placement costs ~8% more than the paper's 3.8 G (PAPERS.md: 4.089)."""
    gmacs = count_macs(_meta("resnet50", version="v1.5"), (3, 224, 224)) / 1e9
    assert gmacs == pytest.approx(4.089, abs=5e-4)
    assert gmacs > 1.05 * TABLE1_GFLOPS["resnet50"]


def _cifar_params(n: int, classes: int = 10) -> int:
    """Closed-form count of the §4.2 net with option A: 3x3 convs without bias, BN (2 per channel), FC with bias."""
    total = 3 * 16 * 9 + 2 * 16  # stem
    c_in = 16
    for width in (16, 32, 64):
        for _ in range(n):
            total += (c_in * width + width * width) * 9 + 2 * 2 * width
            c_in = width
    return total + 64 * classes + classes


@pytest.mark.parametrize("depth", list(CIFAR_N))
def test_cifar_counts_option_a_b_and_plain(depth: str) -> None:
    n = CIFAR_N[depth]
    resnet, plain = f"resnet{depth}", f"plain{depth}"
    assert count_params(_meta_default(resnet)) == CIFAR_A[depth] == _cifar_params(n)
    # Option B adds two 1x1-conv + BN projections, 16->32 and 32->64.
    assert count_params(_meta(resnet, shortcut="B")) == CIFAR_B[depth] == CIFAR_A[depth] + 16 * 32 + 64 + 32 * 64 + 128
    if plain in list_models():
        assert count_params(_meta_default(plain)) == CIFAR_A[depth]


@pytest.mark.parametrize("name", list_models(family="resnet"))
def test_weighted_layer_count_is_the_depth_in_the_name(name: str) -> None:
    """ResNet-18/34/50/... and the 6n+2 CIFAR nets: convs + FC on the main path, shortcut projections excluded."""
    modules = _meta_default(name).named_modules()
    layers = [n for n, m in modules if isinstance(m, (nn.Conv2d, nn.Linear)) and ".shortcut." not in n]
    assert len(layers) == int(name.removeprefix("resnet").removeprefix("plain"))


def test_cifar_nets_default_to_ten_classes_and_32px() -> None:
    spec = get_spec("resnet56")
    assert spec.input_size == (3, 32, 32) and spec.reported.dataset == "CIFAR-10"
    assert _meta_default("resnet56").head.out_features == 10
    assert _meta("resnet56", num_classes=100).head.out_features == 100
    assert _meta_default("resnet50").head.out_features == 1000


def test_option_a_shortcut_matches_zero_padding_formula() -> None:
    """Option A = every second pixel plus zero channels, as F.pad(x[:, :, ::2, ::2], (0,0,0,0,p,p)) (PAPERS.md §2.5)."""
    x = torch.randn(2, 16, 9, 9)  # odd size: ::2 gives ceil(9/2) = 5, the stride-2 3x3 conv's output size too
    expected = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8))
    assert torch.equal(ZeroPadShortcut(16, 32, 2)(x), expected)
    block = BasicBlock(16, 32, 2, shortcut="A")
    assert block(x).shape == (2, 32, 5, 5)
    assert count_params(block) == (16 * 32 + 32 * 32) * 9 + 4 * 32  # the shortcut adds nothing


def test_cifar_resnet_uses_option_a_everywhere() -> None:
    model = _meta_default("resnet110")
    shortcuts = [b.shortcut for stage in model.stages for b in stage]
    assert sum(isinstance(s, ZeroPadShortcut) for s in shortcuts) == 2
    assert all(isinstance(s, (ZeroPadShortcut, nn.Identity)) for s in shortcuts)


def test_option_b_and_c_projections() -> None:
    """B: projections only where the shape changes (3 in ResNet-34); C: on all 16 blocks (§3.3)."""
    for option, expected in (("B", 3), ("C", 16)):
        model = _meta("resnet34", shortcut=option)
        blocks = [b for stage in model.stages for b in stage]
        assert sum(isinstance(b.shortcut, nn.Sequential) for b in blocks) == expected


def _zero_block_convs(block: nn.Module) -> nn.Module:
    """Zero the residual branch's convs; in eval mode a fresh BN then outputs its beta = 0."""
    with torch.no_grad():
        for name, m in block.named_modules():
            if isinstance(m, nn.Conv2d) and not name.startswith("shortcut"):
                m.weight.zero_()
    return block.eval()


@pytest.mark.parametrize("kind", ["basic", "bottleneck"])
def test_plain_blocks_have_no_shortcut(kind: str) -> None:
    """With the branch zeroed a residual block passes its (non-negative) input through; a plain block outputs 0."""
    cls = BasicBlock if kind == "basic" else Bottleneck
    in_ch = 16 * cls.expansion
    x = torch.rand(2, in_ch, 8, 8)
    residual = _zero_block_convs(cls(in_ch, 16, 1, shortcut="A"))
    plain = _zero_block_convs(cls(in_ch, 16, 1, shortcut=None))
    with torch.no_grad():
        assert torch.equal(residual(x), x)
        assert torch.equal(plain(x), torch.zeros_like(x))


def test_plain_net_has_the_same_layers_without_shortcuts() -> None:
    resnet, plain = _meta_default("resnet56"), _meta_default("plain56")
    assert [b.shortcut for stage in plain.stages for b in stage] == [None] * 27
    # Option A has no parameters or buffers, so the twins' checkpoints have the same keys and shapes.
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in resnet.state_dict().items()}
    with torch.device("meta"):
        assert plain.stages[1][0](torch.empty(1, 16, 32, 32)).shape == (1, 32, 16, 16)


@pytest.mark.parametrize("depth", ["50", "101", "152"])
def test_v1_and_v1_5_stride_placement(depth: str) -> None:
    """First bottleneck of stage 2: v1 strides the first 1x1 (Caffe), v1.5 the 3x3 (torchvision); the shortcut too."""
    v1 = _meta_default(f"resnet{depth}").stages[1][0]
    v15 = _meta(f"resnet{depth}", version="v1.5").stages[1][0]
    assert (v1.conv1.stride, v1.conv2.stride) == ((2, 2), (1, 1))
    assert (v15.conv1.stride, v15.conv2.stride) == ((1, 1), (2, 2))
    assert v1.shortcut.conv.stride == v15.shortcut.conv.stride == (2, 2)
    with torch.device("meta"):
        tv = torchvision.models.get_model(f"resnet{depth}", weights=None).layer2[0]
    assert (tv.conv1.stride, tv.conv2.stride) == (v15.conv1.stride, v15.conv2.stride)


def test_basic_block_nets_ignore_version() -> None:
    v1, v15 = _meta_default("resnet34"), _meta("resnet34", version="v1.5")
    assert [m.stride for m in v1.modules() if isinstance(m, nn.Conv2d)] == [
        m.stride for m in v15.modules() if isinstance(m, nn.Conv2d)
    ]


def test_zero_init_residual() -> None:
    """Every branch's last BN gamma is 0 (Goyal et al.), every other gamma 1; each block then starts as its shortcut."""
    torch.manual_seed(0)
    model = create_model("resnet20", zero_init_residual=True).eval()
    blocks = [b for stage in model.stages for b in stage]
    last = {id(b.bn2.weight) for b in blocks}
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == (0.0 if id(m.weight) in last else 1.0))
            assert torch.all(m.bias == 0)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        stem = model.stem(x)  # (1, 16, 32, 32), non-negative after the ReLU
        assert torch.equal(blocks[1](stem), stem)  # stage 1: identity shortcut
        # The net reduces to stem -> two option-A shortcuts -> pool: 16 -> 32 pads 8 + 8, 32 -> 64 pads 16 + 16.
        expected = F.pad(stem[:, :, ::4, ::4], (0, 0, 0, 0, 24, 24)).mean(dim=(2, 3))
        assert_logits_close(model.forward_features(x), expected)
    default = create_model("resnet20")
    assert all(torch.all(b.bn2.weight == 1) for stage in default.stages for b in stage)
    bottleneck = _meta("resnet50", zero_init_residual=True).stages[0][0]
    assert bottleneck.last_bn is bottleneck.bn3


def test_invalid_options_raise() -> None:
    with pytest.raises(ConfigError):
        create_model("plain20", zero_init_residual=True)
    with pytest.raises(ConfigError):
        _meta("resnet50", version="v2")
    with pytest.raises(ConfigError):
        _meta("resnet20", shortcut="D")


def test_imagenet_net_with_cifar_stem_keeps_32px_resolution() -> None:
    """stem="cifar" skips the 4x stem downsampling: a 32x32 image reaches the last stage at 4x4, not 1x1."""
    model = create_model("resnet18", stem="cifar", num_classes=10).eval()
    assert count_params(model) == 11_173_962
    with torch.no_grad():
        fmap = model.stages(model.stem(torch.randn(1, 3, 32, 32)))
    assert fmap.shape == (1, 512, 4, 4)


# Converter mistakes the parity check must catch (tests/parity.py), on its resnet18 at 96 x 96.
PERTURBATIONS = {
    "conv-weight-scaled-1.01": scaled("stages.2.0.conv1.weight"),
    "one-weight-negated": one_element("stages.2.0.conv1.weight"),
    "block-convs-swapped": swapped("stages.1.1.conv1.weight", "stages.1.1.conv2.weight"),
    "batchnorm-unmapped": norm_identity("stages.1.0.bn2"),
}


@pytest.fixture(scope="module")
def resnet18_reference() -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """The parity test's torchvision resnet18 (non-trivial BN): its converted weights, an input, its logits."""
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None)
    _randomise_bn(tv)
    tv.eval()
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return get_converter("resnet18").fn(tv.state_dict()), x, tv(x)


@pytest.mark.parametrize("perturb", list(PERTURBATIONS.values()), ids=list(PERTURBATIONS))
def test_perturbed_conversion_fails_parity(resnet18_reference, perturb: Perturbation) -> None:
    state, x, expected = resnet18_reference
    conv = get_converter("resnet18")
    check_perturbation(lambda: create_model(conv.target, **conv.target_kwargs), state, perturb, x, expected)


def test_norm_false_removes_every_batch_norm_and_nothing_else() -> None:
    plain = create_model("plain56")
    bare = create_model("plain56", norm=False)
    bn = sum(p.numel() for m in plain.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in bare.modules())
    assert count_params(bare) == count_params(plain) - bn
    convs = [n for n, m in plain.named_modules() if isinstance(m, nn.Conv2d)]
    assert convs == [n for n, m in bare.named_modules() if isinstance(m, nn.Conv2d)]
    with pytest.raises(ConfigError, match="needs norm=True"):
        create_model("resnet20", norm=False, zero_init_residual=True)
