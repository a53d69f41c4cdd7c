"""Timing primitives shared by the benchmark (:mod:`milestones.bench`) and precision's bf16 probe
(:mod:`milestones.precision`): contenders timed in interleaved rounds, so that a load spike slows every contender of a
round alike, and ratios taken per round before their median."""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """Set ``torch``'s intra-op threads for the block (None leaves them as they are)."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Contender:
    """One implementation under test: a step that runs one batch, and its measurements."""

    def __init__(self, label: str, step: Callable[[], Any], output: Callable[[], Tensor | None], *,
                 threads: int | None = None, steps: int | None = None) -> None:
        self.label = label
        self.step = step
        self.output = output  # one eval-mode forward on the batch, for agreement checks (infer mode)
        self.threads = threads  # set before each of its reps
        self.steps = steps  # steps per rep; None: the number shared by the models
        self.times: list[float] = []
        self.peak: int | None = None
        self.compiled = False

    def ms(self) -> float:
        return 1000 * statistics.median(self.times)


def time_interleaved(contenders: Sequence[Contender], reps: int, device: torch.device, *, min_rep_seconds: float,
                      progress: bool, desc: str, clock: str) -> int:
    """Time ``reps`` rounds, each contender once per round.

    The models' order rotates every round (ours, theirs / theirs, ours), so each is as often first, right after the
    probe, as last, and no model runs twice in a row; the matmul probe (``steps`` set) closes every round. Returns the
    steps per rep of the models, chosen from the slowest one's speed.
    """
    from tqdm.auto import tqdm

    now = time.process_time if clock == "cpu" else time.perf_counter
    models = [c for c in contenders if c.steps is None]
    fixed = [c for c in contenders if c.steps is not None]
    slowest = 0.0
    for c in models:
        with num_threads(c.threads):
            sync(device)
            start = time.perf_counter()
            c.step()
            sync(device)
        slowest = max(slowest, time.perf_counter() - start)
    steps = max(1, math.ceil(min_rep_seconds / max(slowest, 1e-9)))
    for i in tqdm(range(reps), desc=desc, disable=not progress, leave=False, unit="rep"):
        k = i % max(len(models), 1)
        for c in models[k:] + models[:k] + fixed:
            n = c.steps or steps
            with num_threads(c.threads):
                sync(device)
                start = now()
                for _ in range(n):
                    c.step()
                sync(device)
                c.times.append((now() - start) / n)
    return steps


def median_ratio(num: Contender, den: Contender) -> float:
    """Median over rounds of ``num``'s time over ``den``'s: ``den``'s speed relative to ``num``'s."""
    return statistics.median(a / b for a, b in zip(num.times, den.times, strict=True))
