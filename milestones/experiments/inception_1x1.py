"""``inception-1x1``: what do GoogLeNet's 1x1 reductions and its average-pooling head buy?

Szegedy et al. 2015 (CVPR), §4-5, Figure 2 and Table 1: 1x1 convolutions "compute reductions before the expensive
3x3 and 5x5 convolutions" so that a 22-layer net with nine Inception modules stays within a budget of 1.5 G
multiply-adds and uses "12 times fewer parameters" than Krizhevsky et al.'s AlexNet; and "a move from fully
connected layers to average pooling improved the top-1 accuracy by about 0.6%".

Mostly counting, on the ``meta`` device (free at any size): every Inception module at its Table 1 input with and
without its 1x1 reductions, the whole network against AlexNet and VGG-16, and the FC head's cost. Then two short
CIFAR-10 runs of the same GoogLeNet with the paper's average-pool head and with an FC head.

"Without reductions" (``reductions=False``): the 3x3 and 5x5 convolutions read the module's full input; the pool
projection stays, so each module keeps its Table 1 output width and the rest of the net is unchanged. The paper's
"naive" module (Figure 2a) also drops the pool projection, so its output grows by the input width at every module;
its per-module cost is given as a column, not as a network.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..measure import count_macs, count_params
from ..models import create_model
from ..models.googlenet import INCEPTION, STEM_CHANNELS, Inception
from ..train.callbacks import StepMetrics
from . import plots
from .base import EPYC_BF16, Analysis, Context, Experiment, Figure, Measured, RunSpec, Setup, register

PAPER_PARAMS_M = 6.8  # the sum of Table 1's params column
PAPER_RATIO = 12  # "12 times fewer parameters than" AlexNet (§1)
PAPER_HEAD_GAIN = 0.6  # top-1 points, average pooling over FC layers (§5)
GRIDS_224 = (28, 14, 7)  # Inception 3x, 4x, 5x grids at 224x224 (Table 1)

MODES: dict[str, dict[str, Any]] = {
    "quick": {"kwargs": {"stem": "cifar16"}, "img": 32,
              "overrides": {"train.epochs": 2, "data.train_subset": 5000, "data.test_subset": 2000}, "seeds": [0]},
    "full": {"kwargs": {}, "img": 32, "overrides": {}, "seeds": [0, 1, 2]},
    "smoke": {"kwargs": {"stem": "cifar16"}, "img": 32, "seeds": [0],
              "overrides": {"train.epochs": 1, "data.train_subset": 256, "data.test_subset": 200,
                            "data.batch_size": 64}},
}


def setup(mode: str) -> Setup:
    m = MODES[mode]
    kwargs = {f"model.kwargs.{k}": v for k, v in m["kwargs"].items()}
    runs = [RunSpec("head-gap", "googlenet", recipe="cifar10_googlenet", overrides=kwargs,
                    callbacks=lambda: [StepMetrics()]),
            RunSpec("head-fc", "googlenet", recipe="cifar10_googlenet",
                    overrides={**kwargs, "model.kwargs.head": "fc", "model.kwargs.img_size": m["img"]},
                    callbacks=lambda: [StepMetrics()])]
    notes = ["Counts: the paper's net (`googlenet`: biased convolutions, no BN) on the `meta` device at 224x224; "
             "MACs are `torch.utils.flop_counter` multiply-adds (convolutions and linear layers).",
             "Training: the shipped recipe `cifar10_googlenet` (CIFAR stem, batch norm after every convolution, SGD "
             "nesterov lr 0.1 one-cycle, label smoothing 0.1, crop + flip) for both heads. `head-fc` flattens the "
             "final 1024-channel maps into an FC-1024 + ReLU before the same dropout (40%) and classifier: the paper "
             "does not say what its FC head was, so we use the FC width of its own auxiliary heads."]
    if mode == "quick":
        notes += ["**Shrunk:** the 16x16-grid CIFAR stem (`stem=cifar16`, as the `quick` compare suite: 5b works at "
                  "4x4, so the FC head reads 4x4x1024 = 16,384 values), 2 epochs on a class-balanced 5,000-image "
                  "subset, test on 2,000 images, one seed. `head-gap` has the settings of the quick compare suite's "
                  "GoogLeNet run, which reached 34.75% there (docs/compare/quick, 2 torch threads, so not "
                  "bit-identical): a measure of the run-to-run spread at this scale."]
    elif mode == "smoke":
        notes += ["Smoke test: 256 images, one epoch; the numbers mean nothing."]
    else:
        notes += ["Full: the recipe's 32x32-grid CIFAR stem and its 20 epochs on all of CIFAR-10, three seeds "
                  "(a 0.6-point difference needs several seeds to see)."]
    return Setup(runs=runs, overrides=m["overrides"], seeds=m["seeds"], notes=notes)


def module_costs() -> list[dict[str, Any]]:
    """Params and MACs of every Inception module at its Table 1 input (224x224 net), with and without the 1x1
    reductions, and the naive Figure 2a module (no reductions, no pool projection) and its output width."""
    rows, in_ch = [], STEM_CHANNELS[-1]
    for grid, table in zip(GRIDS_224, INCEPTION, strict=True):
        for name, c1, r3, c3, r5, c5, pp in table:
            cost = {}
            for reductions in (True, False):
                with torch.device("meta"):
                    block = Inception(in_ch, c1, r3, c3, r5, c5, pp, reductions=reductions)
                cost[reductions] = (count_params(block), count_macs(block, (in_ch, grid, grid)))
            proj = (in_ch * pp + pp, in_ch * pp * grid * grid)  # the pool projection's weights+bias, its MACs
            rows.append({"module": name, "input": f"{in_ch}x{grid}x{grid}",
                         "params": cost[True][0], "macs": cost[True][1],
                         "params_nored": cost[False][0], "macs_nored": cost[False][1],
                         "params_naive": cost[False][0] - proj[0], "macs_naive": cost[False][1] - proj[1],
                         "out": c1 + c3 + c5 + pp, "out_naive": c1 + c3 + c5 + in_ch})
            in_ch = c1 + c3 + c5 + pp
    return rows


def network_costs() -> dict[str, dict[str, float]]:
    """Whole networks at their ImageNet input: GoogLeNet (paper, without reductions, with an FC head), AlexNet,
    VGG-16; and GoogLeNet's depth in layers with parameters."""
    out = {}
    for key, name, kwargs, size in (("googlenet", "googlenet", {}, 224),
                                    ("googlenet, no 1x1 reductions", "googlenet", {"reductions": False}, 224),
                                    ("googlenet, FC head", "googlenet", {"head": "fc"}, 224),
                                    ("alexnet", "alexnet", {}, 227), ("vgg16", "vgg16", {}, 224)):
        with torch.device("meta"):
            model = create_model(name, **kwargs)
            out[key] = {"params": count_params(model), "macs": count_macs(model, (3, size, size))}
    with torch.device("meta"):
        g = create_model("googlenet")
    stem_convs = sum(1 for n, _ in g.stem.named_children() if n.startswith("conv"))
    modules = sum(isinstance(m, Inception) for m in g.modules())
    out["googlenet"]["layers"] = stem_convs + 2 * modules + 1  # each module is two layers deep, plus the classifier
    return out


