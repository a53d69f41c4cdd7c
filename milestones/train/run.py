"""One call from a config to a trained run directory: :func:`run_training`, used by the CLI, comparisons and
experiments. It reads as its steps: prepare (resolve the config, lock the run being resumed), make the loaders, build
the model, open the run directory, fit, summarise.

Resuming (``run_training(cfg, resume=RUN_DIR)``, ``milestones train --resume RUN_DIR``) reads the run's own
``config.yaml`` and continues from ``checkpoints/state.json``: the training state is saved at every epoch end, every
``train.checkpoint_every`` steps and on SIGINT/SIGTERM, so a run killed even with SIGKILL loses at most the steps since
the last save, and in deterministic mode it ends with the same weights, bit for bit, as a run never interrupted. Only
settings that cannot change the outcome of the finished steps may differ on resume
(:data:`~milestones.train.runconfig.RESUMABLE_KEYS`);
``train.epochs`` may grow, which recomputes the learning-rate schedule for the new total from the next step on.
``metrics.jsonl`` is cut back to what it held when the state was saved, then appended to, with a ``{"kind":
"resume"}`` record marking the restart. One process at a time writes a run directory (:meth:`RunDir.lock`).
A resumed run computes as it did from its start: the precision, memory format and compile choices saved in its
training state are used again, not resolved anew on the machine it continues on, and ``summary.json`` lists the
machine of each part of the run (``segments``). A run that stopped at ``train.stop_at_train_error`` is finished, as
one that ran all its epochs is.

Under torchrun every rank calls :func:`run_training` (:mod:`.distributed`): each joins the process group and trains
its share of every batch through DDP, and rank 0 alone creates, locks and writes the run directory. A distributed run
resumes only with the world size it was saved with. Its ``summary.json`` records ``world_size``, and its ``img_per_s``
is global (``img_per_s_scope``): the images of all processes per second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import RunConfig, from_dict, to_yaml
from ..data import make_loaders
from ..data.loader import TensorLoader
from ..errors import CheckpointError, ConfigError, MilestonesError, RunDirError
from ..machine import cpu_name
from ..measure import count_macs, count_params
from ..models import create_model, get_spec, model_options
from ..precision import (
    Choice,
    check_settings,
    estimate_step_seconds,
    native_bf16,
    resolve_channels_last,
    resolve_compile,
    resolve_precision,
    use_compile_cache,
)
from . import distributed, finetune
from .callbacks import Callback, TensorBoard, require_tensorboard
from .checkpoint import load_training_state, remove_leftovers, save_checkpoint, save_training_state
from .device import check_device, resolve_device
from .loop import NonFiniteLossError, TrainingInterrupted, build_ema, check_stop, fit
from .losses import LOSSES
from .optim import build_optimizer
from .optim import check_config as check_optim
from .process import seed_everything, stop_on_signals
from .runconfig import config_differences, legacy_defaults, load_run_config, resume_config
from .rundir import RUN_MARKER, RunDir, check_run_name, environment, plot_curves
from .state import History, TrainState

SavedState = tuple[dict[str, Tensor], dict[str, Any]]

class _StateNotSaved(RunDirError):
    """Saving the training state failed; the message already says what survived."""


class RunWriter(Callback):
    """Writes a run directory as training goes: metrics records, the last/best/EMA weights after each epoch, and the
    full training state at each checkpoint. ``saved_step`` is the step of the last state saved (None before)."""

    def __init__(self, run: RunDir, cfg: RunConfig, meta: dict[str, Any], saved_step: int | None = None, *,
                 world: distributed.World = distributed.SINGLE) -> None:
        self.run, self.cfg, self.meta, self.saved_step, self.world = run, cfg, meta, saved_step, world

    def on_record(self, record: dict[str, Any]) -> None:
        if self.world.is_main:
            self.run.log(record)

    def on_epoch_end(self, record: dict[str, Any], improved: bool, state: TrainState) -> None:
        if not self.world.is_main:
            return
        meta = {**self.meta, "epoch": record["epoch"], "step": record["step"], "test_acc": record["test_acc"]}
        save_checkpoint(self.run.ckpt_dir / "last", state.model, meta)
        if improved:
            save_checkpoint(self.run.ckpt_dir / "best", state.model, meta)
        if state.ema is not None:
            save_checkpoint(self.run.ckpt_dir / "ema", state.ema.module, meta)

    def on_checkpoint(self, state: TrainState) -> None:
        if not self.world.is_main:  # rank 0 saves every rank's state (TrainState.gather)
            self.saved_step = state.step
            return
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
                f"{resume_command(self.run.path, self.world.size)}")


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
            may differ from that only in :data:`~milestones.train.runconfig.RESUMABLE_KEYS`.
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
    world = distributed.from_env()  # torchrun's RANK/WORLD_SIZE, else one process
    resumed = RunDir(Path(resume)) if resume is not None else None
    if resumed is not None and world.is_main:
        resumed.lock()  # before any work: one writer at a time
    joined = False
    try:
        cfg, saved = _prepare(cfg, resumed, world)
        if cfg.train.tensorboard:
            require_tensorboard()  # a missing package fails before the data are loaded
        device, joined = _setup(cfg, world)
        family = get_spec(cfg.model.name).family
        choices = _kept_choices(saved, device)  # a resumed run computes as it did from its start
        if "precision" not in choices:
            choices["precision"] = resolve_precision(cfg.train.precision, device, family)
        if "channels_last" not in choices:
            choices["channels_last"] = resolve_channels_last(cfg.data.channels_last, family, device,
                                                             choices["precision"].value)
        channels_last = choices["channels_last"].value
        loaders = make_loaders(dataclasses.replace(cfg.data, channels_last=channels_last), device,
                               seed=cfg.train.seed, default_image_size=tuple(get_spec(cfg.model.name).input_size[1:]),
                               channels=cfg.model.kwargs.get("in_chans"))  # a folder is read as the model takes it
        _shard(loaders, cfg, world)
        if len(loaders.train) == 0:  # drop_last: a batch larger than the split makes no step
            raise ConfigError(f"data.batch_size={cfg.data.batch_size} is more than the {loaders.train.num_samples} "
                              f"training images of {cfg.data.name}: no step would run; lower data.batch_size")
        model = _build_model(cfg, loaders.spec, device, channels_last, fresh=saved is None)
        head = finetune.prepare(model, cfg)
        if "compile" not in choices:
            choices["compile"] = _resolve_compile(cfg, family, device, loaders, saved, world,
                                                  choices["precision"].value)
        if world.size > 1 and cfg.train.sync_bn:  # before the optimizer and the EMA take the parameters
            distributed.convert_sync_bn(model, device)
        run = resumed or _create_run(cfg, overwrite, world)
        with run if world.is_main else contextlib.nullcontext(run):
            input_size = (loaders.spec.in_chans, *loaders.test.img_size)  # (C, H, W) as the batches come out
            writer = RunWriter(run, cfg, _checkpoint_meta(cfg, loaders.spec, input_size, choices),
                               saved[1]["step"] if saved else None, world=world)
            if world.is_main:
                _start_run_files(run, cfg, saved)
            optimizer = build_optimizer(model, cfg.optim, head=head, backbone_lr_mult=cfg.finetune.backbone_lr_mult)
            state = TrainState(model, optimizer, loaders.train, device,
                               ema=build_ema(model, cfg.train.ema_decay), started=start, world=world,
                               precision=choices["precision"].value, choices=choices)
            if choices["compile"].value:
                use_compile_cache()
                state.compiled = torch.compile(model)
            if world.size > 1:
                state.ddp = distributed.wrap(model, device, aux_weight=cfg.train.aux_loss_weight)
                torch.manual_seed(cfg.train.seed + 7919 * world.rank)  # ranks draw their own dropout masks
            if saved is not None:
                state.load_state_dict(saved, model_name=cfg.model.name)
            state.segments.append(_segment(state.step, device))
            board = [TensorBoard(run.path / "tensorboard")] if cfg.train.tensorboard and world.is_main else []
            history = _fit(state, loaders.test, cfg, [writer, *board, *callbacks], handle_signals, loaders.val)
            summary = (_summarise(run, cfg, state, loaders.spec, input_size, saved, writer.meta["environment"])
                       if world.is_main else {})
    finally:
        if resumed is not None:
            resumed.unlock()
        if joined:
            distributed.close()
        torch.use_deterministic_algorithms(deterministic_before)
        torch.set_num_threads(threads_before)
    return RunResult(run, history, summary, model, saved[1]["step"] if saved else None)


def check_config(cfg: RunConfig, *, new_run: bool = True) -> None:
    """Every option of ``cfg`` that can be checked without the data, each failure a one-line ConfigError (or
    CheckpointError for ``finetune.weights``): :func:`run_training` calls it before it reads any data or writes
    anything, and ``milestones train --dry-run`` before it prints the config. ``new_run``: also the run's name (a
    single folder inside ``out_dir``) and the ``finetune`` section, which a resumed run no longer uses.

    What needs the data (``data.train_subset`` against the split's size, a batch larger than the training split)
    is checked as the data load, still before the run directory is made.
    """
    get_spec(cfg.model.name)  # an unknown model, with close matches
    if new_run:
        check_run_name(cfg.name)
    if cfg.train.epochs < 1:
        raise ConfigError(f"train.epochs must be at least 1, got {cfg.train.epochs}")
    for key in ("batch_size", "eval_batch_size"):
        if getattr(cfg.data, key) < 1:
            raise ConfigError(f"data.{key} must be at least 1, got {getattr(cfg.data, key)}")
    for key in ("train_subset", "test_subset"):
        n = getattr(cfg.data, key)
        if n is not None and n < 0:
            raise ConfigError(f"data.{key} must be a number of images (or null: the whole split), got {n}")
    check_optim(cfg.optim, cfg.schedule)
    if cfg.train.loss not in LOSSES:
        raise ConfigError(f"unknown loss {cfg.train.loss!r} (train.loss); valid: {', '.join(LOSSES)}")
    if (cfg.data.mixup_alpha or cfg.data.cutmix_alpha) and cfg.train.loss != "ce":
        raise ConfigError(f"mixup/cutmix need train.loss=ce (their soft targets), not {cfg.train.loss!r}")
    if cfg.train.ema_decay is not None and not 0.0 < cfg.train.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay must be between 0 and 1 (e.g. 0.999), got {cfg.train.ema_decay}")
    check_settings(cfg)
    check_stop(cfg.train)
    check_device(cfg.train.device)
    if new_run:
        finetune.check_config(cfg)  # weights of another model, freeze patterns that match nothing


def default_run_name(cfg: RunConfig) -> str:
    return f"{cfg.model.name}-{cfg.data.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _prepare(cfg: RunConfig | None, resumed: RunDir | None,
             world: distributed.World = distributed.SINGLE) -> tuple[RunConfig, SavedState | None]:
    """The config to train with, and the saved state to continue from when resuming (checked before any work)."""
    if resumed is None:
        assert cfg is not None
        check_config(cfg)  # every option, before the data are loaded and the run directory is made
        return cfg, None
    path = resumed.path
    saved_cfg = load_run_config(path)
    state = load_training_state(path / "checkpoints")  # a corrupt state fails here, before any work
    info = state[1]
    try:
        at_save = from_dict(legacy_defaults(info.get("config") or {}))
    except ConfigError:
        raise CheckpointError(f"the training state in {path} records a config this version cannot read; "
                              "the run cannot be resumed") from None
    edited = config_differences(at_save, saved_cfg, all_kwargs=True)
    if edited:
        raise CheckpointError(f"{path / RUN_MARKER} no longer matches the config its training state was saved "
                              f"with: {edited}; put it back or start a new run")
    cfg = resume_config(saved_cfg, cfg, path, info.get("epochs_done", 0))
    check_config(cfg, new_run=False)
    _refuse_finished(path, cfg, info)
    saved_world = int(info.get("world_size", 1))
    if saved_world != world.size:
        raise CheckpointError(f"{path} was trained by {saved_world} process(es) and this run has {world.size}: "
                              f"resume it with the same number ({resume_command(path, saved_world)})")
    return cfg, state


def resume_command(path: Path, world_size: int = 1) -> str:
    """The command that continues the run in ``path`` with ``world_size`` processes."""
    return f"milestones train {f'--nproc {world_size} ' if world_size > 1 else ''}--resume {path}"


def _create_run(cfg: RunConfig, overwrite: bool, world: distributed.World) -> RunDir:
    """A new run directory: created and locked by rank 0 alone, whose path (or error) every rank then shares."""
    if world.size == 1:
        return RunDir.create(Path(cfg.out_dir) / (cfg.name or default_run_name(cfg)), overwrite=overwrite)
    run, made = None, None
    if world.is_main:
        try:
            run = RunDir.create(Path(cfg.out_dir) / (cfg.name or default_run_name(cfg)), overwrite=overwrite)
            made = str(run.path)
        except MilestonesError as e:
            made = e
    made = distributed.broadcast_object(made)
    if isinstance(made, BaseException):
        raise made
    return run if run is not None else RunDir(Path(made))


def _shard(loaders: Any, cfg: RunConfig, world: distributed.World) -> None:
    """Give each rank its rows of every batch (a distributed run needs the in-memory loader)."""
    if world.size == 1:
        return
    if not isinstance(loaders.train, TensorLoader):
        raise ConfigError(f"a distributed run needs the data in memory, and {cfg.data.name} is streamed: set "
                          "data.in_memory=true (if it fits) or train in one process")
    if cfg.data.batch_size % world.size:
        raise ConfigError(f"data.batch_size={cfg.data.batch_size} (the global batch) does not split into "
                          f"{world.size} equal parts: make it a multiple of the number of processes")
    loaders.train.shard(world.rank, world.size)
    for loader in (loaders.test, loaders.val):
        if isinstance(loader, TensorLoader):
            loader.shard(world.rank, world.size)


def _setup(cfg: RunConfig, world: distributed.World = distributed.SINGLE) -> tuple[torch.device, bool]:
    """Threads, seeds, deterministic kernels; the device to train on, and whether this call joined a process group
    (torchrun's ranks)."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    if world.size == 1:
        return resolve_device(cfg.train.device), False
    joined = not distributed.current().size > 1
    return distributed.init(cfg.train.device, cfg.train.dist_timeout)[1], joined


KEPT = "; kept from the run's start"
"""Added to the reason of a choice a resumed run took from its saved training state."""


def _kept_choices(saved: SavedState | None, device: torch.device) -> dict[str, Choice]:
    """The ``precision``, ``channels_last`` and ``compile`` choices a resumed run made at its start, from its saved
    training state (none for a new run, or a state saved before they were recorded: those resolve as new)."""
    if saved is None:
        return {}
    kept = {k: Choice(c["value"], c["reason"].removesuffix(KEPT) + KEPT)
            for k, c in (saved[1].get("choices") or {}).items()}
    bf16 = "precision" in kept and kept["precision"].value == "bf16"
    if bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"this run has computed in bf16 since its start, and {torch.cuda.get_device_name(device)} "
                          "does not support bfloat16; resume it on a device that does")
    return kept


def _segment(step: int, device: torch.device) -> dict[str, Any]:
    """Where the part of a run from ``step`` on runs: the CPU, its native bf16 flags and the device."""
    where = str(device) if device.type != "cuda" else f"cuda ({torch.cuda.get_device_name(device)})"
    return {"from_step": step, "processor": cpu_name(), "bf16_flags": native_bf16(), "device": where}


def _resolve_compile(cfg: RunConfig, family: str, device: torch.device, loaders: Any, saved: SavedState | None,
                     world: distributed.World, precision: str) -> Choice:
    """``train.compile`` for this run: its remaining steps, and an eager step's time estimated from the model's
    multiply-adds and the machine's probe (only if ``auto`` needs it)."""
    if world.size > 1 and cfg.train.compile is not False:
        return Choice(False, "a distributed run trains eager")
    steps = len(loaders.train) * cfg.train.epochs - (saved[1]["step"] if saved else 0)

    def step_seconds() -> float:
        size = (loaders.spec.in_chans, *loaders.test.img_size)
        with torch.device("meta"):
            macs = count_macs(create_model(cfg.model.name, **cfg.model.kwargs), size)
        return estimate_step_seconds(macs, cfg.data.batch_size, device)

    return resolve_compile(cfg.train.compile, family, device, steps=steps, step_seconds=step_seconds,
                           precision=precision)


def _build_model(cfg: RunConfig, spec: Any, device: torch.device, channels_last: bool = False, *,
                 fresh: bool = True) -> nn.Module:
    """The model, with ``num_classes``/``in_chans`` filled in from the data where the recipe leaves them out; a new
    run with ``finetune.weights`` starts from those weights (a resumed one gets its own state loaded later)."""
    kwargs = dict(cfg.model.kwargs)
    options = model_options(cfg.model.name)
    if "num_classes" in options:
        kwargs.setdefault("num_classes", spec.num_classes)
    if "in_chans" in options:
        kwargs.setdefault("in_chans", spec.in_chans)
    cfg.model.kwargs = kwargs
    if fresh and cfg.finetune.weights:
        model = finetune.build_finetuned(cfg.model.name, kwargs, cfg.finetune).to(device)
    else:
        model = create_model(cfg.model.name, **kwargs).to(device)
    return model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _checkpoint_meta(cfg: RunConfig, spec: Any, input_size: tuple[int, ...],
                     choices: dict[str, Choice]) -> dict[str, Any]:
    """What every checkpoint of the run records so that it can be rebuilt and fed, and how it was computed."""
    return {
        "model": cfg.model.name,
        "model_kwargs": cfg.model.kwargs,
        "data": {"name": cfg.data.name, "full_name": spec.full_name, "variant": spec.variant, "note": spec.note,
                 "classes": list(spec.classes), **spec.input_spec(cfg.data.pad).to_dict(),  # the input contract
                 "input_size": list(input_size), "class_subset": cfg.data.classes},
        "config": cfg.to_dict(),
        "environment": environment(),
        "precision": choices["precision"].value,
        "run_settings": {k: c.to_dict() for k, c in choices.items()},
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
         handle_signals: bool, val_loader: Any = None) -> History:
    """:func:`fit` with signals turned into a saved stop, and errors that say what was kept."""
    writer = callbacks[0]
    assert isinstance(writer, RunWriter)
    signals = stop_on_signals() if handle_signals else contextlib.nullcontext(None)
    try:
        with signals as stop:
            return fit(state, test_loader, cfg, callbacks=callbacks, stop=stop, val_loader=val_loader)
    except TrainingInterrupted as e:
        hint = f"resume with: {resume_command(writer.run.path, state.world.size)}"
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
    except Exception as e:
        if state.world.size == 1 or not distributed.is_peer_failure(e):
            raise
        why = str(e).strip().splitlines()[0][:100] if str(e).strip() else type(e).__name__
        kept = (f"the training state after step {writer.saved_step} is kept: resume with: "
                f"{resume_command(writer.run.path, state.world.size)}" if writer.saved_step is not None
                else "no training state was saved yet, so the run must start again")
        raise distributed.PeerLostError(f"rank {state.world.rank}: another process of this {state.world.size}-process "
                                        f"run stopped or became unreachable at step {state.step + 1} ({why}); "
                                        f"{kept}") from None


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
        # torchrun: img/s counts the images of every process (their epoch tallies are summed) per second of rank 0
        "img_per_s_scope": "global",
        "world_size": state.world.size,
        "device": str(device) if device.type != "cuda" else f"cuda ({env['cuda']})",
        "precision": state.precision,
        "channels_last": bool(state.choices["channels_last"].value) if "channels_last" in state.choices else None,
        "compiled": state.compiled is not None,
        "run_settings": {k: c.to_dict() for k, c in state.choices.items()},
        "run_dir": str(run.path),
        **{k: env[k] for k in ("python", "torch", "torchvision", "platform", "processor", "cpu_count",
                               "torch_threads", "git_commit")},
    }
    summary["stopped"] = ({"reason": history.stop_reason, "step": history.stopped_at_step,
                           "train_error_window": history.train_error_window} if history.stop_reason else None)
    summary["segments"] = state.segments
    val_accs = [e["val_acc"] for e in history.epochs if "val_acc" in e]
    if val_accs:
        summary.update(final_val_acc=final.get("val_acc"), best_val_acc=max(val_accs))
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
    history = info.get("history") or {}
    if history.get("stop_reason") == "train_error":
        raise RunDirError(f"{path} already finished: it stopped at step {history.get('stopped_at_step')}, its training "
                          f"error over the last {cfg.train.stop_window} steps having fallen to "
                          f"{history.get('train_error_window'):.4f} (train.stop_at_train_error="
                          f"{cfg.train.stop_at_train_error}); start a new run to train further")
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
