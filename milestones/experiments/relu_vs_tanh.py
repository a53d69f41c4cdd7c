"""``relu-vs-tanh``: how much faster does a convolutional net learn with ReLUs than with tanh units?

Krizhevsky et al. 2012 (NIPS), §3.1 and Fig. 1: "a four-layer convolutional neural network with ReLUs reaches a 25%
training error rate on CIFAR-10 six times faster than an equivalent network with tanh neurons"; "the learning rates
for each network were chosen independently to make training as fast as possible. No regularization of any kind was
employed." We train ``convnet4`` (cuda-convnet's 3-conv + 1-fc CIFAR-10 net, see its model file) with ``act=relu``
and ``act=tanh`` on all 50,000 training images:

1. **Tuning, the same for both**: each activation runs one epoch at every learning rate of a grid on seed 0; the rate
   with the lowest training error over the epoch's last :data:`SCORE_STEPS` steps is its "fastest" (the paper's own
   criterion: training speed, so no validation or test data is involved). The paper's initialisation, N(0, 0.01²)
   (``init=gaussian``), runs the same grid beside ours (LeCun-normal), to show whether the early race depends on it.
2. **The race**: each activation at its chosen rate, on 3 seeds (paired: a seed gives both nets the same initial
   weights and batch order), until the mean training error of the last :data:`WINDOW` steps is at most 25%
   (``train.stop_at_train_error``) or a cap of steps. Steps to 25% per seed; the ratio tanh / ReLU from a paired
   t-test on their logarithms; where tanh hits the cap, the ratio is a lower bound.

"Reaches X%" is the first step at which the mean training error (each batch's, before its step) of the last
``WINDOW`` steps is at most X% (:func:`steps_to`; the loop's stop rule is the same).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from ..train.callbacks import StepMetrics
from . import plots
from .base import AVX2_EPYC, Analysis, Context, Experiment, Figure, Measured, RunSpec, Setup, Tuning, register
from .verdict import HOLDS, NOT_REACHED, OPPOSITE, WITHIN_NOISE, SubClaim, compare, decide

ACTS = ("relu", "tanh")
PAPER_RATIO = 6.0
THRESHOLD = 25.0  # % training error, the paper's
WINDOW = 20  # steps in the trailing mean; 20 x 128 = 2,560 images, about 1% standard error at 25% error
SCORE_STEPS = 50  # the tuning score: mean training error of a grid run's last 50 steps
MARGIN = 2.0  # the ratio agrees with the paper's six if it lies within a factor of 2 of it (3 to 12)
LADDER = tuple(range(80, 20, -5))  # thresholds (%) at which the ratio is also shown

MODES: dict[str, dict[str, Any]] = {
    "smoke": {"lrs": (0.1,), "grid_epochs": 1, "cap": 1, "seeds": [0], "paper_init": True,
              "overrides": {"data.train_subset": 640, "data.test_subset": 200}},
    "quick": {"lrs": (0.01, 0.03, 0.1), "grid_epochs": 2, "cap": 25, "seeds": [0], "paper_init": False,
              "overrides": {"data.train_subset": 10_000, "data.test_subset": 2000}},
    "standard": {"lrs": (0.01, 0.03, 0.1), "grid_epochs": 1, "cap": 10, "seeds": [0, 1, 2], "paper_init": True,
                 "overrides": {}},
    "full": {"lrs": (0.003, 0.01, 0.03, 0.1), "grid_epochs": 2, "cap": 60, "seeds": [0, 1, 2, 3, 4],
             "paper_init": True, "overrides": {}},
}


def arm(act: str, init: str = "lecun") -> str:
    return act if init == "lecun" else f"{act}-paper-init"


def setup(mode: str) -> Setup:
    m = MODES[mode]
    inits = ("lecun", "gaussian") if m["paper_init"] else ("lecun",)
    arms = [RunSpec(arm(act, init), "convnet4", overrides={"model.kwargs.act": act, "model.kwargs.init": init},
                    callbacks=lambda: [StepMetrics()], seeds=None if init == "lecun" else [])
            for init in inits for act in ACTS]
    lrs = ", ".join(f"{lr:g}" for lr in m["lrs"])
    tuning = Tuning(arms=arms, grid=m["lrs"], score=score, overrides={"train.epochs": m["grid_epochs"]},
                    criterion=f"training error over the grid run's last {SCORE_STEPS} steps (%)")
    overrides = {**m["overrides"], "train.epochs": m["cap"], "train.stop_at_train_error": THRESHOLD / 100,
                 "train.stop_window": WINDOW}
    notes = [
        "Network: `convnet4`, the layout of cuda-convnet's CIFAR-10 example net `layers-18pct.cfg` (Krizhevsky's "
        "code of the time; the paper gives no layer sizes): conv 32@5x5 - max-pool - conv 32@5x5 - avg-pool - conv "
        "64@5x5 - avg-pool - fc 10, 89,578 parameters, without its response-normalisation layers. The two networks "
        "differ only in the nonlinearity after each convolution; a seed gives both the same initial weights "
        "(LeCun-normal) and the same batch order, so the race is paired by seed.",
        f"Recipe `cifar10_convnet4`: SGD with momentum 0.9, batch 128, a constant learning rate; no weight decay, "
        f"dropout or augmentation (\"no regularization of any kind\"). Learning-rate grid {lrs}, the same for both "
        f"activations, {m['grid_epochs']} epoch(s) on seed 0; each activation's rate is the one with the lowest "
        f"training error over the last {SCORE_STEPS} steps (the paper chose rates \"to make training as fast as "
        "possible\": a training-speed criterion, so no validation or test data is involved).",
        f"The race: every seed runs until the mean training error of its last {WINDOW} steps is at most "
        f"{THRESHOLD:g}% (`train.stop_at_train_error`) or {m['cap']} epochs, whichever comes first. Where tanh "
        "hits the cap, its steps to 25% are at least the cap, and the ratio is a lower bound.",
    ]
    if m["paper_init"]:
        notes.append("The paper's initialisation (AlexNet §5: every weight from N(0, 0.01²); biases 0 here) runs the "
                     "same learning-rate grid on seed 0 beside ours (`relu-paper-init`, `tanh-paper-init`): it "
                     "shows how the early race depends on the start. It is not raced to 25% (the budget).")
    if mode == "quick":
        notes.append("**Shrunk:** a class-balanced 10,000-image subset (the training error falls faster on fewer "
                     "images, so 25% comes sooner than on all 50,000), 2,000 test images, one seed, no paper-init "
                     "arm.")
    elif mode == "smoke":
        notes.append("Smoke test: 640 images, one epoch; the numbers mean nothing.")
    return Setup(runs=[], data="cifar10", overrides=overrides, seeds=list(m["seeds"]), notes=notes, tuning=tuning)


def score(ctx: Context, outcome: Any) -> float:
    """A grid run's tuning score: its mean training error (%) over the last :data:`SCORE_STEPS` steps."""
    errors = [100 * r["error"] for r in ctx.records(outcome, "step_metrics")][-SCORE_STEPS:]
    return statistics.fmean(errors) if errors else float("inf")


