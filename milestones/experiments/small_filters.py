"""``small-filters``: is a stack of small filters better than one large filter of the same receptive field?

Simonyan & Zisserman 2015 (ICLR), §2.3: three stacked 3x3 conv layers (stride 1) see a 7x7 window, as one 7x7 layer
does, but with C channels in and out they have 3 (3^2 C^2) = 27 C^2 weights instead of 49 C^2, and three ReLUs
instead of one (two 3x3 layers: 18 C^2 weights against 25 C^2 for a 5x5 layer, the same 5x5 window). §4.1: net B
with each pair of 3x3 layers replaced by one 5x5 layer had a top-1 error "7% higher" than B's (single centre crop),
"which confirms that a deep net with small filters outperforms a shallow net with larger filters".

We build VGG nets at 32x32 (the ``cifar10_vgg*_bn`` recipes) that differ only in the convolutions of each of the five
stages: B's two 3x3 layers, the paper's single 5x5 layer, three 3x3 layers, one 7x7 layer, and as a control one 3x3
layer (as shallow as the 5x5 and 7x7 nets, with a smaller window). All train with the same recipe for the same
number of steps; we report parameters, multiply-adds, training error (plain images, eval mode) and test error.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..models import create_model
from . import plots
from .base import EPYC_BF16, Analysis, Context, Experiment, Figure, Measured, RunSpec, Setup, register
from .measures import TrainSetError, describe_noise, noise_threshold

RECIPE = "cifar10_vgg11_bn"
MODEL = "vgg13_bn"  # configuration B (+ batch norm, as the CIFAR recipes have it)
STAGES = 5
# label -> (kernels of each stage, description); the pairs to compare have the same receptive field
VARIANTS: dict[str, tuple[tuple[int, ...], str]] = {
    "3x3-pair":   ((3, 3), "two 3x3 per stage (net B)"),
    "5x5":        ((5,), "one 5x5 per stage (§4.1's shallow B)"),
    "3x3-triple": ((3, 3, 3), "three 3x3 per stage"),
    "7x7":        ((7,), "one 7x7 per stage"),
    "3x3-single": ((3,), "one 3x3 per stage (control)"),
}
PAIRS = (("3x3-pair", "5x5"), ("3x3-triple", "7x7"))  # (deep, small) vs (shallow, large), same receptive field
NOISE_FLOOR = 1.0  # points: single-seed differences below this are noise at any of our scales

QUICK_WIDTHS = [16, 32, 64, 128, 128]  # a quarter of the paper's 64-128-256-512-512
MODES: dict[str, dict[str, Any]] = {
    "quick": {"seeds": [0], "reference_seeds": [0, 1], "overrides": {
        "train.epochs": 12, "data.train_subset": 5000, "data.test_subset": 2000,
        "model.kwargs.widths": QUICK_WIDTHS, "model.kwargs.head": "gap"}},
    "full": {"seeds": [0, 1, 2], "reference_seeds": None, "overrides": {}},
    "smoke": {"seeds": [0], "reference_seeds": None, "overrides": {
        "train.epochs": 1, "data.train_subset": 256, "data.test_subset": 200, "data.batch_size": 64,
        "model.kwargs.widths": [8, 8, 16, 16, 16], "model.kwargs.head": "gap"}},
}
REFERENCE = "3x3-pair"
TRAIN_EVAL = 1000  # training images measured in eval mode each epoch


def receptive_field(kernels: Sequence[int]) -> int:
    """The side of the window that a stack of stride-1 convolutions sees: 1 + sum(k - 1)."""
    return 1 + sum(k - 1 for k in kernels)


def conv_weights(kernels: Sequence[Sequence[int]], widths: Sequence[int], in_chans: int = 3) -> int:
    """Weights of every conv (biases and batch norm left out): k^2 C_in C_out per layer, the count of §2.3."""
    total, c_in = 0, in_chans
    for ks, c_out in zip(kernels, widths, strict=True):
        for k in ks:
            total += k * k * c_in * c_out
            c_in = c_out
    return total


def built_conv_weights(kwargs: dict[str, Any]) -> int:
    """The conv weights of ``MODEL`` built (on the meta device, so for free) with a run's model options."""
    with torch.device("meta"):
        model = create_model(MODEL, **kwargs)
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))


