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

import torch
from torch import Tensor, nn

from .errors import ConfigError
from .models import ATTENDED, FAMILIES, QueryMap, family_of, family_traits

__all__ = ["ATTENDED", "QueryMap", "query_attention"]


def query_attention(model: nn.Module, x: Tensor, pixel: tuple[float, float]) -> list[QueryMap]:
    """Every block's attention weights for the token covering ``pixel`` of the image.

    Args:
        model: a model of a family whose :class:`~milestones.models.Traits` declare an attention reader (ViT, Swin,
            CSWin); it runs in eval mode (no attention dropout), restored afterwards.
        x: one image, ``(1, C, H, W)``.
        pixel: ``(row, col)`` in input pixels; each block takes the token of its own grid that covers it.

    Returns:
        One :class:`QueryMap` per block, in the order the network runs them.
    """
    if x.ndim != 4 or x.shape[0] != 1:
        raise ConfigError(f"query_attention takes one image (1, C, H, W), got shape {tuple(x.shape)}")
    if not (0 <= pixel[0] < x.shape[-2] and 0 <= pixel[1] < x.shape[-1]):
        raise ConfigError(f"pixel {pixel} is outside the {x.shape[-2]}x{x.shape[-1]} image")
    family = family_of(model)
    fn = family_traits(family).attention if family else None
    if fn is None:
        readers = [f for f in FAMILIES if family_traits(f).attention is not None]
        raise ConfigError(f"query_attention reads the attention of {', '.join(readers)} models, not "
                          f"{type(model).__name__} (a model without attention weights)")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return fn(model, x, pixel)
    finally:
        model.train(was_training)

