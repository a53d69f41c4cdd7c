"""``small-filters``: is a stack of small filters better than one large filter of the same receptive field?

Simonyan & Zisserman 2015 (ICLR), §2.3: three stacked 3x3 conv layers (stride 1) see a 7x7 window, as one 7x7 layer
does, but with C channels in and out they have 3 (3^2 C^2) = 27 C^2 weights instead of 49 C^2 ("81% more"), and three
ReLUs instead of one, "which makes the decision function more discriminative"; the stack "can be seen as imposing a
regularisation on the 7x7 conv. filters". (Two 3x3 layers: 18 C^2 weights against 25 C^2 for a 5x5 layer, the same
5x5 window.) §4.1: net B with each pair of 3x3 layers replaced by one 5x5 layer had a top-1 error "7% higher" than
B's (single centre crop), "which confirms that a deep net with small filters outperforms a shallow net with larger
filters".

We build VGG nets at 32x32 that differ only in the convolutions of each of the five stages: B's two 3x3 layers, the
paper's single 5x5 layer, three 3x3 layers, one 7x7 layer, and as a control one 3x3 layer (as shallow as the 5x5 and
7x7 nets, with a smaller window). Stage 4 keeps its maps (``skip_pools=(4,)``), so stage 5 runs on 4x4 maps rather
than 2x2, where a 5x5 or 7x7 kernel would meet mostly padding; one pool fewer costs far less than a 64-pixel input.
Every net runs the same learning-rate grid on seed 0 (the rate chosen by validation error), then 3 seeds at its
rate, paired by seed (a seed gives every net the same training images and batch order). The verdict
(:func:`~.verdict.decide`) takes four sub-claims: each stack beats its large filter on test error, and, as §2.3's
mechanism, each stack fits its training set better (training error measured like the test error) with fewer weights.
Runs that have not converged (:func:`~.verdict.converged`) leave their claims "regime not reached".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..measure import count_macs
from ..models import create_model
from . import plots
from .base import Analysis, Context, Experiment, Figure, RunSpec, Setup, Tuning, register
from .measures import CPU_GFLOPS, TrainSetError, tuned_mode_minutes, validation_error
from .verdict import (
    HOLDS,
    NOT_REACHED,
    OPPOSITE,
    Convergence,
    SubClaim,
    compare,
    decide,
    judge,
    sampling_error,
    spread,
)

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
REFERENCE = "3x3-pair"
PAPER_WIDTHS = [64, 128, 256, 512, 512]
EIGHTH = [8, 16, 32, 64, 64]
SKIP_POOLS = [4]  # stage 4 keeps its 4x4 maps: stage 5 runs at 4x4, its pool leaves 2x2 for the GAP head
GRID = (0.01, 0.03, 0.1)  # peak learning rates, the same for every net (batch 64, Nesterov SGD, cosine)

# Budget (the standard mode must fit 45 minutes alone on the 2-core CPU): the brief's estimate of 30 GFLOP/s sustained
# on convolutions, 6 x MACs FLOPs per training image and 2 x MACs per evaluated image (validation, test and the
# clean training-set pass, every epoch). At an eighth of the paper's widths the five nets cost 4.6 + 4.7 + 7.6 + 9.2 +
# 1.7 = 27.9 MMACs per image together (stage 5 at 4x4); each runs 3 grid values + 2 more seeds = 5 runs of 25 epochs
# over 2,000 images with 1,000 + 2,000 + 1,000 images evaluated: 5 x 25 x (6 x 2,000 + 2 x 4,000) x 27.9M = 70 TFLOP,
# about 39 minutes (budget_minutes("standard")); the measured speeds of resnet20 and plain56 on this machine are about
# twice what that rule gives, so the run should take less. Quarter width (106.5 MMACs) would need about 2.5 hours.
GFLOPS = CPU_GFLOPS  # GFLOP/s, measures.py's planning figure
# No random crops (flips only): the old quick runs, with crops, ended 12 epochs on 5,000 images at 23-29% training
# error, still learning; without crops the nets can fit their 2,000 images and be judged at convergence.
SHARED = {"train.epochs": 25, "data.train_subset": 2000, "data.test_subset": 2000, "data.val_split": 1000,
          "data.batch_size": 64, "data.crop_padding": 0, "schedule.name": "cosine", "schedule.warmup_epochs": 2,
          "model.kwargs.head": "gap", "model.kwargs.skip_pools": SKIP_POOLS}
MODES: dict[str, dict[str, Any]] = {
    "smoke": {"widths": [8, 8, 16, 16, 16], "grid": (0.05,), "seeds": [0], "train_eval": 100,
              "overrides": {**SHARED, "train.epochs": 1, "data.train_subset": 256, "data.test_subset": 200,
                            "data.val_split": 100, "schedule.warmup_epochs": 0}},
    "quick": {"widths": EIGHTH, "grid": (0.03,), "seeds": [0], "train_eval": 1000, "overrides": SHARED},
    "standard": {"widths": EIGHTH, "grid": GRID, "seeds": [0, 1, 2], "train_eval": 1000, "overrides": SHARED},
    "full": {"widths": PAPER_WIDTHS, "grid": GRID, "seeds": [0, 1, 2], "train_eval": 5000,
             "overrides": {**SHARED, "train.epochs": 30, "data.train_subset": None, "data.test_subset": None,
                           "data.val_split": 5000, "data.batch_size": 128}},
}


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


def model_kwargs(label: str, widths: Sequence[int]) -> dict[str, Any]:
    return {"img_size": 32, "widths": list(widths), "head": "gap", "skip_pools": SKIP_POOLS,
            "kernels": [list(VARIANTS[label][0])] * STAGES}


def built_conv_weights(kwargs: dict[str, Any]) -> int:
    """The conv weights of ``MODEL`` built (on the meta device, so for free) with a run's model options."""
    with torch.device("meta"):
        model = create_model(MODEL, **kwargs)
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))


