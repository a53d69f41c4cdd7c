"""Which device a run trains on: ``train.device`` checked against the machine and resolved (``auto``).

Its own module, below the loop, so that :mod:`milestones.train.distributed` and the tools can resolve a device
without importing the training loop.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError


def check_device(name: str) -> None:
    """``train.device``: ``auto``, or a device of a kind torch can use on this machine; otherwise a one-line
    ConfigError (a misspelt name, ``cuda`` without a GPU, ``cuda:3`` on a machine with two)."""
    if name == "auto":
        return
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device (train.device) must be auto, cpu, cuda, cuda:N or mps, got {name!r}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"--device {name} (train.device): torch finds no CUDA GPU on this machine; use --device "
                              "cpu, or auto (a GPU where there is one)")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"--device {name} (train.device): this machine has {count} CUDA GPU(s), cuda:0 to "
                              f"cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name} (train.device): this machine has no Apple GPU (MPS) torch can use; use "
                          "--device cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device (train.device) must be auto, cpu, cuda, cuda:N or mps, got {name!r}")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available, else CPU; a device this machine lacks is a ConfigError (:func:`check_device`)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(name)
    return torch.device(name)
