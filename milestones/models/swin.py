"""Swin Transformer: "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows". Liu, Lin, Cao, Hu,
Wei, Zhang, Lin, Guo. ICCV 2021. arXiv:2103.14030

Self-attention inside non-overlapping M x M windows (M = 7), the partition shifted by M // 2 in every second block so
information crosses window borders; a learned relative position bias per head; 2 x 2 patch merging between stages.

| variant | params paper | params ours | GMACs paper | GMACs ours | top-1 err paper              |
|---------|--------------|-------------|-------------|------------|------------------------------|
| swin_t  | 28M          | 28,288,354  | 4.5         | 4.491      | 18.7 (Table 1a, 224, 1-crop) |
| swin_s  | 50M          | 49,606,258  | 8.7         | 8.741      | 17.0 (Table 1a, 224, 1-crop) |
| swin_b  | 88M          | 87,768,224  | 15.4        | 15.431     | 16.5 (Table 1a, 224, 1-crop) |

Parameter counts equal torchvision's ``swin_t`` / ``swin_s`` / ``swin_b`` (v1), whose state dicts convert to ours
(:func:`from_torchvision`) with identical logits. GMACs are ``torch.utils.flop_counter`` multiply-adds at 224 x 224;
the paper's "FLOPs" are multiply-adds counted by a different tool.

Differences from the paper:
  * Grids that windows do not tile are zero-padded on the bottom/right after the block's first LayerNorm, and the
    shift is dropped along an axis one window covers, as in torchvision (the authors' classification code asserts
    the size, and shrinks the window when it exceeds the grid). Padded tokens are keys like any other.
  * The patch-embedding conv floors odd image sizes (torchvision) instead of padding them (authors' detection code).
  * Shifted-window masking adds -100 (the authors' value) to cross-region logits, so those weights are ~e^-100
    rather than exactly zero.
  * ``patch_size`` and ``window_size`` are options, e.g. ``patch_size=2, window_size=4`` for 32 x 32 CIFAR images
    (grids 16, 8, 4, 2); the paper uses 4 and 7 throughout (224 x 224 gives grids 56, 28, 14, 7).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import CheckpointError
from ._attention import QueryMap, grids_seen, token_at
from ._layers import DropPath, Mlp, attend, drop_path_rates
from ._registry import Counts, PaperRef, Reported, Traits, last_stage, register_converter, register_variants

PAPER = PaperRef(
    "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows",
    "Liu, Lin, Cao, Hu, Wei, Zhang, Lin, Guo",
    2021,
    venue="ICCV",
    arxiv="2103.14030",
)


@dataclass(frozen=True)
class SwinConfig:
    """One Swin variant (paper §3.3).

    Args:
        dim: C, the width of stage 1; widths double at every stage.
        depths: blocks per stage.
        num_heads: attention heads per stage.
        drop_path_rate: stochastic depth of the last block, linear from 0 (paper §4.1: 0.2 / 0.3 / 0.5 for T / S / B).
        patch_size: side of the patches of the stem (4 in the paper).
        window_size: M, the side of the attention windows (7 in the paper).
        mlp_ratio: MLP hidden width over the block's width.
        drop_rate: dropout after the attention projection and in the MLP (0 in the paper).
        attn_drop_rate: dropout on the attention weights (0 in the paper).
    """

    dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    drop_path_rate: float
    patch_size: int = 4
    window_size: int = 7
    mlp_ratio: float = 4.0
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0


# fmt: off
VARIANTS = {
    "swin_t": SwinConfig(dim=96,  depths=(2, 2, 6, 2),  num_heads=(3, 6, 12, 24), drop_path_rate=0.2),
    "swin_s": SwinConfig(dim=96,  depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3),
    "swin_b": SwinConfig(dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5),
}
# fmt: on
REPORTED = {
    "swin_t": Reported(params_m=28, gmacs=4.5, top1_err=18.7, source="Table 1(a), ImageNet-1K, 224x224, single crop"),
    "swin_s": Reported(params_m=50, gmacs=8.7, top1_err=17.0, source="Table 1(a), ImageNet-1K, 224x224, single crop"),
    "swin_b": Reported(params_m=88, gmacs=15.4, top1_err=16.5, source="Table 1(a), ImageNet-1K, 224x224, single crop"),
}
COUNTS = {
    "swin_t": Counts(params=28_288_354, macs=4_490_566_656,  source="torchvision swin_t (params and GMACs)"),
    "swin_s": Counts(params=49_606_258, macs=8_740_875_264,  source="torchvision swin_s (params and GMACs)"),
    "swin_b": Counts(params=87_768_224, macs=15_430_946_816, source="torchvision swin_b (params and GMACs)"),
}

# Added to the logits of query/key pairs from different regions of a shifted window (authors' code; torchvision).
MASK_VALUE = -100.0


def window_partition(x: Tensor, window: int) -> Tensor:
    """Split ``(B, H, W, C)`` into ``(B * nW, window * window, C)`` windows, row-major over the window grid."""
    B, H, W, C = x.shape
    x = x.view(B, H // window, window, W // window, window, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, C)


def window_reverse(windows: Tensor, window: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, window * window, C)`` -> ``(B, H, W, C)``."""
    C = windows.shape[-1]
    x = windows.view(-1, height // window, width // window, window, window, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, height, width, C)


def relative_position_index(window: int) -> Tensor:
    """``(N, N)`` index into the ``(2M - 1)^2``-row bias table for every query/key pair of an M x M window (§3.2).

    The offset (dy, dx) of query i from key j lies in [-(M-1), M-1]^2 and selects row (dy + M-1) * (2M-1) + dx + M-1.
    """
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    # (2, N): the (row, col) of each token of a window
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # (2, N, N), shifted to start at 0
    return rel[0] * (2 * window - 1) + rel[1]


def shifted_window_mask(
    height: int, width: int, window: int, shift: tuple[int, int], *, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """``(nW, N, N)`` additive mask for a cyclically shifted ``height x width`` grid: 0 within a region, else -100.

    After rolling the grid up/left by ``shift``, the last window along each axis holds tokens from opposite image
    borders (paper Fig. 4). Along an axis, rows [0, H - M) are ordinary windows, [H - M, H - s) the part of the last
    window that was not wrapped and [H - s, H) the wrapped part; a region is a pair of these bands.
    """

    def bands(size: int, s: int) -> Tensor:
        idx = torch.arange(size, device=device)
        if s == 0:
            return torch.zeros_like(idx)
        return (idx >= size - window).long() + (idx >= size - s).long()

    region = bands(height, shift[0])[:, None] * 3 + bands(width, shift[1])[None, :]  # (H, W)
    region = window_partition(region[None, :, :, None], window).squeeze(-1)  # (nW, N)
    different = region[:, :, None] != region[:, None, :]
    return torch.zeros(different.shape, dtype=dtype, device=device).masked_fill(different, MASK_VALUE)


class PatchEmbed(nn.Module):
    """Patch partition and linear embedding (§3.1) as one conv with kernel = stride = patch size, then LayerNorm."""

    def __init__(self, in_chans: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, H / p, W / p, D)
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """Concatenate each 2 x 2 group of tokens (4C), LayerNorm, Linear 4C -> 2C without bias (§3.1)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # (B, H, W, C) -> (B, ceil(H / 2), ceil(W / 2), 2C)
        H, W = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        # concatenation order of the authors' code (and torchvision), which the Linear's weight layout depends on
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class ShiftedWindowAttention(nn.Module):
    """(Shifted) window multi-head self-attention with a relative position bias, W-MSA / SW-MSA (§3.2).

    Args:
        shift_size: cyclic shift of the window partition; 0 for W-MSA, ``window_size // 2`` for SW-MSA.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        *,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads, self.window_size, self.shift_size = num_heads, window_size, shift_size
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        # derived from window_size, so not part of the state dict
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)

    def relative_position_bias(self) -> Tensor:
        """The bias B of Eq. 4, ``(heads, N, N)``, gathered from the learned table."""
        return self.relative_position_bias_table[self.relative_position_index].permute(2, 0, 1)

    def forward(self, x: Tensor, *, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """Output ``(B, H, W, C)`` and, if asked for, the weights ``(B, nW, heads, N, N)`` of the padded grid's windows.

        Windows are numbered row-major over the padded and (for SW-MSA) cyclically shifted grid; N = window_size^2.
        """
        B, H, W, C = x.shape
        M, heads = self.window_size, self.num_heads
        x = F.pad(x, (0, 0, 0, -W % M, 0, -H % M))
        Hp, Wp = x.shape[1:3]
        # no shift along an axis that one window covers: there is nothing to connect (torchvision's rule)
        shift = (self.shift_size if Hp > M else 0, self.shift_size if Wp > M else 0)
        if any(shift):
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        windows = window_partition(x, M)  # (B * nW, N, C)
        nW, N = windows.shape[0] // B, M * M
        q, k, v = self.qkv(windows).view(B * nW, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)  # 3 x (B*nW, h, N, d)
        bias = self.relative_position_bias()  # (h, N, N)
        if any(shift):
            mask = shifted_window_mask(Hp, Wp, M, shift, dtype=bias.dtype, device=bias.device)  # (nW, N, N)
            # fold windows into the head axis so one (1, nW * h, N, N) bias broadcasts over the batch without a copy
            bias = (bias + mask[:, None]).reshape(1, nW * heads, N, N)
            q, k, v = (t.reshape(B, nW * heads, N, C // heads) for t in (q, k, v))
        else:
            bias = bias[None]  # (1, h, N, N)
        out, weights = attend(
            q,
            k,
            v,
            bias=bias.to(q.dtype),
            scale=(C // heads) ** -0.5,
            dropout_p=self.attn_drop if self.training else 0.0,
            need_weights=need_weights,
        )
        out = out.reshape(B * nW, heads, N, C // heads).transpose(1, 2).reshape(B * nW, N, C)
        x = window_reverse(self.proj_drop(self.proj(out)), M, Hp, Wp)
        if any(shift):
            x = torch.roll(x, shifts=shift, dims=(1, 2))
        if weights is not None:
            weights = weights.reshape(B, nW, heads, N, N)
        return x[:, :H, :W].contiguous(), weights


class SwinBlock(nn.Module):
    """Pre-norm Swin block (Eq. 3): x + (S)W-MSA(LN(x)), then x + MLP(LN(x)), each branch with stochastic depth."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        *,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ShiftedWindowAttention(dim, num_heads, window_size, shift_size, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def _forward(self, x: Tensor, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        y, weights = self.attn(self.norm1(x), need_weights=need_weights)
        x = x + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, weights

    def forward(self, x: Tensor) -> Tensor:  # (B, H, W, C) -> (B, H, W, C)
        return self._forward(x, need_weights=False)[0]

    def forward_with_attention(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The block's output and its attention weights (see :meth:`ShiftedWindowAttention.forward`)."""
        out, weights = self._forward(x, need_weights=True)
        assert weights is not None
        return out, weights


class SwinStage(nn.Module):
    """Patch merging (stages 2-4, halving the grid and doubling the width) followed by blocks alternating W-MSA and
    SW-MSA."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        cfg: SwinConfig,
        *,
        downsample: bool,
        drop_paths: list[float],
    ) -> None:
        super().__init__()
        self.downsample = PatchMerging(dim // 2) if downsample else nn.Identity()
        self.blocks = nn.Sequential(
            *(
                SwinBlock(
                    dim,
                    num_heads,
                    cfg.window_size,
                    0 if i % 2 == 0 else cfg.window_size // 2,
                    mlp_ratio=cfg.mlp_ratio,
                    drop=cfg.drop_rate,
                    attn_drop=cfg.attn_drop_rate,
                    drop_path=drop_paths[i],
                )
                for i in range(depth)
            )
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, H, W, C / 2) -> (B, H / 2, W / 2, C), or (B, H, W, C) in stage 1
        return self.blocks(self.downsample(x))


class SwinTransformer(nn.Module):
    """Swin Transformer for classification: patch embedding, four stages, LayerNorm, global average pool, Linear.

    Args:
        cfg: the variant.
        num_classes: outputs of the head.
        in_chans: input channels.
    """

    def __init__(self, cfg: SwinConfig, *, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        if len(cfg.depths) != len(cfg.num_heads):
            raise ValueError(f"depths {cfg.depths} and num_heads {cfg.num_heads} differ in length")
        self.stem = PatchEmbed(in_chans, cfg.dim, cfg.patch_size)
        rates = drop_path_rates(cfg.drop_path_rate, cfg.depths)
        stages, start = [], 0
        for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.num_heads, strict=True)):
            stage = SwinStage(
                cfg.dim * 2**i, depth, heads, cfg, downsample=i > 0, drop_paths=rates[start : start + depth]
            )
            stages.append(stage)
            start += depth
        self.stages = nn.Sequential(*stages)
        self.num_features = cfg.dim * 2 ** (len(cfg.depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Truncated normal (std 0.02) Linear weights and relative-position tables, zero biases, LayerNorm (1, 0);
        the patch-embedding conv keeps PyTorch's default, as in the authors' ``_init_weights`` (and torchvision)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _init_linear(m)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, ShiftedWindowAttention):
                nn.init.trunc_normal_(m.relative_position_bias_table, std=0.02)

    def forward_features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, D)
        x = self.norm(self.stages(self.stem(x)))  # (B, H / 32, W / 32, D)
        return x.mean(dim=(1, 2))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.head(self.forward_features(x))

    def attention_maps(self, x: Tensor) -> list[Tensor]:
        """Attention weights of every block, in order, each ``(B, nW, heads, N, N)``.

        N = window_size^2 and nW counts the windows of that stage's grid after padding to a multiple of the window;
        for shifted blocks the windows are those of the cyclically shifted grid, so masked cross-region pairs show ~0.
        Call under ``torch.no_grad()`` for visualisation.
        """
        x = self.stem(x)
        maps = []
        for stage in self.stages:
            x = stage.downsample(x)
            for block in stage.blocks:
                x, weights = block.forward_with_attention(x)
                maps.append(weights)
        return maps

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised ``Linear(num_features, num_classes)``."""
        w = self.head.weight
        self.head = nn.Linear(self.num_features, num_classes, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            _init_linear(self.head)


def _init_linear(m: nn.Linear) -> None:
    nn.init.trunc_normal_(m.weight, std=0.02)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def query_rows(model: SwinTransformer, x: Tensor, pixel: tuple[float, float]) -> list[QueryMap]:
    """Every block's attention row for the token covering ``pixel``, moved from the block's padded, cyclically shifted
    windows back onto its grid of image tokens (see :func:`milestones.attention.query_attention`)."""
    attns = [m for m in model.modules() if isinstance(m, ShiftedWindowAttention)]
    grids = grids_seen(model, ShiftedWindowAttention, x)
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
        r, c = token_at(pixel, (x.shape[-2], x.shape[-1]), (h, wd))
        win, slot = (ids == r * wd + c).nonzero()[0].tolist()
        keys = ids[win]
        row = w[0, win, :, slot]  # (heads, N)
        dense = row.new_zeros(row.shape[0], h * wd)
        dense[:, keys[keys >= 0]] = row[:, keys >= 0]  # padded keys are left out
        design = "shifted window" if any(shift) else "window"
        out.append(QueryMap(i, stages[i], design, (h, wd), (r, c), dense.view(-1, h, wd)))
    return out


TRAITS = Traits(convolutional=False, cam_layer=last_stage, attention=query_rows, feature_layout="NHWC")


@register_variants(
    VARIANTS,
    paper=PAPER,
    traits=TRAITS,
    reported=REPORTED,
    counts=COUNTS,
    small_input=(3, 64, 64),  # grids 16, 8, 4, 2: padding and the shift mask in stage 1, padding in stages 3-4
)
def swin(cfg: SwinConfig, *, num_classes: int = 1000, in_chans: int = 3) -> SwinTransformer:
    """Build a Swin Transformer variant; every :class:`SwinConfig` field is a ``create_model`` option too."""
    return SwinTransformer(cfg, num_classes=num_classes, in_chans=in_chans)


# a v1 block's parameters under torchvision's names: features.<odd index>.<block>.<name>; anything else (e.g. v2's
# logit_scale and cpb_mlp) is rejected rather than half-loaded
_TV_BLOCK_KEY = (
    r"features\.(\d*[13579])\.(\d+)\."
    r"(norm[12]\.(?:weight|bias)|attn\.(?:qkv|proj)\.(?:weight|bias)|attn\.relative_position_bias_table"
    r"|mlp\.[03]\.(?:weight|bias))"
)


@register_converter("swin_t", "swin_t")
@register_converter("swin_s", "swin_s")
@register_converter("swin_b", "swin_b")
def from_torchvision(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Map a torchvision ``swin_t`` / ``swin_s`` / ``swin_b`` state dict onto ours.

    torchvision keeps everything in one ``features`` Sequential: index 0 is the patch embedding (conv, permute,
    LayerNorm), odd indices are the stages' blocks and even indices >= 2 the patch merging before the next stage.
    Its ``relative_position_index`` buffers are dropped: ours are recomputed from ``window_size``.
    """
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        if key.endswith("attn.relative_position_index"):
            continue
        if m := re.fullmatch(r"features\.0\.([02])\.(weight|bias)", key):
            new = f"stem.{'proj' if m[1] == '0' else 'norm'}.{m[2]}"
        elif m := re.fullmatch(_TV_BLOCK_KEY, key):
            rest = m[3].replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
            new = f"stages.{(int(m[1]) - 1) // 2}.blocks.{m[2]}.{rest}"
        elif m := re.fullmatch(r"features\.(\d*[02468])\.((?:norm|reduction)\.(?:weight|bias))", key):
            new = f"stages.{int(m[1]) // 2}.downsample.{m[2]}"
        elif re.fullmatch(r"(norm|head)\.(weight|bias)", key):
            new = key
        else:
            raise CheckpointError(f"unexpected key {key!r} in a torchvision Swin (v1) state dict")
        out[new] = value
    return out
