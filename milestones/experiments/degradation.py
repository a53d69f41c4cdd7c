"""``degradation``: why do deep plain nets train worse, and why don't residual nets?

He et al. 2016 (CVPR), §4.2 and Fig. 6: on CIFAR-10, plain nets of 20, 32, 44 and 56 layers have *higher training
error* the deeper they are, while ResNets of the same depths and the same parameter counts train better the deeper
they are (test error 8.75 / 7.51 / 7.17 / 6.97 %, Table 6). §4.1 says why it is not vanishing gradients: the plain
nets "are trained with BN, which ensures forward propagated signals to have non-zero variances", and "the backward
propagated gradients exhibit healthy norms with BN"; "we conjecture that the deep plain nets may have exponentially
low convergence rates".

We train plain-20/56 and ResNet-20/56 with the paper's optimiser on several seeds (a seed gives every net the same
data order), and measure, per block, the forward signal's standard deviation, the norm of the gradient that reaches
each block's input and each weight's gradient relative to the weight (:class:`~.measures.LayerProfile`), at
initialisation and during training. A plain-56 *without* batch norm shows what vanishing looks like where BN is
absent. The verdict (:func:`~.verdict.decide`) tests each depth comparison by a paired t-test over seeds and takes
§4.1's mechanism as a sub-claim: do the BN plain net's gradients stay within a factor of ten from the last block to
the first?
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from ..train.callbacks import StepMetrics
from . import plots
from .base import AVX2_EPYC, Analysis, Context, Experiment, Figure, Measured, RunSpec, Setup, register
from .measures import LayerProfile, resnet_blocks
from .verdict import HOLDS, NOT_REACHED, OPPOSITE, SubClaim, compare, decide, judge, spread

PAPER_TEST_ERR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97}  # ResNet, Table 6
VANISH = 10.0  # gradients "vanish" when the first block's input gradient is this many times below the last block's
NOBN_LR = 0.01  # the plain-56 without BN: the paper's 0.1 diverges without normalisation (stated in the report)

MODES: dict[str, dict[str, Any]] = {
    "smoke": {"depths": (20,), "seeds": [0], "nobn": False, "every": 2,
              "overrides": {"train.epochs": 1, "data.train_subset": 256, "data.test_subset": 200,
                            "data.batch_size": 64}},
    "quick": {"depths": (20, 56), "seeds": [0], "nobn": True, "every": 39,
              "overrides": {"train.epochs": 5, "data.train_subset": 2500, "data.test_subset": 1000,
                            "schedule.name": "cosine", "schedule.milestones": []}},
    "standard": {"depths": (20, 56), "seeds": [0, 1, 2], "nobn": True, "every": 31,
                 "overrides": {"train.epochs": 10, "data.train_subset": 4000, "data.test_subset": 1000,
                               "schedule.name": "cosine", "schedule.milestones": []}},
    "full": {"depths": (20, 32, 44, 56), "seeds": [0, 1, 2], "nobn": True, "every": 390, "overrides": {}},
}


def _callbacks(every: int):
    return lambda: [StepMetrics(every=5), LayerProfile(resnet_blocks, every=every)]


def setup(mode: str) -> Setup:
    m = MODES[mode]
    runs = [RunSpec(f"{family}{d}", f"{family}{d}", recipe="cifar10_resnet20_full", callbacks=_callbacks(m["every"]))
            for family in ("plain", "resnet") for d in m["depths"]]
    if m["nobn"]:
        deep = max(m["depths"])
        runs.append(RunSpec(f"plain{deep}-nobn", f"plain{deep}", recipe="cifar10_resnet20_full", seeds=[0],
                            overrides={"model.kwargs.norm": False, "optim.lr": NOBN_LR},
                            callbacks=_callbacks(m["every"])))
    notes = ["The paper's optimiser and augmentation for every run (`cifar10_resnet20_full` with the model swapped): "
             "SGD lr 0.1, momentum 0.9, weight decay 1e-4 on every parameter, batch 128, pad-4 crop + flip. A seed "
             "gives every net the same data order and augmentation, so the comparisons are paired by seed.",
             "Training error: the running error over each epoch's augmented batches (as the paper's Fig. 6 plots "
             "it). Per-layer measurements (`LayerProfile`) on the batch of step 1 (the initial weights) and then "
             f"every {m['every']} steps: the output's standard deviation of every block, the norm of the gradient "
             "reaching its input, and ||grad|| / ||w|| of every weight."]
    if m["nobn"]:
        notes.append(f"`plain{max(m['depths'])}-nobn`: the same plain net with every batch norm removed (not in the "
                     f"paper), one seed, lr {NOBN_LR:g} (at 0.1 an unnormalised 56-layer net diverges), to show what "
                     "vanishing or exploding gradients look like where BN is absent.")
    if mode in ("quick", "standard"):
        n = m["overrides"]["data.train_subset"]
        notes.append(f"**Shrunk:** {m['overrides']['train.epochs']} epochs on a class-balanced {n:,}-image subset "
                     f"({m['overrides']['train.epochs'] * (n // 128)} steps of 128), a cosine schedule to zero "
                     "instead of the paper's steps at 32k and 48k of 64k iterations, test on "
                     f"{m['overrides']['data.test_subset']:,} images; depths 20 and 56 only (the ends of the paper's "
                     f"range); {len(m['seeds'])} seed(s). Whether the runs converged is checked and stated.")
    elif mode == "smoke":
        notes.append("Smoke test: 256 images, one epoch; the numbers mean nothing.")
    else:
        notes.append("The paper's full schedule: 164 epochs (64k iterations), lr / 10 at 32k and 48k.")
    return Setup(runs=runs, overrides=m["overrides"], seeds=list(m["seeds"]), notes=notes)


def _train_err(ctx: Context, o: Any) -> list[float]:
    return [100 * (1 - e["train_acc"]) for e in ctx.records(o, "epoch")]


def profile_ratio(record: dict[str, Any]) -> float | None:
    """How many times smaller the gradient reaching the first block's input is than the one reaching the last
    block's (the stem's input is the image, which gets none): above :data:`VANISH` means vanishing."""
    grads = [g for g in record["in_grad"] if g is not None and math.isfinite(g) and g > 0]
    if len(grads) < 2:
        return None
    return grads[-1] / grads[0]


def analyse(ctx: Context) -> Analysis:
    m = MODES[ctx.mode]
    rows, final, curves, profiles, conv = [], {}, {}, {}, {}
    for spec in ctx.setup.runs:
        for o in ctx.runs(spec.label):
            if o.summary is None:
                rows.append({"model": spec.label, "seed": o.planned.seed, "status": o.status})
                continue
            errs = _train_err(ctx, o)
            c = ctx.convergence(o, errs)
            final.setdefault(spec.label, []).append(errs[-1])
            conv.setdefault(spec.label, []).append(c)
            prof = ctx.records(o, "layer_profile")
            if o.planned.seed == ctx.setup.seeds[0] or spec.label.endswith("nobn"):
                steps = ctx.records(o, "step_metrics")
                curves[spec.label] = ([r["step"] for r in steps], [100 * r["error"] for r in steps],
                                      [(e["step"], 100 * (1 - e["test_acc"])) for e in ctx.records(o, "epoch")])
                profiles[spec.label] = prof
            ratios = [r for r in (profile_ratio(p) for p in prof) if r is not None]
            rows.append({
                "model": spec.label, "seed": o.planned.seed, "params": f"{o.summary['params']:,}",
                "train err % (last epoch)": round(errs[-1], 2),
                "test err %": round(100 * (1 - o.summary["final_test_acc"]), 2),
                "grad last/first block (init)": f"{ratios[0]:.2g}" if ratios else None,
                "grad last/first block (end)": f"{ratios[-1]:.2g}" if ratios else None,
                "converged": "yes" if c.converged else "no",
                "status": "ok",
            })
    subclaims = claims(final, conv, profiles)
    verdict, reason = decide(subclaims)
    findings = [c.line() for c in subclaims] + _means(final, ctx)
    figures = []
    if curves:
        figures.append(Figure("training_error.png", "Training error per step (batch error, smoothed; thin: raw) and "
                              "test error per epoch (markers), plain nets left, ResNets right, as in the paper's "
                              "Fig. 6 (first seed).", plots.error_panels(curves, ["plain", "resnet"])))
    if profiles:
        figures.append(Figure("gradient_profile.png", "The gradient reaching each block's input (norm, log scale), "
                              "first block left, last right, at initialisation (dashed) and at the end of training "
                              "(solid), first seed. A line falling steeply to the left would be vanishing "
                              "gradients.", _profile_figure(profiles, "in_grad", "gradient norm at the block's input")))
        figures.append(Figure("forward_std.png", "The standard deviation of each block's output at initialisation "
                              "(dashed) and at the end (solid): the forward signal.",
                              _profile_figure(profiles, "out_std", "std of the block's output")))
    columns = ["model", "seed", "params", "train err % (last epoch)", "test err %", "grad last/first block (init)",
               "grad last/first block (end)", "converged", "status"]
    rows = [{c: r.get(c) for c in columns} for r in rows]
    return Analysis(rows=rows, verdict=verdict, reason=reason, columns=columns, findings=findings, figures=figures,
                    answer=_answer(final, profiles, subclaims, m))


def claims(final: dict[str, list[float]], conv: dict[str, list[Any]],
           profiles: dict[str, list[dict[str, Any]]]) -> list[SubClaim]:
    """Four sub-claims: the deeper plain net trains worse; the deeper ResNet trains at least as well (only once
    converged); at the deeper depth the ResNet trains better than the plain net; and §4.1's mechanism, that the BN
    plain net's gradients do not vanish."""
    depths = sorted({int(k.removeprefix("plain").removeprefix("resnet")) for k in final if "nobn" not in k})
    if len(depths) < 2 or not all(f"{f}{d}" in final for f in ("plain", "resnet") for d in depths[::len(depths) - 1]):
        return [SubClaim("deeper plain nets train worse", "not testable here", "needs two depths of each family")]
    lo, hi = depths[0], depths[-1]

    def paired(a: str, b: str) -> Any:
        n = min(len(final[a]), len(final[b]))
        return compare(final[a][:n], final[b][:n], paired=True)

    def says(c: Any, a: str, b: str) -> str:
        return (f"training error {a} {spread(final[a]).describe(2)}% vs {b} {spread(final[b]).describe(2)}%; "
                f"difference {c.describe(digits=2)}")

    out = []
    c = paired(f"plain{hi}", f"plain{lo}")
    out.append(judge(f"plain-{hi} trains worse than plain-{lo}", c, expect=1, evidence=says(c, f"plain{hi}",
                                                                                         f"plain{lo}")))
    c = paired(f"resnet{hi}", f"resnet{lo}")
    done = all(x.converged for x in conv.get(f"resnet{hi}", []) + conv.get(f"resnet{lo}", []))
    why = next((x.why for x in conv.get(f"resnet{hi}", []) + conv.get(f"resnet{lo}", []) if not x.converged), "")
    out.append(judge(f"resnet-{hi} trains better than resnet-{lo}", c, expect=-1,
                     evidence=says(c, f"resnet{hi}", f"resnet{lo}"), reached=done,
                     why_not_reached=f"{says(c, f'resnet{hi}', f'resnet{lo}')}; not converged ({why}), and the "
                                     "deeper net needs longer to fit"))
    c = paired(f"resnet{hi}", f"plain{hi}")
    out.append(judge(f"at {hi} layers the residual net trains better than the plain one", c, expect=-1,
                     evidence=says(c, f"resnet{hi}", f"plain{hi}")))
    prof = profiles.get(f"plain{hi}") or []
    ratios = [r for r in (profile_ratio(p) for p in prof) if r is not None]
    if not ratios:
        out.append(SubClaim("the BN plain net's gradients do not vanish (§4.1)", NOT_REACHED, "not measured",
                            mechanism=True))
    else:
        worst = max(ratios)
        status = HOLDS if worst < VANISH else OPPOSITE
        out.append(SubClaim("the BN plain net's gradients do not vanish (§4.1)", status,
                            f"plain-{hi}: the gradient reaching the last block's input is {ratios[0]:.2g}x the "
                            f"first block's at initialisation and {ratios[-1]:.2g}x at the end (largest "
                            f"{worst:.2g}x over {len(ratios)} measurements; vanishing would be {VANISH:g}x or more)",
                            mechanism=True))
    return out


