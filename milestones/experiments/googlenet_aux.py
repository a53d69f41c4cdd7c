"""``googlenet-aux``: why did GoogLeNet's auxiliary classifiers help, and why did they not stick around?

Szegedy et al. 2015 (CVPR), §5: "given the relatively large depth of the network, the ability to propagate gradients
back through all the layers in an effective manner was a concern"; two auxiliary classifiers on Inception 4a and 4d
were to "increase the gradient signal that gets propagated back, and provide additional regularization", their losses
weighted 0.3 during training and the heads discarded at inference. Szegedy et al. 2016 (Inception v3), §4: the heads
"did not result in improved convergence early in the training"; near the end the net with them "reaches a slightly
higher plateau", removing the lower head did no harm, so "the auxiliary classifiers act as regularizer"; batch-
normalising the head's FC layer ("BN-auxiliary") improved top-1 by 0.4 (Table 3). Batch norm (Ioffe & Szegedy 2015)
arrived in between.

We train GoogLeNet with and without the auxiliary heads, each pair without and with batch norm after every
convolution, on several seeds (paired: a seed gives both arms of a pair the same images and batch order), and log the
main head's per-step training error and the gradient norm reaching the first convolution and the classifier:

1. **Without batch norm** (the 2014 situation: the paper's net with the Caffe replica's initialisation), both arms run
   the same learning-rate grid on seed 0, each takes the rate with the lowest validation error, then runs on every
   seed at it (:class:`~.base.Tuning`): does the net without heads leave chance, and do the heads push more gradient
   into the lower layers (the paper's stated mechanism)?
2. **With batch norm**, both arms at the recipe's rate to a stated cap: do the heads speed early training up (v3 says
   no), and do they end higher (v3: a small regulariser), judged only where the runs converged?

The verdict (:func:`~.verdict.decide`) takes four sub-claims, each tested over seeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import torch

from ..measure import count_macs, count_params
from ..models import create_model
from ..train.callbacks import GradNorms, StepMetrics
from . import plots
from .base import Analysis, Context, Experiment, Figure, RunSpec, Setup, Tuning, register
from .measures import validation_error
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
    spread,
)

AUX_WEIGHT = 0.3  # paper §5
FIRST = "stem.conv1.conv.weight"  # the first convolution's weights, with and without batch norm
TOP = "head.weight"  # the main classifier
EARLY_MARGIN = 2.0  # points of mean training error over the first half: a smaller speed-up is "virtually identical"
V3_BN_AUX_GAIN = 0.4  # Inception v3 Table 3: BN-auxiliary, top-1 21.6 -> 21.2 (as widely quoted; verify)
V1_MINOR = 0.5  # GoogLeNet §5 (CVPR version, as quoted): "relatively minor (around 0.5%)" (verify)

# Budget of the standard mode, by the brief's estimate for this 2-core AMD EPYC (AVX2, fp32): ~32.5 GFLOP/s on
# convolutions, a training step ~6 x MACs FLOPs per image, an evaluation ~2 x MACs. At 32x32 GoogLeNet costs 1.56
# GMACs with the 32x32-grid CIFAR stem and 0.39 G with the 16x16-grid one (`stem=cifar16`) at full width: ~14 img/s.
# Half width (`width=0.5`) with `cifar16`: 97.7 MMACs (the two heads add ~1.6 M), ~55 img/s training and ~166 img/s
# evaluating; allow 20% more for batch 32 (the brief's speeds are at 128). One epoch: 512 training images (11.1 s)
# plus 300 validation and 500 test images (4.8 s) = 15.9 s. Without BN: 3 rates x 2 arms on seed 0 plus 2 arms x 2
# more seeds = 10 runs x 8 epochs; with BN: 2 arms x 3 seeds = 6 runs x 10 epochs; 140 epochs = 2,230 s = 37 min of
# the 45 (a diverging grid run stops early), plus about a minute of counting and plotting. Quick mode (one seed, a
# two-rate grid): 52 epochs, ~14 min.
HALF = {"model.kwargs.stem": "cifar16", "model.kwargs.width": 0.5, "model.kwargs.aux_pool": "adaptive"}
DATA = {"data.train_subset": 512, "data.val_split": 300, "data.test_subset": 500, "data.batch_size": 32}

MODES: dict[str, dict[str, Any]] = {
    "smoke": {"model": {"model.kwargs.stem": "cifar16", "model.kwargs.aux_pool": "adaptive"}, "seeds": [0],
              "grid": (0.01, 0.03), "nobn_epochs": 1, "bn_epochs": 1, "bn_lr": 0.05,
              "overrides": {"data.train_subset": 192, "data.val_split": 64, "data.test_subset": 100,
                            "data.batch_size": 64}},
    "quick": {"model": HALF, "seeds": [0], "grid": (0.01, 0.03), "nobn_epochs": 8, "bn_epochs": 10, "bn_lr": 0.025,
              "overrides": DATA},
    "standard": {"model": HALF, "seeds": [0, 1, 2], "grid": (0.01, 0.03, 0.1), "nobn_epochs": 8, "bn_epochs": 10,
                 "bn_lr": 0.025, "overrides": DATA},
    "full": {"model": {}, "seeds": [0, 1, 2], "grid": (0.01, 0.03, 0.1), "nobn_epochs": 30, "bn_epochs": 30,
             "bn_lr": 0.1, "overrides": {"data.val_split": 5000}},
}
ARMS = ("nobn-noaux", "nobn-aux", "bn-noaux", "bn-aux")


def label(bn: bool, aux: bool) -> str:
    return f"{'bn' if bn else 'nobn'}-{'aux' if aux else 'noaux'}"


def _callbacks() -> list[Any]:
    return [StepMetrics(), GradNorms(every=1, only=["stem.conv1.", "head."])]


def setup(mode: str) -> Setup:
    m = MODES[mode]

    def arm(bn: bool, aux: bool) -> RunSpec:
        overrides = {**m["model"], "model.kwargs.batch_norm": bn, "train.epochs": m["bn_epochs" if bn else
                                                                                    "nobn_epochs"]}
        if bn:
            overrides["optim.lr"] = m["bn_lr"]
        if aux:
            overrides |= {"model.kwargs.aux_logits": True, "train.aux_loss_weight": AUX_WEIGHT}
        return RunSpec(label(bn, aux), "googlenet", recipe="cifar10_googlenet", overrides=overrides,
                       callbacks=_callbacks)

    grid = ", ".join(f"{v:g}" for v in m["grid"])
    tuning = Tuning(arms=[arm(False, False), arm(False, True)], grid=m["grid"], score=validation_error,
                    criterion="validation error after the last epoch (%)")
    notes = ["The paper's GoogLeNet (`googlenet`: 5x5 branches, LRN in the stem; without batch norm biased "
             "convolutions with the Caffe replica's initialisation, Xavier-uniform weights and biases 0.2; with it "
             "torchvision's truncated-normal one) and the shipped recipe `cifar10_googlenet` (SGD nesterov one-cycle, "
             "weight decay 5e-4, label smoothing 0.1, crop + flip) for every run; only `batch_norm` (after every "
             "convolution, the heads' convolution included, not their FC layer, which Inception v3's "
             f"'BN-auxiliary' also normalises) and the auxiliary heads (loss weight {AUX_WEIGHT}) change.",
             f"Without batch norm both arms ran the learning rates {grid} on seed 0 for "
             f"{m['nobn_epochs']} epoch(s) and each kept the one with the lowest validation error (images held out of "
             f"the training set, never the test set); then every seed ran at it. With batch norm both arms run at "
             f"lr {m['bn_lr']:g} for {m['bn_epochs']} epoch(s), no grid (the budget).",
             "Training error is the main head's, on each batch before its step; 'first half' is the mean over the "
             "first half of the steps. Gradient norms are taken before the optimiser step. With batch norm a "
             "convolution's gradient scales inversely with its weights' norm, so gradient norms compare within a "
             "pair (with vs without heads), not across batch norm settings. A seed gives both arms of a pair the same "
             "images and batch order (the heads' extra parameters change the initial draw).",
             "Converged means the schedule ran to its end with the learning rate decayed and the last quarter of the "
             "epochs improved training error by under 2 points; the batch-norm pair's final accuracy counts only "
             "then."]
    if mode in ("quick", "standard"):
        o = m["overrides"]
        steps = o["data.train_subset"] // o["data.batch_size"]
        notes.append(f"**Shrunk to fit 2 CPU cores** ({'45' if mode == 'standard' else '15'} minutes): the 16x16-grid "
                     "CIFAR stem (`stem=cifar16`), so 4a and 4d work at 8x8 and the heads pool adaptively to 4x4 "
                     "(`aux_pool=adaptive`, as torchvision) instead of the paper's 5x5/3 pool; **half-width modules** "
                     "(`width=0.5`: every channel count of the stem, of Table 1 and of the heads halved, about a "
                     "quarter of the multiply-adds); a class-balanced "
                     f"{o['data.train_subset']:,}-image subset at batch {o['data.batch_size']} ({steps} steps an "
                     f"epoch: {m['nobn_epochs'] * steps} steps without batch norm, {m['bn_epochs'] * steps} with), "
                     f"{o['data.val_split']:,} validation and {o['data.test_subset']:,} test images; "
                     f"{len(m['seeds'])} seed(s); lr {m['bn_lr']:g} with batch norm (the recipe's 0.1 at batch 128 "
                     "scaled linearly).")
    elif mode == "smoke":
        notes.append("Smoke test: 192 images, one epoch, full width; the numbers mean nothing.")
    else:
        notes.append("Full: the recipe's 32x32-grid CIFAR stem at full width (4a and 4d at 16x16, where the paper's "
                     "5x5/3 pool gives its 4x4 grid), 30 epochs on 45,000 training images (5,000 held out), three "
                     "seeds, batch 128.")
    return Setup(runs=[arm(True, False), arm(True, True)], overrides=m["overrides"], seeds=list(m["seeds"]),
                 notes=notes, tuning=tuning)


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


def head_costs() -> dict[str, float]:
    """The paper's net at 224x224 with both heads: the trunk's and the heads' parameters and multiply-adds (the heads'
    at their 14x14 inputs on 4a and 4d)."""
    with torch.device("meta"):
        net = create_model("googlenet", aux_logits=True)
    heads = sum(count_params(a) for a in net.aux.values())
    head_macs = sum(count_macs(a, (a.conv.conv.in_channels, 14, 14)) for a in net.aux.values())
    return {"params": count_params(net) - heads, "head_params": heads,
            "macs": count_macs(net, (3, 224, 224)), "head_macs": head_macs}  # forward() skips the heads


def _log(x: float) -> float:
    """A gradient norm's logarithm; a zero (or non-finite) norm counts as 1e-30."""
    return math.log(x) if math.isfinite(x) and x > 0 else math.log(1e-30)


