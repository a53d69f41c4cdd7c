"""``alexnet-ablations``: which of AlexNet's ingredients matter, one switched off at a time?

Krizhevsky et al. 2012 (NIPS), §3-4. Without dropout the net "exhibits substantial overfitting" (§4.2), and without
the translations and reflections of its data augmentation it "suffers from substantial overfitting" (§4.1). Local
response normalisation cut top-1 / top-5 error by 1.4 / 1.2 points on ImageNet, and a four-layer CNN's CIFAR-10 test
error from 13% to 11% (§3.3). Overlapping pooling (3x3 windows, stride 2) cut them by 0.4 / 0.3 points against 2x2
windows of stride 2, and nets with it were "slightly more difficult to overfit" (§3.4).

We train the registered ``alexnet`` with its CIFAR-10 recipe (``cifar10_alexnet``: CIFAR stem, He init, pad-4 crop +
flip, the paper's SGD) and four copies with one ingredient off, each on the same seeds: a seed gives every variant
the same training subset, batch order and (where the shapes agree) initial weights, so the variants are compared
paired by seed (:func:`~.verdict.compare`). Each run's *training* error is measured the way the test error is (plain
images, eval mode: :class:`~.measures.TrainSetError`), so overfitting shows as the gap between the two.

Four sub-claims (:func:`claims`), judged by :func:`~.verdict.decide`: without dropout, and without augmentation, the
train-test gap widens (the paper's stated mechanism for both: they reduce overfitting); these two are judged only when
the reference itself fits its training set (its gap at least :data:`FIT_GAP` points, averaged over seeds), since a
regulariser cannot be seen preventing overfitting that does not happen. Without LRN, and without overlapping pooling,
the test error rises: judged against seed noise alone.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from . import plots
from .base import AVX2_EPYC, Analysis, Context, Experiment, Figure, Measured, RunSpec, Setup, register
from .measures import CPU_GFLOPS, TrainSetError
from .verdict import (
    HOLDS,
    NOT_REACHED,
    NOT_TESTABLE,
    OPPOSITE,
    WITHIN_NOISE,
    SubClaim,
    compare,
    decide,
    judge,
    sampling_error,
    spread,
)

RECIPE = "cifar10_alexnet"
REFERENCE = "full"
# label -> (what is switched off, its overrides, the paper's effect on ImageNet top-1 error in points)
VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "full":       ("nothing (the recipe)", {}, "-"),
    "no-dropout": ("dropout 0.5 on FC6, FC7 (§4.2)", {"model.kwargs.dropout": 0.0}, "substantial overfitting"),
    "no-augment": ("pad-4 crop + flip (§4.1)", {"data.crop_padding": 0, "data.flip": False},
                   "substantial overfitting"),
    "no-lrn":     ("LRN after conv1, conv2 (§3.3)", {"model.kwargs.lrn": False},
                   "+1.4 top-1 (CIFAR-10: 11% -> 13%)"),
    "no-overlap": ("3x3/2 pooling -> 2x2/2 (§3.4)", {"model.kwargs.overlap": False}, "+0.4 top-1, overfits more"),
}
NAMES = {"no-dropout": "dropout", "no-augment": "augmentation", "no-lrn": "LRN", "no-overlap": "overlapping pooling"}
CLAIMS = {  # the sub-claim each ablation tests, by label
    "no-dropout": "without dropout the train-test gap widens (§4.2)",
    "no-augment": "without augmentation the train-test gap widens (§4.1)",
    "no-lrn": "without LRN the test error rises (§3.3)",
    "no-overlap": "without overlapping pooling the test error rises (§3.4)",
}
DATA_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
REGULARISERS = ("no-dropout", "no-augment")  # judged by the train-test gap, once the reference overfits
ARCHITECTURE = ("no-lrn", "no-overlap")  # judged by the test error
PAPER_EFFECT = {"no-lrn": "+1.4 top-1 on ImageNet; 11% -> 13% on CIFAR-10 with a four-layer net",
                "no-overlap": "+0.4 top-1 on ImageNet"}
FIT_GAP = 10.0
"""Points: the reference "fits its training set" when its clean training error is at least this far below its test
error (mean over seeds); only then are the dropout and augmentation sub-claims judged."""

EIGHTH = [12, 32, 48, 48, 32]  # an eighth of the paper's 96-256-384-384-256
HIDDEN = 1024  # FC6 / FC7 units (the paper: 4,096)
# The shrunk modes, quick and standard: the same runs, one seed against three.
# Cost, by the project's CPU estimate (about 30-35 GFLOP/s on convolutions on 2 cores, we take 30; a training image
# costs 6 x MACs FLOPs, an evaluated one 2 x MACs): the eighth-width net is 4.88 MMACs (5.72 without overlapping
# pooling, whose maps are larger). Per run 6,000 images x 20 epochs of training (3.51 TFLOP; 4.12 for no-overlap) plus
# 2,000 training-set and 2,000 test images evaluated per epoch (0.78 TFLOP; 0.92): 4.29 TFLOP (5.04). Standard, 5
# variants x 3 seeds: 12 x 4.29 + 3 x 5.04 = 66.6 TFLOP, 37 min at 30 GFLOP/s (34 at 33), inside 45 with margin. Quick,
# one seed: 22.2 TFLOP, 12 min. :func:`budget_minutes` recomputes this from the nets' counted MACs. The issue's example,
# quarter width (13.9 MMACs) on 8,000 images for 25 epochs, would take about 170 min; 8,000 images for 20 epochs at
# eighth width about 47 min: so 6,000 images, 20 epochs. Batch 32 instead of the recipe's 128 gives 3,740 steps
# instead of 935 at the same cost per image by this estimate (the old quick mode ran batch 32 at about the estimate).
SHRUNK: dict[str, Any] = {
    "train.epochs": 20, "data.train_subset": 6000, "data.test_subset": 2000, "data.batch_size": 32,
    "model.kwargs.widths": EIGHTH, "model.kwargs.hidden": HIDDEN}
GFLOPS = CPU_GFLOPS  # measures.py's planning figure (GFLOP/s)
MODES: dict[str, dict[str, Any]] = {
    "smoke": {"seeds": [0], "train_eval": 256, "overrides": {
        "train.epochs": 1, "data.train_subset": 256, "data.test_subset": 200, "data.batch_size": 64,
        "model.kwargs.widths": [8, 16, 16, 16, 16], "model.kwargs.hidden": 64}},
    "quick": {"seeds": [0], "train_eval": 2000, "overrides": SHRUNK},
    "standard": {"seeds": [0, 1, 2], "train_eval": 2000, "overrides": SHRUNK},
    "full": {"seeds": [0, 1, 2], "train_eval": 5000, "overrides": {}},
}


def _macs(widths: Sequence[int], hidden: int, overlap: bool) -> int:
    """Multiply-adds per 32x32 image of the recipe's net at these widths (counted on the meta device)."""
    import torch

    from ..measure import count_macs
    from ..models import create_model

    with torch.device("meta"):
        model = create_model("alexnet", num_classes=10, stem="cifar", img_size=32, init="kaiming",
                             widths=list(widths), hidden=hidden, overlap=overlap)
    return count_macs(model, (3, 32, 32))