def _means(final: dict[str, list[float]], ctx: Context) -> list[str]:
    nobn = [k for k in final if k.endswith("nobn")]
    out = []
    for k in nobn:
        out.append(f"{k} (lr {NOBN_LR:g}, one seed) ends at {final[k][0]:.1f}% training error.")
    return out


def _answer(final: dict[str, list[float]], profiles: dict[str, list[dict[str, Any]]], subclaims: list[SubClaim],
            m: dict[str, Any]) -> str:
    hi, lo = max(m["depths"]), min(m["depths"])
    if hi == lo or f"plain{hi}" not in final or f"plain{lo}" not in final:
        return "**Answer.** This mode trains one depth only, so it cannot answer; run the standard mode."
    plain_hi, plain_lo = statistics.fmean(final[f"plain{hi}"]), statistics.fmean(final[f"plain{lo}"])
    worse = subclaims[0].status == HOLDS
    one_seed = min(len(final[f"plain{hi}"]), len(final[f"plain{lo}"])) < 2
    opening = ("With one seed this run cannot tell whether the deeper plain net trains worse" if one_seed else
               "The deeper plain net does train worse here" if worse else
               "Here the deeper plain net is not worse beyond seed noise")
    text = (f"**Answer.** {opening}: plain-{hi} ends at {plain_hi:.1f}% training error against plain-{lo}'s "
            f"{plain_lo:.1f}% (means over seeds). ")
    ratios = [r for r in (profile_ratio(p) for p in profiles.get(f"plain{hi}", [])) if r is not None]
    nobn = [r for r in (profile_ratio(p) for p in profiles.get(f"plain{hi}-nobn", [])) if r is not None]
    if ratios:
        if max(ratios) < VANISH:
            grow = max(ratios) < 1
            size = (f"the first block receives {1 / max(ratios):.1f} to {1 / min(ratios):.1f} times *more* gradient "
                    "than the last" if grow else f"the gradient at the first block is within {max(ratios):.1f}x of "
                    "the last block's")
            text += (f"{'But its' if worse else 'Its'} gradients do not vanish: with batch norm, {size}, at "
                     "initialisation and throughout training. That is He et al.'s own point (§4.1): the BN-trained "
                     "plain nets have healthy forward signals and gradient norms, so the belief that deep plain nets "
                     "fail because gradients vanish does not hold for them; the paper conjectures instead that they "
                     "are much harder to optimise, and residual connections make the identity easy to learn. ")
        else:
            text += (f"Its gradients are not steady on the way back: the gradient reaching the last block is "
                     f"{ratios[0]:.2g}x the first block's at initialisation, up to {max(ratios):.0f}x during training "
                     f"and {ratios[-1]:.2g}x at the end; a fall of {VANISH:g}x or more across the net counts here as "
                     "vanishing, against He et al.'s §4.1, which reports healthy norms with BN. ")
    if nobn:
        kind = "vanishing" if nobn[0] >= VANISH else "no vanishing either: He initialisation alone keeps the scale"
        text += (f"Without batch norm, plain-{hi}'s last block gets {nobn[0]:.2g}x the gradient of its first at "
                 f"initialisation ({kind}), and {nobn[-1]:.2g}x at the end.")
    return text