def _paired(per: dict[str, dict[int, dict[str, Any]]], a: str, b: str, key: str,
            f: Any = float) -> tuple[list[float], list[float]]:
    """``key`` of arms ``a`` and ``b`` on the seeds both finished, in seed order (through ``f``)."""
    seeds = sorted(set(per.get(a, {})) & set(per.get(b, {})))
    return [f(per[a][s][key]) for s in seeds], [f(per[b][s][key]) for s in seeds]


def claims(per: dict[str, dict[int, dict[str, Any]]], chance: float = 10.0, n_test: int = 500) -> list[SubClaim]:
    """Four sub-claims over seeds, from each arm's per-seed stats (``early_err``, ``test_acc``, ``grad_early`` and
    ``converged``, a :class:`~.verdict.Convergence`): without batch norm the heads push more gradient into the first
    convolution (the paper's mechanism) and make the net learn (higher test accuracy); with batch norm they do not
    speed early training up by :data:`EARLY_MARGIN` points or more, and they end higher (only once converged)."""
    out = []
    name = "without batch norm the heads push more gradient into the first layer (2015 §5)"
    a, b = _paired(per, "nobn-aux", "nobn-noaux", "grad_early", _log)
    if not a:
        out.append(SubClaim(name, NOT_REACHED, "no seed finished both runs without batch norm", mechanism=True))
    else:
        c = compare(a, b, paired=True)
        ratio = (f"the first convolution's gradient norm (median over the first half) is {math.exp(c.diff):.2f}x as "
                 f"large with the heads (geometric mean over {c.n} seed(s)"
                 + (f"; 95% CI {math.exp(c.low):.2f}x to {math.exp(c.high):.2f}x, paired t-test on logs, p = {c.p:.2g})"
                    if c.measured and c.low is not None else ")"))
        out.append(judge(name, c, expect=+1, evidence=ratio, mechanism=True))
    name = "without batch norm the heads make the net learn (2015 §5)"
    a, b = _paired(per, "nobn-aux", "nobn-noaux", "test_acc")
    if not a:
        out.append(SubClaim(name, NOT_REACHED, "no seed finished both runs without batch norm"))
    else:
        c = compare(a, b, paired=True)
        bound = chance_bound(chance, n_test)
        stuck = sum(x <= bound for x in b)
        out.append(judge(name, c, expect=+1, evidence=(
            f"test accuracy with the heads {spread(a).describe(1)}%, without {spread(b).describe(1)}% ({stuck} of "
            f"{len(b)} seed(s) without the heads still at chance, <= {bound:.0f}%); difference {c.describe()}")))
    name = f"with batch norm the heads do not speed early training up (v3 §4; margin {EARLY_MARGIN:g} points)"
    b, a = _paired(per, "bn-noaux", "bn-aux", "early_err")
    if not a:
        out.append(SubClaim(name, NOT_REACHED, "no seed finished both runs with batch norm"))
    else:
        c = compare(b, a, paired=True)  # positive: the heads' net has the lower error early, i.e. learns faster
        if not c.measured:
            status = WITHIN_NOISE
        elif c.beyond_noise and c.diff > EARLY_MARGIN:
            status = OPPOSITE
        elif c.high is not None and c.high < EARLY_MARGIN:
            status = HOLDS
        else:
            status = WITHIN_NOISE
        out.append(SubClaim(name, status, f"training error over the first half with the heads {spread(a).describe(1)}"
                                          f"%, without {spread(b).describe(1)}%; speed-up (without minus with) "
                                          f"{c.describe()}; it counts as none when the 95% CI stays below "
                                          f"{EARLY_MARGIN:g} points"))
    name = f"with batch norm the heads end higher, as a regulariser (v3 §4; BN-auxiliary +{V3_BN_AUX_GAIN} top-1)"
    a, b = _paired(per, "bn-aux", "bn-noaux", "test_acc")
    if not a:
        out.append(SubClaim(name, NOT_REACHED, "no seed finished both runs with batch norm"))
    else:
        c = compare(a, b, paired=True)
        says = f"test accuracy with the heads {spread(a).describe(2)}%, without {spread(b).describe(2)}%; " \
               f"difference {c.describe(digits=2)}"
        runs = [x["converged"] for arm in ("bn-aux", "bn-noaux") for x in per.get(arm, {}).values()]
        why = next((x.why for x in runs if not x.converged), "")
        out.append(judge(name, c, expect=+1, evidence=says, reached=all(x.converged for x in runs),
                         why_not_reached=f"{says}; not converged ({why}): v3's gain is a plateau reached at the end "
                                         "of a full schedule"))
    return out


