"""The four-layer CIFAR-10 network of AlexNet's Figure 1: "ImageNet Classification with Deep Convolutional Neural
Networks". Krizhevsky, Sutskever, Hinton. NIPS 2012, §3.1.

| variant  | params paper | params ours | MACs ours (32x32) | CIFAR-10 claim (§3.1, Fig. 1)                       |
|----------|--------------|-------------|-------------------|-----------------------------------------------------|
| convnet4 | -            | 89,578      | 12.30 M           | ReLU reaches 25% training error 6x faster than tanh |

The paper says only "a four-layer convolutional neural network" trained on CIFAR-10, with ReLUs or with tanh units,
each at the learning rate that trains it fastest, and no regularisation of any kind. It gives no layer sizes. We take
the layout of the CIFAR-10 example net that Krizhevsky shipped with cuda-convnet in 2011 (``layers-18pct.cfg``), the
four-weight-layer net of that code base: conv1 32@5x5 (pad 2) -> max-pool 3x3/2 -> conv2 32@5x5 (pad 2) -> avg-pool
3x3/2 -> conv3 64@5x5 (pad 2) -> avg-pool 3x3/2 -> fc 10. cuda-convnet pools with "ceil" output sizes, so the maps are
32 -> 16 -> 8 -> 4 and the classifier reads 64 x 4 x 4 = 1,024 values. Parameters: conv1 2,432, conv2 25,632, conv3
51,264, fc 10,250 = 89,578.

Options:
  * ``act``: the nonlinearity after each convolution, ``"relu"`` (default, the paper's proposal) or ``"tanh"`` (the
    saturating unit it is compared with). Nothing else changes, so the parameter count is the same.
  * ``init``: ``"lecun"`` (default, below) or ``"gaussian"``: every weight from N(0, 0.01²) and zero biases, the
    scheme AlexNet's §5 states for its ImageNet net ("a zero-mean Gaussian distribution with standard deviation
    0.01"; it set some biases to 1, which we leave at 0 so that both activations start alike). On normalised inputs
    it shrinks the signal by about 0.3x per layer, so it tests whether the ReLU/tanh gap depends on the start.

Differences from ``layers-18pct.cfg``:
  * No local response normalisation (its two ``rnorm`` layers): Figure 1 isolates the nonlinearity, and the paper
    introduces normalisation separately (§3.3).
  * Initialisation: LeCun-normal, N(0, 1/fan_in), with zero biases, for both activations, on inputs normalised per
    channel. cuda-convnet drew N(0, 1e-4) for conv1 and N(0, 1e-2) for the other layers, on mean-subtracted pixels
    in 0-255 units; those scales do not carry over to normalised inputs, and one shared scheme keeps the
    nonlinearity the only difference between the two networks.
  * ``in_chans`` and ``num_classes`` are options; the input must be 32x32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from ..errors import ConfigError
from ._registry import Counts, PaperRef, Reported, Traits, last_stage, register_variants

PAPER = PaperRef(
    "ImageNet Classification with Deep Convolutional Neural Networks",
    "Krizhevsky, Sutskever, Hinton",
    2012,
    venue="NIPS",
)


@dataclass(frozen=True)
class ConvNet4Config:
    """Widths of conv1-conv3 (cuda-convnet ``layers-18pct.cfg``)."""

    widths: tuple[int, int, int] = (32, 32, 64)


VARIANTS = {
    "convnet4": ConvNet4Config(),
}
REPORTED = {
    "convnet4": Reported(dataset="CIFAR-10", source="§3.1, Fig. 1 (training curves only, no layer sizes given)"),
}
COUNTS = {
    "convnet4": Counts(params=89_578, macs=12_298_240, source="cuda-convnet layers-18pct.cfg layer sizes"),
}

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
INITS = ("lecun", "gaussian")
PAPER_STD = 0.01  # AlexNet §5: every layer's weights from a zero-mean Gaussian with standard deviation 0.01
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AvgPool2d)  # after conv1, conv2, conv3, as in layers-18pct.cfg


class ConvLayer(nn.Sequential):
    """conv 5x5 (pad 2) -> nonlinearity -> pool 3x3/2 with ceil output sizes (32 -> 16 -> 8 -> 4)."""

    def __init__(self, in_ch: int, out_ch: int, act: str, pool: type[nn.Module]) -> None:
        super().__init__()
        self.add_module("conv", nn.Conv2d(in_ch, out_ch, 5, padding=2))
        self.add_module("act", ACTIVATIONS[act]())
        self.add_module("pool", pool(3, 2, ceil_mode=True))


class ConvNet4(nn.Module):
    """Three convolutional layers (``stages``) and one fully connected layer (``head``)."""

    def __init__(self, cfg: ConvNet4Config, *, num_classes: int = 10, in_chans: int = 3,
                 act: Literal["relu", "tanh"] = "relu", init: Literal["lecun", "gaussian"] = "lecun") -> None:
        super().__init__()
        if act not in ACTIVATIONS:
            raise ConfigError(f"act must be one of {', '.join(map(repr, ACTIVATIONS))}, got {act!r}")
        if init not in INITS:
            raise ConfigError(f"init must be one of {', '.join(map(repr, INITS))}, got {init!r}")
        self.init = init
        layers, in_ch = [], in_chans
        for width, pool in zip(cfg.widths, POOLS, strict=True):
            layers.append(ConvLayer(in_ch, width, act, pool))
            in_ch = width
        self.stages = nn.Sequential(*layers)
        self.num_features = in_ch * 4 * 4
        self.head = nn.Linear(self.num_features, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """LeCun-normal weights, N(0, 1/fan_in) (LeCun et al. 1998, "Efficient BackProp"), or with ``init="gaussian"``
        N(0, 0.01²) (AlexNet §5); zero biases; the same for ReLU and tanh so that the nonlinearity is the only
        difference between the two networks."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                std = PAPER_STD if self.init == "gaussian" else m.weight[0].numel() ** -0.5
                nn.init.normal_(m.weight, 0.0, std)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, 32, 32) -> (B, 1024)
        if x.shape[-2:] != (32, 32):
            raise ValueError(f"convnet4 takes 32x32 inputs, got {tuple(x.shape[-2:])}")
        return self.stages(x).flatten(1)  # (B, 64, 4, 4) -> (B, 1024)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, 32, 32) -> (B, num_classes)
        return self.head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        ref = self.head.weight
        self.head = nn.Linear(self.num_features, num_classes, device=ref.device, dtype=ref.dtype)
        nn.init.normal_(self.head.weight, 0.0, self.num_features**-0.5)
        nn.init.zeros_(self.head.bias)


TRAITS = Traits(convolutional=True, cam_layer=last_stage)


@register_variants(VARIANTS, paper=PAPER, traits=TRAITS, reported=REPORTED, counts=COUNTS, input_size=(3, 32, 32))
def convnet4(cfg: ConvNet4Config, *, num_classes: int = 10, in_chans: int = 3,
             act: Literal["relu", "tanh"] = "relu", init: Literal["lecun", "gaussian"] = "lecun") -> ConvNet4:
    """Build the four-layer CIFAR-10 net of AlexNet's Figure 1.

    Args:
        cfg: the variant.
        num_classes: outputs of the fully connected layer.
        in_chans: input channels of conv1.
        act: ``"relu"`` (the paper's proposal) or ``"tanh"`` (the saturating unit of Figure 1's dashed line).
        init: ``"lecun"`` (N(0, 1/fan_in)) or ``"gaussian"`` (N(0, 0.01²), AlexNet §5).
    """
    return ConvNet4(cfg, num_classes=num_classes, in_chans=in_chans, act=act, init=init)
