"""LeNet-5: "Gradient-Based Learning Applied to Document Recognition". LeCun, Bottou, Bengio, Haffner. Proc. IEEE 1998.

| variant       | params paper | params ours | MACs ours (32x32) | MNIST test err paper          | MNIST test err ours |
|---------------|--------------|-------------|-------------------|-------------------------------|---------------------|
| lenet5        | 60,000       | 60,000      | 0.4157 M          | 0.95 (§III-C, no distortions) | docs/results.md     |
| lenet5_modern | -            | 61,706      | 0.4165 M          | -                             | docs/results.md     |

``lenet5`` is the network as published: C1 6@5x5; S2 trainable subsampling (the 2x2 sum times one trainable
coefficient per map, plus a trainable bias, then the squashing function); C3 16@5x5 with the partial connection table
(paper Table I); S4; C5 120@5x5; F6 84; every layer up to F6 squashed by f(a) = 1.7159 tanh(2a/3) (Appendix A); ten
Euclidean RBF output units y_i = sum_j (x_j - w_ij)^2 with *fixed* +-1 prototypes drawn as 7x12 bitmaps. Trainable
parameters: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164 = 60,000; the 840 RBF weights are fixed buffers.

C3 holds exactly the 60 kernels of Table I's connections (1,516 parameters with the biases); each forward pass
scatters them into a dense 16x6 kernel with zeros for the absent connections, because one dense convolution is 5-10x
faster on a CPU than grouped convolutions over gathered maps. MACs are counted by ``torch.utils.flop_counter``, which
therefore counts C3 densely (240,000 instead of the sparse 150,000): 415,680 in all (C1 117,600, C3 240,000, C5
48,000, F6 10,080; the subsampling and the RBF distances are not matrix products, so it does not count them). The
sparse count of the same layers is 325,680; the paper's hand count, with subsampling and the RBF, is about 0.33 M.
``lenet5_modern`` adds its 84x10 linear output: 416,520.

``lenet5_modern`` is the form most tutorials call LeNet (dense C3, ReLU, max-pooling, a linear output layer trained
with cross-entropy): the comparison for the "why ReLU, why max-pool" experiments.

Differences from the paper:
  * ``forward`` returns logits ``-y`` (negated RBF penalties) so that argmax, softmax and the rest of the library work
    unchanged; the paper's MAP criterion E = y_D + log(e^-j + sum_i e^-y_i) is exactly cross-entropy over these logits
    plus one "rubbish" class with logit -j (``milestones.train.losses.lenet_map_loss``).
  * The output prototypes are our own stylised 7x12 digit bitmaps (the paper's are not published as data). For more
    than ten classes the extra prototypes are random +-1 codes from a fixed seed.
  * Training uses SGD with momentum or Adam instead of the stochastic diagonal Levenberg-Marquardt method.
  * ``in_chans`` and ``num_classes`` are options (3-channel CIFAR, fewer classes in tests); the input must be 32x32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._registry import Counts, PaperRef, Reported, Traits, register_variants

PAPER = PaperRef(
    "Gradient-Based Learning Applied to Document Recognition",
    "LeCun, Bottou, Bengio, Haffner",
    1998,
    venue="Proceedings of the IEEE",
)


@dataclass(frozen=True)
class LeNetConfig:
    """``style="paper"``: sparse C3, scaled tanh, trainable subsampling, RBF output; ``"modern"``: the common form."""

    style: Literal["paper", "modern"]
    widths: tuple[int, int, int, int] = (6, 16, 120, 84)


VARIANTS = {
    "lenet5":        LeNetConfig("paper"),
    "lenet5_modern": LeNetConfig("modern"),
}
REPORTED = {
    "lenet5": Reported(params_m=0.06, top1_err=0.95, dataset="MNIST", source="§II-B parameter count; §III-C, Fig. 14"),
}
COUNTS = {
    "lenet5":        Counts(params=60_000, macs=415_680, source="paper §II-B per-layer counts"),
    "lenet5_modern": Counts(params=61_706, macs=416_520, source="dense C3 + 84x10 linear output"),
}

# Paper Table I: the S2 maps each C3 map reads, grouped by the four row blocks of the table.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

# Stylised 7x12 digit bitmaps for the RBF prototypes ('#' = +1, '.' = -1), drawn for this project.
_DIGITS = """
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
..###.. ...#... ..###.. .####.. .....#. ####### ...##.. ####### ..###.. ..###..
.#...#. ..##... .#...#. #....#. ....##. #...... ..#.... ......# .#...#. .#...#.
#.....# .#.#... #.....# ......# ...#.#. #...... .#..... .....#. #.....# #.....#
#.....# ...#... ......# .....#. ..#..#. #####.. #...... .....#. .#...#. #.....#
#.....# ...#... .....#. ..###.. .#...#. .....#. #.###.. ....#.. ..###.. .#...##
#.....# ...#... ....#.. .....#. #....#. ......# ##...#. ....#.. .#...#. ..###.#
#.....# ...#... ...#... ......# ####### ......# #.....# ...#... #.....# ......#
#.....# ...#... ..#.... ......# .....#. ......# #.....# ...#... #.....# .....#.
.#...#. ...#... .#..... #....#. .....#. #....#. .#...#. ..#.... .#...#. ....#..
..###.. .#####. ####### .####.. .....#. .####.. ..###.. ..#.... ..###.. ..##...
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
"""


def digit_prototypes(num_classes: int = 10) -> Tensor:
    """(num_classes, 84) +-1 prototypes: the ten digit bitmaps, then random codes (fixed seed) for any more classes."""
    rows = [line.split() for line in _DIGITS.strip().splitlines()]
    digits = torch.tensor([[1.0 if c == "#" else -1.0 for r in rows for c in r[d]] for d in range(10)])
    if num_classes <= 10:
        return digits[:num_classes].clone()
    g = torch.Generator().manual_seed(1998)
    extra = torch.randint(0, 2, (num_classes - 10, 84), generator=g).float() * 2 - 1
    return torch.cat([digits, extra])


def _starts(table: tuple[tuple[int, ...], ...]) -> list[int]:
    """Offset of each row's first kernel in a :class:`SparseConv` weight."""
    starts, total = [], 0
    for row in table:
        starts.append(total)
        total += len(row)
    return starts