def chance_bound(chance: float, n_test: int = 500) -> float:
    """Test accuracy (%) up to which a run counts as at chance: chance plus three standard errors on ``n_test``."""
    p = chance / 100
    return 100 * (p + 3 * math.sqrt(p * (1 - p) / n_test))


COLUMNS = ["stage", "run", "batch norm", "aux heads", "lr", "seed", "params (training)", "img/s",
           "train err % (first half)", "train err % (last epoch)", "val err %", "test acc %",
           "grad norm first conv (median, first half)", "grad norm classifier (median)", "chosen", "converged",
           "status"]


def analyse(ctx: Context) -> Analysis:
    n_test = int(ctx.setup.overrides.get("data.test_subset") or 10_000)
    chance = 1.0 if (ctx.setup.data or "").startswith("cifar100") else 10.0
    rows: list[dict[str, Any]] = []
    for arm, scores in ctx.scores.items():
        for lr, s in scores.items():
            o = next(o for o in ctx.outcomes if o.planned.run.label == f"{arm}@{lr:g}")
            epochs = ctx.records(o, "epoch") if o.summary is not None else []
            rows.append({"stage": "tuning (seed 0)", "run": arm, **_kind(arm), "lr": lr, "seed": 0,
                         "train err % (last epoch)": round(100 * (1 - epochs[-1]["train_acc"]), 1) if epochs else None,
                         "val err %": None if s == float("inf") else round(s, 1),
                         "chosen": "yes" if ctx.chosen.get(arm) == lr else "",
                         "status": "ok" if o.summary is not None else o.status})
    per: dict[str, dict[int, dict[str, Any]]] = {}
    curves, norms = {}, {}
    for arm in ARMS:
        for o in ctx.runs(arm):
            row: dict[str, Any] = {"stage": "arms", "run": arm, **_kind(arm), "seed": o.planned.seed,
                                   "lr": o.planned.cfg.optim.lr}
            if o.summary is None:
                rows.append({**row, "status": o.status})
                continue
            steps, grads = ctx.records(o, "step_metrics"), ctx.records(o, "grad_norms")
            epochs = ctx.records(o, "epoch")
            s = run_stats(steps, grads)
            errs = [100 * (1 - e["train_acc"]) for e in epochs]
            c = ctx.convergence(o, errs)
            per.setdefault(arm, {})[o.planned.seed] = {
                "early_err": s["early_err"], "test_acc": 100 * o.summary["final_test_acc"],
                "grad_early": s["first_grad_early"], "converged": c, "img_s": o.summary["img_per_s"],
                "params": o.summary["params"]}
            rows.append({**row, "params (training)": f"{o.summary['params'] / 1e6:.2f}M",
                         "img/s": round(o.summary["img_per_s"]), "train err % (first half)": round(s["early_err"], 1),
                         "train err % (last epoch)": round(errs[-1], 1),
                         "val err %": round(100 * (1 - epochs[-1]["val_acc"]), 1) if "val_acc" in epochs[-1] else None,
                         "test acc %": round(100 * o.summary["final_test_acc"], 2),
                         "grad norm first conv (median, first half)": f"{s['first_grad_early']:.3g}",
                         "grad norm classifier (median)": f"{s['top_grad']:.3g}",
                         "converged": "yes" if c.converged else "no", "status": "ok"})
            if arm not in curves:  # the first seed's
                curves[arm] = ([r["step"] for r in steps], [100 * r["error"] for r in steps],
                               [(e["step"], 100 * (1 - e["test_acc"])) for e in epochs])
                norms[arm] = ([g["step"] for g in grads], [g[FIRST] for g in grads])
    subclaims = claims(per, chance, n_test)
    verdict, reason = decide(subclaims)
    costs = ctx.cached("head_costs", head_costs)
    findings = [c.line() for c in subclaims] + _findings(ctx, per, costs, chance, n_test)
    figures = []
    if curves:
        figures.append(Figure("training_error.png", "Main-head training error per step (smoothed; thin: raw) and test "
                              "error per epoch (markers): without batch norm (left) and with (right), each with and "
                              "without the auxiliary heads (first seed).",
                              plots.error_panels(curves, ["nobn", "bn"], window=10)))
        figures.append(Figure("first_conv_grad_norm.png", "Gradient norm of the first convolution's weights per step "
                              "(moving average of 5, log scale), first seed. Compare each pair within a batch norm "
                              "setting: batch norm rescales gradients by the weights' norm.",
                              plots.series(norms, "step", "gradient norm (first conv)", log=True, window=5)))
    if per:
        acc = {name: [[per.get(f"{bn}-{aux}", {}).get(s, {}).get("test_acc") for s in ctx.setup.seeds]
                      for bn in ("nobn", "bn")] for name, aux in (("no aux heads", "noaux"), ("aux heads", "aux"))}
        acc = {k: [[x for x in v if x is not None] for v in vs] for k, vs in acc.items()}
        figures.append(Figure("test_accuracy.png", "Test accuracy per arm: the bar is the mean over seeds, each dot "
                              "one seed.", plots.seed_bars(["without batch norm", "with batch norm"], acc,
                                                           "test accuracy (%)")))
    rows = [{c: r.get(c) for c in COLUMNS} for r in rows]  # every row has every column (results.csv)
    return Analysis(rows=rows, verdict=verdict, reason=reason[:1].upper() + reason[1:], columns=COLUMNS,
                    findings=findings, figures=figures,
                    answer=_answer(per, subclaims, costs, ctx, chance))