def variant_macs(label: str, widths: Sequence[int]) -> int:
    """Multiply-adds per 32x32 image of a variant as trained (10 classes), counted on the meta device."""
    with torch.device("meta"):
        model = create_model(MODEL, num_classes=10, **model_kwargs(label, widths))
    return count_macs(model, (3, 32, 32))


def budget_minutes(mode: str, gflops: float = GFLOPS) -> float:
    """The mode's training time by the brief's estimate (see the comment above :data:`GFLOPS`)."""
    m = MODES[mode]
    return tuned_mode_minutes(sum(variant_macs(label, m["widths"]) for label in VARIANTS), m, gflops=gflops)


def setup(mode: str) -> Setup:
    m = MODES[mode]
    o = {**m["overrides"], "model.kwargs.widths": m["widths"]}
    arms = [RunSpec(label, MODEL, recipe=RECIPE, overrides={"model.kwargs.kernels": [list(ks)] * STAGES},
                    callbacks=lambda: [TrainSetError(limit=m["train_eval"])])
            for label, (ks, _) in VARIANTS.items()]
    tuning = Tuning(arms=arms, grid=m["grid"], score=validation_error,
                    criterion=f"validation error after the last epoch ({o['data.val_split']:,} held-out training "
                              "images)")
    notes = [f"Every run is `{RECIPE}` with the model swapped for `{MODEL}` (net B with batch norm) and the kernel "
             "sizes of its five stages replaced (`model.kwargs.kernels`), padding k // 2 so that every conv keeps its "
             "resolution. Stage 4 keeps its maps (`model.kwargs.skip_pools: [4]`), so the five stages run on 32, 16, "
             "8, 4 and 4-pixel maps and a 5x5 or 7x7 kernel of the last stage sees real pixels, not mostly padding "
             "(with all five pools stage 5 would run at 2x2). A global-average-pool + linear head instead of FC6-FC8 "
             "(the comparison is about the conv stacks; the FC layers would hold most of the parameters).",
             f"Optimiser: Nesterov SGD, momentum 0.9, weight decay 5e-4, batch {o['data.batch_size']}, label smoothing "
             f"0.1, {o['schedule.warmup_epochs']} warm-up epochs then a cosine schedule to zero (instead of the "
             "recipe's one-cycle, so that the last quarter of training runs at small learning rates and convergence "
             "can be judged). Horizontal flips but no random crops (the recipe pads by 4 and crops): with crops the "
             "nets would still be learning at the end of the budget (the quick runs of 2026-12-01 ended at 23-29% "
             "training error); without them they can fit their training images, so the comparison is of nets that "
             "have converged, in a regime where generalising from few images matters. Same data, epochs and steps "
             "for every net (equal training budget in steps, not in multiply-adds).",
             f"Tuning: every net runs the peak learning rates {', '.join(f'{v:g}' for v in m['grid'])} on seed 0; "
             "the rate with the lowest validation error after the last epoch is chosen (validation images are held "
             "out of the training set, `data.val_split`, never the test set), then every net runs at its rate on "
             f"seeds {', '.join(map(str, m['seeds']))}. A seed gives every net the same training subset and batch "
             "order, so the comparisons are paired by seed (t-test at 95%).",
             "Training error (the table's and the mechanism's) is measured like the test error, on plain training "
             f"images in eval mode, after each epoch (`TrainSetError`, {m['train_eval']:,} of the training images). "
             "Convergence (`verdict.converged`) is judged on the loop's running training error over each epoch's "
             "batches: the schedule ran to its end, the learning rate decayed, and the last quarter of the epochs "
             "improved it by under 2 points."]
    if mode in ("quick", "standard"):
        notes.append(f"**Shrunk:** widths {'-'.join(map(str, m['widths']))}, an eighth of the paper's "
                     f"{'-'.join(map(str, PAPER_WIDTHS))} (quarter width would cost 4x); {o['train.epochs']} epochs "
                     f"on a class-balanced {o['data.train_subset']:,}-image training subset (drawn per seed), "
                     f"{o['data.val_split']:,} validation and {o['data.test_subset']:,} test images"
                     + ("; one seed and one learning rate (0.03) for every net instead of the grid: a demonstration"
                        if mode == "quick" else "; 3 seeds") +
                     ". The paper trained 74 epochs on 1.2 million 224x224 images. Budget by the estimate "
                     f"(30 GFLOP/s, 6 x MACs per training image): {budget_minutes(mode):.0f} minutes.")
    elif mode == "smoke":
        notes.append("Smoke test: 256 images, one epoch, tiny widths; the numbers mean nothing.")
    else:
        notes.append("Full: the paper's widths, 30 epochs on the 45,000 training images left after a 5,000-image "
                     "validation split, the whole test set, batch 128, 3 seeds.")
    return Setup(runs=[], overrides=o, seeds=list(m["seeds"]), notes=notes, tuning=tuning)


