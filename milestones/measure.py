"""Counting parameters and multiply-adds, and a layer-by-layer summary.

Papers' "FLOPs" are multiply-adds; ``torch.utils.flop_counter`` counts two FLOPs per multiply-add, so MACs here
are its count halved. Everything works on the ``meta`` device, so measuring VGG-19 or ViT-H costs no memory or
compute. Attention is counted through the explicit softmax(QK^T)V path (``explicit_attention``): a fused SDPA kernel
on a real device is one opaque call the counter cannot see into.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from .models import explicit_attention


def count_params(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; shared parameters are counted once."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def _example_input(model: nn.Module, input_size: Sequence[int] | Tensor) -> Tensor:
    if isinstance(input_size, Tensor):
        return input_size
    try:
        ref = next(model.parameters())
        device, dtype = ref.device, ref.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    size = tuple(input_size)
    if len(size) == 3:
        size = (1, *size)
    return torch.zeros(size, device=device, dtype=dtype)


def count_macs(model: nn.Module, input_size: Sequence[int] | Tensor) -> int:
    """Multiply-adds of one forward pass (``(C, H, W)`` means batch 1) as ``torch.utils.flop_counter`` counts them."""
    x = _example_input(model, input_size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), explicit_attention(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class LayerRow:
    """One leaf module in execution order."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


def layer_summary(model: nn.Module, input_size: Sequence[int] | Tensor) -> list[LayerRow]:
    """Output shape, parameters and multiply-adds of every leaf module, in the order the forward pass runs them.

    A module whose parameters are used directly (not through a child) is listed too, so the rows' parameters add up
    to :func:`count_params`.
    """
    x = _example_input(model, input_size)
    order: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    seen: set[str] = set()
    names = {m: n for n, m in model.named_modules()}

    def has_own_params(m: nn.Module) -> bool:
        return any(True for _ in m.parameters(recurse=False))

    def hook(module: nn.Module, _inp: object, out: object) -> None:
        name = names[module]
        if name in seen:
            return
        seen.add(name)
        t = out[0] if isinstance(out, (tuple, list)) else out
        shape = tuple(t.shape) if isinstance(t, Tensor) else ()
        order.append((name, module, shape))

    handles = [
        m.register_forward_hook(hook)
        for n, m in model.named_modules()
        if n and (not any(True for _ in m.children()) or has_own_params(m))
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), explicit_attention(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    flops = counter.get_flop_counts()
    root = type(model).__name__
    rows = []
    for name, module, shape in order:
        counts = flops.get(f"{root}.{name}", {})
        own = sum(p.numel() for p in module.parameters(recurse=not any(True for _ in module.children())))
        rows.append(LayerRow(name, type(module).__name__, shape, own, int(sum(counts.values())) // 2))
    return rows
