"""convnet4, the four-layer CIFAR-10 net of AlexNet's Fig. 1: counts by hand from cuda-convnet's layers-18pct.cfg,
the ``act`` option (same parameters, another nonlinearity, bad values one ConfigError), the map sizes and the init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from milestones import count_macs, count_params
from milestones.errors import ConfigError
from milestones.models import create_model


def conv(c_in: int, c_out: int, k: int = 5) -> int:
    return c_in * c_out * k * k + c_out


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_counts_are_layers_18pct_by_hand(act: str) -> None:
    model = create_model("convnet4", act=act)
    # conv1 3->32, conv2 32->32, conv3 32->64 (5x5), fc 64*4*4 -> 10
    assert count_params(model) == conv(3, 32) + conv(32, 32) + conv(32, 64) + 64 * 16 * 10 + 10 == 89_578
    # MACs: each conv at its input side (32, 16, 8: padding 2 keeps the side), plus the fc
    macs = 32 * 32 * 32 * 75 + 16 * 16 * 32 * 800 + 8 * 8 * 64 * 800 + 1024 * 10
    assert count_macs(model, (3, 32, 32)) == macs


def test_act_switches_every_nonlinearity_and_nothing_else() -> None:
    torch.manual_seed(0)
    relu = create_model("convnet4")
    torch.manual_seed(0)
    tanh = create_model("convnet4", act="tanh")
    assert [type(m) for m in relu.modules() if isinstance(m, (nn.ReLU, nn.Tanh))] == [nn.ReLU] * 3
    assert [type(m) for m in tanh.modules() if isinstance(m, (nn.ReLU, nn.Tanh))] == [nn.Tanh] * 3
    for (name, a), (_, b) in zip(relu.state_dict().items(), tanh.state_dict().items(), strict=True):
        assert torch.equal(a, b), name  # same seed, same weights: the nonlinearity is the only difference


def test_bad_act_is_one_config_error() -> None:
    with pytest.raises(ConfigError, match="act must be one of 'relu', 'tanh', got 'sigmoid'"):
        create_model("convnet4", act="sigmoid")


def test_maps_are_16_8_4_as_cuda_convnet_pools_them() -> None:
    model = create_model("convnet4")
    x = torch.randn(2, 3, 32, 32)
    sides = []
    for stage in model.stages:
        x = stage(x)
        sides.append(x.shape[-1])
    assert sides == [16, 8, 4] and model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 1024)
    with pytest.raises(ValueError, match="32x32"):
        model(torch.randn(1, 3, 28, 28))


def test_init_is_lecun_normal_with_zero_biases() -> None:
    torch.manual_seed(0)
    model = create_model("convnet4")
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            assert m.weight.std().item() == pytest.approx(fan_in**-0.5, rel=0.15)
            assert not m.bias.any()


def test_gaussian_init_is_alexnets_std_001_in_every_layer() -> None:
    torch.manual_seed(0)
    model = create_model("convnet4", init="gaussian")
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            w = m.weight.detach().double()
            assert abs(w.std().item() - 0.01) < 0.1 * 0.01 + 3 * 0.01 / w.numel() ** 0.5  # sampling error of the std
            assert abs(w.mean().item()) < 5 * 0.01 / w.numel() ** 0.5
            assert not m.bias.any()
    with pytest.raises(ConfigError, match="init must be one of"):
        create_model("convnet4", init="xavier")
