"""LeNet-5 as published: the paper's parameter count, connection table, squashing function, RBF and MAP loss."""

from __future__ import annotations

import math

import pytest
import torch
from parity import assert_logits_close

from milestones import count_macs, count_params, create_model
from milestones.models import get_spec
from milestones.models.lenet import C3_TABLE, digit_prototypes, squash
from milestones.train.losses import lenet_map_loss

# Paper Table I, transcribed independently of the model file: X marks which S2 map (row) feeds which C3 map (column).
TABLE_I = """
X . . . X X X . . X X X X . X X
X X . . . X X X . . X X X X . X
X X X . . . X X X . . X . X X X
. X X X . . X X X X . . X . X X
. . X X X . . X X X X . X X . X
. . . X X X . . X X X X . X X X
"""


def test_paper_parameter_count_per_layer() -> None:
    """C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164 = 60,000 (paper §II-B); the RBF is not trainable."""
    model = create_model("lenet5")
    per_layer = {name: count_params(getattr(model, name)) for name in ("c1", "s2", "c3", "s4", "c5", "f6", "head")}
    assert per_layer == {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48120, "f6": 10164, "head": 0}
    assert count_params(model) == 60_000
    assert not any(p.requires_grad for p in model.head.parameters())


def test_macs_closed_form() -> None:
    """The counter's multiply-adds, layer by layer from the shapes: C1 28x28x6x25, C3 (dense) 10x10x16x6x25, C5 120x400,
    F6 84x120; lenet5_modern adds its 84x10 linear output. Subsampling and the RBF distances are not counted."""
    dense = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 6 * 25 + 120 * 400 + 84 * 120
    assert dense == 415_680
    for name, expected in (("lenet5", dense), ("lenet5_modern", dense + 84 * 10)):
        with torch.device("meta"):
            model = create_model(name)
        assert count_macs(model, (1, 32, 32)) == expected == get_spec(name).counts.macs, name


def test_c3_connections_are_table_i() -> None:
    """The dense kernel C3 convolves with is zero exactly where Table I has no connection."""
    model = create_model("lenet5")
    dense = model.c3.dense_weight().detach()  # (16, 6, 5, 5)
    connected = dense.abs().sum(dim=(2, 3)) > 0  # (16, 6)
    rows = [line.split() for line in TABLE_I.strip().splitlines()]
    expected = torch.tensor([[rows[s2][c3] == "X" for s2 in range(6)] for c3 in range(16)])
    assert torch.equal(connected, expected)
    assert [tuple(i for i in range(6) if expected[c, i]) for c in range(16)] == list(C3_TABLE)


def test_c3_gradients_stay_sparse() -> None:
    """Training cannot create connections the paper does not have: absent kernels get no parameter at all."""
    model = create_model("lenet5")
    model(torch.randn(4, 1, 32, 32)).sum().backward()
    assert model.c3.weight.grad.shape == (60, 5, 5)
    assert model.c3.weight.grad.abs().sum() > 0


def test_squash_is_scaled_tanh() -> None:
    """f(a) = 1.7159 tanh(2a/3): f(+-1) = +-1 and the maximum of |f''| is at a = +-1 (paper Appendix A)."""
    a = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    assert torch.allclose(squash(a), torch.tensor([-1.0, 1.0], dtype=torch.float64), atol=2e-4)
    grid = torch.linspace(0.01, 3, 3000, dtype=torch.float64, requires_grad=True)
    (d1,) = torch.autograd.grad(squash(grid).sum(), grid, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), grid)
    assert grid[d2.abs().argmax()].item() == pytest.approx(math.atanh(1 / math.sqrt(3)) * 1.5, abs=2e-3)


def test_rbf_output_is_negative_squared_distance() -> None:
    model = create_model("lenet5").eval()
    x = torch.randn(3, 1, 32, 32)
    f6 = model.forward_features(x).double()
    protos = digit_prototypes(10).double()
    expected = -((f6[:, None, :] - protos[None]) ** 2).sum(-1)
    assert_logits_close(model(x).double(), expected)
    assert set(protos.unique().tolist()) == {-1.0, 1.0} and protos.shape == (10, 84)
    assert len({tuple(p.tolist()) for p in protos}) == 10


def test_map_loss_matches_paper_formula() -> None:
    """E = y_D + log(e^-j + sum_i e^-y_i) with y the RBF penalties (paper eq. 9), recomputed in float64."""
    torch.manual_seed(0)
    y = torch.rand(5, 10, dtype=torch.float64) * 20
    target = torch.randint(0, 10, (5,))
    j = 1.5
    expected = (y[torch.arange(5), target] + torch.log(math.exp(-j) + torch.exp(-y).sum(1))).mean()
    assert lenet_map_loss(-y, target, j).item() == pytest.approx(expected.item(), rel=1e-12)


def test_modern_variant_is_dense_relu_maxpool() -> None:
    model = create_model("lenet5_modern")
    assert model.c3.weight.shape == (16, 6, 5, 5)
    assert isinstance(model.s2, torch.nn.MaxPool2d) and isinstance(model.head, torch.nn.Linear)
    assert count_params(model) == 156 + 2416 + 48120 + 10164 + 850


def test_modern_pools_before_relu_with_the_same_outputs_and_gradients() -> None:
    """lenet5_modern max-pools before its ReLU (cheaper); ReLU is monotonic, so this equals the textbook order
    conv -> ReLU -> pool: outputs and every parameter's gradient, recomputed in float64 in that order."""
    torch.manual_seed(0)
    model = create_model("lenet5_modern").double()
    x = torch.randn(8, 1, 32, 32, dtype=torch.float64)
    model(x).square().sum().backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    relu, pool = torch.relu, torch.nn.functional.max_pool2d
    h = pool(relu(model.c1(x)), 2)
    h = pool(relu(model.c3(h)), 2)
    textbook = model.head(relu(model.f6(relu(model.c5(h)).flatten(1))))
    assert torch.allclose(textbook, model(x), rtol=1e-12, atol=0)
    textbook.square().sum().backward()
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, ours[n], rtol=1e-10, atol=1e-12), n


def test_wrong_input_size_is_explained() -> None:
    with pytest.raises(ValueError, match="32x32"):
        create_model("lenet5")(torch.randn(1, 1, 28, 28))
