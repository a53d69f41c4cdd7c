"""The model registry: every paper architecture is a named variant with its paper's numbers attached.

Each family module declares a frozen config dataclass, a ``VARIANTS`` table, what the paper ``REPORTED`` and the
exact counts we measure (``COUNTS``), and decorates its one builder with :func:`register_variants`.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from torch import nn

from ..errors import ConfigError, UnknownModelError

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class PaperRef:
    """Bibliographic reference of the paper that introduced an architecture."""

    title: str
    authors: str
    year: int
    venue: str = ""
    arxiv: str | None = None

    def cite(self) -> str:
        tail = f", arXiv:{self.arxiv}" if self.arxiv else ""
        venue = f" {self.venue}" if self.venue else ""
        return f'{self.authors}, "{self.title}".{venue} {self.year}{tail}'


@dataclass(frozen=True)
class Reported:
    """What the paper reported for one variant; ``None`` means not reported.

    ``params_m`` is in millions as printed in the paper, ``gmacs`` in billions of multiply-adds (papers' "FLOPs"),
    errors in percent. ``source`` names the table and protocol (e.g. "Table 3, 10-crop").
    """

    params_m: float | None = None
    gmacs: float | None = None
    top1_err: float | None = None
    top5_err: float | None = None
    dataset: str = "ImageNet"
    source: str = ""


@dataclass(frozen=True)
class Counts:
    """Our exact, measured numbers at the default input size, as integers (``tests/test_models.py`` re-measures both).

    ``params`` counts trainable parameters; ``macs`` is ``torch.utils.flop_counter`` FLOPs / 2 for batch 1 (see
    :func:`milestones.measure.count_macs`). Both are exact integers, never rounded, so a stale entry cannot hide
    inside a tolerance. ``source`` says what the exact count agrees with ("paper", "authors' code", "torchvision").
    """

    params: int
    macs: int
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("params", "macs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise TypeError(f"Counts.{name} must be a non-negative int (an exact count), got {value!r}")

    @property
    def gmacs(self) -> float:
        """``macs`` in billions, for display."""
        return self.macs / 1e9


@dataclass(frozen=True)
class Traits:
    """What the rest of the library needs to know about a family, declared once in the family's own file.

    Attributes:
        convolutional: the family is built of convolutions over a pixel grid (precision's ``channels_last`` on CUDA).
        cam_layer: the default Grad-CAM layer: a module name, or a function of the built model giving one (for
            families whose depth varies by variant). ``viz gradcam``, :func:`milestones.viz.grad_cam` and the page
            use it.
        explain: how the page shows where the model looked: ``"gradcam"`` or ``"rollout"`` (attention rollout).
        attention: the family's reader of its own attention weights, ``fn(model, x, pixel) -> [QueryMap]`` (see
            :func:`milestones.attention.query_attention`); ``None`` for families without attention.
        feature_layout: how the family's 4-D activations are laid out: ``"NCHW"`` (convolutions) or ``"NHWC"``
            (Swin and CSWin keep their token grids channels-last between blocks); :mod:`milestones.viz` reads it.
    """

    convolutional: bool
    cam_layer: str | Callable[[nn.Module], str]
    explain: Literal["gradcam", "rollout"] = "gradcam"
    attention: Callable[..., list] | None = None
    feature_layout: Literal["NCHW", "NHWC"] = "NCHW"

    def __post_init__(self) -> None:
        if self.explain not in ("gradcam", "rollout"):
            raise ValueError(f"Traits.explain must be 'gradcam' or 'rollout', got {self.explain!r}")
        if self.feature_layout not in ("NCHW", "NHWC"):
            raise ValueError(f"Traits.feature_layout must be 'NCHW' or 'NHWC', got {self.feature_layout!r}")

    def default_cam_layer(self, model: nn.Module) -> str:
        """The Grad-CAM layer of a built model of this family."""
        return self.cam_layer if isinstance(self.cam_layer, str) else self.cam_layer(model)


def last_stage(model: nn.Module, *, skip_last: int = 0) -> str:
    """``"stages.<name>"`` of a model's last stage (``skip_last`` stages before it), for :attr:`Traits.cam_layer`."""
    names = list(dict(model.stages.named_children()))  # "0", "1"... or the family's own names (DenseNet, Inception)
    return f"stages.{names[max(len(names) - 1 - skip_last, 0)]}"


_TRAITS: dict[str, Traits] = {}


def family_traits(family: str) -> Traits:
    """The :class:`Traits` a registered family declared; an unknown family is a one-line error."""
    try:
        return _TRAITS[family]
    except KeyError:
        raise UnknownModelError(f"unknown model family {family!r}; families: {', '.join(_TRAITS)}") from None


def family_of(model: nn.Module) -> str | None:
    """The registered family a built model belongs to (by the module that defines its class), or ``None`` for a
    model defined elsewhere. ``torch.compile`` and DDP wrappers are looked through."""
    inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None) or model
    family = type(inner).__module__.rsplit(".", 1)[-1]
    return family if family in _TRAITS else None


