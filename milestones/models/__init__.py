"""Model families. Importing this package registers every variant of every family module in it."""

from __future__ import annotations

import importlib
import pkgutil

from ._attention import ATTENDED, QueryMap
from ._layers import explicit_attention
from ._registry import (
    Converter,
    Counts,
    ModelSpec,
    PaperRef,
    Reported,
    Traits,
    create_model,
    family_of,
    family_traits,
    get_converter,
    get_spec,
    last_stage,
    list_converters,
    list_models,
    measured,
    model_options,
    register_converter,
    register_variants,
    select_models,
)

# One module per family; each registers its variants when imported. Private modules (_registry, _layers) are skipped.
FAMILIES = tuple(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
for _family in FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")

__all__ = [
    "ATTENDED",
    "FAMILIES",
    "QueryMap",
    "Traits",
    "family_of",
    "family_traits",
    "last_stage",
    "measured",
    "Converter",
    "get_converter",
    "list_converters",
    "register_converter",
    "Counts",
    "ModelSpec",
    "PaperRef",
    "Reported",
    "create_model",
    "explicit_attention",
    "get_spec",
    "list_models",
    "model_options",
    "register_variants",
    "select_models",
]
