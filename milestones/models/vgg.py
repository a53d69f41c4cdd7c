"""VGG: "Very Deep Convolutional Networks for Large-Scale Image Recognition". Simonyan, Zisserman. ICLR 2015.
arXiv:1409.1556

| variant   | config | params paper (Table 2) | params ours | GMACs ours (224) | top-1 / top-5 err paper (Table 3)   |
|-----------|--------|------------------------|-------------|------------------|-------------------------------------|
| vgg11     | A      | 133M                   | 132,863,336 | 7.609            | 29.6 / 10.4 (S=256, Q=256)          |
| vgg11_lrn | A-LRN  | 133M                   | 132,863,336 | 7.609            | 29.7 / 10.5 (S=256, Q=256)          |
| vgg13     | B      | 133M                   | 133,047,848 | 11.31            | 28.7 / 9.9 (S=256, Q=256)           |
| vgg16_c   | C      | 134M                   | 133,638,952 | 11.77            | 27.3 / 8.8 (S in [256,512], Q=384)  |
| vgg16     | D      | 138M                   | 138,357,544 | 15.47            | 25.6 / 8.1 (S in [256,512], Q=384)  |
| vgg19     | E      | 144M                   | 143,667,240 | 19.63            | 25.5 / 8.0 (S in [256,512], Q=384)  |
| vgg11_bn  | A + BN | -                      | 132,868,840 | 7.609            | -                                   |
| vgg13_bn  | B + BN | -                      | 133,053,736 | 11.31            | -                                   |
| vgg16_bn  | D + BN | -                      | 138,365,992 | 15.47            | -                                   |
| vgg19_bn  | E + BN | -                      | 143,678,248 | 19.63            | -                                   |

The configurations of Table 1: five stages of 3x3 convolutions (stride 1, padding 1) with 64, 128, 256, 512, 512
channels, each stage ending in a 2x2/2 max-pool, then FC-4096, FC-4096, FC-1000 with ReLU after every hidden layer and
dropout 0.5 after FC6 and FC7 (§3.1). A has 1-1-2-2-2 convs per stage, B 2-2-2-2-2, D 2-2-3-3-3, E 2-2-4-4-4. C is D
with the third conv of stages 3-5 a 1x1 conv. A-LRN is A with the LRN of AlexNet (k=2, n=5, alpha=1e-4, beta=0.75)
after the first conv; it has no parameters of its own. The Table 3 errors are single-scale ImageNet val errors at the
best training scale the paper reports for each configuration (fixed S=256 for A, A-LRN, B; scale jitter for C, D, E).
MACs are ``torch.utils.flop_counter`` counts (convolutions and linear layers; batch norm and pooling are not counted).

Options, recorded in the recipe rather than in the name:
  * ``img_size``: the input side FC6's input size is derived from ((img_size // 32)^2 x 512), e.g. ``img_size=32`` for
    CIFAR gives a 512-input FC6. Another input size raises a clear error.
  * ``head``: ``"fc"`` (default, the paper's FC6-FC7-FC8); ``"gap"``: global average pooling and one linear layer
    instead of FC6-FC8 (15,227,688 parameters for D instead of 138,357,544); ``"gap_fc"``: global average pooling, one
    hidden FC of ``hidden`` units (ReLU, dropout) and the linear layer (20,912,936 for D). The two GAP heads serve the
    ``vgg-fc-heads`` experiment on how much VGG owes to its FC layers and take any input of 32 px or more.
  * ``kernels`` and ``widths`` (config fields): the kernel size of every conv, stage by stage, and each stage's
    channels. ``kernels=((5,),) * 5`` on B (``vgg13``) is the shallow net of §4.1, B with each pair of 3x3 convs
    replaced by one 5x5 conv of the same receptive field (top-1 error "7% higher" than B's); the ``small-filters``
    experiment also builds one 7x7 conv per stage against three 3x3 convs. Kernel sizes must be odd, so that
    padding k // 2 keeps the resolution.
  * ``skip_pools`` (config field): the stages, numbered 1 to 5 as in Table 1, that end without their 2x2/2 max-pool
    (default none). At 32x32 the five pools leave a 1x1 map, where GAP is the identity and a 5x5 or 7x7 conv of
    stage 5 (2x2) sees mostly padding: ``skip_pools=(5,)`` ends on a 2x2 map at no extra multiply-adds (the
    ``vgg-fc-heads`` experiment), ``skip_pools=(4,)`` runs stage 5 on 4x4 maps (``small-filters``). FC6 reads the
    grid the remaining pools leave.

Differences from the paper:
  * Initialisation: Glorot & Bengio (2010) uniform weights and zero biases for every variant, which the paper notes
    (§3.1, end of "Training") trains the deep nets without its staged scheme (N(0, 0.01) weights, then D and E
    initialised from a trained A).
  * ``*_bn`` variants (not in the paper): batch norm (Ioffe & Szegedy 2015) after every conv, as torchvision's
    ``vgg*_bn``, whose weights convert (:func:`torchvision_converter`).
  * No dense (fully-convolutional) evaluation: FC6-FC8 are linear layers for the ``img_size`` they were built for,
    with the weight layout of torchvision's VGG (whose ``AdaptiveAvgPool2d(7)`` is the identity at 224).
  * ``forward_features`` returns FC7's output (``head="gap"``: the pooled 512 maps; ``"gap_fc"``: the hidden FC's
    output), so ``reset_classifier`` replaces FC8 only; ``in_chans``, ``num_classes`` and ``dropout`` are options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from ._layers import local_response_norm
from ._registry import Counts, PaperRef, Reported, Traits, last_stage, register_converter, register_variants

PAPER = PaperRef(
    "Very Deep Convolutional Networks for Large-Scale Image Recognition",
    "Simonyan, Zisserman",
    2015,
    venue="ICLR",
    arxiv="1409.1556",
)


@dataclass(frozen=True)
class VGGConfig:
    """One column of Table 1: the kernel size of every conv, stage by stage."""

    kernels: tuple[tuple[int, ...], ...]
    widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    lrn: bool = False  # A-LRN: LRN after the first conv
    batch_norm: bool = False  # not in the paper; torchvision's vgg*_bn
    hidden: int = 4096
    skip_pools: tuple[int, ...] = ()  # stages (1-5) without their closing max-pool; not in the paper


_A = ((3,), (3,), (3, 3), (3, 3), (3, 3))
_B = ((3, 3), (3, 3), (3, 3), (3, 3), (3, 3))
_C = ((3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1))
_D = ((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
_E = ((3, 3), (3, 3), (3, 3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3))

VARIANTS = {
    "vgg11":     VGGConfig(_A),
    "vgg11_lrn": VGGConfig(_A, lrn=True),
    "vgg13":     VGGConfig(_B),
    "vgg16_c":   VGGConfig(_C),
    "vgg16":     VGGConfig(_D),
    "vgg19":     VGGConfig(_E),
    "vgg11_bn":  VGGConfig(_A, batch_norm=True),
    "vgg13_bn":  VGGConfig(_B, batch_norm=True),
    "vgg16_bn":  VGGConfig(_D, batch_norm=True),
    "vgg19_bn":  VGGConfig(_E, batch_norm=True),
}
_SINGLE = "Table 2 params; Table 3 single test scale, ILSVRC-2012 val"
REPORTED = {
    "vgg11":     Reported(params_m=133, top1_err=29.6, top5_err=10.4, source=f"{_SINGLE}, S=256, Q=256"),
    "vgg11_lrn": Reported(params_m=133, top1_err=29.7, top5_err=10.5, source=f"{_SINGLE}, S=256, Q=256"),
    "vgg13":     Reported(params_m=133, top1_err=28.7, top5_err=9.9,  source=f"{_SINGLE}, S=256, Q=256"),
    "vgg16_c":   Reported(params_m=134, top1_err=27.3, top5_err=8.8,  source=f"{_SINGLE}, S in [256,512], Q=384"),
    "vgg16":     Reported(params_m=138, top1_err=25.6, top5_err=8.1,  source=f"{_SINGLE}, S in [256,512], Q=384"),
    "vgg19":     Reported(params_m=144, top1_err=25.5, top5_err=8.0,  source=f"{_SINGLE}, S in [256,512], Q=384"),
}
COUNTS = {
    "vgg11":     Counts(params=132_863_336, macs=7_609_090_048,  source="torchvision vgg11"),
    "vgg11_lrn": Counts(params=132_863_336, macs=7_609_090_048,  source="A + LRN (no parameters)"),
    "vgg13":     Counts(params=133_047_848, macs=11_308_466_176, source="torchvision vgg13"),
    "vgg16_c":   Counts(params=133_638_952, macs=11_770_888_192, source="D with three 3x3 convs made 1x1"),
    "vgg16":     Counts(params=138_357_544, macs=15_470_264_320, source="torchvision vgg16"),
    "vgg19":     Counts(params=143_667_240, macs=19_632_062_464, source="torchvision vgg19"),
    "vgg11_bn":  Counts(params=132_868_840, macs=7_609_090_048,  source="torchvision vgg11_bn"),
    "vgg13_bn":  Counts(params=133_053_736, macs=11_308_466_176, source="torchvision vgg13_bn"),
    "vgg16_bn":  Counts(params=138_365_992, macs=15_470_264_320, source="torchvision vgg16_bn"),
    "vgg19_bn":  Counts(params=143_678_248, macs=19_632_062_464, source="torchvision vgg19_bn"),
}


class VGGStage(nn.Sequential):
    """One stage of Table 1: (conv -> [BN] -> ReLU [-> LRN]) per kernel, then max-pool 2x2/2 (unless ``pool`` is
    False)."""

    def __init__(self, in_ch: int, width: int, kernels: tuple[int, ...], *, batch_norm: bool, lrn: bool,
                 pool: bool = True) -> None:
        super().__init__()
        for j, k in enumerate(kernels, start=1):
            # padding k // 2 keeps the resolution for 3x3 and 1x1 alike (§2.1)
            self.add_module(f"conv{j}", nn.Conv2d(in_ch, width, k, padding=k // 2))
            if batch_norm:
                self.add_module(f"bn{j}", nn.BatchNorm2d(width))
            self.add_module(f"relu{j}", nn.ReLU(inplace=True))
            if lrn and j == 1:
                self.add_module("lrn", local_response_norm(size=5, alpha=1e-4, beta=0.75, k=2.0))
            in_ch = width
        if pool:
            self.add_module("pool", nn.MaxPool2d(2, 2))


class VGG(nn.Module):
    """VGG: five conv ``stages``, FC6-FC7 (``pre_logits``) and FC8 (``head``), or a GAP head (with ``"gap_fc"``,
    one hidden FC as ``pre_logits``)."""

    def __init__(self, cfg: VGGConfig, *, num_classes: int = 1000, in_chans: int = 3, img_size: int = 224,
                 head: Literal["fc", "gap", "gap_fc"] = "fc", dropout: float = 0.5) -> None:
        super().__init__()
        if head not in ("fc", "gap", "gap_fc"):
            raise ConfigError(f"head must be 'fc', 'gap' or 'gap_fc', got {head!r}")
        if len(cfg.kernels) != len(cfg.widths) or not all(cfg.kernels):
            raise ConfigError(f"kernels must list at least one kernel size for each of the {len(cfg.widths)} stages "
                              f"of widths={tuple(cfg.widths)}, got {cfg.kernels!r}")
        if any(not isinstance(k, int) or k < 1 or k % 2 == 0 for ks in cfg.kernels for k in ks):
            raise ConfigError(f"kernel sizes must be odd positive integers (padding k // 2 keeps the resolution), got "
                              f"{cfg.kernels!r}")
        if any(s not in range(1, len(cfg.widths) + 1) for s in cfg.skip_pools):
            raise ConfigError(f"skip_pools numbers stages 1 to {len(cfg.widths)}, got {tuple(cfg.skip_pools)!r}")
        stages, in_ch = [], in_chans
        for i, (width, kernels) in enumerate(zip(cfg.widths, cfg.kernels, strict=True)):
            stages.append(VGGStage(in_ch, width, kernels, batch_norm=cfg.batch_norm, lrn=cfg.lrn and i == 0,
                                   pool=i + 1 not in cfg.skip_pools))
            in_ch = width
        self.stages = nn.Sequential(*stages)
        self.head_type = head
        self.img_size = img_size
        pools = len(stages) - len(set(cfg.skip_pools))
        self.grid = img_size // 2**pools  # each 2x2/2 pool halves (and floors) the side
        if head == "fc" and self.grid < 1:
            raise ConfigError(f"img_size={img_size} is too small: {pools} pools need at least "
                              f"{2**pools} px (or use head='gap')")
        # "fc": FC6 reads the flattened grid x grid x 512 maps; "gap_fc": one hidden FC on the pooled 512 values
        fc_inputs = {"fc": (in_ch * self.grid**2, cfg.hidden), "gap_fc": (in_ch,), "gap": ()}[head]
        self.pre_logits: nn.Module = nn.Sequential() if fc_inputs else nn.Identity()
        for j, n_in in enumerate(fc_inputs, start=6):
            self.pre_logits.add_module(f"fc{j}", nn.Linear(n_in, cfg.hidden))
            self.pre_logits.add_module(f"relu{j}", nn.ReLU(inplace=True))
            self.pre_logits.add_module(f"drop{j}", nn.Dropout(dropout))
        self.num_features = cfg.hidden if fc_inputs else in_ch
        self.head = nn.Linear(self.num_features, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """Glorot & Bengio (2010) uniform weights and zero biases, which the paper found trains every configuration
        without its pre-training from net A (§3.1); batch norm starts as the identity (gamma 1, beta 0)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, 4096), or (B, 512) with head="gap"
        h, w = x.shape[-2:]
        x = self.stages(x)  # (B, 512, 7, 7) at 224
        if self.head_type != "fc":
            return self.pre_logits(x.mean(dim=(2, 3)))
        if tuple(x.shape[-2:]) != (self.grid, self.grid):
            raise ConfigError(
                f"this VGG was built for {self.img_size}x{self.img_size} inputs (FC6 reads {self.grid}x{self.grid} "
                f"maps), but a {h}x{w} input gives {x.shape[-2]}x{x.shape[-1]} maps; resize the input, or build the "
                f"model with img_size={w} (or head='gap')"
            )
        return self.pre_logits(x.flatten(1))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace FC8 (or the GAP head's linear layer) by a fresh ``num_classes``-way layer."""
        ref = self.head.weight
        self.head = nn.Linear(self.num_features, num_classes, device=ref.device, dtype=ref.dtype)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)


