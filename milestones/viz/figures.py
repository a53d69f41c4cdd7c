"""Pictures of what a network computes: filter grids, feature maps, Grad-CAM and attention overlays, training curves.

The ``*_image``/``overlay`` functions return numpy arrays (for a web page or a test to read pixel by pixel); the
others return matplotlib figures (Agg backend) for ``fig.savefig(path)``. Model inputs are normalised images
``(C, H, W)`` or ``(1, C, H, W)``; for display they are stretched back to [0, 1] per image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, RunDirError
from ..models.cswin import CSWinTransformer
from ..models.swin import SwinTransformer
from ..models.vit import VisionTransformer
from .attention import attention_rollout, head_maps, query_maps
from .cam import GradCam, batch_of_one
from .capture import features, first_conv


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def filter_image(model: nn.Module, layer: str | None = None, *, per_filter: bool = False, cols: int | None = None,
                 border: int = 1) -> np.ndarray:
    """The filters of a convolution as one ``(rows*(k+border)+border, cols*(k+border)+border, 3)`` float image.

    Filter ``i`` sits at row ``i // cols``, column ``i % cols`` of the grid (``cols`` defaults to ceil(sqrt(n))),
    its top-left pixel at ``(border + r*(kh+border), border + c*(kw+border))``; borders are white. Three input
    channels are shown as RGB, one as grey, others as the mean over input channels. Values map to
    ``0.5 + 0.5 * w / max|w|`` over all filters (mid-grey is zero, so strengths compare), or with ``per_filter``
    each filter is stretched to [0, 1] on its own.

    Args:
        model: any model; ``layer`` names a Conv2d, default the first one (a transformer's patch embedding).
    """
    layer = layer or first_conv(model)
    modules = dict(model.named_modules())
    conv = modules.get(layer)
    if conv is None:
        from .capture import unknown_layer

        raise unknown_layer(model, layer)
    if not isinstance(conv, nn.Conv2d):
        raise ConfigError(f"layer {layer!r} is a {type(conv).__name__}, not a Conv2d; filters are a convolution's")
    w = conv.weight.detach().to("cpu", torch.float64)  # (out, in, kh, kw)
    w = w if w.shape[1] in (1, 3) else w.mean(1, keepdim=True)
    w = w.permute(0, 2, 3, 1)  # (out, kh, kw, 1 or 3)
    if per_filter:
        lo = w.amin(dim=(1, 2, 3), keepdim=True)
        span = w.amax(dim=(1, 2, 3), keepdim=True) - lo
        w = (w - lo) / torch.where(span > 0, span, torch.ones_like(span))
    else:
        top = float(w.abs().max())
        w = 0.5 + 0.5 * w / (top if top > 0 else 1.0)
    w = w.expand(-1, -1, -1, 3).numpy()
    n, kh, kw, _ = w.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.ones((rows * (kh + border) + border, cols * (kw + border) + border, 3))
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = border + r * (kh + border), border + c * (kw + border)
        grid[y:y + kh, x:x + kw] = w[i]
    return grid.astype(np.float32)


def filter_grid(model: nn.Module, layer: str | None = None, *, per_filter: bool = False, title: str = "") -> Any:
    """:func:`filter_image` as a figure, titled with the layer and its weight shape."""
    layer = layer or first_conv(model)
    image = filter_image(model, layer, per_filter=per_filter)
    shape = "x".join(str(s) for s in dict(model.named_modules())[layer].weight.shape)
    plt = _plt()
    side = max(3.0, min(10.0, image.shape[1] / 12))
    fig, ax = plt.subplots(figsize=(side, side * image.shape[0] / image.shape[1] + 0.5))
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title or f"{type(model).__name__} {layer} filters ({shape})", fontsize=9)
    fig.tight_layout()
    return fig


def display_image(image: Tensor) -> np.ndarray:
    """A normalised model input as an ``(H, W, 3)`` float image in [0, 1] (stretched per image)."""
    x = batch_of_one(image)[0].detach().to("cpu", torch.float64)
    x = x if x.shape[0] == 3 else x.mean(0, keepdim=True).expand(3, -1, -1)
    lo, hi = float(x.min()), float(x.max())
    return ((x - lo) / (hi - lo if hi > lo else 1.0)).permute(1, 2, 0).float().numpy()


def _upsample(heat: np.ndarray, size: tuple[int, int], smooth: bool) -> np.ndarray:
    t = torch.as_tensor(np.asarray(heat, dtype=np.float32))[None, None]
    mode = {"mode": "bilinear", "align_corners": False} if smooth else {"mode": "nearest"}
    return torch.nn.functional.interpolate(t, size=size, **mode)[0, 0].numpy()


def overlay(image: Tensor | np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.5, smooth: bool = True,
            cmap: str = "jet") -> np.ndarray:
    """A heatmap (any grid, stretched from its minimum to its maximum) blended over an image: ``(H, W, 3)`` uint8.

    Args:
        image: a normalised model input (tensor), or an ``(H, W, 3)`` float image in [0, 1].
        heatmap: ``(h, w)``; it is resized to the image (bilinear, or nearest with ``smooth=False``, which keeps
            token grids and windows sharp).
    """
    base = display_image(image) if isinstance(image, Tensor) else np.asarray(image, dtype=np.float32)
    heat = _upsample(heatmap, base.shape[:2], smooth)
    lo, hi = float(heat.min()), float(heat.max())
    heat = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    import matplotlib

    colours = matplotlib.colormaps[cmap](heat)[..., :3]
    return (255 * ((1 - alpha) * base + alpha * colours)).round().clip(0, 255).astype(np.uint8)


def feature_maps(model: nn.Module, image: Tensor, layers: Sequence[str], *, channels: int = 8) -> Any:
    """The input and, for each layer, its first ``channels`` output maps (one row per layer, each map on its own
    grey scale)."""
    x = batch_of_one(image)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            maps = features(model, layers).maps(x)
    finally:
        model.train(was_training)
    plt = _plt()
    cols = 1 + min(channels, max(m.shape[1] for m in maps.values()))
    fig, axes = plt.subplots(len(maps), cols, figsize=(1.4 * cols, 1.5 * len(maps) + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for r, (name, m) in enumerate(maps.items()):
        axes[r, 0].imshow(display_image(x))
        axes[r, 0].set_title("input", fontsize=7)
        for c in range(min(channels, m.shape[1])):
            axes[r, c + 1].imshow(m[0, c].float().numpy(), cmap="gray", interpolation="nearest")
            axes[r, c + 1].set_title(f"{name}[{c}]" if c else f"{name} {m.shape[2]}x{m.shape[3]}", fontsize=7)
    fig.suptitle(f"{type(model).__name__} feature maps", fontsize=9)
    fig.tight_layout()
    return fig


def gradcam_figure(image: Tensor, cam: GradCam, classes: Sequence[str] | None = None) -> Any:
    """Input, Grad-CAM map and their overlay side by side."""
    name = classes[cam.target_class] if classes and cam.target_class < len(classes) else f"class {cam.target_class}"
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    axes[0].imshow(display_image(image))
    axes[0].set_title("input", fontsize=9)
    axes[1].imshow(cam.heatmap, cmap="jet", vmin=0, vmax=1)
    axes[1].set_title(f"Grad-CAM at {cam.layer}", fontsize=9)
    axes[2].imshow(overlay(image, cam.heatmap))
    axes[2].set_title(f"{name} (logit {cam.score:.2f})", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def attention_figure(model: nn.Module, image: Tensor, *, pixel: tuple[float, float] | None = None,
                     max_panels: int = 6) -> Any:
    """The family's attention view overlaid on the image.

    ViT: attention rollout, then each head's class-token map of the last block. Swin: the tokens the query at
    ``pixel`` (default: the centre, marked) attends to in the first blocks, windows and shifted windows. CSWin: the
    vertical-stripe and horizontal-stripe heads of the first blocks, for the same query.
    """
    x = batch_of_one(image)
    panels: list[tuple[str, np.ndarray, bool]] = []  # (title, map, smooth)
    if isinstance(model, VisionTransformer):
        panels.append(("rollout", attention_rollout(model, x), True))
        heads = head_maps(model, x)
        panels += [(f"last block, head {h}", heads[h], False) for h in range(min(len(heads), max_panels - 1))]
    elif isinstance(model, (SwinTransformer, CSWinTransformer)):
        pixel = pixel or (x.shape[-2] // 2, x.shape[-1] // 2)
        for q in query_maps(model, x, pixel):
            w = q.weights.double()
            if q.design == "cross-shaped":
                half = w.shape[0] // 2
                panels.append((f"block {q.block} vertical", w[:half].mean(0).float().numpy(), False))
                panels.append((f"block {q.block} horizontal", w[half:].mean(0).float().numpy(), False))
            else:
                panels.append((f"block {q.block} {q.design}", w.mean(0).float().numpy(), False))
            if len(panels) >= max_panels:
                break
    else:
        raise ConfigError(f"{type(model).__name__} has no attention; use gradcam for CNNs")
    panels = panels[:max_panels]
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.4 * (len(panels) + 1), 2.8), squeeze=False)
    axes = axes[0]
    axes[0].imshow(display_image(x))
    axes[0].set_title("input", fontsize=8)
    for ax, (title, heat, smooth) in zip(axes[1:], panels, strict=True):
        ax.imshow(overlay(x, heat, smooth=smooth))
        ax.set_title(title, fontsize=8)
    if pixel is not None:
        for ax in axes:
            ax.plot([pixel[1]], [pixel[0]], marker="+", color="white", markersize=10, mew=2)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(f"{type(model).__name__} attention" + (f" of the token at pixel {pixel}" if pixel else ""),
                 fontsize=9)
    fig.tight_layout()
    return fig


def training_curves(runs: Sequence[str | Path] | Mapping[str, str | Path], *, title: str = "") -> Any:
    """Loss and accuracy per epoch of several run directories in one figure (labels: the folder names, or the
    mapping's keys)."""
    from ..train.rundir import RunDir, curves_figure

    items = runs.items() if isinstance(runs, Mapping) else ((Path(r).name, r) for r in runs)
    records = {}
    for label, path in items:
        p = Path(path)
        if not (p / "metrics.jsonl").is_file():
            raise RunDirError(f"{p} has no metrics.jsonl; curves need run directories made by 'milestones train'")
        records[label] = RunDir(p).records()
    if not records:
        raise ConfigError("training_curves needs at least one run directory")
    return curves_figure(records, title=title)