def analyse(ctx: Context) -> Analysis:
    m = MODES[ctx.mode]
    rows: list[dict[str, Any]] = []
    test: dict[str, list[float]] = {}
    train: dict[str, list[float]] = {}
    conv: dict[str, list[Convergence]] = {}
    weights: dict[str, int] = {}
    curves, points, mismatched = {}, {}, []
    for label, (ks, what) in VARIANTS.items():
        outs = ctx.runs(label)
        done = [o for o in outs if o.summary is not None]
        closed = conv_weights([ks] * STAGES, m["widths"])
        weights[label] = closed
        row: dict[str, Any] = {"variant": label, "convs per stage": what, "conv layers": STAGES * len(ks),
                               "receptive field per stage": f"{receptive_field(ks)}x{receptive_field(ks)}",
                               "conv weights": f"{closed:,}"}
        if not done:
            rows.append({**row, "status": f"{len(outs)} failed" if outs else "not run"})
            continue
        cfg = done[0].planned.cfg
        if closed != built_conv_weights(dict(cfg.model.kwargs)):
            mismatched.append(label)
        for o in done:
            clean = ctx.records(o, "train_eval")
            test.setdefault(label, []).append(100 * (1 - o.summary["final_test_acc"]))
            train.setdefault(label, []).append(100 * clean[-1]["error"] if clean else math.nan)
            conv.setdefault(label, []).append(ctx.convergence(o))
        first = done[0]
        clean, epochs = ctx.records(first, "train_eval"), ctx.records(first, "epoch")
        curves[label] = ([r["epoch"] for r in clean], [100 * r["error"] for r in clean],
                         [100 * (1 - e["test_acc"]) for e in epochs])
        macs = done[0].summary.get("macs") or 0
        points[label] = (closed / 1e6, macs / 1e6, statistics.fmean(test[label]))
        row.update({
            "params": f"{done[0].summary['params']:,}", "MMACs": round(macs / 1e6, 1),
            "lr": f"{ctx.chosen.get(label, cfg.optim.lr):g}",
            "train err %": spread(train[label]).describe(1), "test err %": spread(test[label]).describe(1),
            "test err by seed": " / ".join(f"{t:.1f}" for t in test[label]),
            "converged": f"{sum(c.converged for c in conv[label])}/{len(conv[label])}",
            "status": "ok" if len(done) == len(outs) else f"{len(outs) - len(done)} failed",
        })
        rows.append(row)
    subclaims = claims(test, train, conv, weights)
    verdict, reason = decide(subclaims)
    n_test = int(ctx.setup.overrides.get("data.test_subset") or 10_000)
    findings = [_arithmetic(m["widths"]) + (" The 'conv weights' column counts every net the same way and equals "
                                             "the built model's count for each." if not mismatched else
                                             f" MISMATCH: the closed form differs from the built model for "
                                             f"{', '.join(mismatched)}.")]
    findings += [c.line() for c in subclaims]
    findings += _control(test)
    if test:
        ref = statistics.fmean(next(iter(test.values())))
        findings.append(f"Beside the seed test: on {n_test:,} test images the sampling error alone of a difference "
                        f"between two test errors near {ref:.0f}% is {sampling_error(ref, n_test):.1f} points (one "
                        "standard error); the seeds' t-test above already contains it.")
    late = sorted({c.why for cs in conv.values() for c in cs if not c.converged})
    if late:
        findings.append("Not converged: " + "; ".join(late) + ".")
    figures = []
    if test:
        present = [v for v in VARIANTS if v in test]
        figures.append(Figure("errors_by_seed.png", "Training error (plain training images, eval mode) and test "
                              "error of each net after the last epoch: bars are the means, dots the seeds.",
                              plots.seed_bars(present, {"training error": [train[v] for v in present],
                                                        "test error": [test[v] for v in present]}, "error (%)")))
        figures.append(Figure("error_vs_cost.png", "Mean test error against conv weights (left) and multiply-adds "
                              "per image (right); dashed lines join the nets of the same receptive field (3x3-pair / "
                              "5x5, 3x3-triple / 7x7).",
                              plots.scatter(points, ["conv weights (millions)", "multiply-adds per 32x32 image "
                                                     "(millions)"], "test error (%)", links=PAIRS)))
    if curves:
        figures.append(Figure("train_test_curves.png", "Training error (solid; plain training images, eval mode) and "
                              "test error (dashed) per epoch, first seed, each net (red) against net B's 3x3 pairs "
                              "(grey).", plots.against_reference(curves, REFERENCE, ncols=2)))
    columns = ["variant", "convs per stage", "conv layers", "receptive field per stage", "conv weights", "params",
               "MMACs", "lr", "train err %", "test err %", "test err by seed", "converged", "status"]
    rows = [{c: r.get(c) for c in columns} for r in rows]  # every row has every column (results.csv)
    return Analysis(rows=rows, verdict=verdict, reason=reason, columns=columns, findings=findings, figures=figures,
                    answer=answer(test, weights, subclaims, ctx.mode))


