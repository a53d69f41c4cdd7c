"""Measurements shared by the experiments that the training loop does not make itself.

The loop's per-epoch ``train_acc`` is the running accuracy over the epoch's *augmented* batches with dropout *on*: it
mixes how well the net fits the training set with how much noise the regularisers add, so it cannot show
overfitting, and it hides precisely what dropout and augmentation change. :class:`TrainSetError` measures the
training set the way the test set is measured: the plain images, the model in eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..train.callbacks import Callback, StepInfo
from ..train.loop import evaluate

if TYPE_CHECKING:
    from ..train.state import TrainState


class TrainSetError(Callback):
    """Error and cross-entropy on (up to ``limit``) training images at the end of every epoch, measured as the test
    set is: no augmentation, eval mode (dropout off, batch-norm running statistics). Records of ``{"kind":
    "train_eval", "step", "epoch", "error", "loss", "n"}``.

    Args:
        limit: How many training images to measure (a fixed random sample, the same every epoch); None: all.
        batch_size: Images per forward pass.
    """

    kind = "train_eval"

    def __init__(self, limit: int | None = 2000, batch_size: int = 500) -> None:
        self.limit, self.batch_size = limit, batch_size
        self.per_epoch = 0
        self.records: list[dict[str, Any]] = []

    def on_fit_start(self, state: TrainState, total_steps: int) -> None:
        loader = state.loader
        if not hasattr(loader, "images"):
            raise TypeError("TrainSetError needs a data set held in memory (a TensorLoader), not a streamed folder")
        self.per_epoch = len(loader)
        n = len(loader.labels)
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(0))[: self.limit or n].sort().values
        pick = pick.to(loader.images.device)
        self.images, self.labels = loader.images[pick], loader.labels[pick]  # (N, C, H, W) uint8, (N,)
        self.augment, self.channels_last = loader.augment, loader.channels_last  # without draws: normalise only

    def _batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        for i in range(0, len(self.labels), self.batch_size):
            x, y = self.augment(self.images[i : i + self.batch_size], self.labels[i : i + self.batch_size])
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

    def on_step(self, info: StepInfo) -> dict[str, Any] | None:
        if not self.per_epoch or info.step % self.per_epoch:
            return None  # not the epoch's last step
        model = info.model
        training = model.training
        try:
            stats = evaluate(model, self._batches())
        finally:
            model.train(training)
        record = {"kind": self.kind, "step": info.step, "epoch": info.epoch + 1, "error": 1.0 - stats["acc"],
                  "loss": stats["loss"], "n": stats["n"]}
        self.records.append(record)
        return record


def difference_error(error_pct: float, n: int) -> float:
    """One standard error, in points, of the difference between two test errors near ``error_pct`` % measured on
    ``n`` images each: sqrt(2 p (1 - p) / n). Two runs scored on the same images share part of this noise, so it is
    a conservative yardstick for single-seed differences; at 50% error on 1,000 images it is 2.2 points."""
    p = min(max(error_pct / 100, 0.0), 1.0)
    return 100 * math.sqrt(2 * p * (1 - p) / n)


def noise_threshold(spreads: Sequence[float], error_pct: float | None, n_test: int,
                    floor: float = 1.0) -> dict[str, Any]:
    """How large a difference between two runs must be to count: the largest of ``floor`` (points), the mean
    spread between seeds of one run (``spreads``: max - min test error of each run that has several seeds) and the
    test set's :func:`difference_error` at ``error_pct``."""
    measured = sum(spreads) / len(spreads) if spreads else None
    sampling = difference_error(error_pct, n_test) if error_pct is not None else 0.0
    return {"measured": measured, "pairs": len(spreads), "sampling": sampling, "n_test": n_test,
            "threshold": max(floor, measured or 0.0, sampling)}


def describe_noise(noise: dict[str, Any], what: str) -> str:
    """The report's line on noise; ``what`` names the runs the seed spread comes from."""
    seeds = (f"two seeds of {what} differ by {noise['measured']:.1f} points of test error"
             if noise["measured"] is not None else "one seed per run, so the seed noise is not measured")
    return (f"Noise: {seeds}; on {noise['n_test']:,} test images one standard error of a difference between two runs "
            f"is {noise['sampling']:.1f} points. Differences below {noise['threshold']:.1f} points are treated as "
            "noise.")


