"""The training loop: plain functions, no callback framework.

``fit`` runs epochs of ``train_one_epoch`` and ``evaluate``, sets the learning rate from ``lr_at(step)`` before every
step, logs per-step and per-epoch records to the run directory, and saves the last and best checkpoints. A caller
that needs more per step (gradient norms, feature maps) passes ``on_step``; it receives the live objects.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..config import RunConfig
from ..errors import MilestonesError
from .losses import Loss, build_loss
from .optim import build_optimizer, lr_at, set_lr


class NonFiniteLossError(MilestonesError):
    """The loss became NaN or infinite; the run stops and the last good checkpoint stays."""


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


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
) -> tuple[dict[str, float], int]:
    """One pass over ``loader``. Returns the epoch's mean loss, accuracy, throughput and the next step number."""
    model.train()
    total = len(loader) if hasattr(loader, "__len__") else None
    bar = tqdm(loader, total=total, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", leave=False, disable=not progress,
               unit="batch", dynamic_ncols=True)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    start = time.perf_counter()
    clip = cfg.train.clip_grad_norm
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
        n = y.shape[0]
        loss_sum += loss.detach() * n
        correct += (logits.detach().argmax(1) == y).sum()
        seen += n
        step += 1
        if on_step is not None:
            on_step(StepInfo(step, epoch, loss.item(), lr, model, optimizer, x, y, logits.detach()))
        if log is not None and cfg.train.log_every and step % cfg.train.log_every == 0:
            value = loss.item()  # one sync per log interval, not per step
            if not math.isfinite(value):
                raise NonFiniteLossError(f"loss became {value} at step {step} (epoch {epoch + 1}); "
                                         "lower optim.lr or set train.clip_grad_norm; the last good checkpoint is kept")
            log({"kind": "step", "step": step, "epoch": epoch + 1, "loss": value, "lr": lr})
            bar.set_postfix(loss=f"{value:.3f}", img_s=f"{seen / (time.perf_counter() - start):.0f}")
    seconds = time.perf_counter() - start
    mean_loss = float(loss_sum) / max(seen, 1)
    if not math.isfinite(mean_loss):
        raise NonFiniteLossError(f"loss became {mean_loss} during epoch {epoch + 1} (by step {step}); "
                                 "lower optim.lr or set train.clip_grad_norm; the last good checkpoint is kept")
    return {"train_loss": mean_loss, "train_acc": float(correct) / max(seen, 1), "train_seconds": seconds,
            "img_per_s": seen / seconds if seconds > 0 else 0.0}, step


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], loss_fn: Loss | None = None,
             device: torch.device | None = None) -> dict[str, float]:
    """Mean loss (cross-entropy unless ``loss_fn``), top-1 and top-5 accuracy over ``loader``."""
    model.eval()
    loss_fn = loss_fn or build_loss("ce")
    loss_sum, correct, correct5, seen = 0.0, 0, 0, 0
    for x, y in loader:
        with _autocast(device or x.device):
            logits = model(x)
        logits = logits.float()
        loss_sum += float(loss_fn(logits, y)) * y.shape[0]
        correct += int((logits.argmax(1) == y).sum())
        k = min(5, logits.shape[1])
        correct5 += int((logits.topk(k, dim=1).indices == y[:, None]).any(1).sum())
        seen += y.shape[0]
    return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1), "acc5": correct5 / max(seen, 1),
            "n": seen}


def fit(
    model: nn.Module,
    train_loader: Iterable[tuple[Tensor, Tensor]],
    test_loader: Iterable[tuple[Tensor, Tensor]],
    cfg: RunConfig,
    *,
    device: torch.device,
    log: Callable[[dict[str, Any]], None] | None = None,
    save: Callable[[str, dict[str, Any]], None] | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    start_time: float | None = None,
) -> History:
    """Train for ``cfg.train.epochs`` epochs, evaluating after each.

    Args:
        log: receives every metrics record (per-step and per-epoch dicts).
        save: ``save(tag, record)`` is called with ``"last"`` after every epoch and ``"best"`` when test accuracy
            improves; the run directory turns it into a checkpoint.
        on_step: called after every optimiser step with a :class:`StepInfo`.
        start_time: ``time.perf_counter()`` at the start of the run (data loading included) for elapsed times.
    """
    start_time = time.perf_counter() if start_time is None else start_time
    optimizer = build_optimizer(model, cfg.optim)
    loss_fn = build_loss(cfg.train.loss, label_smoothing=cfg.train.label_smoothing, map_j=cfg.train.map_j)
    steps_per_epoch = len(train_loader)
    total = steps_per_epoch * cfg.train.epochs

    def lr_fn(s: int) -> float:
        return lr_at(s, base_lr=cfg.optim.lr, total_steps=total, steps_per_epoch=steps_per_epoch, cfg=cfg.schedule)

    history = History()
    step = 0
    bar = tqdm(range(cfg.train.epochs), desc="training", disable=not cfg.train.progress, unit="epoch",
               dynamic_ncols=True)
    for epoch in bar:
        train_stats, step = train_one_epoch(
            model, train_loader, optimizer, loss_fn, epoch=epoch, step=step, lr_fn=lr_fn, cfg=cfg, device=device,
            log=log, on_step=on_step, progress=cfg.train.progress,
        )
        test = evaluate(model, test_loader, loss_fn, device)
        record = {"kind": "epoch", "epoch": epoch + 1, "step": step, **train_stats,
                  "test_loss": test["loss"], "test_acc": test["acc"], "test_acc5": test["acc5"],
                  "lr": lr_fn(max(step - 1, 0)), "elapsed": time.perf_counter() - start_time}
        history.epochs.append(record)
        improved = test["acc"] > history.best_acc
        if improved:
            history.best_acc, history.best_epoch = test["acc"], epoch + 1
        if log is not None:
            log(record)
        if save is not None:
            save("last", record)
            if improved:
                save("best", record)
        bar.set_postfix(test_acc=f"{test['acc']:.4f}", img_s=f"{train_stats['img_per_s']:.0f}")
        target = cfg.train.target_accuracy
        if target is not None and test["acc"] >= target:
            history.reached_target_at = record["elapsed"]
            break
    return history