def budget_minutes(mode: str, gflops: float = GFLOPS) -> float:
    """The mode's training time by the CPU estimate (see :data:`SHRUNK`): every run's training images at 6 x MACs
    FLOPs each, its per-epoch training-set and test evaluations at 2 x MACs, at ``gflops``."""
    m = MODES[mode]
    o = {**{"train.epochs": 20, "data.train_subset": 50_000, "data.test_subset": 10_000,
            "model.kwargs.widths": [96, 256, 384, 384, 256], "model.kwargs.hidden": 4096}, **m["overrides"]}
    per_image = {ov: _macs(o["model.kwargs.widths"], o["model.kwargs.hidden"], ov) for ov in (True, False)}
    evaluated = min(m["train_eval"], o["data.train_subset"]) + o["data.test_subset"]
    flops = 0.0
    for _, overrides, _ in VARIANTS.values():
        macs = per_image[overrides.get("model.kwargs.overlap", True)]
        flops += len(m["seeds"]) * o["train.epochs"] * macs * (6 * o["data.train_subset"] + 2 * evaluated)
    return flops / (gflops * 1e9) / 60


def setup(mode: str) -> Setup:
    m = MODES[mode]
    limit = m["train_eval"]
    runs = [RunSpec(label, "alexnet", recipe=RECIPE, overrides=overrides,
                    callbacks=lambda: [TrainSetError(limit=limit)])
            for label, (_, overrides, _) in VARIANTS.items()]
    notes = [f"Every run is `{RECIPE}` (two-tower AlexNet with LRN, overlapping pooling and dropout 0.5; CIFAR stem "
             "5x5/1 conv1 and He init, as the model file explains; SGD at the recipe's learning rate 0.01, momentum "
             "0.9, weight decay 5e-4, one-cycle to zero; pad-4 crop + flip) with one ingredient switched off. The "
             "paper's other augmentation, PCA colour noise, is in no run. No learning rate is tuned: every variant "
             "runs at the recipe's.",
             f"Seed{'s' if len(m['seeds']) > 1 else ''} {', '.join(map(str, m['seeds']))} for every variant: a seed "
             "gives every variant the same training subset, initial weights (where the layer shapes agree) and batch "
             "order (`no-augment`'s drifts after the first epoch: it draws no crops or flips from the loader's "
             "generator), so differences between variants are tested paired by seed (a paired t-test at 95%). The "
             "test images are the same for all.",
             f"Training error is measured like the test error, on plain training images in eval mode (dropout off), "
             f"at the end of each epoch, on a fixed sample of {limit:,} of each run's training images; the loop's "
             "own running training error (augmented batches, dropout on) is shown beside it. The dropout and "
             f"augmentation sub-claims are judged only if the reference fits its training set: its clean training "
             f"error at least {FIT_GAP:g} points below its test error, averaged over seeds.",
             "`no-overlap` is not the paper's like-for-like swap at 32x32: with the CIFAR stem, 2x2/2 pooling gives "
             "16/8/4-pixel maps where 3x3/2 gives 15/7/3, so its conv3-5 see 31% more positions and FC6 reads 4,096 "
             "inputs instead of 2,304 (at the paper's 227x227 both give 27/13/6)."]
    if mode in ("quick", "standard"):
        o = m["overrides"]
        steps = o["data.train_subset"] // o["data.batch_size"] * o["train.epochs"]
        notes.append(
            f"**Shrunk:** conv widths {'-'.join(map(str, EIGHTH))} (an eighth of 96-256-384-384-256) and FC6/FC7 of "
            f"{HIDDEN:,} instead of 4,096 units; {o['train.epochs']} epochs on a class-balanced "
            f"{o['data.train_subset']:,}-image training subset (a seed draws its own) with batch "
            f"{o['data.batch_size']} (128 in the recipe: smaller batches give the net {steps:,} steps to fit in, "
            f"at the same estimated cost per image), test on {o['data.test_subset']:,} images; "
            f"{len(m['seeds'])} seed{'s' if len(m['seeds']) > 1 else ''}"
            + (" (quick is the standard mode's seed 0)" if mode == "quick" else "") + ". "
            f"Budget by the CPU estimate ({GFLOPS:g} GFLOP/s, 6 x MACs per training image, 2 x MACs per evaluated "
            f"one): about {budget_minutes(mode):.0f} minutes. The issue's example, quarter width on about 8,000 "
            "images for about 25 epochs, would take about 170 minutes by the same estimate, and 8,000 images for "
            "20 epochs at eighth width about 47: we cut the width to an eighth and the images to 6,000, keeping 20 "
            "epochs (passes over each image are what let a net overfit). The paper trained 90 epochs on 1.2 million "
            "224x224 images.")
    elif mode == "smoke":
        notes.append("Smoke test: 256 images, one epoch, a tiny net; the numbers mean nothing.")
    else:
        notes.append("The recipe as shipped: 20 epochs on all 50,000 training images, full widths, three seeds.")
    return Setup(runs=runs, overrides=m["overrides"], seeds=list(m["seeds"]), notes=notes)