def steps_to(steps: Sequence[int], errors: Sequence[float], threshold: float, window: int = WINDOW) -> int | None:
    """The first step at which the mean of the last ``window`` errors (in %) is at most ``threshold``; ``None`` if
    that never happens. Only full windows count."""
    total = 0.0
    for i, e in enumerate(errors):
        total += e
        if i >= window:
            total -= errors[i - window]
        if i + 1 >= window and total / window <= threshold + 1e-9:
            return steps[i]
    return None


def curve(ctx: Context, outcome: Any) -> tuple[list[int], list[float]]:
    records = ctx.records(outcome, "step_metrics")
    return [r["step"] for r in records], [100 * r["error"] for r in records]


def race(relu: Sequence[int | None], tanh: Sequence[int | None], caps: Sequence[int]) -> dict[str, Any]:
    """Steps to the threshold per seed (None: not reached within ``caps[i]`` steps), paired by seed, as the ratio
    tanh / ReLU: its geometric mean over seeds and a paired t-test on log steps. A tanh run that never got there
    counts at its cap (so the ratio is a lower bound, ``bound`` ">"); a ReLU run that never got there leaves the
    race undecided."""
    out: dict[str, Any] = {"ratio": None, "bound": "", "comparison": None, "ratios": []}
    if not relu or any(r is None for r in relu):
        return out
    tanh_steps = [t if t is not None else cap for t, cap in zip(tanh, caps)]
    out["bound"] = ">" if any(t is None for t in tanh) else ""
    logs_t, logs_r = [math.log(t) for t in tanh_steps], [math.log(r) for r in relu]
    c = compare(logs_t, logs_r, paired=True)
    out.update(comparison=c, ratio=math.exp(c.diff), ratios=[t / r for t, r in zip(tanh_steps, relu)])
    return out


