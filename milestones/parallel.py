"""AlexNet's two towers as model parallelism: one tower per process, exchanging activations where the paper's GPUs did.

Krizhevsky, Sutskever, Hinton 2012, §3.2: "we spread the net across two GPUs ... The parallelization scheme that we
employ essentially puts half of the kernels (or neurons) on each GPU, with one additional trick: the GPUs communicate
only in certain layers." Kernels of conv3 read all maps of conv2, those of conv4 and conv5 only the maps on their own
GPU, and the fully connected layers read all neurons of the layer below (§3.5, Figure 2).

The faithful ``alexnet`` (:mod:`milestones.models.alexnet`) holds both towers in one process as channel halves: conv2,
conv4 and conv5 are grouped convolutions (``groups=2``), LRN normalises each half separately, and conv1, conv3 and
FC6-FC8 are ordinary layers. :func:`split_towers` cuts it into the rank's tower. Every parameter of the tower is the
rank's chunk of the full parameter along its first axis (the output channels or neurons), so its names are the full
model's names. A layer that reads both towers first all-gathers its input along the channel (or feature) axis:
conv3, FC6 (pool5's maps, flattened), FC7 and FC8. FC8's outputs are all-gathered so that every rank holds the whole
logits and computes the same loss. Every other layer sees only its own tower: nothing is sent there.

Backward goes through the exchanges (:func:`gather_towers`). An all-gather that feeds a split layer has a
reduce-scatter as its gradient: each rank's layer sends back the gradient for every tower's inputs, and each tower
sums what it gets for its own. The final all-gather feeds a loss that every rank computes identically, so its gradient
is the rank's own slice, with nothing sent.

:class:`CommCounter` counts the bytes of every collective dispatched while it is active (``c10d`` and functional
collectives: ours, DDP's buckets, FSDP's and DTensor's) and converts them to bytes each rank sends under the
bandwidth-optimal ring algorithm; :func:`tower_exchange_bytes` computes the same number from the full model's layer
shapes, without running anything on a real device. :func:`spawn` runs a function on ``world`` local gloo processes.

    >>> def step(rank: int, world: int) -> float:      # at module level, so that the processes can import it
    ...     torch.manual_seed(0)                        # the same full model on both ranks
    ...     tower = split_towers(create_model("alexnet", dropout=0.0))
    ...     logits = tower(torch.randn(8, 3, 227, 227, generator=torch.Generator().manual_seed(1)))
    ...     loss = F.cross_entropy(logits, torch.zeros(8, dtype=torch.long))
    ...     loss.backward()                             # gradients of this rank's tower only
    ...     return float(loss)
    >>> spawn(step, world=2)                            # the same loss on both ranks
"""

from __future__ import annotations

import copy
import os
import pickle
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from .errors import ConfigError
from .models.alexnet import CROSS_TOWER, AlexNet

# Bytes each rank sends per byte of payload under the ring algorithm, for W ranks (Patarasuk & Yuan 2009; the
# all-reduce is a reduce-scatter followed by an all-gather). Payload: the local input of an all-gather, the full input
# of a reduce-scatter, all-to-all or all-reduce.
RING_FACTOR: dict[str, Callable[[int], float]] = {
    "all_gather": lambda w: w - 1,
    "reduce_scatter": lambda w: (w - 1) / w,
    "all_to_all": lambda w: (w - 1) / w,
    "all_reduce": lambda w: 2 * (w - 1) / w,
    "broadcast": lambda w: 1.0,
}
# Dispatcher op names (``c10d`` and ``_c10d_functional``) -> (kind, which argument holds the payload).
_OPS = {
    "allreduce_": ("all_reduce", 0), "allreduce_coalesced_": ("all_reduce", 0), "all_reduce": ("all_reduce", 0),
    "all_reduce_coalesced": ("all_reduce", 0),
    "allgather_": ("all_gather", 1), "_allgather_base_": ("all_gather", 1), "allgather_into_tensor_coalesced_":
    ("all_gather", 1), "all_gather_into_tensor": ("all_gather", 0), "all_gather_into_tensor_coalesced":
    ("all_gather", 0), "all_gather_into_tensor_out": ("all_gather", 0),
    "reduce_scatter_": ("reduce_scatter", 1), "_reduce_scatter_base_": ("reduce_scatter", 1),
    "reduce_scatter_tensor_coalesced_": ("reduce_scatter", 1), "reduce_scatter_tensor": ("reduce_scatter", 0),
    "reduce_scatter_tensor_coalesced": ("reduce_scatter", 0),
    "alltoall_": ("all_to_all", 1), "alltoall_base_": ("all_to_all", 1), "all_to_all_single": ("all_to_all", 0),
    "broadcast_": ("broadcast", 0), "broadcast": ("broadcast", 0),
}
_IGNORED = {"wait_tensor", "_wrap_tensor_autograd", "barrier", "monitored_barrier_"}


def _nbytes(obj: Any) -> int:
    if isinstance(obj, Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(o) for o in obj)
    return 0