# --- reading the runs ---------------------------------------------------------------------------------------------

Final = Mapping[str, Mapping[int, tuple[float, float]]]
"""Per variant, per seed: (clean training error %, test error %) at the end of training."""


def _paired(final: Final, a: str, b: str, value: int) -> tuple[list[float], list[float], list[int]]:
    """``value`` (0: training error, 1: test error, 2: their gap, test - train) of ``a`` and ``b`` on their common
    seeds, in seed order."""
    seeds = sorted(set(final[a]) & set(final[b]))

    def pick(label: str, s: int) -> float:
        train, test = final[label][s]
        return (train, test, test - train)[value]

    return [pick(a, s) for s in seeds], [pick(b, s) for s in seeds], seeds


def _values(final: Final, label: str, value: int) -> list[float]:
    return [(t, e, e - t)[value] for t, e in (final[label][s] for s in sorted(final[label]))]


def claims(final: Final, n_test: int) -> list[SubClaim]:
    """The four sub-claims from each variant's final (training, test) error per seed; ``n_test`` test images (for
    the sampling error shown beside the seed test). Dropout and augmentation: the gap (test - train) widens when they
    are off, judged only when the reference's mean gap is at least :data:`FIT_GAP`. LRN and overlapping pooling:
    the test error rises when they are off."""
    if REFERENCE not in final or not final[REFERENCE]:
        return [SubClaim(CLAIMS[k], NOT_TESTABLE, "the reference (`full`) did not finish",
                         mechanism=k in REGULARISERS) for k in CLAIMS]
    ref_gap = spread(_values(final, REFERENCE, 2))
    fits = ref_gap.mean >= FIT_GAP
    out = []
    for label, name in CLAIMS.items():
        if label not in final or not final[label]:
            out.append(SubClaim(name, NOT_TESTABLE, f"`{label}` did not finish", mechanism=label in REGULARISERS))
            continue
        if label in REGULARISERS:
            a, b, seeds = _paired(final, label, REFERENCE, 2)
            c = compare(a, b, paired=True)
            ta, tb, _ = _paired(final, label, REFERENCE, 1)
            evidence = (f"gap (test - train) {spread(a).describe()} points without {NAMES[label]} against "
                        f"{spread(b).describe()} with it; difference {c.describe()} (test error "
                        f"{spread(ta).describe()}% vs {spread(tb).describe()}%)")
            why = (f"the reference does not fit its training set: its gap is {ref_gap.describe()} points, under the "
                   f"{FIT_GAP:g} the claim needs, so there is little overfitting for {NAMES[label]} to prevent "
                   f"(measured anyway: {evidence})")
            out.append(judge(name, c, expect=1, evidence=evidence, mechanism=True, reached=fits,
                             why_not_reached=why))
        else:
            a, b, seeds = _paired(final, label, REFERENCE, 1)
            c = compare(a, b, paired=True)
            noise = sampling_error(statistics.fmean(b), n_test)
            evidence = (f"test error {spread(a).describe()}% without {NAMES[label]} against {spread(b).describe()}% "
                        f"with it; difference {c.describe()}; the paper: {PAPER_EFFECT[label]}; one standard error of "
                        f"a difference from test-set sampling alone ({n_test:,} images): {noise:.1f} points")
            out.append(judge(name, c, expect=1, evidence=evidence))
    return out


