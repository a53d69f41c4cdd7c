"""AlexNet: "ImageNet Classification with Deep Convolutional Neural Networks". Krizhevsky, Sutskever, Hinton. NIPS 2012.

| variant     | params paper      | params ours | GMACs ours       | top-1 / top-5 err paper                       |
|-------------|-------------------|-------------|------------------|-----------------------------------------------|
| alexnet     | 60M (abstract)    | 60,965,224  | 0.7244 (227x227) | 40.7 / 18.2 (Table 2, 1 CNN, ILSVRC-2012 val) |
| alexnet_owt | -                 | 61,100,840  | 0.7142 (224x224) | -                                             |

``alexnet`` is the two-tower net as published (§3.5, Figure 2): conv1 96@11x11/4, conv2 256@5x5, conv3 384@3x3,
conv4 384@3x3, conv5 256@3x3, FC6 4096, FC7 4096, FC8 1000. The two GPUs of the paper are two towers of channels:
conv2, conv4 and conv5 read only the maps of their own tower (``groups=2``), conv3 and the FC layers read both. ReLU
after every layer; local response normalisation b = a / (k + alpha sum a^2)^beta with k=2, n=5, alpha=1e-4,
beta=0.75 (§3.3) after the ReLU of conv1 and conv2; overlapping max-pooling 3x3/2 (§3.4) after LRN1, LRN2 and conv5;
dropout 0.5 on the outputs of FC6 and FC7 (§4.2). The input is 227x227: with an unpadded 11x11/4 conv only 227 gives
the 55x55 maps of Figure 2 and the 6x6x256 = 9216 inputs of FC6 (the paper's "224" gives 5x5x256 = 6400).

``alexnet_owt`` is torchvision's ``alexnet``: the single-tower net of "One weird trick for parallelizing convolutional
neural networks" (Krizhevsky 2014, arXiv:1404.5997) with cuda-convnet2's 64-192-384-256-256 channels, conv1 padded by
2, no LRN, no groups, ``AdaptiveAvgPool2d(6)`` before FC6 and dropout *before* FC6 and FC7. Its weights convert from
torchvision (:func:`convert_torchvision_alexnet`). MACs are ``torch.utils.flop_counter`` counts (convolutions and
linear layers; pooling and LRN are not counted).

Options for small data, recorded in the recipe rather than in the name:
  * ``img_size``: the input side the FC6 input is derived from (alexnet: 227, so 224 raises a clear error; any side
    from 67 up works, e.g. ``img_size=224`` builds a 6400-input FC6 for 224 crops). ``alexnet_owt`` pools to 6x6
    before FC6 whatever the input, as torchvision does.
  * ``stem="cifar"``: conv1 becomes 5x5/1 with padding 2 (the first layer of Krizhevsky's own CIFAR-10 nets in
    cuda-convnet, ``layers-18pct.cfg``), so 32x32 inputs keep 3x3 maps after pool5 (FC6 has 2304 inputs).
  * ``init="kaiming"``: He-normal weights (std sqrt(2 / fan_in)) and zero biases instead of the paper's N(0, 0.01)
    and biases of 1. With the paper's init and the CIFAR stem, FC7's output is nearly all bias: over a batch of
    random 32x32 images the logits vary about 3,800 times less than with He init (3e-5 against 0.13;
    ``test_alexnet_kaiming_init_option`` asserts over 100 times), and SGD at the paper's lr 0.01 stays at chance: in
    the ``quick`` compare suite (2 epochs on 5,000 CIFAR-10 images) 10.0% test accuracy with the paper's init,
    32.5% with He init. The CIFAR recipe uses it.

Options for ablations (the ``alexnet-ablations`` experiment), each the paper's behaviour by default:
  * ``dropout=0``: no dropout on FC6 and FC7 (§4.2); ``lrn=False``: no LRN after conv1 and conv2 (§3.3).
  * ``overlap=False``: non-overlapping 2x2/2 max-pooling (z = s = 2) instead of 3x3/2 (z = 3, s = 2), the comparison
    of §3.4. At 227x227 both give 27, 13 and 6 pixel maps, as the paper says ("output of equivalent dimensions"); at
    32x32 with the CIFAR stem they do not: 16/8/4 instead of 15/7/3, so FC6 reads 4,096 inputs instead of 2,304.
  * ``widths`` and ``hidden`` (config fields): narrower conv layers and FC6/FC7, for runs that must fit a CPU budget.

Differences from the paper:
  * The towers live on one device as channel halves (tower 1 = the first half of every layer's maps); the arithmetic
    is identical to the two-GPU model, including LRN, which like cuda-convnet's per-GPU ``cmrnorm`` layers sums only
    over the maps of its own tower (the window never crosses from map 47 to map 48).
  * ``img_size``, ``stem`` and ``init`` above; ``in_chans`` and ``num_classes`` are options.
  * ``forward_features`` returns FC7's output (after ReLU and dropout), so ``reset_classifier`` replaces FC8 only.
  * ``alexnet_owt`` follows torchvision, not the weird-trick paper, which lists 64-192-384-384-256 channels (pytorch/
    vision PR #704); it is initialised with AlexNet's scheme below, torchvision uses PyTorch's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from ._layers import local_response_norm
from ._registry import Counts, PaperRef, Reported, Traits, last_stage, register_converter, register_variants

PAPER = PaperRef(
    "ImageNet Classification with Deep Convolutional Neural Networks",
    "Krizhevsky, Sutskever, Hinton",
    2012,
    venue="NIPS",
)
PAPER_OWT = PaperRef("One weird trick for parallelizing convolutional neural networks", "Krizhevsky", 2014,
                     arxiv="1404.5997")


@dataclass(frozen=True)
class AlexNetConfig:
    """One AlexNet variant; the kernel sizes, strides and pooling positions are fixed (``KERNELS`` ...)."""

    widths: tuple[int, int, int, int, int]
    towers: int                     # GPUs of the paper's model: conv2, conv4, conv5 read only their tower's maps
    lrn: bool                       # LRN after the ReLU of conv1 and conv2 (§3.3)
    conv1_padding: int              # torchvision pads conv1 by 2
    adaptive_pool: int | None       # torchvision's AdaptiveAvgPool2d(6) before FC6; None: FC6 sized from img_size
    dropout_first: bool             # torchvision drops FC6's and FC7's inputs; the paper drops their outputs
    img_size: int                   # the input side FC6's input size is derived from
    hidden: int = 4096
    overlap: bool = True            # max-pool 3x3/2 (§3.4); False: the 2x2/2 pooling the paper compares it with


VARIANTS = {
    "alexnet":     AlexNetConfig((96, 256, 384, 384, 256), towers=2, lrn=True,  conv1_padding=0, adaptive_pool=None,
                                 dropout_first=False, img_size=227),
    "alexnet_owt": AlexNetConfig((64, 192, 384, 256, 256), towers=1, lrn=False, conv1_padding=2, adaptive_pool=6,
                                 dropout_first=True,  img_size=224),
}
REPORTED = {
    "alexnet": Reported(
        params_m=60, top1_err=40.7, top5_err=18.2, source="abstract (60 million); Table 2, 1 CNN, ILSVRC-2012 val"
    ),
}
COUNTS = {
    "alexnet":     Counts(params=60_965_224, macs=724_406_816, source="paper layer sizes (Figure 2, §3.5)"),
    "alexnet_owt": Counts(params=61_100_840, macs=714_188_480, source="torchvision alexnet"),
}

# Figure 2 / §3.5: kernel, stride and padding of conv1..conv5 (conv1's padding is in the config).
KERNELS = (11, 5, 3, 3, 3)
STRIDES = (4, 1, 1, 1, 1)
PADDINGS = (None, 2, 1, 1, 1)
CROSS_TOWER = (True, False, True, False, False)  # conv1 reads the image, conv3 the maps of both GPUs (§3.5)
POOL_AFTER = (True, True, False, False, True)  # overlapping max-pool 3x3/2 (§3.4)
POOL_KERNEL, POOL_STRIDE = 3, 2  # z = 3, s = 2; overlap=False: z = s = 2


class TowerLRN(nn.LocalResponseNorm):
    """The paper's LRN applied to each tower's maps separately, as each GPU normalises only the maps it holds."""

    def __init__(self, towers: int) -> None:
        paper = local_response_norm(size=5, alpha=1e-4, beta=0.75, k=2.0)  # alpha already compensated for PyTorch's /n
        super().__init__(paper.size, alpha=paper.alpha, beta=paper.beta, k=paper.k)
        self.towers = towers

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        lrn = super().forward
        return torch.cat([lrn(t) for t in x.chunk(self.towers, dim=1)], dim=1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, towers={self.towers}"


class ConvLayer(nn.Sequential):
    """One convolutional layer of Figure 2: conv -> ReLU [-> LRN] [-> max-pool, 3x3/2 as published]."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, padding: int, *, groups: int, lrn: bool,
                 pool: int, towers: int) -> None:
        super().__init__()
        self.add_module("conv", nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups))
        self.add_module("relu", nn.ReLU(inplace=True))
        if lrn:
            self.add_module("lrn", TowerLRN(towers))
        if pool:  # the pooling window z (0: no pooling); stride s = 2 always
            self.add_module("pool", nn.MaxPool2d(pool, POOL_STRIDE))