def _kind(arm: str) -> dict[str, str]:
    return {"batch norm": "no" if arm.startswith("nobn") else "yes", "aux heads": "yes" if arm.endswith("-aux")
            else "no"}


def _mean(per: dict[str, dict[int, dict[str, Any]]], arm: str, key: str) -> float | None:
    vals = [v[key] for v in per.get(arm, {}).values()]
    return statistics.fmean(vals) if vals else None


def _findings(ctx: Context, per: dict[str, dict[int, dict[str, Any]]], costs: dict[str, float], chance: float,
              n_test: int) -> list[str]:
    out = []
    grid = ctx.scores.get("nobn-noaux", {})
    if grid:
        bound = chance_bound(chance, n_test)
        out.append("Without batch norm, the grid on seed 0 (validation error after the last epoch): "
                   + "; ".join(f"{arm}: " + ", ".join(f"lr {lr:g} {'failed' if v == float('inf') else f'{v:.1f}%'}"
                                                       for lr, v in scores.items())
                               for arm, scores in ctx.scores.items())
                   + f". Chance is {100 - chance:.0f}% error; a run counts as at chance up to {bound:.0f}% test "
                     f"accuracy (three standard errors on {n_test:,} images).")
    boost = {}
    for bn in ("nobn", "bn"):
        a, b = _paired(per, f"{bn}-aux", f"{bn}-noaux", "grad_early", _log)
        if a:
            boost[bn] = math.exp(statistics.fmean(a) - statistics.fmean(b))
    if len(boost) == 2:
        out.append(f"The heads multiply the first convolution's gradient by {boost['nobn']:.2f} without batch norm and "
                   f"by {boost['bn']:.2f} with it (geometric means over seeds, first half of training).")
    a, b = _paired(per, "bn-aux", "bn-noaux", "img_s")  # the same rate and data: only the heads differ
    if a:
        c = compare([1 / x for x in a], [1 / x for x in b], paired=True)
        rel = 100 * c.diff / statistics.fmean(1 / x for x in b)
        out.append(f"Cost of the heads: {costs['head_params'] / 1e6:.2f}M parameters on the paper's 224x224 net "
                   f"({100 * costs['head_params'] / costs['params']:.0f}% on top of its {costs['params'] / 1e6:.2f}M, "
                   f"trained and thrown away), {costs['head_macs'] / 1e6:.1f} MMACs "
                   f"({100 * costs['head_macs'] / costs['macs']:.1f}% of the forward pass); here "
                   f"{_params(per)} during training, and {rel:+.0f}% time per training image ({_ms(c)}; runs "
                   "made one after another, so load changes between them count as noise).")
    out.append(f"What the authors reported later: GoogLeNet's CVPR text (§5, as quoted) that 'the effect of the "
               f"auxiliary networks is relatively minor (around {V1_MINOR}%)' and that one head was enough (not found "
               "in the copies of the paper we could read: verify against the CVPR PDF); Inception v3 §4 (read): the "
               "heads 'did not result in improved convergence early in the training', removing the lower one 'did not "
               "have any adverse effect', and 'the auxiliary classifiers act as regularizer', supported by the main "
               "classifier doing better when the side head is batch-normalised or has dropout (Table 3's "
               f"BN-auxiliary row: +{V3_BN_AUX_GAIN} top-1, as widely quoted: verify).")
    return out


