"""Options shared by several commands, declared once, and the table printer; nothing here imports torch."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

DATA_ROOT_HELP = "data folder (default: $MILESTONES_DATA or ~/.cache/milestones)"
DEVICE_HELP = "cpu, cuda, cuda:1 or auto"
NO_PROGRESS_HELP = "no progress bars (the epoch lines stay)"

SHORTCUTS = {"epochs": "train.epochs", "data_root": "data.root", "out": "out_dir", "name": "name",
             "device": "train.device", "seed": "train.seed", "precision": "train.precision"}
"""``train``/``finetune`` options that are spellings of a config key (``--epochs 5`` is ``--train.epochs=5``)."""


class Parser(argparse.ArgumentParser):
    """argparse without prefix matching (``allow_abbrev=False``): ``--epoch`` is an unknown option, not ``--epochs``.
    Subcommand parsers are made of the same class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help=DATA_ROOT_HELP)


def add_device(p: argparse.ArgumentParser, help: str = DEVICE_HELP, default: str | None = None) -> None:
    p.add_argument("--device", default=default, help=help)


def add_no_progress(p: argparse.ArgumentParser, help: str = NO_PROGRESS_HELP) -> None:
    p.add_argument("--no-progress", action="store_true", help=help)


def add_precision(p: argparse.ArgumentParser, default: str | None, help: str) -> None:
    """``--precision auto|fp32|bf16`` (``train.precision``, :data:`milestones.precision.PRECISIONS`, spelled out here
    so that building the parser does not import torch) with this command's default and help."""
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=default, help=help)


def add_which(p: argparse.ArgumentParser) -> None:
    p.add_argument("--which", default="best", choices=["best", "last"], help="for a run directory")


def add_run_dir(p: argparse.ArgumentParser) -> None:
    """Where a new run directory goes (``train``, ``finetune``)."""
    p.add_argument("--out", help="folder for run directories (default: runs)")
    p.add_argument("--name", help="run directory name (default: MODEL-DATA-TIMESTAMP)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory of that name")


def config_overrides(args: argparse.Namespace, extra: Sequence[str]) -> list[str]:
    """The ``--section.key=value`` arguments of ``extra``, then the :data:`SHORTCUTS` given, ``--download`` and
    ``--no-progress`` as the config keys they set."""
    overrides = split_overrides(extra)
    overrides += [f"--{key}={getattr(args, a)}" for a, key in SHORTCUTS.items() if getattr(args, a, None) is not None]
    if getattr(args, "download", False):
        overrides.append("--data.download=true")
    if args.no_progress:
        overrides.append("--train.progress=false")
    return overrides


def split_overrides(extra: Sequence[str]) -> list[str]:
    from ..errors import ConfigError

    overrides = []
    for arg in extra:
        if arg.startswith("--") and "=" in arg:
            overrides.append(arg)
        else:
            raise ConfigError(f"unrecognised argument {arg!r}; overrides look like --optim.lr=0.05")
    return overrides


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