def _m(n: float) -> str:
    return f"{n / 1e6:.2f}M"


def _mm(n: float) -> str:
    return f"{n / 1e6:,.0f}"


def analyse(ctx: Context) -> Analysis:
    mods = ctx.cached("module_costs", module_costs)
    nets = ctx.cached("network_costs", network_costs)
    rows: list[dict[str, Any]] = []
    for r in mods:
        rows.append({"what": f"Inception {r['module']}", "input (C x H x W)": r["input"], "params": _m(r["params"]),
                     "params without 1x1": _m(r["params_nored"]), "x params": round(r["params_nored"] / r["params"], 2),
                     "MMACs": _mm(r["macs"]), "MMACs without 1x1": _mm(r["macs_nored"]),
                     "x MACs": round(r["macs_nored"] / r["macs"], 2),
                     "out channels (naive Fig. 2a)": f"{r['out']} ({r['out_naive']})"})
    g, nr = nets["googlenet"], nets["googlenet, no 1x1 reductions"]
    rows.append({"what": "all nine modules", "params": _m(sum(r["params"] for r in mods)),
                 "params without 1x1": _m(sum(r["params_nored"] for r in mods)),
                 "x params": round(sum(r["params_nored"] for r in mods) / sum(r["params"] for r in mods), 2),
                 "MMACs": _mm(sum(r["macs"] for r in mods)),
                 "MMACs without 1x1": _mm(sum(r["macs_nored"] for r in mods)),
                 "x MACs": round(sum(r["macs_nored"] for r in mods) / sum(r["macs"] for r in mods), 2)})
    rows.append({"what": f"GoogLeNet, {g['layers']} layers", "input (C x H x W)": "3x224x224",
                 "params": _m(g["params"]),
                 "params without 1x1": _m(nr["params"]), "x params": round(nr["params"] / g["params"], 2),
                 "MMACs": _mm(g["macs"]), "MMACs without 1x1": _mm(nr["macs"]),
                 "x MACs": round(nr["macs"] / g["macs"], 2)})
    for key, size, shown in (("googlenet, FC head", 224, "GoogLeNet, FC head"), ("alexnet", 227, "AlexNet"),
                             ("vgg16", 224, "VGG-16")):
        rows.append({"what": shown, "input (C x H x W)": f"3x{size}x{size}", "params": _m(nets[key]["params"]),
                     "MMACs": _mm(nets[key]["macs"])})
    acc: dict[str, float] = {}
    curves = {}
    n_test = 0
    for spec in ctx.setup.runs:
        outs = [o for o in ctx.runs(spec.label) if o.summary is not None]
        failed = [o for o in ctx.runs(spec.label) if o.summary is None]
        row: dict[str, Any] = {"what": f"CIFAR-10 run `{spec.label}`"}
        if outs:
            s = outs[0].summary
            accs = [100 * o.summary["final_test_acc"] for o in outs]
            acc[spec.label] = sum(accs) / len(accs)
            n_test = _n_test(ctx)
            row.update({"input (C x H x W)": "3x32x32", "params": _m(s["params"]), "MMACs": _mm(s["macs"]),
                        "test acc %": _mean_std(accs), "img/s": round(sum(o.summary["img_per_s"] for o in outs)
                                                                       / len(outs))})
            steps = ctx.records(outs[0], "step_metrics")
            epochs = ctx.records(outs[0], "epoch")
            curves[spec.label] = ([r["step"] for r in steps], [100 * r["error"] for r in steps],
                                  [(e["step"], 100 * (1 - e["test_acc"])) for e in epochs])
        if failed:
            row["test acc %"] = f"failed ({len(failed)} of {len(failed) + len(outs)})"
        rows.append(row)
    verdict, reason, findings = _verdict(g["params"], nets["alexnet"]["params"], nets["vgg16"]["params"],
                                         acc.get("head-gap"), acc.get("head-fc"), n_test, ctx.mode)
    findings.insert(0, _reduction_finding(mods, g, nr))
    figures = [Figure("module_costs.png", "Parameters and multiply-adds of each Inception module of the 224x224 net "
                      "with its 1x1 reductions (the paper's) and without them (pool projection kept); the factor "
                      "over each pair is the cost without over the cost with.", _module_figure(mods))]
    if curves:
        figures.append(Figure("heads_training.png", "CIFAR-10 training error per step (smoothed; thin: raw) and test "
                              "error per epoch (markers) with the paper's average-pool head and with an FC head.",
                              plots.error_panels(curves, ["head"])))
    columns = ["what", "input (C x H x W)", "params", "params without 1x1", "x params", "MMACs", "MMACs without 1x1",
               "x MACs", "out channels (naive Fig. 2a)", "test acc %", "img/s"]
    rows = [{c: r.get(c) for c in columns} for r in rows]  # every row has every column (results.csv)
    return Analysis(rows=rows, verdict=verdict, reason=reason[:1].upper() + reason[1:], columns=columns,
                    findings=findings, figures=figures)


