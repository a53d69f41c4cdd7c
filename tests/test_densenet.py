"""DenseNet family: torchvision parity, the paper's CIFAR nets, dense connectivity, memory-efficient checkpointing.

References independent of our code: torchvision's implementation with the same weights (logits, parameter counts,
MACs), PAPERS.md's 7,978,856 for DenseNet-121, closed-form recounts of the CIFAR nets from §3/§4.1 and Table 2's
depth formula, and the plain (non-checkpointed) computation for the memory-efficient one.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from parity import (
    Perturbation,
    assert_logits_close,
    check_perturbation,
    norm_identity,
    one_element,
    randomise_norms,
    scaled,
    swapped,
)
from torch import nn

from milestones import count_macs, count_params
from milestones.config import build_config
from milestones.errors import CheckpointError, ConfigError
from milestones.models import create_model, get_converter, get_spec, list_models

IMAGENET = ["densenet121", "densenet169", "densenet201", "densenet161"]


def _meta(name: str, **kwargs: object) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


def _tv_meta(name: str) -> nn.Module:
    with torch.device("meta"):
        return torchvision.models.get_model(name, weights=None)


def _legacy_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's released weight files spell a dense layer's ``norm1`` as ``norm.1`` (pre-0.4 module names)."""
    out = {}
    for key, value in state.items():
        for part in ("norm1", "norm2", "conv1", "conv2"):
            key = key.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.") if ".denselayer" in key else key
        out[key] = value
    return out


@pytest.fixture(scope="module")
def densenet121_reference() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """A torchvision densenet121 with non-trivial BN (as trained weights have): its state dict, our conversion of it,
    an input and its eval logits, at 64x64 (the final 2x2 map still averages several positions)."""
    torch.manual_seed(0)
    tv = randomise_norms(torchvision.models.densenet121(weights=None)).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = tv(x)
    state = tv.state_dict()
    return state, get_converter("densenet121").fn(state), x, expected


@pytest.mark.parametrize("spelling", ["current", "legacy"])
def test_torchvision_parity(densenet121_reference, spelling: str) -> None:
    """Converted torchvision weights (either key spelling) give torchvision's eval logits."""
    state, _, x, expected = densenet121_reference
    if spelling == "legacy":
        state = _legacy_keys(state)
        assert any(".norm.1." in k for k in state)
    model = create_model("densenet121")
    model.load_state_dict(get_converter("densenet121").fn(state), strict=True)
    with torch.no_grad():
        assert_logits_close(model.eval()(x), expected)