def _profile_figure(profiles: dict[str, list[dict[str, Any]]], key: str, ylabel: str) -> Any:
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for i, (label, recs) in enumerate(profiles.items()):
        if not recs:
            continue
        for rec, ls in ((recs[0], "--"), (recs[-1], "-")):
            values = [v if v is not None and math.isfinite(v) and v > 0 else float("nan") for v in rec[key]]
            ax.plot(range(len(values)), values, ls, color=f"C{i}", lw=1.3,
                    label=f"{label}, step {rec['step']}")
    ax.set_yscale("log")
    plots.label_axes(ax, "block (stem = 0, input side left)", ylabel, legend=7)
    fig.tight_layout()
    return fig


EXPERIMENT = register(Experiment(
    name="degradation",
    question="Why do deeper plain nets train worse, and why don't ResNets?",
    claim="Plain nets of 20-56 layers have higher training error the deeper they are; ResNets of the same depth "
          "train better the deeper they are (test error 8.75 / 7.51 / 7.17 / 6.97% for 20 / 32 / 44 / 56 layers); "
          "the plain nets' trouble is not vanishing gradients: with BN their forward signals and backward gradients "
          "stay healthy (§4.1).",
    source="He et al., CVPR 2016, §4.1, §4.2, Fig. 6 and Table 6, CIFAR-10",
    # quick: 568 s alone on the AVX2 EPYC (2026-12-07), fp32
    measured={"quick": Measured(9.5, AVX2_EPYC)},
    full_cost="13 runs x 164 epochs of CIFAR-10: about 4 GPU-hours",
    setup=setup,
    analyse=analyse,
    datasets=("cifar10", "cifar100", "folder:"),
    standard_limit=90,
))
