"""``attention-cost``: how does the cost of attention grow with the number of tokens, for global attention (ViT),
windows (Swin) and cross-shaped stripes (CSWin)?

Nothing is trained. For ViT-B/16, Swin-T and CSWin-T at a range of input sizes, ``analyse`` measures one attention
layer (the first block's: qkv projection, attention, output projection, and CSWin's LePE) and the whole network:
multiply-adds from the project's counter (``torch.utils.flop_counter`` on the meta device, attention through its
explicit matmuls), and wall time and peak memory of a forward pass and of a forward+backward pass, each with PyTorch's
fused ``scaled_dot_product_attention`` and with the explicit softmax(QK^T)V (``explicit_attention``). A least-squares
line through log(cost) against log(tokens) gives each design's growth exponent.

Per layer the costs have closed forms (N = hw tokens of width C; Swin §3.2 Eq. 1-2 for the first two; the third is
our count of the CSWin layer as built, two branches of C/2 channels):

* global: 4NC^2 + 2N^2 C (exponent -> 2),
* window M x M: 4NC^2 + 2M^2 NC (exponent 1),
* cross-shaped, stripe width sw: NC(4C + sw(h + w)) + 9NC for LePE (exponent -> 1.5: a stripe spans the whole grid).

The native layers differ in width (768, 96, 64) and token grid (patch 16 against 4), so a "matched" layer of each
design at CSWin-T's first stage (C = 64, 2 heads, the h x w = (S/4)^2 grid) is counted at every size and measured at
the sizes where global attention fits (a CPU holds its explicit N x N weights up to about 6,400 tokens). The verdict
reads the matched layers and the whole networks. The figure of attended tokens reads the weights the models' own
forward passes compute (:func:`milestones.attention.query_attention`).
"""

from __future__ import annotations

import gc
import math
import re
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from ..attention import ATTENDED, query_attention
from ..bench import PeakMemory
from ..measure import count_macs
from ..models import create_model, explicit_attention, get_spec
from ..models.cswin import CSWinBlock
from ..models.swin import ShiftedWindowAttention
from ..models.vit import Attention
from . import plots
from .base import EPYC_BF16, Analysis, Context, Experiment, Figure, Measured, Setup, register

DESIGNS = {"vit_b16": "global", "swin_t": "window", "cswin_t": "cross-shaped"}
SHORT = {"vit_b16": "ViT-B/16", "swin_t": "Swin-T", "cswin_t": "CSWin-T"}
PASSES = ("fwd", "fwd+bwd")
PATHS = ("sdpa", "explicit")
# CSWin-T's first stage, where every design is counted at the same width and token grid
MATCHED = {"dim": 64, "heads": 2, "window": 7, "sw": 1}

# Top-1 on ImageNet-1k at the GMACs the papers print ("FLOPs" in the papers are multiply-adds).
PAPER_ACCURACY = [
    {"model": "cswin_t", "top1": 82.7, "gmacs": 4.3, "size": 224, "source": "CSWin (Dong et al. 2022) Table 2"},
    {"model": "swin_t", "top1": 81.3, "gmacs": 4.5, "size": 224,
     "source": "Swin (Liu et al. 2021) Table 1(a); CSWin Table 2"},
    {"model": "vit_b16", "top1": 77.9, "gmacs": None, "size": 384,
     "source": "ViT (Dosovitskiy et al. 2021) Table 5: 77.91, ImageNet-1k only, fine-tuned at 384"},
]

_SMOKE_SHRINK = {"vit_b16": {"depth": 1}, "swin_t": {"depths": (1, 2, 1, 1)}, "cswin_t": {"depths": (1, 1, 1, 1)}}
MODES: dict[str, dict[str, Any]] = {
    "quick": {"count": (224, 384, 512, 768, 1024, 1536, 2048),
              "layer": {"vit_b16": (224, 384, 512, 768), "swin_t": (224, 384, 512, 768, 1024),
                        "cswin_t": (224, 384, 512, 768, 1024)},
              "matched": {m: (128, 192, 256, 320) for m in DESIGNS},
              "network": {m: (224, 384, 512) for m in DESIGNS}, "reps": {"layer": 3, "matched": 3, "network": 2},
              "shrink": {}},
    "full": {"count": (224, 384, 512, 768, 1024, 1280, 1536, 2048),
             "layer": {m: (224, 384, 512, 768, 1024, 1280, 1536, 2048) for m in DESIGNS},
             "matched": {m: (128, 224, 384, 512, 768, 1024) for m in DESIGNS},
             "network": {m: (224, 384, 512, 768, 1024, 1280, 1536, 2048) for m in DESIGNS},
             "reps": {"layer": 10, "matched": 10, "network": 5}, "shrink": {}},
    "smoke": {"count": (64, 128), "layer": {m: (64, 128) for m in DESIGNS},
              "matched": {m: (64, 128) for m in DESIGNS},
              "network": {m: (64, 128) for m in DESIGNS}, "reps": {"layer": 1, "matched": 1, "network": 1},
              "shrink": _SMOKE_SHRINK},
}
SCOPES = ("layer", "matched", "network")
SCOPE_TITLE = {"layer": "one attention layer", "matched": "matched layers (C=64)", "network": "whole network"}
FIGURE_SIZE, FIGURE_PIXEL = 224, (100, 100)  # the attended-tokens figure: a 224 image, the token over pixel (100, 100)