MEASURED_FILE = Path(__file__).with_name("measured.json")
"""Measured speed choices per family (bf16, channels_last, compile on a CPU): data, read by
:mod:`milestones.precision`; every key must be a registered family (``tests/test_models.py`` checks)."""


@cache
def measured(family: str | None = None) -> dict[str, Any]:
    """The entries of :data:`MEASURED_FILE` for ``family`` (empty when nothing was measured), or the whole table
    keyed by family when ``family`` is ``None``. Keys starting with ``_`` are notes, not families."""
    table = {k: v for k, v in json.loads(MEASURED_FILE.read_text()).items() if not k.startswith("_")}
    return table if family is None else table.get(family, {})


@dataclass(frozen=True)
class ModelSpec:
    """One registered variant."""

    name: str
    family: str
    builder: Builder
    config: Any
    paper: PaperRef
    reported: Reported
    counts: Counts | None
    input_size: tuple[int, int, int]
    small: Mapping[str, Any] = field(default_factory=dict)
    small_input: tuple[int, int, int] | None = None

    @property
    def year(self) -> int:
        return self.paper.year

    @property
    def traits(self) -> Traits:
        return _TRAITS[self.family]


_SPECS: dict[str, ModelSpec] = {}


def register_variants(
    variants: Mapping[str, Any],
    *,
    paper: PaperRef,
    traits: Traits,
    reported: Mapping[str, Reported] | None = None,
    counts: Mapping[str, Counts] | None = None,
    input_size: tuple[int, int, int] | Mapping[str, tuple[int, int, int]] = (3, 224, 224),
    small: Mapping[str, Any] | None = None,
    small_input: tuple[int, int, int] | Mapping[str, tuple[int, int, int]] | None = None,
) -> Callable[[Builder], Builder]:
    """Register every row of ``variants`` under its name, all built by the decorated builder.

    Args:
        variants: name -> frozen config dataclass.
        paper: the paper that introduced the family.
        traits: what the rest of the library needs to know about the family (the same object for every
            ``register_variants`` of one family module).
        reported: name -> the paper's numbers (variants the paper does not report may be absent).
        counts: name -> our exact numbers; every variant should have one.
        input_size: ``(C, H, W)`` at which the paper's numbers hold, one for all or per variant.
        small: keyword arguments for a small, fast instance used by tests (e.g. ``{"img_size": 64}``), one dict for
            all variants or a per-variant mapping of dicts.
        small_input: ``(C, H, W)`` input for that small instance; defaults to ``input_size``.
    """

    def wrap(builder: Builder) -> Builder:
        family = builder.__module__.rsplit(".", 1)[-1]
        if _TRAITS.setdefault(family, traits) != traits:
            raise ValueError(f"family {family!r} declared two different Traits")
        for name, cfg in variants.items():
            if name in _SPECS:
                raise ValueError(f"model {name!r} registered twice")
            size = input_size[name] if isinstance(input_size, Mapping) else input_size
            if small and name in small and isinstance(small[name], Mapping):
                small_kw = dict(small[name])
            elif small and all(isinstance(v, Mapping) for v in small.values()):
                small_kw = {}
            else:
                small_kw = dict(small or {})
            s_in = small_input[name] if isinstance(small_input, Mapping) else small_input
            _SPECS[name] = ModelSpec(
                name=name,
                family=family,
                builder=builder,
                config=cfg,
                paper=paper,
                reported=(reported or {}).get(name, Reported()),
                counts=(counts or {}).get(name),
                input_size=tuple(size),
                small=small_kw,
                small_input=tuple(s_in) if s_in else None,
            )
        return builder

    return wrap