def _pool5_side(size: int, geometry: list[tuple[int, int, int]], window: int = POOL_KERNEL) -> int:
    """Side of pool5's maps for a ``size`` x ``size`` input, given each conv's (kernel, stride, padding) and the
    pooling window."""
    for (k, s, p), pool in zip(geometry, POOL_AFTER, strict=True):
        size = (size + 2 * p - k) // s + 1
        size = (size - window) // POOL_STRIDE + 1 if pool else size
    return size


class AlexNet(nn.Module):
    """AlexNet: five convolutional layers (``stages``), FC6-FC7 (``pre_logits``) and FC8 (``head``)."""

    def __init__(self, cfg: AlexNetConfig, *, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5,
                 stem: Literal["imagenet", "cifar"] = "imagenet", init: Literal["paper", "kaiming"] = "paper") -> None:
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ConfigError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        if init not in ("paper", "kaiming"):
            raise ConfigError(f"init must be 'paper' or 'kaiming', got {init!r}")
        for name in ("lrn", "overlap"):
            if not isinstance(getattr(cfg, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(cfg, name)!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        self.init = init
        if len(cfg.widths) != len(KERNELS):
            raise ConfigError(f"widths must give the {len(KERNELS)} conv layers' channels, got {cfg.widths!r}")
        if any(w % cfg.towers for w in cfg.widths):
            raise ConfigError(f"every width in {cfg.widths} must split into {cfg.towers} towers")
        # stem="cifar": 5x5/1 conv1 with padding 2, as in cuda-convnet's CIFAR-10 nets (layers-18pct.cfg).
        geometry = [(5, 1, 2) if stem == "cifar" else (KERNELS[0], STRIDES[0], cfg.conv1_padding)]
        geometry += list(zip(KERNELS[1:], STRIDES[1:], PADDINGS[1:], strict=True))
        window = POOL_KERNEL if cfg.overlap else POOL_STRIDE
        side = _pool5_side(cfg.img_size, geometry, window)
        if side < 1:
            smallest = next(n for n in range(1, 1024) if _pool5_side(n, geometry, window) >= 1)
            hint = ", or stem='cifar' for 32x32 inputs" if stem == "imagenet" else ""
            raise ConfigError(f"img_size={cfg.img_size} is too small for the {stem} stem (pool5 would be empty); "
                              f"use img_size >= {smallest}{hint}")
        layers, in_ch = [], in_chans
        for i, (width, (k, s, p)) in enumerate(zip(cfg.widths, geometry, strict=True)):
            layers.append(ConvLayer(in_ch, width, k, s, p, groups=1 if CROSS_TOWER[i] else cfg.towers,
                                    lrn=cfg.lrn and i < 2, pool=window if POOL_AFTER[i] else 0, towers=cfg.towers))
            in_ch = width
        self.stages = nn.Sequential(*layers)
        self.grid = side  # pool5's side at img_size; FC6 reads in_ch * grid^2 values
        self.img_size = cfg.img_size
        if cfg.adaptive_pool is not None:
            self.pool: nn.Module = nn.AdaptiveAvgPool2d(cfg.adaptive_pool)
            fc_in = in_ch * cfg.adaptive_pool**2
        else:
            self.pool = nn.Identity()
            fc_in = in_ch * side**2
        fc: list[tuple[str, nn.Module]] = []
        for j, (n_in, n_out) in enumerate([(fc_in, cfg.hidden), (cfg.hidden, cfg.hidden)], start=6):
            block = [(f"fc{j}", nn.Linear(n_in, n_out)), (f"relu{j}", nn.ReLU(inplace=True))]
            drop = (f"drop{j}", nn.Dropout(dropout))
            fc += [drop, *block] if cfg.dropout_first else [*block, drop]
        self.pre_logits = nn.Sequential()
        for name, module in fc:
            self.pre_logits.add_module(name, module)
        self.adaptive = cfg.adaptive_pool is not None
        self.num_features = cfg.hidden
        self.head = nn.Linear(cfg.hidden, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """The paper's init (§5): weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden FC layers
        (to feed the ReLUs positive inputs early on), 0 in conv1, conv3 and FC8.

        With ``init="kaiming"``: He-normal weights (fan-in, ReLU gain) and zero biases, FC8 still N(0, 0.01)."""
        ones = {"stages.1.conv", "stages.3.conv", "stages.4.conv", "pre_logits.fc6", "pre_logits.fc7"}
        for name, m in self.named_modules():
            if not isinstance(m, (nn.Conv2d, nn.Linear)):
                continue
            if self.init == "kaiming" and m is not self.head:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
            else:
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.constant_(m.bias, 1.0 if name in ones else 0.0)

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, 4096)
        h, w = x.shape[-2:]
        x = self.stages(x)  # (B, 256, 6, 6) at the default input
        if not self.adaptive and tuple(x.shape[-2:]) != (self.grid, self.grid):
            msg = (
                f"this AlexNet was built for {self.img_size}x{self.img_size} inputs (FC6 reads {self.grid}x{self.grid} "
                f"maps), but a {h}x{w} input gives {x.shape[-2]}x{x.shape[-1]} maps; resize the input, or build the "
                f"model with img_size={w}"
            )
            if self.img_size == 227:
                msg += " (the paper's '224' does not fit its unpadded 11x11/4 conv1: AlexNet takes 227x227 crops)"
            raise ConfigError(msg)
        return self.pre_logits(self.pool(x).flatten(1))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace FC8 by a fresh ``num_classes``-way layer, initialised as the paper's FC8."""
        ref = self.head.weight
        self.head = nn.Linear(self.num_features, num_classes, device=ref.device, dtype=ref.dtype)
        nn.init.normal_(self.head.weight, 0.0, 0.01)
        nn.init.zeros_(self.head.bias)


TRAITS = Traits(convolutional=True, cam_layer=last_stage)


@register_variants(
    {"alexnet": VARIANTS["alexnet"]}, paper=PAPER, traits=TRAITS, reported=REPORTED, counts=COUNTS,
    input_size=(3, 227, 227),
    small={"img_size": 67}, small_input=(3, 67, 67),
)
@register_variants(
    {"alexnet_owt": VARIANTS["alexnet_owt"]}, paper=PAPER_OWT, traits=TRAITS, reported=REPORTED, counts=COUNTS,
    input_size=(3, 224, 224), small_input=(3, 67, 67),
)
def alexnet(cfg: AlexNetConfig, *, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5,
            stem: Literal["imagenet", "cifar"] = "imagenet", init: Literal["paper", "kaiming"] = "paper") -> AlexNet:
    """Build ``alexnet`` (two towers, as published) or ``alexnet_owt`` (torchvision's single tower).

    Args:
        cfg: the variant (``img_size`` is a config field and can be overridden through ``create_model``).
        num_classes: outputs of FC8.
        in_chans: input channels of conv1.
        dropout: drop probability of the FC6 and FC7 dropout layers (paper: 0.5).
        stem: ``"imagenet"`` (11x11/4 conv1) or ``"cifar"`` (5x5/1 conv1 for 32x32 inputs).
        init: ``"paper"`` (N(0, 0.01), biases 1 where §5 says) or ``"kaiming"`` (He-normal, zero biases).
    """
    return AlexNet(cfg, num_classes=num_classes, in_chans=in_chans, dropout=dropout, stem=stem, init=init)


@register_converter("alexnet", "alexnet_owt")
def convert_torchvision_alexnet(state_dict: dict[str, Any]) -> dict[str, Any]:
    """torchvision ``alexnet`` -> ``alexnet_owt``: ``features.{0,3,6,8,10}`` are conv1-5, ``classifier.{1,4,6}``
    are FC6-FC8."""
    names = {"features.0.": "stages.0.conv.", "features.3.": "stages.1.conv.", "features.6.": "stages.2.conv.",
             "features.8.": "stages.3.conv.", "features.10.": "stages.4.conv.", "classifier.1.": "pre_logits.fc6.",
             "classifier.4.": "pre_logits.fc7.", "classifier.6.": "head."}
    out = {}
    for key, value in state_dict.items():
        prefix = next((p for p in names if key.startswith(p)), None)
        if prefix is None:
            raise CheckpointError(f"unexpected key {key!r} in a torchvision alexnet state dict")
        out[names[prefix] + key[len(prefix):]] = value
    return out