def squash(a: Tensor) -> Tensor:
    """The paper's sigmoid, f(a) = A tanh(S a) with A = 1.7159 and S = 2/3, so that f(+-1) = +-1 (Appendix A)."""
    return 1.7159 * torch.tanh(a * (2.0 / 3.0))


class Subsampling(nn.Module):
    """S2/S4: sum of each 2x2 block times one trainable coefficient per map, plus a trainable bias, then squash."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H/2, W/2)
        s = F.avg_pool2d(x, 2) * 4.0
        return squash(s * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1))


class SparseConv(nn.Module):
    """C3: each output map convolves only the input maps its row of ``table`` names (paper Table I).

    The trainable weights are exactly the table's connections (one 5x5 kernel per connection, one bias per map). Each
    forward pass scatters them into a dense kernel whose absent connections are zeros and runs one dense convolution:
    on CPUs, grouped convolutions over gathered maps are 5-10x slower than this for LeNet's sizes.
    """

    def __init__(self, table: tuple[tuple[int, ...], ...], in_maps: int = 6, kernel_size: int = 5) -> None:
        super().__init__()
        self.table, self.in_maps, self.kernel_size = table, in_maps, kernel_size
        connections = sum(len(row) for row in table)
        self.weight = nn.Parameter(torch.empty(connections, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(len(table)))
        flat = [out * in_maps + i for out, row in enumerate(table) for i in row]
        self.register_buffer("index", torch.tensor(flat), persistent=False)
        self.fan_in = [len(row) * kernel_size * kernel_size for row in table]

    def dense_weight(self) -> Tensor:  # (out, in, k, k) with structural zeros
        k = self.kernel_size
        dense = self.weight.new_zeros(len(self.table) * self.in_maps, k, k).index_copy(0, self.index, self.weight)
        return dense.view(len(self.table), self.in_maps, k, k)

    def forward(self, x: Tensor) -> Tensor:  # (B, 6, 14, 14) -> (B, 16, 10, 10)
        return F.conv2d(x, self.dense_weight(), self.bias)


class RBF(nn.Module):
    """Euclidean RBF output units with fixed prototypes; returns logits = -sum_j (x_j - w_ij)^2."""

    def __init__(self, prototypes: Tensor) -> None:
        super().__init__()
        self.register_buffer("prototypes", prototypes)

    def forward(self, x: Tensor) -> Tensor:  # (B, 84) -> (B, K)
        return -(x.unsqueeze(1) - self.prototypes.unsqueeze(0)).pow(2).sum(-1)


class LeNet5(nn.Module):
    """LeNet-5 as published, or its modern form (``style="modern"``)."""

    def __init__(self, cfg: LeNetConfig, *, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__()
        c1, c3, c5, f6 = cfg.widths
        self.style = cfg.style
        paper = cfg.style == "paper"
        self.c1 = nn.Conv2d(in_chans, c1, 5)
        self.s2 = Subsampling(c1) if paper else nn.MaxPool2d(2)
        self.c3 = SparseConv(C3_TABLE) if paper and (c1, c3) == (6, 16) else nn.Conv2d(c1, c3, 5)
        self.s4 = Subsampling(c3) if paper else nn.MaxPool2d(2)
        self.c5 = nn.Conv2d(c3, c5, 5)
        self.f6 = nn.Linear(c5, f6)
        self.act = squash if paper else F.relu
        self.num_features = f6
        self.head: nn.Module = RBF(digit_prototypes(num_classes)) if paper else nn.Linear(f6, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """``paper``: U(-2.4/F, 2.4/F) with F the fan-in of the unit (LeCun et al. 1998, Appendix C), biases
        included; subsampling coefficients start at 1/4 (an average) with zero bias so S2/S4 start as average pools.
        ``modern``: PyTorch's defaults (Kaiming-uniform), as the tutorials this variant stands for use."""
        if self.style != "paper":
            return
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                bound = 2.4 / fan_in
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.uniform_(m.bias, -bound, bound)
            elif isinstance(m, SparseConv):
                for row, (start, fan_in) in enumerate(zip(_starts(m.table), m.fan_in)):
                    bound = 2.4 / fan_in
                    nn.init.uniform_(m.weight[start:start + len(m.table[row])], -bound, bound)
                    nn.init.uniform_(m.bias[row:row + 1], -bound, bound)
            elif isinstance(m, Subsampling):
                nn.init.constant_(m.weight, 0.25)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, 32, 32) -> (B, 84)
        if x.shape[-2:] != (32, 32):
            raise ValueError(f"LeNet-5 takes 32x32 inputs, got {tuple(x.shape[-2:])}; pad 28x28 digits by 2")
        a = self.act
        if self.style == "paper":
            x = self.s2(a(self.c1(x)))  # (B, 6, 14, 14)
            x = self.s4(a(self.c3(x)))  # (B, 16, 5, 5)
        else:  # ReLU and max-pooling commute (ReLU is monotonic): pooling first applies ReLU to a quarter of the values
            x = a(self.s2(self.c1(x)))
            x = a(self.s4(self.c3(x)))
        x = a(self.c5(x)).flatten(1)  # (B, 120)
        return a(self.f6(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        ref = next(self.parameters())
        if self.style == "paper":
            self.head = RBF(digit_prototypes(num_classes).to(ref.device))
        else:
            self.head = nn.Linear(self.num_features, num_classes, device=ref.device)


TRAITS = Traits(convolutional=True, cam_layer="c3")  # C3 (10x10): C5's maps are already 1x1


@register_variants(
    VARIANTS, paper=PAPER, traits=TRAITS, reported=REPORTED, counts=COUNTS, input_size=(1, 32, 32),
    small_input=(1, 32, 32),
)
def lenet(cfg: LeNetConfig, *, num_classes: int = 10, in_chans: int = 1) -> LeNet5:
    """Build LeNet-5 (``lenet5``) or its modern form (``lenet5_modern``)."""
    return LeNet5(cfg, num_classes=num_classes, in_chans=in_chans)


