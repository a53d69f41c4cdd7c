"""The training loop's extension points, and the callbacks that experiments use most.

``fit`` calls each :class:`Callback` at fixed points of a step (see :class:`Callback`); a callback sees the live
:class:`~milestones.train.state.TrainState` and may read anything in it. The run directory's writer, the CLI's
progress bar and the measurements below are all callbacks, so the loop itself stays a plain loop.

    >>> norms = GradNorms(every=10)                  # per-layer gradient norms, every 10th step
    >>> acts = Activations(["features.0", "features.3"], every=50)   # statistics of chosen outputs
    >>> run_training(cfg, callbacks=[StepMetrics(), norms, acts])
    >>> norms.records[0]              # {"kind": "grad_norms", "step": 10, "features.0.weight": 0.41, ...}
    >>> RunDir(path).records("grad_norms")            # the same, from the run's metrics.jsonl
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from .state import TrainState


@dataclass
class StepInfo:
    """What :meth:`Callback.on_step` sees after each optimiser step. ``loss`` is read from the device on first use,
    so a callback that ignores it costs no synchronisation."""

    step: int
    epoch: int
    lr: float
    loss_tensor: Tensor
    logits: Tensor
    inputs: Tensor
    targets: Tensor
    model: nn.Module
    optimizer: torch.optim.Optimizer

    @property
    def loss(self) -> float:
        return float(self.loss_tensor)


class Callback:
    """Override what you need; every method does nothing by default.

    Order within a step: ``on_backward`` (gradients computed, before clipping and the optimiser step), then
    ``on_step`` (after the step; ``.grad`` still holds this step's, clipped, gradients). ``on_record`` receives every
    metrics record (``kind`` ``step`` every ``train.log_every`` steps, ``epoch`` after each evaluation).
    ``on_epoch_end`` follows the epoch record with the test accuracy's verdict; ``on_checkpoint`` is where the full
    state is saved (epoch ends, every ``train.checkpoint_every`` steps, on a stop). ``on_fit_end`` runs even when
    training fails or is interrupted.

    A record (a dict with a ``kind``) returned by ``on_backward`` or ``on_step`` goes to every callback's
    ``on_record``: in a run directory it lands in ``metrics.jsonl``, which a resumed run cuts back to the saved step,
    so measurements survive interruptions exactly as the losses do.
    """

    def on_fit_start(self, state: TrainState, total_steps: int) -> None: ...

    def on_backward(self, state: TrainState) -> dict[str, Any] | None: ...

    def on_step(self, info: StepInfo) -> dict[str, Any] | None: ...

    def on_record(self, record: dict[str, Any]) -> None: ...

    def on_epoch_end(self, record: dict[str, Any], improved: bool, state: TrainState) -> None: ...

    def on_checkpoint(self, state: TrainState) -> None: ...

    def on_fit_end(self, state: TrainState) -> None: ...


class CallbackList(Callback):
    """Calls each callback in order; ``on_fit_end`` reaches every one even if one of them fails."""

    def __init__(self, callbacks: Sequence[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_fit_start(self, state: TrainState, total_steps: int) -> None:
        for c in self.callbacks:
            c.on_fit_start(state, total_steps)

    def on_backward(self, state: TrainState) -> None:
        self._log([c.on_backward(state) for c in self.callbacks])

    def on_step(self, info: StepInfo) -> None:
        self._log([c.on_step(info) for c in self.callbacks])

    def _log(self, records: list[dict[str, Any] | None]) -> None:
        for record in records:
            if record is not None:
                self.on_record(record)

    def on_record(self, record: dict[str, Any]) -> None:
        for c in self.callbacks:
            c.on_record(record)

    def on_epoch_end(self, record: dict[str, Any], improved: bool, state: TrainState) -> None:
        for c in self.callbacks:
            c.on_epoch_end(record, improved, state)

    def on_checkpoint(self, state: TrainState) -> None:
        for c in self.callbacks:
            c.on_checkpoint(state)

    def on_fit_end(self, state: TrainState) -> None:
        with contextlib.ExitStack() as stack:
            for c in reversed(self.callbacks):
                stack.callback(c.on_fit_end, state)


class StepMetrics(Callback):
    """Training loss and error of every step (or every ``every``-th): records of ``{"kind": "step_metrics", "step",
    "epoch", "loss", "error", "lr"}``. The error is that of the batch before the step (with mixup/cutmix: against
    the larger share's label). Reads the loss from the device each time it records."""

    def __init__(self, every: int = 1) -> None:
        self.every = every
        self.records: list[dict[str, float]] = []

    kind = "step_metrics"

    def on_step(self, info: StepInfo) -> dict[str, Any] | None:
        if info.step % self.every:
            return None
        y = info.targets if info.targets.ndim == 1 else info.targets.argmax(1)
        error = float((info.logits.argmax(1) != y).float().mean())
        record = {"kind": self.kind, "step": info.step, "epoch": info.epoch + 1, "loss": info.loss, "error": error,
                  "lr": info.lr}
        self.records.append(record)
        return record


def grad_norms(model: nn.Module) -> dict[str, float]:
    """The L2 norm of each parameter's gradient (parameters without one are left out), plus ``"total"``."""
    norms = {name: p.grad.detach().float().norm() for name, p in model.named_parameters() if p.grad is not None}
    if not norms:
        return {}
    values = torch.stack(list(norms.values())).cpu()  # one transfer for all of them
    out = dict(zip(norms, values.tolist(), strict=True))
    out["total"] = math.sqrt(sum(v * v for v in out.values()))
    return out


class GradNorms(Callback):
    """Per-parameter gradient norms every ``every`` steps, taken before clipping and the optimiser step:
    ``records`` of ``{"step": s, "<parameter name>": norm, ..., "total": norm}``. ``only`` keeps the parameters whose
    names start with one of its prefixes (e.g. the first layers, to watch vanishing gradients)."""

    def __init__(self, every: int = 1, only: Sequence[str] | None = None) -> None:
        self.every = every
        self.only = tuple(only) if only else None
        self.records: list[dict[str, float]] = []

    kind = "grad_norms"

    def on_backward(self, state: TrainState) -> dict[str, Any] | None:
        step = state.step + 1  # the step these gradients are for, as on_step will number it
        if step % self.every:
            return None
        norms = grad_norms(state.model)
        if self.only is not None:
            norms = {k: v for k, v in norms.items() if k == "total" or k.startswith(self.only)}
        record = {"kind": self.kind, "step": step, **norms}
        self.records.append(record)
        return record


def activation_stats(t: Tensor) -> dict[str, float]:
    """Mean, standard deviation and the fraction of exact zeros (dead ReLUs) of a tensor."""
    t = t.detach().float()
    return {"mean": float(t.mean()), "std": float(t.std()) if t.numel() > 1 else 0.0,
            "zero_frac": float((t == 0).float().mean())}


@contextlib.contextmanager
def record_activations(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """While active, every forward pass stores the output of each named submodule (detached) in the yielded dict.
    The hooks are removed on exit, also after an error.

        >>> with record_activations(model, ["features.0"]) as acts:
        ...     model(x)
        >>> acts["features.0"].shape
    """
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ValueError(f"model has no submodule {unknown[0]!r}; names look like "
                         f"{', '.join(list(n for n in modules if n)[:4])}")
    out: dict[str, Tensor] = {}

    def hook(name: str):
        def store(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, Tensor):
                out[name] = output.detach()
        return store

    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


class Activations(Callback):
    """Statistics (:func:`activation_stats`) of the outputs of the named submodules on the training batch of every
    ``every``-th step: ``records`` of ``{"step": s, "<name>": {"mean", "std", "zero_frac"}}``. The hooks are on only
    for the steps recorded."""

    def __init__(self, names: Sequence[str], every: int = 1) -> None:
        self.names, self.every = list(names), every
        self.records: list[dict[str, Any]] = []
        self._stack: contextlib.ExitStack | None = None
        self._acts: dict[str, Tensor] = {}

    def _arm(self, done: int, model: nn.Module) -> None:
        """Hooks on if the step after step ``done`` is one to record."""
        if (done + 1) % self.every == 0:
            self._stack = contextlib.ExitStack()
            self._acts = self._stack.enter_context(record_activations(model, self.names))

    def on_fit_start(self, state: TrainState, total_steps: int) -> None:
        self._arm(state.step, state.model)

    kind = "activations"

    def on_step(self, info: StepInfo) -> dict[str, Any] | None:
        record = None
        if self._stack is not None:
            self._stack.close()
            self._stack = None
            record = {"kind": self.kind, "step": info.step,
                      **{n: activation_stats(a) for n, a in self._acts.items()}}
            self.records.append(record)
        self._arm(info.step, info.model)
        return record

    def on_fit_end(self, state: TrainState) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


def require_tensorboard() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``, or a one-line ConfigError saying how to install tensorboard."""
    from ..errors import ConfigError

    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("train.tensorboard=true needs the tensorboard package: pip install 'milestones[tensorboard]'"
                          " (or pip install tensorboard), or set train.tensorboard=false") from None
    return SummaryWriter


class TensorBoard(Callback):
    """The run's metrics as TensorBoard scalars, and each epoch's first-layer filters as an image, in ``log_dir``.

    ``metrics.jsonl`` stays the record; this mirrors its records under the step they carry: ``step/loss`` and
    ``step/lr`` from the per-step records, ``epoch/<key>`` (``train_loss``, ``train_acc``, ``test_loss``,
    ``test_acc``, ``test_acc5``, ``val_loss`` and ``val_acc`` with a validation split, ``lr``, ``img_per_s``) from the
    epoch records, and the image ``filters`` (see :func:`milestones.viz.filter_image`) at each epoch's last step. A
    resumed run drops events after its saved step (``purge_step``), as ``metrics.jsonl`` is cut back.
    """

    STEP_KEYS = ("loss", "lr")
    EPOCH_KEYS = ("train_loss", "train_acc", "test_loss", "test_acc", "test_acc5", "val_loss", "val_acc", "lr",
                  "img_per_s")

    def __init__(self, log_dir: str | Path) -> None:
        self._writer_class = require_tensorboard()
        self.log_dir = Path(log_dir)
        self.writer: Any = None

    def on_fit_start(self, state: TrainState, total_steps: int) -> None:
        self.writer = self._writer_class(str(self.log_dir), purge_step=state.step or None)

    def on_record(self, record: dict[str, Any]) -> None:
        keys = {"step": self.STEP_KEYS, "epoch": self.EPOCH_KEYS}.get(record.get("kind", ""))
        if self.writer is None or keys is None:
            return
        for key in keys:
            value = record.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{record['kind']}/{key}", value, record["step"])

    def on_epoch_end(self, record: dict[str, Any], improved: bool, state: TrainState) -> None:
        from ..errors import ConfigError
        from ..viz.figures import filter_image

        if self.writer is None:
            return
        with contextlib.suppress(ConfigError):  # a model without a convolution has no filters to show
            self.writer.add_image("filters", filter_image(state.model), record["step"], dataformats="HWC")
        self.writer.flush()

    def on_fit_end(self, state: TrainState) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