def _arithmetic(widths: Sequence[int]) -> str:
    """§2.3's counts for one stage of C channels in and out, from :func:`conv_weights` (tests check them against
    the built layers), and the nets as trained."""
    c = 64
    three, seven = conv_weights([(3, 3, 3)], [c], in_chans=c), conv_weights([(7,)], [c], in_chans=c)
    two, five = conv_weights([(3, 3)], [c], in_chans=c), conv_weights([(5,)], [c], in_chans=c)
    nets = {k: conv_weights([VARIANTS[k][0]] * STAGES, widths) for k in ("3x3-pair", "5x5", "3x3-triple", "7x7")}
    return (f"Weights of one stage with C = {c} channels in and out (exact): three 3x3 layers {three:,} = "
            f"{three // c**2} C^2, one 7x7 layer {seven:,} = {seven // c**2} C^2 ({seven / three - 1:.0%} more; §2.3: "
            f"\"81% more\"); two 3x3 layers {two // c**2} C^2 against {five // c**2} C^2 for one 5x5 "
            f"({five / two - 1:.0%} more). The nets as trained (widths {'-'.join(map(str, widths))}): 3x3-pair "
            f"{nets['3x3-pair']:,} conv weights against {nets['5x5']:,} for 5x5, 3x3-triple {nets['3x3-triple']:,} "
            f"against {nets['7x7']:,} for 7x7. The arithmetic is exact, so it is stated here rather than counted as "
            "a sub-claim: an identity cannot make a verdict.")


