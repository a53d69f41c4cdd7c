"""One call from a config to a trained run directory: :func:`run_training`, used by the CLI, comparisons and
experiments. It reads as its steps: prepare (resolve the config, lock the run being resumed), make the loaders, build
the model, open the run directory, fit, summarise.

Resuming (``run_training(cfg, resume=RUN_DIR)``, ``milestones train --resume RUN_DIR``) reads the run's own
``config.yaml`` and continues from ``checkpoints/state.json``: the training state is saved at every epoch end, every
``train.checkpoint_every`` steps and on SIGINT/SIGTERM, so a run killed even with SIGKILL loses at most the steps since
the last save, and in deterministic mode it ends with the same weights, bit for bit, as a run never interrupted. Only
settings that cannot change the outcome of the finished steps may differ on resume (:data:`RESUMABLE_KEYS`);
``train.epochs`` may grow, which recomputes the learning-rate schedule for the new total from the next step on.
``metrics.jsonl`` is cut back to what it held when the state was saved, then appended to, with a ``{"kind":
"resume"}`` record marking the restart. One process at a time writes a run directory (:meth:`RunDir.lock`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from ..config import RunConfig, from_dict, to_yaml
from ..data import make_loaders
from ..errors import CheckpointError, ConfigError, RunDirError
from ..measure import count_macs, count_params
from ..models import create_model, get_spec, model_options
from .callbacks import Callback, TensorBoard, require_tensorboard
from .checkpoint import load_training_state, remove_leftovers, save_checkpoint, save_training_state
from .loop import NonFiniteLossError, TrainingInterrupted, build_ema, fit, resolve_device
from .optim import build_optimizer
from .rundir import RUN_MARKER, RunDir, environment, plot_curves
from .state import History, TrainState

SavedState = tuple[dict[str, Tensor], dict[str, Any]]

RESUMABLE_KEYS = (
    "train.epochs", "train.progress", "train.log_every", "train.checkpoint_every", "train.threads", "train.device",
    "train.target_accuracy", "train.tensorboard", "data.root", "data.download", "data.eval_batch_size", "out_dir",
    "name",
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


def config_differences(old_cfg: RunConfig, new_cfg: RunConfig, *, all_kwargs: bool = False) -> str:
    """The settings outside :data:`RESUMABLE_KEYS` where ``new_cfg`` differs from ``old_cfg``, as ``key (old ->
    new)`` text ("" if none). ``model.kwargs`` of ``new_cfg`` may leave out options unless ``all_kwargs``."""
    old, new = _flat(old_cfg), _flat(new_cfg)
    changed = [k for k in new if k not in RESUMABLE_KEYS and k != "model.kwargs" and new[k] != old.get(k)]
    kwargs = dict.fromkeys([*new_cfg.model.kwargs, *(old_cfg.model.kwargs if all_kwargs else ())])
    changed += [f"model.kwargs.{k}" for k in kwargs
                if k not in old_cfg.model.kwargs or k not in new_cfg.model.kwargs
                or old_cfg.model.kwargs[k] != new_cfg.model.kwargs[k]]

    def get(flat: dict[str, Any], key: str) -> Any:
        if key.startswith("model.kwargs."):
            return flat.get("model.kwargs", {}).get(key.removeprefix("model.kwargs."))
        return flat.get(key)

    shown = ", ".join(f"{k} ({get(old, k)!r} -> {get(new, k)!r})" for k in changed[:4])
    return shown + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")


def resume_config(saved: RunConfig, cfg: RunConfig | None, path: Path, epochs_done: int = 0) -> RunConfig:
    """``saved`` with the :data:`RESUMABLE_KEYS` taken from ``cfg``; any other difference is a ConfigError naming it.

    ``cfg.model.kwargs`` may leave out options that the saved run filled in from the data (``num_classes``...).
    """
    if cfg is None:
        return saved
    changed = config_differences(saved, cfg)
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


class _StateNotSaved(RunDirError):
    """Saving the training state failed; the message already says what survived."""


class RunWriter(Callback):
    """Writes a run directory as training goes: metrics records, the last/best/EMA weights after each epoch, and the
    full training state at each checkpoint. ``saved_step`` is the step of the last state saved (None before)."""

    def __init__(self, run: RunDir, cfg: RunConfig, meta: dict[str, Any], saved_step: int | None = None) -> None:
        self.run, self.cfg, self.meta, self.saved_step = run, cfg, meta, saved_step

    def on_record(self, record: dict[str, Any]) -> None:
        self.run.log(record)

    def on_epoch_end(self, record: dict[str, Any], improved: bool, state: TrainState) -> None:
        meta = {**self.meta, "epoch": record["epoch"], "step": record["step"], "test_acc": record["test_acc"]}
        save_checkpoint(self.run.ckpt_dir / "last", state.model, meta)
        if improved:
            save_checkpoint(self.run.ckpt_dir / "best", state.model, meta)
        if state.ema is not None:
            save_checkpoint(self.run.ckpt_dir / "ema", state.ema.module, meta)

    def on_checkpoint(self, state: TrainState) -> None:
        tensors, info = state.state_dict()
        info.update(model=self.cfg.model.name, metrics_bytes=self.run.metrics_size(),
                    saved_at=datetime.now().isoformat(timespec="seconds"), config=self.cfg.to_dict())
        try:
            save_training_state(self.run.ckpt_dir, tensors, info)
        except RunDirError as e:
            why = getattr(e.__cause__, "strerror", None) or str(e)
            raise _StateNotSaved(f"could not save the training state in {self.run.ckpt_dir}: {why}; "
                                 f"{self.kept()}") from None
        self.saved_step = state.step

    def kept(self) -> str:
        """What survives a failed save, and how to go on from it."""
        if self.saved_step is None:
            return "no training state was saved yet, so the run must start again"
        return (f"the training state after step {self.saved_step} is intact: free some space, then resume with: "
                f"milestones train --resume {self.run.path}")


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
    callbacks: Sequence[Callback] = (),
    handle_signals: bool = True,
) -> RunResult:
    """Load the data, build the model, train, and write the run directory. Returns the run, history and summary.

    Args:
        cfg: The run's configuration. With ``resume`` it may be None (the run's own ``config.yaml``); otherwise it
            may differ from that only in :data:`RESUMABLE_KEYS`.
        resume: A run directory to continue from its saved training state, in place.
        overwrite: Replace an existing run directory of the same name (never a folder that holds no run).
        callbacks: Extra :class:`~milestones.train.callbacks.Callback` objects (progress bars, measurements).
        handle_signals: Turn SIGINT/SIGTERM into "finish the step, save, raise :class:`TrainingInterrupted`".

    Deterministic mode (``train.deterministic``) and the torch thread count are set back afterwards.
    """
    if cfg is None and resume is None:
        raise ConfigError("run_training needs a config or a run directory to resume")
    if resume is not None and overwrite:
        raise ConfigError("--resume continues a run and --overwrite replaces it: pass one of them")
    deterministic_before, threads_before = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    start = time.perf_counter()
    resumed = RunDir(Path(resume)).lock() if resume is not None else None  # before any work: one writer at a time
    try:
        cfg, saved = _prepare(cfg, resumed)
        if cfg.train.tensorboard:
            require_tensorboard()  # a missing package fails before the data are loaded
        device = _setup(cfg)
        loaders = make_loaders(cfg.data, device, seed=cfg.train.seed,
                               default_image_size=tuple(get_spec(cfg.model.name).input_size[1:]))
        model = _build_model(cfg, loaders.spec, device)
        run = resumed or RunDir.create(Path(cfg.out_dir) / (cfg.name or default_run_name(cfg)), overwrite=overwrite)
        with run:
            input_size = (loaders.spec.in_chans, *loaders.test.img_size)  # (C, H, W) as the batches come out
            writer = RunWriter(run, cfg, _checkpoint_meta(cfg, loaders.spec, input_size),
                               saved[1]["step"] if saved else None)
            _start_run_files(run, cfg, saved)
            state = TrainState(model, build_optimizer(model, cfg.optim), loaders.train, device,
                               ema=build_ema(model, cfg.train.ema_decay), started=start)
            if saved is not None:
                state.load_state_dict(saved, model_name=cfg.model.name)
            board = [TensorBoard(run.path / "tensorboard")] if cfg.train.tensorboard else []
            history = _fit(state, loaders.test, cfg, [writer, *board, *callbacks], handle_signals)
            summary = _summarise(run, cfg, state, loaders.spec, input_size, saved, writer.meta["environment"])
    finally:
        if resumed is not None:
            resumed.unlock()
        torch.use_deterministic_algorithms(deterministic_before)
        torch.set_num_threads(threads_before)
    return RunResult(run, history, summary, model, saved[1]["step"] if saved else None)


def default_run_name(cfg: RunConfig) -> str:
    return f"{cfg.model.name}-{cfg.data.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _prepare(cfg: RunConfig | None, resumed: RunDir | None) -> tuple[RunConfig, SavedState | None]:
    """The config to train with, and the saved state to continue from when resuming (checked before any work)."""
    if resumed is None:
        assert cfg is not None
        get_spec(cfg.model.name)  # fail fast on an unknown model, before loading data
        return cfg, None
    path = resumed.path
    saved_cfg = load_run_config(path)
    state = load_training_state(path / "checkpoints")  # a corrupt state fails here, before any work
    info = state[1]
    try:
        at_save = from_dict(info.get("config") or {})
    except ConfigError:
        raise CheckpointError(f"the training state in {path} records a config this version cannot read; "
                              "the run cannot be resumed") from None
    edited = config_differences(at_save, saved_cfg, all_kwargs=True)
    if edited:
        raise CheckpointError(f"{path / RUN_MARKER} no longer matches the config its training state was saved "
                              f"with: {edited}; put it back or start a new run")
    cfg = resume_config(saved_cfg, cfg, path, info.get("epochs_done", 0))
    _refuse_finished(path, cfg, info)
    return cfg, state


def _setup(cfg: RunConfig) -> torch.device:
    """Threads, seeds, deterministic kernels; the device to train on. Also checks the settings the loss needs."""
    if (cfg.data.mixup_alpha or cfg.data.cutmix_alpha) and cfg.train.loss != "ce":
        raise ConfigError(f"mixup/cutmix need train.loss=ce (their soft targets), not {cfg.train.loss!r}")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    return resolve_device(cfg.train.device)


def _build_model(cfg: RunConfig, spec: Any, device: torch.device) -> nn.Module:
    """The model, with ``num_classes``/``in_chans`` filled in from the data where the recipe leaves them out."""
    kwargs = dict(cfg.model.kwargs)
    options = model_options(cfg.model.name)
    if "num_classes" in options:
        kwargs.setdefault("num_classes", spec.num_classes)
    if "in_chans" in options:
        kwargs.setdefault("in_chans", spec.in_chans)
    cfg.model.kwargs = kwargs
    model = create_model(cfg.model.name, **kwargs).to(device)
    return model.to(memory_format=torch.channels_last if cfg.data.channels_last else torch.contiguous_format)


def _checkpoint_meta(cfg: RunConfig, spec: Any, input_size: tuple[int, ...]) -> dict[str, Any]:
    """What every checkpoint of the run records so that it can be rebuilt and fed."""
    return {
        "model": cfg.model.name,
        "model_kwargs": cfg.model.kwargs,
        "data": {"name": cfg.data.name, "full_name": spec.full_name, "variant": spec.variant, "note": spec.note,
                 "classes": list(spec.classes), "mean": list(spec.mean), "std": list(spec.std),
                 "in_chans": spec.in_chans, "img_size": list(spec.img_size), "pad": cfg.data.pad,
                 "input_size": list(input_size)},
        "config": cfg.to_dict(),
        "environment": environment(),
    }


def _start_run_files(run: RunDir, cfg: RunConfig, saved: SavedState | None) -> None:
    """Write ``config.yaml``; when resuming, first clear what a killed process left and cut the metrics back."""
    if saved is not None:
        remove_leftovers(run.path)
        remove_leftovers(run.ckpt_dir)
        run.truncate_metrics(saved[1].get("metrics_bytes", run.metrics_size()))
    run.write_text(RUN_MARKER, to_yaml(cfg))  # the resumable keys may have changed (more epochs)
    if saved is not None:
        run.log({"kind": "resume", "step": saved[1]["step"], "epochs_done": saved[1]["epochs_done"],
                 "time": datetime.now().isoformat(timespec="seconds")})


def _fit(state: TrainState, test_loader: Any, cfg: RunConfig, callbacks: list[Callback],
         handle_signals: bool) -> History:
    """:func:`fit` with signals turned into a saved stop, and errors that say what was kept."""
    writer = callbacks[0]
    assert isinstance(writer, RunWriter)
    signals = stop_on_signals() if handle_signals else contextlib.nullcontext(None)
    try:
        with signals as stop:
            return fit(state, test_loader, cfg, callbacks=callbacks, stop=stop)
    except TrainingInterrupted as e:
        hint = f"resume with: milestones train --resume {writer.run.path}"
        if writer.saved_step == e.step:
            how = f"the state is saved: {hint}"
        elif writer.saved_step is not None:
            how = f"the state after step {writer.saved_step} is kept (later steps will be trained again): {hint}"
        else:
            how = "no training state was saved yet, so the run must start again"
        raise TrainingInterrupted(f"{e}; {how}", signal_name=e.signal_name, step=e.step) from None
    except NonFiniteLossError as e:
        kept = "" if writer.saved_step is None else (
            f"; the last good training state (step {writer.saved_step}) is kept in {writer.run.ckpt_dir}")
        raise NonFiniteLossError(f"{e}, then start a new run{kept}") from None
    except _StateNotSaved:
        raise
    except RunDirError as e:
        raise RunDirError(f"{e}; {writer.kept()}") from None


def _summarise(run: RunDir, cfg: RunConfig, state: TrainState, spec: Any, input_size: tuple[int, ...],
               saved: SavedState | None, env: dict[str, Any]) -> dict[str, Any]:
    """Write ``summary.json`` and ``curves.png``; returns the summary."""
    history = state.history
    with torch.device("meta"):
        macs = count_macs(create_model(cfg.model.name, **cfg.model.kwargs), input_size)
    final = history.final
    train_seconds = sum(e["train_seconds"] for e in history.epochs)
    images = sum(e["train_seconds"] * e["img_per_s"] for e in history.epochs)
    device = state.device
    summary = {
        "model": cfg.model.name,
        "dataset": spec.full_name,  # e.g. "cifar10 (jpeg-q75)": a result on a lossy copy says so
        "params": count_params(state.model),
        "macs": macs,
        "epochs": len(history.epochs),
        "final_test_acc": final.get("test_acc"),
        "best_test_acc": history.best_acc,
        "best_epoch": history.best_epoch,
        "final_train_acc": final.get("train_acc"),
        "time_to_target": history.reached_target_at,
        "target_accuracy": cfg.train.target_accuracy,
        "wall_seconds": state.elapsed,
        "train_seconds": train_seconds,
        "img_per_s": images / train_seconds if train_seconds else 0.0,
        "device": str(device) if device.type != "cuda" else f"cuda ({env['cuda']})",
        "run_dir": str(run.path),
        **{k: env[k] for k in ("python", "torch", "torchvision", "platform", "processor", "cpu_count",
                               "torch_threads", "git_commit")},
    }
    if saved is not None:
        summary["resumed_from_step"] = saved[1]["step"]
    if "ema_test_acc" in final:
        summary["final_ema_test_acc"] = final["ema_test_acc"]
    run.write_text("summary.json", json.dumps(summary, indent=2))
    try:
        plot_curves(run.records(), run.path / "curves.png", f"{cfg.model.name} on {cfg.data.name}")
    except OSError as e:
        raise RunDirError(f"could not write {run.path / 'curves.png'}: {e.strerror or e}; the run itself is complete"
                          ) from None
    return summary


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
