"""The training loop: plain functions, no callback framework.

``fit`` runs epochs of ``train_one_epoch`` and ``evaluate``, sets the learning rate from ``lr_at(step)`` before every
step, logs per-step and per-epoch records, and hands the run directory what to save: the last and best weights after
each epoch, and the full training state (:func:`capture_state`: model, optimizer, EMA, RNG and data-loader state,
running sums) at epoch ends, every ``train.checkpoint_every`` steps and when a stop is requested. Given such a state
(``resume=``) it continues where the state was taken; in deterministic mode the final weights are bitwise those of an
uninterrupted run, because everything that decides the next step is restored: the weights, the optimizer moments, the
step (the schedule is a pure function of it), the loader's position and generator, and every global RNG.

Failure is loud and early. A non-finite loss stops the run at the step it happens (every step on a CPU, where the
check is free; on a GPU a flag kept on the device is read at each log, save and epoch end, so there is no sync per
step), and weights are checked to be finite before every save, so a saved state is always a good one. A requested
stop (``stop()`` returns a signal name; ``run.py`` wires SIGINT/SIGTERM to it) finishes the current step, saves the
state and raises :class:`TrainingInterrupted`. A caller that needs more per step (gradient norms, feature maps) passes
``on_step``; it receives the live objects.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from ..config import RunConfig
from ..errors import CheckpointError, ConfigError, MilestonesError
from .checkpoint import load_weights_into, pack, unpack
from .losses import Loss, build_loss
from .optim import build_optimizer, lr_at, set_lr


class NonFiniteLossError(MilestonesError):
    """The loss (or the weights) became NaN or infinite; the run stops and the last good checkpoint stays."""


class TrainingInterrupted(MilestonesError):
    """A stop was requested (SIGINT or SIGTERM): the current step finished and the training state was saved.

    ``exit_code`` is the shell convention for a process ended by that signal, 128 + its number: 130 for SIGINT, 143
    for SIGTERM.
    """

    def __init__(self, message: str, *, signal_name: str, step: int) -> None:
        super().__init__(message)
        self.signal_name = signal_name
        self.step = step
        sig = getattr(signal.Signals, signal_name, None)
        self.exit_code = 128 + sig.value if sig is not None else 2


@dataclass
class StepInfo:
    """What ``on_step`` sees after each optimiser step."""

    step: int
    epoch: int
    loss: float
    lr: float
    model: nn.Module
    optimizer: torch.optim.Optimizer
    inputs: Tensor
    targets: Tensor
    logits: Tensor


@dataclass
class History:
    """Per-epoch records (the same dicts written to ``metrics.jsonl``) and the best test accuracy."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_acc: float = 0.0
    best_epoch: int = -1
    reached_target_at: float | None = None

    @property
    def final(self) -> dict[str, Any]:
        return self.epochs[-1] if self.epochs else {}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        return cls(**data)


