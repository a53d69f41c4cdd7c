"""milestones: the landmark image-classification networks, faithful to their papers, trained on real data."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import MilestonesError

__version__ = "0.1.0"

__all__ = ["MilestonesError", "__version__", "count_macs", "count_params", "create_model", "features",
           "get_spec", "layer_summary", "list_models"]

# The names that need torch are imported when first used (PEP 562), so that importing the package, and with it the
# CLI's --help and `milestones list`, does not import torch (about 1.5 s).
_LAZY = {"count_macs": "measure", "count_params": "measure", "layer_summary": "measure", "create_model": "models",
         "get_spec": "models", "list_models": "models", "features": "viz.capture"}

if TYPE_CHECKING:
    from .measure import count_macs, count_params, layer_summary
    from .models import create_model, get_spec, list_models
    from .viz.capture import features


def __getattr__(name: str) -> Any:
    """``milestones.create_model`` and the other names of ``__all__``, and the subpackages (``milestones.models``),
    imported on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
