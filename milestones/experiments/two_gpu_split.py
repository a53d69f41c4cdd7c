"""``two-gpu-split``: how did AlexNet split itself over two GPUs, and what of it lives on in today's parallelism?

Krizhevsky et al. 2012, §3.2: half of the kernels (or neurons) of each layer on each GPU, and "the GPUs communicate only
in certain layers" (conv3 and the fully connected layers read both GPUs' maps), which let them tune the communication
to "an acceptable fraction of the amount of computation". Krizhevsky 2014 ("One weird trick", arXiv:1404.5997) adds
why: the convolutional layers hold most of the computation and few parameters, the fully connected layers most of the
parameters and little computation, so the first are best split by data and the second by model.

We run one training step of the two-tower ``alexnet`` four ways over 2 gloo processes on the CPU, from the same
weights on the same batch, and a single process with both towers as the reference:

* ``towers``: the paper's split (:mod:`milestones.parallel`), each rank one tower, the whole batch on both;
* ``ddp``: ``DistributedDataParallel``, half the batch per rank, gradients all-reduced;
* ``fsdp``: ``torch.distributed.fsdp.fully_shard`` on every layer, half the batch per rank;
* ``tp``: ``torch.distributed.tensor.parallel`` on the FC layers (FC6 column-wise, FC7 row-wise, FC8 column-wise with
  replicated output, Megatron's pairing), convolutions replicated, the whole batch on both ranks.

For each: bytes each rank sends per step, counted on every collective (:class:`~milestones.parallel.CommCounter`) and
computed from the layer shapes; memory per rank (parameters, gradients and SGD momentum as the rank's own tensors,
activations as the tensors autograd saves for backward, each storage once, parameters excluded); the median step time;
and how far the loss, the gradients and the weights after one SGD step are from the single process's.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F

from ..models import create_model
from ..parallel import RING_FACTOR, CommCounter, merge_towers, spawn, split_towers, tower_exchange_bytes
from ..timing import num_threads
from . import plots
from .base import EPYC_BF16, Analysis, Context, Experiment, Figure, Measured, Setup, register

WORLD = 2
STRATEGIES = ("towers", "ddp", "fsdp", "tp")
SPLITS = {
    "single": "both towers in one process (2 threads)",
    "towers": "each rank one tower; activations exchanged at conv3 and FC6-FC8",
    "ddp": "half the batch per rank; whole model on each; gradients all-reduced",
    "fsdp": "half the batch per rank; parameters, gradients and momentum sharded",
    "tp": "FC6-FC8 split by neurons, convolutions replicated; whole batch on each rank",
}
MODES: dict[str, dict[str, Any]] = {
    "full": {"batch": 128, "img_size": 227, "model": {}, "timed": 5},
    "quick": {"batch": 32, "img_size": 227, "model": {}, "timed": 2},
    "smoke": {"batch": 4, "img_size": 67, "timed": 1,
              "model": {"widths": (16, 32, 48, 48, 32), "hidden": 64, "num_classes": 10}},
}
OPTIM = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}  # §5
EQUIVALENT = 1e-4  # largest relative error of loss and gradients counted as "the same result": float32 summed in
# another order (measured up to 1.3e-5 at batch 128, where one process with 2 threads sums 128 images' gradients in
# another order than 2 processes with 1); a missing gradient reduction is off by order 1 (test_two_gpu_split.py)


def build(m: dict[str, Any]) -> nn.Module:
    """The mode's two-tower AlexNet: paper widths unless shrunk, He init so that every layer's gradient is far from
    zero, dropout off so that every strategy computes the same function."""
    return create_model("alexnet", img_size=m["img_size"], dropout=0.0, init="kaiming", **m["model"])


def example_batch(m: dict[str, Any], num_classes: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(m["batch"], 3, m["img_size"], m["img_size"], generator=g)
    return x, torch.randint(0, num_classes, (m["batch"],), generator=g)


def _local(t: Tensor) -> Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


def _bytes(tensors: Any) -> int:
    return sum(_local(t).numel() * _local(t).element_size() for t in tensors if t is not None)


class SavedActivations(torch.autograd.graph.saved_tensors_hooks):
    """Bytes of the tensors autograd saves for backward, each storage once, leaving out the model's parameters
    (FSDP's gathered ones included: they are transient buffers, not activations)."""

    def __init__(self, model: nn.Module) -> None:
        self.seen: dict[int, int] = {}

        def pack(t: Tensor) -> Tensor:
            storage = _local(t).untyped_storage()
            params = {_local(p).untyped_storage().data_ptr() for p in model.parameters()}
            if storage.data_ptr() not in params and not isinstance(t, nn.Parameter):
                self.seen[storage.data_ptr()] = storage.nbytes()
            return t

        super().__init__(pack, lambda t: t)

    @property
    def nbytes(self) -> int:
        return sum(self.seen.values())


def _param_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def computed_bytes(strategy: str, model: nn.Module, batch: int) -> float:
    """Bytes each rank sends per step, from the shapes alone (ring algorithm, ``RING_FACTOR``)."""
    w, f = WORLD, RING_FACTOR
    if strategy == "towers":
        return sum(tower_exchange_bytes(model, batch).values())
    if strategy == "hybrid":  # 2014: conv gradients all-reduced; FC6's input gathered over the batch instead of over
        # the channels (the same volume), FC6-FC8 split by neurons as in the towers; no conv3 exchange
        towers = tower_exchange_bytes(model, batch)
        return towers["fc6"] + towers["fc7"] + towers["fc8"] + towers["logits"] + \
            f["all_reduce"](w) * _param_bytes(model.stages)
    if strategy == "ddp":  # one all-reduce of every gradient
        return f["all_reduce"](w) * _param_bytes(model)
    if strategy == "fsdp":  # all-gather forward and again backward, reduce-scatter of the gradients; rows padded to w
        padded = sum(math.ceil(p.shape[0] / w) * w * p[0].numel() * p.element_size() for p in model.parameters())
        return 2 * f["all_gather"](w) * padded / w + f["reduce_scatter"](w) * padded
    if strategy == "tp":
        fc6, fc7, fc8 = model.pre_logits.fc6, model.pre_logits.fc7, model.head
        four = 4 * batch  # float32 bytes of one value per image
        return (f["all_reduce"](w) * four * fc6.in_features      # backward: FC6's input gradient, partial per rank
                + f["all_reduce"](w) * four * fc7.out_features   # forward: FC7's row-wise partial sums
                + f["all_gather"](w) * four * fc8.out_features / w  # forward: the logits
                + f["all_reduce"](w) * four * fc8.in_features)   # backward: FC8's input gradient
    raise ValueError(strategy)


def _prepare(strategy: str, model: nn.Module, x: Tensor, y: Tensor, rank: int) -> tuple[nn.Module, Tensor, Tensor]:
    """The rank's model and batch for a strategy."""
    half = slice(rank * len(x) // WORLD, (rank + 1) * len(x) // WORLD)
    if strategy == "towers":
        return split_towers(model), x, y
    if strategy == "ddp":
        return nn.parallel.DistributedDataParallel(model, gradient_as_bucket_view=True), x[half], y[half]
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cpu", (WORLD,))
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in [*model.stages, model.pre_logits.fc6, model.pre_logits.fc7, model.head]:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model, x[half], y[half]
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    for relu in model.pre_logits.modules():  # DTensor's local outputs are views that autograd forbids editing in place
        if isinstance(relu, nn.ReLU):
            relu.inplace = False
    plan = {"pre_logits.fc6": ColwiseParallel(), "pre_logits.fc7": RowwiseParallel(),
            "head": ColwiseParallel(output_layouts=Replicate())}
    return parallelize_module(model, mesh, plan), x, y


def _full(strategy: str, model: nn.Module, grads: bool = False) -> dict[str, Tensor]:
    """Every parameter (or its gradient) in the full model's shape and names (a collective)."""
    if strategy == "towers":
        return merge_towers(model, {n: p.grad for n, p in model.named_parameters()} if grads else None)
    inner = model.module if strategy == "ddp" else model
    out = {}
    for n, p in inner.named_parameters():
        t = p.grad if grads else p
        out[n] = (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().clone()
    return out


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor) -> Tensor:
    opt.zero_grad(set_to_none=False)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.detach()


def _rel(a: Tensor, b: Tensor) -> float:
    scale = float(b.abs().max())
    return float((a - b).abs().max()) / scale if scale > 0 else float((a - b).abs().max())


def _measure_one(strategy: str, build_model: Callable[[], nn.Module], x: Tensor, y: Tensor, rank: int,
                 timed: int) -> dict[str, Any]:
    """One strategy on this rank: a counted first step, then ``timed`` timed steps."""
    model = build_model()
    computed = computed_bytes(strategy, model, len(x)) if strategy != "single" else 0.0
    model, xr, yr = _prepare(strategy, model, x, y, rank) if strategy != "single" else (model, x, y)
    opt = torch.optim.SGD(model.parameters(), **OPTIM)
    counter, saved = CommCounter(WORLD), SavedActivations(model)
    with counter, saved:
        opt.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(xr), yr)
        loss.backward()
    grads = _full(strategy, model, grads=True)
    opt.step()
    memory = {"params": _bytes(model.parameters()), "grads": _bytes(p.grad for p in model.parameters()),
              "optimizer": _bytes(t for s in opt.state.values() for t in s.values() if isinstance(t, Tensor)),
              "activations": saved.nbytes}
    if strategy in ("ddp", "fsdp"):  # each rank's loss is over its half of the batch
        dist.all_reduce(loss, op=dist.ReduceOp.SUM)
        loss = loss / WORLD
    weights = _full(strategy, model)
    seconds = []
    for _ in range(timed):
        if strategy != "single":
            dist.barrier()
        start = time.perf_counter()
        _step(model, opt, xr, yr)
        seconds.append(time.perf_counter() - start)
    return {"loss": float(loss.detach()), "grads": grads, "weights": weights, "memory": memory,
            "sent": counter.sent, "calls": dict(counter.calls), "computed": computed,
            "step_s": statistics.median(seconds)}


def measure(rank: int, world: int, m: dict[str, Any], strategies: tuple[str, ...]) -> dict[str, Any]:
    """What each rank returns: per strategy its memory, bytes, time, and on rank 0 the errors against one process."""
    torch.manual_seed(0)
    base = build(m)
    state = copy.deepcopy(base.state_dict())
    x, y = example_batch(m, base.head.out_features)

    def fresh() -> nn.Module:
        model = build(m)
        model.load_state_dict(state)
        return model

    out: dict[str, Any] = {}
    ref = None
    if rank == 0:  # the reference: one process, both towers, both cores
        with num_threads(world):
            ref = _measure_one("single", fresh, x, y, rank, m["timed"])
        out["single"] = {k: v for k, v in ref.items() if k not in ("grads", "weights")}
    dist.barrier()
    for strategy in strategies:
        r = _measure_one(strategy, fresh, x, y, rank, m["timed"])
        if ref is not None:
            r["loss_rel_err"] = abs(r["loss"] - ref["loss"]) / abs(ref["loss"])
            r["grad_rel_err"] = max(_rel(r["grads"][n], ref["grads"][n]) for n in ref["grads"])
            r["weight_rel_err"] = max(_rel(r["weights"][n], ref["weights"][n]) for n in ref["weights"])
        out[strategy] = {k: v for k, v in r.items() if k not in ("grads", "weights")}
        dist.barrier()
    return out


def run_all(mode: str, strategies: tuple[str, ...] = STRATEGIES) -> list[dict[str, Any]]:
    """Spawn the 2 gloo processes and return each rank's measurements."""
    return spawn(measure, world=WORLD, args=(MODES[mode], strategies))


def split_fractions(m: dict[str, Any]) -> dict[str, float]:
    """Share of the parameters and of the multiply-adds in the convolutional layers (the rest is FC6-FC8)."""
    from ..measure import count_macs

    with torch.device("meta"):
        model = build(m)
    conv_p = sum(p.numel() for p in model.stages.parameters())
    all_p = sum(p.numel() for p in model.parameters())
    conv_macs = count_macs(model.stages, (1, 3, m["img_size"], m["img_size"]))
    all_macs = count_macs(model, (1, 3, m["img_size"], m["img_size"]))
    crossover = RING_FACTOR["all_reduce"](WORLD) * all_p / tower_activation_values(model)
    return {"conv_params": conv_p / all_p, "conv_macs": conv_macs / all_macs, "params": all_p,
            "crossover_batch": crossover}


def tower_activation_values(model: nn.Module) -> float:
    """Values one image makes each rank send in the tower split (bytes per image / 4)."""
    return sum(tower_exchange_bytes(model, 1).values()) / 4


def setup(mode: str) -> Setup:
    m = MODES[mode]
    notes = [
        f"One SGD step (lr {OPTIM['lr']}, momentum {OPTIM['momentum']}, weight decay {OPTIM['weight_decay']}, §5) of "
        f"the two-tower `alexnet` at {m['img_size']}x{m['img_size']}, global batch {m['batch']}, on {WORLD} gloo "
        "processes with 1 torch thread each, against 1 process with 2 threads; then "
        f"{m['timed']} timed step(s) each (median shown). Random images and labels (seed 1): what is measured does "
        "not depend on the pixels. He init and dropout off, so that all strategies compute the same function.",
        "Bytes (MB = 2^20 bytes): what each rank sends per step under the ring algorithm (all-gather (W-1) x "
        "local input, reduce-scatter (W-1)/W x input, all-reduce 2(W-1)/W x input), counted on every collective "
        "the step dispatches (including DDP's C++ bucket all-reduce and DTensor's functional collectives), and "
        "computed from the layer shapes.",
        "Memory per rank: parameters, gradients and momentum as the tensors the rank holds (DTensor shards counted "
        "locally; DDP with `gradient_as_bucket_view`, so no second copy of the gradients); activations as the "
        "storages autograd saves for backward in the counted step, parameters (and FSDP's gathered ones) left out. "
        "Not the process's peak: temporary buffers and the allocator are not counted.",
        "Equivalence: the loss of the first step, every parameter's gradient and every weight after the SGD step, "
        "gathered to full shape, against the single process's: max|diff| / max|reference| per tensor, the largest "
        f"shown; 'same' means loss and gradients within {EQUIVALENT:g} (float32 summed in another order).",
    ]
    if mode == "quick":
        notes.append("**Shrunk:** global batch 32 instead of 128 (the paper's), 2 timed steps; the net is the paper's "
                     "at 227x227. Communication scales linearly with the batch for the tower split and tensor "
                     "parallelism and not at all for DDP and FSDP, so the findings give the batch-128 bytes too.")
    elif mode == "smoke":
        notes.append("Smoke test: a narrow AlexNet at 67x67, batch 4; the numbers mean nothing.")
    return Setup(runs=[], data="random images (no dataset)", notes=notes)


def _mb(n: float) -> float:
    return float(f"{n / 2**20:.4g}")


def analyse(ctx: Context) -> Analysis:
    m = MODES[ctx.mode]
    ranks = ctx.cached(f"measure-{ctx.mode}", lambda: run_all(ctx.mode))
    fractions = ctx.cached(f"fractions-{ctx.mode}", lambda: split_fractions(m))
    rows = []
    for strategy in ("single", *STRATEGIES):
        r0 = ranks[0][strategy]
        per_rank = [r[strategy] for r in ranks if strategy in r]
        mem = max(sum(r["memory"].values()) for r in per_rank)
        rows.append({
            "strategy": strategy, "split": SPLITS[strategy],
            "sent bytes/step (counted)": round(r0["sent"]) if strategy != "single" else 0,
            "sent bytes/step (from shapes)": round(r0["computed"]) if strategy != "single" else 0,
            "sent MB/step (counted)": _mb(r0["sent"]) if strategy != "single" else 0.0,
            "sent MB/step (from shapes)": _mb(r0["computed"]) if strategy != "single" else 0.0,
            "params+grads+momentum MB/rank": _mb(max(sum(r["memory"][k] for k in ("params", "grads", "optimizer"))
                                                     for r in per_rank)),
            "activations MB/rank": _mb(max(r["memory"]["activations"] for r in per_rank)),
            "memory MB/rank": _mb(mem),
            "step s": round(max(r["step_s"] for r in per_rank), 3),
            "loss rel err": None if strategy == "single" else float(f"{r0['loss_rel_err']:.2g}"),
            "grad rel err": None if strategy == "single" else float(f"{r0['grad_rel_err']:.2g}"),
            "weight rel err": None if strategy == "single" else float(f"{r0['weight_rel_err']:.2g}"),
        })
    verdict, reason, findings = _verdict(rows, fractions, m)
    columns = ["strategy", "split", "sent MB/step (counted)", "sent MB/step (from shapes)",
               "params+grads+momentum MB/rank", "activations MB/rank", "memory MB/rank", "step s", "loss rel err",
               "grad rel err", "weight rel err"]
    fig, axes = plots.panels(3, width=4.2)
    names = [r["strategy"] for r in rows]
    plots.bars(names, {"counted": [r["sent MB/step (counted)"] for r in rows],
                       "from shapes": [r["sent MB/step (from shapes)"] for r in rows]}, "MB sent per rank per step",
               ax=axes[0], annotate=True)
    plots.bars(names, {"params+grads+momentum": [r["params+grads+momentum MB/rank"] for r in rows],
                       "activations": [r["activations MB/rank"] for r in rows]}, "MB per rank", ax=axes[1])
    plots.bars(names, {"step": [r["step s"] for r in rows]}, "seconds per step (median)", ax=axes[2])
    figures = [Figure("split.png", f"Per rank, one step of AlexNet at {m['img_size']}x{m['img_size']}, global batch "
                      f"{m['batch']}, 2 gloo processes on the CPU: bytes sent (counted on the collectives and "
                      "computed from the shapes), memory held, and step time (the single process uses both cores).",
                      fig)]
    curves = ctx.cached(f"bytes-vs-batch-{ctx.mode}", lambda: bytes_vs_batch(m))
    labels = {**{s: s for s in STRATEGIES}, "hybrid": "2014 hybrid (not run)"}
    batch_fig = plots.series({labels[s]: (curves["batch"], [_mb(b) for b in curves[s]]) for s in labels},
                             "global batch", "MB sent per rank per step", log=True)
    batch_fig.axes[0].set_xscale("log", base=2)
    figures.append(Figure("bytes_vs_batch.png", "Bytes each rank sends per step against the global batch, computed "
                          "from the shapes of the model measured above (2 ranks; log-log). Activations grow with the "
                          "batch, gradients and weights do not. '2014 hybrid': the one-weird-trick scheme "
                          "(convolutions by data, FC6-FC8 by neurons), computed only.", batch_fig))
    at = curves["batch"].index(128.0)
    findings.append(f"Computed, not run: the 2014 hybrid (convolutions split by data, their gradients all-reduced; "
                    f"FC6-FC8 split by neurons over the whole batch) would send {_mb(curves['hybrid'][at]):.1f} MB "
                    f"per rank at batch 128, against the towers' {_mb(curves['towers'][at]):.1f} MB, without the "
                    "towers' restricted connectivity or tensor parallelism's replicated convolutions.")
    findings += lives_on(fractions)
    return Analysis(rows=rows, verdict=verdict, reason=reason, columns=columns, findings=findings, figures=figures)


BATCHES = [2**k for k in range(2, 13)]
def lives_on(fractions: dict[str, float]) -> list[str]:
    """The report's answer to the seed's question (what of the 2012 trick survives, and when it pays)."""
    return [
        "What lives on. The tower split is tensor (intra-layer) parallelism: every layer's kernels and neurons "
        "are halved across the devices, both work on every image at once, and activations cross at chosen layers."
        " Megatron-LM (Shoeybi et al. 2019) does the same to transformer blocks: a column-split layer followed by"
        " a row-split one, so that one all-reduce per pair suffices; `ColwiseParallel`/`RowwiseParallel` here are"
        " that pattern. What did not survive is paying for it with the architecture: AlexNet removed the "
        "cross-tower connections of conv2, conv4 and conv5 (grouped convolutions) so as not to communicate there,"
        " while Megatron keeps every layer dense and chooses the split so that the algebra needs no exchange "
        "between the pair.",
        "Pipeline parallelism (GPipe, Huang et al. 2019) splits by layers instead: each device holds whole layers"
        " and micro-batches flow through; the 2012 split has no pipeline, since both GPUs hold half of every "
        "layer. Its descendant is rather the 2014 paper's hybrid: data parallelism for the convolutional layers "
        "(much computation, few parameters) and model parallelism for the fully connected ones (many parameters, "
        "little computation), today's '2D/3D' mixes of data, tensor and pipeline parallelism chosen layer by "
        "layer.",
        "When it pays: a split by model sends activations, which grow with the batch; a split by data sends "
        "gradients (and FSDP weights too), which do not. The crossing point above is the batch at which they cost"
        " the same. A split by model also pays when the weights do not fit one device (the 2012 reason: 3 GB "
        "GPUs), and it divides the activations' memory without dividing the batch. Replicating the convolutions, "
        "as our tensor-parallel run does, sends least but repeats the convolutions' "
        f"{100 * fractions['conv_macs']:.0f}% of the computation on every rank.",
        "Tensor parallelism of the convolutions is not in this comparison: `ColwiseParallel` raises "
        "NotImplementedError (\"currently only support nn.Linear and nn.Embedding\") in torch 2.14; a channel "
        "split of the convolutions is exactly what the tower split does by hand. Every strategy ran on gloo on "
        "the CPU in this torch.",
    ]


def bytes_vs_batch(m: dict[str, Any]) -> dict[str, list[float]]:
    """Computed bytes per rank per step of each strategy at ``BATCHES`` (the mode's model, on the meta device)."""
    with torch.device("meta"):
        model = build(m)
    out: dict[str, list[float]] = {"batch": [float(b) for b in BATCHES]}
    for strategy in (*STRATEGIES, "hybrid"):
        out[strategy] = [computed_bytes(strategy, model, b) for b in BATCHES]
    return out


def _verdict(rows: list[dict[str, Any]], fractions: dict[str, float],
             m: dict[str, Any]) -> tuple[str, str, list[str]]:
    """Reproduced when the tower split computes what one process computes, every count matches its shapes, and the
    paper's split sends less than data parallelism at this batch."""
    by = {r["strategy"]: r for r in rows}
    agree = {s: by[s]["sent bytes/step (counted)"] == by[s]["sent bytes/step (from shapes)"] for s in STRATEGIES}
    same = {s: max(by[s]["loss rel err"], by[s]["grad rel err"]) <= EQUIVALENT for s in STRATEGIES}
    towers, ddp = (by[s]["sent bytes/step (counted)"] / 2**20 for s in ("towers", "ddp"))
    per_image = towers / m["batch"]
    findings = [
        f"Convolutional layers hold {100 * fractions['conv_params']:.1f}% of the parameters and "
        f"{100 * fractions['conv_macs']:.1f}% of the multiply-adds; FC6-FC8 the rest "
        "(the 2014 paper's reason to split the conv layers by data and the FC layers by model).",
        f"The tower split sends {per_image:.3f} MB per image per rank, DDP a fixed {ddp:.1f} MB per step: the towers "
        f"send less below a global batch of about {fractions['crossover_batch']:.0f} images "
        f"(at the paper's batch 128: {per_image * 128:.1f} MB against {ddp:.1f} MB).",
        "Counted and computed bytes agree for " + ", ".join(s for s in STRATEGIES if agree[s])
        + (f"; not for {', '.join(s for s in STRATEGIES if not agree[s])}" if not all(agree.values()) else "") + ".",
        "Same loss and gradients as one process (relative error <= "
        f"{EQUIVALENT:g}) for " + ", ".join(s for s in STRATEGIES if same[s])
        + (f"; not for {', '.join(s for s in STRATEGIES if not same[s])}" if not all(same.values()) else "") + ".",
        f"Memory per rank: the tower split and tensor parallelism hold half of the split layers' weights "
        f"({by['towers']['params+grads+momentum MB/rank']:.0f} and {by['tp']['params+grads+momentum MB/rank']:.0f} MB "
        f"of weights, gradients and momentum), FSDP half of everything "
        f"({by['fsdp']['params+grads+momentum MB/rank']:.0f} MB), DDP all of it "
        f"({by['ddp']['params+grads+momentum MB/rank']:.0f} MB).",
        "Step times come from 2 single-threaded processes against 1 two-threaded one on a shared 2-core CPU; gloo "
        "moves bytes through memory here, not over PCIe or a network, so they say little about GPUs.",
    ]
    if not (same["towers"] and agree["towers"]):
        return "not reproduced", "The tower split does not compute what one process computes, or its bytes do not " \
                                 "match the layer shapes.", findings
    if towers < ddp and all(agree.values()):
        return "reproduced", (f"The paper's split computes the single process's step (relative error "
                              f"{by['towers']['grad rel err']:.1g}) while sending only activations at conv3 and "
                              f"FC6-FC8: {towers:.1f} MB per rank per step against DDP's {ddp:.1f} MB."), findings
    return "partly reproduced", ("The tower split is exact, but at this batch it does not send less than DDP, or a "
                                 "count disagrees with the shapes."), findings


EXPERIMENT = register(Experiment(
    name="two-gpu-split",
    question="How did AlexNet split itself over two GPUs, and what of it lives on in tensor and pipeline parallelism?",
    claim="Half of each layer's kernels on each GPU, communicating only in certain layers (conv3 and the fully "
          "connected layers read both GPUs), which keeps communication an acceptable fraction of computation; "
          "convolutional layers are best split by data and fully connected ones by model.",
    source="Krizhevsky et al., NIPS 2012, §3.2 and Figure 2; Krizhevsky 2014, arXiv:1404.5997",
    # the committed report's run alone on the 2-core AMD EPYC: 44 s wall
    measured={"quick": Measured(1, EPYC_BF16)},
    full_cost="batch 128 at 227x227, 5 timed steps per strategy, 2 gloo processes: 20 min on the shared 2-core CPU "
              "(370 CPU-seconds); no GPU needed",
    setup=setup,
    analyse=analyse,
))
