"""A run's folder on disk, the machine facts recorded with it, and its curves.

A run directory holds::

    config.yaml            the resolved RunConfig (with the model options filled in from the data)
    metrics.jsonl          one JSON record per line: {"kind": "step", ...} every log_every steps, {"kind": "epoch", ...}
    checkpoints/last.*     weights (.safetensors) + metadata (.json) after the latest epoch
    checkpoints/best.*     the same for the epoch with the best test accuracy
    checkpoints/ema.*      the moving average of the weights after the latest epoch (with train.ema_decay)
    checkpoints/state.json the full training state for --resume (progress, RNG, optimizer structure), naming the
                           checkpoints/state.[ab].safetensors file that holds its tensors (see checkpoint.py)
    summary.json           final and best accuracy, wall time, img/s, device, library versions, git commit
    curves.png             loss and accuracy per epoch
    .lock                  held (``flock``) by the process writing the run; the operating system lets go of it
                           when that process ends, however it ends
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, RunDirError
from ..files import atomic_write
from ..machine import cpu_name

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; two writers are not detected there
    fcntl = None  # type: ignore[assignment]

RUN_MARKER = "config.yaml"
LOCK_FILE = ".lock"


def check_run_name(name: str | None) -> None:
    """A run's ``name`` is one folder inside ``out_dir`` (a ConfigError otherwise): no ``/`` or ``\\`` (a separator
    on some system), not ``.`` or ``..``, so that a run never writes outside the folder ``--out`` names. None (the
    default name) passes."""
    if name is None:
        return
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        raise ConfigError(f"run name {name!r} is not a single folder name (no '/' or '\\', not '.' or '..'): the "
                          "run directory is made inside --out: choose the folder with --out and the name with --name")


class RunDir:
    """A run's folder: created once, appended to while training, never silently reused, written by one process at a
    time (:meth:`lock`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ckpt_dir = path / "checkpoints"
        self._lock_fd: int | None = None

    @classmethod
    def create(cls, path: Path, *, overwrite: bool = False) -> RunDir:
        """Make the folder and lock it; one that already holds a run is refused unless ``overwrite``.

        A folder that is not empty and holds no run is refused even with ``overwrite``: it may be anything. A run
        that another process is writing is never replaced.
        """
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path} exists and is not a folder; choose another --name or --out")
        if path.exists() and any(path.iterdir()):
            if not (path / RUN_MARKER).exists():
                raise RunDirError(f"{path} exists, is not empty and holds no run (no {RUN_MARKER}); it is left alone "
                                  "even with --overwrite: choose another --name or --out")
            if not overwrite:
                raise RunDirError(f"{path} already holds a run; pass --resume {path} to continue it, --overwrite to "
                                  "replace it, or choose another --name")
            held = cls(path).lock()  # refuses a run in use
            shutil.rmtree(path)
            held.unlock()
        try:
            path.mkdir(parents=True, exist_ok=True)
            run = cls(path)
            run.ckpt_dir.mkdir(exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create run directory {path}: {e.strerror}") from None
        return run.lock()

    def lock(self) -> RunDir:
        """Take the run's lock, or raise :class:`RunDirError` if another process holds it. Returns ``self``."""
        if fcntl is None or self._lock_fd is not None:
            return self
        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(f"cannot open the lock file of {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirError(f"{self.path} is in use by another process (pid {holder}); wait for it to finish or "
                              "stop it, or choose another --name") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        return self

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def __enter__(self) -> RunDir:
        return self.lock()

    def __exit__(self, *exc: object) -> None:
        self.unlock()

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def write_text(self, name: str, text: str) -> None:
        atomic_write(self.path / name, text.encode())

    def log(self, record: dict[str, Any]) -> None:
        try:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise RunDirError(f"could not append to {self.metrics_path}: {e.strerror or e}") from None

    def metrics_size(self) -> int:
        """Bytes in ``metrics.jsonl`` now: saved with each training state, so a resume can cut off later lines."""
        try:
            return self.metrics_path.stat().st_size
        except FileNotFoundError:
            return 0

    def truncate_metrics(self, size: int) -> None:
        """Drop what ``metrics.jsonl`` gained after a state was saved (steps that a resume trains again)."""
        if self.metrics_size() > size:
            atomic_write(self.metrics_path, self.metrics_path.read_bytes()[:size])

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl``; a torn last line (a crash mid-write) is skipped."""
        if not self.metrics_path.exists():
            return []
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                rows.append(json.loads(line))
        return [r for r in rows if isinstance(r, dict) and (kind is None or r.get("kind") == kind)]


def environment() -> dict[str, Any]:
    """Library versions, machine and git commit, recorded with every run and result."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "platform": platform.platform(),
        "processor": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": git_commit(),
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """The commit of the milestones checkout, with ``+dirty`` if it has uncommitted changes; None outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def plot_curves(records: list[dict[str, Any]], path: Path, title: str) -> None:
    """Loss and accuracy per epoch (and per logged step) as a PNG."""
    fig = curves_figure({"": records}, title=title)
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt  # after curves_figure chose the Agg backend

    plt.close(fig)


def curves_figure(runs: dict[str, list[dict[str, Any]]], *, title: str = "") -> Any:
    """Loss and accuracy per epoch of one or several runs (label -> metrics records) in one two-panel figure.

    Each run has one colour: training per epoch as circles, test as squares, and the logged per-step training loss
    as a faint line. Runs are aligned by epoch.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (label, records) in enumerate(runs.items()):
        name = f"{label} " if label else ""
        colours = {"train": f"C{2 * i}", "test": f"C{2 * i + 1}"} if len(runs) == 1 else {"train": f"C{i}",
                                                                                         "test": f"C{i}"}
        epochs = [r for r in records if r.get("kind") == "epoch"]
        steps = [r for r in records if r.get("kind") == "step"]
        if steps and epochs:
            per_epoch = epochs[0]["step"] / max(epochs[0]["epoch"], 1)
            ax1.plot([s["step"] / per_epoch for s in steps], [s["loss"] for s in steps], alpha=0.35, lw=0.8,
                     color=colours["train"], label=f"{name}train (per step)")
        for ax, key, scale, ylabel in ((ax1, "loss", 1, "loss"), (ax2, "acc", 100, "accuracy (%)")):
            x = [e["epoch"] for e in epochs]
            ax.plot(x, [scale * e[f"train_{key}"] for e in epochs], "o-" if len(runs) == 1 else "o--",
                    color=colours["train"], label=f"{name}train")
            ax.plot(x, [scale * e[f"test_{key}"] for e in epochs], "s-", color=colours["test"], label=f"{name}test")
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
    for ax in (ax1, ax2):
        ax.legend(fontsize=8 if len(runs) > 1 else 10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