def analyse(ctx: Context) -> Analysis:
    final: dict[str, dict[int, tuple[float, float]]] = {}
    curves: dict[str, list[tuple[list[int], list[float], list[float]]]] = {}
    info: dict[str, dict[str, Any]] = {}
    rows = []
    for spec in ctx.setup.runs:
        label = spec.label
        what, _, paper = VARIANTS[label]
        running, conv = [], []
        for o in ctx.runs(label):
            clean, epochs = ctx.records(o, "train_eval"), ctx.records(o, "epoch")
            if o.summary is None or not clean or not epochs:
                continue
            train = [100 * r["error"] for r in clean]
            final.setdefault(label, {})[o.planned.seed] = (train[-1], 100 * (1 - o.summary["final_test_acc"]))
            curves.setdefault(label, []).append(([r["epoch"] for r in clean], train,
                                                 [100 * (1 - e["test_acc"]) for e in epochs]))
            running.append(100 * (1 - epochs[-1]["train_acc"]))
            conv.append(ctx.convergence(o, train))
            info[label] = {"params": o.summary["params"], "macs": o.summary.get("macs")}
        if label not in final:
            rows.append({"variant": label, "switched off": what, "status": "failed"})
            continue
        train, test, gap = (_values(final, label, v) for v in (0, 1, 2))
        rows.append({
            "variant": label, "switched off": what, "params": f"{info[label]['params']:,}",
            "MMACs": round(info[label]["macs"] / 1e6, 2) if info[label]["macs"] else None,
            "seeds": len(train), "train err %": spread(train).describe(), "test err %": spread(test).describe(),
            "gap (test - train)": spread(gap).describe(),
            "running train err %": spread(running).describe(),
            "test err by seed": " / ".join(f"{x:.1f}" for x in test),
            "converged": f"{sum(c.converged for c in conv)}/{len(conv)}",
            "paper (ImageNet)": paper, "status": "ok",
        })
        info[label]["conv"] = conv
    n_test = ctx.setup.overrides.get("data.test_subset") or 10_000
    subclaims = claims(final, n_test)
    verdict, reason = decide(subclaims)
    findings = [c.line() for c in subclaims] + _findings(final, info, curves)
    figures = []
    if curves:
        figures.append(Figure("train_test_curves.png", "Training error (solid; plain training images, eval mode) and "
                              "test error (dashed) per epoch, each variant (red) against the full recipe (grey): the "
                              "mean over seeds, the band from the lowest to the highest seed. Overfitting is the gap "
                              "between a variant's two lines.", _curves_figure(curves)))
    ok = [r["variant"] for r in rows if r.get("status") == "ok"]
    if ok:
        figures.append(Figure("errors.png", "Final training error (eval mode), test error and their gap per variant; "
                              "bars are the mean over seeds, dots the seeds.",
                              plots.seed_bars(ok, {
                                  "train err %": [_values(final, v, 0) for v in ok],
                                  "test err %": [_values(final, v, 1) for v in ok],
                                  "gap (test - train)": [_values(final, v, 2) for v in ok],
                              }, "error (%)")))
    columns = ["variant", "switched off", "params", "MMACs", "seeds", "train err %", "test err %",
               "gap (test - train)", "running train err %", "test err by seed", "converged", "paper (ImageNet)",
               "status"]
    rows = [{c: r.get(c) for c in columns} for r in rows]  # one set of columns for results.csv
    return Analysis(rows=rows, verdict=verdict, reason=reason, columns=columns, findings=findings, figures=figures,
                    answer=answer(subclaims, final, ctx.setup.overrides, len(ctx.setup.seeds),
                                  ctx.setup.data or ""))


