"""Attention maps of the transformers, as arrays on their token grids: ViT's rollout and per-head maps, and for any
ViT, Swin or CSWin block the tokens one query attends to (Swin's windows, CSWin's vertical and horizontal stripes).

Everything reads the models' own weights through the one capture mechanism the models provide,
``model.attention_maps(x)``, and :func:`milestones.attention.query_attention`, which lays a query's row out on its
block's grid; nothing here recomputes attention.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ..attention import QueryMap, query_attention
from ..errors import ConfigError
from ..models.cswin import CSWinTransformer
from ..models.vit import VisionTransformer
from .cam import batch_of_one


def _vit(model: nn.Module) -> VisionTransformer:
    if not isinstance(model, VisionTransformer):
        raise ConfigError(f"this view reads a ViT's attention, not {type(model).__name__}'s; use query_maps for "
                          "Swin and CSWin")
    return model


def _vit_maps(model: VisionTransformer, x: Tensor) -> list[Tensor]:
    was_training = model.training
    model.eval()  # no attention dropout
    try:
        with torch.no_grad():
            return [w[0].double() for w in model.attention_maps(x)]  # each (heads, N, N)
    finally:
        model.train(was_training)


def attention_rollout(model: nn.Module, image: Tensor) -> np.ndarray:
    """ViT attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020, §3).

    Each block's head-averaged weights are mixed half-and-half with the identity (the residual path) and
    renormalised; the product over blocks says how much each input token flows into each output token. Returns the
    class token's row over the patch tokens (with ``classifier="gap"``: the mean over all output tokens) as an
    ``(h, w)`` grid scaled to a maximum of 1.
    """
    vit = _vit(model)
    maps = _vit_maps(vit, batch_of_one(image))
    n = maps[0].shape[-1]
    flow = torch.eye(n, dtype=torch.float64)
    for w in maps:
        a = 0.5 * w.mean(0) + 0.5 * torch.eye(n, dtype=torch.float64)
        flow = (a / a.sum(-1, keepdim=True)) @ flow
    prefix, (gh, gw) = vit.num_prefix_tokens, vit.grid_size
    row = flow[0, prefix:] if prefix else flow.mean(0)
    grid = row.reshape(gh, gw)
    return (grid / grid.max()).float().numpy()


def head_maps(model: nn.Module, image: Tensor, block: int = -1) -> np.ndarray:
    """ViT: each head's attention from the class token (with ``classifier="gap"``: averaged over queries) to the
    patch tokens in ``block``, as ``(heads, h, w)`` weights (each head's map sums to 1 less its weight on the class
    token)."""
    vit = _vit(model)
    maps = _vit_maps(vit, batch_of_one(image))
    if not -len(maps) <= block < len(maps):
        raise ConfigError(f"block {block} is out of range: this ViT has {len(maps)} blocks")
    w = maps[block]
    prefix, (gh, gw) = vit.num_prefix_tokens, vit.grid_size
    rows = w[:, 0, prefix:] if prefix else w[:, :, prefix:].mean(1)
    return rows.reshape(-1, gh, gw).float().numpy()


def query_maps(model: nn.Module, image: Tensor, pixel: tuple[float, float] | None = None) -> list[QueryMap]:
    """For every block of a ViT, Swin or CSWin model, the weights the token covering ``pixel`` (row, col; default
    the image's centre) gives to every token of its grid: see :func:`milestones.attention.query_attention`."""
    x = batch_of_one(image)
    if pixel is None:
        pixel = (x.shape[-2] // 2, x.shape[-1] // 2)
    return query_attention(model, x, pixel)


def stripe_maps(model: nn.Module, image: Tensor, pixel: tuple[float, float] | None = None,
                block: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CSWin's cross-shaped window for one query: ``(vertical, horizontal)``, each ``(H, W)`` on the block's grid,
    the mean weight of the heads attending in vertical stripes (the first half) and in horizontal ones."""
    if not isinstance(model, CSWinTransformer):
        raise ConfigError(f"stripe maps are CSWin's, not {type(model).__name__}'s")
    maps = query_maps(model, image, pixel)
    if not -len(maps) <= block < len(maps):
        raise ConfigError(f"block {block} is out of range: this CSWin has {len(maps)} blocks")
    q = maps[block]
    if q.design != "cross-shaped":
        raise ConfigError(f"block {block} attends globally (CSWin's last stage); pick a block of an earlier stage")
    heads = q.weights.shape[0]
    w = q.weights.double()
    return w[: heads // 2].mean(0).float().numpy(), w[heads // 2:].mean(0).float().numpy()
