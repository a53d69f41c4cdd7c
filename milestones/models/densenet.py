"""DenseNet: Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional Networks". CVPR 2017,
arXiv:1608.06993.

Inside a dense block every layer reads the concatenation of the block's input and the outputs of all the layers
before it, and adds ``growth_rate`` (k) new feature maps of its own (§3, Eq. 2). Each layer is BN-ReLU-Conv(3x3)
("composite function", §3); the "B" nets put a BN-ReLU-Conv(1x1) bottleneck to 4k maps before it, and the "C" nets
shrink the channels by the compression factor theta = 0.5 in each transition layer (BN-ReLU-Conv(1x1), 2x2 average
pooling) between blocks. After the last block: BN-ReLU, global average pooling, one linear layer.

* ImageNet nets (§3, Table 1) ``densenet121/169/201`` (k=32, 2k=64 stem channels) and ``densenet161`` (k=48, 96 stem
  channels; released by the authors, not in Table 1): DenseNet-BC, a 7x7/2 conv, BN-ReLU and a 3x3/2 max-pool, four
  blocks at 56/28/14/7 px, 224x224 input. Their structure and parameters are torchvision's ``densenet*``, whose
  weights convert (:func:`from_torchvision`).
* CIFAR nets (§4.1, Table 2): three blocks at 32/16/8 px after one 3x3 conv. ``densenet40`` is the basic DenseNet
  with L=40, k=12: 16 stem channels, 12 layers of BN-ReLU-Conv(3x3) per block, transitions that keep the channels.
  ``densenet_bc100`` is DenseNet-BC with L=100, k=12: 2k=24 stem channels, 16 bottleneck layers per block,
  compression 0.5.

Paper vs ours. GMACs: multiply-adds of one 224x224 image (32x32 for CIFAR), convolutions and the linear layer as
``torch.utils.flop_counter`` counts them. Errors in %: ImageNet val top-1, 224x224 single crop, as the authors'
repository README lists them for its released Torch models (the paper's Table 3, not checked here, has 121/169/201
and a 264, not the 161); CIFAR-10 test error with standard augmentation (C10+, Table 2).

| variant        | k  | params ours | paper | GMACs ours | err paper | source                                    |
|----------------|----|-------------|-------|------------|-----------|-------------------------------------------|
| densenet121    | 32 | 7,978,856   | -     | 2.834      | 25.0      | authors' README, ImageNet 1-crop          |
| densenet169    | 32 | 14,149,480  | -     | 3.360      | 23.6      | authors' README, ImageNet 1-crop          |
| densenet201    | 32 | 20,013,928  | -     | 4.291      | 22.5      | authors' README, ImageNet 1-crop          |
| densenet161    | 48 | 28,681,000  | -     | 7.728      | 22.2      | authors' README, ImageNet 1-crop          |
| densenet40     | 12 | 1,019,722   | 1.0M  | 0.2648     | 5.24      | Table 2, C10+ (C10 without aug.: 7.00)    |
| densenet_bc100 | 12 | 769,162     | 0.8M  | 0.2879     | 4.51      | Table 2, C10+ (C10 without aug.: 5.92)    |

The ImageNet counts and MACs equal torchvision's (121: 7,978,856, as PAPERS.md); the paper tabulates neither for
ImageNet (its Fig. 3 plots error against both).

Differences from the paper, and options:
  * No convolution has a bias, as in the authors' Torch code (which deletes them) and torchvision; the paper is
    silent. The CIFAR stem is a bare 3x3 conv: the first dense layer's BN-ReLU follows it.
  * Convs are He-initialised with fan-out (std sqrt(2 / (k*k*C_out))), BN gamma 1, beta 0, the linear layer's bias 0:
    the authors' code ("initialization following ResNet"); torchvision uses fan-in, which is immaterial for loading
    its weights.
  * ``drop_rate``: dropout after every conv but the first (§4.2, used for C10/C100 without augmentation, 0.2). Off by
    default, as for C10+ and ImageNet.
  * ``memory_efficient=True`` recomputes each layer's concatenation, BN-ReLU and first conv in the backward pass
    (``torch.utils.checkpoint``) instead of storing them, as the authors' memory-efficient implementation (Pleiss et
    al. 2017, arXiv:1707.06990) and torchvision do: the same outputs and gradients, less activation memory, more
    compute. Unlike torchvision's, the recomputation does not update the BN running statistics a second time.
    ``python benchmarks/densenet_memory.py --threads 1`` measured one training step (forward + backward) on the
    2-core AMD EPYC (torch 2.14.1, 1 thread) while other jobs loaded it (load average about 14): the saved bytes are
    exact and the same on any machine, the peak includes allocator slack, and the time ratio is only indicative:

    | model          | batch, input | saved for backward, MiB | peak RSS growth, MiB   | time      |
    |----------------|--------------|-------------------------|------------------------|-----------|
    | densenet_bc100 | 64, 32x32    | 2,129 -> 773 (0.36x)    | 2,351 -> 1,190 (0.51x) | 1.17x     |
    | densenet121    | 16, 224x224  | 2,020 -> 975 (0.48x)    | 2,278 -> 1,457 (0.64x) | 1.27x     |
  * ``num_classes`` defaults to the paper's dataset (1000 for ImageNet, 10 for CIFAR-10); ``in_chans`` is an option.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ..errors import CheckpointError, ConfigError
from ._layers import fresh_head, he_init_convs
from ._registry import Counts, PaperRef, Reported, Traits, last_stage, register_converter, register_variants

PAPER = PaperRef(
    title="Densely Connected Convolutional Networks",
    authors="Gao Huang, Zhuang Liu, Laurens van der Maaten, Kilian Q. Weinberger",
    year=2017,
    venue="CVPR",
    arxiv="1608.06993",
)


@dataclass(frozen=True)
class DenseNetConfig:
    """One DenseNet architecture.

    Attributes:
        depths: dense layers per block.
        growth_rate: k, the feature maps each dense layer adds.
        stem_width: channels out of the stem (2k for the BC nets, 16 for the basic CIFAR DenseNet).
        bottleneck: "B": a BN-ReLU-Conv(1x1) to ``bn_size * k`` maps before each layer's 3x3 conv.
        compression: "C": theta, the fraction of channels a transition layer keeps (1.0: all).
        bn_size: the bottleneck's width in multiples of k (4 in the paper).
        stem: "imagenet" (7x7/2 conv, BN-ReLU, 3x3/2 max-pool) or "cifar" (one 3x3 conv).
        paper_classes: classes of the dataset the paper trained this variant on; the default ``num_classes``.
    """

    depths: tuple[int, ...]
    growth_rate: int
    stem_width: int
    bottleneck: bool = True
    compression: float = 0.5
    bn_size: int = 4
    stem: Literal["imagenet", "cifar"] = "imagenet"
    paper_classes: int = 1000


# fmt: off
VARIANTS = {
    "densenet121":    DenseNetConfig((6, 12, 24, 16), 32, 64),
    "densenet169":    DenseNetConfig((6, 12, 32, 32), 32, 64),
    "densenet201":    DenseNetConfig((6, 12, 48, 32), 32, 64),
    "densenet161":    DenseNetConfig((6, 12, 36, 24), 48, 96),
    "densenet40":     DenseNetConfig((12, 12, 12), 12, 16, bottleneck=False, compression=1.0, stem="cifar",
                                     paper_classes=10),
    "densenet_bc100": DenseNetConfig((16, 16, 16), 12, 24, stem="cifar", paper_classes=10),
}

_README = "authors' README (liuzhuang13/DenseNet), ImageNet val, 224x224 1-crop"
_T2 = "Table 2, CIFAR-10 test error with standard augmentation (C10+)"
REPORTED = {
    "densenet121":    Reported(top1_err=25.0, source=_README),
    "densenet169":    Reported(top1_err=23.6, source=_README),
    "densenet201":    Reported(top1_err=22.5, source=_README),
    "densenet161":    Reported(top1_err=22.2, source=_README),
    "densenet40":     Reported(params_m=1.0, top1_err=5.24, dataset="CIFAR-10", source=_T2 + "; C10: 7.00"),
    "densenet_bc100": Reported(params_m=0.8, top1_err=4.51, dataset="CIFAR-10", source=_T2 + "; C10: 5.92"),
}

_TV = "params and GMACs = torchvision densenet*"
_CF = "params = closed-form recount (tests/test_densenet.py)"
COUNTS = {
    "densenet121":    Counts(7_978_856,  2_834_161_664, _TV),
    "densenet169":    Counts(14_149_480, 3_359_843_328, _TV),
    "densenet201":    Counts(20_013_928, 4_291_365_888, _TV),
    "densenet161":    Counts(28_681_000, 7_727_907_072, _TV),
    "densenet40":     Counts(1_019_722,  264_812_928,   _CF),
    "densenet_bc100": Counts(769_162,    287_929_692,   _CF),
}
# fmt: on


class DenseLayer(nn.Module):
    """BN-ReLU-Conv(3x3) producing k maps from the concatenation of all earlier maps (Eq. 2); with ``bottleneck``,
    BN-ReLU-Conv(1x1) to ``bn_size * k`` maps first (§3, "Bottleneck layers").

    Args:
        memory_efficient: recompute the concatenation, the first BN-ReLU and the first conv in the backward pass.
    """

    def __init__(
        self,
        in_ch: int,
        growth_rate: int,
        *,
        bottleneck: bool,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        mid = bn_size * growth_rate if bottleneck else growth_rate
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, mid, 1 if bottleneck else 3, padding=0 if bottleneck else 1, bias=False)
        if bottleneck:
            self.norm2 = nn.BatchNorm2d(mid)
            self.conv2 = nn.Conv2d(mid, growth_rate, 3, padding=1, bias=False)
        self.bottleneck = bottleneck
        self.drop_rate = drop_rate
        self.memory_efficient = memory_efficient

    def _first_conv(self, *features: Tensor, recompute: bool = False) -> Tensor:
        x = torch.cat(features, dim=1)  # (B, C_0 + i*k, H, W)
        if recompute and self.training:
            # Batch statistics, as in the forward pass, but throw-away copies of the running ones, so that they are
            # updated once per step, not twice (the copies keep the op and what it saves for backward the same).
            norm = self.norm1
            mean, var = norm.running_mean.clone(), norm.running_var.clone()
            x = F.batch_norm(x, mean, var, norm.weight, norm.bias, training=True, momentum=0.0, eps=norm.eps)
        else:
            x = self.norm1(x)
        return self.conv1(F.relu(x))

    def _checkpointed(self, features: list[Tensor]) -> Tensor:
        calls = 0

        def run(*feats: Tensor) -> Tensor:
            nonlocal calls
            calls += 1
            return self._first_conv(*feats, recompute=calls > 1)

        return checkpoint(run, *features, use_reentrant=False)

    def forward(self, features: list[Tensor]) -> Tensor:
        """The maps of every earlier layer (each (B, C_j, H, W)) -> this layer's k new maps (B, k, H, W)."""
        if self.memory_efficient and torch.is_grad_enabled() and any(f.requires_grad for f in features):
            out = self._checkpointed(features)
        else:
            out = self._first_conv(*features)
        if self.bottleneck:
            out = F.dropout(out, self.drop_rate, self.training)
            out = self.conv2(F.relu(self.norm2(out)))
        return F.dropout(out, self.drop_rate, self.training)


