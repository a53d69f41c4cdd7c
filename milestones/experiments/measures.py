"""Measurements shared by the experiments that the training loop does not make itself.

The loop's per-epoch ``train_acc`` is the running accuracy over the epoch's *augmented* batches with dropout *on*: it
mixes how well the net fits the training set with how much noise the regularisers add, so it cannot show
overfitting, and it hides precisely what dropout and augmentation change. :class:`TrainSetError` measures the
training set the way the test set is measured: the plain images, the model in eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..train.callbacks import Callback, StepInfo
from ..train.loop import evaluate

if TYPE_CHECKING:
    from ..train.state import TrainState


class TrainSetError(Callback):
    """Error and cross-entropy on (up to ``limit``) training images at the end of every epoch, measured as the test
    set is: no augmentation, eval mode (dropout off, batch-norm running statistics). Records of ``{"kind":
    "train_eval", "step", "epoch", "error", "loss", "n"}``.

    Args:
        limit: How many training images to measure (a fixed random sample, the same every epoch); None: all.
        batch_size: Images per forward pass.
    """

    kind = "train_eval"

    def __init__(self, limit: int | None = 2000, batch_size: int = 500) -> None:
        self.limit, self.batch_size = limit, batch_size
        self.per_epoch = 0
        self.records: list[dict[str, Any]] = []

    def on_fit_start(self, state: TrainState, total_steps: int) -> None:
        loader = state.loader
        if not hasattr(loader, "images"):
            raise TypeError("TrainSetError needs a data set held in memory (a TensorLoader), not a streamed folder")
        self.per_epoch = len(loader)
        n = len(loader.labels)
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(0))[: self.limit or n].sort().values
        pick = pick.to(loader.images.device)
        self.images, self.labels = loader.images[pick], loader.labels[pick]  # (N, C, H, W) uint8, (N,)
        self.augment, self.channels_last = loader.augment, loader.channels_last  # without draws: normalise only

    def _batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        for i in range(0, len(self.labels), self.batch_size):
            x, y = self.augment(self.images[i : i + self.batch_size], self.labels[i : i + self.batch_size])
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

    def on_step(self, info: StepInfo) -> dict[str, Any] | None:
        if not self.per_epoch or info.step % self.per_epoch:
            return None  # not the epoch's last step
        model = info.model
        training = model.training
        try:
            stats = evaluate(model, self._batches())
        finally:
            model.train(training)
        record = {"kind": self.kind, "step": info.step, "epoch": info.epoch + 1, "error": 1.0 - stats["acc"],
                  "loss": stats["loss"], "n": stats["n"]}
        self.records.append(record)
        return record


def difference_error(error_pct: float, n: int) -> float:
    """One standard error, in points, of the difference between two test errors near ``error_pct`` % measured on
    ``n`` images each: sqrt(2 p (1 - p) / n). Two runs scored on the same images share part of this noise, so it is
    a conservative yardstick for single-seed differences; at 50% error on 1,000 images it is 2.2 points."""
    p = min(max(error_pct / 100, 0.0), 1.0)
    return 100 * math.sqrt(2 * p * (1 - p) / n)


def noise_threshold(spreads: Sequence[float], error_pct: float | None, n_test: int,
                    floor: float = 1.0) -> dict[str, Any]:
    """How large a difference between two runs must be to count: the largest of ``floor`` (points), the mean
    spread between seeds of one run (``spreads``: max - min test error of each run that has several seeds) and the
    test set's :func:`difference_error` at ``error_pct``."""
    measured = sum(spreads) / len(spreads) if spreads else None
    sampling = difference_error(error_pct, n_test) if error_pct is not None else 0.0
    return {"measured": measured, "pairs": len(spreads), "sampling": sampling, "n_test": n_test,
            "threshold": max(floor, measured or 0.0, sampling)}


def describe_noise(noise: dict[str, Any], what: str) -> str:
    """The report's line on noise; ``what`` names the runs the seed spread comes from."""
    seeds = (f"two seeds of {what} differ by {noise['measured']:.1f} points of test error"
             if noise["measured"] is not None else "one seed per run, so the seed noise is not measured")
    return (f"Noise: {seeds}; on {noise['n_test']:,} test images one standard error of a difference between two runs "
            f"is {noise['sampling']:.1f} points. Differences below {noise['threshold']:.1f} points are treated as "
            "noise.")