def _findings(final: Final, info: Mapping[str, Mapping[str, Any]],
              curves: Mapping[str, list[tuple[list[int], list[float], list[float]]]]) -> list[str]:
    """What the sub-claims leave out: the reference's fit, the regularisers' effect on test error, overlapping
    pooling's "slightly more difficult to overfit", convergence, and dropout's slower fit."""
    out = []
    if REFERENCE in final:
        tr, te, gap = (spread(_values(final, REFERENCE, v)) for v in (0, 1, 2))
        out.append(f"The reference (`{REFERENCE}`) ends at {tr.describe()}% clean training error and {te.describe()}% "
                   f"test error (mean ± seed standard deviation): a gap of {gap.describe()} points, "
                   + ("enough to judge dropout and augmentation" if gap.mean >= FIT_GAP else
                      f"under the {FIT_GAP:g} needed to judge dropout and augmentation") + ".")
        for label in REGULARISERS:
            if label in final:
                a, b, _ = _paired(final, label, REFERENCE, 1)
                out.append(f"Test error without {NAMES[label]}: {compare(a, b, paired=True).describe()} against the "
                           "reference (not a sub-claim: the paper's claim is about overfitting).")
        if "no-overlap" in final:
            a, b, _ = _paired(final, "no-overlap", REFERENCE, 2)
            out.append("Overlapping pooling and overfitting (§3.4: nets with it are \"slightly more difficult to "
                       f"overfit\"; not judged): the gap without it differs by {compare(a, b, paired=True).describe()}."
                       + _bigger(info.get("no-overlap", {}), info.get(REFERENCE, {})))
    conv = {k: v["conv"] for k, v in info.items() if "conv" in v}
    if conv:
        missed = next((c.why for cs in conv.values() for c in cs if not c.converged), None)
        out.append("Converged (schedule ended, learning rate decayed, the last quarter improved clean training error "
                   "by under 2 points): " + ", ".join(f"{k} {sum(c.converged for c in cs)}/{len(cs)}"
                                                      for k, cs in conv.items())
                   + (f"; e.g. {missed}." if missed else "."))
    if REFERENCE in curves and "no-dropout" in curves:
        out.append(_slowdown(curves[REFERENCE][0], curves["no-dropout"][0]))
    return out


def first_epoch_at(epochs: list[int], errors: list[float], level: float) -> int | None:
    """The first epoch whose error is at or below ``level`` (None if none is)."""
    return next((e for e, err in zip(epochs, errors, strict=True) if err <= level), None)


