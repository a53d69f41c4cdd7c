"""``alexnet-ablations``: which of AlexNet's ingredients matter, one switched off at a time?

Krizhevsky et al. 2012 (NIPS), §3-4. Without dropout the net "exhibits substantial overfitting" (§4.2), and without
the translations and reflections of its data augmentation it "suffers from substantial overfitting" (§4.1). Local
response normalisation cut top-1 / top-5 error by 1.4 / 1.2 points on ImageNet, and a four-layer CNN's CIFAR-10 test
error from 13% to 11% (§3.3). Overlapping pooling (3x3 windows, stride 2) cut them by 0.4 / 0.3 points against 2x2
windows of stride 2, and nets with it were "slightly more difficult to overfit" (§3.4).

We train the registered ``alexnet`` with its CIFAR-10 recipe (``cifar10_alexnet``: CIFAR stem, He init, pad-4 crop +
flip, the paper's SGD) and four copies with one ingredient off, and measure each one's *training* error the way the
test error is measured (plain images, eval mode: :class:`~milestones.experiments.measures.TrainSetError`) as well as
its test error, so that overfitting shows as the gap between the two.
"""

from __future__ import annotations

import statistics
from typing import Any

from . import plots
from .base import EPYC_BF16, Analysis, Context, Experiment, Figure, Measured, RunSpec, Setup, register
from .measures import TrainSetError, describe_noise, noise_threshold

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
NOISE_FLOOR = 1.0  # points: single-seed differences below this are noise at any of our scales

QUICK_WIDTHS = [12, 32, 48, 48, 32]  # an eighth of the paper's 96-256-384-384-256
MODES: dict[str, dict[str, Any]] = {
    "quick": {"seeds": [0], "reference_seeds": [0, 1], "overrides": {
        "train.epochs": 30, "data.train_subset": 1000, "data.test_subset": 1000, "data.batch_size": 32,
        "model.kwargs.widths": QUICK_WIDTHS, "model.kwargs.hidden": 1024}},
    "full": {"seeds": [0, 1, 2], "reference_seeds": None, "overrides": {}},
    "smoke": {"seeds": [0], "reference_seeds": None, "overrides": {
        "train.epochs": 1, "data.train_subset": 256, "data.test_subset": 200, "data.batch_size": 64,
        "model.kwargs.widths": [8, 16, 16, 16, 16], "model.kwargs.hidden": 64}},
}