def setup(mode: str) -> Setup:
    m = MODES[mode]
    runs = [RunSpec(label, MODEL, recipe=RECIPE, overrides={"model.kwargs.kernels": [list(ks) for _ in range(STAGES)]},
                    callbacks=lambda: [TrainSetError(limit=TRAIN_EVAL)],
                    seeds=m["reference_seeds"] if label == REFERENCE else None)
            for label, (ks, _) in VARIANTS.items()]
    notes = [f"Every run is `{RECIPE}` with the model swapped for `{MODEL}` (net B with batch norm, FC6 sized for "
             "32x32) and the kernel sizes of its five stages replaced (`model.kwargs.kernels`), padding k // 2 so that "
             "every stage keeps its resolution: SGD (Nesterov) lr 0.05, momentum 0.9, weight decay 5e-4, batch 128, "
             "one-cycle, label smoothing 0.1, pad-4 crop + flip. Same data, epochs and steps for every net (equal "
             "training budget in steps, not in multiply-adds).",
             "At 32x32 the five stages run on 32, 16, 8, 4 and 2-pixel maps, so in the last stage a 5x5 or 7x7 kernel "
             "only ever meets padding outside its central 3x3: part of the large-filter nets' extra weights are "
             "dead there, which ImageNet's 14-pixel last stage does not have.",
             "Training error is measured like the test error, on plain training images in eval mode, at the end of "
             f"each epoch (on {TRAIN_EVAL:,} of the training images)."]
    if mode == "quick":
        o = m["overrides"]
        notes += [f"**Shrunk:** widths {'-'.join(map(str, QUICK_WIDTHS))} instead of 64-128-256-512-512, and a "
                  "global-average-pool + linear head instead of FC6-FC8 (the comparison is about the conv stacks; "
                  f"the FC layers would hold most of the parameters); {o['train.epochs']} epochs on a class-balanced "
                  f"{o['data.train_subset']:,}-image training subset, test on {o['data.test_subset']:,} images; one "
                  f"seed per net and a second one of `{REFERENCE}` to measure the noise. The paper trained 74 epochs "
                  "on 1.2 million 224x224 images."]
    elif mode == "smoke":
        notes += ["Smoke test: 256 images, one epoch, tiny widths; the numbers mean nothing."]
    else:
        notes += ["The recipe as shipped (full widths, FC6-FC8 with dropout): 20 epochs on all 50,000 training "
                  "images, three seeds."]
    return Setup(runs=runs, overrides=m["overrides"], seeds=m["seeds"], notes=notes)


def _mean(values: list[float]) -> float:
    return statistics.fmean(values)


