"""Run directories and the one-call training entry point used by the CLI and by comparisons.

A run directory holds::

    config.yaml            the resolved RunConfig (with the model options filled in from the data)
    metrics.jsonl          one JSON record per line: {"kind": "step", ...} every log_every steps, {"kind": "epoch", ...}
    checkpoints/last.*     weights (.safetensors) + metadata (.json) after the latest epoch
    checkpoints/best.*     the same for the epoch with the best test accuracy
    summary.json           final and best accuracy, wall time, img/s, device, library versions, git commit
    curves.png             loss and accuracy per epoch
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import random
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import RunConfig, to_yaml
from ..errors import RunDirError
from ..measure import count_macs, count_params
from ..models import create_model, get_spec, model_options
from .checkpoint import atomic_write, save_checkpoint
from .loop import History, StepInfo, fit, resolve_device

RUN_MARKER = "config.yaml"


def environment() -> dict[str, Any]:
    """Library versions, machine and git commit, recorded with every run and result."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": git_commit(),
    }
    return info


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


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; in deterministic mode also force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


class RunDir:
    """A run's folder: created once, appended to while training, never silently reused."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ckpt_dir = path / "checkpoints"

    @classmethod
    def create(cls, path: Path, *, overwrite: bool = False) -> RunDir:
        """Make the folder; one that already holds a run is refused unless ``overwrite``."""
        if path.exists() and any(path.iterdir()):
            if not (path / RUN_MARKER).exists() and not overwrite:
                raise RunDirError(f"{path} exists and is not empty; choose another --name or --out")
            if not overwrite:
                raise RunDirError(f"{path} already holds a run; pass --overwrite to replace it or choose another --name")
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        run.ckpt_dir.mkdir(exist_ok=True)
        return run

    def write_text(self, name: str, text: str) -> None:
        atomic_write(self.path / name, text.encode())

    def log(self, record: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [r for r in rows if kind is None or r.get("kind") == kind]


def default_run_name(cfg: RunConfig) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{cfg.model.name}-{cfg.data.name}-{stamp}"


def _fill_model_kwargs(cfg: RunConfig, num_classes: int, in_chans: int) -> dict[str, Any]:
    """Fill ``num_classes``/``in_chans`` from the data where the recipe leaves them out and the model takes them."""
    kwargs = dict(cfg.model.kwargs)
    options = model_options(cfg.model.name)
    if "num_classes" in options:
        kwargs.setdefault("num_classes", num_classes)
    if "in_chans" in options:
        kwargs.setdefault("in_chans", in_chans)
    return kwargs


def plot_curves(records: list[dict[str, Any]], path: Path, title: str) -> None:
    """Loss and accuracy per epoch (and per logged step) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r for r in records if r.get("kind") == "epoch"]
    steps = [r for r in records if r.get("kind") == "step"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    if steps and epochs:
        per_epoch = epochs[0]["step"] / max(epochs[0]["epoch"], 1)
        ax1.plot([s["step"] / per_epoch for s in steps], [s["loss"] for s in steps], alpha=0.35, lw=0.8,
                 label="train (per step)")
    ax1.plot([e["epoch"] for e in epochs], [e["train_loss"] for e in epochs], "o-", label="train")
    ax1.plot([e["epoch"] for e in epochs], [e["test_loss"] for e in epochs], "s-", label="test")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.plot([e["epoch"] for e in epochs], [100 * e["train_acc"] for e in epochs], "o-", label="train")
    ax2.plot([e["epoch"] for e in epochs], [100 * e["test_acc"] for e in epochs], "s-", label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@dataclasses.dataclass
class RunResult:
    run: RunDir
    history: History
    summary: dict[str, Any]
    model: nn.Module


def run_training(
    cfg: RunConfig,
    *,
    overwrite: bool = False,
    on_step: Callable[[StepInfo], None] | None = None,
) -> RunResult:
    """Load the data, build the model, train, and write the run directory. Returns the run, history and summary.

    Deterministic mode (``train.deterministic``) is switched back to its previous setting afterwards.
    """
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    try:
        return _run_training(cfg, overwrite=overwrite, on_step=on_step)
    finally:
        torch.use_deterministic_algorithms(deterministic_before)


def _run_training(cfg: RunConfig, *, overwrite: bool, on_step: Callable[[StepInfo], None] | None) -> RunResult:
    from ..data import TensorLoader, get_dataset, subset

    start = time.perf_counter()
    get_spec(cfg.model.name)  # fail fast on an unknown model, before loading data
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    device = resolve_device(cfg.train.device)

    train_split = get_dataset(cfg.data.name, "train", root=cfg.data.root, download=cfg.data.download)
    test_split = get_dataset(cfg.data.name, "test", root=cfg.data.root, download=cfg.data.download)
    if cfg.data.train_subset:
        train_split = subset(train_split, cfg.data.train_subset, seed=cfg.train.seed)
    if cfg.data.test_subset:
        test_split = subset(test_split, cfg.data.test_subset, seed=0)
    spec = train_split.spec
    if cfg.data.mean is not None or cfg.data.std is not None:
        spec = dataclasses.replace(spec, mean=tuple(cfg.data.mean or spec.mean), std=tuple(cfg.data.std or spec.std))
        train_split = dataclasses.replace(train_split, spec=spec)
        test_split = dataclasses.replace(test_split, spec=spec)

    cfg.model.kwargs = _fill_model_kwargs(cfg, spec.num_classes, spec.in_chans)
    model = create_model(cfg.model.name, **cfg.model.kwargs).to(device)
    memory_format = torch.channels_last if cfg.data.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)

    loader_kw = dict(device=device, pad=cfg.data.pad, channels_last=cfg.data.channels_last)
    train_loader = TensorLoader(train_split, batch_size=cfg.data.batch_size, train=True, flip=cfg.data.flip,
                                crop_padding=cfg.data.crop_padding, seed=cfg.train.seed, **loader_kw)
    test_loader = TensorLoader(test_split, batch_size=cfg.data.eval_batch_size, train=False, **loader_kw)
    input_size = tuple(next(iter(test_loader))[0].shape[1:])

    run = RunDir.create(Path(cfg.out_dir) / (cfg.name or default_run_name(cfg)), overwrite=overwrite)
    run.write_text("config.yaml", to_yaml(cfg))
    env = environment()
    params = count_params(model)
    with torch.device("meta"):
        macs = count_macs(create_model(cfg.model.name, **cfg.model.kwargs), input_size)
    meta_base = {
        "model": cfg.model.name,
        "model_kwargs": cfg.model.kwargs,
        "data": {"name": cfg.data.name, "classes": list(spec.classes), "mean": list(spec.mean), "std": list(spec.std),
                 "in_chans": spec.in_chans, "img_size": list(spec.img_size), "pad": cfg.data.pad,
                 "input_size": list(input_size)},
        "config": cfg.to_dict(),
        "environment": env,
    }

    def save(tag: str, record: dict[str, Any]) -> None:
        save_checkpoint(run.ckpt_dir / tag, model, {**meta_base, "epoch": record["epoch"], "step": record["step"],
                                                     "test_acc": record["test_acc"]})

    history = fit(model, train_loader, test_loader, cfg, device=device, log=run.log, save=save, on_step=on_step,
                  start_time=start)
    wall = time.perf_counter() - start
    final = history.final
    train_seconds = sum(e["train_seconds"] for e in history.epochs)
    images = sum(e["train_seconds"] * e["img_per_s"] for e in history.epochs)
    summary = {
        "model": cfg.model.name,
        "dataset": cfg.data.name,
        "params": params,
        "macs": macs,
        "epochs": len(history.epochs),
        "final_test_acc": final.get("test_acc"),
        "best_test_acc": history.best_acc,
        "best_epoch": history.best_epoch,
        "final_train_acc": final.get("train_acc"),
        "time_to_target": history.reached_target_at,
        "target_accuracy": cfg.train.target_accuracy,
        "wall_seconds": wall,
        "train_seconds": train_seconds,
        "img_per_s": images / train_seconds if train_seconds else 0.0,
        "device": str(device) if device.type != "cuda" else f"cuda ({env['cuda']})",
        "run_dir": str(run.path),
        **{k: env[k] for k in ("python", "torch", "torchvision", "platform", "processor", "cpu_count",
                               "torch_threads", "git_commit")},
    }
    run.write_text("summary.json", json.dumps(summary, indent=2))
    plot_curves(run.records(), run.path / "curves.png", f"{cfg.model.name} on {cfg.data.name}")
    return RunResult(run, history, summary, model)
