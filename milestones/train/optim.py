"""Optimisers with parameter groups, and learning-rate schedules as a pure function of the step.

The schedule is ``lr_at(step)``, as in nanoGPT's ``get_lr``: no scheduler object holds state, so resuming a run needs
only the step counter.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import torch
from torch import nn

from ..config import OptimConfig, ScheduleConfig
from ..errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
_NO_DECAY_NAMES = ("pos_embed", "cls_token", "relative_position_bias_table", "absolute_pos_embed")


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool = False, *,
                 head: Collection[str] = (), backbone_lr_mult: float = 1.0) -> list[dict]:
    """Weights with decay, and norms, biases and embeddings (1-D tensors, position tables) without; frozen parameters
    (``requires_grad`` False) left out.

    With ``backbone_lr_mult`` != 1, each of the two is split again: the parameters named in ``head`` train at the
    schedule's learning rate and all others at ``backbone_lr_mult`` times it (discriminative learning rates for
    fine-tuning, Howard & Ruder 2018): the group's ``lr_mult``, which :func:`set_lr` applies.
    """
    split = backbone_lr_mult != 1.0
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = not decay_norm_and_bias and (p.ndim <= 1 or any(k in name for k in _NO_DECAY_NAMES))
        buckets.setdefault((skip, split and name not in head), []).append(p)
    groups = []
    for (skip, backbone), params in sorted(buckets.items()):
        group: dict = {"params": params, "weight_decay": 0.0 if skip else weight_decay}
        if split:
            group["lr_mult"] = backbone_lr_mult if backbone else 1.0
        groups.append(group)
    return groups or [{"params": [], "weight_decay": weight_decay}]


def check_config(optim: OptimConfig, schedule: ScheduleConfig) -> None:
    """The ``optim`` and ``schedule`` sections, checked before a run starts: names they take, Adam's two betas."""
    if optim.name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {optim.name!r} (optim.name); valid: {', '.join(OPTIMIZERS)}")
    if optim.name in ("adam", "adamw") and len(optim.betas) != 2:
        raise ConfigError(f"optim.betas must hold two numbers, got {optim.betas}")
    if schedule.name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {schedule.name!r} (schedule.name); valid: {', '.join(SCHEDULES)}")


def build_optimizer(model: nn.Module, cfg: OptimConfig, *, head: Collection[str] = (),
                    backbone_lr_mult: float = 1.0) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam or AdamW over :func:`param_groups`; SGD uses the fused kernel."""
    if backbone_lr_mult < 0:
        raise ConfigError(f"finetune.backbone_lr_mult must be >= 0, got {backbone_lr_mult}")
    groups = param_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias, head=head,
                          backbone_lr_mult=backbone_lr_mult)
    if cfg.name == "sgd":
        # One fused kernel instead of PyTorch's CPU default, a Python loop over the parameters: up to 1.6x faster steps
        # for FC-heavy nets at small batch on the CPU (docs/benchmarks.md); the same updates up to float32 rounding.
        fused = all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               fused=fused or None)
    if cfg.name in ("adam", "adamw"):
        if len(cfg.betas) != 2:
            raise ConfigError(f"optim.betas must hold two numbers, got {cfg.betas}")
        cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
        # Not fused: PyTorch's fused Adam made the step faster (about 3.5x for lenet5_modern in an ad-hoc timing on the
        # 2-core AMD EPYC), but a 2-process run resumed from a SIGKILL then no longer ended with bit-identical weights
        # (tests/test_distributed.py), which the loop kernel does.
        return cls(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    raise ConfigError(f"unknown optimizer {cfg.name!r}; valid: {', '.join(OPTIMIZERS)}")


def lr_at(step: int, *, base_lr: float, total_steps: int, steps_per_epoch: int, cfg: ScheduleConfig) -> float:
    """The learning rate for (0-based) ``step``: linear warm-up, then the named schedule."""
    if cfg.name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {cfg.name!r}; valid: {', '.join(SCHEDULES)}")
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if cfg.name == "constant":
        return base_lr
    if cfg.name == "step":
        passed = sum(step >= m * steps_per_epoch for m in cfg.milestones)
        return base_lr * cfg.gamma**passed
    span = max(total_steps - warmup, 1)
    t = min((step - warmup) / span, 1.0)
    if cfg.name == "cosine":
        return cfg.min_lr + (base_lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * t))
    # onecycle: a linear rise from base_lr / div_factor to base_lr, then a linear fall to min_lr (a triangle).
    start = base_lr / cfg.div_factor
    if t < cfg.pct_start:
        return start + (base_lr - start) * t / cfg.pct_start
    return base_lr + (cfg.min_lr - base_lr) * (t - cfg.pct_start) / max(1 - cfg.pct_start, 1e-8)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate to ``lr`` times its ``lr_mult`` (1 unless :func:`param_groups` set one)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
