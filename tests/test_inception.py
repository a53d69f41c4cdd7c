"""Inception v3 against torchvision (same weights, same logits; its aux head too), and BN-Inception (v2) against a
count and a channel bookkeeping done here from the BN paper's table, independently of the model code."""

from __future__ import annotations

import pytest
import torch
import torchvision
from parity import (
    assert_logits_close,
    check_perturbation,
    norm_identity,
    randomise_norms,
    relative_error,
    scaled,
    swapped,
)

from milestones.config import build_config
from milestones.errors import CheckpointError, ConfigError
from milestones.models import create_model, get_converter
from milestones.models.inception import BN_INCEPTION, convert_torchvision_inception_v3


def _tv_v3(aux: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    return randomise_norms(torchvision.models.inception_v3(weights=None, aux_logits=aux, init_weights=True)).eval()


@pytest.fixture(scope="module")
def v3_pair() -> tuple[torch.nn.Module, dict, torch.Tensor, torch.Tensor]:
    """torchvision's net (randomised BN), its converted state dict, a 75x75 batch (the smallest input), its logits."""
    tv = _tv_v3(aux=False)
    state = convert_torchvision_inception_v3(tv.state_dict())
    x = torch.randn(2, 3, 75, 75, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = tv(x)
    assert relative_error(expected[0], expected[1]) > 0.1  # the logits depend on the input
    return tv, state, x, expected


def test_v3_converted_weights_give_torchvisions_logits(v3_pair) -> None:
    _, state, x, expected = v3_pair
    ours = create_model("inception_v3")
    ours.load_state_dict(state, strict=True)
    with torch.no_grad():
        assert_logits_close(ours.eval()(x), expected)
    assert get_converter("inception_v3").fn is convert_torchvision_inception_v3


@pytest.mark.parametrize("perturb", [
    scaled("stages.Mixed_6b.branch7x7_2.conv.weight"),
    norm_identity("stages.Mixed_7c.branch_pool.bn"),
    swapped("stages.Mixed_5b.branch3x3dbl_2.conv.weight", "stages.Mixed_5c.branch3x3dbl_2.conv.weight"),
    swapped("stages.Mixed_7b.branch3x3_2a.bn.weight", "stages.Mixed_7b.branch3x3_2b.bn.weight"),
], ids=["scaled-1x7", "unmapped-bn", "swapped-modules", "swapped-1x3-3x1-bn"])
def test_v3_parity_catches_converter_mistakes(v3_pair, perturb) -> None:
    _, state, x, expected = v3_pair
    check_perturbation(lambda: create_model("inception_v3"), state, perturb, x, expected)


def test_v3_aux_head_matches_torchvision_at_299() -> None:
    """In train mode (where torchvision returns its aux logits) with dropout off, so BN uses batch statistics."""
    tv = _tv_v3(aux=True).train()
    tv.dropout.p = 0.0
    ours = create_model("inception_v3", aux_logits=True).train()
    ours.drop.p = 0.0
    ours.load_state_dict(convert_torchvision_inception_v3(tv.state_dict(), keep_aux=True), strict=True)
    x = torch.randn(2, 3, 299, 299, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = tv(x)
        logits, aux = ours.forward_with_aux(x)
    assert len(aux) == 1
    assert_logits_close(logits, ref.logits)
    assert_logits_close(aux[0], ref.aux_logits)
    with torch.no_grad():  # forward ignores the aux head: same logits, in eval mode too
        assert_logits_close(ours.eval()(x[:1]), tv.eval()(x[:1]))


def test_v3_counts_with_and_without_aux_equal_torchvisions() -> None:
    with torch.device("meta"):
        for aux in (False, True):
            ours = create_model("inception_v3", aux_logits=aux)
            theirs = torchvision.models.inception_v3(weights=None, aux_logits=aux, init_weights=False)
            n = sum(p.numel() for p in ours.parameters())
            assert n == sum(p.numel() for p in theirs.parameters()) == (27_161_264 if aux else 23_834_568)


def test_v3_input_limits_and_aux_errors() -> None:
    model = create_model("inception_v3", num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 75, 75)).shape == (1, 5)
        with pytest.raises(RuntimeError):  # 74 leaves no grid after Mixed_7a
            model(torch.randn(1, 3, 74, 74))
        with pytest.raises(ConfigError, match="aux_logits=True"):
            model.forward_with_aux(torch.randn(1, 3, 75, 75))
        aux_model = create_model("inception_v3", aux_logits=True, num_classes=5).eval()
        with pytest.raises(ConfigError, match="299x299"):
            aux_model.forward_with_aux(torch.randn(1, 3, 75, 75))
    with pytest.raises(CheckpointError, match="not a torchvision inception_v3"):
        convert_torchvision_inception_v3({"features.0.weight": torch.zeros(1)})
    with pytest.raises(ConfigError, match="stem"):
        create_model("inception_v3", stem="tiny")


def test_v3_cifar_stem_grids() -> None:
    """stem="cifar": Mixed_5 at 15x15, Mixed_6 at 7x7, Mixed_7 at 3x3 for a 32x32 image."""
    model = create_model("inception_v3", stem="cifar", num_classes=10).eval()
    grids = {}
    hooks = [model.stages.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: grids.__setitem__(n, tuple(o.shape[1:]))) for n in ("Mixed_5d", "Mixed_6e", "Mixed_7c")]
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert grids == {"Mixed_5d": (288, 15, 15), "Mixed_6e": (768, 7, 7), "Mixed_7c": (2048, 3, 3)}


def test_v3_recipe_smooths_labels_as_the_paper() -> None:
    cfg = build_config(config_file="cifar10_inception_v3")
    assert cfg.model.name == "inception_v3" and cfg.train.label_smoothing == 0.1  # §7: epsilon = 0.1


def _bn_inception_params(num_classes: int = 1000) -> int:
    """Parameters of BN-Inception counted from the table by hand: a bias-free k x k conv has k*k*in*out weights and
    its batch norm 2*out; the classifier (1024 + 1) * classes."""

    def conv(k: int, cin: int, cout: int) -> int:
        return k * k * cin * cout + 2 * cout

    total = conv(7, 3, 64) + conv(1, 64, 64) + conv(3, 64, 192)
    cin = 192
    for _, c1, r3, c3, rd, d, _, proj, stride in BN_INCEPTION:
        total += (conv(1, cin, c1) if c1 else 0) + conv(1, cin, r3) + conv(3, r3, c3)
        total += conv(1, cin, rd) + conv(3, rd, d) + conv(3, d, d) + (conv(1, cin, proj) if stride == 1 else 0)
        cin = c1 + c3 + d + (proj if stride == 1 else cin)
    assert cin == 1024
    return total + (cin + 1) * num_classes


def test_v2_params_equal_a_recount_from_the_table() -> None:
    with torch.device("meta"):
        model = create_model("inception_v2")
    assert sum(p.numel() for p in model.parameters()) == _bn_inception_params() == 11_285_224


def test_v2_channels_and_grids_follow_the_table() -> None:
    """Outputs at 224: 3b 320 at 28x28, 3c 576 at 14x14, 4c-4d 608 (the table's output column says 576), 4e 1056 at
    7x7 (it says 1024), 5b 1024."""
    model = create_model("inception_v2", num_classes=10).eval()
    shapes = {}
    for name, block in model.stages.named_children():
        block.register_forward_hook(lambda m, i, o, n=name: shapes.__setitem__(n, tuple(o.shape[1:])))
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    assert shapes["3b"] == (320, 28, 28) and shapes["3c"] == (576, 14, 14)
    assert shapes["4c"] == shapes["4d"] == (608, 14, 14) and shapes["4e"] == (1056, 7, 7)
    assert shapes["5b"] == (1024, 7, 7)
    with torch.device("meta"):
        small = create_model("inception_v2", stem="cifar16", num_classes=10)
    assert sum(p.numel() for p in small.parameters()) == _bn_inception_params(10) - (7 * 7 - 3 * 3) * 3 * 64