def claims(result: dict[str, Any], relu: Sequence[int | None], tanh: Sequence[int | None]) -> list[SubClaim]:
    """Two sub-claims: ReLU reaches 25% faster (beyond seed noise), and by about six times (a factor of ``MARGIN``
    either side)."""
    c = result["comparison"]
    if c is None:
        reached = "ReLU never reached 25% training error within the cap" if relu else "no run finished"
        return [SubClaim("ReLU reaches 25% training error faster than tanh", NOT_REACHED, reached),
                SubClaim("by about six times", NOT_REACHED, reached)]
    bound = result["bound"]
    ci = (f"tanh / ReLU = {bound}{result['ratio']:.2f}x (geometric mean over {c.n} seed(s); per seed "
          + ", ".join(f"{bound if t is None else ''}{x:.2f}" for x, t in zip(result["ratios"], tanh)) + ")")
    if c.measured:
        ci += f", 95% CI {math.exp(c.low):.2f}x to {math.exp(c.high):.2f}x (paired t-test on log steps, p = {c.p:.2g})"
    faster = HOLDS if c.beyond_noise and c.diff > 0 else OPPOSITE if c.beyond_noise else WITHIN_NOISE
    lo, hi = PAPER_RATIO / MARGIN, PAPER_RATIO * MARGIN
    if not c.measured:
        six = WITHIN_NOISE
    elif bound:  # a lower bound only: it cannot show "about six", nor rule it out unless it already exceeds 12
        six = OPPOSITE if math.exp(c.low) > hi else NOT_REACHED
    elif math.exp(c.high) < lo or math.exp(c.low) > hi:
        six = OPPOSITE
    elif lo <= math.exp(c.low) and math.exp(c.high) <= hi:
        six = HOLDS
    else:
        six = WITHIN_NOISE
    why_six = ci + ("; the cap stopped tanh, so only a lower bound on the factor is measured" if six == NOT_REACHED else
                    f"; the paper's factor, within a factor of {MARGIN:g} either side, is {lo:g}x to {hi:g}x")
    return [SubClaim("ReLU reaches 25% training error faster than tanh", faster, ci),
            SubClaim(f"by about six times ({lo:g}x to {hi:g}x)", six, why_six)]


