"""Everything that decides the next training step, in one object that can be saved and loaded.

:class:`TrainState` holds the model, the optimizer, the EMA of the weights, the training loader (its position and
generator), the step, the epoch tally, the history and the clock. Its :meth:`TrainState.state_dict` returns
``(tensors, info)``: named tensors for a safetensors file and plain JSON for the rest (``checkpoint.py`` writes both
atomically and never unpickles anything); :meth:`TrainState.load_state_dict` puts them back, the global RNGs
(Python, NumPy, torch, CUDA) included. Restoring all of it is what makes a resumed deterministic run end with the same
weights, bit for bit, as one never interrupted: the learning rate is a pure function of the step, and the loader
serves the rest of its epoch from its saved generator state.

In a distributed run (:mod:`.distributed`) every rank holds a TrainState; :meth:`TrainState.gather` (called on every
rank before a save) collects the ranks' RNG states and the epoch tally onto rank 0, whose state_dict then holds them
all, and :meth:`TrainState.load_state_dict` gives each rank its own back.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from ..errors import CheckpointError
from . import distributed
from .checkpoint import load_weights_into, pack, unpack


@dataclass
class History:
    """Per-epoch records (the same dicts written to ``metrics.jsonl``), the best test accuracy, and why the run
    stopped before its schedule's end, if it did (``stop_reason`` ``"train_error"``: ``train.stop_at_train_error``,
    at step ``stopped_at_step`` with ``train_error_window`` the mean training error of the last ``train.stop_window``
    steps)."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_acc: float = 0.0
    best_epoch: int = -1
    reached_target_at: float | None = None
    stopped_at_step: int | None = None
    stop_reason: str | None = None
    train_error_window: float | None = None

    @property
    def final(self) -> dict[str, Any]:
        return self.epochs[-1] if self.epochs else {}

    def add(self, record: dict[str, Any], target: float | None) -> bool:
        """Append an epoch record; returns whether its test accuracy is the best so far."""
        self.epochs.append(record)
        improved = record["test_acc"] > self.best_acc
        if improved:
            self.best_acc, self.best_epoch = record["test_acc"], record["epoch"]
        if target is not None and record["test_acc"] >= target:
            self.reached_target_at = record["elapsed"]
        return improved

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
    """Training seconds of this epoch before the current process took over (a resumed epoch counts them too)."""
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def zero(cls, device: torch.device) -> EpochTally:
        return cls(torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long))

    def add(self, loss: Tensor, logits: Tensor, y: Tensor) -> None:
        n = y.shape[0]
        self.loss_sum += loss.detach() * n
        hard = y if y.ndim == 1 else y.argmax(1)  # mixup/cutmix: the larger share's label
        self.correct += (logits.detach().argmax(1) == hard).sum()
        self.seen += n
        self.batches += 1

    def elapsed(self) -> float:
        return self.seconds + time.perf_counter() - self.started

    def all_reduce(self, *, to_main: bool = False) -> None:
        """Sum the ranks' tallies onto every rank, or (``to_main``) onto rank 0, leaving zeros elsewhere: the
        ranks' tallies always add up to the global one."""
        loss_sum, correct, seen = distributed.all_sum([float(self.loss_sum), float(self.correct), self.seen],
                                                      self.loss_sum.device)
        mine = not to_main or distributed.current().is_main
        self.loss_sum.fill_(loss_sum if mine else 0.0)
        self.correct.fill_(round(correct) if mine else 0)
        self.seen = round(seen) if mine else 0

    def summary(self) -> dict[str, float]:
        seconds = self.elapsed()
        return {"train_loss": float(self.loss_sum) / max(self.seen, 1),
                "train_acc": float(self.correct) / max(self.seen, 1), "train_seconds": seconds,
                "img_per_s": self.seen / seconds if seconds > 0 else 0.0}


