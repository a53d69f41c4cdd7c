"""Blocks used by two or more families. A block used by one family lives in that family's file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from torch import Tensor, nn
from torch.nn import functional as F


def fresh_head(like: nn.Linear, in_features: int, num_classes: int) -> nn.Linear:
    """A new ``num_classes``-way linear classifier on the device and dtype of the one it replaces, bias zero (the
    ``reset_classifier`` of the CNN families; the weight keeps PyTorch's default init)."""
    head = nn.Linear(in_features, num_classes, device=like.weight.device, dtype=like.weight.dtype)
    nn.init.zeros_(head.bias)
    return head


def he_init_convs(module: nn.Module) -> None:
    """He et al. 2015 (arXiv:1502.01852) normal init with fan-out for every convolution, BatchNorm weight 1 and bias 0:
    the common init of the ResNet-era CNN families (each family's docstring says whose code it follows)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth (Huang et al. 2016, arXiv:1603.09382): drop whole residual branches per sample."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Stochastic depth as a module; identity at evaluation."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def drop_path_rates(rate: float, depths: list[int] | tuple[int, ...]) -> list[float]:
    """Stochastic-depth rates growing linearly from 0 to ``rate`` over all blocks (Swin, CSWin, DeiT)."""
    total = sum(depths)
    return [rate * i / max(total - 1, 1) for i in range(total)]


class Mlp(nn.Module):
    """Transformer feed-forward block: Linear -> GELU -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, hidden: int, *, drop: float = 0.0, out_dim: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_dim or dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def local_response_norm(size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> nn.LocalResponseNorm:
    """LRN with the paper's constants (AlexNet §3.3: b = a / (k + alpha * sum a^2)^beta).

    PyTorch's ``LocalResponseNorm`` divides ``alpha`` by ``size``; multiply it back so the paper's alpha holds.
    """
    return nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)


# Whether :func:`attend` takes the explicit path. A ContextVar rather than a module global: it is set only through
# :func:`explicit_attention`, which always restores it, and each thread (and asyncio task) sees its own value.
# torch.compile guards on it, so a compiled model recompiles rather than silently keeping the other path.
_explicit: ContextVar[bool] = ContextVar("milestones_explicit_attention", default=False)


@contextmanager
def explicit_attention(enabled: bool = True) -> Iterator[None]:
    """Inside the block, :func:`attend` computes softmax(QK^T)V explicitly instead of calling SDPA.

    For FLOP counting (the counter sees the two matmuls on any device), benchmarks and equivalence checks. The previous
    setting comes back when the block exits, also on an exception; ``enabled=False`` forces SDPA inside an outer block.
    """
    token = _explicit.set(enabled)
    try:
        yield
    finally:
        _explicit.reset(token)


def explicit_attention_enabled() -> bool:
    """Whether :func:`attend` currently takes the explicit path (True only inside :func:`explicit_attention`)."""
    return _explicit.get()


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    bias: Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    need_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Scaled dot-product attention over ``(..., N, d)`` tensors, returning ``(output, weights or None)``.

    By default this calls ``F.scaled_dot_product_attention``, which never materialises the N x N matrix on fused
    kernels. With ``need_weights=True`` (visualisation) or inside :func:`explicit_attention` it computes
    softmax(q k^T * scale + bias) v explicitly; the weights are returned only when asked for.
    """
    if need_weights or _explicit.get():
        scale = q.shape[-1] ** -0.5 if scale is None else scale
        weights = (q * scale) @ k.transpose(-2, -1)
        if bias is not None:
            weights = weights + bias
        weights = weights.softmax(dim=-1)
        out = F.dropout(weights, dropout_p) @ v if dropout_p > 0 else weights @ v
        return out, weights if need_weights else None
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale)
    return out, None
