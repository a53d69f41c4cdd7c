"""``googlenet-aux``: why did GoogLeNet's auxiliary classifiers help, and why did they not stick around?

Szegedy et al. 2015 (CVPR), §5: two auxiliary classifiers on Inception 4a and 4d add their losses, weighted 0.3, during
training ("expected to ... increase the gradient signal that gets propagated back") and are discarded at inference.
Szegedy et al. 2016 (Inception v3), §4: they "did not result in improved convergence early in the training"; near the
end the net with them reaches a slightly higher plateau, so they "act as regularizer", and batch-normalising the
auxiliary head improved top-1 by 0.4% (Table 3). Batch norm (Ioffe & Szegedy 2015) arrived in between and later
families (ResNet, Inception v4) dropped the heads.

We train GoogLeNet with and without the auxiliary heads, each with and without batch norm after every convolution,
log the main head's per-step training error and the gradient norm reaching the stem's first convolution and the
final classifier, and compare early training, gradient flow and final accuracy at an equal budget.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from ..train.callbacks import GradNorms, StepMetrics
from . import plots
from .base import EPYC_BF16, Analysis, Context, Experiment, Figure, Measured, RunSpec, Setup, register

AUX_WEIGHT = 0.3  # paper §5
FIRST = "stem.conv1.conv.weight"  # the first convolution's weights, with and without batch norm
TOP = "head.weight"  # the main classifier
EARLY_MARGIN = 2.0  # points of mean training error that count as "faster early on"
CIFAR16 = {"model.kwargs.stem": "cifar16", "model.kwargs.aux_pool": "adaptive"}

MODES: dict[str, dict[str, Any]] = {
    "quick": {"model": CIFAR16, "seeds": [0],
              "overrides": {"train.epochs": 2, "data.train_subset": 2500, "data.test_subset": 1000,
                            "data.batch_size": 64, "optim.lr": 0.05}},
    "full": {"model": {}, "seeds": [0, 1], "overrides": {}},
    "smoke": {"model": CIFAR16, "seeds": [0],
              "overrides": {"train.epochs": 1, "data.train_subset": 192, "data.test_subset": 100,
                            "data.batch_size": 64}},
}


def _label(bn: bool, aux: bool) -> str:
    return f"{'bn' if bn else 'nobn'}-{'aux' if aux else 'noaux'}"


def setup(mode: str) -> Setup:
    m = MODES[mode]
    runs = []
    for bn in (False, True):
        for aux in (False, True):
            overrides = {**m["model"], "model.kwargs.batch_norm": bn}
            if aux:
                overrides |= {"model.kwargs.aux_logits": True, "train.aux_loss_weight": AUX_WEIGHT}
            runs.append(RunSpec(_label(bn, aux), "googlenet", recipe="cifar10_googlenet", overrides=overrides,
                                callbacks=lambda: [StepMetrics(), GradNorms(every=1, only=["stem.", "head."])]))
    notes = ["The paper's GoogLeNet (`googlenet`: 5x5 branches, LRN in the stem, Caffe-replica initialisation without "
             "batch norm, torchvision's truncated-normal one with it), trained with the shipped recipe "
             "`cifar10_googlenet` (SGD nesterov one-cycle, weight decay 5e-4, label smoothing 0.1, crop + flip) for "
             "all four runs; only `batch_norm` (after every convolution, the auxiliary heads' convolution included; "
             "not their FC layer, which Inception v3's 'BN-auxiliary' also normalises) and the auxiliary heads "
             f"(loss weight {AUX_WEIGHT}) change.",
             "Training error is the main head's, on each batch before the step; gradient norms are taken before the "
             "optimiser step. With batch norm a convolution's gradient scales inversely with its weights' norm, so "
             "compare gradient norms within a row pair (with vs without aux heads), not across batch norm settings."]
    if mode == "quick":
        notes += ["**Shrunk:** the 16x16-grid CIFAR stem of the `quick` compare suite (`stem=cifar16`), so 4a and 4d "
                  "work at 8x8 and the auxiliary heads pool adaptively to 4x4 (`aux_pool=adaptive`, as torchvision) "
                  "instead of the paper's 5x5/3 pool; 2 epochs on a class-balanced 2,500-image subset at batch 64 "
                  "(lr 0.05, the recipe's 0.1 scaled to the batch): 78 steps; test on 1,000 images; one seed."]
    elif mode == "smoke":
        notes += ["Smoke test: 192 images, one epoch; the numbers mean nothing."]
    else:
        notes += ["Full: the recipe's 32x32-grid CIFAR stem (4a and 4d at 16x16, where the paper's 5x5/3 pool gives "
                  "its 4x4 grid) and 20 epochs on all of CIFAR-10, two seeds."]
    return Setup(runs=runs, overrides=m["overrides"], seeds=m["seeds"], notes=notes)


def run_stats(steps: list[dict[str, Any]], grads: list[dict[str, Any]]) -> dict[str, float]:
    """Mean training error (%) over the first half of the steps and over the last fifth, and the median gradient
    norms of the first convolution and the classifier over the first half and the whole run."""
    half = steps[: max(len(steps) // 2, 1)]
    tail = steps[-max(len(steps) // 5, 1):]
    g_half = grads[: max(len(grads) // 2, 1)]
    return {
        "early_err": 100 * statistics.fmean(r["error"] for r in half),
        "late_err": 100 * statistics.fmean(r["error"] for r in tail),
        "first_grad": statistics.median(g[FIRST] for g in grads),
        "first_grad_early": statistics.median(g[FIRST] for g in g_half),
        "top_grad": statistics.median(g[TOP] for g in grads),
    }


def analyse(ctx: Context) -> Analysis:
    rows, stats, acc = [], {}, {}
    curves, norms = {}, {}
    for spec in ctx.setup.runs:
        outs = [o for o in ctx.runs(spec.label) if o.summary is not None]
        bn, aux = spec.label.startswith("bn"), spec.label.endswith("-aux")
        row: dict[str, Any] = {"run": spec.label, "batch norm": "yes" if bn else "no", "aux heads": "yes" if aux
                               else "no"}
        failed = len(ctx.runs(spec.label)) - len(outs)
        if outs:
            o = outs[0]
            steps, grads = ctx.records(o, "step_metrics"), ctx.records(o, "grad_norms")
            s = stats[spec.label] = run_stats(steps, grads)
            accs = [100 * x.summary["final_test_acc"] for x in outs]
            acc[spec.label] = statistics.fmean(accs)
            row.update({
                "params (training)": f"{o.summary['params'] / 1e6:.2f}M",
                "img/s": round(statistics.fmean(x.summary["img_per_s"] for x in outs)),
                "train err % (first half)": round(s["early_err"], 1),
                "train err % (last 20%)": round(s["late_err"], 1),
                "test acc %": " / ".join(f"{a:.2f}" for a in accs),
                "grad norm first conv (median)": f"{s['first_grad']:.3g}",
                "grad norm classifier (median)": f"{s['top_grad']:.3g}",
            })
            curves[spec.label] = ([r["step"] for r in steps], [100 * r["error"] for r in steps],
                                  [(e["step"], 100 * (1 - e["test_acc"])) for e in ctx.records(o, "epoch")])
            norms[spec.label] = ([g["step"] for g in grads], [g[FIRST] for g in grads])
        row["status"] = f"{failed} failed" if failed else "ok"
        rows.append(row)
    n_test = int(ctx.setup.overrides.get("data.test_subset") or 10_000)
    verdict, reason, findings = _verdict(stats, acc, n_test, ctx.mode)
    figures = []
    if curves:
        figures.append(Figure("training_error.png", "Main-head training error per step (smoothed; thin: raw) and test "
                              "error per epoch (markers): without batch norm (left) and with (right), each with and "
                              "without the auxiliary heads.", plots.error_panels(curves, ["nobn", "bn"], window=10)))
        figures.append(Figure("first_conv_grad_norm.png", "Gradient norm of the first convolution's weights per step "
                              "(moving average of 5, log scale). Compare each colour pair within a batch norm "
                              "setting: batch norm rescales gradients by the weights' norm.",
                              plots.series(norms, "step", "gradient norm (first conv)", log=True, window=5)))
    columns = ["run", "batch norm", "aux heads", "params (training)", "img/s", "train err % (first half)",
               "train err % (last 20%)", "test acc %", "grad norm first conv (median)", "grad norm classifier (median)",
               "status"]
    rows = [{c: r.get(c) for c in columns} for r in rows]  # every row has every column (results.csv)
    return Analysis(rows=rows, verdict=verdict, reason=reason[:1].upper() + reason[1:], columns=columns,
                    findings=findings, figures=figures)


def _verdict(stats: dict[str, dict[str, float]], acc: dict[str, float], n_test: int,
             mode: str) -> tuple[str, str, list[str]]:
    """Inception v3's two observations, on the batch-norm pair: no faster early training with the aux heads (mean
    training error over the first half within ``EARLY_MARGIN`` points, or worse), and a higher final accuracy (resolved
    only beyond two standard errors of a difference of two accuracies on ``n_test`` images). The pair without batch
    norm shows what the heads were for in 2014: how much more gradient reaches the first layer."""
    if not all(k in stats for k in ("bn-aux", "bn-noaux")):
        return "not testable here", "the two batch-norm runs (with and without aux heads) must finish", []
    findings = []
    boost = {}
    for bn in ("nobn", "bn"):
        a, n = stats.get(f"{bn}-aux"), stats.get(f"{bn}-noaux")
        if a is None or n is None:
            continue
        boost[bn] = a["first_grad_early"] / n["first_grad_early"]
        findings.append(
            f"{'With' if bn == 'bn' else 'Without'} batch norm: training error over the first half "
            f"{a['early_err']:.1f}% with aux heads vs {n['early_err']:.1f}% without; at the end (last 20% of steps) "
            f"{a['late_err']:.1f}% vs {n['late_err']:.1f}%; the first convolution's gradient norm (median, first "
            f"half) is {boost[bn]:.2f}x as large with the heads"
            + (f"; test accuracy {acc[f'{bn}-aux']:.2f}% vs {acc[f'{bn}-noaux']:.2f}%."
               if f"{bn}-aux" in acc and f"{bn}-noaux" in acc else "."))
    if len(boost) == 2:
        more = boost["nobn"] > boost["bn"]
        findings.append(
            f"The heads add {'more' if more else 'no more'} gradient at the first layer without batch norm "
            f"({boost['nobn']:.2f}x) than with it ({boost['bn']:.2f}x)"
            + ("; with batch norm the main loss's gradient reaches the stem anyway" if more else
               "; the expected gap between the two settings does not show here")
            + (f", and the net learns without the heads ({acc['bn-noaux']:.1f}% test accuracy with batch norm, "
               f"{acc['nobn-noaux']:.1f}% without): the heads' first purpose is gone."
               if more and "bn-noaux" in acc and "nobn-noaux" in acc else "."))
    early = stats["bn-noaux"]["early_err"] - stats["bn-aux"]["early_err"]
    no_speedup = early <= EARLY_MARGIN
    diff = acc["bn-aux"] - acc["bn-noaux"]
    p = (acc["bn-aux"] + acc["bn-noaux"]) / 200
    tol = 2 * 100 * math.sqrt(2 * p * (1 - p) / max(n_test, 1))
    findings.append(f"Batch-norm pair, final test accuracy: {diff:+.2f} points with the heads (two standard errors on "
                    f"{n_test:,} images: {tol:.1f}; Inception v3's BN-auxiliary gain: +0.4 top-1 on ImageNet).")
    scale = " in this short run" if mode != "full" else ""
    a, n = stats["bn-aux"], stats["bn-noaux"]
    why = ""
    if "nobn-aux" in acc and "nobn-noaux" in acc and "nobn" in boost:
        helped = acc["nobn-aux"] - acc["nobn-noaux"]
        q = (acc["nobn-aux"] + acc["nobn-noaux"]) / 200
        if helped > 2 * 100 * math.sqrt(2 * q * (1 - q) / max(n_test, 1)):
            why = (f"Without batch norm the aux heads help ({acc['nobn-aux']:.1f}% vs {acc['nobn-noaux']:.1f}% test "
                   f"accuracy, {boost['nobn']:.1f}x the gradient at the first convolution); ")
    they = "they" if why else "the aux heads"
    first = f"(first-half training error {a['early_err']:.1f}% with them, {n['early_err']:.1f}% without)"
    speed = (f"with batch norm {they} do not speed up early training{scale} {first}, as Inception v3 found"
             if no_speedup else
             f"with batch norm {they} do speed up early training{scale} {first}, against Inception v3's finding")
    if no_speedup and diff > tol:
        return "reproduced", f"{why}{speed}, and they end higher, as a regulariser would.", findings
    if no_speedup:
        end_txt = (f"they end {-diff:.1f} points lower, beyond noise, so no regularising gain shows{scale}"
                   if diff < -tol else f"the final difference ({diff:+.1f} points) is within noise{scale}")
        return "partly reproduced", (f"{why}{speed}; {end_txt}: the 0.4-point regularising effect needs full training "
                                     "and the whole test set."), findings
    return "not reproduced", f"{why}{speed}.", findings


EXPERIMENT = register(Experiment(
    name="googlenet-aux",
    question="Why did GoogLeNet's auxiliary classifiers help, and why did they not stick around?",
    claim="Auxiliary classifiers on 4a and 4d, their losses weighted 0.3 and discarded at inference, were added to "
          "push gradient into the lower layers (2015, §5); Inception v3 found they do not speed up early training "
          "and act as regularisers instead (batch-normalised aux head: +0.4% top-1, Table 3).",
    source="Szegedy et al., CVPR 2015, §5; Szegedy et al., CVPR 2016 (Inception v3), §4 and Table 3",
    # 224 s alone on the 2-core AMD EPYC with avx512_bf16, 2 threads, bf16 by auto
    measured={"quick": Measured(4, EPYC_BF16)},
    full_cost="4 runs x 2 seeds x 20 epochs of CIFAR-10 at the 32x32-grid stem: about 3 GPU-hours",
    setup=setup,
    analyse=analyse,
))
