"""Training: the loop, optimisers and schedules, losses, checkpoints and run directories."""

from __future__ import annotations

from .checkpoint import load_checkpoint, save_checkpoint
from .loop import History, NonFiniteLossError, StepInfo, TrainingInterrupted, evaluate, fit, train_one_epoch
from .run import RunDir, RunResult, run_training

__all__ = [
    "History",
    "NonFiniteLossError",
    "RunDir",
    "RunResult",
    "StepInfo",
    "TrainingInterrupted",
    "evaluate",
    "fit",
    "load_checkpoint",
    "run_training",
    "save_checkpoint",
    "train_one_epoch",
]
