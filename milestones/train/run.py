"""Run directories and the one-call training entry point used by the CLI and by comparisons.

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

Resuming (``run_training(cfg, resume=RUN_DIR)``, ``milestones train --resume RUN_DIR``) reads the run's own
``config.yaml`` and continues from ``checkpoints/state.json``: the training state is saved at every epoch end, every
``train.checkpoint_every`` steps and on SIGINT/SIGTERM, so a run killed even with SIGKILL loses at most the steps since
the last save, and in deterministic mode it ends with the same weights, bit for bit, as a run never interrupted. Only
settings that cannot change the outcome of the finished steps may differ on resume (:data:`RESUMABLE_KEYS`);
``train.epochs`` may grow, which recomputes the learning-rate schedule for the new total from the next step on.
``metrics.jsonl`` is cut back to what it held when the state was saved, then appended to, with a ``{"kind":
"resume"}`` record marking the restart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from ..config import RunConfig, from_dict, to_yaml
from ..errors import CheckpointError, ConfigError, RunDirError
from ..measure import count_macs, count_params
from ..models import create_model, get_spec, model_options
from .checkpoint import atomic_write, load_training_state, remove_leftovers, save_checkpoint, save_training_state
from .loop import History, NonFiniteLossError, StepInfo, TrainingInterrupted, fit, resolve_device

RUN_MARKER = "config.yaml"


def environment() -> dict[str, Any]:
    """Library versions, machine and git commit, recorded with every run and result."""
    info: dict[str, Any] = {
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
    return info


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
        """Make the folder; one that already holds a run is refused unless ``overwrite``.

        A folder that is not empty and holds no run is refused even with ``overwrite``: it may be anything.
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
            shutil.rmtree(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            run = cls(path)
            run.ckpt_dir.mkdir(exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create run directory {path}: {e.strerror}") from None
        return run

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


RESUMABLE_KEYS = (
    "train.epochs", "train.progress", "train.log_every", "train.checkpoint_every", "train.threads", "train.device",
    "train.target_accuracy", "data.root", "data.download", "data.eval_batch_size", "out_dir", "name",
)
"""Config keys that may differ when a run is resumed: they decide where things are and what is logged or evaluated,
not the steps already taken. ``train.epochs`` may only grow."""


def load_run_config(path: str | Path) -> RunConfig:
    """The ``config.yaml`` of an existing run directory, as a :class:`RunConfig`."""
    p = Path(path)
    if not p.is_dir():
        raise RunDirError(f"{p} is not a run directory (it does not exist); --resume takes the folder of an "
                          "earlier run")
    file = p / RUN_MARKER
    if not file.is_file():
        raise RunDirError(f"{p} is not a run directory (it has no {RUN_MARKER}); --resume takes the folder of an "
                          "earlier run")
    try:
        data = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError):
        raise RunDirError(f"{file} is unreadable or not valid YAML; the run cannot be resumed") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{file} does not hold a run configuration; the run cannot be resumed")
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{file}: {e}") from None


def _flat(cfg: RunConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for k, v in node.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict) and key != "model.kwargs":
                walk(v, f"{key}.")
            else:
                out[key] = v

    walk(cfg.to_dict(), "")
    return out


def resume_config(saved: RunConfig, cfg: RunConfig | None, path: Path, epochs_done: int = 0) -> RunConfig:
    """``saved`` with the :data:`RESUMABLE_KEYS` taken from ``cfg``; any other difference is a ConfigError naming it.

    ``cfg.model.kwargs`` may leave out options that the saved run filled in from the data (``num_classes``...).
    """
    if cfg is None:
        return saved
    changed = _differences(saved, cfg)
    if changed:
        raise ConfigError(f"cannot change {changed} when resuming {path}: a resumed run keeps its config.yaml "
                          f"(only {', '.join(RESUMABLE_KEYS)} may change); start a new run instead")
    if cfg.train.epochs < epochs_done:
        raise ConfigError(f"train.epochs={cfg.train.epochs} is fewer than the {epochs_done} epochs {path} has "
                          "already trained")
    merged = from_dict(saved.to_dict())
    for key in RESUMABLE_KEYS:
        section, _, name = key.rpartition(".")
        src, dst = (getattr(cfg, section), getattr(merged, section)) if section else (cfg, merged)
        setattr(dst, name, getattr(src, name))
    merged.out_dir, merged.name = saved.out_dir, saved.name  # the run stays where it is
    return merged


def _differences(old_cfg: RunConfig, new_cfg: RunConfig, *, all_kwargs: bool = False) -> str:
    """The settings outside :data:`RESUMABLE_KEYS` where ``new_cfg`` differs from ``old_cfg``, as ``key (old ->
    new)`` text ("" if none). ``model.kwargs`` of ``new_cfg`` may leave out options unless ``all_kwargs``."""
    old, new = _flat(old_cfg), _flat(new_cfg)
    changed = [k for k in new if k not in RESUMABLE_KEYS and k != "model.kwargs" and new[k] != old.get(k)]
    kwargs = dict.fromkeys([*new_cfg.model.kwargs, *(old_cfg.model.kwargs if all_kwargs else ())])
    changed += [f"model.kwargs.{k}" for k in kwargs
                if k not in old_cfg.model.kwargs or k not in new_cfg.model.kwargs
                or old_cfg.model.kwargs[k] != new_cfg.model.kwargs[k]]
    shown = ", ".join(f"{k} ({_get(old, k)!r} -> {_get(new, k)!r})" for k in changed[:4])
    return shown + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")


def _get(flat: dict[str, Any], key: str) -> Any:
    if key.startswith("model.kwargs."):
        return flat.get("model.kwargs", {}).get(key.removeprefix("model.kwargs."))
    return flat.get(key)


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


@dataclasses.dataclass
class RunResult:
    run: RunDir
    history: History
    summary: dict[str, Any]
    model: nn.Module
    resumed_from: int | None = None
    """The step the run continued from, when it was resumed."""


def run_training(
    cfg: RunConfig | None = None,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    on_step: Callable[[StepInfo], None] | None = None,
    handle_signals: bool = True,
) -> RunResult:
    """Load the data, build the model, train, and write the run directory. Returns the run, history and summary.

    Args:
        cfg: The run's configuration. With ``resume`` it may be None (the run's own ``config.yaml``); otherwise it
            may differ from that only in :data:`RESUMABLE_KEYS`.
        resume: A run directory to continue from its saved training state, in place.
        overwrite: Replace an existing run directory of the same name (never a folder that holds no run).
        on_step: Called after every optimiser step.
        handle_signals: Turn SIGINT/SIGTERM into "finish the step, save, raise :class:`TrainingInterrupted`".

    Deterministic mode (``train.deterministic``) and the torch thread count are set back afterwards.
    """
    if cfg is None and resume is None:
        raise ConfigError("run_training needs a config or a run directory to resume")
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    threads_before = torch.get_num_threads()
    try:
        return _run_training(cfg, resume=resume, overwrite=overwrite, on_step=on_step, handle_signals=handle_signals)
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        torch.set_num_threads(threads_before)


def _run_training(cfg: RunConfig | None, *, resume: str | Path | None, overwrite: bool,
                  on_step: Callable[[StepInfo], None] | None, handle_signals: bool) -> RunResult:
    from ..data import make_loaders

    start = time.perf_counter()
    state: tuple[dict[str, Tensor], dict[str, Any]] | None = None
    if resume is not None:
        if overwrite:
            raise ConfigError("--resume continues a run and --overwrite replaces it: pass one of them")
        run_path = Path(resume)
        saved = load_run_config(run_path)
        state = load_training_state(run_path / "checkpoints")  # a corrupt state fails here, before any work
        info = state[1]
        try:
            at_save = from_dict(info.get("config") or {})
        except ConfigError:
            raise CheckpointError(f"the training state in {run_path} records a config this version cannot read; "
                                  "the run cannot be resumed") from None
        edited = _differences(at_save, saved, all_kwargs=True)
        if edited:
            raise CheckpointError(f"{run_path / RUN_MARKER} no longer matches the config its training state was saved "
                                  f"with: {edited}; put it back or start a new run")
        cfg = resume_config(saved, cfg, run_path, info.get("epochs_done", 0))
        _refuse_finished(run_path, cfg, info)
    assert cfg is not None
    get_spec(cfg.model.name)  # fail fast on an unknown model, before loading data
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    device = resolve_device(cfg.train.device)

    if (cfg.data.mixup_alpha or cfg.data.cutmix_alpha) and cfg.train.loss != "ce":
        raise ConfigError(f"mixup/cutmix need train.loss=ce (their soft targets), not {cfg.train.loss!r}")
    train_loader, test_loader, spec = make_loaders(cfg.data, device, seed=cfg.train.seed,
                                                   default_image_size=get_spec(cfg.model.name).input_size[1:])
    cfg.model.kwargs = _fill_model_kwargs(cfg, spec.num_classes, spec.in_chans)
    model = create_model(cfg.model.name, **cfg.model.kwargs).to(device)
    memory_format = torch.channels_last if cfg.data.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    input_size = (spec.in_chans, *test_loader.img_size)  # (C, H, W) after pad/resize, as the batches come out

    if state is not None:
        run = RunDir(Path(resume))  # type: ignore[arg-type]
        remove_leftovers(run.path)
        remove_leftovers(run.ckpt_dir)
        run.truncate_metrics(state[1].get("metrics_bytes", run.metrics_size()))
        run.write_text(RUN_MARKER, to_yaml(cfg))  # the resumable keys may have changed (more epochs)
        run.log({"kind": "resume", "step": state[1]["step"], "epochs_done": state[1]["epochs_done"],
                 "time": datetime.now().isoformat(timespec="seconds")})
    else:
        run = RunDir.create(Path(cfg.out_dir) / (cfg.name or default_run_name(cfg)), overwrite=overwrite)
        run.write_text(RUN_MARKER, to_yaml(cfg))
    env = environment()
    meta_base = {
        "model": cfg.model.name,
        "model_kwargs": cfg.model.kwargs,
        "data": {"name": cfg.data.name, "full_name": spec.full_name, "variant": spec.variant, "note": spec.note,
                 "classes": list(spec.classes), "mean": list(spec.mean), "std": list(spec.std),
                 "in_chans": spec.in_chans, "img_size": list(spec.img_size), "pad": cfg.data.pad,
                 "input_size": list(input_size)},
        "config": cfg.to_dict(),
        "environment": env,
    }
    saved_step: list[int] = [state[1]["step"]] if state is not None else []

    def save(tag: str, record: dict[str, Any], module: nn.Module) -> None:
        save_checkpoint(run.ckpt_dir / tag, module, {**meta_base, "epoch": record["epoch"], "step": record["step"],
                                                     "test_acc": record["test_acc"]})

    def save_state(tensors: dict[str, Tensor], info: dict[str, Any]) -> None:
        info = {**info, "model": cfg.model.name, "metrics_bytes": run.metrics_size(),
                "saved_at": datetime.now().isoformat(timespec="seconds"), "config": cfg.to_dict()}
        try:
            save_training_state(run.ckpt_dir, tensors, info)
        except RunDirError as e:
            why = getattr(e.__cause__, "strerror", None) or str(e)
            raise _StateNotSaved(f"could not save the training state in {run.ckpt_dir}: {why}; "
                                 f"{_kept(run, saved_step)}") from None
        saved_step[:] = [info["step"]]

    signals = stop_on_signals() if handle_signals else contextlib.nullcontext(None)
    try:
        with signals as stop:
            history = fit(model, train_loader, test_loader, cfg, device=device, log=run.log, save=save,
                          save_state=save_state, resume=state, stop=stop, on_step=on_step, start_time=start)
    except TrainingInterrupted as e:
        resume_hint = f"resume with: milestones train --resume {run.path}"
        if saved_step == [e.step]:
            how = f"the state is saved: {resume_hint}"
        elif saved_step:
            how = f"the state after step {saved_step[0]} is kept (later steps will be trained again): {resume_hint}"
        else:
            how = "no training state was saved yet, so the run must start again"
        raise TrainingInterrupted(f"{e}; {how}", signal_name=e.signal_name, step=e.step) from None
    except NonFiniteLossError as e:
        kept = f"; the last good training state (step {saved_step[0]}) is kept in {run.ckpt_dir}" if saved_step else ""
        raise NonFiniteLossError(f"{e}, then start a new run{kept}") from None
    except _StateNotSaved:
        raise
    except RunDirError as e:
        raise RunDirError(f"{e}; {_kept(run, saved_step)}") from None

    params = count_params(model)
    with torch.device("meta"):
        macs = count_macs(create_model(cfg.model.name, **cfg.model.kwargs), input_size)
    wall = time.perf_counter() - start
    final = history.final
    train_seconds = sum(e["train_seconds"] for e in history.epochs)
    images = sum(e["train_seconds"] * e["img_per_s"] for e in history.epochs)
    summary = {
        "model": cfg.model.name,
        "dataset": spec.full_name,  # e.g. "cifar10 (jpeg-q75)": a result on a lossy copy says so
        "params": params,
        "macs": macs,
        "epochs": len(history.epochs),
        "final_test_acc": final.get("test_acc"),
        "best_test_acc": history.best_acc,
        "best_epoch": history.best_epoch,
        "final_train_acc": final.get("train_acc"),
        "time_to_target": history.reached_target_at,
        "target_accuracy": cfg.train.target_accuracy,
        "wall_seconds": wall + (state[1]["elapsed"] if state is not None else 0.0),
        "train_seconds": train_seconds,
        "img_per_s": images / train_seconds if train_seconds else 0.0,
        "device": str(device) if device.type != "cuda" else f"cuda ({env['cuda']})",
        "run_dir": str(run.path),
        **{k: env[k] for k in ("python", "torch", "torchvision", "platform", "processor", "cpu_count",
                               "torch_threads", "git_commit")},
    }
    if state is not None:
        summary["resumed_from_step"] = state[1]["step"]
    if "ema_test_acc" in final:
        summary["final_ema_test_acc"] = final["ema_test_acc"]
    run.write_text("summary.json", json.dumps(summary, indent=2))
    try:
        plot_curves(run.records(), run.path / "curves.png", f"{cfg.model.name} on {cfg.data.name}")
    except OSError as e:
        raise RunDirError(f"could not write {run.path / 'curves.png'}: {e.strerror or e}; the run itself is complete"
                          ) from None
    return RunResult(run, history, summary, model, state[1]["step"] if state is not None else None)


class _StateNotSaved(RunDirError):
    """Saving the training state failed; the message already says what survived."""


def _kept(run: RunDir, saved_step: list[int]) -> str:
    """What survives a failed save, and how to go on from it."""
    if not saved_step:
        return "no training state was saved yet, so the run must start again"
    return (f"the training state after step {saved_step[0]} is intact: free some space, then resume with: "
            f"milestones train --resume {run.path}")


def _refuse_finished(path: Path, cfg: RunConfig, info: dict[str, Any]) -> None:
    if info.get("batch", 0):
        return  # saved mid-epoch: that epoch is still to finish
    done = info.get("epochs_done", 0)
    if done >= cfg.train.epochs:
        raise RunDirError(f"{path} already finished its {done} epochs; pass --epochs N with N > {done} to train it "
                          "further")
    target = cfg.train.target_accuracy
    last = (info.get("history", {}).get("epochs") or [{}])[-1]
    if target is not None and last.get("test_acc", 0.0) >= target:
        raise RunDirError(f"{path} already reached train.target_accuracy={target}; raise it (or set it to null) to "
                          "train further")