def claims(test: dict[str, list[float]], train: dict[str, list[float]], conv: dict[str, list[Convergence]],
           weights: dict[str, int]) -> list[SubClaim]:
    """Four sub-claims, each paired by seed: for each same-receptive-field pair, the stack of 3x3 layers has the lower
    test error; and (§2.3's mechanism) it fits its training set better (lower training error) while holding fewer
    weights. A pair with a run that has not converged is "regime not reached"; one with unfinished runs too."""
    out = []
    for deep, shallow in PAIRS:
        n_deep = {"3x3-pair": "two", "3x3-triple": "three"}[deep]
        acc_name = f"{n_deep} 3x3 layers beat one {shallow} (test error)"
        fewer = 1 - weights[deep] / weights[shallow]
        mech_name = (f"{n_deep} 3x3 layers fit the training set better than one {shallow}, with "
                     f"{fewer:.0%} fewer weights (§2.3)")
        if not test.get(deep) or not test.get(shallow):
            why = f"no finished run of {deep if not test.get(deep) else shallow}"
            out += [SubClaim(acc_name, NOT_REACHED, why), SubClaim(mech_name, NOT_REACHED, why, mechanism=True)]
            continue
        runs = conv.get(deep, []) + conv.get(shallow, [])
        reached = bool(runs) and all(c.converged for c in runs)
        why = next((f"{k}: {c.why}" for k in (deep, shallow) for c in conv.get(k, []) if not c.converged), "")
        n = min(len(test[deep]), len(test[shallow]))
        c = compare(test[deep][:n], test[shallow][:n], paired=True)
        says = (f"test error {deep} {spread(test[deep]).describe()}% vs {shallow} {spread(test[shallow]).describe()}%; "
                f"difference {c.describe()}")
        out.append(judge(acc_name, c, expect=-1, evidence=says, reached=reached,
                         why_not_reached=f"{says}; not converged ({why})"))
        if weights[deep] >= weights[shallow]:
            out.append(SubClaim(mech_name, OPPOSITE, f"{deep} has {weights[deep]:,} conv weights, {shallow} "
                                f"{weights[shallow]:,}", mechanism=True))
            continue
        a, b = [x for x in train.get(deep, []) if math.isfinite(x)], [x for x in train.get(shallow, [])
                                                                      if math.isfinite(x)]
        if not a or not b:
            out.append(SubClaim(mech_name, NOT_REACHED, "training error not measured", mechanism=True))
            continue
        n = min(len(a), len(b))
        t = compare(a[:n], b[:n], paired=True)
        says = (f"{weights[deep]:,} against {weights[shallow]:,} conv weights (exact); training error {deep} "
                f"{spread(a).describe()}% vs {shallow} {spread(b).describe()}%, difference {t.describe()}")
        out.append(judge(mech_name, t, expect=-1, evidence=says, mechanism=True, reached=reached,
                         why_not_reached=f"{says}; not converged ({why})"))
    return out


def _control(test: dict[str, list[float]]) -> list[str]:
    if not all(k in test for k in ("3x3-single", "5x5", "3x3-pair")):
        return []
    n = min(len(test[k]) for k in ("3x3-single", "5x5", "3x3-pair"))
    window = compare(test["5x5"][:n], test["3x3-single"][:n], paired=True)
    depth = compare(test["3x3-pair"][:n], test["5x5"][:n], paired=True)
    return [f"Control, one 3x3 per stage: {spread(test['3x3-single']).describe()}% test error. At the same depth the "
            f"larger window (5x5 against 3x3) changes test error by {window.describe()}; at the same window the "
            f"extra depth (two 3x3 against one 5x5) by {depth.describe()}."]