def analyse(ctx: Context) -> Analysis:
    rows, curves, points = [], {}, {}
    spreads: list[float] = []
    mismatched: list[str] = []
    for spec in ctx.setup.runs:
        ks, what = VARIANTS[spec.label]
        done = [o for o in ctx.runs(spec.label) if o.summary is not None]
        if not done:
            rows.append({"variant": spec.label, "convs per stage": what, "status": "failed"})
            continue
        cfg = done[0].planned.cfg
        widths = cfg.model.kwargs.get("widths") or [64, 128, 256, 512, 512]
        train = [100 * ctx.records(o, "train_eval")[-1]["error"] for o in done if ctx.records(o, "train_eval")]
        test = [100 * (1 - o.summary["final_test_acc"]) for o in done]
        if len(test) >= 2:
            spreads.append(max(test) - min(test))
        first = min(done, key=lambda o: o.planned.seed)
        clean, epochs = ctx.records(first, "train_eval"), ctx.records(first, "epoch")
        curves[spec.label] = ([r["epoch"] for r in clean], [100 * r["error"] for r in clean],
                              [100 * (1 - e["test_acc"]) for e in epochs])
        closed = conv_weights([ks] * STAGES, widths)
        if closed != built_conv_weights(dict(cfg.model.kwargs)):
            mismatched.append(spec.label)
        macs = done[0].summary.get("macs")
        points[spec.label] = (closed / 1e6, macs / 1e6 if macs else 0.0, _mean(test))
        rows.append({
            "variant": spec.label, "convs per stage": what, "conv layers": STAGES * len(ks),
            "receptive field per stage": f"{receptive_field(ks)}x{receptive_field(ks)}",
            "conv weights": f"{closed:,}", "params": f"{done[0].summary['params']:,}",
            "MMACs": round(macs / 1e6, 1) if macs else None,
            "train err %": round(_mean(train), 2) if train else None, "test err %": round(_mean(test), 2),
            "test err by seed": " / ".join(f"{t:.1f}" for t in test), "status": "ok",
        })
    ref = next((r["test err %"] for r in rows if r["variant"] == REFERENCE and r.get("status") == "ok"), None)
    noise = noise_threshold(spreads, ref, ctx.setup.overrides.get("data.test_subset") or 10_000, NOISE_FLOOR)
    verdict, reason, findings = _verdict(rows, noise, ctx.mode)
    findings.insert(0, _arithmetic() + (" The 'conv weights' column counts every net the same way, and equals the "
                                        "built model's count for each." if not mismatched else
                                        f" MISMATCH: the closed form differs from the built model for "
                                        f"{', '.join(mismatched)}."))
    figures = []
    if points:
        figures.append(Figure("error_vs_cost.png", "Test error against conv weights (left) and multiply-adds per "
                              "image (right); dashed lines join the nets of the same receptive field (3x3-pair / 5x5, "
                              "3x3-triple / 7x7).",
                              plots.scatter(points, ["conv weights (millions)", "multiply-adds per 32x32 image "
                                                     "(millions)"], "test error (%)", links=PAIRS)))
    if curves:
        figures.append(Figure("train_test_curves.png", "Training error (solid; plain training images, eval mode) and "
                              "test error (dashed) per epoch, each net (red) against net B's 3x3 pairs (grey).",
                              plots.against_reference(curves, REFERENCE, ncols=2)))
    columns = ["variant", "convs per stage", "conv layers", "receptive field per stage", "conv weights", "params",
               "MMACs", "train err %", "test err %", "test err by seed", "status"]
    return Analysis(rows=rows, verdict=verdict, reason=reason, columns=columns, findings=findings, figures=figures)


def _arithmetic() -> str:
    """§2.3's counts for one stage of C channels in and out, from :func:`conv_weights` (tests check them against
    the built layers)."""
    c = 64
    three, seven = conv_weights([(3, 3, 3)], [c], in_chans=c), conv_weights([(7,)], [c], in_chans=c)
    two, five = conv_weights([(3, 3)], [c], in_chans=c), conv_weights([(5,)], [c], in_chans=c)
    return (f"Weights of one stage with C = {c} channels in and out: three 3x3 layers {three:,} = {three // c**2} C^2, "
            f"one 7x7 layer {seven:,} = {seven // c**2} C^2 ({seven / three - 1:.0%} more, as §2.3 says: 81%); two "
            f"3x3 layers {two // c**2} C^2 against {five // c**2} C^2 for one 5x5 ({five / two - 1:.0%} more).")


