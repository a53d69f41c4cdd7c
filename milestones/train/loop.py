"""The training loop: one step-indexed loop, read top to bottom.

``fit`` takes a :class:`~milestones.train.state.TrainState` and runs optimiser steps until the schedule's last one:
set the learning rate from the step, take the step, tell the callbacks, log every ``train.log_every`` steps, and at
the end of each pass over the data evaluate (on the test loader, and on the validation loader when there is one),
record the epoch and save. With ``train.stop_at_train_error`` the run also ends, after the epoch in progress is cut
short and recorded, once the mean training error of the last ``train.stop_window`` steps is low enough. The full
state is saved at epoch ends, every ``train.checkpoint_every`` steps, and when ``stop()`` reports a signal, after
which :class:`TrainingInterrupted` is raised. Everything else (writing the run directory, progress bars, gradient
norms, activations) is a :class:`~milestones.train.callbacks.Callback`.

Failure is loud and early. A non-finite loss stops the run at the step it happens (every step on a CPU, where the
check is free; on a GPU a flag kept on the device is read at each log, save and epoch end, so there is no sync per
step), and the weights are checked to be finite before every save, so a saved state is always a good one.

The same loop runs on every rank of a distributed run (:mod:`.distributed`): steps go through the DDP wrapper
(``state.net``), the ranks agree at each step on whether to stop, and the epoch's tally, the logged loss and the
evaluation (each rank evaluates its rows of every test batch) are summed over the ranks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..config import RunConfig, TrainConfig
from ..errors import ConfigError, MilestonesError
from . import distributed
from .callbacks import Callback, CallbackList, StepInfo
from .losses import Loss, build_loss
from .optim import lr_at, set_lr
from .state import EpochTally, History, TrainState

log = logging.getLogger(__name__)


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


def check_stop(train_cfg: TrainConfig) -> None:
    """``train.stop_at_train_error`` and ``train.stop_window``: a one-line ConfigError for a value they do not take."""
    threshold = train_cfg.stop_at_train_error
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise ConfigError(f"train.stop_at_train_error must be a fraction between 0 and 1 (e.g. 0.25), or null to run "
                          f"the whole schedule; got {threshold}")
    if train_cfg.stop_window < 1:
        raise ConfigError(f"train.stop_window must be a number of steps, 1 or more (e.g. 20); got "
                          f"{train_cfg.stop_window}")


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


def autocast(device: torch.device, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when the resolved ``precision`` is ``"bf16"`` (see :mod:`milestones.precision`),
    else nothing: float32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def logits_and_loss(model: nn.Module, x: Tensor, y: Tensor, loss_fn: Loss, aux_weight: float,
                    precision: str = "fp32") -> tuple[Tensor, Tensor]:
    """The logits, and the loss with GoogLeNet-style auxiliary heads weighted in when ``aux_weight > 0``.

    The forward pass runs under :func:`autocast`; the loss (softmax and all) is computed outside it on float32
    logits, so a bf16 run's loss and the gradient it starts from are float32.
    """
    aux: list[Tensor] = []
    with autocast(x.device, precision):
        if aux_weight > 0 and hasattr(model, "forward_with_aux"):
            logits, aux = model.forward_with_aux(x)
        else:
            logits = model(x)
    logits = _widen(logits)
    loss = loss_fn(logits, y)
    if aux:
        loss = loss + aux_weight * sum(loss_fn(_widen(a), y) for a in aux)
    return logits, loss


def _widen(t: Tensor) -> Tensor:
    """bf16/fp16 -> float32; float32 and float64 as they are."""
    return t.float() if t.element_size() < 4 else t


_ADVICE = "lower optim.lr or set train.clip_grad_norm"
_NO_BAD_STEP = torch.iinfo(torch.long).max


class FiniteGuard:
    """Notices the first step whose loss is NaN or infinite.

    On a CPU reading the loss costs nothing, so every step is checked as it happens. On a GPU that read would wait for
    the step to finish, so the first bad step is kept on the device and read only at :meth:`check` (each log, save
    and epoch end): a state is never saved after a bad step, and the message still names the exact step.
    """

    def __init__(self, device: torch.device, steps_per_epoch: int) -> None:
        self.each_step = device.type != "cuda"
        self.steps_per_epoch = max(steps_per_epoch, 1)
        self.first_bad = torch.full((), _NO_BAD_STEP, dtype=torch.long, device=device)

    def _where(self, step: int) -> str:
        return f"step {step} (epoch {(step - 1) // self.steps_per_epoch + 1})"

    def update(self, loss: Tensor, step: int) -> None:
        if self.each_step:
            value = loss.detach().item()
            if not math.isfinite(value):
                raise NonFiniteLossError(f"loss became {value} at {self._where(step)}; {_ADVICE}")
        else:
            bad = torch.where(~torch.isfinite(loss.detach()), step, _NO_BAD_STEP)
            self.first_bad = torch.minimum(self.first_bad, bad)

    def check(self) -> None:
        if not self.each_step and (bad := int(self.first_bad)) != _NO_BAD_STEP:
            raise NonFiniteLossError(f"loss became NaN or infinite at {self._where(bad)}; {_ADVICE}")


def check_finite_weights(model: nn.Module, step: int) -> None:
    """Refuse to save weights that are no longer finite (a step can overflow in the backward pass while the loss it
    reported was finite)."""
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise NonFiniteLossError(f"weights became NaN or infinite by step {step} ({name}); {_ADVICE}")


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], loss_fn: Loss | None = None,
             device: torch.device | None = None, *, flip_tta: bool = False, precision: str = "fp32"
             ) -> dict[str, float]:
    """Mean loss (cross-entropy unless ``loss_fn``), top-1 and top-5 accuracy over ``loader``.

    ``precision``: ``"bf16"`` runs the forward passes under bf16 autocast (the loss and the accuracy are computed on
    float32 logits), as a bf16 training run evaluates.

    ``flip_tta``: average the logits of each image and its mirror image (test-time augmentation; training runs
    never use it, ``milestones eval --tta`` does on request).

    A loader sharded over the ranks of a distributed run (``loader.world_size > 1``) serves each rank part of the
    test set: the sums are then added over the ranks, so every rank returns the figures of the whole set.
    """
    model.eval()
    loss_fn = loss_fn or build_loss("ce")
    loss_sum, correct, correct5, seen = 0.0, 0, 0, 0
    for x, y in loader:
        with autocast(device or x.device, precision):
            logits = model(x).float()
            if flip_tta:
                logits = (logits + model(x.flip(-1)).float()) / 2
        loss_sum += float(loss_fn(logits, y)) * y.shape[0]
        correct += int((logits.argmax(1) == y).sum())
        k = min(5, logits.shape[1])
        correct5 += int((logits.topk(k, dim=1).indices == y[:, None]).any(1).sum())
        seen += y.shape[0]
    if getattr(loader, "world_size", 1) > 1:
        where = device or next(model.parameters()).device
        loss_sum, c1, c5, n = distributed.all_sum([loss_sum, correct, correct5, seen], where)
        correct, correct5, seen = round(c1), round(c5), round(n)
    return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1), "acc5": correct5 / max(seen, 1),
            "n": seen}


def _forward_backward(state: TrainState, x: Tensor, y: Tensor, loss_fn: Loss, cfg: RunConfig
                      ) -> tuple[Tensor, Tensor]:
    logits, loss = logits_and_loss(state.net, x, y, loss_fn, cfg.train.aux_loss_weight, state.precision)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    return loss, logits


def train_step(state: TrainState, x: Tensor, y: Tensor, loss_fn: Loss, lr: float, cfg: RunConfig,
               callbacks: Callback) -> tuple[Tensor, Tensor]:
    """One optimiser step on one batch at learning rate ``lr``; returns ``(loss, logits)``, both detached."""
    set_lr(state.optimizer, lr)
    try:
        loss, logits = _forward_backward(state, x, y, loss_fn, cfg)
    except Exception as e:  # torch.compile fails at a first call, with any exception type, before any update
        if state.compiled is None:
            raise
        log.warning("torch.compile failed (%s: %s); training eager", type(e).__name__, str(e).strip()[:160])
        state.compiled = None
        loss, logits = _forward_backward(state, x, y, loss_fn, cfg)
    callbacks.on_backward(state)
    if cfg.train.clip_grad_norm:
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.train.clip_grad_norm)
    state.optimizer.step()
    if state.ema is not None:
        state.ema.update_parameters(state.model)
    state.tally.add(loss, logits, y)
    state.step += 1
    return loss.detach(), logits.detach()


def fit(state: TrainState, test_loader: Iterable[tuple[Tensor, Tensor]], cfg: RunConfig, *,
        callbacks: Sequence[Callback] = (), stop: Callable[[], str | None] | None = None,
        val_loader: Iterable[tuple[Tensor, Tensor]] | None = None) -> History:
    """Train ``state`` until ``cfg.train.epochs`` passes over its loader are done (or ``train.target_accuracy`` is
    reached, or the training error falls to ``train.stop_at_train_error``), evaluating on ``test_loader``, and on
    ``val_loader`` when given (``val_loss`` and ``val_acc`` in the epoch records), after each. ``stop`` is polled
    after every step: a signal name saves the state and raises :class:`TrainingInterrupted`."""
    check_stop(cfg.train)
    cbs = CallbackList(callbacks)
    loss_fn = build_loss(cfg.train.loss, label_smoothing=cfg.train.label_smoothing, map_j=cfg.train.map_j)
    per_epoch = len(state.loader)
    total = per_epoch * cfg.train.epochs
    stop_at = cfg.train.stop_at_train_error

    def lr_fn(s: int) -> float:
        return lr_at(s, base_lr=cfg.optim.lr, total_steps=total, steps_per_epoch=per_epoch, cfg=cfg.schedule)

    guard, every, log_every = FiniteGuard(state.device, per_epoch), cfg.train.checkpoint_every, cfg.train.log_every
    batches = None
    cbs.on_fit_start(state, total)
    try:
        while state.step < total:
            if batches is None:  # an epoch starts (or resumes part-way: the loader serves only its rest)
                batches, state.tally = iter(state.loader), state.tally or EpochTally.zero(state.device)
                state.model.train()
            x, y = next(batches)
            lr = lr_fn(state.step)
            loss, logits = train_step(state, x, y, loss_fn, lr, cfg, cbs)
            guard.update(loss, state.step)
            cbs.on_step(StepInfo(state.step, state.epochs_done, lr, loss, logits, x, y, state.model, state.optimizer))
            if log_every and state.step % log_every == 0:
                guard.check()
                value = loss.item()
                if state.world.size > 1:  # the global batch's loss: the mean of the ranks' equal shares
                    value = distributed.all_sum([value], state.device)[0] / state.world.size
                cbs.on_record({"kind": "step", "step": state.step, "epoch": state.epochs_done + 1,
                               "loss": value, "lr": lr})
            window = _trailing_error(state, logits, y, cfg.train.stop_window) if stop_at is not None else None
            stopping = window is not None and window <= stop_at
            requested = stop() if stop is not None else None
            if state.world.size > 1:
                requested = distributed.agree_to_stop(requested, state.device)
            if state.tally.batches >= per_epoch or stopping:
                batches = None
                guard.check()
                if stopping:
                    state.history.stopped_at_step, state.history.stop_reason = state.step, "train_error"
                    state.history.train_error_window = window
                _end_epoch(state, test_loader, loss_fn, lr, cfg, cbs, val_loader)
                if stopping or state.history.reached_target_at is not None:
                    break
            elif state.can_save_mid_epoch and (requested or (every and state.step % every == 0)):
                guard.check()
                _checkpoint(state, cbs)
            if requested and state.step < total:
                raise TrainingInterrupted(f"stopped by {requested} after step {state.step} ({_position(state, cfg)})",
                                          signal_name=requested, step=state.step)
    finally:
        cbs.on_fit_end(state)
    return state.history


def _trailing_error(state: TrainState, logits: Tensor, y: Tensor, window: int) -> float | None:
    """Add this step's batch training error to ``state.error_window`` (the global batch's, in a distributed run);
    return the mean of the last ``window`` steps' errors, or None before ``window`` steps were seen."""
    hard = y if y.ndim == 1 else y.argmax(1)  # mixup/cutmix: the larger share's label, as the epoch tally counts
    wrong, seen = int((logits.argmax(1) != hard).sum()), int(y.shape[0])
    if state.world.size > 1:
        wrong, seen = (round(v) for v in distributed.all_sum([wrong, seen], state.device))
    state.error_window.append(wrong / seen)
    del state.error_window[:-window]
    return sum(state.error_window) / window if len(state.error_window) == window else None