def list_models(pattern: str | None = None, *, family: str | None = None) -> list[str]:
    """Registered names, in registration order, optionally filtered by a glob pattern and family."""
    names = [n for n, s in _SPECS.items() if family is None or s.family == family]
    if pattern:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def select_models(patterns: Sequence[str]) -> list[str]:
    """Model names for command-line words: a glob (``"resnet*"``) gives every match, in registration order; a plain
    name is checked (an unknown one raises with close matches). Each name once; a glob matching nothing is a
    one-line error."""
    names: list[str] = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            found = list_models(pattern)
            if not found:
                raise UnknownModelError(f"no model matches {pattern!r}; run 'milestones list' to see all")
        else:
            found = [get_spec(pattern).name]
        names += [n for n in found if n not in names]
    return names


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model; an unknown name raises with close-match suggestions."""
    try:
        return _SPECS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_SPECS), n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; run 'milestones list' to see all models"
        raise UnknownModelError(f"unknown model {name!r}{hint}") from None


def model_options(name: str) -> list[str]:
    """Every keyword ``create_model(name, ...)`` accepts: config fields and builder keyword arguments."""
    spec = get_spec(name)
    fields = [f.name for f in dataclasses.fields(spec.config)]
    params = inspect.signature(spec.builder).parameters.values()
    extra = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return fields + [e for e in extra if e not in fields]


# Spellings of other libraries (and our own before issue 12) -> ours. Only used to suggest the right name in the error
# for an unknown option; none of them is accepted.
_OTHER_SPELLINGS = {
    "embed_dim": "dim",
    "hidden_dim": "dim",
    "dropout": "drop_rate",
    "attn_dropout": "attn_drop_rate",
    "attention_dropout": "attn_drop_rate",
    "drop_path": "drop_path_rate",
    "stochastic_depth_prob": "drop_path_rate",
    "image_size": "img_size",
    "in_channels": "in_chans",
}


def _suggest(option: str, valid: list[str]) -> str:
    """`` (did you mean 'x'?)`` for an unknown option, or nothing when no valid option is close."""
    known = _OTHER_SPELLINGS.get(option)
    close = [known] if known in valid else difflib.get_close_matches(option, valid, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model.

    Keyword arguments either override fields of the variant's config dataclass or are passed to the builder
    (``num_classes``, ``in_chans``, ...). Anything else is an error that suggests the closest option and lists the
    valid ones: a misspelt keyword is never silently dropped.
    """
    spec = get_spec(name)
    valid = model_options(name)
    unknown = [k for k in overrides if k not in valid]
    if unknown:
        named = ", ".join(f"{k!r}{_suggest(k, valid)}" for k in unknown)
        raise ConfigError(f"model {name!r} has no option {named}; valid options: {', '.join(valid)}")
    fields = {f.name for f in dataclasses.fields(spec.config)}
    cfg = dataclasses.replace(spec.config, **{k: v for k, v in overrides.items() if k in fields})
    kwargs = {k: v for k, v in overrides.items() if k not in fields}
    return spec.builder(cfg, **kwargs)


StateDict = Mapping[str, Any]


@dataclass(frozen=True)
class Converter:
    """Maps a state dict of ``library``'s model ``source`` (``torchvision.models.<source>`` or
    ``timm.create_model(source)``) onto ``create_model(target, **kwargs)``."""

    source: str
    target: str
    fn: Callable[[StateDict], dict[str, Any]]
    target_kwargs: Mapping[str, Any] = field(default_factory=dict)
    library: str = "torchvision"


_CONVERTERS: dict[str, Converter] = {}


def register_converter(source: str, target: str, *, library: str = "torchvision",
                       **target_kwargs: Any) -> Callable[[Callable], Callable]:
    """Register ``fn(their_state_dict) -> our_state_dict`` for ``library``'s model ``source``.

    ``library`` is "torchvision" (whose builders ``milestones bench`` pairs with ours) or "timm"; ``target_kwargs``
    are the ``create_model`` options the converted weights need (e.g. ``version="v1.5"``).
    """
    if library not in ("torchvision", "timm"):
        raise ValueError(f"library must be 'torchvision' or 'timm', got {library!r}")

    def wrap(fn: Callable[[StateDict], dict[str, Any]]) -> Callable[[StateDict], dict[str, Any]]:
        if source in _CONVERTERS:
            raise ValueError(f"converter for {source!r} registered twice")
        _CONVERTERS[source] = Converter(source, target, fn, dict(target_kwargs), library)
        return fn

    return wrap


def list_converters(library: str | None = None) -> list[str]:
    """The torchvision and timm model names that can be converted (only ``library``'s if given)."""
    return [n for n, c in _CONVERTERS.items() if library is None or c.library == library]


def get_converter(source: str) -> Converter:
    """The converter for torchvision or timm model ``source``; unknown names get close matches."""
    try:
        return _CONVERTERS[source]
    except KeyError:
        close = difflib.get_close_matches(source, list(_CONVERTERS), n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; convertible: {', '.join(_CONVERTERS)}"
        raise UnknownModelError(f"no converter for torchvision or timm model {source!r}{hint}") from None
