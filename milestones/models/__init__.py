"""Model families. Importing this package registers every variant of every family module in it."""

from __future__ import annotations

import importlib
import pkgutil

from ._layers import explicit_attention
from ._registry import (
    Converter,
    Counts,
    ModelSpec,
    PaperRef,
    Reported,
    create_model,
    get_converter,
    get_spec,
    list_converters,
    list_models,
    model_options,
    register_converter,
    register_variants,
)

# One module per family; each registers its variants when imported. Private modules (_registry, _layers) are skipped.
FAMILIES = tuple(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
for _family in FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")

__all__ = [
    "FAMILIES",
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
]