def growth_exponent(tokens: Sequence[float], costs: Sequence[float]) -> float:
    """Slope of the least-squares line through (log tokens, log cost): cost ~ tokens^slope."""
    pairs = [(math.log(n), math.log(c)) for n, c in zip(tokens, costs, strict=True) if c and c > 0]
    if len(pairs) < 2:
        return float("nan")
    mx = statistics.fmean(x for x, _ in pairs)
    my = statistics.fmean(y for _, y in pairs)
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    return sum((x - mx) * (y - my) for x, y in pairs) / sxx if sxx > 0 else float("nan")


def closed_form_macs(design: str, h: int, w: int, dim: int, *, window: int = 7, sw: int = 1) -> int:
    """Multiply-adds of one attention layer (qkv, attention, projection) on an h x w grid, per the module docstring.
    Window attention assumes windows tile the grid (no padding)."""
    n = h * w
    if design == "global":
        return 4 * n * dim**2 + 2 * n * n * dim
    if design == "window":
        return 4 * n * dim**2 + 2 * window**2 * n * dim
    if design == "cross-shaped":
        return n * dim * (4 * dim + sw * (h + w)) + 9 * n * dim
    raise ValueError(f"unknown design {design!r}")


class CrossShapedLayer(nn.Module):
    """The attention part of a :class:`CSWinBlock` (qkv, both stripe branches with LePE, projection), as a module:
    the block runs it inline between its LayerNorm and residual."""

    def __init__(self, block: CSWinBlock) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: Tensor) -> Tensor:  # (B, H, W, C) -> (B, H, W, C)
        q, k, v = self.block.qkv(x).chunk(3, dim=-1)
        width = x.shape[-1] // len(self.block.attns)
        outs = [attn(q[..., i * width:(i + 1) * width], k[..., i * width:(i + 1) * width],
                     v[..., i * width:(i + 1) * width])[0] for i, attn in enumerate(self.block.attns)]
        return self.block.proj(torch.cat(outs, dim=-1))


class _FirstOutput(nn.Module):
    """A ViT or Swin attention module, returning its output without the (absent) weights."""

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.attn = attn

    def forward(self, x: Tensor) -> Tensor:
        return self.attn(x)[0]


def attention_layer(model: nn.Module, name: str) -> nn.Module:
    """The first block's attention layer of a built ViT, Swin or CSWin model, as a module of one tensor."""
    if name.startswith("vit"):
        return _FirstOutput(model.stages[0].attn)
    if name.startswith("swin"):
        return _FirstOutput(model.stages[0].blocks[0].attn)
    return CrossShapedLayer(model.stages[0].blocks[0])


def first_layer(name: str) -> nn.Module:
    """The same layer as :func:`attention_layer` built on its own from the variant's config (PyTorch's default
    initialisation), so timing it does not build the whole network."""
    cfg = get_spec(name).config
    if name.startswith("vit"):
        return _FirstOutput(Attention(cfg.dim, cfg.num_heads))
    if name.startswith("swin"):
        return _FirstOutput(ShiftedWindowAttention(cfg.dim, cfg.num_heads[0], cfg.window_size, 0))
    return CrossShapedLayer(CSWinBlock(cfg.dim, cfg.num_heads[0], cfg.split_size[0], global_attention=False))


