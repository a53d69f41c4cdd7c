"""Launching data-parallel training with torchrun (``milestones train --nproc N``): the checks that would fail on
every rank, made once before anything starts, and the ``torchrun`` command line that runs the same training."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ..config import RunConfig
from ..errors import CheckpointError, ConfigError
from .checkpoint import STATE_JSON
from .run import check_config

LAUNCH_OPTIONS = ("--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint", "--rdzv-id")
"""``milestones train`` options that configure the torchrun launch (each takes a value); the workers never see them."""


def torchrun_command(cfg: RunConfig, argv: Sequence[str], *, nproc: int, nnodes: int = 1,
                     rdzv_endpoint: str | None = None, rdzv_id: str | None = None,
                     resume: str | Path | None = None) -> list[str]:
    """The command that runs ``python -m milestones train`` with ``argv`` (less the launch options) on ``nproc``
    processes per node with torchrun, after checking what would fail on every rank (a one-line
    :class:`~milestones.errors.ConfigError` or :class:`~milestones.errors.CheckpointError`).

    Args:
        cfg: the resolved config of the run (checked here once, not once per worker).
        argv: the command line; what follows ``train`` is passed on.
        nproc: processes on this machine: at most one per GPU, or per CPU core this process may use.
        nnodes: machines taking part; more than one needs ``rdzv_endpoint`` (``HOST:PORT``).
        rdzv_id: a name shared by the nodes of one job (default ``milestones``).
        resume: the run directory continued; it must have been saved by ``nproc x nnodes`` processes.
    """
    check_config(cfg, new_run=not resume)
    if nproc < 1 or nnodes < 1:
        raise ConfigError(f"--nproc and --nnodes must be at least 1, got {nproc} and {nnodes}")
    gpu = cfg.train.device.startswith("cuda") or (cfg.train.device == "auto" and torch.cuda.is_available())
    if gpu and nproc > torch.cuda.device_count():
        raise ConfigError(f"--nproc {nproc} is more than the {torch.cuda.device_count()} GPU(s) of this machine: "
                          "start one process per GPU at most")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if not gpu and nproc > cores:
        raise ConfigError(f"--nproc {nproc} is more than the {cores} CPU core(s) this process may use: start at "
                          f"most {cores} processes on this machine")
    if nnodes > 1 and not rdzv_endpoint:
        raise ConfigError(f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT, the address every node's launcher "
                          "meets at (node 0's host and a free port)")
    if rdzv_endpoint:
        host, _, port = rdzv_endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--rdzv-endpoint must be HOST:PORT, got {rdzv_endpoint!r}")
    world = nproc * nnodes
    if cfg.data.batch_size % world:
        raise ConfigError(f"data.batch_size={cfg.data.batch_size} (the global batch) does not split into {world} "
                          f"equal parts: make it a multiple of --nproc x --nnodes")
    if resume:
        check_resume_world(Path(resume), world)
    rdzv = (["--nnodes", str(nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv_endpoint,
             "--rdzv-id", rdzv_id or "milestones"] if rdzv_endpoint else ["--standalone"])
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), *rdzv,
            "-m", "milestones", "train", *without_launch_options(argv)]


def check_resume_world(run: Path, world: int) -> None:
    """Refuse to resume a run with a number of processes other than the one it was saved with."""
    try:
        saved = int(json.loads((run / "checkpoints" / STATE_JSON).read_text()).get("world_size", 1))
    except (OSError, ValueError, AttributeError):
        return  # missing or unreadable: the workers report it in their own words
    if saved != world:
        raise CheckpointError(f"{run} was trained by {saved} process(es), not {world}: resume it with the same "
                              f"number (--nproc {saved}{' across nodes' if saved > 1 and world > 1 else ''})")


def without_launch_options(argv: Sequence[str]) -> list[str]:
    """``argv`` after ``train``, without the launcher's options and their values."""
    out, skip = [], False
    rest = list(argv)[list(argv).index("train") + 1:] if "train" in argv else list(argv)
    for arg in rest:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in LAUNCH_OPTIONS:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out