def _n_test(ctx: Context) -> int:
    """Test images the runs were scored on (the subset if one was set)."""
    return int(ctx.setup.overrides.get("data.test_subset") or 10_000)


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.2f} ± {std:.2f}"


def _reduction_finding(mods: list[dict[str, Any]], g: dict[str, float], nr: dict[str, float]) -> str:
    worst = max(mods, key=lambda r: r["macs_nored"] / r["macs"])
    naive_out = [r["out_naive"] for r in mods]
    return (f"The 1x1 reductions are where the budget comes from: without them the nine modules cost "
            f"{sum(r['params_nored'] for r in mods) / sum(r['params'] for r in mods):.1f}x the parameters and "
            f"{sum(r['macs_nored'] for r in mods) / sum(r['macs'] for r in mods):.1f}x the multiply-adds "
            f"(worst: {worst['module']}, {worst['macs_nored'] / worst['macs']:.1f}x), and the whole net grows from "
            f"{g['params'] / 1e6:.2f}M parameters and {g['macs'] / 1e9:.2f} GMACs to {nr['params'] / 1e6:.1f}M and "
            f"{nr['macs'] / 1e9:.2f} GMACs, far past the paper's 1.5 G budget. The naive module of Figure 2a would in "
            f"addition pass its whole input through the pool branch, so widths would compound from module to module "
            f"(already {naive_out[0]} channels out of 3a instead of {mods[0]['out']}).")