class DenseBlock(nn.Module):
    """``depth`` dense layers; the output concatenates the input with every layer's new maps (Fig. 1)."""

    def __init__(self, in_ch: int, depth: int, growth_rate: int, **layer_kwargs: Any) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(in_ch + i * growth_rate, growth_rate, **layer_kwargs) for i in range(depth)
        )
        self.out_ch = in_ch + depth * growth_rate

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, dim=1)  # (B, C_in + depth*k, H, W)


class Transition(nn.Module):
    """BN-ReLU-Conv(1x1) to ``out_ch`` maps, then 2x2 average pooling (§3, "Transition layers")."""

    def __init__(self, in_ch: int, out_ch: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_ch)
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.drop_rate = drop_rate

    def forward(self, x: Tensor) -> Tensor:
        x = F.dropout(self.conv(F.relu(self.norm(x))), self.drop_rate, self.training)
        return F.avg_pool2d(x, 2)


def _stem(kind: str, in_chans: int, width: int) -> nn.Sequential:
    """Table 1's 7x7/2 conv, BN-ReLU and 3x3/2 max-pool, or §4.1's single 3x3 conv for 32x32 inputs."""
    if kind == "imagenet":
        return nn.Sequential(OrderedDict(
            conv=nn.Conv2d(in_chans, width, 7, stride=2, padding=3, bias=False),
            bn=nn.BatchNorm2d(width),
            act=nn.ReLU(inplace=True),
            pool=nn.MaxPool2d(3, stride=2, padding=1),
        ))
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(in_chans, width, 3, padding=1, bias=False)))