TRAITS = Traits(convolutional=True, cam_layer=last_stage)


@register_variants(
    VARIANTS, paper=PAPER, traits=TRAITS, reported=REPORTED, counts=COUNTS, input_size=(3, 224, 224),
    small={"img_size": 32}, small_input=(3, 32, 32),
)
def vgg(cfg: VGGConfig, *, num_classes: int = 1000, in_chans: int = 3, img_size: int = 224,
        head: Literal["fc", "gap", "gap_fc"] = "fc", dropout: float = 0.5) -> VGG:
    """Build a VGG configuration of Table 1 (or its batch-norm form).

    Args:
        cfg: the configuration.
        num_classes: outputs of FC8 (or of the GAP head's linear layer).
        in_chans: input channels of the first conv.
        img_size: the input side FC6's input size is derived from (224 in the paper, 32 for CIFAR).
        head: ``"fc"`` for the paper's FC6-FC8, ``"gap"`` for global average pooling and one linear layer,
            ``"gap_fc"`` for global average pooling, one hidden FC (``cfg.hidden`` units) and the linear layer.
        dropout: drop probability after FC6 and FC7 (paper: 0.5), or after the hidden FC of ``"gap_fc"``.
    """
    return VGG(cfg, num_classes=num_classes, in_chans=in_chans, img_size=img_size, head=head, dropout=dropout)