@pytest.mark.parametrize("name", IMAGENET)
def test_converted_state_dict_loads_strictly_and_counts_match(name: str) -> None:
    """Every key and shape of torchvision's state dict maps onto ours; params and MACs equal torchvision's."""
    conv = get_converter(name)
    assert conv.target == name and conv.target_kwargs == {}
    tv, ours = _tv_meta(name), _meta(name)
    result = ours.load_state_dict(conv.fn(tv.state_dict()), strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert count_params(ours) == count_params(tv) == get_spec(name).counts.params
    if name == "densenet121":  # the same blocks repeat in the others; one MAC count keeps the test fast
        assert count_macs(ours, (3, 224, 224)) == count_macs(tv, (3, 224, 224)) == get_spec(name).counts.macs
        assert count_params(ours) == 7_978_856  # PAPERS.md §1.8


def test_converter_rejects_foreign_keys() -> None:
    with pytest.raises(CheckpointError, match="not a torchvision DenseNet"):
        get_converter("densenet121").fn({"conv1.weight": torch.zeros(1)})


# Converter mistakes the parity check must catch (tests/parity.py): a bottleneck conv scaled or one of its weights
# negated, two layers' 3x3 convs exchanged, a bottleneck BN or a transition BN left unmapped.
PERTURBATIONS = {
    "conv-weight-scaled-1.01": scaled("stages.block2.layers.3.conv1.weight"),
    "one-weight-negated": one_element("stages.block3.layers.0.conv2.weight"),
    "layers-swapped": swapped("stages.block1.layers.0.conv2.weight", "stages.block1.layers.1.conv2.weight"),
    "layer-norm-unmapped": norm_identity("stages.block2.layers.0.norm1"),
    "transition-norm-unmapped": norm_identity("stages.transition1.norm"),
}


@pytest.mark.parametrize("perturb", list(PERTURBATIONS.values()), ids=list(PERTURBATIONS))
def test_perturbed_conversion_fails_parity(densenet121_reference, perturb: Perturbation) -> None:
    _, state, x, expected = densenet121_reference
    check_perturbation(lambda: create_model("densenet121"), state, perturb, x, expected)


def _cifar_params(depth: int, k: int, *, bc: bool, classes: int = 10) -> int:
    """Closed-form count from §3/§4.1: (depth - 4) / 3 layers per block (halved for BC: two convs each), a bare 3x3
    stem of 16 (2k for BC) channels, BN (2 per channel) before every conv and at the end, no conv biases, floor(theta
    * C) transition outputs with theta = 0.5 for BC, 1 otherwise; a linear layer with bias."""
    n = (depth - 4) // 3 // (2 if bc else 1)
    c = 2 * k if bc else 16
    total = 3 * c * 9
    for block in range(3):
        for _ in range(n):
            if bc:
                total += 2 * c + c * 4 * k + 2 * 4 * k + 4 * k * k * 9
            else:
                total += 2 * c + c * k * 9
            c += k
        if block < 2:
            out = c // 2 if bc else c
            total += 2 * c + c * out
            c = out
    return total + 2 * c + c * classes + classes


@pytest.mark.parametrize(("name", "depth", "bc"), [("densenet40", 40, False), ("densenet_bc100", 100, True)])
def test_cifar_counts_match_the_closed_form_and_table2(name: str, depth: int, bc: bool) -> None:
    spec = get_spec(name)
    model = _meta(name)
    assert count_params(model) == spec.counts.params == _cifar_params(depth, 12, bc=bc)
    assert spec.counts.params / 1e6 == pytest.approx(spec.reported.params_m, abs=0.05)  # Table 2: 1.0M, 0.8M
    assert spec.input_size == (3, 32, 32) and spec.reported.dataset == "CIFAR-10" and model.head.out_features == 10
    assert (spec.reported.top1_err, spec.reported.params_m) == {"densenet40": (5.24, 1.0),
                                                              "densenet_bc100": (4.51, 0.8)}[name]


@pytest.mark.parametrize("name", list_models(family="densenet"))
def test_weighted_layer_count_is_the_depth_in_the_name(name: str) -> None:
    """L counts the convs and the linear layer (the stem's, two per bottleneck layer, the transitions')."""
    layers = [m for m in _meta(name).modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(layers) == int(name.removeprefix("densenet").removeprefix("_bc"))


@pytest.mark.parametrize(
    ("name", "channels"),
    [
        # densenet40: 16 + 12*12 = 160 kept by the transition, 160 + 144 = 304, 304 + 144 = 448.
        ("densenet40", [(16, 160), (160, 160), (160, 304), (304, 304), (304, 448)]),
        # BC-100: 24 + 16*12 = 216 -> 108, 108 + 192 = 300 -> 150, 150 + 192 = 342.
        ("densenet_bc100", [(24, 216), (216, 108), (108, 300), (300, 150), (150, 342)]),
        # DenseNet-121: 64 + 6*32 = 256 -> 128, +12*32 = 512 -> 256, +24*32 = 1024 -> 512, +16*32 = 1024.
        ("densenet121", [(64, 256), (256, 128), (128, 512), (512, 256), (256, 1024), (1024, 512), (512, 1024)]),
    ],
)
def test_growth_and_compression(name: str, channels: list[tuple[int, int]]) -> None:
    """Each block adds depth * k channels; a transition keeps floor(theta * C) of them (theta = 1 for densenet40)."""
    model = _meta(name)
    seen = []
    for stage in model.stages:
        if hasattr(stage, "layers"):
            first = stage.layers[0].norm1.num_features
            assert [layer.norm1.num_features for layer in stage.layers] == [
                first + i * get_spec(name).config.growth_rate for i in range(len(stage.layers))]
            seen.append((first, stage.out_ch))
        else:
            seen.append((stage.conv.in_channels, stage.conv.out_channels))
    assert seen == channels
    assert model.num_features == channels[-1][1] == model.norm.num_features


def test_every_layer_reads_every_earlier_output() -> None:
    """Eq. 2: changing the block input or any layer's output changes every later layer (dense connectivity)."""
    torch.manual_seed(0)
    block = create_model("densenet_bc100").stages.block1.eval()
    x = torch.randn(1, 24, 8, 8)
    with torch.no_grad():
        feats = [x]
        for layer in block.layers:
            feats.append(layer(feats))
        for j in range(3):  # perturb the output of layer j - 1 (j = 0: the block input); layers j.. must all change
            bumped = list(feats[: j + 1])
            bumped[j] = bumped[j] + 1.0
            for i in range(j, 5):
                assert not torch.allclose(block.layers[i](bumped + feats[j + 1 : i + 1]), feats[i + 1])


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(3)  # the same dropout masks for both models
    out = model.train()(x)
    nn.functional.cross_entropy(out, y).backward()
    return out, {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("drop_rate", [0.0, 0.2])
def test_memory_efficient_gives_the_same_outputs_gradients_and_statistics(drop_rate: float) -> None:
    """Checkpointing changes what is stored, not what is computed: logits, every gradient, and the BN running
    statistics after the step (the recomputation must not update them a second time) equal the plain net's."""
    torch.manual_seed(0)
    plain = create_model("densenet_bc100", drop_rate=drop_rate)
    efficient = create_model("densenet_bc100", drop_rate=drop_rate, memory_efficient=True)
    efficient.load_state_dict(plain.state_dict())
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    out_p, grads_p = _train_step(plain, x, y)
    out_e, grads_e = _train_step(efficient, x, y)
    assert_logits_close(out_e, out_p)
    for name, grad in grads_p.items():
        assert_logits_close(grads_e[name], grad)
    for (name, a), (_, b) in zip(plain.state_dict().items(), efficient.state_dict().items(), strict=True):
        if a.is_floating_point():
            assert_logits_close(b, a)
        else:
            assert torch.equal(a, b), name  # num_batches_tracked: one update per forward, not two


def _saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd keeps for the backward pass (a tensor saved by several ops, such as
    a checkpoint's inputs that are also the block's outputs, counts once)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.train()(x)
    return sum(storages.values())


def test_memory_efficient_stores_less_for_backward() -> None:
    """The concatenations, first BN-ReLUs and bottleneck convs are not stored: DenseNet-BC-100 at 32x32 keeps under
    half the bytes (0.37x when written; 0.21x for densenet40, whose whole layer is checkpointed)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    plain = _saved_bytes(create_model("densenet_bc100"), x)
    efficient = _saved_bytes(create_model("densenet_bc100", memory_efficient=True), x)
    assert efficient < 0.5 * plain


def test_full_recipe_is_the_papers_schedule() -> None:
    """§4.2: Nesterov SGD, momentum 0.9, wd 1e-4, batch 64, 300 epochs, lr 0.1 / 10 at 50% and 75% of training."""
    cfg = build_config(config_file="cifar10_densenet_bc100_full")
    assert cfg.model.name == "densenet_bc100"
    assert (cfg.optim.name, cfg.optim.nesterov, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (
        "sgd", True, 0.1, 0.9, 1e-4)
    assert cfg.data.batch_size == 64 and cfg.train.epochs == 300 and cfg.train.label_smoothing == 0
    assert cfg.schedule.name == "step" and cfg.schedule.gamma == 0.1
    assert [m / cfg.train.epochs for m in cfg.schedule.milestones] == [0.5, 0.75]
    assert cfg.data.crop_padding == 4 and cfg.data.flip  # C10+
    short = build_config(config_file="cifar10_densenet_bc100")
    assert short.model.name == "densenet_bc100" and short.data.batch_size == 64 and short.optim.nesterov


def test_invalid_options_raise() -> None:
    with pytest.raises(ConfigError, match="compression"):
        _meta("densenet_bc100", compression=0.0)
    with pytest.raises(ConfigError, match="drop_rate"):
        _meta("densenet40", drop_rate=1.0)
    with pytest.raises(ConfigError, match="stem"):
        _meta("densenet121", stem="tiny")