def layer_input_shape(name: str, size: int) -> tuple[int, ...]:
    """What the first block's attention receives for a ``size`` x ``size`` image (batch 1)."""
    if name.startswith("vit"):
        return (1, 1 + (size // 16) ** 2, 768)
    if name.startswith("swin"):
        return (1, size // 4, size // 4, 96)
    g = (size + 2 * 2 - 7) // 4 + 1  # CSWin's 7x7 stride-4 conv embedding with padding 2
    return (1, g, g, 64)


def tokens(name: str, size: int) -> int:
    """Tokens entering the first block (ViT: patches + class token; Swin and CSWin: the stage-1 grid)."""
    shape = layer_input_shape(name, size)
    return shape[1] if name.startswith("vit") else shape[1] * shape[2]


def scope_tokens(scope: str, name: str, size: int) -> int:
    """The x axis: tokens entering the first block, or the matched layers' (S/4)^2 grid."""
    return (size // 4) ** 2 if scope == "matched" else tokens(name, size)


def matched_layer(design: str) -> nn.Module:
    """One layer of ``design`` at CSWin-T's first-stage width, heads and stripe width (and Swin's M = 7)."""
    dim, heads = MATCHED["dim"], MATCHED["heads"]
    if design == "global":
        return _FirstOutput(Attention(dim, heads))
    if design == "window":
        return _FirstOutput(ShiftedWindowAttention(dim, heads, MATCHED["window"], 0))
    return CrossShapedLayer(CSWinBlock(dim, heads, MATCHED["sw"], global_attention=False))


def _matched_input(design: str, size: int) -> tuple[int, ...]:
    g = size // 4
    return (1, g * g, MATCHED["dim"]) if design == "global" else (1, g, g, MATCHED["dim"])


def _build(name: str, size: int, shrink: dict[str, Any], device: str | torch.device) -> nn.Module:
    kwargs = {"img_size": size} if name != "swin_t" else {}
    with torch.device(device):
        model = create_model(name, **kwargs, **shrink.get(name, {}))
    return model.eval()


def _run(module: nn.Module, x: Tensor, backward: bool) -> None:
    if backward:
        module(x).float().sum().backward()
        for p in module.parameters():
            p.grad = None
    else:
        with torch.no_grad():
            module(x)


def count_pass(module: nn.Module, x: Tensor, backward: bool) -> int:
    """Multiply-adds of a forward (or forward+backward) pass, as the counter sees them on ``x``'s device."""
    module.eval()
    with explicit_attention(), FlopCounterMode(display=False) as counter:
        _run(module, x, backward)
    return counter.get_total_flops() // 2


def _counts(ctx: Context, name: str, size: int, shrink: dict[str, Any]) -> dict[str, Any]:
    """MACs of the native layer, the whole network and the matched layer of ``name``'s design at ``size``."""
    def compute() -> dict[str, Any]:
        model = _build(name, size, shrink, "meta")
        layer = attention_layer(model, name)
        x = torch.zeros(layer_input_shape(name, size), device="meta")
        with torch.device("meta"):
            matched = matched_layer(DESIGNS[name]).eval()
        xm = torch.zeros(_matched_input(DESIGNS[name], size), device="meta")
        return {
            "layer_fwd": count_pass(layer, x, False), "layer_fwd+bwd": count_pass(layer, x, True),
            "network_fwd": count_macs(model, (3, size, size)),
            "network_fwd+bwd": count_pass(model, torch.zeros(1, 3, size, size, device="meta"), True),
            "matched_fwd": count_pass(matched, xm, False), "matched_fwd+bwd": count_pass(matched, xm, True),
        }

    return ctx.cached(f"macs-{name}-{size}-{_shrink_tag(shrink, name)}", compute)


def _shrink_tag(shrink: dict[str, Any], name: str) -> str:
    """"full", or the shrink's overrides as a file-name-safe tag (``depths1-2-1-1``)."""
    if name not in shrink:
        return "full"
    return "-".join(k + re.sub(r"\D+", "-", str(v)).strip("-") for k, v in shrink[name].items())


def _timed(module: nn.Module, x: Tensor, *, backward: bool, path: str, reps: int,
           device: torch.device) -> dict[str, Any]:
    """Median wall seconds and largest peak-memory growth (bytes) over ``reps`` passes, after one warm-up pass."""
    def step() -> None:
        with explicit_attention(path == "explicit"):
            _run(module, x, backward)

    try:
        step()
        seconds, peaks = [], []
        for _ in range(reps):
            with PeakMemory(device) as mem:
                start = time.perf_counter()
                step()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds.append(time.perf_counter() - start)
            peaks.append(mem.bytes)
    except torch.OutOfMemoryError:
        for p in module.parameters():
            p.grad = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return {"ms": None, "mib": None, "status": "out of memory"}
    known = [p for p in peaks if p is not None]
    return {"ms": 1000 * statistics.median(seconds), "mib": max(known) / 2**20 if known else None, "status": "ok"}


def attention_matrix_bytes(scope: str, name: str, size: int, *, backward: bool, shrink: dict[str, Any]) -> int:
    """Rough bytes of the float32 N x N global-attention weights an explicit pass keeps alive: every block's when
    backpropagating (weights and softmax output are saved), one block's otherwise. Windows and stripes are small."""
    if scope == "matched":
        if DESIGNS[name] != "global":
            return 0
        n, heads, blocks = (size // 4) ** 2, MATCHED["heads"], 1
    elif name.startswith("vit"):
        cfg = get_spec(name).config
        n, heads = tokens(name, size), cfg.num_heads
        blocks = shrink.get(name, {}).get("depth", cfg.depth) if scope == "network" else 1
    else:
        return 0
    return 4 * heads * n * n * (2 * blocks if backward else 1)


def _available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            line = next(x for x in f if x.startswith("MemAvailable:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration, ValueError):
        return None


def _measure(ctx: Context, scope: str, name: str, size: int, shrink: dict[str, Any], reps: int,
             device: torch.device) -> dict[str, Any]:
    """Time and memory of ``scope`` ("layer", "matched" or "network") for both passes and both attention paths."""
    def compute() -> dict[str, Any]:
        torch.manual_seed(0)
        if scope == "layer":
            with torch.device(device):
                module = first_layer(name).eval()
            x = torch.randn(layer_input_shape(name, size), device=device)
        elif scope == "matched":
            with torch.device(device):
                module = matched_layer(DESIGNS[name]).eval()
            x = torch.randn(_matched_input(DESIGNS[name], size), device=device)
        else:
            module = _build(name, size, shrink, device)
            x = torch.randn(1, 3, size, size, device=device)
        out = {}
        for p in PASSES:
            for path in PATHS:
                backward = p == "fwd+bwd"
                # On a CPU an allocation that does not fit ends the process rather than raising: skip what cannot fit
                need = attention_matrix_bytes(scope, name, size, backward=backward, shrink=shrink)
                free = _available_bytes() if device.type == "cpu" else None
                if path == "explicit" and free is not None and need > free / 2:
                    out[f"{p}_{path}"] = {"ms": None, "mib": None, "status": "skipped: would not fit in memory"}
                    continue
                out[f"{p}_{path}"] = _timed(module, x, backward=backward, path=path, reps=reps, device=device)
        del module, x
        return out

    return ctx.cached(f"time-{device.type}-{scope}-{name}-{size}-{_shrink_tag(shrink, name)}-r{reps}", compute)


def setup(mode: str) -> Setup:
    m = MODES[mode]
    notes = [
        "Every number is a measurement of randomly initialised models (batch 1, float32, "
        "`eval()` so dropout and stochastic depth are off; the forward+backward pass backpropagates the sum of the "
        "outputs into every parameter).",
        "One attention layer = the first block's qkv projection, attention and output projection (CSWin: both "
        "stripe branches and LePE): ViT-B/16 C=768, 12 heads, (S/16)^2+1 tokens; Swin-T C=96, 3 heads, 7x7 windows "
        "on the (S/4)^2 grid; CSWin-T C=64, 2 heads, stripes of width 1 on the (S/4)^2 grid. Tokens on the x axis "
        "are those entering the first block, proportional to the image's pixels, so exponents against tokens and "
        "against pixels are the same.",
        "MACs: `torch.utils.flop_counter` on the meta device with explicit attention (the project's `count_macs` "
        "for the network's forward pass), halved; the backward pass is counted the same way. SDPA and explicit "
        "attention do the same multiply-adds.",
        "Wall time: median over the reps of one pass after a warm-up pass, on the machine below. Peak memory on a "
        "CPU: growth of the process's resident-set high-water mark (`VmHWM`, reset through "
        "`/proc/self/clear_refs`) over the pass, after freed heap pages are returned (`malloc_trim`); on CUDA "
        "`torch.cuda.max_memory_allocated` minus what was allocated before (`milestones.bench.PeakMemory`). It is "
        "what the pass needs beyond the weights and input: activations, saved tensors, gradients, workspaces.",
        f"Matched layers: each design at CSWin-T's first stage (C={MATCHED['dim']}, {MATCHED['heads']} heads, "
        f"(S/4)^2 tokens; Swin's M={MATCHED['window']}, CSWin's sw={MATCHED['sw']}, PyTorch's default "
        "initialisation), counted at every size and measured where global attention fits: the cleanest comparison "
        "of the three designs, with nothing but the attention pattern different. Grids that 7 x 7 windows do not "
        "tile are padded, as Swin does, and the padding is counted and timed.",
        f"Attended tokens: the models' own softmax weights (`milestones.attention.query_attention`) for the token "
        f"over pixel {FIGURE_PIXEL} of a {FIGURE_SIZE}x{FIGURE_SIZE} random image; no ImageNet weights are "
        "available here, so the weights inside each window are those of a random initialisation, but which tokens "
        "get any weight is the architecture's.",
        "OOM: the GPU ran out of memory; skipped: on a CPU, an explicit pass whose N x N attention weights would "
        "need more than half the free memory is not attempted (there, an allocation that does not fit ends the "
        "process instead of raising).",
        f"Sizes counted: {', '.join(map(str, all_sizes(m)))}; layer measured at "
        + "; ".join(f"{SHORT[k]} {', '.join(map(str, v))}" for k, v in m["layer"].items())
        + "; network measured at " + "; ".join(f"{SHORT[k]} {', '.join(map(str, v))}" for k, v in m["network"].items())
        + f"; matched layers measured at {', '.join(map(str, m['matched']['vit_b16']))}"
        + f"; reps {m['reps']['layer']} (layer), {m['reps']['matched']} (matched), {m['reps']['network']} (network).",
    ]
    if mode == "quick":
        notes.append("**Shrunk:** measured on the CPU, 2 reps per network pass and 3 per layer pass; the networks "
                     "are measured up to 512 px and the layers up to 1024 px (ViT-B/16's layer up to 768: its explicit "
                     "4,097 x 4,097 x 12-head attention at 1024 would need several GB on a shared machine); all sizes "
                     "up to 2048 are counted. `--mode full` measures every size up to 2048 on a GPU, where memory "
                     "allows.")
    elif mode == "smoke":
        notes.append("Smoke test: tiny sizes, ViT depth 1, Swin depths (1, 2, 1, 1), CSWin depths (1, 1, 1, 1), one "
                     "rep; the numbers mean nothing.")
    return Setup(runs=[], data=None, notes=notes)


def all_sizes(m: dict[str, Any]) -> list[int]:
    """Every input size a mode counts or measures: all are counted."""
    return sorted({*m["count"], *(s for scope in SCOPES for sizes in m[scope].values() for s in sizes)})


def scope_sizes(m: dict[str, Any], scope: str) -> list[int]:
    """The sizes a scope's rows and MAC curves cover: those counted and those it measures."""
    return sorted({*m["count"], *(s for sizes in m[scope].values() for s in sizes)})


def _fmt(v: float | None, digits: int = 3) -> str | None:
    if v is None:
        return None
    return f"{v:,.0f}" if abs(v) >= 10 ** digits else f"{v:.{digits}g}"


def analyse(ctx: Context) -> Analysis:
    m = MODES[ctx.mode]
    device = torch.device(ctx.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    counts = {(name, s): _counts(ctx, name, s, m["shrink"]) for name in DESIGNS for s in all_sizes(m)}
    # PeakMemory collects garbage before every pass; objects that exist now (modules, matplotlib) need no scanning
    gc.collect()
    gc.freeze()
    try:
        measured = {(scope, name, s): _measure(ctx, scope, name, s, m["shrink"], m["reps"][scope], device)
                    for scope in SCOPES for name in DESIGNS for s in m[scope][name]}
    finally:
        gc.unfreeze()
    rows = []
    for scope in SCOPES:
        for name in DESIGNS:
            for s in scope_sizes(m, scope):
                c = counts[(name, s)]
                r = measured.get((scope, name, s))
                row: dict[str, Any] = {
                    "scope": scope, "model": name if scope != "matched" else "-", "design": DESIGNS[name],
                    "size": s, "tokens": scope_tokens(scope, name, s),
                    "GMACs fwd": _fmt(c[f"{scope}_fwd"] / 1e9, 4),
                    "GMACs fwd+bwd": _fmt(c[f"{scope}_fwd+bwd"] / 1e9, 4),
                }
                for p in PASSES:
                    for path in PATHS:
                        cell = (r or {}).get(f"{p}_{path}", {})
                        missing = {"out of memory": "OOM"}.get(cell.get("status"), "skipped") if cell else None
                        row[f"ms {p} {path}"] = _fmt(cell.get("ms")) if cell.get("status") == "ok" else missing
                        row[f"MiB {p} {path}"] = _fmt(cell.get("mib")) if cell.get("status") == "ok" else missing
                rows.append(row)
    fits = _fits(counts, measured, m)
    verdict, reason, findings = _verdict(fits, counts, m)
    findings += _paper_findings(counts)
    figures = [
        Figure("attended_tokens.png", f"For the token over pixel {FIGURE_PIXEL} of a {FIGURE_SIZE}x{FIGURE_SIZE} "
               "image (red), the tokens it attends to (shaded: any head gives them weight) in ViT-B/16's first block "
               "(global), Swin-T's first stage-2 blocks (window, then shifted window) and CSWin-T's first stage-2 "
               "block (cross-shaped: vertical-stripe heads blue, horizontal-stripe heads orange), read from the "
               "models' own attention weights. Thin lines: Swin's window grid.",
               _attended_figure(ctx.cached(f"attended-{FIGURE_SIZE}-" + "-".join(
                   _shrink_tag(m["shrink"], n) for n in DESIGNS), lambda: attended_panels(m["shrink"])))),
        Figure("cost_vs_tokens.png", "Cost against tokens, log-log. Top: each model's first attention layer "
               "(tokens entering it); middle: the three designs at CSWin-T's first-stage width (C=64) on the same "
               "(S/4)^2 grid; bottom: the whole network (tokens entering its first block). Solid: SDPA; dashed: "
               "explicit attention. Grey guides: slopes 1, 1.5 and 2.",
               _cost_figure(counts, measured, m)),
        Figure("accuracy_vs_gmacs.png", "ImageNet-1k top-1 as the papers print it against GMACs: the papers' "
               "figures (open) and our counter's at the same input size (filled). ViT-B/16's 77.9% is at 384 px.",
               _accuracy_figure(counts)),
    ]
    columns = ["scope", "model", "design", "size", "tokens", "GMACs fwd", "GMACs fwd+bwd"] + [
        f"{unit} {p} {path}" for unit in ("ms", "MiB") for p in PASSES for path in PATHS]
    return Analysis(rows=rows, verdict=verdict, reason=reason, columns=columns, findings=findings, figures=figures)


def _series(counts: dict, measured: dict, m: dict, scope: str, name: str, metric: str) -> tuple[list, list]:
    """(tokens, values) of one curve: ``metric`` is "macs", or "ms"/"mib" with "_<pass>_<path>"."""
    xs, ys = [], []
    if metric == "macs":
        for s in scope_sizes(m, scope):
            xs.append(scope_tokens(scope, name, s))
            ys.append(counts[(name, s)][f"{scope}_fwd"])
        return xs, ys
    kind, p, path = metric.split("_")
    for s in m[scope][name]:
        cell = measured[(scope, name, s)][f"{p}_{path}"]
        if cell["status"] == "ok" and cell[kind] is not None:
            xs.append(scope_tokens(scope, name, s))
            ys.append(cell[kind])
    return xs, ys


def _fits(counts: dict, measured: dict, m: dict) -> dict[tuple[str, str, str], dict[str, float]]:
    """Exponents over all sizes and over the last two ("asymptotic") per scope, model and metric."""
    out = {}
    metrics = ["macs"] + [f"{k}_{p}_{path}" for k in ("ms", "mib") for p in PASSES for path in PATHS]
    for scope in SCOPES:
        for name in DESIGNS:
            for metric in metrics:
                xs, ys = _series(counts, measured, m, scope, name, metric)
                out[(scope, name, metric)] = {"all": growth_exponent(xs, ys), "last": growth_exponent(xs[-2:], ys[-2:])}
    return out


def _e(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.2f}"


def _verdict(fits: dict, counts: dict, m: dict) -> tuple[str, str, list[str]]:
    """Reproduced: the MACs of cross-shaped attention grow more slowly than global attention's (matched layers, last
    pair of sizes, and CSWin-T's whole network against ViT-B/16's) and so does its measured forward time (matched
    layers, SDPA). Partly: one of the two. Not reproduced: neither. Not testable: a series has fewer than two points."""
    f = fits
    g, w, x = "vit_b16", "swin_t", "cswin_t"  # global, window, cross-shaped
    matched = {n: f[("matched", n, "macs")]["last"] for n in DESIGNS}
    net_macs = {n: f[("network", n, "macs")]["all"] for n in DESIGNS}
    matched_ms = {n: f[("matched", n, "ms_fwd_sdpa")]["all"] for n in DESIGNS}
    findings = ["Growth exponents: slope of log cost against log tokens, least squares over the sizes measured "
                "('last': between the two largest)."]
    for scope in SCOPES:
        macs = ", ".join(f"{DESIGNS[n]} {_e(f[(scope, n, 'macs')]['all'])} (last {_e(f[(scope, n, 'macs')]['last'])})"
                         for n in DESIGNS)
        title = SCOPE_TITLE[scope][0].upper() + SCOPE_TITLE[scope][1:]
        findings.append(f"{title}, MACs: {macs}.")
        for kind, unit in (("ms", "time"), ("mib", "peak memory")):
            parts = []
            for n in DESIGNS:
                cells = [f"{p} {path} {_e(f[(scope, n, f'{kind}_{p}_{path}')]['all'])}"
                         for p in PASSES for path in PATHS]
                parts.append(f"{DESIGNS[n]}: " + ", ".join(cells))
            findings.append(f"{title}, {unit}: " + "; ".join(parts) + ".")
    findings.append("Closed forms per layer: global 4NC^2 + 2N^2C tends to exponent 2; windows 4NC^2 + 2M^2NC are "
                    "linear; cross-shaped NC(4C + sw(h+w)) tends to 1.5 because a stripe is as long as the grid. The "
                    "whole hierarchical networks end in a stage of global attention (CSWin-T's stage 4) or of windows "
                    "that cover it (Swin-T's), and their early stages' linear terms dominate at these sizes.")
    timed_sizes = {n: m["network"][n] for n in DESIGNS}
    macs_timed = {n: growth_exponent([tokens(n, s) for s in timed_sizes[n]],
                                     [counts[(n, s)]["network_fwd"] for s in timed_sizes[n]]) for n in DESIGNS}
    findings.append("Over the sizes the networks were timed at (" + "; ".join(
        f"{SHORT[n]} {', '.join(map(str, timed_sizes[n]))}" for n in DESIGNS) + "), their MAC exponents are "
        + ", ".join(f"{SHORT[n]} {_e(macs_timed[n])}" for n in DESIGNS) + " against forward-time (SDPA) exponents "
        + ", ".join(f"{SHORT[n]} {_e(f[('network', n, 'ms_fwd_sdpa')]['all'])}" for n in DESIGNS)
        + ": compare the measured networks with these, not with the exponents over all sizes counted.")
    values = [matched[g], matched[x], net_macs[g], net_macs[x], matched_ms[g], matched_ms[x]]
    if any(math.isnan(v) for v in values):
        return "not testable here", "fewer than two sizes were measured for a design", findings
    counted = matched[x] < matched[g] and net_macs[x] < net_macs[g]
    timed = matched_ms[x] < matched_ms[g]
    side = (f" It does not grow as slowly as Swin's windows (matched MAC exponent {_e(matched[x])} against "
            f"{_e(matched[w])}): a stripe spans the whole grid, so its length grows with the image side."
            if matched[w] < matched[x] else "")
    how = (f"matched layers: MAC exponent {_e(matched[x])} against global {_e(matched[g])}, forward time (SDPA) "
           f"{_e(matched_ms[x])} against {_e(matched_ms[g])}; whole network MACs: CSWin-T {_e(net_macs[x])} against "
           f"ViT-B/16 {_e(net_macs[g])}")
    acc = " The accuracy half of the claim is not testable here (no ImageNet)."
    if counted and timed:
        return ("reproduced", f"Cross-shaped attention's cost grows more slowly with the number of tokens than "
                f"global attention's, counted and timed ({how}).{side}{acc}", findings)
    if counted or timed:
        held = "in multiply-adds" if counted else "in measured time"
        return ("partly reproduced", f"Cross-shaped attention grows more slowly than global attention {held} only "
                f"({how}).{side}{acc}", findings)
    return ("not reproduced", f"Cross-shaped attention does not grow more slowly than global attention ({how}).{acc}",
            findings)


def _paper_findings(counts: dict) -> list[str]:
    out = []
    for p in PAPER_ACCURACY:
        size = p["size"]
        ours = counts.get((p["model"], size))
        ours_s = f"{ours['network_fwd'] / 1e9:.2f} GMACs" if ours else "not counted in this mode"
        paper = f"{p['gmacs']}G" if p["gmacs"] is not None else "no GMACs printed beside it"
        out.append(f"{SHORT[p['model']]}: {p['top1']}% top-1 at {paper} ({p['source']}); our counter at {size}: "
                   f"{ours_s}.")
    out.append("ViT-B/16's 17.6 GMACs is its cost at 224 (our counter: "
               + (f"{counts[('vit_b16', 224)]['network_fwd'] / 1e9:.2f}" if ('vit_b16', 224) in counts else "-")
               + "); its 77.9% was measured after fine-tuning at 384, so the two numbers do not belong together. "
               "PAPERS.md marks Table 5's figures as quoted from memory, to verify.")
    return out


def attended_panels(shrink: dict[str, Any]) -> list[dict[str, Any]]:
    """The four panels of the attended-tokens figure, JSON-able: title, design, grid, query and the masks of tokens
    with any weight (one per head group: CSWin's vertical- and horizontal-stripe heads apart)."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, FIGURE_SIZE, FIGURE_SIZE)
    maps = {name: query_attention(_build(name, FIGURE_SIZE, shrink, "cpu"), x, FIGURE_PIXEL) for name in DESIGNS}
    chosen = [("global: ViT-B/16, block 1", maps["vit_b16"][0]),
              ("window: Swin-T, stage 2", next(q for q in maps["swin_t"] if q.stage == 1 and q.design == "window")),
              ("shifted window: Swin-T, stage 2",
               next(q for q in maps["swin_t"] if q.stage == 1 and q.design == "shifted window")),
              ("cross-shaped: CSWin-T, stage 2 (sw=2)", next(q for q in maps["cswin_t"] if q.stage == 1))]
    panels = []
    for title, q in chosen:
        half = q.weights.shape[0] // 2
        groups = [q.weights[:half], q.weights[half:]] if q.design == "cross-shaped" else [q.weights]
        masks = [(g > ATTENDED).any(0).tolist() for g in groups]
        panels.append({"title": title, "design": q.design, "grid": list(q.grid), "query": list(q.query),
                       "masks": masks})
    return panels


def _attended_figure(panels: list[dict[str, Any]]) -> Any:
    import numpy as np

    plt = plots.pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    colours = {1: [(0.45, 0.7, 0.45)], 2: [(0.35, 0.55, 0.85), (0.95, 0.6, 0.25)]}
    for ax, panel in zip(axes, panels, strict=True):
        h, w = panel["grid"]
        img = np.ones((h, w, 3))
        masks = [np.array(mk, dtype=bool) for mk in panel["masks"]]
        for mask, colour in zip(masks, colours[len(masks)], strict=True):
            img[mask] = img[mask] * 0.35 + np.array(colour) * 0.65
        img[tuple(panel["query"])] = (0.85, 0.1, 0.1)
        ax.imshow(img, interpolation="nearest")
        if panel["design"] in ("window", "shifted window"):
            for t in range(0, h + 1, 7):
                ax.axhline(t - 0.5, color="0.6", lw=0.5)
            for t in range(0, w + 1, 7):
                ax.axvline(t - 0.5, color="0.6", lw=0.5)
        n = int(np.logical_or.reduce(masks).sum())
        ax.set_title(f"{panel['title']}\n{n} of {h * w} tokens ({h}x{w} grid)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def _cost_figure(counts: dict, measured: dict, m: dict) -> Any:
    plt = plots.pyplot()
    cols = [("macs", "GMACs (forward)", 1e-9), ("ms_fwd", "ms, forward", 1.0), ("ms_fwd+bwd", "ms, forward+backward",
                                                                              1.0),
            ("mib_fwd", "peak MiB, forward", 1.0), ("mib_fwd+bwd", "peak MiB, forward+backward", 1.0)]
    fig, axes = plt.subplots(len(SCOPES), len(cols), figsize=(4.2 * len(cols), 3.7 * len(SCOPES)), squeeze=False)
    for r, scope in enumerate(SCOPES):
        for c, (metric, label, scale) in enumerate(cols):
            ax = axes[r, c]
            for i, name in enumerate(DESIGNS):
                colour = f"C{i}"
                if metric == "macs":
                    xs, ys = _series(counts, measured, m, scope, name, "macs")
                    ax.plot(xs, [y * scale for y in ys], "o-", color=colour, ms=3, label=_label(scope, name))
                    continue
                for path, style in (("sdpa", "o-"), ("explicit", "s--")):
                    xs, ys = _series(counts, measured, m, scope, name, f"{metric}_{path}")
                    if xs:
                        ax.plot(xs, ys, style, color=colour, ms=3, label=f"{_label(scope, name)} {path}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            _guides(ax)
            ax.set_xlabel("tokens")
            ax.set_title(f"{SCOPE_TITLE[scope]}: {label}", fontsize=9)
            ax.grid(True, which="both", alpha=0.25)
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def _label(scope: str, name: str) -> str:
    return DESIGNS[name] if scope == "matched" else SHORT[name]


def _guides(ax: Any) -> None:
    """Grey lines of slope 1, 1.5 and 2 from the left edge of the drawn data, without changing the axis limits."""
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata())]
    if not lines:
        return
    xs = [float(v) for ln in lines for v in ln.get_xdata()]
    ys = [float(v) for ln in lines for v in ln.get_ydata()]
    x0, x1 = min(xs), max(xs)
    y0 = math.sqrt(min(ys) * max(ys))  # start mid-height (geometric), so every guide crosses the panel
    ylim = ax.get_ylim()
    for slope, style in ((1.0, "-"), (1.5, "--"), (2.0, ":")):
        ax.plot([x0, x1], [y0, y0 * (x1 / x0) ** slope], style, color="0.7", lw=0.8, zorder=0)
    ax.set_ylim(ylim)


def _accuracy_figure(counts: dict) -> Any:
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, p in enumerate(PAPER_ACCURACY):
        colour = f"C{list(DESIGNS).index(p['model'])}"
        ours = counts.get((p["model"], p["size"]))
        if p["gmacs"] is not None:
            ax.plot(p["gmacs"], p["top1"], "o", mfc="none", color=colour, ms=9, label=f"{SHORT[p['model']]} paper")
        if ours:
            ax.plot(ours["network_fwd"] / 1e9, p["top1"], "o", color=colour, ms=6,
                    label=f"{SHORT[p['model']]} ours @{p['size']}")
            ax.annotate(f"{SHORT[p['model']]} {p['top1']}%", (ours["network_fwd"] / 1e9, p["top1"]),
                        textcoords="offset points", xytext=(6, -10 if i else 6), fontsize=8)
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([2, 3, 4, 5, 7, 10, 20, 30, 50, 70, 100]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("GMACs per image (forward)")
    ax.set_ylabel("ImageNet-1k top-1 (%), as printed")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


EXPERIMENT = register(Experiment(
    name="attention-cost",
    question="Does cross-shaped window attention's cost grow more slowly with the number of tokens than global "
             "attention's?",
    claim="\"[G]lobal self-attention is very expensive to compute whereas local self-attention often limits the field "
          "of interactions of each token\"; cross-shaped windows attend in horizontal and vertical stripes \"while "
          "limiting the computation cost\", and CSWin-T reaches 82.7% ImageNet top-1 at 4.3G FLOPs against Swin-T's "
          "81.3% at 4.5G.",
    source="Dong et al., CVPR 2022, abstract and Table 2; Liu et al., ICCV 2021, §3.2 Eq. 1-2",
    # the committed report's run on the 2-core AMD EPYC, load average under 2: 188 s wall
    measured={"quick": Measured(4, EPYC_BF16)},
    full_cost="every size from 224 to 2048 measured for the three networks and their layers on one GPU (not yet run; "
              "estimated 10-20 minutes)",
    setup=setup,
    analyse=analyse,
))
