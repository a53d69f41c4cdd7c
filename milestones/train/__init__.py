"""Training: the loop and its state, callbacks, optimisers and schedules, losses, checkpoints and run directories."""

from __future__ import annotations

from .callbacks import Activations, Callback, GradNorms, StepInfo, StepMetrics, grad_norms, record_activations
from .checkpoint import load_checkpoint, save_checkpoint
from .loop import NonFiniteLossError, TrainingInterrupted, evaluate, fit, train_step
from .run import RunResult, run_training
from .rundir import RunDir
from .state import EpochTally, History, TrainState

__all__ = [
    "Activations",
    "Callback",
    "EpochTally",
    "GradNorms",
    "History",
    "NonFiniteLossError",
    "RunDir",
    "RunResult",
    "StepInfo",
    "StepMetrics",
    "TrainState",
    "TrainingInterrupted",
    "evaluate",
    "fit",
    "grad_norms",
    "load_checkpoint",
    "record_activations",
    "run_training",
    "save_checkpoint",
    "train_step",
]
