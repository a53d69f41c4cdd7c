"""Where one token looks: the attention weights of a query, laid out on its block's token grid, for every block of a
ViT, Swin or CSWin model.

The models' own ``attention_maps(x)`` return each block's softmax weights in the layout the block computes them in:
ViT's ``(B, heads, 1 + N, 1 + N)`` with a class token, Swin's ``(B, nW, heads, M*M, M*M)`` per window of the padded,
cyclically shifted grid, CSWin's dense ``(B, heads, N, N)``. :func:`query_attention` turns them into one form, the
row of a chosen query token as ``(heads, H, W)`` over that block's grid of image tokens, so that a figure (or the
``viz`` command) can draw "the tokens this token attends to" the same way for global attention, windows, shifted
windows and cross-shaped stripes. Weights are the model's own: nothing is recomputed here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .errors import ConfigError
from .models.cswin import CSWinTransformer, LePEAttention
from .models.swin import ShiftedWindowAttention, SwinTransformer, window_partition
from .models.vit import VisionTransformer

# A key counts as attended when its weight is above this. Swin masks cross-region pairs of a shifted window by adding
# -100 to their logits, which leaves weights near e^-100 (~4e-44, a float32 denormal) rather than exact zeros; CSWin's
# dense maps are exactly zero outside the stripes. A genuine weight this small would need a logit gap of about 46.
ATTENDED = 1e-20


@dataclass(frozen=True)
class QueryMap:
    """One block's attention weights for one query token.

    Attributes:
        block: index of the block over the whole network (the order of ``model.attention_maps``).
        stage: the stage the block belongs to (0 for every ViT block).
        design: "global", "window", "shifted window" or "cross-shaped" ("global" too for CSWin's last stage).
        grid: ``(H, W)`` tokens of the block's grid (without ViT's class token or any padding).
        query: ``(row, col)`` of the query token on that grid.
        weights: ``(heads, H, W)``, the query's softmax row per head over the image tokens; each head's row sums to
            1 less the weight on ViT's class token. For CSWin, heads ``[:heads/2]`` are the vertical stripes.
    """

    block: int
    stage: int
    design: str
    grid: tuple[int, int]
    query: tuple[int, int]
    weights: Tensor

    def attended(self, threshold: float = ATTENDED) -> Tensor:
        """``(H, W)`` bool: the tokens at least one head attends to (weight above ``threshold``)."""
        return (self.weights > threshold).any(dim=0)


def _token(pixel: tuple[float, float], image: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
    """The token of an ``grid`` laid over ``image`` that covers ``pixel`` (row, col)."""
    return (min(int(pixel[0] * grid[0] / image[0]), grid[0] - 1), min(int(pixel[1] * grid[1] / image[1]), grid[1] - 1))


def _grids(model: nn.Module, kind: type[nn.Module], x: Tensor) -> list[tuple[int, int]]:
    """The (H, W) token grid each attention module of type ``kind`` sees, in call order, recorded by pre-hooks."""
    seen: list[tuple[int, int]] = []
    handles = [m.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape[1:3])))
               for m in model.modules() if isinstance(m, kind)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def _vit(model: VisionTransformer, x: Tensor, pixel: tuple[float, float]) -> list[QueryMap]:
    gh, gw = model.grid_size
    r, c = _token(pixel, model.img_size, (gh, gw))
    prefix = model.num_prefix_tokens
    out = []
    for i, w in enumerate(model.attention_maps(x)):  # (B, heads, prefix + N, prefix + N)
        row = w[0, :, prefix + r * gw + c, prefix:]  # the query's row, class token dropped
        out.append(QueryMap(i, 0, "global", (gh, gw), (r, c), row.reshape(-1, gh, gw)))
    return out


def _swin(model: SwinTransformer, x: Tensor, pixel: tuple[float, float]) -> list[QueryMap]:
    attns = [m for m in model.modules() if isinstance(m, ShiftedWindowAttention)]
    grids = _grids(model, ShiftedWindowAttention, x)
    stages = [i for i, s in enumerate(model.stages) for _ in s.blocks]
    out = []
    for i, (w, attn, (h, wd)) in enumerate(zip(model.attention_maps(x), attns, grids, strict=True)):
        m = attn.window_size
        hp, wp = h + -h % m, wd + -wd % m
        # the shift the block applied: none along an axis one window covers (ShiftedWindowAttention.forward)
        shift = (attn.shift_size if hp > m else 0, attn.shift_size if wp > m else 0)
        # Move token ids through the block's own padding, roll and partition: slot -> token of the padded grid
        ids = F.pad(torch.arange(h * wd, device=w.device).view(1, h, wd, 1), (0, 0, 0, wp - wd, 0, hp - h), value=-1)
        ids = window_partition(torch.roll(ids, shifts=(-shift[0], -shift[1]), dims=(1, 2)), m).squeeze(-1)  # (nW, N)
        r, c = _token(pixel, (x.shape[-2], x.shape[-1]), (h, wd))
        win, slot = (ids == r * wd + c).nonzero()[0].tolist()
        keys = ids[win]
        row = w[0, win, :, slot]  # (heads, N)
        dense = row.new_zeros(row.shape[0], h * wd)
        dense[:, keys[keys >= 0]] = row[:, keys >= 0]  # padded keys are left out
        design = "shifted window" if any(shift) else "window"
        out.append(QueryMap(i, stages[i], design, (h, wd), (r, c), dense.view(-1, h, wd)))
    return out


def _cswin(model: CSWinTransformer, x: Tensor, pixel: tuple[float, float]) -> list[QueryMap]:
    grids = _grids(model, LePEAttention, x)
    blocks = [(s, b) for s, stage in enumerate(model.stages) for b in stage.blocks]
    first = iter(grids)
    out = []
    for i, (w, (stage, block)) in enumerate(zip(model.attention_maps(x), blocks, strict=True)):
        h, wd = next(first)
        for _ in block.attns[1:]:  # the second branch sees the same grid
            next(first)
        r, c = _token(pixel, (x.shape[-2], x.shape[-1]), (h, wd))
        design = "global" if len(block.attns) == 1 else "cross-shaped"
        out.append(QueryMap(i, stage, design, (h, wd), (r, c), w[0, :, r * wd + c].reshape(-1, h, wd)))
    return out


def query_attention(model: nn.Module, x: Tensor, pixel: tuple[float, float]) -> list[QueryMap]:
    """Every block's attention weights for the token covering ``pixel`` of the image.

    Args:
        model: a ViT, Swin or CSWin model; it runs in eval mode (no attention dropout), restored afterwards.
        x: one image, ``(1, C, H, W)``.
        pixel: ``(row, col)`` in input pixels; each block takes the token of its own grid that covers it.

    Returns:
        One :class:`QueryMap` per block, in the order the network runs them.
    """
    if x.ndim != 4 or x.shape[0] != 1:
        raise ConfigError(f"query_attention takes one image (1, C, H, W), got shape {tuple(x.shape)}")
    if not (0 <= pixel[0] < x.shape[-2] and 0 <= pixel[1] < x.shape[-1]):
        raise ConfigError(f"pixel {pixel} is outside the {x.shape[-2]}x{x.shape[-1]} image")
    kinds = {VisionTransformer: _vit, SwinTransformer: _swin, CSWinTransformer: _cswin}
    fn = next((f for k, f in kinds.items() if isinstance(model, k)), None)
    if fn is None:
        raise ConfigError(f"query_attention reads ViT, Swin and CSWin models, not {type(model).__name__}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return fn(model, x, pixel)
    finally:
        model.train(was_training)
