"""ResNet: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition". CVPR 2016, arXiv:1512.03385.

One trunk builds three groups of variants:

* ImageNet nets (§3.4, Table 1) ``resnet18/34/50/101/152``: 7x7/2 stem and 3x3/2 max-pool, four stages at
  56/28/14/7 px with 64/128/256/512 filters, basic blocks (18, 34) or bottlenecks (50+), option-B shortcuts
  (projections only where the shape changes), 224x224 input.
* CIFAR-10 nets (§4.2, Table 6) ``resnet20/32/44/56/110/1202``: 6n+2 layers, a 3x3 stem of 16 filters, three stages
  of n basic blocks at 16/32/64 filters on 32/16/8 px, option-A (parameter-free zero-padding) shortcuts, 10 classes.
* Their plain twins (§4.2, Fig. 6) ``plain20/32/44/56/110``: the same layers with no shortcuts, hence exactly the
  parameters of option A.

Paper vs ours. T = Table. GMACs: multiply-adds of one 224x224 image (32x32 for CIFAR); ours count convs and the FC
layer with ``torch.utils.flop_counter``, as the paper's Table 1 does; v1.5 adds some because its strided 3x3 conv runs
at the higher resolution. Errors: ImageNet val (10-crop) or CIFAR-10 test, in %.

| variant    | params ours | paper | GMACs ours v1/v1.5 | paper | err paper top-1/5 | source                    |
|------------|-------------|-------|--------------------|-------|-------------------|---------------------------|
| resnet18   | 11,689,512  | -     | 1.814 / 1.814      | 1.8   | 27.88 / -         | T1; T2 10-crop, option A  |
| resnet34   | 21,797,672  | -     | 3.664 / 3.664      | 3.6   | 24.52 / 7.46      | T1; T3 10-crop, option B  |
| resnet50   | 25,557,032  | -     | 3.858 / 4.089      | 3.8   | 22.85 / 6.71      | T1; T3 10-crop            |
| resnet101  | 44,549,160  | -     | 7.570 / 7.801      | 7.6   | 21.75 / 6.05      | T1; T3 10-crop            |
| resnet152  | 60,192,808  | -     | 11.282 / 11.514    | 11.3  | 21.43 / 5.71      | T1; T3 10-crop            |
| resnet20   | 269,722     | 0.27M | 0.04055            | -     | 8.75              | T6, CIFAR-10 test         |
| resnet32   | 464,154     | 0.46M | 0.06886            | -     | 7.51              | T6, CIFAR-10 test         |
| resnet44   | 658,586     | 0.66M | 0.09717            | -     | 7.17              | T6, CIFAR-10 test         |
| resnet56   | 853,018     | 0.85M | 0.1255             | -     | 6.97              | T6, CIFAR-10 test         |
| resnet110  | 1,727,962   | 1.7M  | 0.2529             | -     | 6.43              | T6, best of 5 (mean 6.61) |
| resnet1202 | 19,421,274  | 19.4M | 2.829              | -     | 7.93              | T6, CIFAR-10 test         |
| plain20    | 269,722     | -     | 0.04055            | -     | -                 | Fig. 6, curves only       |
| plain32    | 464,154     | -     | 0.06886            | -     | -                 | Fig. 6, curves only       |
| plain44    | 658,586     | -     | 0.09717            | -     | -                 | Fig. 6, curves only       |
| plain56    | 853,018     | -     | 0.1255             | -     | -                 | Fig. 6, curves only       |
| plain110   | 1,727,962   | -     | 0.2529             | -     | -                 | Fig. 6, not plotted       |

The ImageNet parameter counts equal torchvision's (v1 and v1.5 have the same layers); option B on the CIFAR nets
gives 272,474 / 466,906 / 661,338 / 855,770 / 1,730,714 / 19,424,026. The paper prints no ImageNet parameter counts
and no single-crop ImageNet errors.

Differences from the paper, and options:
  * ``version="v1"`` (default) puts a bottleneck's stride on its first 1x1 conv, as the paper's released Caffe
    models do; ``version="v1.5"`` puts it on the 3x3 conv, as torchvision and timm do (and as their weights need).
    Basic-block nets are the same in both.
  * ResNet-18's Table 2 error was measured with option-A shortcuts; our ``resnet18`` defaults to option B, as
    torchvision's and as the paper's deeper nets (set ``shortcut="A"`` for the Table 2 net, 11,515,688 parameters).
  * Option A pads the new channels with zeros split evenly on both sides of the old ones, after taking every second
    pixel; the paper says only "extra zero entries padded", so the channel order is our choice (and immaterial).
  * ``zero_init_residual=True`` zero-initialises the last BN gamma of every residual branch (Goyal et al.,
    arXiv:1706.02677); off by default, as in the paper.
  * ``stem="cifar"`` (a 3x3 stride-1 conv and no max-pool, the paper's §4.2 stem) adapts the ImageNet nets to 32x32
    inputs without renaming them, e.g. ``create_model("resnet18", stem="cifar", num_classes=10)`` (11,173,962
    parameters); it is the default of the CIFAR nets.
  * The FC layer keeps PyTorch's default init (the paper names only He init for the convs), as torchvision does.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import CheckpointError, ConfigError
from ._layers import he_init_convs
from ._registry import Counts, PaperRef, Reported, Traits, last_stage, register_converter, register_variants

PAPER = PaperRef(
    title="Deep Residual Learning for Image Recognition",
    authors="Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun",
    year=2016,
    venue="CVPR",
    arxiv="1512.03385",
)


@dataclass(frozen=True)
class ResNetConfig:
    """One ResNet architecture.

    Attributes:
        block: "basic" (two 3x3 convs, Fig. 5 left) or "bottleneck" (1x1 reduce, 3x3, 1x1 expand by 4, Fig. 5 right).
        depths: blocks per stage; the first stage keeps the stem's resolution, each later one halves it.
        widths: filters per stage (a bottleneck's inner width; its output has 4x as many channels).
        stem: "imagenet" (7x7/2 conv and 3x3/2 max-pool, Table 1) or "cifar" (3x3/1 conv, no pool, §4.2).
        shortcut: §3.3 options: "A" identity, zero-padded where dimensions grow (no parameters); "B" 1x1-conv + BN
            projections only where the shape changes; "C" projections on every block.
        residual: False builds the plain twin: the same layers without any shortcut.
        paper_classes: classes of the dataset the paper trained this variant on; the default ``num_classes``.
    """

    block: Literal["basic", "bottleneck"]
    depths: tuple[int, ...]
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem: Literal["imagenet", "cifar"] = "imagenet"
    shortcut: Literal["A", "B", "C"] = "B"
    residual: bool = True
    paper_classes: int = 1000


_CIFAR_WIDTHS = (16, 32, 64)

# fmt: off
VARIANTS = {
    "resnet18":   ResNetConfig("basic",      (2, 2, 2, 2)),
    "resnet34":   ResNetConfig("basic",      (3, 4, 6, 3)),
    "resnet50":   ResNetConfig("bottleneck", (3, 4, 6, 3)),
    "resnet101":  ResNetConfig("bottleneck", (3, 4, 23, 3)),
    "resnet152":  ResNetConfig("bottleneck", (3, 8, 36, 3)),
    "resnet20":   ResNetConfig("basic", (3, 3, 3),       _CIFAR_WIDTHS, "cifar", "A", paper_classes=10),
    "resnet32":   ResNetConfig("basic", (5, 5, 5),       _CIFAR_WIDTHS, "cifar", "A", paper_classes=10),
    "resnet44":   ResNetConfig("basic", (7, 7, 7),       _CIFAR_WIDTHS, "cifar", "A", paper_classes=10),
    "resnet56":   ResNetConfig("basic", (9, 9, 9),       _CIFAR_WIDTHS, "cifar", "A", paper_classes=10),
    "resnet110":  ResNetConfig("basic", (18, 18, 18),    _CIFAR_WIDTHS, "cifar", "A", paper_classes=10),
    "resnet1202": ResNetConfig("basic", (200, 200, 200), _CIFAR_WIDTHS, "cifar", "A", paper_classes=10),
    "plain20":    ResNetConfig("basic", (3, 3, 3),       _CIFAR_WIDTHS, "cifar", "A", residual=False, paper_classes=10),
    "plain32":    ResNetConfig("basic", (5, 5, 5),       _CIFAR_WIDTHS, "cifar", "A", residual=False, paper_classes=10),
    "plain44":    ResNetConfig("basic", (7, 7, 7),       _CIFAR_WIDTHS, "cifar", "A", residual=False, paper_classes=10),
    "plain56":    ResNetConfig("basic", (9, 9, 9),       _CIFAR_WIDTHS, "cifar", "A", residual=False, paper_classes=10),
    "plain110":   ResNetConfig("basic", (18, 18, 18),    _CIFAR_WIDTHS, "cifar", "A", residual=False, paper_classes=10),
}

_T6 = "Table 6, CIFAR-10 test error"
REPORTED = {
    "resnet18":   Reported(gmacs=1.8,  top1_err=27.88,                 source="Table 1; Table 2, 10-crop, option A"),
    "resnet34":   Reported(gmacs=3.6,  top1_err=24.52, top5_err=7.46,  source="Table 1; Table 3, 10-crop, option B"),
    "resnet50":   Reported(gmacs=3.8,  top1_err=22.85, top5_err=6.71,  source="Table 1; Table 3, 10-crop"),
    "resnet101":  Reported(gmacs=7.6,  top1_err=21.75, top5_err=6.05,  source="Table 1; Table 3, 10-crop"),
    "resnet152":  Reported(gmacs=11.3, top1_err=21.43, top5_err=5.71,  source="Table 1; Table 3, 10-crop"),
    "resnet20":   Reported(params_m=0.27, top1_err=8.75, dataset="CIFAR-10", source=_T6),
    "resnet32":   Reported(params_m=0.46, top1_err=7.51, dataset="CIFAR-10", source=_T6),
    "resnet44":   Reported(params_m=0.66, top1_err=7.17, dataset="CIFAR-10", source=_T6),
    "resnet56":   Reported(params_m=0.85, top1_err=6.97, dataset="CIFAR-10", source=_T6),
    "resnet110":  Reported(params_m=1.7,  top1_err=6.43, dataset="CIFAR-10", source=_T6 + ", best of 5 (mean 6.61)"),
    "resnet1202": Reported(params_m=19.4, top1_err=7.93, dataset="CIFAR-10", source=_T6),
    **{f"plain{d}": Reported(dataset="CIFAR-10", source="Fig. 6, curves only") for d in (20, 32, 44, 56, 110)},
}

# Params: torchvision's resnet* for the ImageNet nets, PAPERS.md §1.5 recounts for the CIFAR nets. MACs: ours, v1.
_TV = "params = torchvision; GMACs with version='v1.5' = torchvision"
_CF = "params = PAPERS.md 1.5 recount (akamaster-style option A)"
COUNTS = {
    "resnet18":   Counts(11_689_512, 1_814_073_344,  _TV),
    "resnet34":   Counts(21_797_672, 3_663_761_408,  _TV),
    "resnet50":   Counts(25_557_032, 3_857_973_248,  _TV),
    "resnet101":  Counts(44_549_160, 7_570_194_432,  _TV),
    "resnet152":  Counts(60_192_808, 11_282_415_616, _TV),
    "resnet20":   Counts(269_722,    40_551_040,     _CF),
    "resnet32":   Counts(464_154,    68_862_592,     _CF),
    "resnet44":   Counts(658_586,    97_174_144,     _CF),
    "resnet56":   Counts(853_018,    125_485_696,    _CF),
    "resnet110":  Counts(1_727_962,  252_887_680,    _CF),
    "resnet1202": Counts(19_421_274, 2_829_238_912,  _CF),
    "plain20":    Counts(269_722,    40_551_040,     _CF),
    "plain32":    Counts(464_154,    68_862_592,     _CF),
    "plain44":    Counts(658_586,    97_174_144,     _CF),
    "plain56":    Counts(853_018,    125_485_696,    _CF),
    "plain110":   Counts(1_727_962,  252_887_680,    _CF),
}
# fmt: on


class ZeroPadShortcut(nn.Module):
    """Option A (§3.3): an identity that subsamples by ``stride`` and appends zero channels; no parameters."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad_lo = (out_ch - in_ch) // 2
        self.pad_hi = out_ch - in_ch - self.pad_lo

    def forward(self, x: Tensor) -> Tensor:
        # Every stride-th pixel matches the ceil(H / stride) output of the branch's stride-s 3x3 (or 1x1) conv.
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_lo, self.pad_hi))  # (B, C_in, H', W') -> (B, C_out, H', W')

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_lo}, {self.pad_hi})"


