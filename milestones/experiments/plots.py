"""Figures shared by the experiments (matplotlib, Agg backend): returned as Figure objects, saved by the runner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def label_axes(ax: Any, xlabel: str, ylabel: str, *, title: str | None = None, legend: int | None = 8) -> None:
    """The experiments' axis style: labels, an optional title, a light grid, and a legend in ``legend``-point type
    (None: no legend)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if legend is not None:
        ax.legend(fontsize=legend)


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
        label_axes(ax, "step", "error (%)", legend=7)
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
    label_axes(ax, xlabel, ylabel)
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


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, for experiments that draw a figure of their own."""
    return _plt()


def paired_bars(labels: Sequence[str], ours: Sequence[float], paper: Sequence[float | None], xlabel: str, *,
                log: bool = True) -> Any:
    """Horizontal bars, ours beside the paper's value for each label (``None``: the paper has no entry)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(labels) + 1.2))
    y = list(range(len(labels)))
    ax.barh([i + 0.2 for i in y], ours, height=0.4, color="C0", label="ours")
    ax.barh([i - 0.2 for i in y], [p or 0 for p in paper], height=0.4, color="C7", label="paper")
    for i, v in zip(y, ours, strict=True):
        ax.text(v * 1.05 if log else v, i + 0.2, f" {v:.2f}", va="center", fontsize=8)
    for i, p in zip(y, paper, strict=True):
        ax.text((p or min(ours)) * 1.05 if log else (p or 0), i - 0.2, f" {p:.2f}" if p else " no entry",
                va="center", fontsize=8, color="0.35")
    values = [v for v in (*ours, *paper) if v]
    top = max(values) * 3
    if log:
        from matplotlib.ticker import FixedLocator, FuncFormatter

        bottom = min(values) / 2
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
                                                 if bottom < t < top]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlim(bottom, top)
    else:
        ax.set_xlim(0, top)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def kernel_grid(rows: Mapping[str, Mapping[str, Any]], title: str = "") -> Any:
    """One row of small images per entry of ``rows`` (row title -> {kernel name: 2-D array}); each kernel on its own
    symmetric red (positive) / blue (negative) scale."""
    import numpy as np

    plt = _plt()
    cols = max(len(r) for r in rows.values())
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.45 * cols, 1.75 * len(rows) + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, (row_title, kernels) in enumerate(rows.items()):
        for c, (name, k) in enumerate(kernels.items()):
            k = np.asarray(k, dtype=float)
            lim = float(np.abs(k).max()) or 1.0
            axes[r, c].imshow(k, cmap="RdBu_r", vmin=-lim, vmax=lim)
            axes[r, c].set_title(name, fontsize=8)
        axes[r, 0].text(-0.15, 0.5, row_title, transform=axes[r, 0].transAxes, rotation=90, ha="right",
                        va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def against_reference(curves: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
                      reference: str, *, xlabel: str = "epoch", ncols: int = 3) -> Any:
    """One panel per run other than ``reference``: its training (solid) and test (dashed) error against the
    reference's (grey), so that a gap opening between the two lines of one run, and how it differs from the
    reference's, shows at a glance. ``curves[label] = (x, train_err, test_err)``."""
    plt = _plt()
    others = [label for label in curves if label != reference]
    ncols = max(1, min(ncols, len(others)))
    nrows = max(1, -(-len(others) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), sharey=True, squeeze=False)
    for ax in axes.flat[len(others):]:
        ax.set_visible(False)
    for ax, label in zip(axes.flat, others):
        for name, colour in ((reference, "0.55"), (label, "C3")):
            if name not in curves:
                continue
            x, train, test = curves[name]
            ax.plot(x, train, "-", color=colour, lw=1.6, label=f"{name} train")
            ax.plot(x, test, "--", color=colour, lw=1.6, label=f"{name} test")
        ax.set_title(label)
        label_axes(ax, xlabel, "error (%)", legend=7)
    fig.tight_layout()
    return fig


def seed_bars(groups: Sequence[str], series: Mapping[str, Sequence[Sequence[float]]], ylabel: str) -> Any:
    """Grouped bars: for each group (x position) one bar per series at the mean of its values, with each value
    (one per seed) as a dot. ``series[name][i]`` holds group ``i``'s values."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(groups) + 2), 4))
    width = 0.8 / max(len(series), 1)
    for j, (name, values) in enumerate(series.items()):
        for i, vals in enumerate(values):
            x = i + (j - (len(series) - 1) / 2) * width
            if not vals:
                continue
            ax.bar(x, sum(vals) / len(vals), width * 0.9, color=f"C{j}", label=name if i == 0 else None)
            ax.plot([x] * len(vals), vals, "o", color="black", ms=3)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=len(series), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def scatter(points: Mapping[str, Sequence[float]], xlabels: Sequence[str], ylabel: str, *,
            links: Sequence[tuple[str, str]] = (), log_x: bool = False) -> Any:
    """One panel per x quantity, labelled points: ``points[label] = (x_1, ..., x_k, y)`` for the k ``xlabels``.
    Each pair in ``links`` (two labels, e.g. nets to compare) is joined by a dashed line."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(xlabels), figsize=(5.5 * len(xlabels), 4), sharey=True, squeeze=False)
    for k, (ax, xlabel) in enumerate(zip(axes[0], xlabels, strict=True)):
        for a, b in links:
            if a in points and b in points:
                ax.plot([points[a][k], points[b][k]], [points[a][-1], points[b][-1]], "--", color="0.6", lw=1)
        for i, (label, values) in enumerate(points.items()):
            ax.plot([values[k]], [values[-1]], "o", color=f"C{i}", ms=7)
            ax.annotate(label, (values[k], values[-1]), textcoords="offset points", xytext=(6, 4), fontsize=8)
        if log_x:
            ax.set_xscale("log")
        label_axes(ax, xlabel, ylabel, legend=None)
    fig.tight_layout()
    return fig
