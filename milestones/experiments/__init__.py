"""Experiments that answer the questions the landmark papers raise, each rerunnable in a quick (CPU, minutes) and a
full (paper-scale, GPU) mode; ``milestones experiment list`` shows them, ``milestones experiment run NAME`` runs one.

    >>> from milestones.experiments import run_experiment
    >>> result = run_experiment("degradation", mode="quick", data_root="../shared/data")
    >>> result.analysis.verdict, result.report
"""

from __future__ import annotations

from . import (  # noqa: F401  (registers)
    alexnet_ablations,
    attention_cost,
    degradation,
    googlenet_aux,
    handcrafted_vs_learned,
    inception_1x1,
    relu_vs_tanh,
    skip_connections,
    small_filters,
    transformers_small_data,
    two_gpu_split,
    vgg_fc_heads,
    vgg_features_transfer,
    vit_data_hunger,
)
from .base import (
    MODES,
    Analysis,
    Context,
    Experiment,
    ExperimentResult,
    Figure,
    RunSpec,
    Setup,
    get_experiment,
    list_experiments,
    run_experiment,
)

__all__ = [
    "MODES",
    "Analysis",
    "Context",
    "Experiment",
    "ExperimentResult",
    "Figure",
    "RunSpec",
    "Setup",
    "get_experiment",
    "list_experiments",
    "run_experiment",
]
