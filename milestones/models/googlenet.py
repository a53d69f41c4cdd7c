"""GoogLeNet (Inception v1): "Going Deeper with Convolutions". Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan,
Vanhoucke, Rabinovich. CVPR 2015. arXiv:1409.4842

| variant      | params paper    | params ours (with aux) | GMACs paper | GMACs ours | top-5 err paper         |
|--------------|-----------------|------------------------|-------------|------------|-------------------------|
| googlenet    | ~6.8M (Table 1) | 6,998,552 (13,378,280) | 1.5 (§1)    | 1.583      | 10.07 (Table 3, 1 crop) |
| googlenet_tv | -               | 6,624,904 (13,004,888) | -           | 1.498      | - (torchvision: 10.47)  |

Paper params: the sum of Table 1's params column (never stated as a total); GMACs: the design budget of §1 ("1.5
billion multiply-adds at inference time"); top-5: Table 3, single model, 1 crop, ILSVRC 2014 validation. GMACs ours:
``torch.utils.flop_counter`` at 224x224 without auxiliary heads (pools, LRN and additions uncounted).
Our trained errors are in docs/results.md.

``googlenet`` is the network of the paper's Table 1 and Figure 3: stem conv 7x7/2 64 -> max-pool 3x3/2 -> LRN ->
conv 1x1 64 -> conv 3x3 192 -> LRN -> max-pool 3x3/2; Inception 3a-3b, max-pool 3x3/2, 4a-4e, max-pool 3x3/2, 5a-5b
(each with 1x1, 1x1->3x3, 1x1->5x5 and 3x3 max-pool->1x1 branches, every convolution biased and followed by a ReLU);
7x7 average pool, dropout 40%, linear. Max-pools round up (``ceil_mode``, as the paper's grid sizes 112/56/28/14/7
need). The auxiliary classifiers on 4a and 4d (5x5/3 average pool, 1x1 conv 128 + ReLU, FC 1024 + ReLU, dropout 70%,
linear) exist only with ``aux_logits=True`` and are reached only through :meth:`GoogLeNet.forward_with_aux`; their
losses are added with weight 0.3 during training and the heads are discarded at inference (paper §5).

``googlenet_tv`` is torchvision's ``googlenet``, so that its ImageNet weights load through the ``googlenet``
converter: the "5x5" branch uses a 3x3 convolution (pytorch/vision#906, inherited from the TF-slim port), convolutions
are bias-free and followed by batch norm (eps 1e-3), there is no LRN, the max-pool before 5a is 2x2/2, the final
dropout is 20% and the auxiliary heads pool adaptively to 4x4. torchvision's pretrained model runs with
``transform_input=True``: its weights expect inputs scaled to [-1, 1] and it re-maps ImageNet-normalised inputs
internally. Our model never re-normalises: feed converted weights ``(x - 0.5) / 0.5`` for ``x`` in [0, 1] (mean = std
= 0.5 per channel). The "top-5 err" entry for it is torchvision's published weights (acc@5 89.53), not the paper's.

Both variants are built without auxiliary heads by default: that is the network the paper evaluates and the one the
parameter counts above (and torchvision's weights) describe. A recipe with ``aux_loss_weight > 0`` builds the model
with ``aux_logits=True``; ``forward`` then still returns only the logits.

Differences from the paper:
  * The LRN constants are not in the paper; we use those of the BVLC Caffe replica (``models/bvlc_googlenet``): size 5,
    alpha 1e-4 (divided by the size, as Caffe and PyTorch do), beta 0.75, k 1.
  * Initialisation is not in the paper either; ``init_weights`` follows the same Caffe replica (see there).
  * The final 7x7 average pool is a global average pool, identical at 224x224 and usable at other input sizes.
  * The auxiliary heads keep the paper's fixed 5x5/3 pool, so they need a 14x14 grid at 4a/4d (224x224 input, or
    ``stem="cifar"`` at 28x28 to 32x32, whose 14x14 to 16x16 grid also pools to 4x4); other sizes raise an error.
  * ``stem="cifar"`` (an option, not a paper variant): the 7x7/2 convolution becomes a 3x3/1 convolution and the
    stem's two max-pools are dropped (LRNs stay), so a 32x32 image reaches Inception 3a at 32x32 and 5a at 8x8, the
    grids of kuangliu/pytorch-cifar's GoogLeNet (which also replaces the stem by one 3x3 conv and each 5x5 by two
    3x3s); ours keeps the stem's other layers and every Inception module unchanged. That costs 1.56 GMACs per 32x32
    image, as much as the paper's net at 224x224.
  * ``stem="cifar16"``: the same with the 3x3 convolution at stride 2, so 3a works at 16x16 and 5b at 4x4: a quarter
    of the multiply-adds (0.39 G), for CPU-sized comparisons (the ``quick`` compare suite). 4a and 4d work at 8x8, too
    small for the paper's auxiliary pool: auxiliary heads need ``aux_pool="adaptive"`` there (pool to 4x4).
  * ``num_classes`` and ``in_chans`` are options; the config fields (``batch_norm``, ``lrn``, ``dropout``, ...) can be
    overridden through ``create_model`` for ablations.

Ablation options (the paper's design is the default; used by the ``inception-1x1`` and ``googlenet-aux``
experiments):
  * ``reductions=False`` (config field): no 1x1 reductions before the 3x3 and 5x5 convolutions, which then read the
    module's full input (the "naive" module of Figure 2a); the pool projection stays, so every module keeps its Table 1
    output width and the rest of the network is unchanged: 25,305,944 parameters and 4.43 GMACs at 224 instead of
    6,998,552 and 1.58.
  * ``head="fc"`` (builder option; default ``"gap"``, the paper's average pool): the alternative §5 compares against
    ("a move from fully connected layers to average pooling improved the top-1 accuracy by about 0.6%"), which the
    paper does not specify. Ours: the final maps flattened (7x7x1024 at 224) -> FC 1024 + ReLU -> the same dropout and
    linear classifier, i.e. the auxiliary heads' FC 1024 on the full grid. It needs ``img_size`` (the input side, 224
    by default) to size the FC: 58,379,800 parameters instead of 6,998,552 at 224.
  * ``width`` (config field, default 1): every channel count (the stem's three convolutions, each Table 1 column, the
    auxiliary heads' 1x1 convolution and FC, the FC head's hidden layer) times ``width``, rounded. ``width=0.5`` costs
    about a quarter of the multiply-adds (97.7 MMACs instead of 390 with ``stem="cifar16"`` at 32x32): a knob for
    CPU-sized experiments (``inception-1x1``, ``googlenet-aux``), not a paper variant.
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
from ._layers import fresh_head, local_response_norm
from ._registry import Counts, PaperRef, Reported, Traits, register_converter, register_variants

PAPER = PaperRef(
    "Going Deeper with Convolutions",
    "Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke, Rabinovich",
    2015,
    venue="CVPR",
    arxiv="1409.4842",
)


@dataclass(frozen=True)
class GoogLeNetConfig:
    """What separates the paper's net from torchvision's; the Inception table (:data:`INCEPTION`) is shared.

    Attributes:
        branch5_kernel: kernel of the "#5x5" branch (torchvision: 3, pytorch/vision#906).
        batch_norm: bias-free convolutions followed by batch norm (eps 1e-3) instead of biased convolutions.
        lrn: local response normalisation after the stem's first max-pool and after its 3x3 convolution.
        pool4_kernel: kernel of the stride-2 max-pool before Inception 5a (torchvision: 2).
        aux_pool: ``"avg5s3"``: the paper's 5x5/3 average pool in the auxiliary heads; ``"adaptive"``: torchvision's
            adaptive average pool to 4x4.
        dropout: dropout before the classifier.
        aux_dropout: dropout before each auxiliary classifier.
        reductions: the 1x1 reductions before the 3x3 and 5x5 convolutions (False: Figure 2a's naive module with
            the pool projection kept; an ablation, not a variant).
        width: every channel count (the stem's, each Table 1 column, the auxiliary heads' convolution and FC, the
            FC head's hidden layer) times this, rounded; 0.5 costs about a quarter of the multiply-adds. A knob for
            CPU-sized experiments, not a paper variant.
    """

    branch5_kernel: int = 5
    batch_norm: bool = False
    lrn: bool = True
    pool4_kernel: int = 3
    aux_pool: Literal["avg5s3", "adaptive"] = "avg5s3"
    dropout: float = 0.4
    aux_dropout: float = 0.7
    reductions: bool = True
    width: float = 1.0


VARIANTS = {
    "googlenet": GoogLeNetConfig(
        branch5_kernel=5, batch_norm=False, lrn=True, pool4_kernel=3, aux_pool="avg5s3", dropout=0.4
    ),
    "googlenet_tv": GoogLeNetConfig(
        branch5_kernel=3, batch_norm=True, lrn=False, pool4_kernel=2, aux_pool="adaptive", dropout=0.2
    ),
}
REPORTED = {
    "googlenet": Reported(
        gmacs=1.5, top5_err=10.07, source="§1 design budget; Table 3, single model, 1 crop, ILSVRC 2014 val top-5"
    ),
}
COUNTS = {
    "googlenet":    Counts(params=6_998_552, macs=1_582_671_872, source="paper Table 1 layers, PAPERS.md §1.4"),
    "googlenet_tv": Counts(params=6_624_904, macs=1_498_376_192, source="torchvision googlenet(aux_logits=False)"),
}

# Paper Table 1: (name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj), one tuple per grid (28, 14, 7 at 224).
INCEPTION: tuple[tuple[tuple[str, int, int, int, int, int, int], ...], ...] = (
    (("3a", 64, 96, 128, 16, 32, 32), ("3b", 128, 128, 192, 32, 96, 64)),
    (
        ("4a", 192, 96, 208, 16, 48, 64),
        ("4b", 160, 112, 224, 24, 64, 64),
        ("4c", 128, 128, 256, 24, 64, 64),
        ("4d", 112, 144, 288, 32, 64, 64),
        ("4e", 256, 160, 320, 32, 128, 128),
    ),
    (("5a", 256, 160, 320, 32, 128, 128), ("5b", 384, 192, 384, 48, 128, 128)),
)
AUX_AT = ("4a", "4d")  # the auxiliary classifiers sit on the outputs of these modules (paper §5, Figure 3)
STEM_CHANNELS = (64, 64, 192)  # conv1 7x7/2, conv2 reduce 1x1, conv2 3x3
FC_HIDDEN = 1024  # head="fc": the auxiliary heads' FC width, on the flattened final maps
AUX_CONV = 128  # the auxiliary heads' 1x1 convolution (paper §5)


def _scaled(channels: int, width: float) -> int:
    """A channel count of the paper's net at ``width`` (at least 1)."""
    return max(1, round(channels * width))


def _caffe_lrn() -> nn.LocalResponseNorm:
    # BVLC Caffe replica: local_size 5, alpha 1e-4, beta 0.75, k 1, with Caffe dividing alpha by the size. The helper
    # takes AlexNet's undivided alpha, so pass 1e-4 / 5 to get exactly Caffe's layer.
    return local_response_norm(size=5, alpha=1e-4 / 5, beta=0.75, k=1.0)


class BasicConv(nn.Module):
    """Convolution ("same" padding) -> batch norm if ``batch_norm`` -> ReLU; the convolution is biased without BN."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, stride: int = 1, batch_norm: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=kernel_size // 2, bias=not batch_norm)
        # eps 1e-3 as torchvision and TF-slim, whose weights the BN variant loads
        self.bn = nn.BatchNorm2d(out_ch, eps=1e-3) if batch_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """The Inception module (paper Figure 2b): four parallel branches concatenated along channels.

    Args:
        in_ch: input channels.
        ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj: the paper's Table 1 columns.
        branch5_kernel: kernel of the "5x5" branch (3 in torchvision).
        batch_norm: batch norm after every convolution.
        reductions: 1x1 reductions before the 3x3 and 5x5 convolutions (False: they read all ``in_ch`` channels and
            ``ch3x3red``, ``ch5x5red`` are unused).
    """

    def __init__(
        self,
        in_ch: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        *,
        branch5_kernel: int = 5,
        batch_norm: bool = False,
        reductions: bool = True,
    ) -> None:
        super().__init__()
        bn = batch_norm

        def reduced(red: int, out: int, kernel: int) -> nn.Sequential:
            if not reductions:  # Figure 2a: the kernel x kernel convolution reads the full input
                return nn.Sequential(BasicConv(in_ch, out, kernel, batch_norm=bn))
            return nn.Sequential(BasicConv(in_ch, red, 1, batch_norm=bn), BasicConv(red, out, kernel, batch_norm=bn))

        self.branch1 = BasicConv(in_ch, ch1x1, 1, batch_norm=bn)
        self.branch2 = reduced(ch3x3red, ch3x3, 3)
        self.branch3 = reduced(ch5x5red, ch5x5, branch5_kernel)
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), BasicConv(in_ch, pool_proj, 1, batch_norm=bn)
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:  # (B, in_ch, H, W) -> (B, out_channels, H, W)
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


class InceptionAux(nn.Module):
    """Auxiliary classifier (paper §5): 4x4 average pool -> 1x1 conv 128 -> FC 1024 -> dropout -> linear."""

    def __init__(
        self, in_ch: int, num_classes: int, *, pool: str = "avg5s3", dropout: float = 0.7, batch_norm: bool = False,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        conv, hidden = _scaled(AUX_CONV, width), _scaled(FC_HIDDEN, width)
        self.pool: nn.Module = nn.AvgPool2d(5, stride=3) if pool == "avg5s3" else nn.AdaptiveAvgPool2d(4)
        self.conv = BasicConv(in_ch, conv, 1, batch_norm=batch_norm)
        self.fc = nn.Linear(conv * 4 * 4, hidden)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, 14, 14) -> (B, num_classes)
        # the paper's 5x5/3 pool gives the 4x4 grid its FC layer expects only from 14x14 to 16x16 inputs
        if isinstance(self.pool, nn.AvgPool2d) and not all(14 <= s <= 16 for s in x.shape[-2:]):
            raise ValueError(
                f"auxiliary head got a {tuple(x.shape[-2:])} grid at 4a/4d, needs 14x14 to 16x16 so that its 5x5/3 "
                'pool gives 4x4: use a 224x224 input, or 28x28 to 32x32 with stem="cifar"'
            )
        x = self.conv(self.pool(x)).flatten(1)  # (B, 128 * 4 * 4) at width 1
        return self.head(self.drop(F.relu(self.fc(x), inplace=True)))


def _stem(cfg: GoogLeNetConfig, in_chans: int, stem: str) -> nn.Sequential:
    c1, c2r, c2 = (_scaled(c, cfg.width) for c in STEM_CHANNELS)
    bn = cfg.batch_norm
    cifar = stem in ("cifar", "cifar16")
    layers: list[tuple[str, nn.Module]] = [
        ("conv1", BasicConv(in_chans, c1, 3 if cifar else 7, stride=1 if stem == "cifar" else 2, batch_norm=bn)),
        ("pool1", nn.MaxPool2d(3, stride=2, ceil_mode=True)),
        ("norm1", _caffe_lrn()),
        ("conv2_reduce", BasicConv(c1, c2r, 1, batch_norm=bn)),
        ("conv2", BasicConv(c2r, c2, 3, batch_norm=bn)),
        ("norm2", _caffe_lrn()),
        ("pool2", nn.MaxPool2d(3, stride=2, ceil_mode=True)),
    ]
    drop = ({"norm1", "norm2"} if not cfg.lrn else set()) | ({"pool1", "pool2"} if cifar else set())
    return nn.Sequential(OrderedDict((name, m) for name, m in layers if name not in drop))


def _final_grid(img_size: int, stem: str, pool4_kernel: int) -> int:
    """The side of 5b's output maps for an ``img_size`` input (7 at 224), as the stem and ceil-mode pools give it."""

    def out(n: int, k: int, s: int, p: int = 0, ceil: bool = False) -> int:
        o = (-(-(n + 2 * p - k) // s) if ceil else (n + 2 * p - k) // s) + 1
        return o - 1 if ceil and (o - 1) * s >= n + p else o  # PyTorch: the last window must start inside

    n = out(img_size, 7, 2, 3) if stem == "imagenet" else out(img_size, 3, 2 if stem == "cifar16" else 1, 1)
    if stem == "imagenet":
        n = out(out(n, 3, 2, ceil=True), 3, 2, ceil=True)  # pool1, pool2
    return out(out(n, 3, 2, ceil=True), pool4_kernel, 2, ceil=True)  # the pools before 4a and 5a


class GoogLeNet(nn.Module):
    """GoogLeNet: stem, three stages of Inception modules (each after the first opens with a stride-2 max-pool), head.

    Checkpoint keys: ``stem.{conv1,conv2_reduce,conv2}``, ``stages.{0,1,2}.{pool,3a,...,5b}``, ``aux.{4a,4d}`` (only
    with ``aux_logits``) and ``head``.
    """

    def __init__(
        self,
        cfg: GoogLeNetConfig,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        aux_logits: bool = False,
        stem: Literal["imagenet", "cifar", "cifar16"] = "imagenet",
        head: Literal["gap", "fc"] = "gap",
        img_size: int = 224,
    ) -> None:
        super().__init__()
        if stem not in ("imagenet", "cifar", "cifar16"):
            raise ConfigError(f"stem must be 'imagenet', 'cifar' or 'cifar16', got {stem!r}")
        if head not in ("gap", "fc"):
            raise ConfigError(f"head must be 'gap' (the paper's average pool) or 'fc', got {head!r}")
        if not isinstance(cfg.reductions, bool):
            raise ConfigError(f"reductions must be true or false, got {cfg.reductions!r}")
        if not 0 < cfg.width <= 4:
            raise ConfigError(f"width must be in (0, 4], got {cfg.width!r}")
        self.batch_norm = cfg.batch_norm
        self.stem = _stem(cfg, in_chans, stem)
        stages: list[nn.Module] = []
        aux: dict[str, nn.Module] = {}
        in_ch = _scaled(STEM_CHANNELS[-1], cfg.width)
        for i, table in enumerate(INCEPTION):
            blocks: list[tuple[str, nn.Module]] = []
            if i > 0:  # max-pool 3x3/2 before 4a; before 5a 3x3/2 in the paper, 2x2/2 in torchvision
                kernel = 3 if i == 1 else cfg.pool4_kernel
                blocks.append(("pool", nn.MaxPool2d(kernel, stride=2, ceil_mode=True)))
            for name, *widths in table:
                block = Inception(in_ch, *(_scaled(c, cfg.width) for c in widths), branch5_kernel=cfg.branch5_kernel,
                                  batch_norm=cfg.batch_norm, reductions=cfg.reductions)
                blocks.append((name, block))
                in_ch = block.out_channels
                if aux_logits and name in AUX_AT:
                    aux[name] = InceptionAux(
                        in_ch, num_classes, pool=cfg.aux_pool, dropout=cfg.aux_dropout, batch_norm=cfg.batch_norm,
                        width=cfg.width,
                    )
            stages.append(nn.Sequential(OrderedDict(blocks)))
        self.stages = nn.Sequential(*stages)
        self.aux = nn.ModuleDict(aux)
        self.head_type, self.img_size = head, img_size
        self.grid = _final_grid(img_size, stem, cfg.pool4_kernel) if head == "fc" else 0
        if head == "fc" and self.grid < 1:
            raise ConfigError(f"img_size={img_size} is too small for head='fc'")
        # head="fc": FC 1024 on the flattened (in_ch, grid, grid) maps instead of the average pool (paper §5)
        self.pre_logits: nn.Module = nn.Identity() if head == "gap" else nn.Sequential(OrderedDict(
            fc=nn.Linear(in_ch * self.grid**2, _scaled(FC_HIDDEN, cfg.width)), relu=nn.ReLU(inplace=True)))
        self.num_features = in_ch if head == "gap" else _scaled(FC_HIDDEN, cfg.width)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.num_features, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """Without batch norm (the paper's net): the paper gives no scheme, so we follow the BVLC Caffe replica
        (``models/bvlc_googlenet/train_val.prototxt``): Caffe's "xavier" weights, U(-sqrt(3/fan_in), sqrt(3/fan_in)),
        and biases 0.2, except the classifiers' biases, 0. With batch norm: torchvision's ``googlenet`` scheme, a
        normal(0, 0.01) truncated at +-2 for convolution and linear weights, BN weight 1 and bias 0, and zero biases.
        """
        classifiers = {self.head, *(a.head for a in self.aux.values())}
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if self.batch_norm:
                    nn.init.trunc_normal_(m.weight, std=0.01, a=-2.0, b=2.0)
                else:
                    nn.init.kaiming_uniform_(m.weight, nonlinearity="linear")  # gain 1: bound sqrt(3 / fan_in)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0.0 if self.batch_norm or m in classifiers else 0.2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _trunk(self, x: Tensor, aux_out: list[Tensor] | None = None) -> Tensor:
        x = self.stem(x)  # (B, 192, 28, 28) at 224
        for stage in self.stages:
            for name, block in stage.named_children():
                x = block(x)
                if aux_out is not None and name in self.aux:
                    aux_out.append(self.aux[name](x))
        return x  # (B, 1024, 7, 7) at 224

    def _pool(self, x: Tensor, size: tuple[int, ...]) -> Tensor:  # (B, 1024, h, w) -> (B, 1024)
        if self.head_type == "gap":
            return x.mean(dim=(2, 3))
        if tuple(x.shape[-2:]) != (self.grid, self.grid):
            raise ConfigError(f"this GoogLeNet's head='fc' was built for {self.img_size}x{self.img_size} inputs "
                              f"({self.grid}x{self.grid} final maps), but a {size[0]}x{size[1]} input gives "
                              f"{x.shape[-2]}x{x.shape[-1]}; build it with img_size={size[-1]}")
        return self.pre_logits(x.flatten(1))

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, 1024)
        return self._pool(self._trunk(x), tuple(x.shape[-2:]))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.head(self.drop(self.forward_features(x)))

    def forward_with_aux(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits and the auxiliary logits ``[aux on 4a, aux on 4d]``, each ``(B, num_classes)``, in any mode.

        Raises:
            ConfigError: the model was built without ``aux_logits=True``.
        """
        if not self.aux:
            raise ConfigError("this GoogLeNet has no auxiliary heads: build it with create_model(..., aux_logits=True)")
        aux_out: list[Tensor] = []
        x = self._pool(self._trunk(x, aux_out), tuple(x.shape[-2:]))
        return self.head(self.drop(x)), aux_out

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier and the auxiliary classifiers with fresh ``num_classes``-way ones."""
        self.head = fresh_head(self.head, self.num_features, num_classes)
        for a in self.aux.values():
            a.head = fresh_head(a.head, a.head.in_features, num_classes)


def _cam_layer(model: GoogLeNet) -> str:
    # Inception 5b: the stages are containers that forward() walks, not calls, so the hook goes on the block itself.
    last = len(model.stages) - 1
    return f"stages.{last}.{list(dict(model.stages[last].named_children()))[-1]}"


TRAITS = Traits(convolutional=True, cam_layer=_cam_layer)


@register_variants(
    VARIANTS, paper=PAPER, traits=TRAITS, reported=REPORTED, counts=COUNTS, input_size=(3, 224, 224),
    small_input=(3, 64, 64),
)
def googlenet(
    cfg: GoogLeNetConfig,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    aux_logits: bool = False,
    stem: Literal["imagenet", "cifar", "cifar16"] = "imagenet",
    head: Literal["gap", "fc"] = "gap",
    img_size: int = 224,
) -> GoogLeNet:
    """Build GoogLeNet as published (``googlenet``) or as torchvision builds it (``googlenet_tv``).

    Args:
        cfg: one row of :data:`VARIANTS`.
        num_classes: classifier outputs.
        in_chans: input channels.
        aux_logits: add the two auxiliary classifiers (on 4a and 4d), used through ``forward_with_aux``.
        stem: ``"imagenet"`` (the paper's), ``"cifar"`` (3x3/1 first conv, no stem max-pools, for 32x32 inputs) or
            ``"cifar16"`` (the same at stride 2: Inception 3a at 16x16, a quarter of the cost).
        head: ``"gap"`` (the paper's global average pool) or ``"fc"`` (FC 1024 on the flattened final maps).
        img_size: the input side ``head="fc"`` sizes its FC for (ignored with ``"gap"``).
    """
    return GoogLeNet(cfg, num_classes=num_classes, in_chans=in_chans, aux_logits=aux_logits, stem=stem, head=head,
                     img_size=img_size)


_TV_TOP = {"conv1": "stem.conv1", "conv2": "stem.conv2_reduce", "conv3": "stem.conv2", "fc": "head"}
_TV_AUX = {"conv": "conv", "fc1": "fc", "fc2": "head"}
_STAGE_OF = {row[0]: i for i, table in enumerate(INCEPTION) for row in table}


@register_converter("googlenet", "googlenet_tv")
def convert_torchvision_googlenet(state_dict: Mapping[str, Any], *, keep_aux: bool = False) -> dict[str, Any]:
    """Map a torchvision ``googlenet`` state dict onto ``googlenet_tv``.

    torchvision's weight file holds auxiliary heads that were never trained (they are dropped unless
    ``aux_logits=True``); they are dropped here too unless ``keep_aux``, in which case load into
    ``create_model("googlenet_tv", aux_logits=True)``. The pretrained weights expect inputs in [-1, 1] (torchvision's
    ``transform_input=True``); see the module docstring.
    """
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        top, _, rest = key.partition(".")
        if top in ("aux1", "aux2"):
            if not keep_aux:
                continue
            sub, _, tail = rest.partition(".")
            new = f"aux.{AUX_AT[int(top[-1]) - 1]}.{_TV_AUX.get(sub, sub)}.{tail}"
        elif top.startswith("inception") and top.removeprefix("inception") in _STAGE_OF:
            name = top.removeprefix("inception")
            new = f"stages.{_STAGE_OF[name]}.{name}.{rest}"
        elif top in _TV_TOP:
            new = f"{_TV_TOP[top]}.{rest}"
        else:
            raise CheckpointError(f"unexpected key {key!r}: not a torchvision googlenet state dict")
        out[new] = value
    return out
