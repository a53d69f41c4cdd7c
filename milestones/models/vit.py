"""Vision Transformer: "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale".
Dosovitskiy, Beyer, Kolesnikov, Weissenborn, Zhai, Unterthiner, Dehghani, Minderer, Heigold, Gelly, Uszkoreit,
Houlsby. ICLR 2021. arXiv:2010.11929. Ti/16 and S/16 are the DeiT widths (Touvron et al., ICML 2021,
arXiv:2012.12877). GMACs are at 224x224.

| variant  | L / D / MLP / heads   | params paper | params ours | GMACs ours | top-1 err paper                         |
|----------|-----------------------|--------------|-------------|------------|-----------------------------------------|
| vit_ti16 | 12 / 192 / 768 / 3    | 5M (DeiT)    | 5,717,416   | 1.254      | 27.8 (DeiT Table 5, IN-1k, 224)         |
| vit_s16  | 12 / 384 / 1536 / 6   | 22M (DeiT)   | 22,050,664  | 4.599      | 20.2 (DeiT Table 5, IN-1k, 224)         |
| vit_b16  | 12 / 768 / 3072 / 12  | 86M          | 86,567,656  | 17.56      | 22.09 (Table 5, IN-1k pre-train, 384)   |
| vit_b32  | 12 / 768 / 3072 / 12  | -            | 88,224,232  | 4.409      | 26.62 (Table 5, IN-1k pre-train, 384)   |
| vit_l16  | 24 / 1024 / 4096 / 16 | 307M         | 304,326,632 | 61.55      | 23.47 (Table 5, IN-1k pre-train, 384)   |
| vit_l32  | 24 / 1024 / 4096 / 16 | -            | 306,535,400 | 15.38      | 28.84 (Table 5, IN-1k pre-train, 384)   |
| vit_h14  | 32 / 1280 / 5120 / 16 | 632M         | 632,045,800 | 167.3      | 11.45 (Table 2, JFT-300M, 518)          |

Parameter counts equal torchvision's ``vit_*`` builders (and timm's with a 1000-class head). GMACs are
``torch.utils.flop_counter`` multiply-adds on the meta device, where SDPA decomposes into two counted batched
matmuls (on CPU tensors the fused SDPA kernel is not counted); they equal torchvision's 17.564 / 4.409 / 61.555 for
B/16, B/32, L/16 by the same counter (PAPERS.md).
Errors are 100 - top-1 as printed: Table 5 (Appendix C) gives 77.91 / 73.38 / 76.53 / 71.16 for B/16, B/32, L/16,
L/32 pre-trained on ImageNet-1k alone; Table 2 gives 88.55 +- 0.04 for H/14 (JFT-300M, 518 px, Polyak averaging).

Differences from the paper (and the official ``vit_jax`` code):
  * L/16 has 304.3M parameters against Table 1's 307M; torchvision and timm count the same 304,326,632.
  * Position embeddings are resized with bicubic interpolation (torchvision's ``interpolate_embeddings``:
    ``align_corners=True``), not the official code's bilinear ``scipy.ndimage.zoom``; see :func:`resize_pos_embed`.
  * q, k and v are one fused ``qkv`` Linear (as torchvision and timm) rather than three DenseGeneral layers; each
    third is Xavier-initialised on its own (D, D) shape, so the init matches the official per-projection Xavier.
  * ``drop_path_rate`` (stochastic depth, DeiT's regulariser) is an extra option, off by default.
  * ``residual=False`` (an ablation, not in the paper; the ``skip-connections`` experiment) removes the two skips of
    every block: a block computes MLP(LN(MSA(LN(x)))) instead of Eq. 2-3. The LayerNorms stay where they were, in
    front of each sublayer, so every sublayer still sees normalised input, and the encoder's final LN is kept.
  * Ti/16 and S/16 are not in the ViT paper: their widths come from the official ``vit_jax`` configs and their numbers
    from DeiT, which trains them with a different recipe (and stochastic depth 0.1). DeiT prints Ti as "5M" (5.72M),
    so REPORTED leaves its params out rather than fail the 5% rounding check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import ConfigError
from ._attention import QueryMap, token_at
from ._layers import DropPath, Mlp, attend, drop_path_rates
from ._registry import Counts, PaperRef, Reported, Traits, last_stage, register_converter, register_variants

PAPER = PaperRef(
    "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale",
    "Dosovitskiy, Beyer, Kolesnikov, Weissenborn, Zhai, Unterthiner, Dehghani, Minderer, Heigold, Gelly, Uszkoreit, "
    "Houlsby",
    2021,
    venue="ICLR",
    arxiv="2010.11929",
)

Size2 = int | tuple[int, int]


@dataclass(frozen=True)
class ViTConfig:
    """One ViT variant. Widths and dropout follow ``vit_jax/configs/models.py``.

    Args:
        patch_size: side of the square patches (or ``(h, w)``); the patch embedding is a conv with kernel = stride.
        dim: token width D.
        depth: number of encoder blocks.
        num_heads: attention heads per block.
        mlp_ratio: MLP hidden width / D (4 for every paper variant).
        classifier: ``"token"`` (class token, the paper's default) or ``"gap"`` (mean of the normed tokens, App. D.3).
        representation_size: width of the optional pre-logits Linear + tanh (used for ImageNet-21k / JFT
            pre-training and dropped at fine-tuning); ``None`` for none.
        drop_rate: dropout after the position embedding, inside the MLP and after attention (0.1 for L/16 and H/14).
        attn_drop_rate: dropout on the attention weights (0 in every official config).
        drop_path_rate: stochastic depth at the last block, linear from 0 (not in the paper; DeiT uses 0.1).
        residual: keep the skips around attention and MLP (Eq. 2-3); ``False`` is the no-skip ablation, which has the
            same parameters (stochastic depth needs the skip, so it must then be 0).
    """

    patch_size: Size2
    dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    classifier: Literal["token", "gap"] = "token"
    representation_size: int | None = None
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    residual: bool = True


# fmt: off
VARIANTS = {
    "vit_ti16": ViTConfig(patch_size=16, dim=192,  depth=12, num_heads=3),
    "vit_s16":  ViTConfig(patch_size=16, dim=384,  depth=12, num_heads=6),
    "vit_b16":  ViTConfig(patch_size=16, dim=768,  depth=12, num_heads=12),
    "vit_b32":  ViTConfig(patch_size=32, dim=768,  depth=12, num_heads=12),
    "vit_l16":  ViTConfig(patch_size=16, dim=1024, depth=24, num_heads=16, drop_rate=0.1),
    "vit_l32":  ViTConfig(patch_size=32, dim=1024, depth=24, num_heads=16),
    "vit_h14":  ViTConfig(patch_size=14, dim=1280, depth=32, num_heads=16, drop_rate=0.1),
}
_TABLE5 = "Table 5 (App. C), ImageNet-1k pre-training, fine-tuned at 384"
_DEIT = "DeiT (arXiv:2012.12877) Table 5, ImageNet-1k, 224"
REPORTED = {
    "vit_ti16": Reported(top1_err=27.8, source=f"{_DEIT}; Table 1 prints 5M params"),
    "vit_s16":  Reported(params_m=22, top1_err=20.2, source=f"DeiT Table 1 params; {_DEIT}"),
    "vit_b16":  Reported(params_m=86, top1_err=22.09, source=f"Table 1 params; {_TABLE5}"),
    "vit_b32":  Reported(top1_err=26.62, source=_TABLE5),
    "vit_l16":  Reported(params_m=307, top1_err=23.47, source=f"Table 1 params; {_TABLE5}"),
    "vit_l32":  Reported(top1_err=28.84, source=_TABLE5),
    "vit_h14":  Reported(params_m=632, top1_err=11.45,
                         source="Table 1 params; Table 2, JFT-300M pre-training, fine-tuned at 518, mean of 3 runs"),
}
COUNTS = {
    "vit_ti16": Counts(params=5_717_416,   macs=1_253_683_200,   source="timm vit_tiny_patch16_224"),
    "vit_s16":  Counts(params=22_050_664,  macs=4_598_882_304,   source="timm vit_small_patch16_224"),
    "vit_b16":  Counts(params=86_567_656,  macs=17_563_828_224,  source="torchvision vit_b_16"),
    "vit_b32":  Counts(params=88_224_232,  macs=4_409_186_304,   source="torchvision vit_b_32"),
    "vit_l16":  Counts(params=304_326_632, macs=61_554_712_576,  source="torchvision vit_l_16"),
    "vit_l32":  Counts(params=306_535_400, macs=15_377_539_072,  source="torchvision vit_l_32"),
    "vit_h14":  Counts(params=632_045_800, macs=167_295_109_120, source="torchvision vit_h_14"),
}
# fmt: on


def _pair(x: Size2) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


def resize_pos_embed(
    pos_embed: Tensor,
    new_grid: Size2,
    *,
    old_grid: Size2 | None = None,
    num_prefix_tokens: int = 1,
    align_corners: bool = True,
    antialias: bool = False,
) -> Tensor:
    """Resize learned position embeddings to a new patch grid with bicubic interpolation.

    The prefix (class-token) embeddings are kept as they are; the grid part is reshaped to ``(1, D, h, w)``,
    interpolated and flattened back in row-major order. The defaults reproduce torchvision's
    ``interpolate_embeddings`` (bicubic, ``align_corners=True``); timm's ``resample_abs_pos_embed`` is
    ``align_corners=False, antialias=True``. The official code zooms bilinearly (PAPERS.md §2.6), so resized models are
    not bit-identical across libraries. Resizing to the same grid returns the input unchanged (up to float rounding).

    Args:
        pos_embed: ``(1, num_prefix_tokens + h * w, D)``.
        new_grid: target ``(h, w)`` in patches (an int means square).
        old_grid: source ``(h, w)``; inferred when the source grid is square.
        num_prefix_tokens: leading embeddings that are not grid positions (1 with a class token, 0 for GAP).
        align_corners: passed to ``F.interpolate``.
        antialias: passed to ``F.interpolate`` (only matters when shrinking).

    Returns:
        ``(1, num_prefix_tokens + new_h * new_w, D)``.
    """
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    n, dim = grid.shape[1], grid.shape[2]
    if old_grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"cannot infer the grid of {n} position embeddings; pass old_grid=(h, w)")
        old_grid = (side, side)
    old_h, old_w = _pair(old_grid)
    if old_h * old_w != n:
        raise ValueError(f"old_grid {old_h}x{old_w} does not hold {n} position embeddings")
    new_h, new_w = _pair(new_grid)
    grid = grid.reshape(1, old_h, old_w, dim).permute(0, 3, 1, 2)  # (1, D, h, w)
    # Interpolate in float32: bicubic on half precision is not implemented on every device.
    grid = F.interpolate(
        grid.float(), size=(new_h, new_w), mode="bicubic", align_corners=align_corners, antialias=antialias
    ).to(pos_embed.dtype)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_h * new_w, dim)
    return torch.cat([prefix, grid], dim=1)


def _lecun_normal_(weight: Tensor, fan_in: int) -> None:
    """flax's ``lecun_normal``: a normal truncated at two standard deviations, rescaled to variance 1 / fan_in.

    ``nn.init.trunc_normal_``'s default cut-offs are absolute (+-2), which is no truncation at these scales.
    """
    std = math.sqrt(1 / fan_in) / 0.87962566103423978  # std of a unit normal truncated to [-2, 2]
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


class Attention(nn.Module):
    """Multi-head self-attention (paper Eq. 5-8) through :func:`attend` (SDPA unless weights are asked for)."""

    def __init__(self, dim: int, num_heads: int, *, attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)  # [q; k; v] stacked, the layout of torchvision's in_proj_weight
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, d_head)
        out, weights = attend(q, k, v, dropout_p=self.attn_drop if self.training else 0.0, need_weights=need_weights)
        out = out.transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        return self.proj_drop(self.proj(out)), weights


class Block(nn.Module):
    """Pre-norm Transformer encoder block: x + MSA(LN(x)), then x + MLP(LN(x)) (paper Eq. 2-3).

    With ``residual=False`` the skips are gone and the block is the composition MLP(LN(MSA(LN(x)))).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.residual = residual
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)  # flax's default eps, kept by the official code
        self.attn = Attention(dim, num_heads, attn_drop=attn_drop, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.drop_path = DropPath(drop_path)

    def _forward(self, x: Tensor, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        y, weights = self.attn(self.norm1(x), need_weights=need_weights)
        if not self.residual:
            return self.mlp(self.norm2(y)), weights
        x = x + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, weights

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D) -> (B, N, D)
        return self._forward(x, need_weights=False)[0]

    def forward_with_attention(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The block's output and its ``(B, heads, N, N)`` attention weights."""
        out, weights = self._forward(x, need_weights=True)
        assert weights is not None
        return out, weights


class VisionTransformer(nn.Module):
    """ViT: patch embedding, [class token], learned 1-D position embeddings, pre-norm encoder, LN, head.

    Checkpoint keys: ``stem`` (patch-embedding conv), ``cls_token``, ``pos_embed``, ``stages`` (one entry per encoder
    block: ViT is isotropic, so each block is a stage for per-stage hooks), ``norm``, ``pre_logits`` (optional) and
    ``head``. A state dict whose ``pos_embed`` was built for another grid is resized on load (see
    :meth:`_load_from_state_dict`).

    Args:
        cfg: the variant.
        num_classes: outputs of the head.
        in_chans: input channels.
        img_size: input ``(H, W)`` (an int means square); both must be multiples of the patch size.
    """

    def __init__(self, cfg: ViTConfig, *, num_classes: int = 1000, in_chans: int = 3, img_size: Size2 = 224) -> None:
        super().__init__()
        self.cfg = cfg
        self.img_size, self.patch_size = _pair(img_size), _pair(cfg.patch_size)
        if any(s % p for s, p in zip(self.img_size, self.patch_size, strict=True)):
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_prefix_tokens = 1 if cfg.classifier == "token" else 0
        if cfg.classifier not in ("token", "gap"):
            raise ValueError(f"classifier must be 'token' or 'gap', got {cfg.classifier!r}")
        if not cfg.residual and cfg.drop_path_rate:
            raise ConfigError(f"drop_path_rate={cfg.drop_path_rate} drops residual branches, but residual=False "
                              "removed them; set drop_path_rate=0")
        dim = cfg.dim

        # Linear projection of flattened patches (Eq. 1) written as a conv with kernel = stride = patch.
        self.stem = nn.Conv2d(in_chans, dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if self.num_prefix_tokens else None
        num_tokens = self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, dim))
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        rates = drop_path_rates(cfg.drop_path_rate, [cfg.depth])
        self.stages = nn.Sequential(
            *(
                Block(
                    dim,
                    cfg.num_heads,
                    mlp_ratio=cfg.mlp_ratio,
                    drop=cfg.drop_rate,
                    attn_drop=cfg.attn_drop_rate,
                    drop_path=r,
                    residual=cfg.residual,
                )
                for r in rates
            )
        )
        self.num_features = dim
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        rep = cfg.representation_size
        self.pre_logits = nn.Linear(dim, rep) if rep else None
        self.head = nn.Linear(rep or dim, num_classes)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """The official ``vit_jax`` initialisation (``models_vit.py``, PAPERS.md §2.6).

        Patch embedding and pre-logits: LeCun normal (flax's Dense/Conv default), zero bias. Attention q, k, v and
        output projections: Xavier uniform, zero bias. MLP: Xavier uniform, bias N(0, 1e-6). Position embeddings
        N(0, 0.02) "from BERT"; class token zero; LayerNorm (1, 0); head weight and bias zero.
        """
        _lecun_normal_(self.stem.weight, self.stem.weight[0].numel())
        nn.init.zeros_(self.stem.bias)
        if self.cls_token is not None:
            nn.init.zeros_(self.cls_token)
        nn.init.normal_(self.pos_embed, std=0.02)
        for block in self.stages:
            # Xavier on each of q, k, v separately: the official code has three (D, D) kernels, and Xavier on the
            # fused (3D, D) matrix would give a smaller bound (fan_out 3D).
            for w in block.attn.qkv.weight.chunk(3, dim=0):
                nn.init.xavier_uniform_(w)
            nn.init.zeros_(block.attn.qkv.bias)
            nn.init.xavier_uniform_(block.attn.proj.weight)
            nn.init.zeros_(block.attn.proj.bias)
            for fc in (block.mlp.fc1, block.mlp.fc2):
                nn.init.xavier_uniform_(fc.weight)
                nn.init.normal_(fc.bias, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.pre_logits is not None:
            _lecun_normal_(self.pre_logits.weight, self.pre_logits.in_features)
            nn.init.zeros_(self.pre_logits.bias)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _embed(self, x: Tensor) -> Tensor:
        """Patches, class token and position embeddings: (B, C, H, W) -> (B, N, D) (paper Eq. 1)."""
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(
                f"input is {tuple(x.shape[-2:])} but the model was built for img_size={self.img_size}; "
                "build it for this size (the position embeddings are resized when a state dict is loaded)"
            )
        x = self.stem(x).flatten(2).transpose(1, 2)  # (B, D, h, w) -> (B, h*w, D), row-major patches
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.pos_drop(x + self.pos_embed)

    def _pool(self, x: Tensor) -> Tensor:
        """Encoder LN, then the class token or the mean of all tokens: (B, N, D) -> (B, D) (paper Eq. 4, App. D.3)."""
        x = self.norm(x)
        return x[:, 0] if self.cfg.classifier == "token" else x.mean(dim=1)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> pooled, normed features (B, D), before the pre-logits layer and the head."""
        return self._pool(self.stages(self._embed(x)))

    def forward_head(self, features: Tensor) -> Tensor:
        """(B, D) -> (B, num_classes): the optional pre-logits Linear + tanh, then the classifier."""
        if self.pre_logits is not None:
            features = torch.tanh(self.pre_logits(features))
        return self.head(features)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> logits (B, num_classes)."""
        return self.forward_head(self.forward_features(x))

    def attention_maps(self, x: Tensor) -> list[Tensor]:
        """Softmax attention weights of every block, computed explicitly (the N x N matrices are materialised).

        Returns:
            One ``(B, num_heads, N, N)`` tensor per block, rows (queries) summing to 1, where
            ``N = num_prefix_tokens + h * w`` and index 0 is the class token when there is one. Dropout on the
            weights applies in training mode, so call ``eval()`` first for clean maps.
        """
        x = self._embed(x)
        maps = []
        for block in self.stages:
            x, weights = block.forward_with_attention(x)
            maps.append(weights)
        return maps

    def reset_classifier(self, num_classes: int, *, drop_pre_logits: bool = False) -> None:
        """Replace the head with a zero-initialised one (official fine-tuning init).

        Args:
            num_classes: outputs of the new head.
            drop_pre_logits: also remove the pre-logits layer, as the paper does when fine-tuning ("drop-head").
        """
        if drop_pre_logits:
            self.pre_logits = None
        ref = self.head.weight
        in_features = self.pre_logits.out_features if self.pre_logits is not None else self.num_features
        self.head = nn.Linear(in_features, num_classes, device=ref.device, dtype=ref.dtype)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Resize a ``pos_embed`` built for another grid with :func:`resize_pos_embed` before loading.

        Runs inside ``load_state_dict`` (strict or not), so a checkpoint trained at 224 loads into a model built for
        384 or 32. The source grid must be square unless resized beforehand with an explicit ``old_grid``.
        """
        key = prefix + "pos_embed"
        pos = state_dict.get(key)
        if pos is not None and pos.shape != self.pos_embed.shape and pos.shape[-1] == self.pos_embed.shape[-1]:
            state_dict[key] = resize_pos_embed(pos, self.grid_size, num_prefix_tokens=self.num_prefix_tokens)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def query_rows(model: VisionTransformer, x: Tensor, pixel: tuple[float, float]) -> list[QueryMap]:
    """Every block's attention row for the token covering ``pixel``: global attention over the whole grid, the class
    token dropped (see :func:`milestones.attention.query_attention`)."""
    gh, gw = model.grid_size
    r, c = token_at(pixel, model.img_size, (gh, gw))
    prefix = model.num_prefix_tokens
    out = []
    for i, w in enumerate(model.attention_maps(x)):  # (B, heads, prefix + N, prefix + N)
        row = w[0, :, prefix + r * gw + c, prefix:]  # the query's row, class token dropped
        out.append(QueryMap(i, 0, "global", (gh, gw), (r, c), row.reshape(-1, gh, gw)))
    return out


def _cam_layer(model: VisionTransformer) -> str:
    # The next-to-last block: the last block's patch tokens never reach the class token the head reads, so their
    # gradient is zero. Without a class token (global average pooling) the last block is fine.
    return last_stage(model, skip_last=1 if model.num_prefix_tokens else 0)


TRAITS = Traits(convolutional=False, cam_layer=_cam_layer, explain="rollout", attention=query_rows)


@register_variants(
    VARIANTS,
    paper=PAPER,
    traits=TRAITS,
    reported=REPORTED,
    counts=COUNTS,
    input_size=(3, 224, 224),
    # Tests run a tiny image (1-4 patches). L and H keep their width, heads and patch but only 2 of their 24/32
    # identical blocks: the full 304M/632M-parameter models need 2.5-5 GB for weights and gradients and ~20-40 s to
    # build on one CPU core. Their exact counts are checked at full depth on the meta device.
    small={
        name: {"img_size": cfg.patch_size * 2, **({"depth": 2} if cfg.depth > 12 else {})}
        for name, cfg in VARIANTS.items()
    },
    small_input={name: (3, cfg.patch_size * 2, cfg.patch_size * 2) for name, cfg in VARIANTS.items()},
)
def vit(cfg: ViTConfig, *, num_classes: int = 1000, in_chans: int = 3, img_size: Size2 = 224) -> VisionTransformer:
    """Build a Vision Transformer.

    Args:
        cfg: the variant (``patch_size``, ``depth``, ``classifier``, ``representation_size``, ``drop_rate``,
            ``attn_drop_rate`` and ``drop_path_rate`` can be overridden through ``create_model``, e.g.
            ``create_model("vit_s16", img_size=32, patch_size=4)`` for CIFAR-10).
        num_classes: outputs of the head.
        in_chans: input channels.
        img_size: input size, an int or ``(H, W)``; must be a multiple of the patch size.
    """
    return VisionTransformer(cfg, num_classes=num_classes, in_chans=in_chans, img_size=img_size)


@register_converter("vit_h_14", "vit_h14")
@register_converter("vit_l_32", "vit_l32")
@register_converter("vit_l_16", "vit_l16")
@register_converter("vit_b_32", "vit_b32")
@register_converter("vit_b_16", "vit_b16")
def from_torchvision(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision ``vit_b_16`` / ``vit_b_32`` / ``vit_l_16`` / ``vit_l_32`` / ``vit_h_14`` keys -> ours.

    The tensors are shared, not copied. torchvision's ``vit_h_14`` SWAG weights were fine-tuned at 518: build the
    target with ``img_size=518``.
    """
    renames = {
        "conv_proj.": "stem.",
        "class_token": "cls_token",
        "encoder.pos_embedding": "pos_embed",
        "encoder.ln.": "norm.",
        "heads.pre_logits.": "pre_logits.",
        "heads.head.": "head.",
    }
    block = {
        "ln_1.": "norm1.",
        "ln_2.": "norm2.",
        "self_attention.in_proj_weight": "attn.qkv.weight",
        "self_attention.in_proj_bias": "attn.qkv.bias",
        "self_attention.out_proj.": "attn.proj.",
        "mlp.0.": "mlp.fc1.",
        "mlp.3.": "mlp.fc2.",
    }
    out = {}
    for key, value in sd.items():
        new = key
        if key.startswith("encoder.layers.encoder_layer_"):
            index, rest = key.removeprefix("encoder.layers.encoder_layer_").split(".", 1)
            for old, repl in block.items():
                if rest.startswith(old):
                    rest = repl + rest[len(old) :]
                    break
            new = f"stages.{index}.{rest}"
        else:
            for old, repl in renames.items():
                if key.startswith(old):
                    new = repl + key[len(old) :]
                    break
        out[new] = value
    return out