@dataclass
class EpochTally:
    """Running sums of the epoch in progress, saved with a mid-epoch state so that its metrics come out whole."""

    loss_sum: Tensor
    correct: Tensor
    seen: int = 0
    batches: int = 0
    seconds: float = 0.0

    @classmethod
    def zero(cls, device: torch.device) -> EpochTally:
        return cls(torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long))


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_ema(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights and buffers, or None without ``decay``.

    ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn`` (one fused lerp per dtype group per step);
    buffers are averaged too (``use_buffers``), so BatchNorm statistics follow the averaged weights.
    """
    if decay is None:
        return None
    if not 0.0 < decay < 1.0:
        raise ConfigError(f"train.ema_decay must be between 0 and 1 (e.g. 0.999), got {decay}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    # bf16 autocast on GPUs that support it; fp32 on the CPU, where autocast is slower for these small convs.
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _logits_and_loss(model: nn.Module, x: Tensor, y: Tensor, loss_fn: Loss, aux_weight: float) -> tuple[Tensor, Tensor]:
    if aux_weight > 0 and hasattr(model, "forward_with_aux"):
        logits, aux = model.forward_with_aux(x)
        loss = loss_fn(logits, y) + aux_weight * sum(loss_fn(a, y) for a in aux)
        return logits, loss
    logits = model(x)
    return logits, loss_fn(logits, y)


_ADVICE = "lower optim.lr or set train.clip_grad_norm"
_NO_BAD_STEP = torch.iinfo(torch.long).max


class _FiniteGuard:
    """Notices the first step whose loss is NaN or infinite.

    On a CPU reading the loss costs nothing, so every step is checked as it happens. On a GPU that read would wait for
    the step to finish, so the first bad step is kept on the device and read only at :meth:`check` (each log, save
    and epoch end): a state is never saved after a bad step, and the message still names the exact step.
    """

    def __init__(self, device: torch.device, epoch: int) -> None:
        self.each_step = device.type != "cuda"
        self.epoch = epoch
        self.first_bad = torch.full((), _NO_BAD_STEP, dtype=torch.long, device=device)

    def update(self, loss: Tensor, step: int) -> None:
        if self.each_step:
            value = loss.detach().item()
            if not math.isfinite(value):
                raise NonFiniteLossError(f"loss became {value} at step {step} (epoch {self.epoch + 1}); {_ADVICE}")
        else:
            bad = torch.where(~torch.isfinite(loss.detach()), step, _NO_BAD_STEP)
            self.first_bad = torch.minimum(self.first_bad, bad)

    def check(self) -> None:
        if not self.each_step and (bad := int(self.first_bad)) != _NO_BAD_STEP:
            raise NonFiniteLossError(f"loss became NaN or infinite at step {bad} (epoch {self.epoch + 1}); {_ADVICE}")


def check_finite_weights(model: nn.Module, step: int) -> None:
    """Refuse to save weights that are no longer finite (a step can overflow in the backward pass while the loss it
    reported was finite)."""
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise NonFiniteLossError(f"weights became NaN or infinite by step {step} ({name}); {_ADVICE}")


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn: Loss,
    *,
    epoch: int,
    step: int,
    lr_fn: Callable[[int], float],
    cfg: RunConfig,
    device: torch.device,
    log: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    progress: bool = True,
    tally: EpochTally | None = None,
    ema: AveragedModel | None = None,
    checkpoint: Callable[[int, EpochTally], None] | None = None,
    stop: Callable[[], str | None] | None = None,
) -> tuple[dict[str, float], int]:
    """One pass over ``loader``. Returns the epoch's mean loss, accuracy, throughput and the next step number.

    Args:
        tally: The running sums of this epoch when it is resumed part-way (the loader then serves only the rest).
        ema: Updated after every optimiser step.
        checkpoint: ``checkpoint(step, tally)`` saves the training state; called every ``train.checkpoint_every``
            steps and when ``stop()`` asks to stop, except on the epoch's last batch (``fit`` saves after the epoch).
        stop: Returns a signal name when the run should stop after the current step, else None.
    """
    model.train()
    tally = tally if tally is not None else EpochTally.zero(device)
    total = len(loader) if hasattr(loader, "__len__") else None
    bar = tqdm(loader, total=total, initial=tally.batches, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", leave=False,
               disable=not progress, unit="batch", dynamic_ncols=True)
    guard = _FiniteGuard(device, epoch)
    start = time.perf_counter() - tally.seconds  # seconds spent on this epoch before a resume count too
    clip = cfg.train.clip_grad_norm
    every = cfg.train.checkpoint_every
    for x, y in bar:
        lr = lr_fn(step)
        set_lr(optimizer, lr)
        with _autocast(device):
            logits, loss = _logits_and_loss(model, x, y, loss_fn, cfg.train.aux_loss_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        n = y.shape[0]
        tally.loss_sum += loss.detach() * n
        hard = y if y.ndim == 1 else y.argmax(1)  # mixup/cutmix: the larger share's label
        tally.correct += (logits.detach().argmax(1) == hard).sum()
        tally.seen += n
        tally.batches += 1
        step += 1
        guard.update(loss, step)
        if on_step is not None:
            on_step(StepInfo(step, epoch, loss.item(), lr, model, optimizer, x, y, logits.detach()))
        if log is not None and cfg.train.log_every and step % cfg.train.log_every == 0:
            guard.check()
            value = loss.item()  # one sync per log interval, not per step
            log({"kind": "step", "step": step, "epoch": epoch + 1, "loss": value, "lr": lr})
            bar.set_postfix(loss=f"{value:.3f}", img_s=f"{tally.seen / (time.perf_counter() - start):.0f}")
        requested = stop() if stop is not None else None
        if total is not None and tally.batches >= total:
            continue  # the epoch's last batch: fit evaluates, saves and honours a stop right after
        if requested or (every and step % every == 0):
            if checkpoint is not None:
                guard.check()
                tally.seconds = time.perf_counter() - start
                checkpoint(step, tally)
            if requested:
                raise TrainingInterrupted(f"stopped by {requested} after step {step} (epoch {epoch + 1}/"
                                          f"{cfg.train.epochs}, batch {tally.batches}/{total})",
                                          signal_name=requested, step=step)
    guard.check()
    seconds = time.perf_counter() - start
    mean_loss = float(tally.loss_sum) / max(tally.seen, 1)
    if not math.isfinite(mean_loss):
        raise NonFiniteLossError(f"loss became {mean_loss} during epoch {epoch + 1} (by step {step}); {_ADVICE}")
    return {"train_loss": mean_loss, "train_acc": float(tally.correct) / max(tally.seen, 1), "train_seconds": seconds,
            "img_per_s": tally.seen / seconds if seconds > 0 else 0.0}, step


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], loss_fn: Loss | None = None,
             device: torch.device | None = None, *, flip_tta: bool = False) -> dict[str, float]:
    """Mean loss (cross-entropy unless ``loss_fn``), top-1 and top-5 accuracy over ``loader``.

    ``flip_tta``: average the logits of each image and its mirror image (test-time augmentation; training runs
    never use it, ``milestones eval --tta`` does on request).
    """
    model.eval()
    loss_fn = loss_fn or build_loss("ce")
    loss_sum, correct, correct5, seen = 0.0, 0, 0, 0
    for x, y in loader:
        with _autocast(device or x.device):
            logits = model(x).float()
            if flip_tta:
                logits = (logits + model(x.flip(-1)).float()) / 2
        loss_sum += float(loss_fn(logits, y)) * y.shape[0]
        correct += int((logits.argmax(1) == y).sum())
        k = min(5, logits.shape[1])
        correct5 += int((logits.topk(k, dim=1).indices == y[:, None]).any(1).sum())
        seen += y.shape[0]
    return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1), "acc5": correct5 / max(seen, 1),
            "n": seen}


def _rng_state(tensors: dict[str, Tensor]) -> dict[str, Any]:
    tensors["rng.torch"] = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    for i, s in enumerate(cuda):
        tensors[f"rng.cuda.{i}"] = s
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    return {"numpy": [name, keys.tolist(), pos, has_gauss, gauss], "python": [version, list(internal), py_gauss],
            "cuda_devices": len(cuda)}


def _set_rng_state(tensors: dict[str, Tensor], info: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(info.get("cuda_devices", 0))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    name, keys, pos, has_gauss, gauss = info["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, py_gauss = info["python"]
    random.setstate((version, tuple(internal), py_gauss))


def capture_state(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: AveragedModel | None,
    loader: Any,
    step: int,
    epochs_done: int,
    tally: EpochTally | None,
    history: History,
    elapsed: float,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Everything needed to continue training exactly: ``(tensors, info)`` with plain-JSON ``info``.

    Tensors are named ``model.*``, ``optimizer.*``, ``ema.*``, ``loader.*``, ``rng.*`` and ``tally.*``; ``info``
    holds the progress (``step``, ``epochs_done``, ``batch`` of the epoch in progress), the history, and the
    structure of the optimizer and loader states with their tensors replaced by those names.
    """
    tensors: dict[str, Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    info: dict[str, Any] = {
        "step": step,
        "epochs_done": epochs_done,
        "batch": tally.batches if tally is not None else 0,
        "optimizer": pack(optimizer.state_dict(), "optimizer", tensors),
        "loader": pack(loader.state_dict(), "loader", tensors) if hasattr(loader, "state_dict") else None,
        "ema": ema is not None,
        "history": history.to_dict(),
        "elapsed": elapsed,
        "rng": _rng_state(tensors),
    }
    if tally is not None:
        tensors["tally.loss_sum"], tensors["tally.correct"] = tally.loss_sum, tally.correct
        info["tally"] = {"seen": tally.seen, "batches": tally.batches, "seconds": tally.seconds}
    return tensors, info


def restore_state(
    tensors: dict[str, Tensor],
    info: dict[str, Any],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: AveragedModel | None,
    loader: Any,
    device: torch.device,
    model_name: str,
    source: str = "the training state",
) -> tuple[int, int, EpochTally | None, History, float]:
    """Load a :func:`capture_state` result into live objects; returns ``(step, epochs_done, tally, history,
    elapsed)``. The global RNGs are restored too, so call this last, right before training continues."""

    def part(prefix: str) -> dict[str, Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    load_weights_into(model, part("model."), source=source, model_name=model_name)
    if info.get("ema") != (ema is not None):
        raise CheckpointError(f"{source} was saved {'with' if info.get('ema') else 'without'} an EMA of the weights "
                              "but the config asks otherwise (train.ema_decay)")
    if ema is not None:
        load_weights_into(ema, part("ema."), source=f"{source} (EMA)", model_name=model_name)
    try:
        optimizer.load_state_dict(unpack(info["optimizer"], tensors))
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{source} holds an optimizer state that does not fit ({str(e)[:80]})") from None
    tally = None
    if info.get("batch"):
        if info.get("loader") is None or not hasattr(loader, "load_state_dict"):
            raise CheckpointError(f"{source} was taken mid-epoch, which needs a data loader that saves its position")
        t = info["tally"]
        tally = EpochTally(tensors["tally.loss_sum"].to(device), tensors["tally.correct"].to(device), t["seen"],
                           t["batches"], t["seconds"])
    if info.get("loader") is not None and hasattr(loader, "load_state_dict"):
        loader.load_state_dict(unpack(info["loader"], tensors))
    _set_rng_state(tensors, info["rng"])
    return info["step"], info["epochs_done"], tally, History.from_dict(info["history"]), info["elapsed"]


def fit(
    model: nn.Module,
    train_loader: Iterable[tuple[Tensor, Tensor]],
    test_loader: Iterable[tuple[Tensor, Tensor]],
    cfg: RunConfig,
    *,
    device: torch.device,
    log: Callable[[dict[str, Any]], None] | None = None,
    save: Callable[[str, dict[str, Any], nn.Module], None] | None = None,
    save_state: Callable[[dict[str, Tensor], dict[str, Any]], None] | None = None,
    resume: tuple[dict[str, Tensor], dict[str, Any]] | None = None,
    stop: Callable[[], str | None] | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    start_time: float | None = None,
) -> History:
    """Train for ``cfg.train.epochs`` epochs, evaluating after each.

    Args:
        log: receives every metrics record (per-step and per-epoch dicts).
        save: ``save(tag, record, module)`` is called with ``"last"`` after every epoch, ``"best"`` when test accuracy
            improves and ``"ema"`` (the averaged model) when there is an EMA; the run directory turns it into a
            checkpoint.
        save_state: receives :func:`capture_state`'s ``(tensors, info)`` at every epoch end, every
            ``train.checkpoint_every`` steps (when the loader can save its position) and on a requested stop.
        resume: a saved ``(tensors, info)`` to continue from.
        stop: polled after every step; a signal name stops the run after saving (:class:`TrainingInterrupted`).
        on_step: called after every optimiser step with a :class:`StepInfo`.
        start_time: ``time.perf_counter()`` at the start of the run (data loading included) for elapsed times.
    """
    start_time = time.perf_counter() if start_time is None else start_time
    optimizer = build_optimizer(model, cfg.optim)
    ema = build_ema(model, cfg.train.ema_decay)
    loss_fn = build_loss(cfg.train.loss, label_smoothing=cfg.train.label_smoothing, map_j=cfg.train.map_j)
    steps_per_epoch = len(train_loader)
    total = steps_per_epoch * cfg.train.epochs

    def lr_fn(s: int) -> float:
        return lr_at(s, base_lr=cfg.optim.lr, total_steps=total, steps_per_epoch=steps_per_epoch, cfg=cfg.schedule)

    history, step, first_epoch, tally = History(), 0, 0, None
    if resume is not None:
        step, first_epoch, tally, history, elapsed = restore_state(
            *resume, model=model, optimizer=optimizer, ema=ema, loader=train_loader, device=device,
            model_name=cfg.model.name)
        start_time = time.perf_counter() - elapsed
        history.reached_target_at = None

    def checkpoint(at_step: int, epochs_done: int, at_tally: EpochTally | None) -> None:
        if save_state is None:
            return
        check_finite_weights(model, at_step)
        save_state(*capture_state(model=model, optimizer=optimizer, ema=ema, loader=train_loader, step=at_step,
                                  epochs_done=epochs_done, tally=at_tally, history=history,
                                  elapsed=time.perf_counter() - start_time))

    # Mid-epoch states need a loader that can save its position (TensorLoader); others resume at epoch starts.
    mid_epoch = save_state is not None and hasattr(train_loader, "state_dict")
    bar = tqdm(range(first_epoch, cfg.train.epochs), total=cfg.train.epochs, initial=first_epoch, desc="training",
               disable=not cfg.train.progress, unit="epoch", dynamic_ncols=True)
    for epoch in bar:
        train_stats, step = train_one_epoch(
            model, train_loader, optimizer, loss_fn, epoch=epoch, step=step, lr_fn=lr_fn, cfg=cfg, device=device,
            log=log, on_step=on_step, progress=cfg.train.progress, tally=tally, ema=ema, stop=stop,
            checkpoint=(lambda s, t, e=epoch: checkpoint(s, e, t)) if mid_epoch else None,
        )
        tally = None
        test = evaluate(model, test_loader, loss_fn, device)
        record = {"kind": "epoch", "epoch": epoch + 1, "step": step, **train_stats,
                  "test_loss": test["loss"], "test_acc": test["acc"], "test_acc5": test["acc5"],
                  "lr": lr_fn(max(step - 1, 0)), "elapsed": time.perf_counter() - start_time}
        if ema is not None:
            ema_test = evaluate(ema.module, test_loader, loss_fn, device)
            record.update(ema_test_loss=ema_test["loss"], ema_test_acc=ema_test["acc"], ema_test_acc5=ema_test["acc5"])
        history.epochs.append(record)
        improved = test["acc"] > history.best_acc
        if improved:
            history.best_acc, history.best_epoch = test["acc"], epoch + 1
        target = cfg.train.target_accuracy
        if target is not None and test["acc"] >= target:
            history.reached_target_at = record["elapsed"]
        if log is not None:
            log(record)
        if save is not None:
            check_finite_weights(model, step)
            save("last", record, model)
            if improved:
                save("best", record, model)
            if ema is not None:
                save("ema", record, ema.module)
        checkpoint(step, epoch + 1, None)
        bar.set_postfix(test_acc=f"{test['acc']:.4f}", img_s=f"{train_stats['img_per_s']:.0f}")
        if history.reached_target_at is not None:
            break
        requested = stop() if stop is not None else None
        if requested and epoch + 1 < cfg.train.epochs:
            raise TrainingInterrupted(f"stopped by {requested} after step {step} (end of epoch {epoch + 1}/"
                                      f"{cfg.train.epochs})", signal_name=requested, step=step)
    return history