def answer(test: dict[str, list[float]], weights: dict[str, int], subclaims: Sequence[SubClaim], mode: str) -> str:
    """The report's first paragraph: the learner's "depth with small filters improved accuracy", in plain words."""
    acc = [c for c in subclaims if not c.mechanism]
    statuses = {c.status for c in acc}
    parts = []
    for deep, shallow in PAIRS:
        if deep in test and shallow in test:
            parts.append(f"{deep} {statistics.fmean(test[deep]):.1f}% against {shallow} "
                         f"{statistics.fmean(test[shallow]):.1f}%")
    n = MODES[mode]["overrides"]["data.train_subset"]
    scale = (f"an eighth-width VGG on {n:,} CIFAR-10 images" if mode in ("quick", "standard") else
             "tiny nets on a few hundred images" if mode == "smoke" else "full-width VGG nets on CIFAR-10")
    if not parts:
        return "**Answer.** No pair of nets finished, so this run cannot answer."
    numbers = f"test error {'; '.join(parts)}, means over seeds"
    if statuses == {HOLDS}:
        opening = (f"Yes, here too: on {scale} the stacks of 3x3 layers beat the single large filters of the same "
                   f"window beyond seed noise ({numbers}).")
    elif NOT_REACHED in statuses:
        opening = (f"This run cannot say yet: on {scale} not every net converged in its budget, so the gap between "
                   f"the stacks and the large filters ({numbers}) measures how fast they learn, not what they can "
                   "learn.")
    elif statuses == {OPPOSITE}:
        opening = (f"Not here: on {scale} the single large filters did better than the stacks of 3x3 layers, beyond "
                   f"seed noise ({numbers}).")
    elif HOLDS in statuses:
        opening = (f"Partly: on {scale} one stack beat its large filter beyond seed noise and the other did not "
                   f"({numbers}).")
    else:
        opening = (f"Not measurably at this scale: on {scale} the stacks of 3x3 layers and the single large filters "
                   f"end within seed noise of each other ({numbers}).")
    pair, five = weights.get("3x3-pair"), weights.get("5x5")
    triple, seven = weights.get("3x3-triple"), weights.get("7x7")
    return (f"**Answer.** {opening} What holds whatever the training: for the same window a stack of 3x3 layers "
            f"needs fewer weights, 18C² against 25C² and 27C² against 49C² per layer of C channels (here "
            f"{pair:,} against {five:,} and {triple:,} against {seven:,} conv weights), and it puts a ReLU after every "
            "layer. The paper's evidence that this improves accuracy is one ImageNet comparison (§4.1: net B's "
            "shallow 5x5 version had a top-1 error \"7% higher\"; whether that means points or a relative 7% the "
            "sentence does not say), made with 224-pixel images, 1.2 million training images and 74 epochs"
            + ("." if statuses == {HOLDS} else
               "; at this much smaller scale the result goes the other way, which says the advantage is not "
               "universal, not that the ImageNet result is wrong." if statuses == {OPPOSITE} else
               "; small data and small nets leave less room for depth to pay, so a result short of the paper's here "
               "says the gain is not visible at this scale, not that the paper is wrong."))


EXPERIMENT = register(Experiment(
    name="small-filters",
    question="Is a stack of small filters better than one large filter with the same receptive field?",
    claim="Three stacked 3x3 conv layers see a 7x7 window with 27C^2 weights instead of 49C^2 and three "
          "non-linearities instead of one, which makes the decision function more discriminative (§2.3); net B with "
          "each pair of 3x3 layers replaced by one 5x5 layer had a top-1 error 7% higher than B's (§4.1).",
    source="Simonyan & Zisserman, ICLR 2015, §2.3, §4.1, Table 3 net B",
    measured={},  # the modes changed with issue 23; not yet measured
    full_cost="5 nets x (3 learning rates + 2 seeds) x 30 epochs of CIFAR-10 at full VGG width (about 1.8 GMACs per "
              "image for the five nets together): about 1 GPU-hour",
    setup=setup,
    analyse=analyse,
    standard_limit=45,
))
