"""CSWin Transformer: Dong, Bao, Chen, Zhang, Yu, Yuan, Chen, Guo, "CSWin Transformer: A General Vision Transformer
Backbone with Cross-Shaped Windows". CVPR 2022, arXiv:2107.00652. Authors' code: microsoft/CSWin-Transformer,
``models/cswin.py``.

A four-stage hierarchical transformer. Every block splits its heads in half: one half attends inside vertical stripes
of width ``sw``, the other inside horizontal stripes, so each token sees a cross-shaped window; the last stage attends
globally. Positions enter through LePE, a depthwise 3x3 conv on V added to the attention output.

| variant | params paper | params ours | GMACs paper | GMACs ours (torch counter; fvcore) | top-1 err paper | source |
|---|---|---|---|---|---|---|
| cswin_t     | 23M  | 22,320,552  | 4.3  | 4.324 (4.34)    | 17.3 | Table 2, 224, single crop |
| cswin_s     | 35M  | 34,643,304  | 6.9  | 6.801 (6.83)    | 16.4 | Table 2, 224, single crop |
| cswin_b     | 78M  | 77,382,184  | 15.0 | 14.955 (15.00)  | 15.8 | Table 2, 224, single crop |
| cswin_l     | 173M | 173,262,664 | 31.5 | 33.130 (33.19)  | 13.5 | README, ImageNet-22k pre-training, 224 |
| cswin_b_384 | 78M  | 77,382,184  | 47.0 | 46.964 (47.08)  | 14.6 | Table 2 and abstract (85.4%), 384, single crop |
| cswin_l_384 | 173M | 173,262,664 | 96.8 | 101.88 (102.06) | 12.5 | README, abstract: ImageNet-22k pre-training, 384 |

Our parameter counts equal the authors' code exactly; the paper and README round T up to 23M and B to 78M. Our GMACs
are ``torch.utils.flop_counter`` on the meta device, where SDPA decomposes into the two matmuls the authors' explicit
attention performs (both paths count the same; tests check it). fvcore, which the authors used, also counts a few
element-wise ops; the authors' 31.5G and 96.8G for L are below what their own code gives.

The 384 variants are the authors' ``CSWin_96_24322_base_384`` and ``CSWin_144_24322_large_384`` (their only 384
models): B and L with stripe widths (1, 2, 12, 12), built for 384 x 384 (token grids 96, 48, 24, 12). They have exactly
the parameters of ``cswin_b`` / ``cswin_l``, so a 384 checkpoint also loads, strictly, into ``cswin_b`` built with
``img_size=384``, which keeps sw = 7 and computes something else: building it warns and names ``cswin_b_384``, and
:func:`convert_official_cswin` refuses that pairing when the checkpoint says which model it is. The README lists
B-384 at 85.5% (the paper's 85.4%) and L-384 at 87.5%.

Differences from the paper and the authors' code:
  * Branch order follows the authors' code: branch 0 (channels ``[:C/2]`` of q, k, v) is the **vertical** stripes
    (height = full grid, width = sw), branch 1 the horizontal ones; the paper describes horizontal first. The two are
    symmetric, but the order decides which half of ``qkv``/``proj`` a checkpoint's weights belong to.
  * Any input size, square or not: stripes are computed on the actual grid. A stripe wider than the grid is clamped
    to it; where ``sw`` does not divide the grid, q, k and v are zero-padded to a multiple of ``sw`` and the padded
    keys are masked out of the softmax (LePE then sees zeros there, exactly its own zero padding). The authors'
    classification code only runs square inputs at the constructed size with grids divisible by ``sw``.
  * Whether a stage attends globally (one branch, all heads) is decided at construction from ``img_size``, as the
    authors do: the last stage, or any stage whose grid the stripe covers (they test ``grid == sw``). This fixes only
    the module structure (``attns.0`` vs ``attns.0/1``): the parameter count is the same either way, and two stripe
    branches over a grid they cover compute exactly what one global branch does.
  * ``drop_rate`` acts in the MLP only: the authors build a ``proj_drop`` but never call it. Stochastic depth defaults
    to the README's training values (T 0.2, S 0.4, B 0.5; B-384 0.7 and L 0.2 from their fine-tuning commands; L-384,
    which has none, keeps L's 0.2).
  * ``reset_classifier`` works (the authors' version moves the head with ``.cuda()``).
  * :func:`convert_official_cswin` renames the authors' checkpoint keys to ours and checks the target model.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import CheckpointError, ConfigError
from ._attention import QueryMap, grids_seen, token_at
from ._layers import DropPath, Mlp, attend, drop_path_rates
from ._registry import Counts, PaperRef, Reported, Traits, last_stage, register_variants

PAPER = PaperRef(
    title="CSWin Transformer: A General Vision Transformer Backbone with Cross-Shaped Windows",
    authors="Dong, Bao, Chen, Zhang, Yu, Yuan, Chen, Guo",
    year=2022,
    venue="CVPR",
    arxiv="2107.00652",
)


@dataclass(frozen=True)
class CSWinConfig:
    """One CSWin variant.

    Args:
        dim: channels of stage 1; each merge doubles them.
        depths: blocks per stage.
        num_heads: attention heads per stage (split half and half between the two stripe orientations).
        split_size: stripe width ``sw`` per stage, in tokens: (1, 2, 7, 7) at 224, (1, 2, 12, 12) at 384.
        mlp_ratio: MLP hidden width over ``dim``.
        drop_path_rate: stochastic depth of the last block; it grows linearly from 0 over all blocks.
        img_size: the input size the structure is built for (int or (H, W)); it only decides which stages attend
            globally. Any input size runs.
        drop_rate: dropout in the MLPs.
        attn_drop_rate: dropout on the attention weights.
    """

    dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    split_size: tuple[int, ...] = (1, 2, 7, 7)
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0
    img_size: int | tuple[int, int] = 224
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0


# fmt: off
VARIANTS = {
    "cswin_t":     CSWinConfig(dim=64,  depths=(1, 2, 21, 1), num_heads=(2, 4, 8, 16),   drop_path_rate=0.2),
    "cswin_s":     CSWinConfig(dim=64,  depths=(2, 4, 32, 2), num_heads=(2, 4, 8, 16),   drop_path_rate=0.4),
    "cswin_b":     CSWinConfig(dim=96,  depths=(2, 4, 32, 2), num_heads=(4, 8, 16, 32),  drop_path_rate=0.5),
    "cswin_l":     CSWinConfig(dim=144, depths=(2, 4, 32, 2), num_heads=(6, 12, 24, 24), drop_path_rate=0.2),
    # the authors' 384 models; B-384's drop path is the README's fine-tuning value (L-384 has no published command)
    "cswin_b_384": CSWinConfig(dim=96,  depths=(2, 4, 32, 2), num_heads=(4, 8, 16, 32),  drop_path_rate=0.7,
                               split_size=(1, 2, 12, 12), img_size=384),
    "cswin_l_384": CSWinConfig(dim=144, depths=(2, 4, 32, 2), num_heads=(6, 12, 24, 24), drop_path_rate=0.2,
                               split_size=(1, 2, 12, 12), img_size=384),
}
# fmt: on

REPORTED = {
    "cswin_t": Reported(params_m=23, gmacs=4.3, top1_err=17.3, source="Table 2, 224, single crop"),
    "cswin_s": Reported(params_m=35, gmacs=6.9, top1_err=16.4, source="Table 2, 224, single crop"),
    "cswin_b": Reported(params_m=78, gmacs=15.0, top1_err=15.8, source="Table 2, 224, single crop"),
    "cswin_l": Reported(
        params_m=173, gmacs=31.5, top1_err=13.5, source="README main results, ImageNet-22k pre-training, 224"
    ),
    "cswin_b_384": Reported(
        params_m=78, gmacs=47.0, top1_err=14.6,
        source="Table 2 and abstract (85.4%), 384, single crop; README main results: 85.5%",
    ),
    "cswin_l_384": Reported(
        params_m=173, gmacs=96.8, top1_err=12.5,
        source="README main results and abstract (87.5%), ImageNet-22k pre-training, 384",
    ),
}

_MEASURED = "authors' code (params exact; torch counter)"
COUNTS = {
    "cswin_t":     Counts(params=22_320_552,  macs=4_324_203_008,   source=_MEASURED),
    "cswin_s":     Counts(params=34_643_304,  macs=6_800_714_752,   source=_MEASURED),
    "cswin_b":     Counts(params=77_382_184,  macs=14_955_348_480,  source=_MEASURED),
    "cswin_l":     Counts(params=173_262_664, macs=33_130_144_512,  source=_MEASURED),
    "cswin_b_384": Counts(params=77_382_184,  macs=46_963_660_800,  source=_MEASURED),
    "cswin_l_384": Counts(params=173_262_664, macs=101_881_930_752, source=_MEASURED),
}

Orientation = Literal["vertical", "horizontal", "global"]


def _to_windows(x: Tensor, hs: int, ws: int) -> Tensor:
    """(B, H, W, C) -> (B, nW, hs*ws, C): non-overlapping hs x ws windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // hs, hs, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // hs) * (w // ws), hs * ws, c)