@dataclass
class CommCounter(TorchDispatchMode):
    """Counts the collectives dispatched while active: calls, payload bytes and ring bytes sent, by kind.

    Collectives issued from C++ (DDP's bucket all-reduce in backward) go through the dispatcher too, so they are
    seen. A collective this class does not know raises, so that nothing is silently left out of the count.
    """

    world: int
    calls: dict[str, int] = field(default_factory=dict)
    payload: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        namespace, name = func.namespace, func._schema.name.split("::")[-1]
        if namespace in ("c10d", "_c10d_functional") and name not in _IGNORED:
            if name not in _OPS:
                raise NotImplementedError(f"CommCounter does not know the collective {namespace}::{name}")
            kind, arg = _OPS[name]
            self.calls[kind] = self.calls.get(kind, 0) + 1
            self.payload[kind] = self.payload.get(kind, 0) + _nbytes(args[arg])
        return func(*args, **(kwargs or {}))

    @property
    def sent(self) -> float:
        """Bytes each rank sends, ring algorithm."""
        return sum(RING_FACTOR[k](self.world) * n for k, n in self.payload.items())


class _GatherForSplit(torch.autograd.Function):
    """All-gather whose consumer is split across ranks: backward reduce-scatters the gradient."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, dim: int, group: Any) -> Tensor:
        ctx.dim, ctx.group = dim, group
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts, dim)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        chunks = [c.contiguous() for c in grad.chunk(dist.get_world_size(ctx.group), ctx.dim)]
        out = torch.empty_like(chunks[0])
        dist.reduce_scatter(out, chunks, op=dist.ReduceOp.SUM, group=ctx.group)
        return out, None, None


class _GatherReplicated(torch.autograd.Function):
    """All-gather whose consumer every rank computes identically (the loss): backward keeps the rank's slice."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, dim: int, group: Any) -> Tensor:
        ctx.dim, ctx.rank, ctx.world = dim, dist.get_rank(group), dist.get_world_size(group)
        parts = [torch.empty_like(x) for _ in range(ctx.world)]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts, dim)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        return grad.chunk(ctx.world, ctx.dim)[ctx.rank].contiguous(), None, None


def gather_towers(x: Tensor, *, dim: int = 1, group: Any = None, replicated: bool = False) -> Tensor:
    """Concatenate every rank's ``x`` along ``dim`` in rank order, with the gradient the consumer needs.

    Args:
        replicated: the consumer is computed identically on every rank (the loss on the logits), so the gradient is
            not summed over ranks.
    """
    return (_GatherReplicated if replicated else _GatherForSplit).apply(x, dim, group)


def _towers(model: nn.Module) -> int:
    if not isinstance(model, AlexNet):
        raise ConfigError(f"the tower split needs the two-tower 'alexnet', got a {type(model).__name__}")
    towers = model.stages[1].conv.groups
    if towers < 2 or model.adaptive:
        raise ConfigError("this AlexNet has one tower (alexnet_owt, or towers=1); the tower split needs 'alexnet'")
    return towers


class TowerAlexNet(nn.Module):
    """One tower of AlexNet on one rank: ``forward(x) -> logits (B, num_classes)``, the same on every rank."""

    def __init__(self, model: AlexNet, rank: int, world: int, group: Any = None) -> None:
        super().__init__()
        self.rank, self.world, self.group = rank, world, group
        skip = {id(p): None for p in model.parameters()}  # copy the layers but not their weights: every conv and
        # linear layer is replaced below by one of the tower's size
        self.stages = copy.deepcopy(model.stages, dict(skip))
        self.pre_logits = copy.deepcopy(model.pre_logits, dict(skip))
        self.head = copy.deepcopy(model.head, dict(skip))
        self.grid = model.grid
        like = {"device": model.head.weight.device, "dtype": model.head.weight.dtype}
        with torch.no_grad():
            for layer in self.stages:  # each conv becomes an ungrouped conv with the tower's output channels
                conv: nn.Conv2d = layer.conv
                in_ch = conv.in_channels // conv.groups  # grouped: the own tower's maps; else all
                local = nn.Conv2d(in_ch, conv.out_channels // world, conv.kernel_size, conv.stride, conv.padding,
                                  **like)
                layer.conv = local
                if hasattr(layer, "lrn"):
                    layer.lrn.towers = 1  # the tower's own maps only, as in the full model's TowerLRN
            for name, m in [*self.pre_logits.named_children(), ("head", self.head)]:
                if isinstance(m, nn.Linear):
                    local = nn.Linear(m.in_features, m.out_features // world, **like)
                    if name == "head":
                        self.head = local
                    else:
                        setattr(self.pre_logits, name, local)
            full = dict(model.named_parameters())
            for name, p in self.named_parameters():
                p.copy_(full[name].chunk(world)[rank])

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes), the whole image on every rank
        for i, layer in enumerate(self.stages):
            if CROSS_TOWER[i] and i > 0:  # conv3 reads the maps of both towers (§3.5)
                x = gather_towers(x, group=self.group)
            x = layer(x)  # (B, C / world, H, W)
        if tuple(x.shape[-2:]) != (self.grid, self.grid):
            raise ConfigError(f"this AlexNet reads {self.grid}x{self.grid} maps at pool5, got "
                              f"{x.shape[-2]}x{x.shape[-1]}; feed the input size it was built for")
        x = x.flatten(1)  # channel-major, so gathering flat halves equals flattening gathered maps
        for m in self.pre_logits:
            if isinstance(m, nn.Linear):  # FC layers read all neurons of the layer below (§3.5)
                x = gather_towers(x, group=self.group)
            x = m(x)
        x = self.head(gather_towers(x, group=self.group))  # (B, num_classes / world)
        return gather_towers(x, group=self.group, replicated=True)