def _ms(c: Any) -> str:
    """A paired comparison of seconds per image, in milliseconds."""
    if not c.measured:
        return f"{1000 * c.diff:+.2f} ms per image, one pair: noise not measured"
    return (f"{1000 * c.diff:+.2f} ms per image, 95% CI {1000 * c.low:+.2f} to {1000 * c.high:+.2f}, paired over "
            f"{c.n} seeds of the batch-norm pair")


def _params(per: dict[str, dict[int, dict[str, Any]]]) -> str:
    for bn in ("bn", "nobn"):
        with_, without = _mean(per, f"{bn}-aux", "params"), _mean(per, f"{bn}-noaux", "params")
        if with_ and without:
            return f"{with_ / 1e6:.2f}M parameters with the heads against {without / 1e6:.2f}M"
    return "no pair finished"


def _answer(per: dict[str, dict[int, dict[str, Any]]], subclaims: Sequence[SubClaim], costs: dict[str, float],
            ctx: Context, chance: float) -> str:
    mech, learn, early, end = subclaims
    if learn.status == HOLDS:
        text = ("**Answer.** They helped because without batch norm a 22-layer net's lower layers get too little of "
                "the training signal through the top, and batch norm then removed that problem. ")
    else:
        text = ("**Answer.** They were meant to fix a trainability problem of 2014 that batch norm later removed, "
                "though at this scale our runs do not show the fix beyond seed noise. ")
    na, nn_ = _mean(per, "nobn-aux", "test_acc"), _mean(per, "nobn-noaux", "test_acc")
    n_test = int(ctx.setup.overrides.get("data.test_subset") or 10_000)
    if na is not None and nn_ is not None:
        bound = chance_bound(chance, n_test)
        stuck = nn_ <= bound
        if stuck and na <= bound:
            how = (f"did not leave chance in this budget, with the heads ({na:.1f}% test accuracy) or without them "
                   f"({nn_:.1f}%), at the best rate of each one's grid")
        elif stuck:
            how = (f"did not leave chance without the heads at the best rate of its grid ({nn_:.1f}% test accuracy), "
                   f"but reached {na:.1f}% with them")
        else:
            how = f"reached {nn_:.1f}% test accuracy without the heads and {na:.1f}% with them"
        text += f"Without batch norm, as in 2014, our GoogLeNet {how} (means over seeds)"
        a, b = _paired(per, "nobn-aux", "nobn-noaux", "grad_early", _log)
        if mech.status == HOLDS:
            text += (f"; the heads made the gradient reaching the first convolution "
                     f"{math.exp(statistics.fmean(a) - statistics.fmean(b)):.1f} times as large: a loss attached "
                     "half-way down gives the lower layers a short path to the training signal, which arrives much "
                     "weakened when it comes all the way down from the top. ")
        elif mech.status == WITHIN_NOISE:
            text += "; whether they pushed more gradient into the first layer stayed within seed noise. "
        else:
            text += "; they did not push more gradient into the first layer, so what helped is not the paper's " \
                    "stated mechanism here. "
    ba, bnn = _mean(per, "bn-aux", "test_acc"), _mean(per, "bn-noaux", "test_acc")
    if ba is not None and bnn is not None:
        if bnn > chance_bound(chance, n_test):
            text += f"With batch norm after every convolution the net learns without them ({bnn:.1f}% test " \
                    f"accuracy; {ba:.1f}% with them), "
        else:
            text += f"With batch norm the net had not left chance yet in this budget either ({bnn:.1f}% test " \
                    f"accuracy without the heads, {ba:.1f}% with them), "
        text += {HOLDS: "and the heads do not speed early training up, as Inception v3 found (§4). ",
                 OPPOSITE: "though here the heads did speed early training up, against Inception v3 (§4). ",
                 }.get(early.status, "and whether the heads speed early training up stayed within seed noise. ")
        text += {HOLDS: "They end higher beyond seed noise, the small regulariser Inception v3 describes. ",
                 OPPOSITE: "They end lower beyond seed noise at this scale. ",
                 WITHIN_NOISE: "Their effect on the final accuracy is within seed noise. ",
                 NOT_REACHED: "Whether they end higher (Inception v3: a regulariser worth about 0.4 points of top-1) "
                              "cannot be told from runs this short: they had not converged. ",
                 NOT_TESTABLE: ""}.get(end.status, "")
    text += (f"Meanwhile they cost {costs['head_params'] / 1e6:.1f}M parameters on the paper's net "
             f"({100 * costs['head_params'] / costs['params']:.0f}% more to train, thrown away at inference) and "
             "extra compute in every training step. So they did not stick around because their job, getting "
             "gradient into the lower layers of a deep net, was done better by batch norm (2015) and then by residual "
             "shortcuts (2016); what was left is a small regularising effect (Inception v3: 0.4 points of top-1 for a "
             "batch-normalised head), which Inception v3 kept as one head and which later nets get more cheaply from "
             "label smoothing, dropout and augmentation.")
    return text


EXPERIMENT = register(Experiment(
    name="googlenet-aux",
    question="Why did GoogLeNet's auxiliary classifiers help, and why did they not stick around?",
    claim="Auxiliary classifiers on 4a and 4d, their losses weighted 0.3 and discarded at inference, were added to "
          "increase the gradient signal that gets propagated back to the lower layers (2015, §5); Inception v3 found "
          "they do not improve convergence early in training and act as regularisers instead (a batch-normalised "
          "auxiliary head: +0.4 top-1, Table 3).",
    source="Szegedy et al., CVPR 2015, §5; Szegedy et al., CVPR 2016 (Inception v3), §4 and Table 3",
    measured={},
    full_cost="16 runs (the no-BN pair on a 3-rate grid, then 3 seeds per arm) x 30 epochs of CIFAR-10 at the "
              "32x32-grid stem, full width (1.56 GMACs per image): about 5 GPU-hours",
    setup=setup,
    analyse=analyse,
    datasets=("cifar10", "cifar100"),
))