def _from_windows(x: Tensor, hs: int, ws: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`_to_windows`: (B, nW, hs*ws, C) -> (B, H, W, C)."""
    b, c = x.shape[0], x.shape[-1]
    x = x.view(b, h // hs, w // ws, hs, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


class ConvEmbed(nn.Module):
    """Convolutional token embedding (after CvT): 7x7 stride-4 conv with padding 2, then LayerNorm."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, dim, kernel_size=7, stride=4, padding=2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, H/4, W/4, D)
        return self.norm(self.conv(x).permute(0, 2, 3, 1))


class MergeBlock(nn.Module):
    """Token merging between stages: 3x3 stride-2 conv that doubles the channels, then LayerNorm."""

    def __init__(self, dim: int, dim_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim_out, kernel_size=3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dim_out)

    def forward(self, x: Tensor) -> Tensor:  # (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), C')
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class LePEAttention(nn.Module):
    """Multi-head self-attention inside stripes of one orientation, plus LePE (paper §3.3).

    Args:
        dim: channels this branch receives (half the block's, or all of them for global attention).
        num_heads: heads of this branch; the head dim is ``dim // num_heads`` and the scale its inverse square root.
        split_size: stripe width ``sw`` in tokens (unused for global attention).
        orientation: "vertical" (windows of full height x sw), "horizontal" (sw x full width) or "global".
        attn_drop: dropout on the attention weights during training.
    """

    def __init__(
        self, dim: int, num_heads: int, split_size: int, orientation: Orientation, *, attn_drop: float = 0.0
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.split_size = split_size
        self.orientation = orientation
        self.attn_drop = attn_drop
        # LePE: a depthwise 3x3 conv on V (the authors call it get_v)
        self.lepe = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)

    def window_size(self, h: int, w: int) -> tuple[int, int]:
        """Window (rows, cols) on an h x w grid; a stripe wider than the grid is clamped to it."""
        if self.orientation == "vertical":
            return h, min(self.split_size, w)
        if self.orientation == "horizontal":
            return min(self.split_size, h), w
        return h, w

    def forward(self, q: Tensor, k: Tensor, v: Tensor, *, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """Attend within stripes.

        Args:
            q: queries, (B, H, W, dim); k and v alike.
            need_weights: also return the attention weights, scattered into a dense (B, heads, H*W, H*W) map
                (zero outside each query's stripe).

        Returns:
            ``(out, weights)``: out is (B, H, W, dim) = softmax(q k^T / sqrt(d)) v + LePE(v) per stripe.
        """
        b, h, w, c = q.shape
        hs, ws = self.window_size(h, w)
        pad_h, pad_w = -h % hs, -w % ws
        if pad_h or pad_w:  # zero-pad the grid to whole stripes; padded keys are masked below
            q, k, v = (F.pad(t, (0, 0, 0, pad_w, 0, pad_h)) for t in (q, k, v))
        hp, wp = h + pad_h, w + pad_w
        n, heads, d = hs * ws, self.num_heads, c // self.num_heads
        qw, kw, vw = (_to_windows(t, hs, ws) for t in (q, k, v))  # (B, nW, n, C)
        nw = qw.shape[1]

        def split_heads(t: Tensor) -> Tensor:  # (B, nW, n, C) -> (B*nW, heads, n, d)
            return t.reshape(b * nw, n, heads, d).transpose(1, 2)

        # LePE convolves V one stripe at a time, so its zero padding falls on stripe borders (authors' get_lepe)
        lepe = self.lepe(vw.reshape(b * nw, hs, ws, c).permute(0, 3, 1, 2))  # (B*nW, C, hs, ws)
        lepe = lepe.reshape(b * nw, heads, d, n).transpose(2, 3)  # (B*nW, heads, n, d)
        bias = None
        if pad_h or pad_w:
            valid = F.pad(q.new_ones(1, h, w, 1), (0, 0, 0, pad_w, 0, pad_h))
            bias = torch.zeros_like(valid).masked_fill(valid == 0, float("-inf"))
            bias = _to_windows(bias, hs, ws).transpose(-2, -1).expand(b, nw, 1, n).reshape(b * nw, 1, 1, n)
        out, weights = attend(
            split_heads(qw),
            split_heads(kw),
            split_heads(vw),
            bias=bias,
            dropout_p=self.attn_drop if self.training else 0.0,
            need_weights=need_weights,
        )
        out = (out + lepe).transpose(1, 2).reshape(b, nw, n, c)
        out = _from_windows(out, hs, ws, hp, wp)[:, :h, :w]
        if weights is not None:
            weights = self._dense(weights.view(b, nw, heads, n, n), hs, ws, hp, wp, h, w)
        return out, weights

    @staticmethod
    def _dense(weights: Tensor, hs: int, ws: int, hp: int, wp: int, h: int, w: int) -> Tensor:
        """Scatter windowed weights (B, nW, heads, n, n) into (B, heads, H*W, H*W) over the unpadded grid."""
        b, nw, heads, n, _ = weights.shape
        # Window slot -> token index, found by moving token ids through the same partition as the activations
        ids = torch.arange(hp * wp, device=weights.device).view(1, hp, wp, 1)
        idx = _to_windows(ids, hs, ws).view(nw, n)
        dense = weights.new_zeros(b, heads, hp * wp, hp * wp)
        dense[:, :, idx[:, :, None], idx[:, None, :]] = weights.permute(0, 2, 1, 3, 4)
        keep = ids.view(hp, wp)[:h, :w].reshape(-1)
        return dense[:, :, keep][:, :, :, keep]


class CSWinBlock(nn.Module):
    """Pre-norm block: x + DropPath(proj(cross-shaped attention(LN(x)))), then x + DropPath(MLP(LN(x))).

    Args:
        dim: token channels.
        num_heads: heads; with two branches each orientation gets half of them and half of the channels.
        split_size: stripe width ``sw``.
        global_attention: one branch over the whole grid (last stage) instead of two stripe branches.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        split_size: int,
        *,
        global_attention: bool,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        if global_attention:
            branches = [LePEAttention(dim, num_heads, split_size, "global", attn_drop=attn_drop)]
        else:
            if dim % 2 or num_heads % 2:
                raise ConfigError(f"two stripe branches need even dim and heads, got {dim} and {num_heads}")
            branches = [
                LePEAttention(dim // 2, num_heads // 2, split_size, o, attn_drop=attn_drop)
                for o in ("vertical", "horizontal")  # the authors' order: idx 0 is vertical
            ]
        self.attns = nn.ModuleList(branches)
        self.proj = nn.Linear(dim, dim)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def _forward(self, x: Tensor, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        c = x.shape[-1]
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)  # each (B, H, W, C)
        width = c // len(self.attns)
        outs, maps = [], []
        for i, attn in enumerate(self.attns):
            part = slice(i * width, (i + 1) * width)
            out, weights = attn(q[..., part], k[..., part], v[..., part], need_weights=need_weights)
            outs.append(out)
            maps.append(weights)
        x = x + self.drop_path(self.proj(torch.cat(outs, dim=-1)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, torch.cat(maps, dim=1) if need_weights else None

    def forward(self, x: Tensor) -> Tensor:  # (B, H, W, C) -> (B, H, W, C)
        return self._forward(x, need_weights=False)[0]

    def forward_with_attention(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The block's output and its attention map (B, heads, H*W, H*W), vertical-stripe heads first."""
        out, weights = self._forward(x, need_weights=True)
        assert weights is not None
        return out, weights


class CSWinStage(nn.Module):
    """One resolution: the merge from the previous stage (identity in stage 1), then the blocks."""

    def __init__(self, merge: nn.Module, blocks: list[CSWinBlock]) -> None:
        super().__init__()
        self.merge = merge
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.merge(x))


def _grid_after_stem(size: int) -> int:
    return (size + 2 * 2 - 7) // 4 + 1


def _warn_other_stripes(cfg: CSWinConfig, size: tuple[int, int]) -> None:
    """Warn when ``cfg`` has the authors' stripe widths for another input size than the one it is built for, and
    they have a model at this size: ``cswin_b`` built with ``img_size=384`` keeps sw = 7 where their B-384 uses 12,
    so its weights compute something else (3.5e-2 relative with their weights, issue 28)."""
    same = [(n, v) for n, v in VARIANTS.items() if (v.dim, v.num_heads) == (cfg.dim, cfg.num_heads)]
    if not any(v.split_size == cfg.split_size and _pair(v.img_size) != size for _, v in same):
        return  # stripes of no other size of theirs (or chosen on purpose): nothing to point to
    for name, v in same:
        if _pair(v.img_size) == size and v.split_size != cfg.split_size:
            warnings.warn(f"CSWin built for {size[0]}x{size[1]} with stripe widths {cfg.split_size}, the authors' "
                          f"for another size: their {size[0]}x{size[1]} model uses {v.split_size} and computes "
                          f"something else with the same weights; use {name} (or split_size={v.split_size})",
                          UserWarning, stacklevel=5)  # the caller of create_model
            return


class CSWinTransformer(nn.Module):
    """CSWin Transformer: conv token embedding, stages of cross-shaped-window blocks with conv merging, GAP head.

    Args:
        cfg: the variant (its ``img_size`` decides which stages attend globally).
        num_classes: classifier outputs; 0 gives an identity head.
        in_chans: input channels.
    """

    def __init__(self, cfg: CSWinConfig, *, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        if not len(cfg.depths) == len(cfg.num_heads) == len(cfg.split_size):
            raise ConfigError("depths, num_heads and split_size need one entry per stage")
        self.cfg = cfg
        h, w = (cfg.img_size, cfg.img_size) if isinstance(cfg.img_size, int) else cfg.img_size
        self.img_size = (int(h), int(w))
        _warn_other_stripes(cfg, self.img_size)
        gh, gw = _grid_after_stem(h), _grid_after_stem(w)
        self.stem = ConvEmbed(in_chans, cfg.dim)
        rates = iter(drop_path_rates(cfg.drop_path_rate, cfg.depths))
        dim, stages = cfg.dim, []
        for i, (depth, heads, sw) in enumerate(zip(cfg.depths, cfg.num_heads, cfg.split_size, strict=True)):
            merge: nn.Module = nn.Identity()
            if i > 0:
                merge, dim = MergeBlock(dim, 2 * dim), 2 * dim
                gh, gw = (gh + 1) // 2, (gw + 1) // 2
            # the authors' rule: the last stage, or a stripe as wide as the grid, means one global branch
            global_attention = i == len(cfg.depths) - 1 or sw >= max(gh, gw)
            blocks = [
                CSWinBlock(
                    dim,
                    heads,
                    sw,
                    global_attention=global_attention,
                    mlp_ratio=cfg.mlp_ratio,
                    drop=cfg.drop_rate,
                    attn_drop=cfg.attn_drop_rate,
                    drop_path=next(rates),
                )
                for _ in range(depth)
            ]
            stages.append(CSWinStage(merge, blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = dim
        self.norm = nn.LayerNorm(dim)
        self.head: nn.Module = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
        self.init_weights()

    def init_weights(self) -> None:
        """Truncated normal (std 0.02, cut at +-2) on every Linear with zero bias, LayerNorm (1, 0); the convs keep
        PyTorch's default, as in the authors' ``_init_weights``."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a freshly initialised Linear(num_features, num_classes) (identity for 0)."""
        ref = self.norm.weight
        if num_classes > 0:
            head = nn.Linear(self.num_features, num_classes, device=ref.device, dtype=ref.dtype)
            nn.init.trunc_normal_(head.weight, std=0.02)
            nn.init.zeros_(head.bias)
            self.head = head
        else:
            self.head = nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, D)
        x = self.stages(self.stem(x))  # (B, h, w, D)
        return self.norm(x).mean(dim=(1, 2))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.head(self.forward_features(x))

    def attention_maps(self, x: Tensor) -> list[Tensor]:
        """Attention weights of every block, in order, for visualisation.

        Each map is (B, heads, N, N) with N = h*w tokens of the block's stage (row-major), zero outside the query's
        stripe. In two-branch blocks heads ``[:heads/2]`` attend in vertical stripes and ``[heads/2:]`` in
        horizontal ones. Maps are dense, so stage 1 at 224 costs heads * 3136^2 floats per image.
        """
        maps = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage.merge(x)
            for block in stage.blocks:
                x, weights = block.forward_with_attention(x)
                maps.append(weights)
        return maps


_OFFICIAL_RULES = [
    (re.compile(r"^stage1_conv_embed\.0\."), lambda m: "stem.conv."),
    (re.compile(r"^stage1_conv_embed\.2\."), lambda m: "stem.norm."),
    (re.compile(r"^stage(\d+)\.(\d+)\."), lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}."),
    (re.compile(r"^merge(\d+)\."), lambda m: f"stages.{m[1]}.merge."),  # merge i sits before stage i+1
    (re.compile(r"^(norm|head)\."), lambda m: m[0]),
]


# The authors' registered names (their models/cswin.py) -> ours. timm's CheckpointSaver, which their training scripts
# use, records the name as the checkpoint's "arch" and the argparse namespace (with img_size) as "args".
OFFICIAL_NAMES = {
    "CSWin_64_12211_tiny_224": "cswin_t",
    "CSWin_64_24322_small_224": "cswin_s",
    "CSWin_96_24322_base_224": "cswin_b",
    "CSWin_144_24322_large_224": "cswin_l",
    "CSWin_96_24322_base_384": "cswin_b_384",
    "CSWin_144_24322_large_384": "cswin_l_384",
}


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _check_official_metadata(checkpoint: Mapping[str, Any], model: CSWinTransformer) -> None:
    """Refuse a checkpoint whose recorded model (``arch``, ``args.model``, ``args.img_size``) is not ``model``'s.

    The weights themselves cannot tell: no tensor depends on the stripe widths, the heads or the input size.
    """
    args = checkpoint.get("args")

    def arg(name: str) -> Any:
        return args.get(name) if isinstance(args, Mapping) else getattr(args, name, None)

    arch = arg("model") or checkpoint.get("arch")
    if arch not in OFFICIAL_NAMES:
        return
    ours = OFFICIAL_NAMES[arch]
    expected = VARIANTS[ours]
    img_size = arg("img_size") or expected.img_size
    theirs = {"num_heads": expected.num_heads, "split_size": expected.split_size, "img_size": _pair(img_size)}
    have = {"num_heads": model.cfg.num_heads, "split_size": model.cfg.split_size, "img_size": model.img_size}
    wrong = [k for k in theirs if tuple(theirs[k]) != tuple(have[k])]
    if wrong:
        raise CheckpointError(
            f"the checkpoint is the authors' {arch} ({', '.join(f'{k} {theirs[k]}' for k in wrong)}) but the model has "
            f"{', '.join(f'{k} {have[k]}' for k in wrong)}; build it with create_model({ours!r}"
            + (f", img_size={img_size}" if _pair(img_size) != _pair(expected.img_size) else "")
            + ")"
        )


def convert_official_cswin(checkpoint: Mapping[str, Any], model: CSWinTransformer) -> dict[str, Any]:
    """Rename a state dict of the authors' ``models/cswin.py`` (microsoft/CSWin-Transformer) to ``model``'s keys.

    ``stage1_conv_embed.{0,2}`` -> ``stem.{conv,norm}``; ``stage{i}.{j}`` -> ``stages.{i-1}.blocks.{j}``;
    ``merge{i}`` -> ``stages.{i}.merge``; ``attns.{k}.get_v`` -> ``attns.{k}.lepe``. Branch order and the qkv/proj
    layouts are the same in both, so no tensor changes. A checkpoint wrapped as the authors save it
    (``state_dict_ema``, ``state_dict`` or ``model``) or with DataParallel's ``module.`` prefix is unwrapped.

    The stripe widths, heads and input size are in no tensor: B at 224 and at 384 have the same state dict, so a 384
    checkpoint would load, strictly, into ``cswin_b`` and compute something else. What can be checked is:
    the authors' model name and ``img_size`` when the checkpoint records them (their training scripts save
    ``arch``/``args``), against ``model``'s config; and which stages attend globally (one branch), a structure that
    follows from the stripe widths and input size, against ``model``'s. A bare state dict carries no name, so there
    the right variant is the caller's choice: ``cswin_b_384`` / ``cswin_l_384`` for the 384 weights.

    Raises:
        CheckpointError: a key that is not part of the authors' model, or a checkpoint made for another variant.
    """
    _check_official_metadata(checkpoint, model)
    state_dict = checkpoint
    for wrapper in ("state_dict_ema", "state_dict", "model"):
        if isinstance(checkpoint.get(wrapper), Mapping):
            state_dict = checkpoint[wrapper]
            break
    out = {}
    for key, value in state_dict.items():
        name = key.removeprefix("module.")
        for pattern, repl in _OFFICIAL_RULES:
            match = pattern.match(name)
            if match:
                name = repl(match) + name[match.end() :]
                break
        else:
            raise CheckpointError(f"{key!r} is not a key of the authors' CSWin model")
        out[name.replace(".get_v.", ".lepe.")] = value
    for i, stage in enumerate(model.stages):
        if f"stages.{i}.blocks.0.attns.0.lepe.weight" not in out or not stage.blocks:
            continue  # a stage missing on either side is left to load_state_dict's own error
        branches = 2 if f"stages.{i}.blocks.0.attns.1.lepe.weight" in out else 1
        if branches != len(stage.blocks[0].attns):
            raise CheckpointError(
                f"stage {i + 1} of the checkpoint has {branches} attention branch(es), the model's "
                f"{len(stage.blocks[0].attns)}: they were built with different split_size or img_size "
                f"(the model: {model.cfg.split_size}, {model.img_size})"
            )
    return out


def query_rows(model: CSWinTransformer, x: Tensor, pixel: tuple[float, float]) -> list[QueryMap]:
    """Every block's attention row for the token covering ``pixel``: the dense ``(heads, N)`` row of the block's two
    stripe branches, zero outside the stripes (see :func:`milestones.attention.query_attention`)."""
    grids = grids_seen(model, LePEAttention, x)
    blocks = [(s, b) for s, stage in enumerate(model.stages) for b in stage.blocks]
    first = iter(grids)
    out = []
    for i, (w, (stage, block)) in enumerate(zip(model.attention_maps(x), blocks, strict=True)):
        h, wd = next(first)
        for _ in block.attns[1:]:  # the second branch sees the same grid
            next(first)
        r, c = token_at(pixel, (x.shape[-2], x.shape[-1]), (h, wd))
        design = "global" if len(block.attns) == 1 else "cross-shaped"
        out.append(QueryMap(i, stage, design, (h, wd), (r, c), w[0, :, r * wd + c].reshape(-1, h, wd)))
    return out


TRAITS = Traits(convolutional=False, cam_layer=last_stage, attention=query_rows, feature_layout="NHWC")


@register_variants(
    VARIANTS,
    paper=PAPER,
    traits=TRAITS,
    reported=REPORTED,
    counts=COUNTS,
    input_size={name: (3, *_pair(cfg.img_size)) for name, cfg in VARIANTS.items()},
    # The 384 variants only differ from B / L in split_size and img_size: test them with 2 blocks per stage.
    small={name: {"depths": (2, 2, 2, 2)} for name in ("cswin_b_384", "cswin_l_384")},
    small_input=(3, 64, 64),
)
def cswin(cfg: CSWinConfig, *, num_classes: int = 1000, in_chans: int = 3) -> CSWinTransformer:
    """Build a CSWin Transformer; every :class:`CSWinConfig` field is a ``create_model`` option too."""
    return CSWinTransformer(cfg, num_classes=num_classes, in_chans=in_chans)