def _slowdown(full: tuple[list[int], list[float], list[float]],
              no_dropout: tuple[list[int], list[float], list[float]]) -> str:
    """How much later the net with dropout reaches its final training error than the net without (§4.2: dropout
    "roughly doubles the number of iterations required to converge")."""
    level, last = full[1][-1], full[0][-1]
    at = first_epoch_at(no_dropout[0], no_dropout[1], level)
    paper = "(the paper: dropout \"roughly doubles the number of iterations required to converge\")"
    if at is None:
        return (f"Without dropout the training error never falls to the full recipe's final {level:.1f}% (first seed) "
                f"{paper}.")
    return (f"Without dropout the training error reaches the full recipe's final {level:.1f}% (first seed) at epoch "
            f"{at}, where the full recipe needs all {last}: dropout slows the fit {last / at:.1f}x here {paper}.")


def _bigger(variant: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    """A note when a variant is not the same size as the reference (2x2 pooling at 32x32 keeps larger maps)."""
    if not variant or not ref or (variant.get("params"), variant.get("macs")) == (ref.get("params"), ref.get("macs")):
        return ""
    macs = (f" and {variant['macs'] / 1e6:.2f} MMACs against {ref['macs'] / 1e6:.2f}"
            if variant.get("macs") and ref.get("macs") else "")
    return (f" At 32x32 it is not the paper's like-for-like swap: its larger maps give it {variant['params']:,} "
            f"parameters against {ref['params']:,}{macs} (see Setup).")


# --- the answer ---------------------------------------------------------------------------------------------------

def answer(subclaims: Sequence[SubClaim], final: Final, overrides: Mapping[str, Any], n_seeds: int,
           data: str = "cifar10") -> str:
    """The report's first paragraph: which ingredients mattered here, in plain words, then what the paper found."""
    by = dict(zip(CLAIMS, subclaims)) if len(subclaims) == len(CLAIMS) else {}
    widths = overrides.get("model.kwargs.widths")
    net = ("an eighth-width AlexNet" if list(widths) == EIGHTH else "a narrowed AlexNet") if widths else \
        "the full-width CIFAR AlexNet"
    images = f"{overrides['data.train_subset']:,}" if overrides.get("data.train_subset") else "all"
    epochs = overrides.get("train.epochs", 20)
    scale = (f"{net} trained on {images} {DATA_NAMES.get(data, data)} training images for {epochs} "
             f"epoch{'s' if epochs != 1 else ''}, {n_seeds} seed{'s' if n_seeds > 1 else ''} per variant")
    noise = "within seed noise" if n_seeds > 1 else "with the seed noise unmeasured"
    if not by or REFERENCE not in final:
        return f"**Answer.** Not measured: the reference run did not finish ({scale})."

    def diff(label: str, value: int) -> float:
        if label not in final:
            return float("nan")
        a, b, _ = _paired(final, label, REFERENCE, value)
        return statistics.fmean(x - y for x, y in zip(a, b)) if a else float("nan")

    mattered, parts = [], []
    for label in REGULARISERS:
        c, name, d = by[label], NAMES[label], diff(label, 2)
        if c.status == HOLDS:
            mattered.append(name)
            parts.append(f"without {name} the net overfit more: the gap between its training and test error grew by "
                         f"{d:.1f} points (its test error moved {diff(label, 1):+.1f})")
        elif c.status == OPPOSITE:
            parts.append(f"without {name} the gap shrank by {-d:.1f} points, against the paper")
        elif c.status == WITHIN_NOISE:
            parts.append(f"without {name} the gap changed by {d:+.1f} points, {noise}")
    unjudged = [k for k in REGULARISERS if by[k].status == NOT_REACHED]
    if unjudged:
        gap = spread(_values(final, REFERENCE, 2))
        parts.append(f"whether {_join([NAMES[k] for k in unjudged])} prevent{'s' if len(unjudged) == 1 else ''} "
                     f"overfitting could not be judged: the full recipe did not fit its training set (its test error "
                     f"only {gap.mean:.1f} points above its training error, under the {FIT_GAP:g} we ask for), so "
                     "there was little overfitting to prevent; the gap changed by "
                     + " and ".join(f"{diff(k, 2):+.1f} points without {NAMES[k]}" for k in unjudged))
    for label in ARCHITECTURE:
        c, name, d = by[label], NAMES[label], diff(label, 1)
        if c.status == HOLDS:
            mattered.append(name)
            parts.append(f"without {name} the test error rose by {d:.1f} points")
        elif c.status == OPPOSITE:
            parts.append(f"without {name} the test error fell by {-d:.1f} points, against the paper")
        elif c.status == WITHIN_NOISE:
            parts.append(f"without {name} the test error moved {d:+.1f} points, {noise}")
    if mattered:
        lead = f"{_join(mattered)} mattered, beyond seed noise"
        lead = lead[0].upper() + lead[1:]
    elif n_seeds < 2:
        lead = "With one seed the seed noise is not measured, so no difference can count as a finding"
    else:
        lead = "No ingredient made a difference beyond seed noise"
    text = f"**Answer.** At this scale ({scale}): {lead}. In detail, " + "; ".join(parts) + ". "
    text += ("The paper found that without dropout its net \"exhibits substantial overfitting\" (§4.2) and without "
             "augmentation it \"suffers from substantial overfitting\" (§4.1), its reason for both; that LRN cut "
             "top-1 error by 1.4 points on ImageNet and a four-layer net's CIFAR-10 test error from 13% to 11% "
             "(§3.3); and that overlapping pooling cut top-1 error by 0.4 points (§3.4). Those two are effects of a "
             "point or so, where without augmentation the paper would have been \"forced to use much smaller "
             "networks\" (§4.1). Of the ingredients already in place in 2012, augmentation stayed in "
             "every later net; dropout stayed in VGG's and GoogLeNet's heads, but ResNet trained without it (with "
             "batch norm); LRN was dropped: VGG found it did not help (A-LRN 29.7% top-1 error against A's 29.6%, "
             "Table 3), and the batch-norm paper removed it from Inception as unnecessary (Ioffe & Szegedy 2015, "
             "§4.2.1; verify). ReLU is the `relu-vs-tanh` experiment's question.")
    return text


def _join(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# --- figures ------------------------------------------------------------------------------------------------------

def _curves_figure(curves: Mapping[str, list[tuple[list[int], list[float], list[float]]]]) -> Any:
    """One panel per ablation: its training (solid) and test (dashed) error against the reference's (grey), the mean
    over seeds with a band from the lowest to the highest seed."""
    plt = plots.pyplot()
    others = [label for label in curves if label != REFERENCE]
    ncols = max(1, min(2, len(others)))
    nrows = max(1, -(-len(others) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.5 * nrows), sharey=True, squeeze=False)
    for ax in axes.flat[len(others):]:
        ax.set_visible(False)
    for ax, label in zip(axes.flat, others):
        for name, colour in ((REFERENCE, "0.55"), (label, "C3")):
            runs = curves.get(name, [])
            if not runs:
                continue
            n = min(len(r[0]) for r in runs)
            x = runs[0][0][:n]
            for k, style in ((1, "-"), (2, "--")):
                ys = [r[k][:n] for r in runs]
                mean = [statistics.fmean(v) for v in zip(*ys)]
                ax.plot(x, mean, style, color=colour, lw=1.6, label=f"{name} {'train' if k == 1 else 'test'}")
                if len(ys) > 1:
                    ax.fill_between(x, [min(v) for v in zip(*ys)], [max(v) for v in zip(*ys)], color=colour,
                                    alpha=0.18, lw=0)
        ax.set_title(label)
        plots.label_axes(ax, "epoch", "error (%)", legend=7)
    fig.tight_layout()
    return fig


EXPERIMENT = register(Experiment(
    name="alexnet-ablations",
    question="Which of AlexNet's ingredients (dropout, augmentation, LRN, overlapping pooling) matter?",
    claim="Without dropout, and without data augmentation, the net overfits substantially; LRN lowers top-1 / top-5 "
          "error by 1.4 / 1.2 points (a four-layer CNN's CIFAR-10 test error 13% -> 11%); overlapping pooling "
          "lowers them by 0.4 / 0.3 points and makes the net slightly harder to overfit. Dropout roughly doubles the "
          "iterations needed to converge.",
    source="Krizhevsky, Sutskever, Hinton, NIPS 2012, §3.3, §3.4, §4.1, §4.2",
    measured={"standard": Measured(87, AVX2_EPYC, "the 15 runs' own wall time summed; the 7 that ran alone took as "
                                   "long as those beside test runs; the CPU estimate said 37", over_budget=True)},
    full_cost="5 variants x 3 seeds x 20 epochs of CIFAR-10 with the full-width CIFAR AlexNet (0.2 GMACs per "
              "image): about 1 GPU-hour",
    setup=setup,
    analyse=analyse,
    datasets=("cifar10", "cifar100"),
))