def _end_epoch(state: TrainState, test_loader: Iterable[tuple[Tensor, Tensor]], loss_fn: Loss, lr: float,
               cfg: RunConfig, cbs: Callback, val_loader: Iterable[tuple[Tensor, Tensor]] | None = None) -> None:
    """Evaluate, record the epoch, save the weights and the state. The record of an epoch cut short by
    ``train.stop_at_train_error`` says so (``stop_reason``, ``train_error_window``)."""
    if state.world.size > 1:
        state.tally.all_reduce()
    train_stats = state.tally.summary()
    if not math.isfinite(train_stats["train_loss"]):
        raise NonFiniteLossError(f"loss became {train_stats['train_loss']} during epoch {state.epochs_done + 1} (by "
                                 f"step {state.step}); {_ADVICE}")
    test = evaluate(state.model, test_loader, loss_fn, state.device, precision=state.precision)
    record = {"kind": "epoch", "epoch": state.epochs_done + 1, "step": state.step, **train_stats,
              "test_loss": test["loss"], "test_acc": test["acc"], "test_acc5": test["acc5"], "lr": lr,
              "elapsed": state.elapsed}
    if val_loader is not None:
        val = evaluate(state.model, val_loader, loss_fn, state.device, precision=state.precision)
        record.update(val_loss=val["loss"], val_acc=val["acc"])
    if state.ema is not None:
        ema = evaluate(state.ema.module, test_loader, loss_fn, state.device, precision=state.precision)
        record.update(ema_test_loss=ema["loss"], ema_test_acc=ema["acc"], ema_test_acc5=ema["acc5"])
    if state.history.stopped_at_step == state.step:
        record.update(stop_reason=state.history.stop_reason, train_error_window=state.history.train_error_window)
    improved = state.history.add(record, cfg.train.target_accuracy)
    state.epochs_done, state.tally = state.epochs_done + 1, None
    cbs.on_record(record)
    check_finite_weights(state.model, state.step)  # once for the weights and the state saved below
    cbs.on_epoch_end(record, improved, state)
    state.gather()
    cbs.on_checkpoint(state)


def _checkpoint(state: TrainState, cbs: Callback) -> None:
    check_finite_weights(state.model, state.step)
    state.gather()
    cbs.on_checkpoint(state)


def _position(state: TrainState, cfg: RunConfig) -> str:
    if state.tally is None:
        return f"end of epoch {state.epochs_done}/{cfg.train.epochs}"
    return f"epoch {state.epochs_done + 1}/{cfg.train.epochs}, batch {state.tally.batches}/{len(state.loader)}"
