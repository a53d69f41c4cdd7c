"""Inception v2 (BN-Inception) and Inception v3: the two successors of GoogLeNet (``googlenet.py``, v1).

* ``inception_v2``: Ioffe, Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing Internal
  Covariate Shift". ICML 2015, arXiv:1502.03167. The network of its Appendix (Figure 5's table), which the v3 paper
  calls "BN-Inception" and TF-slim ``inception_v2``.
* ``inception_v3``: Szegedy, Vanhoucke, Ioffe, Shlens, Wojna, "Rethinking the Inception Architecture for Computer
  Vision". CVPR 2016, arXiv:1512.00567. Built as torchvision's ``inception_v3`` (TF-slim's widths), whose weights
  convert.

| variant      | params paper | params ours (with aux)  | GMACs paper | GMACs ours | top-1 / top-5 err paper          |
|--------------|--------------|-------------------------|-------------|------------|----------------------------------|
| inception_v2 | -            | 11,285,224              | -           | 2.033      | 25.2 / 7.82 (Figure 4, 1 crop)   |
| inception_v3 | < 25M        | 23,834,568 (27,161,264) | 5.0         | 5.713      | 21.2 / 5.6 (Table 3, 1 crop 299) |

Paper numbers. v2: the table of the BN paper's Figure 4 gives BN-Inception's single-crop ILSVRC 2012 validation
errors (25.2 top-1, 7.82 top-5; 4.9 top-5 for an ensemble, the abstract's figure); Figure 5's table gives layer widths,
not parameter counts or multiply-adds, so both are computed here (224x224 input). v3: the abstract's "5 billion
multiply-adds" and "less than 25 million parameters", and Table 3's last row ("Inception-v2 BN-auxiliary", which
the paper names Inception-v3): 21.2 / 5.6 single-crop at 299x299. Ours: ``torch.utils.flop_counter`` without the
auxiliary head; the parameter counts equal torchvision's ``inception_v3`` with (27,161,264) and without (23,834,568)
``aux_logits``.

``inception_v3``: stem (3x3/2, 3x3, 3x3, max-pool, 1x1 80, 3x3 192, max-pool: 299 -> 35), three Figure 5 modules
at 35x35 (``Mixed_5b-d``), a grid reduction to 17x17 (``Mixed_6a``), four Figure 6 modules with 1x7/7x1
factorisations (``Mixed_6b-e``), a reduction to 8x8 (``Mixed_7a``), two Figure 7 modules (``Mixed_7b-c``), global
average pool, dropout 0.5, linear. The auxiliary classifier (Figure 8, with batch norm: "BN-auxiliary", §7) on
Mixed_6e exists only with ``aux_logits=True`` and is reached only through :meth:`InceptionV3.forward_with_aux`
(GoogLeNet's API); the training loop adds its loss when ``train.aux_loss_weight > 0``. Label smoothing 0.1 (§7) is
in the recipe (``train.label_smoothing``), not in the model. The net needs at least a 75x75 input (74 leaves no
grid after Mixed_7a); the auxiliary head needs a 17x17 to 19x19 grid at Mixed_6e (299x299 input).

``inception_v2``: stem (7x7/2 64, max-pool 3x3/2, 1x1 64, 3x3 192, max-pool 3x3/2), Inception 3a-5b (a 1x1 branch,
1x1 -> 3x3, 1x1 -> 3x3 -> 3x3 in place of v1's 5x5, and an average- or max-pool with a 1x1 projection; 3c and 4e
stride 2 in their 3x3s and pass their max-pooled input through unprojected), global average pool, linear. Every
convolution is followed by batch norm and ReLU (§3.2, §4.2).

Differences from the papers, and options:
  * The v3 paper's Table 1 does not describe the released net layer for layer (its stem and the number of modules
    per grid are given differently); like torchvision and Keras we build the released TF-slim net, whose weights
    exist, and name its layers as TF-slim does.
  * v3's Figure 5 module factorises the 5x5 convolution into two 3x3; TF-slim's released net, and so torchvision's
    and ours, keeps a 1x1 48 -> 5x5 64 branch beside the 1x1 -> 3x3 -> 3x3 one. The 17 -> 8 reduction (``Mixed_7a``)
    is also TF-slim's (1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max-pool), a variant of Figure 10.
  * torchvision's pretrained v3 runs with ``transform_input=True`` (weights expect inputs in [-1, 1]); ours never
    re-normalises: feed converted weights ``(x - 0.5) / 0.5`` for ``x`` in [0, 1].
  * v2 table quirks: its "output size" column gives 576 and 1024 channels after 4c/4d and 4e, but the widths in its
    own columns add up to 608 and 1056 (160+160+160+128, 96+192+192+128; 192+256+608); we follow the widths, as the
    Caffe BN-Inception replica does. Its stem and stride-2 max-pools round up (``ceil_mode``), which the table's grid
    sizes (112/56/28/14/7) need. TF-slim makes the first 7x7 convolution depthwise separable; ours is a full one.
  * v2 drops dropout (the paper removes it, §4.2.1: ``drop_rate=0`` by default, an option); no auxiliary heads (the
    table has none). Batch norm eps 1e-3 in both (TF-slim's); the papers do not give it.
  * Initialisation is in neither paper: see each ``init_weights``.
  * ``stem="cifar"`` (an option, not a variant): v3's stem convolutions padded, the first at stride 1, its first
    max-pool dropped, so a 32x32 image reaches Mixed_5 at 15x15, Mixed_6 at 7x7 and Mixed_7 at 3x3 (0.91 GMACs);
    v2's first convolution becomes 3x3/1 and both stem max-pools go (3a at 32x32, 2.15 GMACs); ``"cifar16"`` for v2
    puts that convolution at stride 2 (3a at 16x16, 0.54 GMACs), like GoogLeNet's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import CheckpointError, ConfigError
from ._layers import fresh_head, he_init_convs
from ._registry import Counts, PaperRef, Reported, Traits, last_stage, register_converter, register_variants

PAPER_V2 = PaperRef(
    "Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift",
    "Ioffe, Szegedy",
    2015,
    venue="ICML",
    arxiv="1502.03167",
)
PAPER_V3 = PaperRef(
    "Rethinking the Inception Architecture for Computer Vision",
    "Szegedy, Vanhoucke, Ioffe, Shlens, Wojna",
    2016,
    venue="CVPR",
    arxiv="1512.00567",
)


@dataclass(frozen=True)
class InceptionV2Config:
    """BN-Inception (BN paper, Appendix Figure 5).

    Attributes:
        modules: one row per Inception module: (name, #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3,
            pool, pool proj, stride); pool is "avg" or "max"; a stride-2 module has no 1x1 branch (#1x1 0) and passes
            its max-pooled input through unprojected (pool proj 0).
        stem_widths: (conv1 7x7/2, conv2 reduce 1x1, conv2 3x3) widths.
        drop_rate: dropout before the classifier (the paper removes it, §4.2.1).
    """

    modules: tuple[tuple[str, int, int, int, int, int, str, int, int], ...]
    stem_widths: tuple[int, int, int] = (64, 64, 192)
    drop_rate: float = 0.0


@dataclass(frozen=True)
class InceptionV3Config:
    """Inception-v3 (v3 paper, Table 1 and Figures 5-7, 10; torchvision's widths).

    Attributes:
        drop_rate: dropout before the classifier (torchvision 0.5; the paper does not say).
    """

    drop_rate: float = 0.5


# Appendix Figure 5 of the BN paper: (name, #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool, pool
# proj, stride). A stride-2 module's max-pool is "pass through" (no projection).
# fmt: off
BN_INCEPTION = (
    ("3a", 64,  64,  64,  64,  96,  "avg", 32,  1),
    ("3b", 64,  64,  96,  64,  96,  "avg", 64,  1),
    ("3c", 0,   128, 160, 64,  96,  "max", 0,   2),
    ("4a", 224, 64,  96,  96,  128, "avg", 128, 1),
    ("4b", 192, 96,  128, 96,  128, "avg", 128, 1),
    ("4c", 160, 128, 160, 128, 160, "avg", 128, 1),
    ("4d", 96,  128, 192, 160, 192, "avg", 128, 1),
    ("4e", 0,   128, 192, 192, 256, "max", 0,   2),
    ("5a", 352, 192, 320, 160, 224, "avg", 128, 1),
    ("5b", 352, 192, 320, 192, 224, "max", 128, 1),
)
# fmt: on

VARIANTS_V2 = {"inception_v2": InceptionV2Config(BN_INCEPTION)}
VARIANTS_V3 = {"inception_v3": InceptionV3Config()}
REPORTED_V2 = {
    "inception_v2": Reported(top1_err=25.2, top5_err=7.82,
                             source="Figure 4 table: BN-Inception, single crop, ILSVRC 2012 val"),
}
REPORTED_V3 = {
    "inception_v3": Reported(gmacs=5.0, top1_err=21.2, top5_err=5.6,
                             source="abstract (5 billion multiply-adds, < 25M params); Table 3 last row, 1 crop 299"),
}
COUNTS_V2 = {"inception_v2": Counts(params=11_285_224, macs=2_032_600_064, source="paper Figure 5 widths")}
COUNTS_V3 = {
    "inception_v3": Counts(params=23_834_568, macs=5_713_216_096, source="torchvision inception_v3(aux_logits=False)"),
}


class BasicConv(nn.Module):
    """Convolution without bias -> batch norm (eps 1e-3, TF-slim's, whose weights torchvision ported) -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int | tuple[int, int], *, stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _chain(*convs: tuple[int, int, Any, int, Any]) -> nn.Sequential:
    """A branch of ``BasicConv``s from (in, out, kernel, stride, padding) tuples."""
    return nn.Sequential(*(BasicConv(i, o, k, stride=s, padding=p) for i, o, k, s, p in convs))


class BNInceptionModule(nn.Module):
    """BN-Inception module: GoogLeNet's with the 5x5 replaced by two 3x3 (BN paper, Appendix); stride 2 for 3c/4e."""

    def __init__(self, in_ch: int, ch1x1: int, ch3x3red: int, ch3x3: int, dbl_red: int, dbl: int, pool: str,
                 pool_proj: int, stride: int) -> None:
        super().__init__()
        s = stride
        self.branch1 = BasicConv(in_ch, ch1x1, 1) if ch1x1 else None
        self.branch2 = _chain((in_ch, ch3x3red, 1, 1, 0), (ch3x3red, ch3x3, 3, s, 1))
        self.branch3 = _chain((in_ch, dbl_red, 1, 1, 0), (dbl_red, dbl, 3, 1, 1), (dbl, dbl, 3, s, 1))
        if stride == 2:  # max-pool 3x3/2 "pass through": the input's channels, unprojected
            self.branch4: nn.Module = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        else:
            pooling = nn.AvgPool2d(3, 1, 1) if pool == "avg" else nn.MaxPool2d(3, 1, 1)
            self.branch4 = nn.Sequential(pooling, BasicConv(in_ch, pool_proj, 1))
        self.out_channels = ch1x1 + ch3x3 + dbl + (pool_proj if stride == 1 else in_ch)

    def forward(self, x: Tensor) -> Tensor:  # (B, in_ch, H, W) -> (B, out_channels, H / stride, W / stride)
        branches = [self.branch2(x), self.branch3(x), self.branch4(x)]
        if self.branch1 is not None:
            branches.insert(0, self.branch1(x))
        return torch.cat(branches, dim=1)


class InceptionA(nn.Module):
    """v3 Figure 5 at 35x35: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg-pool -> 1x1 (the 5x5 is torchvision's and
    TF-slim's; the paper's Figure 5 factorises it into two 3x3, see the module docstring)."""

    def __init__(self, in_ch: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv(in_ch, 64, 1)
        self.branch5x5_1 = BasicConv(in_ch, 48, 1)
        self.branch5x5_2 = BasicConv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv(in_ch, 64, 1)
        self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv(96, 96, 3, padding=1)
        self.branch_pool = BasicConv(in_ch, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, in_ch, H, W) -> (B, 224 + pool_features, H, W)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([self.branch1x1(x), b5, b3, bp], dim=1)


class InceptionB(nn.Module):
    """v3 Figure 10 grid reduction 35 -> 17: 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max-pool 3x3/2."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv(in_ch, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv(in_ch, 64, 1)
        self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:  # (B, in_ch, H, W) -> (B, 480 + in_ch, (H - 3) // 2 + 1, ...)
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], dim=1)


class InceptionC(nn.Module):
    """v3 Figure 6 at 17x17 with n = 7: the 7x7 convolutions factorised into 1x7 and 7x1 (§3.2)."""

    def __init__(self, in_ch: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv(in_ch, 192, 1)
        self.branch7x7_1 = BasicConv(in_ch, c7, 1)
        self.branch7x7_2 = BasicConv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv(in_ch, c7, 1)
        self.branch7x7dbl_2 = BasicConv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv(in_ch, 192, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, in_ch, H, W) -> (B, 768, H, W)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([self.branch1x1(x), b7, bd, bp], dim=1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max-pool 3x3/2 (torchvision's)."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv(in_ch, 192, 1)
        self.branch3x3_2 = BasicConv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv(in_ch, 192, 1)
        self.branch7x7x3_2 = BasicConv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:  # (B, in_ch, H, W) -> (B, 512 + in_ch, (H - 3) // 2 + 1, ...)
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], dim=1)


class InceptionE(nn.Module):
    """v3 Figure 7 at 8x8: the expanded filter bank, 3x3 outputs split into parallel 1x3 and 3x1 (§3.2, §6)."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv(in_ch, 320, 1)
        self.branch3x3_1 = BasicConv(in_ch, 384, 1)
        self.branch3x3_2a = BasicConv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv(in_ch, 448, 1)
        self.branch3x3dbl_2 = BasicConv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv(in_ch, 192, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, in_ch, H, W) -> (B, 2048, H, W)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], dim=1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], dim=1)
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([self.branch1x1(x), b3, bd, bp], dim=1)


class InceptionAux(nn.Module):
    """v3 Figure 8: the auxiliary classifier on the last 17x17 layer, with batch norm ("BN-auxiliary", §7)."""

    def __init__(self, in_ch: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = BasicConv(in_ch, 128, 1)
        self.conv1 = BasicConv(128, 768, 5)
        self.head = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # (B, 768, 17, 17) -> (B, num_classes)
        if not all(17 <= s <= 19 for s in x.shape[-2:]):
            raise ConfigError(f"the auxiliary head got a {tuple(x.shape[-2:])} grid, needs 17x17 to 19x19 (a 299x299 "
                              "input with the paper's stem) so that its 5x5/3 pool and 5x5 conv give 1x1")
        x = self.conv1(self.conv0(F.avg_pool2d(x, 5, stride=3)))  # (B, 768, 1, 1)
        return self.head(x.flatten(1))


def _v3_stem(in_chans: int, stem: str) -> nn.Sequential:
    cifar = stem == "cifar"
    p = 1 if cifar else 0  # the paper's stem convolutions are unpadded ("valid") except 2b
    layers: list[tuple[str, nn.Module]] = [
        ("Conv2d_1a_3x3", BasicConv(in_chans, 32, 3, stride=1 if cifar else 2, padding=p)),
        ("Conv2d_2a_3x3", BasicConv(32, 32, 3, padding=p)),
        ("Conv2d_2b_3x3", BasicConv(32, 64, 3, padding=1)),
        ("maxpool1", nn.MaxPool2d(3, stride=2)),
        ("Conv2d_3b_1x1", BasicConv(64, 80, 1)),
        ("Conv2d_4a_3x3", BasicConv(80, 192, 3, padding=p)),
        ("maxpool2", nn.MaxPool2d(3, stride=2)),
    ]
    return nn.Sequential(OrderedDict((n, m) for n, m in layers if not (cifar and n == "maxpool1")))


class InceptionV3(nn.Module):
    """Inception-v3: stem, 3 x Figure 5 (35x35), reduction, 4 x Figure 6 (17x17), reduction, 2 x Figure 7 (8x8), head.

    Checkpoint keys: ``stem.Conv2d_*``, ``stages.Mixed_*`` (TF-slim's and torchvision's names), ``aux`` (only with
    ``aux_logits``) and ``head``.
    """

    def __init__(self, cfg: InceptionV3Config, *, num_classes: int = 1000, in_chans: int = 3,
                 aux_logits: bool = False, stem: Literal["imagenet", "cifar"] = "imagenet") -> None:
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ConfigError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        self.stem = _v3_stem(in_chans, stem)
        self.stages = nn.Sequential(OrderedDict([
            ("Mixed_5b", InceptionA(192, 32)), ("Mixed_5c", InceptionA(256, 64)), ("Mixed_5d", InceptionA(288, 64)),
            ("Mixed_6a", InceptionB(288)),
            ("Mixed_6b", InceptionC(768, 128)), ("Mixed_6c", InceptionC(768, 160)),
            ("Mixed_6d", InceptionC(768, 160)), ("Mixed_6e", InceptionC(768, 192)),
            ("Mixed_7a", InceptionD(768)), ("Mixed_7b", InceptionE(1280)), ("Mixed_7c", InceptionE(2048)),
        ]))
        self.aux = InceptionAux(768, num_classes) if aux_logits else None
        self.num_features = 2048
        self.drop = nn.Dropout(cfg.drop_rate)
        self.head = nn.Linear(2048, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """torchvision's (the paper gives none): truncated normal std 0.1 (at +-2) for convolutions and linear
        layers, 0.01 for the auxiliary 5x5 convolution and 0.001 for its classifier; BN weight 1, bias 0."""
        if self.head.weight.is_meta:
            return
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.1, a=-2.0, b=2.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.aux is not None:
            nn.init.trunc_normal_(self.aux.conv1.conv.weight, std=0.01, a=-2.0, b=2.0)
            nn.init.trunc_normal_(self.aux.head.weight, std=0.001, a=-2.0, b=2.0)

    def _trunk(self, x: Tensor, aux_out: list[Tensor] | None = None) -> Tensor:
        x = self.stem(x)  # (B, 192, 35, 35) at 299
        for name, block in self.stages.named_children():
            x = block(x)
            if aux_out is not None and name == "Mixed_6e":
                aux_out.append(self.aux(x))  # type: ignore[misc]
        return x  # (B, 2048, 8, 8) at 299

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, 2048)
        return self._trunk(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.head(self.drop(self.forward_features(x)))

    def forward_with_aux(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits and ``[auxiliary logits]`` (on Mixed_6e), each ``(B, num_classes)``, in any mode.

        Raises:
            ConfigError: the model was built without ``aux_logits=True``.
        """
        if self.aux is None:
            raise ConfigError("this Inception-v3 has no auxiliary head: build it with create_model(..., "
                              "aux_logits=True)")
        aux_out: list[Tensor] = []
        x = self._trunk(x, aux_out).mean(dim=(2, 3))
        return self.head(self.drop(x)), aux_out

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier (and the auxiliary one) with fresh ``num_classes``-way ones."""
        self.head = fresh_head(self.head, self.num_features, num_classes)
        if self.aux is not None:
            self.aux.head = fresh_head(self.aux.head, 768, num_classes)


def _v2_stem(widths: tuple[int, int, int], in_chans: int, stem: str) -> nn.Sequential:
    c1, c2r, c2 = widths
    cifar = stem in ("cifar", "cifar16")
    layers: list[tuple[str, nn.Module]] = [
        ("conv1", BasicConv(in_chans, c1, 3 if cifar else 7, stride=1 if stem == "cifar" else 2,
                            padding=1 if cifar else 3)),
        ("pool1", nn.MaxPool2d(3, stride=2, ceil_mode=True)),
        ("conv2_reduce", BasicConv(c1, c2r, 1)),
        ("conv2", BasicConv(c2r, c2, 3, padding=1)),
        ("pool2", nn.MaxPool2d(3, stride=2, ceil_mode=True)),
    ]
    return nn.Sequential(OrderedDict((n, m) for n, m in layers if not (cifar and n.startswith("pool"))))


class BNInception(nn.Module):
    """BN-Inception: stem, Inception 3a-5b from the table (3c and 4e halve the grid), global average pool, linear."""

    def __init__(self, cfg: InceptionV2Config, *, num_classes: int = 1000, in_chans: int = 3,
                 stem: Literal["imagenet", "cifar", "cifar16"] = "imagenet") -> None:
        super().__init__()
        if stem not in ("imagenet", "cifar", "cifar16"):
            raise ConfigError(f"stem must be 'imagenet', 'cifar' or 'cifar16', got {stem!r}")
        self.stem = _v2_stem(cfg.stem_widths, in_chans, stem)
        blocks, in_ch = [], cfg.stem_widths[-1]
        for name, *row in cfg.modules:
            block = BNInceptionModule(in_ch, *row)
            blocks.append((name, block))
            in_ch = block.out_channels
        self.stages = nn.Sequential(OrderedDict(blocks))
        self.num_features = in_ch
        self.drop = nn.Dropout(cfg.drop_rate)
        self.head = nn.Linear(in_ch, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """Not in the paper: He normal (fan-out) for convolutions (arXiv:1502.01852), BN weight 1 and bias 0, and
        PyTorch's default for the linear layer with a zero bias."""
        if self.head.weight.is_meta:
            return
        he_init_convs(self)
        nn.init.zeros_(self.head.bias)

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, 1024)
        return self.stages(self.stem(x)).mean(dim=(2, 3))  # (B, 1024, 7, 7) before the pool at 224

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.head(self.drop(self.forward_features(x)))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh ``num_classes``-way one."""
        self.head = fresh_head(self.head, self.num_features, num_classes)


TRAITS = Traits(convolutional=True, cam_layer=last_stage)


@register_variants(VARIANTS_V2, paper=PAPER_V2, traits=TRAITS, reported=REPORTED_V2, counts=COUNTS_V2,
                   input_size=(3, 224, 224),
                   small_input=(3, 64, 64))
def inception_v2(cfg: InceptionV2Config, *, num_classes: int = 1000, in_chans: int = 3,
                 stem: Literal["imagenet", "cifar", "cifar16"] = "imagenet") -> BNInception:
    """Build BN-Inception ("Inception v2").

    Args:
        cfg: the row of :data:`VARIANTS_V2`.
        num_classes: classifier outputs.
        in_chans: input channels.
        stem: ``"imagenet"`` (the paper's), ``"cifar"`` (3x3/1 first conv, no stem max-pools: 3a at 32x32 for a
            32x32 image) or ``"cifar16"`` (the same at stride 2: 3a at 16x16).
    """
    return BNInception(cfg, num_classes=num_classes, in_chans=in_chans, stem=stem)


@register_variants(VARIANTS_V3, paper=PAPER_V3, traits=TRAITS, reported=REPORTED_V3, counts=COUNTS_V3,
                   input_size=(3, 299, 299),
                   small_input=(3, 75, 75))
def inception_v3(cfg: InceptionV3Config, *, num_classes: int = 1000, in_chans: int = 3, aux_logits: bool = False,
                 stem: Literal["imagenet", "cifar"] = "imagenet") -> InceptionV3:
    """Build Inception-v3.

    Args:
        cfg: the row of :data:`VARIANTS_V3`.
        num_classes: classifier outputs.
        in_chans: input channels.
        aux_logits: add the auxiliary classifier on Mixed_6e, used through ``forward_with_aux`` (needs 299x299).
        stem: ``"imagenet"`` (the paper's) or ``"cifar"`` (padded stride-1 stem, first max-pool dropped).
    """
    return InceptionV3(cfg, num_classes=num_classes, in_chans=in_chans, aux_logits=aux_logits, stem=stem)


_TV_AUX = {"conv0": "conv0", "conv1": "conv1", "fc": "head"}


@register_converter("inception_v3", "inception_v3")
def convert_torchvision_inception_v3(state_dict: Mapping[str, Any], *, keep_aux: bool = False) -> dict[str, Any]:
    """Map a torchvision ``inception_v3`` state dict onto ours: ``Conv2d_*`` -> ``stem.Conv2d_*``, ``Mixed_*`` ->
    ``stages.Mixed_*``, ``fc`` -> ``head``; ``AuxLogits`` -> ``aux`` only with ``keep_aux`` (then build with
    ``aux_logits=True``), dropped otherwise. torchvision's pretrained weights expect inputs in [-1, 1] (its
    ``transform_input=True``); ours never re-normalises: feed ``(x - 0.5) / 0.5`` for ``x`` in [0, 1].
    """
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        top, _, rest = key.partition(".")
        if top == "AuxLogits":
            if not keep_aux:
                continue
            sub, _, tail = rest.partition(".")
            new = f"aux.{_TV_AUX.get(sub, sub)}.{tail}"
        elif top.startswith("Conv2d_"):
            new = f"stem.{key}"
        elif top.startswith("Mixed_"):
            new = f"stages.{key}"
        elif top == "fc":
            new = f"head.{rest}"
        else:
            raise CheckpointError(f"unexpected key {key!r}: not a torchvision inception_v3 state dict")
        out[new] = value
    return out