def setup(mode: str) -> Setup:
    m = MODES[mode]
    limit = min(m["overrides"].get("data.train_subset") or 5000, 5000)
    runs = [RunSpec(label, "alexnet", recipe=RECIPE, overrides=overrides,
                    callbacks=lambda: [TrainSetError(limit=limit)],
                    seeds=m["reference_seeds"] if label == REFERENCE else None)
            for label, (_, overrides, _) in VARIANTS.items()]
    notes = [f"Every run is `{RECIPE}` (two-tower AlexNet with LRN, overlapping pooling and dropout 0.5; CIFAR stem "
             "5x5/1 conv1 and He init, as the model file explains; SGD lr 0.01, momentum 0.9, weight decay 5e-4, "
             "batch 128, one-cycle; pad-4 crop + flip) with one ingredient switched off. The paper's other "
             "augmentation, PCA colour noise, is in no run.",
             "Training error is measured like the test error, on plain training images in eval mode (dropout off), at "
             "the end of each epoch" + (f", on all {limit:,} training images" if mode != "full" else
                                         ", on a fixed sample of 5,000 training images") + "; the loop's own running "
             "training error (augmented batches, dropout on) is shown beside it.",
             "`no-overlap` is not the paper's like-for-like swap at 32x32: with the CIFAR stem, 2x2/2 pooling gives "
             "16/8/4-pixel maps where 3x3/2 gives 15/7/3, so its conv3-5 see 31% more positions and FC6 reads 4,096 "
             "inputs instead of 2,304 (at the paper's 227x227 both give 27/13/6)."]
    if mode == "quick":
        o = m["overrides"]
        notes += [f"**Shrunk:** conv widths {'-'.join(map(str, QUICK_WIDTHS))} (an eighth of 96-256-384-384-256) "
                  f"and FC6/FC7 of 1,024 instead of 4,096 units; {o['train.epochs']} epochs on a class-balanced "
                  f"{o['data.train_subset']:,}-image training subset with batch {o['data.batch_size']} (128 in the "
                  f"recipe; {o['data.train_subset'] // o['data.batch_size'] * o['train.epochs']} steps in all), "
                  f"test on {o['data.test_subset']:,} images. One seed per variant, and a second seed of `full` to "
                  "measure the noise (a seed also draws its own training subset and initial weights). The paper "
                  "trained 90 epochs on 1.2 million 224x224 images."]
    elif mode == "smoke":
        notes += ["Smoke test: 256 images, one epoch, a tiny net; the numbers mean nothing."]
    else:
        notes += ["The recipe as shipped: 20 epochs on all 50,000 training images, full widths, three seeds."]
    return Setup(runs=runs, overrides=m["overrides"], seeds=m["seeds"], notes=notes)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def analyse(ctx: Context) -> Analysis:
    per_seed, curves, rows = {}, {}, []
    for spec in ctx.setup.runs:
        what, _, paper = VARIANTS[spec.label]
        done = [o for o in ctx.runs(spec.label) if o.summary is not None]
        measured = []
        for o in done:
            clean = ctx.records(o, "train_eval")
            epochs = ctx.records(o, "epoch")
            if not clean or not epochs:
                continue
            measured.append({"seed": o.planned.seed, "params": o.summary["params"], "macs": o.summary.get("macs"),
                             "train": 100 * clean[-1]["error"], "test": 100 * (1 - o.summary["final_test_acc"]),
                             "running": 100 * (1 - epochs[-1]["train_acc"])})
            if o.planned.seed == min(d.planned.seed for d in done):
                curves[spec.label] = ([r["epoch"] for r in clean], [100 * r["error"] for r in clean],
                                      [100 * (1 - e["test_acc"]) for e in epochs])
        per_seed[spec.label] = measured
        if not measured:
            rows.append({"variant": spec.label, "switched off": what, "status": "failed"})
            continue
        train, test = _mean([m["train"] for m in measured]), _mean([m["test"] for m in measured])
        rows.append({
            "variant": spec.label, "switched off": what, "params": f"{measured[0]['params']:,}",
            "MMACs": round(measured[0]["macs"] / 1e6, 1) if measured[0]["macs"] else None,
            "train err %": round(train, 2), "test err %": round(test, 2), "gap (test - train)": round(test - train, 2),
            "running train err %": round(_mean([m["running"] for m in measured]), 2),
            "test err by seed": " / ".join(f"{m['test']:.1f}" for m in measured),
            "paper (ImageNet)": paper, "status": "ok",
        })
    spreads = [max(m["test"] for m in ms) - min(m["test"] for m in ms) for ms in per_seed.values() if len(ms) > 1]
    reference = [m["test"] for m in per_seed.get(REFERENCE, [])]
    n_test = ctx.setup.overrides.get("data.test_subset") or 10_000
    noise = noise_threshold(spreads, _mean(reference), n_test, NOISE_FLOOR)
    verdict, reason, findings = _verdict(rows, noise, ctx.mode)
    if REFERENCE in curves and "no-dropout" in curves:
        findings.append(_slowdown(curves[REFERENCE], curves["no-dropout"]))
    figures = []
    if curves:
        figures.append(Figure("train_test_curves.png", "Training error (solid; plain training images, eval mode) and "
                              "test error (dashed) per epoch, each variant (red) against the full recipe (grey), "
                              "first seed. Overfitting is the gap between a run's two lines.",
                              plots.against_reference(curves, REFERENCE, ncols=2)))
    ok = [r["variant"] for r in rows if r.get("status") == "ok"]
    if ok:
        figures.append(Figure("errors.png", "Final training error (eval mode), test error and their gap per variant; "
                              "bars are the mean over seeds, dots the seeds.",
                              plots.seed_bars(ok, {
                                  "train err %": [[m["train"] for m in per_seed[v]] for v in ok],
                                  "test err %": [[m["test"] for m in per_seed[v]] for v in ok],
                                  "gap (test - train)": [[m["test"] - m["train"] for m in per_seed[v]] for v in ok],
                              }, "error (%)")))
    columns = ["variant", "switched off", "params", "MMACs", "train err %", "test err %", "gap (test - train)",
               "running train err %", "test err by seed", "paper (ImageNet)", "status"]
    return Analysis(rows=rows, verdict=verdict, reason=reason, columns=columns, findings=findings, figures=figures)


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


NAMES = {"no-dropout": "dropout", "no-augment": "augmentation", "no-lrn": "LRN", "no-overlap": "overlapping pooling"}


def _classify(effect: float, threshold: float) -> int:
    """+1: the paper's direction beyond the noise; -1: the opposite beyond the noise; 0: within the noise."""
    return 1 if effect > threshold else -1 if effect < -threshold else 0


def _bigger(r: dict[str, Any], ref: dict[str, Any]) -> str:
    """A note when a variant is not the same size as the reference (2x2 pooling at 32x32 keeps larger maps)."""
    if (r.get("params"), r.get("MMACs")) == (ref.get("params"), ref.get("MMACs")):
        return ""
    return (f" But at 32x32 it is not the paper's like-for-like swap: its larger maps give it {r.get('params')} "
            f"parameters and {r.get('MMACs')} MMACs against {ref.get('params')} and {ref.get('MMACs')} (see Setup).")