def _verdict(googlenet: float, alexnet: float, vgg16: float, acc_gap: float | None, acc_fc: float | None,
             n_test: int, mode: str) -> tuple[str, str, list[str]]:
    """Three parts: the ~6.8M count, the "12x fewer than AlexNet" ratio, and the average-pool head's gain (resolved
    only if the gap between the heads exceeds two standard errors of a difference of two accuracies on n_test)."""
    count_ok = abs(googlenet / 1e6 - PAPER_PARAMS_M) / PAPER_PARAMS_M < 0.05
    ratio = alexnet / googlenet
    ratio_ok = ratio >= PAPER_RATIO * 0.9
    findings = [
        f"GoogLeNet has {googlenet / 1e6:.2f}M parameters ({'within 5% of' if count_ok else 'not within 5% of'} "
        f"the ~{PAPER_PARAMS_M}M that Table 1 adds up to): {alexnet / googlenet:.1f}x fewer than AlexNet "
        f"({alexnet / 1e6:.1f}M) and {vgg16 / googlenet:.1f}x fewer than VGG-16 ({vgg16 / 1e6:.1f}M). The paper's "
        f"'12 times fewer' would need about {alexnet / PAPER_RATIO / 1e6:.1f}M; even Table 1's own sum gives "
        f"{alexnet / (PAPER_PARAMS_M * 1e6):.1f}x.",
    ]
    head = "not run"
    if acc_gap is not None and acc_fc is not None:
        diff = acc_gap - acc_fc
        p = (acc_gap + acc_fc) / 200
        se = 100 * math.sqrt(2 * p * (1 - p) / max(n_test, 1))
        head = "resolved" if abs(diff) > 2 * se else "within noise"
        findings.append(
            f"Average-pool head {acc_gap:.2f}% vs FC head {acc_fc:.2f}% test accuracy ({diff:+.2f} points; the paper: "
            f"+{PAPER_HEAD_GAIN} top-1 on ImageNet). On {n_test:,} test images two standard errors of the difference "
            f"are {2 * se:.1f} points, so this difference is {head}"
            + (f" and {'agrees' if diff > 0 else 'disagrees'} in sign with the paper." if head == "resolved" else
               "; a 0.6-point effect needs the full mode's whole test set and several seeds."))
    scale = " at this short CIFAR scale" if mode != "full" else " on CIFAR-10"
    if head == "resolved" and acc_gap is not None and acc_fc is not None and acc_gap < acc_fc:
        head_txt = f"the FC head did better{scale}, against the paper's average-pool gain"
    elif head == "resolved":
        head_txt = f"the average-pool head did better{scale}, as in the paper"
    else:
        head_txt = f"the heads' accuracy difference is {head}{scale}"
    count_txt = (f"the ~7M-parameter count holds ({googlenet / 1e6:.2f}M)" if count_ok
                 else f"the parameter count is off ({googlenet / 1e6:.2f}M vs ~{PAPER_PARAMS_M}M)")
    ratio_txt = f"AlexNet has {ratio:.1f}x as many parameters, {'as' if ratio_ok else 'not the 12x'} the paper says"
    reason = f"{count_txt}; {ratio_txt}; {head_txt}."
    if count_ok and ratio_ok and head == "resolved" and (acc_gap or 0) > (acc_fc or 0):
        return "reproduced", reason, findings
    if count_ok:
        return "partly reproduced", reason, findings
    return "not reproduced", reason, findings


def _module_figure(mods: list[dict[str, Any]]) -> Any:
    """Per module, with and without the 1x1 reductions, the ratio written over each pair."""
    fig, axes = plots.panels(2, width=6.0)
    names = [r["module"] for r in mods]
    for ax, key, unit in ((axes[0], "params", "parameters (M)"), (axes[1], "macs", "multiply-adds (M)")):
        paper, nored = [r[key] / 1e6 for r in mods], [r[f"{key}_nored"] / 1e6 for r in mods]
        plots.bars(names, {"with 1x1 reductions (paper)": paper, "without (pool projection kept)": nored}, unit,
                   ax=ax)
        for i, (a, b) in enumerate(zip(paper, nored, strict=True)):
            ax.text(i + 0.2, b, f"{b / a:.1f}x", ha="center", va="bottom", fontsize=7)
        ax.set_xlabel("Inception module (224x224 net)")
        ax.set_title(f"{unit.split(' ')[0]} per module")
    fig.tight_layout()
    return fig


EXPERIMENT = register(Experiment(
    name="inception-1x1",
    question="What do GoogLeNet's 1x1 reductions and its average-pooling head buy?",
    claim="1x1 convolutions compute reductions before the expensive 3x3 and 5x5 convolutions, so the 22-layer net "
          "keeps a 1.5 G multiply-add budget with 12 times fewer parameters than AlexNet (Table 1 sums to ~6.8M); "
          "moving from fully connected layers to average pooling improved top-1 accuracy by about 0.6%.",
    source="Szegedy et al., CVPR 2015, §1, §4-5, Figure 2, Table 1",
    # 249 s alone on the 2-core AMD EPYC with avx512_bf16, 2 threads, bf16 by auto
    measured={"quick": Measured(5, EPYC_BF16)},
    full_cost="2 heads x 3 seeds x 20 epochs of CIFAR-10 at the 32x32-grid stem: about 2 GPU-hours",
    setup=setup,
    analyse=analyse,
))
