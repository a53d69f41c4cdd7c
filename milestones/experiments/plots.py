"""Figures shared by the experiments (matplotlib, Agg backend): returned as Figure objects, saved by the runner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average over ``window`` values (shorter at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def error_panels(curves: Mapping[str, tuple[list[int], list[float], list[tuple[int, float]]]],
                 groups: Sequence[str], *, window: int = 20) -> Any:
    """One panel per group (runs whose label starts with it): per-step training error, raw (thin) and smoothed,
    and test error per epoch as markers on the same colour."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4), sharey=True, squeeze=False)
    for ax, group in zip(axes[0], groups, strict=True):
        for i, (label, (steps, err, test)) in enumerate(c for c in curves.items() if c[0].startswith(group)):
            colour = f"C{i}"
            ax.plot(steps, err, color=colour, alpha=0.2, lw=0.6)
            ax.plot(steps, smooth(err, window), color=colour, lw=1.6, label=f"{label} train")
            if test:
                ax.plot(*zip(*test, strict=True), "o--", color=colour, ms=4, lw=0.8, label=f"{label} test")
        ax.set_title(group)
        ax.set_xlabel("step")
        ax.set_ylabel("error (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def series(data: Mapping[str, tuple[Sequence[float], Sequence[float]]], xlabel: str, ylabel: str, *,
           log: bool = False, window: int = 1) -> Any:
    """One line per label."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (x, y) in data.items():
        ax.plot(x, smooth(y, window) if window > 1 else y, label=label, lw=1.2)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def bars(categories: Sequence[str], data: Mapping[str, Sequence[float]], ylabel: str, *, log: bool = False,
         ax: Any = None, annotate: bool = False) -> Any:
    """Grouped bars: one group per category, one bar (colour) per series in ``data``. Draws into ``ax`` if given
    (and returns its figure), else into a new figure."""
    plt = _plt()
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(data), 1)
    for i, (label, values) in enumerate(data.items()):
        xs = [j + (i - (len(data) - 1) / 2) * width for j in range(len(categories))]
        drawn = ax.bar(xs, values, width, label=label, color=f"C{i}")
        if annotate:
            ax.bar_label(drawn, labels=[f"{v:.3g}" for v in values], fontsize=7, padding=1)
    ax.set_xticks(range(len(categories)), categories)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def panels(n: int, *, width: float = 5.0, height: float = 4.0) -> tuple[Any, list[Any]]:
    """A figure with ``n`` side-by-side axes."""
    plt = _plt()
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, list(axes[0])