def _verdict(rows: list[dict[str, Any]], noise: dict[str, Any], mode: str) -> tuple[str, str, list[str]]:
    """Each ingredient's effect against the full recipe: switching off dropout or augmentation should widen the
    train-test gap (they are regularisers), switching off LRN or overlapping pooling should raise the test error. An
    effect counts when it is larger than the noise threshold (the seed spread, at least a point)."""
    by = {r["variant"]: r for r in rows if r.get("status") == "ok"}
    if REFERENCE not in by or len(by) < 2:
        return "not testable here", "the full recipe and at least one ablation must finish", []
    ref, thr = by[REFERENCE], noise["threshold"]
    gap, test = "gap (test - train)", "test err %"
    findings = [describe_noise(noise, f"`{REFERENCE}`")]
    outcome: dict[str, int] = {}
    effects: dict[str, float] = {}
    for label in ("no-dropout", "no-augment"):
        if label in by:
            r = by[label]
            effects[label] = widen = r[gap] - ref[gap]
            outcome[label] = _classify(widen, thr)
            lower = ref[test] - r[test] > thr
            findings.append(
                f"{label}: train-test gap {r[gap]:.1f} points against {ref[gap]:.1f} with {NAMES[label]} "
                f"({widen:+.1f}); training error {r['train err %']:.1f}% vs {ref['train err %']:.1f}%, test error "
                f"{r[test]:.1f}% vs {ref[test]:.1f}%: " + {
                    1: "it overfits more without it, as the paper says",
                    0: "no overfitting beyond the noise that it would prevent",
                    -1: "it overfits less without it, the opposite of the paper"}[outcome[label]]
                + ("; yet its test error is lower: the short schedule ends while the nets still underfit, where "
                   f"fitting faster without {NAMES[label]} counts for more than overfitting less with it." if lower
                   else "."))
    claims = {"no-lrn": (2.0, "+1.4 on ImageNet, +2 on CIFAR-10 with a four-layer net"), "no-overlap": (0.4, "+0.4 on "
              "ImageNet")}  # the largest effect the paper reports, and its words
    for label, (claim, paper) in claims.items():
        if label in by:
            r = by[label]
            effects[label] = worse = r[test] - ref[test]
            outcome[label] = _classify(worse, thr)
            findings.append(
                f"{label}: test error {r[test]:.1f}% against {ref[test]:.1f}% with {NAMES[label]} ({worse:+.1f} "
                f"points; the paper: {paper}); train-test gap {r[gap]:.1f} vs {ref[gap]:.1f}. " + {
                    1: "Worse without it, beyond the noise.",
                    0: "Within the noise, " + ("where the paper's effect would hide anyway." if claim < thr else
                                              "though the paper's effect would have shown."),
                    -1: "Better without it, beyond the noise: the opposite of the paper."}[outcome[label]]
                + (_bigger(r, ref) if label == "no-overlap" else ""))

    def says(label: str) -> str:
        e = effects[label]
        if label in ("no-dropout", "no-augment"):
            moved = f"without {NAMES[label]} the train-test gap {'widens' if e >= 0 else 'narrows'} by {abs(e):.1f}"
        else:
            moved = f"without {NAMES[label]} the test error {'rises' if e >= 0 else 'falls'} by {abs(e):.1f}"
        tail = {1: "", 0: f", within the noise ({thr:.1f})", -1: ", against the paper"}[outcome[label]]
        return f"{moved} points{tail}"

    scale = " (at this small scale)" if mode != "full" else ""
    reason = "; ".join(says(k) for k in outcome) + scale + "."
    reason = reason[0].upper() + reason[1:]
    if len(outcome) == len(NAMES) and all(v == 1 for v in outcome.values()):
        return "reproduced", reason, findings
    if any(v == 1 for v in outcome.values()):
        return "partly reproduced", reason, findings
    return "not reproduced", reason, findings


EXPERIMENT = register(Experiment(
    name="alexnet-ablations",
    question="Which of AlexNet's ingredients (dropout, augmentation, LRN, overlapping pooling) matter?",
    claim="Without dropout, and without data augmentation, the net overfits substantially; LRN lowers top-1 / top-5 "
          "error by 1.4 / 1.2 points (a four-layer CNN's CIFAR-10 test error 13% -> 11%); overlapping pooling "
          "lowers them by 0.4 / 0.3 points and makes the net slightly harder to overfit. Dropout roughly doubles the "
          "iterations needed to converge.",
    source="Krizhevsky, Sutskever, Hinton, NIPS 2012, §3.3, §3.4, §4.1, §4.2",
    # measured alone on the 2-core AMD EPYC, 2 torch threads
    measured={"quick": Measured(5, EPYC_BF16)},
    full_cost="5 variants x 3 seeds x 20 epochs of CIFAR-10 with the full-width CIFAR AlexNet (0.2 GMACs per "
              "image): about 1 GPU-hour",
    setup=setup,
    analyse=analyse,
))
