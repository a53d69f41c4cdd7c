"""``vgg-fc-heads``: how much does VGG's performance depend on its fully connected layers?

Simonyan & Zisserman 2015 (ICLR), Table 2: VGG-16 (configuration D) has 138M parameters; counting shows that 124M of
them sit in FC6-FC8, 103M in FC6 alone, which reads the 7x7x512 maps. Network in Network (Lin et al. 2014) replaced
such heads by global average pooling (GAP), "less prone to overfitting than traditional fully connected layers"
(abstract; §3.2), and GoogLeNet (Szegedy et al. 2015, §5) found that "a move from fully connected layers to average
pooling improved the top-1 accuracy by about 0.6%". Every later family here uses GAP.

We build VGG with three heads: the paper's FC-4096-4096 (``head="fc"``), GAP + one linear layer (``"gap"``) and GAP +
one hidden FC + linear (``"gap_fc"``), count parameters, multiply-adds and memory at 224x224, and train the three on
CIFAR-10. Stage 5 keeps its maps (``skip_pools=(5,)``): with all five pools a 32x32 input ends on a 1x1 map, where GAP
is the identity and the question (pooling over positions against position-wise FC weights) is not asked; without the
last pool the final map is 2x2 at no extra multiply-adds in the convolutions. Every head runs the same learning-rate
grid on seed 0 (the rate chosen by validation error), then 3 seeds at its rate, paired by seed. The verdict
(:func:`~.verdict.decide`) takes two sub-claims: GAP is at least as accurate as the FC head (GoogLeNet's direction),
and, as NiN's stated mechanism, the FC head overfits more (a larger gap between training and test error).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..measure import count_macs, count_params
from ..models import create_model
from . import plots
from .base import Analysis, Context, Experiment, Figure, RunSpec, Setup, Tuning, register
from .measures import CPU_GFLOPS, TrainSetError, tuned_mode_minutes, validation_error
from .verdict import (
    HOLDS,
    NOT_REACHED,
    OPPOSITE,
    WITHIN_NOISE,
    Comparison,
    Convergence,
    SubClaim,
    compare,
    decide,
    judge,
    spread,
)

HEADS = ("fc", "gap", "gap_fc")
HEAD_NAMES = {"fc": "FC-4096 x 2 (the paper's)", "gap": "GAP + linear", "gap_fc": "GAP + one hidden FC + linear"}
BYTES_PER_PARAM = 12  # fp32 weight + gradient + SGD momentum buffer
SKIP_POOLS = [5]  # stage 5 keeps its 2x2 maps (at 32 px): GAP averages four positions, FC6 reads 4 x 512 values
GRID = (0.01, 0.03, 0.1)  # peak learning rates, the same for every head (batch 64, Nesterov SGD, cosine)
QUARTER = [16, 32, 64, 128, 128]

# Budget (the standard mode must fit 45 minutes alone on the 2-core CPU): the brief's estimate of 30 GFLOP/s sustained
# on convolutions, 6 x MACs FLOPs per training image and 2 x MACs per evaluated image (validation, test and the clean
# training-set pass, every epoch). VGG-11 (configuration A, with batch norm) at a quarter of the paper's widths, hidden
# FCs of 1,024 (a quarter of 4,096), 2x2 final map: 11.5 (fc) + 9.9 (gap) + 10.0 (gap_fc) = 31.4 MMACs per image for
# the three heads together; each runs 3 grid values + 2 more seeds = 5 runs of 24 epochs over 2,000 images, evaluating
# 1,000 + 2,000 + 500 images: 5 x 24 x (6 x 2,000 + 2 x 3,500) x 31.4M = 72 TFLOP, about 40 minutes
# (budget_minutes("standard")). VGG-16 at full width is 0.31 GMACs per 32x32 image (30 times one quarter-width
# VGG-11) and VGG-11 at half width
# 38-45 MMACs; resnet20 and plain56 measured about twice what the rule gives on this machine, so the run should take
# less.
GFLOPS = CPU_GFLOPS  # GFLOP/s, measures.py's planning figure
# No random crops (flips only), so that the nets can fit their 2,000 images within the budget and be judged at
# convergence (with crops they would still be learning): the regime where NiN's "prone to overfitting" can show.
SHARED = {"train.epochs": 24, "data.train_subset": 2000, "data.test_subset": 2000, "data.val_split": 1000,
          "data.batch_size": 64, "data.crop_padding": 0, "schedule.name": "cosine", "schedule.warmup_epochs": 2,
          "model.kwargs.skip_pools": SKIP_POOLS}
MODES: dict[str, dict[str, Any]] = {
    "smoke": {"model": "vgg11_bn", "widths": [8, 8, 16, 16, 16], "hidden": 64, "grid": (0.05,), "seeds": [0],
              "train_eval": 100,
              "overrides": {**SHARED, "train.epochs": 1, "data.train_subset": 256, "data.test_subset": 200,
                            "data.val_split": 100, "schedule.warmup_epochs": 0}},
    "quick": {"model": "vgg11_bn", "widths": QUARTER, "hidden": 1024, "grid": (0.03,), "seeds": [0],
              "train_eval": 500, "overrides": SHARED},
    "standard": {"model": "vgg11_bn", "widths": QUARTER, "hidden": 1024, "grid": GRID, "seeds": [0, 1, 2],
                 "train_eval": 500, "overrides": SHARED},
    "full": {"model": "vgg16_bn", "widths": [64, 128, 256, 512, 512], "hidden": 4096, "grid": GRID,
             "seeds": [0, 1, 2], "train_eval": 5000,
             "overrides": {**SHARED, "train.epochs": 30, "data.train_subset": None, "data.test_subset": None,
                           "data.val_split": 5000, "data.batch_size": 128}},
}


def model_kwargs(mode: str, head: str) -> dict[str, Any]:
    m = MODES[mode]
    return {"img_size": 32, "widths": list(m["widths"]), "hidden": m["hidden"], "head": head,
            "skip_pools": SKIP_POOLS}


def budget_minutes(mode: str, gflops: float = GFLOPS) -> float:
    """The mode's training time by the brief's estimate (see the comment above :data:`GFLOPS`)."""
    per_image = 0
    for head in HEADS:
        with torch.device("meta"):
            per_image += count_macs(create_model(MODES[mode]["model"], num_classes=10, **model_kwargs(mode, head)),
                                    (3, 32, 32))
    return tuned_mode_minutes(per_image, MODES[mode], gflops=gflops)


def setup(mode: str) -> Setup:
    m = MODES[mode]
    o = {**m["overrides"], "model.kwargs.widths": m["widths"], "model.kwargs.hidden": m["hidden"]}
    recipe = f"cifar10_{m['model']}"
    arms = [RunSpec(f"head-{h}", m["model"], recipe=recipe, overrides={"model.kwargs.head": h},
                    callbacks=lambda: [TrainSetError(limit=m["train_eval"])])
            for h in HEADS]
    tuning = Tuning(arms=arms, grid=m["grid"], score=validation_error,
                    criterion=f"validation error after the last epoch ({o['data.val_split']:,} held-out training "
                              "images)")
    notes = ["Counts at 224x224 (the table's '@224' columns): the paper's VGG-16 (no batch norm) at full width with "
             "each head, on the `meta` device. Memory is computed, not measured: fp32 weights + gradients + SGD "
             "momentum, 12 bytes per parameter; and the activations one 224x224 image leaves for the backward pass "
             "(the outputs of every conv, batch-norm, pool and linear layer, fp32), which are the same for the three "
             "heads up to the head itself.",
             f"Training: `{recipe}` with the head swapped (`model.kwargs.head`), batch norm after each conv (not in "
             "the paper), dropout 0.5 after each hidden FC; stage 5 keeps its maps (`model.kwargs.skip_pools: [5]`), "
             "so the last map is 2x2 (with all five pools it would be 1x1 and GAP the identity) and FC6 reads "
             f"2 x 2 x {m['widths'][-1]} values. Nesterov SGD, momentum 0.9, weight decay 5e-4, batch "
             f"{o['data.batch_size']}, label smoothing 0.1, {o['schedule.warmup_epochs']} warm-up epochs then a "
             "cosine schedule to zero (instead of the recipe's one-cycle, so that the last quarter of training runs "
             "at small learning rates and convergence can be judged). Horizontal flips but no random crops (the "
             "recipe pads by 4 and crops): with crops the nets would still be learning at the end of the budget; "
             "without them they can fit their training images, the regime in which an FC head's overfitting, if "
             "any, shows. Same data, epochs and steps for every head.",
             f"Tuning: every head runs the peak learning rates {', '.join(f'{v:g}' for v in m['grid'])} on seed 0; "
             "the rate with the lowest validation error after the last epoch is chosen (validation images held out "
             "of the training set, `data.val_split`, never the test set), then every head runs at its rate on seeds "
             f"{', '.join(map(str, m['seeds']))}. A seed gives every head the same training subset, batch order and "
             "conv initialisation, so the comparisons are paired by seed (t-test at 95%).",
             "Training error is measured like the test error, on plain training images in eval mode (dropout off), "
             f"after each epoch (`TrainSetError`, {m['train_eval']:,} of the training images). Convergence "
             "(`verdict.converged`) is judged on the loop's running training error over each epoch's batches: the "
             "schedule ran to its end, the learning rate decayed, and the last quarter of the epochs improved it by "
             "under 2 points. img/s is training throughput from the runs, which ran one after another: comparable "
             "with each other only, and only as far as the machine's load was steady."]
    if mode in ("quick", "standard"):
        notes.append(f"**Shrunk:** VGG-11 (configuration A, with batch norm) instead of VGG-16 (the heads are the "
                     f"same; A's FC layers hold 124M of its 133M parameters at 224), at a quarter of the paper's "
                     f"widths ({'-'.join(map(str, m['widths']))}) with hidden FCs of {m['hidden']:,} instead of "
                     f"4,096; {o['train.epochs']} epochs on a class-balanced {o['data.train_subset']:,}-image "
                     f"training subset (drawn per seed), {o['data.val_split']:,} validation and "
                     f"{o['data.test_subset']:,} test images"
                     + ("; one seed and one learning rate (0.03) for every head instead of the grid: a demonstration"
                        if mode == "quick" else "; 3 seeds")
                     + f". Budget by the estimate (30 GFLOP/s, 6 x MACs per training image): "
                       f"{budget_minutes(mode):.0f} minutes.")
    elif mode == "smoke":
        notes.append("Smoke test: 256 images, one epoch, tiny widths; the numbers mean nothing.")
    else:
        notes.append("Full: VGG-16 with batch norm at the paper's widths and hidden FCs of 4,096, 30 epochs on the "
                     "45,000 training images left after a 5,000-image validation split, the whole test set, batch "
                     "128, 3 seeds.")
    return Setup(runs=[], overrides=o, seeds=list(m["seeds"]), notes=notes, tuning=tuning)


def activation_values(model: nn.Module, size: int) -> int:
    """Values one image leaves for the backward pass, approximated by the outputs of every conv, batch-norm, pool and
    linear layer (in-place ReLUs and dropout add none), counted on the meta device."""
    total = 0

    def hook(module: nn.Module, args: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out[0].numel()

    kinds = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    with torch.device("meta"):
        model(torch.empty(1, 3, size, size))
    for h in handles:
        h.remove()
    return total


def head_costs() -> dict[str, dict[str, int]]:
    """Params, conv-part params, MACs and activation values per image of the paper's VGG-16 at 224x224 with each
    head (``fc@224``, ``gap@224``, ``gap_fc@224``)."""
    out = {}
    for head in HEADS:
        with torch.device("meta"):
            model = create_model("vgg16", head=head, img_size=224, num_classes=1000)
        out[f"{head}@224"] = {"params": count_params(model), "conv": count_params(model.stages),
                              "macs": count_macs(model, (3, 224, 224)),
                              "conv_macs": count_macs(model.stages, (3, 224, 224)),
                              "activations": activation_values(model, 224)}
    return out


def analyse(ctx: Context) -> Analysis:
    costs = ctx.cached("head_costs_224", head_costs)
    rows: list[dict[str, Any]] = []
    test: dict[str, list[float]] = {}
    train: dict[str, list[float]] = {}
    conv: dict[str, list[Convergence]] = {}
    speed: dict[str, float] = {}
    curves = {}
    for head in HEADS:
        label = f"head-{head}"
        big = costs[f"{head}@224"]
        row: dict[str, Any] = {
            "head": head, "layers": HEAD_NAMES[head],
            "params @224": f"{big['params'] / 1e6:.2f}M",
            "head share of params @224": f"{100 * (big['params'] - big['conv']) / big['params']:.1f}%",
            "GMACs @224": round(big["macs"] / 1e9, 3),
            "head share of MACs @224": f"{100 * (1 - big['conv_macs'] / big['macs']):.2g}%",
            "weights+grads+momentum @224 (MB)": round(big["params"] * BYTES_PER_PARAM / 2**20),
            "activations per image @224 (MB)": round(big["activations"] * 4 / 2**20, 1),
        }
        outs = ctx.runs(label)
        done = [o for o in outs if o.summary is not None]
        if not done:
            rows.append({**row, "status": f"{len(outs)} failed" if outs else "not run"})
            continue
        for o in done:
            clean = ctx.records(o, "train_eval")
            test.setdefault(head, []).append(100 * (1 - o.summary["final_test_acc"]))
            train.setdefault(head, []).append(100 * clean[-1]["error"] if clean else math.nan)
            conv.setdefault(head, []).append(ctx.convergence(o))
        speed[head] = statistics.fmean(o.summary["img_per_s"] for o in done)
        first = done[0]
        clean, epochs = ctx.records(first, "train_eval"), ctx.records(first, "epoch")
        curves[head] = ([r["epoch"] for r in clean], [100 * r["error"] for r in clean],
                        [100 * (1 - e["test_acc"]) for e in epochs])
        params, macs = done[0].summary["params"], done[0].summary.get("macs") or 0
        row.update({
            "params trained": f"{params / 1e6:.3f}M", "MMACs trained": round(macs / 1e6, 2),
            "weights+grads+momentum trained (MB)": round(params * BYTES_PER_PARAM / 2**20, 1),
            "img/s trained": round(speed[head]), "lr": f"{ctx.chosen.get(label, done[0].planned.cfg.optim.lr):g}",
            "train err %": spread(train[head]).describe(1), "test err %": spread(test[head]).describe(1),
            "test err by seed": " / ".join(f"{t:.1f}" for t in test[head]),
            "converged": f"{sum(c.converged for c in conv[head])}/{len(conv[head])}",
            "status": "ok" if len(done) == len(outs) else f"{len(outs) - len(done)} failed",
        })
        rows.append(row)
    subclaims = claims(test, train, conv)
    verdict, reason = decide(subclaims)
    fc, gap = costs["fc@224"], costs["gap@224"]
    head_m, share = (fc["params"] - fc["conv"]) / 1e6, 100 * (fc["params"] - fc["conv"]) / fc["params"]
    findings = [f"At 224x224 the paper's head holds {head_m:.1f}M of VGG-16's {fc['params'] / 1e6:.1f}M parameters "
                f"({share:.0f}%) but does only {100 * (1 - fc['conv_macs'] / fc['macs']):.1f}% of its "
                f"{fc['macs'] / 1e9:.2f} GMACs: the FC layers are a memory cost "
                f"({fc['params'] * BYTES_PER_PARAM / 2**30:.2f} GB of weights, gradients and momentum against "
                f"{gap['params'] * BYTES_PER_PARAM / 2**30:.2f} GB with GAP; the activations of one image, "
                f"{fc['activations'] * 4 / 2**20:.0f} MB, are the same for both), not a compute cost."]
    findings += [c.line() for c in subclaims]
    if "gap_fc" in test and "fc" in test:
        n = min(len(test["gap_fc"]), len(test["fc"]))
        c = compare(test["gap_fc"][:n], test["fc"][:n], paired=True)
        findings.append(f"GAP + one hidden FC against the FC head (not a claim of the papers): test error "
                        f"{spread(test['gap_fc']).describe()}% vs {spread(test['fc']).describe()}%, difference "
                        f"{c.describe()}.")
    if "fc" in speed and "gap" in speed:
        findings.append(f"Speed as trained: {speed['fc']:.0f} img/s with the FC head, {speed['gap']:.0f} with GAP, "
                        f"{speed.get('gap_fc', float('nan')):.0f} with GAP + FC (training, mean over seeds; the runs "
                        "ran one after another, so the ratio follows the machine's load as much as the heads).")
    late = sorted({c.why for cs in conv.values() for c in cs if not c.converged})
    if late:
        findings.append("Not converged: " + "; ".join(late) + ".")
    figures = [Figure("costs.png", "VGG-16 at 224x224 with each head: parameters split into the conv stages and the "
                      "head (left) and multiply-adds (right).", _cost_figure(costs))]
    if test:
        present = [h for h in HEADS if h in test]
        figures.append(Figure("errors_by_seed.png", "Training error (plain training images, eval mode) and test error "
                              "of each head after the last epoch: bars are the means, dots the seeds.",
                              plots.seed_bars(present, {"training error": [train[h] for h in present],
                                                        "test error": [test[h] for h in present]}, "error (%)")))
    if curves:
        figures.append(Figure("train_test_curves.png", "Training error (solid; plain training images, eval mode) and "
                              "test error (dashed) per epoch, first seed, each GAP head (red) against the FC head "
                              "(grey).", plots.against_reference(curves, "fc", ncols=2)))
    columns = ["head", "layers", "params @224", "head share of params @224", "GMACs @224", "head share of MACs @224",
               "weights+grads+momentum @224 (MB)", "activations per image @224 (MB)", "params trained",
               "MMACs trained", "weights+grads+momentum trained (MB)", "img/s trained", "lr", "train err %",
               "test err %", "test err by seed", "converged", "status"]
    rows = [{c: r.get(c) for c in columns} for r in rows]  # every row has every column (results.csv)
    return Analysis(rows=rows, verdict=verdict, reason=reason, columns=columns, findings=findings, figures=figures,
                    answer=answer(test, subclaims, costs, speed, ctx.mode))


def _paired(a: Sequence[float], b: Sequence[float]) -> Comparison:
    n = min(len(a), len(b))
    return compare(list(a)[:n], list(b)[:n], paired=True)


def claims(test: dict[str, list[float]], train: dict[str, list[float]],
           conv: dict[str, list[Convergence]]) -> list[SubClaim]:
    """Two sub-claims, paired by seed: GAP + linear has a test error no higher than the FC head's (GoogLeNet §5 found
    it 0.6 points better: it holds when GAP is better beyond noise); and (NiN's mechanism) the FC head overfits more,
    its test error exceeding its training error by more than GAP's does. Unconverged runs leave both unreached."""
    acc_name = "GAP + linear classifies better than the FC-4096 head (GoogLeNet §5: about +0.6 top-1)"
    mech_name = "the FC head overfits more than GAP (NiN: FC layers are prone to overfitting)"
    if not test.get("fc") or not test.get("gap"):
        why = f"no finished run of the {'FC' if not test.get('fc') else 'GAP'} head"
        return [SubClaim(acc_name, NOT_REACHED, why), SubClaim(mech_name, NOT_REACHED, why, mechanism=True)]
    runs = conv.get("fc", []) + conv.get("gap", [])
    reached = bool(runs) and all(c.converged for c in runs)
    why = next((f"{k}: {c.why}" for k in ("fc", "gap") for c in conv.get(k, []) if not c.converged), "")
    c = _paired(test["gap"], test["fc"])
    says = (f"test error GAP {spread(test['gap']).describe()}% vs FC {spread(test['fc']).describe()}%; difference "
            f"{c.describe()}")
    out = [judge(acc_name, c, expect=-1, evidence=says, reached=reached,
                 why_not_reached=f"{says}; not converged ({why})")]
    gaps = {}
    for h in ("fc", "gap"):
        pairs = [(te, tr) for te, tr in zip(test[h], train.get(h, [])) if math.isfinite(tr)]
        gaps[h] = [te - tr for te, tr in pairs]
    if not gaps["fc"] or not gaps["gap"]:
        out.append(SubClaim(mech_name, NOT_REACHED, "training error not measured", mechanism=True))
        return out
    g = _paired(gaps["fc"], gaps["gap"])
    says = (f"test minus training error: FC {spread(gaps['fc']).describe()} points vs GAP "
            f"{spread(gaps['gap']).describe()}; difference {g.describe()}")
    out.append(judge(mech_name, g, expect=1, evidence=says, mechanism=True, reached=reached,
                     why_not_reached=f"{says}; not converged ({why})"))
    return out


def answer(test: dict[str, list[float]], subclaims: Sequence[SubClaim], costs: dict[str, dict[str, int]],
           speed: dict[str, float], mode: str) -> str:
    """The report's first paragraph: "how much does VGG's performance depend on its FC layers", in plain words."""
    fc = costs["fc@224"]
    share = 100 * (fc["params"] - fc["conv"]) / fc["params"]
    cost = (f"What is certain is the cost: at 224x224 FC6-FC8 hold {share:.0f}% of VGG-16's "
            f"{fc['params'] / 1e6:.0f}M parameters but do {100 * (1 - fc['conv_macs'] / fc['macs']):.1f}% of its "
            "multiply-adds, so dropping them saves memory (weights, gradients and optimiser state), not compute"
            + (f"; here the nets trained at {speed['fc']:.0f} img/s with the FC head and {speed['gap']:.0f} with GAP"
               if "fc" in speed and "gap" in speed else "") + ".")
    if not test.get("fc") or not test.get("gap"):
        return f"**Answer.** The FC and GAP runs did not both finish, so this run cannot answer. {cost}"
    c = _paired(test["gap"], test["fc"])
    n = MODES[mode]["overrides"]["data.train_subset"]
    scale = (f"a quarter-width VGG-11 on {n:,} CIFAR-10 images" if mode in ("quick", "standard") else
             "tiny nets on a few hundred images" if mode == "smoke" else "full-width VGG-16 on CIFAR-10")
    numbers = (f"test error {statistics.fmean(test['gap']):.1f}% with GAP + linear against "
               f"{statistics.fmean(test['fc']):.1f}% with the FC head, means over seeds")
    status = subclaims[0].status
    if status == NOT_REACHED:
        opening = (f"This run cannot say yet: on {scale} the nets had not converged in their budget ({numbers}), so "
                   "the difference measures how fast the heads learn, not what they can learn.")
    elif status == HOLDS:
        opening = (f"Not on them: on {scale} replacing FC6-FC7 by global average pooling and one linear layer made "
                   f"the net more accurate, beyond seed noise ({numbers}; difference {c.describe()}), as GoogLeNet "
                   "found on ImageNet (§5: about +0.6 points top-1).")
    elif status == OPPOSITE:
        opening = (f"Here it does: on {scale} the FC head was more accurate than global average pooling beyond seed "
                   f"noise ({numbers}; difference {c.describe()}), against GoogLeNet's +0.6 points for average "
                   "pooling on ImageNet (§5).")
    else:
        bound = (f" At 95% the data allow the FC head to be at most {max(c.high, 0.0):.1f} points better and at "
                 f"most {max(-c.low, 0.0):.1f} points worse than GAP." if c.measured and c.low is not None and
                 c.high is not None else "")
        seeds = f"{c.n} seed{'s' if c.n != 1 else ''}"
        opening = (f"Hardly, as far as {seeds} can tell: on {scale} replacing FC6-FC7 by global average pooling and "
                   f"one linear layer changed test error by {c.diff:+.1f} points, within seed noise "
                   f"({numbers}).{bound}")
    mech = next((s for s in subclaims if s.mechanism), None)
    why = ""
    if mech is not None and mech.status == HOLDS:
        why = " The FC head overfits more (its test error sits further above its training error), as NiN said."
    elif mech is not None and mech.status in (WITHIN_NOISE, OPPOSITE):
        why = (" The FC head did not overfit measurably more than GAP here (dropout 0.5 after each hidden FC, weight "
               "decay and augmentation hold it back), so NiN's reason is not what decides it at this scale.")
    return f"**Answer.** {opening}{why} {cost}"


def _cost_figure(costs: dict[str, dict[str, int]]) -> Any:
    """Parameters and multiply-adds at 224x224, each bar split into the conv stages and the head."""
    fig, axes = plots.panels(2, width=5.5)
    heads = list(HEADS)
    for ax, key, scale, unit in ((axes[0], "", 1e6, "parameters (M)"), (axes[1], "macs", 1e9, "multiply-adds (G)")):
        total = [costs[f"{h}@224"][key or "params"] / scale for h in heads]
        conv = [costs[f"{h}@224"][f"conv_{key}" if key else "conv"] / scale for h in heads]
        ax.bar(heads, conv, label="conv stages", color="C0")
        ax.bar(heads, [t - c for t, c in zip(total, conv, strict=True)], bottom=conv, label="head", color="C1")
        for i, (t, c) in enumerate(zip(total, conv, strict=True)):
            ax.text(i, t, f"{t:.1f} ({100 * (t - c) / t:.2g}% head)", ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, 1.12 * max(total))
        ax.set_ylabel(unit)
        ax.set_xlabel("head")
        ax.set_title(f"{unit.split(' ')[0]}, VGG-16 at 224x224")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="center right", framealpha=0.9)
    fig.tight_layout()
    return fig


EXPERIMENT = register(Experiment(
    name="vgg-fc-heads",
    question="How much does VGG's performance depend on its fully connected layers?",
    claim="VGG-16 has 138M parameters (Table 2), most of them in FC6-FC8; later nets replaced the FC layers by global "
          "average pooling, which NiN found less prone to overfitting, and GoogLeNet found that the move improved "
          "top-1 accuracy by about 0.6% (§5), so the same convolutional stages with a GAP head (about 15M parameters) "
          "should classify at least as well.",
    source="Simonyan & Zisserman, ICLR 2015, Tables 1-2; Szegedy et al., CVPR 2015, §5; Lin et al., ICLR 2014, "
           "abstract and §3.2",
    measured={},  # the modes changed with issue 23; not yet measured
    full_cost="3 heads x (3 learning rates + 2 seeds) x 30 epochs of CIFAR-10, VGG-16 at full width (0.31 GMACs per "
              "image): about 1 GPU-hour",
    setup=setup,
    analyse=analyse,
    standard_limit=45,
))