def split_towers(model: nn.Module, *, group: Any = None) -> TowerAlexNet:
    """The calling rank's tower of ``model`` (a two-tower ``alexnet``), its weights copied from ``model``'s.

    Needs an initialised process group of as many ranks as the model has towers, and ``num_classes`` and the FC
    widths divisible by that number.
    """
    towers = _towers(model)
    if not dist.is_available() or not dist.is_initialized():
        raise ConfigError("the tower split needs torch.distributed initialised (e.g. milestones.parallel.spawn)")
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    if world != towers:
        raise ConfigError(f"alexnet has {towers} towers, one per rank, but the process group has {world} ranks; "
                          f"launch {towers} processes")
    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    if any(w % world for w in widths):
        raise ConfigError(f"the FC layers' widths {widths} (FC8: num_classes) must divide into {world} towers")
    return TowerAlexNet(model, rank, world, group)


def merge_towers(tower: TowerAlexNet, tensors: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Every rank's chunks of ``tensors`` (default: the tower's parameters) gathered into the full model's shapes,
    keyed by the full model's parameter names (a collective: every rank must call it)."""
    tensors = dict(tower.named_parameters()) if tensors is None else tensors
    out = {}
    for name, t in tensors.items():
        parts = [torch.empty_like(t) for _ in range(tower.world)]
        dist.all_gather(parts, t.detach().contiguous(), group=tower.group)
        out[name] = torch.cat(parts, 0)
    return out


def tower_exchange_bytes(model: AlexNet, batch: int) -> dict[str, float]:
    """Bytes each rank sends in one forward + backward of the tower split, computed from the full model's shapes.

    The full model runs once on the ``meta`` device (no memory, no compute) to read the input size of each layer that
    reads both towers; its input is all-gathered (each rank sends (W-1)/W of it) and its gradient reduce-scattered
    (the same again). The logits are all-gathered forward only. Keys: ``conv3``, ``fc6``, ``fc7``, ``fc8``,
    ``logits``.
    """
    world = _towers(model)
    memo = {id(t): nn.Parameter(torch.empty_like(t, device="meta"), requires_grad=False)
            for t in [*model.parameters(), *model.buffers()]}
    meta = copy.deepcopy(model, memo)  # the same layers with weights that hold no memory
    sizes: dict[str, int] = {}
    cross = {f"stages.{i}.conv": f"conv{i + 1}" for i, c in enumerate(CROSS_TOWER) if c and i > 0}
    cross.update({"pre_logits.fc6": "fc6", "pre_logits.fc7": "fc7", "head": "fc8"})
    hooks = [m.register_forward_hook(lambda m, i, o, key=key: sizes.update({key: _nbytes(i[0]),
                                                                             "logits": _nbytes(o)}))
             for name, m in meta.named_modules() if (key := cross.get(name))]
    side = model.img_size
    with torch.no_grad():
        meta(torch.empty(batch, meta.stages[0].conv.in_channels, side, side, device="meta"))
    for h in hooks:
        h.remove()
    share = (world - 1) / world
    return {k: (share if k == "logits" else 2 * share) * n for k, n in sizes.items()}


def _worker(rank: int, world: int, init: str, fn: Callable[..., Any], args: tuple, threads: int, out: str) -> None:
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        result = fn(rank, world, *args)
        Path(out, f"rank{rank}.pkl").write_bytes(pickle.dumps(result))
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable[..., Any], *, world: int = 2, args: tuple = (), threads: int = 1) -> list[Any]:
    """Run ``fn(rank, world, *args)`` in ``world`` fresh processes joined by a gloo process group (a shared file as
    the rendezvous, so no port is needed) and return each rank's result. ``fn`` must be importable (module level)."""
    if world < 1:
        raise ConfigError(f"world must be at least 1, got {world}")
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="milestones-spawn-") as tmp:
        init = f"file://{os.path.join(tmp, 'rendezvous')}"
        mp.spawn(_worker, args=(world, init, fn, args, threads, tmp), nprocs=world, join=True)
        return [pickle.loads(Path(tmp, f"rank{r}.pkl").read_bytes()) for r in range(world)]
