"""What a training process sets up around a run: its seeds and its handling of SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
from collections.abc import Callable, Iterator

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; in deterministic mode also force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Callable[[], str | None]]:
    """While active, SIGINT and SIGTERM only ask the training loop to stop: it finishes the step, saves the state and
    raises :class:`TrainingInterrupted`. The yielded function returns the signal's name once one arrived.

    The first signal puts the previous handlers back, so a second one acts as usual (Ctrl-C twice raises
    KeyboardInterrupt at once; checkpoint writes are atomic, so that loses nothing saved). Outside the main thread,
    where Python cannot install handlers, nothing is installed.
    """
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    watched = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in watched}

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)

    def on_signal(signum: int, frame: object) -> None:
        received.append(signal.Signals(signum).name)
        restore()

    for s in watched:
        signal.signal(s, on_signal)
    try:
        yield lambda: received[0] if received else None
    finally:
        restore()
