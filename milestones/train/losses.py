"""Training criteria."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from ..errors import ConfigError

Loss = Callable[[Tensor, Tensor], Tensor]
LOSSES = ("ce", "lenet_map")


def lenet_map_loss(logits: Tensor, target: Tensor, j: float = 1.0) -> Tensor:
    """The LeNet-5 paper's MAP criterion (§II-C, eq. 9) for logits ``-y`` (negated RBF penalties).

    E = y_D + log(e^-j + sum_i e^-y_i) is cross-entropy over the logits plus one constant "rubbish" class with logit
    -j: it pulls the correct penalty down and pushes the others up, so the RBF centres cannot all collapse together.
    """
    rubbish = logits.new_full((logits.shape[0], 1), -j)
    return F.cross_entropy(torch.cat([logits, rubbish], dim=1), target)


def build_loss(name: str, *, label_smoothing: float = 0.0, map_j: float = 1.0) -> Loss:
    """The criterion named by ``train.loss``."""
    if name == "ce":
        return lambda logits, target: F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    if name == "lenet_map":
        return lambda logits, target: lenet_map_loss(logits, target, map_j)
    raise ConfigError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