def _verdict(rows: list[dict[str, Any]], noise: dict[str, Any], mode: str) -> tuple[str, str, list[str]]:
    """For each same-receptive-field pair: is the stack of 3x3 layers better than the single large layer by more
    than the noise? The training errors tell whether a deeper stack is still behind in fitting its training set."""
    ok = {r["variant"]: r for r in rows if r.get("status") == "ok"}
    err = {k: r["test err %"] for k, r in ok.items()}
    thr = noise["threshold"]
    pairs = [(deep, shallow) for deep, shallow in PAIRS if deep in err and shallow in err]
    if not pairs:
        return "not testable here", "no same-receptive-field pair finished", []
    findings, outcome, says = [], {}, []
    for deep, shallow in pairs:
        diff = err[shallow] - err[deep]  # > 0: the deep small-filter stack is better
        outcome[deep] = 1 if diff > thr else -1 if diff < -thr else 0
        train = (ok[deep].get("train err %"), ok[shallow].get("train err %"))
        behind = None not in train and train[0] - train[1] > thr  # the deep net fits its training set worse
        weights = [int(str(ok[k].get("conv weights", "0")).replace(",", "")) for k in (deep, shallow)]
        fewer = f", which has {1 - weights[0] / weights[1]:.0%} fewer conv weights" if all(weights) else ""
        findings.append(
            f"{deep} vs {shallow} (same receptive field): test error {err[deep]:.1f}% vs {err[shallow]:.1f}% "
            f"({diff:+.1f} points in favour of the stack{fewer}). " + {
                1: "The stack of small filters is better, beyond the noise.",
                0: f"Within the noise ({thr:.1f} points).",
                -1: "The single large layer is better, beyond the noise."}[outcome[deep]]
            + (f" The {deep} net also fits its training set worse ({train[0]:.1f}% against {train[1]:.1f}% training "
               "error): with the same number of steps the deeper stack is still behind in training, so this compares "
               "how fast the nets learn as much as what they can learn." if behind else ""))
        says.append(f"{deep} vs {shallow}: {diff:+.1f} points for the stack"
                    + {1: "", 0: f" (within the noise, {thr:.1f})", -1: ", against the paper"}[outcome[deep]]
                    + (f", its training error still {train[0] - train[1]:.1f} points higher" if behind else ""))
    if all(k in err for k in ("3x3-single", "5x5", "3x3-pair")):
        wider, deeper = err["3x3-single"] - err["5x5"], err["5x5"] - err["3x3-pair"]
        findings.append(f"Control: one 3x3 per stage {err['3x3-single']:.1f}%, one 5x5 {err['5x5']:.1f}%, two 3x3 "
                        f"{err['3x3-pair']:.1f}%: at the same depth the larger window is worth {wider:+.1f} points, "
                        f"at the same window the extra depth {deeper:+.1f} points.")
    findings.append(describe_noise(noise, REFERENCE))
    scale = " at this small scale" if mode != "full" else ""
    reason = "; ".join(says) + f"{scale}. The weight arithmetic (27C^2 against 49C^2) holds exactly."
    if all(outcome.get(d, 0) > 0 for d, _ in PAIRS):
        return "reproduced", reason, findings
    if any(v > 0 for v in outcome.values()):
        return "partly reproduced", reason, findings
    return "not reproduced", reason, findings


EXPERIMENT = register(Experiment(
    name="small-filters",
    question="Is a stack of small filters better than one large filter with the same receptive field?",
    claim="Three stacked 3x3 conv layers see a 7x7 window with 27C^2 weights instead of 49C^2 and three "
          "non-linearities instead of one; net B with each pair of 3x3 layers replaced by one 5x5 layer had a "
          "top-1 error 7% higher than B's.",
    source="Simonyan & Zisserman, ICLR 2015, §2.3, §4.1, Table 3 net B",
    # measured alone on the 2-core AMD EPYC, 2 torch threads
    measured={"quick": Measured(4, EPYC_BF16)},
    full_cost="5 nets x 3 seeds x 20 epochs of CIFAR-10 at full VGG width (0.2-0.4 GMACs per image): about 1 "
              "GPU-hour",
    setup=setup,
    analyse=analyse,
))
