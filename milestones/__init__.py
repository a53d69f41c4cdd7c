"""milestones: the landmark image-classification networks, faithful to their papers, trained on real data."""

from __future__ import annotations

from .errors import MilestonesError
from .measure import count_macs, count_params, layer_summary
from .models import create_model, get_spec, list_models
from .viz.capture import features

__version__ = "0.1.0"

__all__ = ["MilestonesError", "__version__", "count_macs", "count_params", "create_model", "features",
           "get_spec", "layer_summary", "list_models"]
