"""The model registry: every paper architecture is a named variant with its paper's numbers attached.

Each family module declares a frozen config dataclass, a ``VARIANTS`` table, what the paper ``REPORTED`` and the
exact counts we measure (``COUNTS``), and decorates its one builder with :func:`register_variants`.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

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


_SPECS: dict[str, ModelSpec] = {}


def register_variants(
    variants: Mapping[str, Any],
    *,
    paper: PaperRef,
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
        reported: name -> the paper's numbers (variants the paper does not report may be absent).
        counts: name -> our exact numbers; every variant should have one.
        input_size: ``(C, H, W)`` at which the paper's numbers hold, one for all or per variant.
        small: keyword arguments for a small, fast instance used by tests (e.g. ``{"img_size": 64}``), one dict for
            all variants or a per-variant mapping of dicts.
        small_input: ``(C, H, W)`` input for that small instance; defaults to ``input_size``.
    """

    def wrap(builder: Builder) -> Builder:
        family = builder.__module__.rsplit(".", 1)[-1]
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
