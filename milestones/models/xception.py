"""Xception: "Xception: Deep Learning with Depthwise Separable Convolutions". Chollet. CVPR 2017. arXiv:1610.02357

Inception's "extreme" form (§2): every Inception module becomes a depthwise separable convolution (a 3x3 depthwise
convolution, then a 1x1 pointwise one, no non-linearity between): 36 convolutional layers in 14 modules, all but the
first and the last with residual connections (§3).

| variant  | params paper         | params ours | GMACs paper | GMACs ours | top-1 / top-5 err paper       |
|----------|----------------------|-------------|-------------|------------|-------------------------------|
| xception | 22,855,952 (Table 3) | 22,855,952  | -           | 8.357      | 21.0 / 5.5 (Table 1, 1 crop)  |

Paper numbers: Table 3's parameter count (the net without the optional fully-connected layers) and Table 1's
single-crop ImageNet validation accuracy (0.790 top-1, 0.945 top-5) at 299x299; the paper gives no multiply-adds.
Ours: ``torch.utils.flop_counter`` at 299x299 (additions of the shortcuts, pools and BN uncounted). The count equals
timm's ``legacy_xception`` (the Keras weights ported to PyTorch), whose state dict :func:`convert_timm_xception` maps
onto ours with the same logits (``tests/test_xception.py``).

Figure 5: entry flow (3x3/2 32, 3x3 64, unpadded, each with BN and ReLU; three blocks of two separable convolutions
128, 256, 728 each ending in a 3x3/2 max-pool, with 1x1/2 convolution + BN shortcuts), middle flow (8 blocks of
three separable convolutions at 728 channels, identity shortcuts, 19x19 at 299), exit flow (separable 728 and
1024, max-pool, 1x1/2 shortcut; separable 1536 and 2048, each with ReLU), global average pool, dropout 0.5 (§4.3),
logistic regression. Every convolution is followed by batch norm (Figure 5's caption); inside a block each separable
convolution is preceded by a ReLU, except the first block's first (it follows the stem's ReLU); the shortcut reads
the block's input before that ReLU.

Differences from the paper, and options:
  * timm's (and ours) 3x3/2 max-pools pad one pixel on every side; the Keras original pads "same", which for an
    even-sized input (74x74 in block 2 at 299) pads only the bottom and right: the same output size, windows shifted
    by one pixel. timm's ported weights are used with timm's padding; we follow timm.
  * Batch norm eps is PyTorch's 1e-5, as timm's (Keras: 1e-3); the paper does not give it. Initialisation is not in
    the paper either (see ``init_weights``).
  * ``stem="cifar"`` (an option, not a variant): both stem convolutions padded and at stride 1, so a 32x32 image
    enters block 1 at 32x32 and the middle flow at 4x4 (0.37 GMACs; with the paper's stem it would be 2x2).
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
from ._layers import fresh_head, he_init_convs
from ._registry import Counts, PaperRef, Reported, Traits, register_converter, register_variants

PAPER = PaperRef("Xception: Deep Learning with Depthwise Separable Convolutions", "Chollet", 2017, venue="CVPR",
                 arxiv="1610.02357")


@dataclass(frozen=True)
class XceptionConfig:
    """Xception's flows as data (paper Figure 5).

    Attributes:
        stem_widths: widths of the two plain 3x3 convolutions (the first at stride 2).
        blocks: one row per residual block: the widths of its separable convolutions and its stride (2: a 3x3/2
            max-pool ends the block and the shortcut is a 1x1/2 convolution with batch norm; 1: identity shortcut).
        tail_widths: widths of the two separable convolutions after the last block (exit flow).
        drop_rate: dropout before the logistic regression (§4.3: 0.5 on ImageNet).
    """

    stem_widths: tuple[int, int] = (32, 64)
    blocks: tuple[tuple[tuple[int, ...], int], ...] = ()
    tail_widths: tuple[int, int] = (1536, 2048)
    drop_rate: float = 0.5


ENTRY = (((128, 128), 2), ((256, 256), 2), ((728, 728), 2))
MIDDLE = (((728, 728, 728), 1),) * 8
EXIT = (((728, 1024), 2),)
VARIANTS = {"xception": XceptionConfig(blocks=ENTRY + MIDDLE + EXIT)}
REPORTED = {
    "xception": Reported(params_m=22.855952, top1_err=21.0, top5_err=5.5,
                         source="Table 3 (22,855,952 parameters); Table 1, single crop 299x299, ImageNet val"),
}
COUNTS = {"xception": Counts(params=22_855_952, macs=8_357_403_496, source="paper Table 3; timm legacy_xception")}


class SeparableConv(nn.Module):
    """Depthwise 3x3 convolution then pointwise 1x1 convolution, no non-linearity between them (§4.2, §5.3)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch, bias=False)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class Block(nn.Module):
    """A residual block of Figure 5: (ReLU -> separable conv -> BN) per width, then max-pool 3x3/2 if strided.

    Args:
        start_with_relu: False only for the first block, which follows the stem's ReLU.
    """

    def __init__(self, in_ch: int, widths: tuple[int, ...], stride: int, *, start_with_relu: bool) -> None:
        super().__init__()
        chans = (in_ch, *widths)
        self.sepconvs = nn.ModuleList(SeparableConv(a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm2d(w) for w in widths)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.skip = None
        if stride != 1 or in_ch != widths[-1]:
            self.skip = nn.Sequential(OrderedDict(conv=nn.Conv2d(in_ch, widths[-1], 1, stride=stride, bias=False),
                                                  bn=nn.BatchNorm2d(widths[-1])))
        self.start_with_relu = start_with_relu

    def forward(self, x: Tensor) -> Tensor:  # (B, in_ch, H, W) -> (B, widths[-1], H / stride, W / stride)
        out = x
        for i, (conv, norm) in enumerate(zip(self.sepconvs, self.norms)):
            if i > 0 or self.start_with_relu:
                out = F.relu(out)  # not in place: the shortcut reads x before the ReLU
            out = norm(conv(out))
        out = self.pool(out)
        return out + (x if self.skip is None else self.skip(x))


class Xception(nn.Module):
    """Entry flow (stem, 3 strided blocks), middle flow (8 blocks at 728 channels), exit flow, pool, classifier.

    Checkpoint keys: ``stem.{conv1,bn1,conv2,bn2}``, ``blocks.{0..11}``, ``tail.{conv3,bn3,conv4,bn4}``, ``head``.
    """

    def __init__(self, cfg: XceptionConfig, *, num_classes: int = 1000, in_chans: int = 3,
                 stem: Literal["imagenet", "cifar"] = "imagenet") -> None:
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ConfigError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        if not cfg.blocks:
            raise ConfigError("Xception needs at least one block")
        cifar = stem == "cifar"
        c1, c2 = cfg.stem_widths
        self.stem = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(in_chans, c1, 3, stride=1 if cifar else 2, padding=int(cifar), bias=False),
            bn1=nn.BatchNorm2d(c1), act1=nn.ReLU(inplace=True),
            conv2=nn.Conv2d(c1, c2, 3, padding=int(cifar), bias=False), bn2=nn.BatchNorm2d(c2),
            act2=nn.ReLU(inplace=True)))
        blocks, in_ch = [], c2
        for i, (widths, stride) in enumerate(cfg.blocks):
            blocks.append(Block(in_ch, tuple(widths), stride, start_with_relu=i > 0))
            in_ch = widths[-1]
        self.blocks = nn.Sequential(*blocks)
        t1, t2 = cfg.tail_widths
        self.tail = nn.Sequential(OrderedDict(
            conv3=SeparableConv(in_ch, t1), bn3=nn.BatchNorm2d(t1), act3=nn.ReLU(inplace=True),
            conv4=SeparableConv(t1, t2), bn4=nn.BatchNorm2d(t2), act4=nn.ReLU(inplace=True)))
        self.num_features = t2
        self.drop = nn.Dropout(cfg.drop_rate)
        self.head = nn.Linear(t2, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """Not in the paper: He normal (fan-out, arXiv:1502.01852) for convolutions as timm, BN weight 1 and bias 0,
        PyTorch's default for the classifier with a zero bias."""
        if self.head.weight.is_meta:
            return
        he_init_convs(self)
        nn.init.zeros_(self.head.bias)

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, 2048)
        return self.tail(self.blocks(self.stem(x))).mean(dim=(2, 3))  # (B, 2048, 10, 10) before the pool at 299

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.head(self.drop(self.forward_features(x)))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh ``num_classes``-way one."""
        self.head = fresh_head(self.head, self.num_features, num_classes)


# Grad-CAM on the exit flow: the entry and middle flows are in ``blocks``, the exit flow in ``tail``
TRAITS = Traits(convolutional=True, cam_layer="tail")


@register_variants(VARIANTS, paper=PAPER, traits=TRAITS, reported=REPORTED, counts=COUNTS, input_size=(3, 299, 299),
                   small_input=(3, 32, 32))
def xception(cfg: XceptionConfig, *, num_classes: int = 1000, in_chans: int = 3,
             stem: Literal["imagenet", "cifar"] = "imagenet") -> Xception:
    """Build Xception.

    Args:
        cfg: the row of :data:`VARIANTS`.
        num_classes: classifier outputs.
        in_chans: input channels.
        stem: ``"imagenet"`` (the paper's: 3x3/2 and 3x3, unpadded) or ``"cifar"`` (both at stride 1, padded).
    """
    return Xception(cfg, num_classes=num_classes, in_chans=in_chans, stem=stem)


_TIMM_REP = re.compile(r"block(\d+)\.rep\.(\d+)\.(.+)")
_TIMM_SKIP = re.compile(r"block(\d+)\.(skip|skipbn)\.(.+)")
_TIMM_TOP = {"conv1": "stem.conv1", "bn1": "stem.bn1", "conv2": "stem.conv2", "bn2": "stem.bn2",
             "conv3": "tail.conv3", "bn3": "tail.bn3", "conv4": "tail.conv4", "bn4": "tail.bn4", "fc": "head"}
_TIMM_SEP = {"conv1": "depthwise", "pointwise": "pointwise"}


@register_converter("legacy_xception", "xception", library="timm")
def convert_timm_xception(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Map a timm ``legacy_xception`` state dict onto ``xception``.

    timm's block ``i`` (1-based) is our ``blocks.{i-1}``; its ``rep`` is a flat Sequential (ReLU, SeparableConv2d,
    BatchNorm2d, ... MaxPool2d) whose first ReLU is absent in block 1, so a position maps to the k-th separable conv
    or norm; ``skip``/``skipbn`` are our ``skip.conv``/``skip.bn``; a separable conv's ``conv1`` is our
    ``depthwise``.
    """
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        if m := _TIMM_REP.fullmatch(key):
            block, pos, rest = int(m[1]), int(m[2]), m[3]
            pos += block == 1  # block 1 lacks the leading ReLU; the others are (ReLU, sep, BN) triples from 0
            k, kind = divmod(pos, 3)
            sub, _, tail = rest.partition(".")
            if kind == 1 and sub in _TIMM_SEP:
                new = f"blocks.{block - 1}.sepconvs.{k}.{_TIMM_SEP[sub]}.{tail}"
            elif kind == 2:
                new = f"blocks.{block - 1}.norms.{k}.{rest}"
            else:
                raise CheckpointError(f"unexpected key {key!r}: not a timm legacy_xception state dict")
        elif m := _TIMM_SKIP.fullmatch(key):
            new = f"blocks.{int(m[1]) - 1}.skip.{'conv' if m[2] == 'skip' else 'bn'}.{m[3]}"
        else:
            top, _, rest = key.partition(".")
            if top not in _TIMM_TOP:
                raise CheckpointError(f"unexpected key {key!r}: not a timm legacy_xception state dict")
            sub, _, tail = rest.partition(".")
            if top in ("conv3", "conv4"):
                rest = f"{_TIMM_SEP.get(sub, sub)}.{tail}"
            new = f"{_TIMM_TOP[top]}.{rest}"
        out[new] = value
    return out
