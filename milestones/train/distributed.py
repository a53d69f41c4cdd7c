"""Data parallelism on PyTorch's own engine: ``torchrun`` starts the processes, this module joins them.

A run started by ``torchrun`` (or ``milestones train --nproc N``, which starts ``torchrun``) finds ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment; :func:`init` then joins the process group (gloo on the CPU, NCCL
on GPUs, one GPU per local rank), and the run is the single-process run split N ways:

- **Data.** Every rank's :class:`~milestones.data.loader.TensorLoader` draws the same global permutation and
  augmentation parameters from the same seed, and serves its ``B / N`` rows of each global batch of ``B``
  (``data.batch_size`` stays the global batch), so the N ranks together see exactly the batches one process sees.
- **Gradients.** The model is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`, which averages the
  gradients of the N shard losses: the gradient of the global batch's mean loss. With ``train.sync_bn`` the BatchNorm
  layers normalise with the statistics of the global batch (``nn.SyncBatchNorm`` on GPUs; on the CPU, where
  PyTorch's SyncBatchNorm refuses to run, :class:`GlooSyncBatchNorm`), so BN nets match one process too.
- **Writing.** Rank 0 alone creates, locks and writes the run directory; every rank's RNG state is gathered into the
  training state it saves, and each rank takes its own back on ``--resume``. The loader's position is the same on
  every rank (the global batch). A resume must use the world size the run was saved with.
- **Failure.** A signal reaches every rank at a slightly different step, so the ranks agree on stopping at each step
  (one small all-reduce). A rank that dies makes the others' next collective fail (gloo sees the closed connection;
  NCCL's watchdog after ``train.dist_timeout`` seconds); torchrun then stops the job, and the state saved last is
  what ``--resume`` continues from.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..errors import ConfigError, MilestonesError


class PeerLostError(MilestonesError):
    """Another rank of a distributed run died or became unreachable; the state saved last is kept."""


@dataclass(frozen=True)
class World:
    """This process's place in a distributed run: ``rank`` of ``size`` processes, ``local_rank`` on its node."""

    rank: int
    size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = World(0, 1, 0)
"""The world of a run started without torchrun."""


def from_env() -> World:
    """The world torchrun describes in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), else
    :data:`SINGLE`."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return SINGLE
    try:
        size, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them); unset them to "
                          "train in one process") from None
    if not 0 <= rank < size:
        raise ConfigError(f"RANK={rank} is outside WORLD_SIZE={size}; start distributed runs with torchrun")
    return World(rank, size, local)


def current() -> World:
    """The world of the process group this process has joined (:data:`SINGLE` when it has joined none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def init(device: str, timeout_s: float) -> tuple[World, torch.device]:
    """Join the process group torchrun set up, once; returns the world and this rank's device.

    ``device`` is ``train.device``: ``auto`` (with a GPU) or ``cuda`` gives each local rank its own GPU (NCCL);
    ``cpu`` uses gloo. ``timeout_s`` bounds every collective. Without torchrun's environment this joins nothing and
    returns ``(SINGLE, device)``.
    """
    from .device import resolve_device

    world = from_env()
    dev = resolve_device(device)
    if world.size == 1:
        return SINGLE, dev
    if dev.type == "cuda":
        if dev.index is None:
            if world.local_rank >= torch.cuda.device_count():
                raise ConfigError(f"local rank {world.local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                                  "start at most one process per GPU (--nproc)")
            dev = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s),
                                **({"device_id": dev} if dev.type == "cuda" else {}))
    return world, dev


def close() -> None:
    """Leave the process group (at the end of a run, so the next one in this process may join another)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks, differentiable: the gradient of a sum over ranks is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


class GlooSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics are those of the global batch, on any device (``nn.SyncBatchNorm``
    runs on GPUs only).

    Two differentiable all-reduces per layer (:class:`_AllReduceSum`): the per-channel sum,
    then the sum of squared deviations from the global mean (two passes, as numerically safe as one process's
    batch norm). Their backward all-reduces the gradients, so each rank's input gradient includes the paths through
    the other ranks' statistics. Running statistics follow ``F.batch_norm`` (unbiased variance).
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = (1, -1, *([1] * (x.dim() - 2)))
        count = x.numel() // x.shape[1] * dist.get_world_size()
        mean = all_reduce(x.sum(dims)) / count
        centred = x - mean.view(shape)
        var = all_reduce(centred.square().sum(dims)) / count
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * count / max(count - 1, 1), m)
        return y


def convert_sync_bn(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``model`` made synchronous: ``nn.SyncBatchNorm`` on GPUs, :class:`GlooSyncBatchNorm`
    elsewhere. Parameter and buffer names do not change, so checkpoints load into the plain model."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlooSyncBatchNorm):
            like = child.running_mean if child.running_mean is not None else child.weight
            sync = GlooSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                     child.track_running_stats, device=device,
                                     dtype=like.dtype if like is not None else None)
            sync.load_state_dict(child.state_dict())
            sync.train(child.training)
            setattr(model, name, sync)
        else:
            convert_sync_bn(child, device)
    return model


class _WithAux(nn.Module):
    """``forward`` = the model's ``forward_with_aux``, so that DDP sees the auxiliary heads' graph."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        return self.model.forward_with_aux(x)


def wrap(model: nn.Module, device: torch.device, *, aux_weight: float) -> nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` (its parameters are broadcast from rank 0).

    With ``aux_weight > 0`` the wrapper serves the auxiliary heads (its ``forward_with_aux``); with 0 those heads get
    no gradient, which DDP must be told (``find_unused_parameters``).
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    has_aux = hasattr(model, "forward_with_aux")
    if has_aux and aux_weight > 0:
        ddp = DDP(_WithAux(model), device_ids=ids)
        ddp.forward_with_aux = ddp.__call__  # logits_and_loss then takes the auxiliary path through DDP
        return ddp
    return DDP(model, device_ids=ids, find_unused_parameters=has_aux)


def agree_to_stop(requested: str | None, device: torch.device) -> str | None:
    """The stop request of any rank, on every rank (signals reach the ranks at different steps)."""
    names = ("SIGINT", "SIGTERM")
    code = torch.tensor([names.index(requested) + 1 if requested in names else (3 if requested else 0)],
                        device=device)
    dist.all_reduce(code, op=dist.ReduceOp.MAX)
    value = int(code)
    return None if value == 0 else (names[value - 1] if value <= 2 else requested or "SIGTERM")


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums over the ranks (float64)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order, on every rank."""
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def is_peer_failure(error: BaseException) -> bool:
    """Whether ``error`` is a collective that failed because another rank went away."""
    return isinstance(error, dist.DistError) or (
        isinstance(error, RuntimeError) and any(w in str(error) for w in ("Connection closed", "Connection reset",
                                                                          "Gloo", "NCCL", "timed out", "peer")))
