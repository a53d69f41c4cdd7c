"""The one form every attention family reads its weights into: a query token's row on its block's token grid.

Each transformer family's file holds its own reader (``vit.query_rows``, ``swin.query_rows``, ``cswin.query_rows``,
declared as :attr:`Traits.attention <milestones.models._registry.Traits>`), since only the family knows how its blocks
lay their weights out; :func:`milestones.attention.query_attention` calls the reader of the model's family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

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


def token_at(pixel: tuple[float, float], image: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
    """The token of a ``grid`` laid over ``image`` that covers ``pixel`` (row, col)."""
    return (min(int(pixel[0] * grid[0] / image[0]), grid[0] - 1), min(int(pixel[1] * grid[1] / image[1]), grid[1] - 1))


def grids_seen(model: nn.Module, kind: type[nn.Module], x: Tensor) -> list[tuple[int, int]]:
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