def analyse(ctx: Context) -> Analysis:
    m = MODES[ctx.mode]
    rows, curves = [], {}
    for arm_label, scores in ctx.scores.items():
        for lr, s in scores.items():
            o = next(o for o in ctx.outcomes if o.planned.run.label == f"{arm_label}@{lr:g}")
            if o.summary is not None:
                st, err = curve(ctx, o)
                curves[f"{arm_label}, lr {lr:g}"] = (st, err)
            rows.append({"stage": "tuning (seed 0)", "arm": arm_label, "lr": lr, "seed": 0,
                         f"train err % (last {SCORE_STEPS} steps)": None if s == float("inf") else f"{s:.1f}",
                         "chosen": "yes" if ctx.chosen.get(arm_label) == lr else "",
                         "status": "ok" if o.summary else o.status})
    steps_at: dict[str, list[int | None]] = {a: [] for a in ACTS}
    race_curves: dict[str, tuple[list[int], list[float]]] = {}
    for act in ACTS:
        for o in ctx.runs(act):
            if o.summary is None:
                rows.append({"stage": "race", "arm": act, "seed": o.planned.seed, "status": o.status})
                continue
            st, err = curve(ctx, o)
            reached = steps_to(st, err, THRESHOLD)
            steps_at[act].append(reached)
            race_curves[f"{act} seed {o.planned.seed}"] = (st, err)
            rows.append({"stage": "race", "arm": act, "lr": ctx.chosen.get(act), "seed": o.planned.seed,
                         "steps": st[-1] if st else 0, f"steps to {THRESHOLD:g}%": reached,
                         "test err %": f"{100 * (1 - o.summary['final_test_acc']):.1f}", "status": "ok"})
    tanh_caps = [_cap_steps(ctx, o, m["cap"]) for o in ctx.runs("tanh") if o.summary is not None]
    n = min(len(steps_at["relu"]), len(steps_at["tanh"]))
    result = race(steps_at["relu"][:n], steps_at["tanh"][:n], tanh_caps[:n])
    subclaims = claims(result, steps_at["relu"][:n], steps_at["tanh"][:n])
    verdict, reason = decide(subclaims)
    steps = ladder(race_curves)
    findings = [c.line() for c in subclaims] + _ladder_findings(steps) + _init_findings(ctx)
    figures = []
    if race_curves:
        figures.append(Figure("training_error.png", f"The race: training error per step (mean of the last {WINDOW} "
                              "steps), ReLU solid, tanh dashed (as in the paper's Fig. 1), one line per seed; the "
                              "grey line is the paper's 25%.", _curves_figure(race_curves)))
    if curves:
        figures.append(Figure("tuning.png", "Tuning (seed 0): training error per step of every grid run, ours "
                              "(LeCun-normal) and the paper's N(0, 0.01²) initialisation.", _curves_figure(curves)))
    columns = ["stage", "arm", "lr", "seed", f"train err % (last {SCORE_STEPS} steps)", "chosen", "steps",
               f"steps to {THRESHOLD:g}%", "test err %", "status"]
    rows = [{c: r.get(c) for c in columns} for r in rows]  # one set of columns for results.csv
    return Analysis(rows=rows, verdict=verdict, reason=reason, columns=columns, findings=findings, figures=figures,
                    answer=_answer(result, steps_at, steps))


def _cap_steps(ctx: Context, outcome: Any, cap_epochs: int) -> int:
    """The most steps a race run could take: its cap in epochs times its steps per epoch."""
    epochs = ctx.records(outcome, "epoch")
    per_epoch = epochs[0]["step"] if epochs else 1
    return cap_epochs * per_epoch


def ladder(curves: dict[str, tuple[list[int], list[float]]]) -> list[tuple[int, float]]:
    """``(threshold, mean ratio tanh / ReLU over seeds)`` at every threshold of :data:`LADDER` that both activations
    reach on every seed of the race."""
    out = []
    for t in LADDER:
        per = {act: [steps_to(st, err, t) for lbl, (st, err) in curves.items() if lbl.startswith(f"{act} ")]
               for act in ACTS}
        if not per["relu"] or any(s is None for s in per["relu"] + per["tanh"]) or len(per["tanh"]) != len(
                per["relu"]):
            continue
        out.append((t, statistics.fmean(b / a for a, b in zip(per["relu"], per["tanh"]))))
    return out


def _ladder_findings(steps: list[tuple[int, float]]) -> list[str]:
    return ["Ratio tanh / ReLU (mean over seeds) at each threshold both reach on every seed: "
            + ", ".join(f"{t}%: {r:.2f}" for t, r in steps) + "."] if steps else []


def _init_findings(ctx: Context) -> list[str]:
    """What the paper's initialisation does to the early race (the tuning grid, seed 0)."""
    best = {a: min(s.values()) for a, s in ctx.scores.items()}
    if "relu-paper-init" not in best:
        return []
    return [f"Initialisation (seed 0, best rate of the grid, training error over the last {SCORE_STEPS} steps of "
            f"the grid's epochs): ours (LeCun-normal) ReLU {best['relu']:.1f}%, tanh {best['tanh']:.1f}%; the "
            f"paper's N(0, 0.01²) ReLU {best['relu-paper-init']:.1f}%, tanh {best['tanh-paper-init']:.1f}%: tanh's "
            f"lag behind ReLU is {best['tanh'] - best['relu']:+.1f} points from our start and "
            f"{best['tanh-paper-init'] - best['relu-paper-init']:+.1f} from the paper's (one seed each)."]