class DenseNet(nn.Module):
    """Stem, dense blocks with transition layers between them, BN-ReLU, global average pooling, one linear layer."""

    def __init__(
        self,
        cfg: DenseNetConfig,
        *,
        num_classes: int,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        _check(cfg, drop_rate)
        self.stem = _stem(cfg.stem, in_chans, cfg.stem_width)
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        ch = cfg.stem_width
        for i, depth in enumerate(cfg.depths, start=1):
            block = DenseBlock(ch, depth, cfg.growth_rate, bottleneck=cfg.bottleneck, bn_size=cfg.bn_size,
                               drop_rate=drop_rate, memory_efficient=memory_efficient)
            stages[f"block{i}"] = block
            ch = block.out_ch
            if i < len(cfg.depths):
                out = math.floor(ch * cfg.compression)
                stages[f"transition{i}"] = Transition(ch, out, drop_rate)
                ch = out
        self.stages = nn.Sequential(stages)
        self.norm = nn.BatchNorm2d(ch)
        self.num_features = ch
        self.head = nn.Linear(ch, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """He et al. 2015 (arXiv:1502.01852) normal init with fan-out for convs, BN gamma 1 and beta 0, zero linear
        bias: the authors' Torch code ("initialization following ResNet", fb.resnet.torch)."""
        if self.head.weight.is_meta:  # nothing to initialise, and meta normal_ is slow
            return
        he_init_convs(self)
        nn.init.zeros_(self.head.bias)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the linear layer with a freshly initialised one with ``num_classes`` outputs."""
        self.head = fresh_head(self.head, self.num_features, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> BN-ReLU'd, globally average-pooled features (B, D)."""
        return F.relu(self.norm(self.stages(self.stem(x)))).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> logits (B, num_classes)."""
        return self.head(self.forward_features(x))


def _check(cfg: DenseNetConfig, drop_rate: float) -> None:
    if cfg.stem not in ("imagenet", "cifar"):
        raise ConfigError(f"stem must be 'imagenet' or 'cifar', not {cfg.stem!r}")
    if not 0 < cfg.compression <= 1:
        raise ConfigError(f"compression must be in (0, 1] (the paper's theta; 0.5 for BC nets), not {cfg.compression}")
    if cfg.growth_rate < 1 or cfg.stem_width < 1 or cfg.bn_size < 1 or not cfg.depths or min(cfg.depths) < 1:
        raise ConfigError("growth_rate, stem_width, bn_size and every entry of depths must be positive integers")
    if not 0 <= drop_rate < 1:
        raise ConfigError(f"drop_rate must be in [0, 1), not {drop_rate}")


TRAITS = Traits(convolutional=True, cam_layer=last_stage)


@register_variants(
    VARIANTS,
    paper=PAPER,
    traits=TRAITS,
    reported=REPORTED,
    counts=COUNTS,
    input_size={n: (3, 32, 32) if c.stem == "cifar" else (3, 224, 224) for n, c in VARIANTS.items()},
    small_input={n: (3, 32, 32) if c.stem == "cifar" else (3, 64, 64) for n, c in VARIANTS.items()},
)
def densenet(
    cfg: DenseNetConfig,
    *,
    num_classes: int | None = None,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    memory_efficient: bool = False,
) -> DenseNet:
    """Build a DenseNet.

    Args:
        cfg: the variant's architecture.
        num_classes: outputs of the linear layer; defaults to the paper's dataset (1000 ImageNet, 10 CIFAR-10).
        in_chans: input channels.
        drop_rate: dropout after every conv but the stem's (§4.2: 0.2 without data augmentation).
        memory_efficient: checkpoint each dense layer's concatenation, BN-ReLU and first conv (recomputed in backward).
    """
    classes = cfg.paper_classes if num_classes is None else num_classes
    return DenseNet(cfg, num_classes=classes, in_chans=in_chans, drop_rate=drop_rate,
                    memory_efficient=memory_efficient)


# torchvision's keys; its released weight files spell a dense layer's "norm1" as "norm.1" (pre-0.4 PyTorch names).
_TV_LAYER = re.compile(r"features\.denseblock(\d+)\.denselayer(\d+)\.(norm|conv)\.?([12])\.(.+)")
_TV_OTHER = {"conv0": "stem.conv", "norm0": "stem.bn", "norm5": "norm"}


# Decorators apply bottom-up, so densenet121 is registered (and listed) first.
@register_converter("densenet161", "densenet161")
@register_converter("densenet201", "densenet201")
@register_converter("densenet169", "densenet169")
@register_converter("densenet121", "densenet121")
def from_torchvision(state: Mapping[str, Any]) -> dict[str, Any]:
    """Rename a torchvision ``densenet*`` state dict (either spelling of its layer keys) to ours.

    torchvision's ``features.conv0/norm0`` are our ``stem.conv/bn``, ``features.denseblockN.denselayerJ`` is
    ``stages.blockN.layers.{J-1}``, ``features.transitionN`` is ``stages.transitionN``, ``features.norm5`` is
    ``norm`` and ``classifier`` is ``head``.
    """
    out: dict[str, Any] = {}
    for key, value in state.items():
        if m := _TV_LAYER.fullmatch(key):
            block, layer, kind, idx, rest = m.groups()
            new = f"stages.block{block}.layers.{int(layer) - 1}.{kind}{idx}.{rest}"
        elif key.startswith("features.transition"):
            new = "stages." + key.removeprefix("features.")
        elif key.startswith("classifier."):
            new = "head." + key.removeprefix("classifier.")
        else:
            name, _, rest = key.removeprefix("features.").partition(".")
            if not key.startswith("features.") or name not in _TV_OTHER:
                raise CheckpointError(f"unexpected key {key!r}: not a torchvision DenseNet state dict")
            new = f"{_TV_OTHER[name]}.{rest}"
        out[new] = value
    return out