def torchvision_keys(cfg: VGGConfig) -> dict[str, str]:
    """Key prefixes of torchvision's VGG (``features.<i>``, ``classifier.<i>``) -> ours, walking its module list."""
    names, i = {}, 0
    for s, kernels in enumerate(cfg.kernels):
        for j in range(1, len(kernels) + 1):
            names[f"features.{i}."] = f"stages.{s}.conv{j}."
            i += 1
            if cfg.batch_norm:
                names[f"features.{i}."] = f"stages.{s}.bn{j}."
                i += 1
            i += 1  # ReLU
        i += 1  # max-pool
    names.update({"classifier.0.": "pre_logits.fc6.", "classifier.3.": "pre_logits.fc7.", "classifier.6.": "head."})
    return names


def torchvision_converter(variant: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The converter from torchvision's model of the same name to our ``variant``."""
    names = torchvision_keys(VARIANTS[variant])

    def convert(state_dict: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in state_dict.items():
            prefix, _, leaf = key.rpartition(".")
            if prefix + "." not in names:
                raise CheckpointError(f"unexpected key {key!r} in a torchvision {variant} state dict")
            out[names[prefix + "."] + leaf] = value
        return out

    convert.__doc__ = f"torchvision ``{variant}`` -> our ``{variant}`` (same tensors, renamed keys)."
    return convert


for _name in ("vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"):
    register_converter(_name, _name)(torchvision_converter(_name))