def _answer(result: dict[str, Any], steps_at: dict[str, list[int | None]], steps: list[tuple[int, float]]) -> str:
    c = result["comparison"]
    if c is None:
        return ("**Answer.** Not at this scale: ReLU never reached the paper's 25% training error within the cap, so "
                "the race was not run to its end.")
    relu = statistics.fmean(s for s in steps_at["relu"] if s is not None)
    bound = result["bound"]
    text = (f"**Answer.** With each network at its own fastest learning rate and no regularisation, the ReLU net "
            f"reached 25% training error in {relu:,.0f} steps on average, and the tanh net took "
            f"{'at least ' if bound else ''}{result['ratio']:.1f} times as many")
    if bound:
        text += " (it had not got there when the run's cap stopped it, so the true factor is larger)"
    text += ", against the paper's six. "
    if c.beyond_noise and c.diff > 0:
        text += ("ReLUs do learn faster here: a tanh unit saturates for large inputs, where its gradient all but "
                 "vanishes, while a ReLU passes the gradient of every active unit unchanged. ")
    elif c.beyond_noise:
        text += "Here tanh is the faster one, beyond seed noise. "
    else:
        text += "Over these seeds the difference is within the noise. "
    if len(steps) >= 2:
        (hi_t, hi_r), (lo_t, lo_r) = steps[0], steps[-1]
        trend = "grows" if lo_r > hi_r * 1.2 else "shrinks" if lo_r < hi_r / 1.2 else "stays about the same"
        text += (f"The factor depends on how far training has gone: tanh needs {hi_r:.2f} times ReLU's steps to "
                 f"reach {hi_t}% training error and {lo_r:.2f} times to reach {lo_t}%, so the gap {trend} as the "
                 "error falls, and 'six times' describes one net at one threshold.")
    return text


def _curves_figure(curves: dict[str, tuple[list[int], list[float]]]) -> Any:
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    groups = sorted({lbl.split(" ")[-1] if "seed" in lbl else lbl.split("lr ")[1] for lbl in curves}, key=float)
    for lbl, (st, err) in curves.items():
        key = lbl.split(" ")[-1] if "seed" in lbl else lbl.split("lr ")[1]
        act = lbl.split(" ")[0].split(",")[0]
        ax.plot(st, plots.smooth(err, WINDOW), color=f"C{groups.index(key)}",
                ls="-" if act.startswith("relu") else "--", lw=1.2 if "paper-init" not in act else 0.8,
                alpha=1.0 if "paper-init" not in act else 0.6, label=lbl)
    ax.axhline(THRESHOLD, color="0.5", lw=0.8, ls=":")
    ax.set_ylim(0, 100)
    plots.label_axes(ax, "step (batch of 128)", "training error (%)", legend=7)
    fig.tight_layout()
    return fig


EXPERIMENT = register(Experiment(
    name="relu-vs-tanh",
    question="How much faster does a convolutional net learn with ReLUs than with tanh units?",
    claim="A four-layer convolutional network with ReLUs reaches 25% training error on CIFAR-10 six times faster "
          "than the same network with tanh neurons, each at its own fastest learning rate, with no regularisation.",
    source="Krizhevsky et al., NIPS 2012, §3.1, Fig. 1",
    # the committed standard report (2026-12-07): 3,759 s wall, 5,473 s CPU, beside a niced test-suite run
    measured={"standard": Measured(63, AVX2_EPYC, "beside a niced test-suite run; 91 CPU-min")},
    full_cost="4 arms x 4 learning rates x 2 epochs, then 2 x 5 seeds x up to 60 epochs of a 12-MMAC net on "
              "CIFAR-10: about 2 GPU-hours",
    setup=setup,
    analyse=analyse,
    datasets=("cifar10", "cifar100", "folder:"),
    standard_limit=90,
))