def _shortcut(option: str, in_ch: int, out_ch: int, stride: int) -> nn.Module:
    """The §3.3 shortcut of one block: identity, option-A zero padding, or a 1x1-conv + BN projection (B, C)."""
    changes = stride != 1 or in_ch != out_ch
    if option == "C" or (option == "B" and changes):
        conv = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)
        return nn.Sequential(OrderedDict(conv=conv, bn=nn.BatchNorm2d(out_ch)))
    if option == "A" and changes:
        return ZeroPadShortcut(in_ch, out_ch, stride)
    return nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convs (Fig. 5 left); BN after each conv, ReLU after the addition (§3.4).

    Args:
        shortcut: the §3.3 option, or None for a plain block (no shortcut at all).
        version: unused; basic blocks are the same in v1 and v1.5.
    """

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int, *, shortcut: str | None, version: str = "v1") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None if shortcut is None else _shortcut(shortcut, in_ch, width, stride)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand by 4 (Fig. 5 right), BN after each conv, ReLU after the addition.

    Args:
        shortcut: the §3.3 option, or None for a plain block.
        version: "v1" strides the first 1x1 conv (the paper's Caffe models); "v1.5" strides the 3x3 (torchvision).
    """

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int, *, shortcut: str | None, version: str = "v1") -> None:
        super().__init__()
        s1, s2 = (stride, 1) if version == "v1" else (1, stride)
        self.conv1 = nn.Conv2d(in_ch, width, 1, stride=s1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=s2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None if shortcut is None else _shortcut(shortcut, in_ch, width * self.expansion, stride)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu(out)


def _stem(kind: str, in_chans: int, width: int) -> nn.Sequential:
    """Table 1's conv1 (7x7/2) and 3x3/2 max-pool, or §4.2's single 3x3/1 conv."""
    if kind == "imagenet":
        conv = nn.Conv2d(in_chans, width, 7, stride=2, padding=3, bias=False)
        pool = {"pool": nn.MaxPool2d(3, stride=2, padding=1)}
    else:
        conv = nn.Conv2d(in_chans, width, 3, padding=1, bias=False)
        pool = {}
    return nn.Sequential(OrderedDict(conv=conv, bn=nn.BatchNorm2d(width), act=nn.ReLU(inplace=True), **pool))


class ResNet(nn.Module):
    """Stem, stages of residual (or plain) blocks, global average pooling and one FC layer (Table 1, §4.2)."""

    def __init__(
        self,
        cfg: ResNetConfig,
        *,
        num_classes: int,
        in_chans: int = 3,
        version: Literal["v1", "v1.5"] = "v1",
        zero_init_residual: bool = False,
        norm: bool = True,
    ) -> None:
        super().__init__()
        _check(cfg, version, zero_init_residual)
        if not norm and zero_init_residual:
            raise ConfigError("zero_init_residual zeroes a batch-norm weight: it needs norm=True")
        block = BasicBlock if cfg.block == "basic" else Bottleneck
        self.zero_init_residual = zero_init_residual
        self.stem = _stem(cfg.stem, in_chans, cfg.widths[0])
        stages, in_ch = [], cfg.widths[0]
        for i, (depth, width) in enumerate(zip(cfg.depths, cfg.widths, strict=True)):
            blocks = []
            for j in range(depth):
                # Downsample at the first block of every stage but the first (the stem already did, or §4.2's 32 px).
                stride = 2 if i > 0 and j == 0 else 1
                option = cfg.shortcut if cfg.residual else None
                blocks.append(block(in_ch, width, stride, shortcut=option, version=version))
                in_ch = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = in_ch
        self.head = nn.Linear(in_ch, num_classes)
        if not norm:
            _drop_norm(self)
        self.init_weights()

    def init_weights(self) -> None:
        """He et al. 2015 (arXiv:1502.01852) normal init for convs, as the paper (§3.4) prescribes.

        The fan-out form (std = sqrt(2 / (k*k*C_out))) is the backward-pass condition of that paper's §2.2, which it
        shows is as good as fan-in; torchvision uses it too. BN gamma = 1, beta = 0; with ``zero_init_residual`` the
        last BN gamma of every residual branch is 0, so each block starts as an identity (Goyal et al.,
        arXiv:1706.02677). The FC layer keeps PyTorch's default init.
        """
        if self.head.weight.is_meta:
            # Meta tensors hold no values, and torch's meta normal_ is a slow Python decomposition (~2 ms a call, plus
            # a one-off torch._dynamo import): skipping it makes counting ResNet-1202 on the meta device seconds faster.
            return
        he_init_convs(self)
        if self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn.weight)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the FC layer with a freshly initialised one with ``num_classes`` outputs."""
        w = self.head.weight
        self.head = nn.Linear(self.num_features, num_classes, device=w.device, dtype=w.dtype)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> globally average-pooled features (B, D)."""
        return self.stages(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> logits (B, num_classes)."""
        return self.head(self.forward_features(x))


def _drop_norm(model: nn.Module) -> None:
    """Replace every BatchNorm2d by an identity (``norm=False``): the network without batch normalisation, for the
    degradation experiment's question whether gradients vanish where BN is absent. The convolutions keep no bias,
    as in the normalised net, so the two differ in BN alone."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, name, nn.Identity())


def _check(cfg: ResNetConfig, version: str, zero_init_residual: bool) -> None:
    if cfg.block not in ("basic", "bottleneck"):
        raise ConfigError(f"block must be 'basic' or 'bottleneck', not {cfg.block!r}")
    if cfg.stem not in ("imagenet", "cifar"):
        raise ConfigError(f"stem must be 'imagenet' or 'cifar', not {cfg.stem!r}")
    if cfg.shortcut not in ("A", "B", "C"):
        raise ConfigError(f"shortcut must be 'A', 'B' or 'C' (§3.3), not {cfg.shortcut!r}")
    if version not in ("v1", "v1.5"):
        raise ConfigError(f"version must be 'v1' (paper) or 'v1.5' (torchvision), not {version!r}")
    if len(cfg.depths) != len(cfg.widths):
        raise ConfigError(f"depths {cfg.depths} and widths {cfg.widths} must have the same length")
    if zero_init_residual and not cfg.residual:
        raise ConfigError("zero_init_residual needs residual blocks: it would make a plain net output zeros")


# Test instances are the full nets on small inputs (torchvision's 64x64 trick; the CIFAR nets are small already).
_SMALL_INPUT = {name: (3, 32, 32) if cfg.stem == "cifar" else (3, 64, 64) for name, cfg in VARIANTS.items()}


TRAITS = Traits(convolutional=True, cam_layer=last_stage)


@register_variants(
    VARIANTS,
    paper=PAPER,
    traits=TRAITS,
    reported=REPORTED,
    counts=COUNTS,
    input_size={name: (3, 32, 32) if cfg.stem == "cifar" else (3, 224, 224) for name, cfg in VARIANTS.items()},
    small_input=_SMALL_INPUT,
)
def resnet(
    cfg: ResNetConfig,
    *,
    num_classes: int | None = None,
    in_chans: int = 3,
    version: Literal["v1", "v1.5"] = "v1",
    zero_init_residual: bool = False,
    norm: bool = True,
) -> ResNet:
    """Build a ResNet.

    Args:
        cfg: the variant's architecture.
        num_classes: outputs of the FC layer; defaults to the paper's dataset (1000 for ImageNet, 10 for CIFAR-10).
        in_chans: input channels.
        version: "v1" (paper, stride on a bottleneck's first 1x1) or "v1.5" (torchvision, stride on its 3x3).
        zero_init_residual: zero the last BN gamma of each residual branch (Goyal et al., arXiv:1706.02677).
        norm: False removes every batch normalisation (an identity in its place; not in the paper: the
            degradation experiment's net without BN, where gradients may really vanish).
    """
    classes = cfg.paper_classes if num_classes is None else num_classes
    return ResNet(cfg, num_classes=classes, in_chans=in_chans, version=version, zero_init_residual=zero_init_residual,
                  norm=norm)


_TV_KEY = re.compile(r"layer(\d+)\.(\d+)\.(.+)")


# Decorators apply bottom-up, so resnet18 is registered (and listed) first.
@register_converter("resnet152", "resnet152", version="v1.5")
@register_converter("resnet101", "resnet101", version="v1.5")
@register_converter("resnet50", "resnet50", version="v1.5")
@register_converter("resnet34", "resnet34", version="v1.5")
@register_converter("resnet18", "resnet18", version="v1.5")
def from_torchvision(state: Mapping[str, Any]) -> dict[str, Any]:
    """Rename a torchvision ``resnet*`` state dict to ours (the target must be built with ``version="v1.5"``).

    torchvision's ``conv1``/``bn1`` are our ``stem.conv``/``stem.bn``, ``layerN.j`` is ``stages.{N-1}.j``, its
    ``downsample.0/1`` our ``shortcut.conv/bn`` and ``fc`` our ``head``; inside blocks the names are the same.
    """
    out: dict[str, Any] = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in ("conv1", "bn1"):
            new = f"stem.{head[:-1]}.{rest}"  # conv1 -> stem.conv, bn1 -> stem.bn
        elif head == "fc":
            new = f"head.{rest}"
        elif m := _TV_KEY.fullmatch(key):
            layer, idx, rest = m.groups()
            rest = rest.replace("downsample.0.", "shortcut.conv.").replace("downsample.1.", "shortcut.bn.")
            new = f"stages.{int(layer) - 1}.{idx}.{rest}"
        else:
            raise CheckpointError(f"unexpected key {key!r}: not a torchvision ResNet state dict")
        out[new] = value
    return out