@dataclass
class TrainState:
    """The live objects of a training run and its progress; ``step`` counts optimiser steps from the start."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: Any
    device: torch.device
    ema: AveragedModel | None = None
    step: int = 0
    epochs_done: int = 0
    tally: EpochTally | None = None
    history: History = field(default_factory=History)
    started: float = field(default_factory=time.perf_counter)
    """``time.perf_counter()`` when the run started (data loading included), moved back by a resumed run's time."""
    world: distributed.World = distributed.SINGLE
    ddp: nn.Module | None = None
    """The :class:`~torch.nn.parallel.DistributedDataParallel` wrapper of ``model`` that training steps go through
    (distributed runs only); ``model`` is what is saved, evaluated and measured."""
    rank_rng: list[tuple[dict[str, Tensor], dict[str, Any]]] | None = None
    """Every rank's RNG state, gathered by :meth:`gather` for rank 0 to save."""
    precision: str = "fp32"
    """The resolved ``train.precision``: ``"fp32"`` or ``"bf16"`` (autocast)."""
    compiled: nn.Module | None = None
    """``torch.compile(model)`` when the run compiles: training steps go through it, evaluation uses ``model``."""
    choices: dict[str, Any] = field(default_factory=dict)
    """How the run computes, resolved at its start: ``precision``, ``channels_last`` and ``compile``, each a
    :class:`milestones.precision.Choice`. Saved (``info["choices"]``), so a resumed run keeps them."""
    segments: list[dict[str, Any]] = field(default_factory=list)
    """Where each part of the run ran: one entry per start and resume, ``{"from_step", "processor", "bf16_flags",
    "device"}``, kept across resumes."""
    error_window: list[float] = field(default_factory=list)
    """The batch training errors of the last ``train.stop_window`` steps, oldest first (only with
    ``train.stop_at_train_error``); saved, so the trailing mean after a resume is the same, bit for bit."""

    @property
    def net(self) -> nn.Module:
        """The module a training step calls: the DDP wrapper in a distributed run, else the compiled model if any,
        else the model."""
        if self.ddp is not None:
            return self.ddp
        return self.compiled if self.compiled is not None else self.model

    def gather(self) -> None:
        """Before a save, on every rank of a distributed run: the epoch tally summed onto rank 0 and every rank's
        RNG state gathered there (a no-op in one process)."""
        if self.world.size == 1:
            return
        if self.tally is not None:
            self.tally.all_reduce(to_main=True)
        mine: dict[str, Tensor] = {}
        info = _rng_state(mine)
        self.rank_rng = distributed.gather_objects((mine, info))

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def can_save_mid_epoch(self) -> bool:
        """Mid-epoch states need a loader that saves its position (``TensorLoader``); others resume at epoch ends."""
        return hasattr(self.loader, "state_dict")

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """``(tensors, info)``: tensors named ``model.*``, ``optimizer.*``, ``ema.*``, ``loader.*``, ``rng.*`` and
        ``tally.*``; ``info`` holds the progress, the history, the run's ``choices`` and ``segments``, the training
        error window, and the structure of the optimizer and loader states with their tensors replaced by those
        names."""
        tensors: dict[str, Tensor] = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        info: dict[str, Any] = {
            "step": self.step,
            "epochs_done": self.epochs_done,
            "batch": self.tally.batches if self.tally is not None else 0,
            "optimizer": pack(self.optimizer.state_dict(), "optimizer", tensors),
            "loader": pack(self.loader.state_dict(), "loader", tensors) if self.can_save_mid_epoch else None,
            "ema": self.ema is not None,
            "history": self.history.to_dict(),
            "elapsed": self.elapsed,
            "rng": _rng_state(tensors),
            "world_size": self.world.size,
            "choices": {k: c.to_dict() for k, c in self.choices.items()},
            "segments": [dict(s) for s in self.segments],
            "error_window": list(self.error_window),
        }
        if self.world.size > 1:
            if self.rank_rng is None or len(self.rank_rng) != self.world.size:
                raise CheckpointError("a distributed training state needs every rank's RNG: call gather() on every "
                                      "rank before state_dict()")
            info["rank_rng"] = []
            for r, (rank_tensors, rank_info) in enumerate(self.rank_rng):
                tensors.update({f"rank{r}.{k}": v for k, v in rank_tensors.items()})
                info["rank_rng"].append(rank_info)
        if self.tally is not None:
            tensors["tally.loss_sum"], tensors["tally.correct"] = self.tally.loss_sum, self.tally.correct
            info["tally"] = {"seen": self.tally.seen, "batches": self.tally.batches, "seconds": self.tally.elapsed()}
        return tensors, info

    def load_state_dict(self, state: tuple[dict[str, Tensor], dict[str, Any]], *, model_name: str,
                        source: str = "the training state") -> None:
        """Put a :meth:`state_dict` back. The global RNGs are restored too, so call this right before training.

        ``choices`` are not set here: they decide how the model and the loaders are made, so
        :func:`~milestones.train.run.run_training` reads them from ``info`` before it builds this state."""
        tensors, info = state
        saved_world = int(info.get("world_size", 1))
        if saved_world != self.world.size:
            raise CheckpointError(f"{source} was saved by {saved_world} process(es) and this run has "
                                  f"{self.world.size}: resume with the same number (milestones train --nproc "
                                  f"{saved_world} --resume RUN_DIR)")

        def part(prefix: str) -> dict[str, Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        load_weights_into(self.model, part("model."), source=source, model_name=model_name)
        if info.get("ema") != (self.ema is not None):
            raise CheckpointError(f"{source} was saved {'with' if info.get('ema') else 'without'} an EMA of the "
                                  "weights but the config asks otherwise (train.ema_decay)")
        if self.ema is not None:
            load_weights_into(self.ema, part("ema."), source=f"{source} (EMA)", model_name=model_name)
        try:
            self.optimizer.load_state_dict(unpack(info["optimizer"], tensors))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{source} holds an optimizer state that does not fit ({str(e)[:80]})") from None
        self.tally = None
        if info.get("batch"):
            if info.get("loader") is None or not self.can_save_mid_epoch:
                raise CheckpointError(f"{source} was taken mid-epoch, which needs a data loader that saves its "
                                      "position")
            t = info["tally"]
            self.tally = EpochTally(tensors["tally.loss_sum"].to(self.device),
                                    tensors["tally.correct"].to(self.device), t["seen"], t["batches"], t["seconds"])
            if not self.world.is_main:  # rank 0 holds the whole tally of the epoch so far (gather)
                self.tally.loss_sum.zero_()
                self.tally.correct.zero_()
                self.tally.seen = 0
        if info.get("loader") is not None and self.can_save_mid_epoch:
            self.loader.load_state_dict(unpack(info["loader"], tensors))
        self.step, self.epochs_done = info["step"], info["epochs_done"]
        self.history = History.from_dict(info["history"])
        self.history.reached_target_at = None
        self.segments = [dict(s) for s in info.get("segments", [])]
        self.error_window = [float(e) for e in info.get("error_window", [])]
        self.started -= info["elapsed"]  # the time before the interruption counts too
        if self.world.size > 1:
            prefix = f"rank{self.world.rank}."
            _set_rng_state({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                           info["rank_rng"][self.world.rank])
        else:
            _set_rng_state(tensors, info["rng"])


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