class LayerProfile(Callback):
    """What §4.1 of the ResNet paper speaks of, layer by layer: for each of ``blocks(model)`` (named modules, input
    to output order) the standard deviation of its output (the forward signal), the norm of the gradient of the loss
    with respect to its *input* (what flows back through it), and for every convolution or linear weight
    ``||grad|| / ||w||`` (in a BN net a weight's raw gradient scales with ``1 / ||w||``, so only the ratio compares
    across layers and time). Measured on the batch of step 1 (the initial weights: its forward and backward run
    before the first update) and then every ``every`` steps; records of ``{"kind": "layer_profile", "step",
    "blocks": [names], "out_std": [...], "in_grad": [...], "weights": [names], "grad_ratio": [...]}``.
    """

    kind = "layer_profile"

    def __init__(self, blocks: Callable[[nn.Module], list[tuple[str, nn.Module]]], every: int) -> None:
        self.blocks, self.every = blocks, every
        self.records: list[dict[str, Any]] = []
        self._armed = False
        self._handles: list[Any] = []
        self._std: dict[str, float] = {}
        self._grad: dict[str, Tensor] = {}

    def on_fit_start(self, state: TrainState, total_steps: int) -> None:
        self._named = self.blocks(state.model)
        self._weights = [(n, p) for n, m in state.model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
                         for pn, p in m.named_parameters(recurse=False) if pn == "weight"]
        for name, module in self._named:
            self._handles.append(module.register_forward_pre_hook(self._pre(name)))
            self._handles.append(module.register_forward_hook(self._post(name)))
        self._armed = state.step == 0 or (state.step + 1) % self.every == 0

    def _pre(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0] if args else None
            if self._armed and isinstance(x, Tensor) and x.requires_grad:
                x.register_hook(lambda g: self._grad.__setitem__(name, g.detach().float().norm()))
        return hook

    def _post(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if self._armed and isinstance(out, Tensor):
                self._std[name] = float(out.detach().float().std())
        return hook

    def on_backward(self, state: TrainState) -> dict[str, Any] | None:
        if not self._armed:
            return None
        names = [n for n, _ in self._named]
        grads = torch.stack([self._grad.get(n, torch.tensor(float("nan"))) for n in names]).tolist()
        ratios = [float(p.grad.detach().float().norm() / p.detach().float().norm().clamp_min(1e-12))
                  if p.grad is not None else float("nan") for _, p in self._weights]
        record = {"kind": self.kind, "step": state.step + 1, "blocks": names,
                  "out_std": [self._std.get(n, float("nan")) for n in names], "in_grad": grads,
                  "weights": [n for n, _ in self._weights], "grad_ratio": ratios}
        self._std, self._grad = {}, {}
        self.records.append(record)
        return record

    def on_step(self, info: StepInfo) -> dict[str, Any] | None:
        self._armed = (info.step + 1) % self.every == 0  # measure the next step's forward and backward
        return None

    def on_fit_end(self, state: TrainState) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def resnet_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """A ResNet's (or plain net's) blocks in order: the stem, then every block of every stage."""
    out: list[tuple[str, nn.Module]] = [("stem", model.stem)]
    for i, stage in enumerate(model.stages):
        out += [(f"stages.{i}.{j}", block) for j, block in enumerate(stage)]
    return out


def validation_error(ctx: Any, outcome: Any) -> float:
    """The tuning score of a grid run (:class:`~milestones.experiments.base.Tuning`): its validation error (%) after
    the last epoch (``data.val_split`` images held out of the training set; never the test set), ``inf`` if the run
    recorded none."""
    epochs = ctx.records(outcome, "epoch")
    if not epochs or "val_acc" not in epochs[-1]:
        return float("inf")
    return 100 * (1 - epochs[-1]["val_acc"])


CPU_GFLOPS = 30.0
"""What the 2-core AVX2 EPYC sustains on convolutions in float32 (its 2048² matmul peaks at 58 GFLOP/s; resnet20
trains at 63 GFLOP/s by bench's count, small nets less): the planning figure of the standard modes' budgets."""


def estimate_minutes(macs_per_image: float, *, runs: float, epochs: int, n_train: int, n_eval: int,
                     gflops: float = CPU_GFLOPS) -> float:
    """Planned wall time of ``runs`` training runs: each epoch trains ``n_train`` images at 6 x MACs FLOPs (forward
    and backward) and evaluates ``n_eval`` at 2 x MACs, at ``gflops``. An estimate for choosing a mode's size; the
    reports give the measured time."""
    return runs * epochs * (6 * n_train + 2 * n_eval) * macs_per_image / (gflops * 1e9) / 60


def tuned_mode_minutes(macs_per_image: float, mode: Mapping[str, Any], *, gflops: float = CPU_GFLOPS) -> float:
    """:func:`estimate_minutes` for a mode whose arms run a tuning grid (``mode["grid"]``) on seed 0 and then its
    other seeds (the chosen grid run is seed 0's), on CIFAR-10's 50,000 / 10,000 images unless ``mode["overrides"]``
    takes subsets; evaluation covers the validation split, the test images and ``mode["train_eval"]`` training
    images per epoch. ``macs_per_image`` sums the arms."""
    o = mode["overrides"]
    n_train = o["data.train_subset"] or 50_000 - o["data.val_split"]
    n_eval = o["data.val_split"] + (o["data.test_subset"] or 10_000) + mode["train_eval"]
    runs = len(mode["grid"]) + len(mode["seeds"]) - 1
    return estimate_minutes(macs_per_image, runs=runs, epochs=o["train.epochs"], n_train=n_train, n_eval=n_eval,
                            gflops=gflops)
