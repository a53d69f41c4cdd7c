"""``skip-connections``: what does the skip connection do in each family that uses one?

Three papers route a layer's input around it. He et al. 2016 (ResNet) *add* it back, ``x + F(x)``, and show that a
plain net of the same layers trains worse (§4.2, Fig. 6). Huang et al. 2017 (DenseNet) *concatenate* every earlier
feature map to each layer's input, which "alleviates the vanishing-gradient problem" (abstract) because every layer
gets the loss's gradient directly. The Transformer (Vaswani et al. 2017), and ViT after it (Dosovitskiy et al. 2021,
Eq. 2-3), wraps attention and the MLP in the same addition as ResNet. The seed asks how the idea generalises.

On one budget of CIFAR-10 images, epochs, batch and schedule we train ResNet-20 (addition) against its plain twin
(the same layers without shortcuts), DenseNet-BC-100 (concatenation; no twin: it is the deepest net here), and a small
ViT (the ``cifar10_vit_ti16`` shape) with and without the residuals around attention and MLP (``residual=False``:
each block computes MLP(LN(MSA(LN(x))))). Each run logs its training loss every step (``StepMetrics``) and the
gradient norm of every convolution and linear weight over the first and the last few steps (:class:`EndGradNorms`, a
``GradNorms`` over two windows), from which we draw per-depth gradient profiles at initialisation and at the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..train.callbacks import GradNorms, StepMetrics, grad_norms
from . import plots
from .base import EPYC_BF16, Analysis, Context, Experiment, Figure, Measured, RunSpec, Setup, register

# label -> (model, recipe, the skip it has, the label of its twin without one)
NETS: dict[str, tuple[str, str, str, str | None]] = {
    "resnet20":       ("resnet20",       "cifar10_resnet20_full",   "addition",      "plain20"),
    "plain20":        ("plain20",        "cifar10_resnet20_full",   "none",          None),
    "densenet_bc100": ("densenet_bc100", "cifar10_resnet20_full",   "concatenation", "plain20"),
    "vit":            ("vit_ti16",       "cifar10_vit_ti16",        "residual",      "vit_noskip"),
    "vit_noskip":     ("vit_ti16",       "cifar10_vit_ti16",        "none",          None),
}
FAMILIES = {"addition": ("resnet20", "plain20"), "concatenation": ("densenet_bc100", "plain20"),
            "residual": ("vit", "vit_noskip")}
PANELS = {"ResNet-20 vs plain-20 (addition)": ("resnet20", "plain20"),
          "DenseNet-BC-100 (concatenation)": ("densenet_bc100",),
          "ViT with vs without residual": ("vit", "vit_noskip")}
# Each paper's SGD lr scaled linearly to batch 32 (Goyal et al. 2017): ResNet 0.1 at 128, DenseNet 0.1 at 64. AdamW's
# 1e-3 at 128 scaled by the square root (Malladi et al., NeurIPS 2022, the square-root rule for adaptive methods).
LR_AT_32 = {"resnet20": 0.025, "plain20": 0.025, "densenet_bc100": 0.05, "vit": 5e-4, "vit_noskip": 5e-4}
VIT_PLAIN_DATA = {"data.rand_augment": 0, "data.mixup_alpha": 0.0, "data.cutmix_alpha": 0.0,
                  "train.label_smoothing": 0.0}
# DenseNet's growing concatenations make a 1,000-image evaluation batch take gigabytes: evaluate 200 at a time.
SHARED = {"schedule.name": "cosine", "optim.nesterov": False, "data.eval_batch_size": 200}

MODES: dict[str, dict[str, Any]] = {
    "quick": {"window": 10, "vit_depth": 4, "overrides": {
        "train.epochs": 2, "data.train_subset": 3000, "data.test_subset": 1000, "data.batch_size": 32,
        "schedule.warmup_epochs": 0.5}},
    "full": {"window": 50, "vit_depth": 6, "overrides": {"train.epochs": 60, "data.batch_size": 32,
                                                         "schedule.warmup_epochs": 2}},
    "smoke": {"window": 2, "vit_depth": 2, "overrides": {
        "train.epochs": 1, "data.train_subset": 64, "data.test_subset": 50, "data.batch_size": 16,
        "data.eval_batch_size": 50, "schedule.warmup_epochs": 0}},
}
LOSS_FLOOR = 0.02  # relative: training losses closer than 2% of the larger are a tie whatever their spread


class EndGradNorms(GradNorms):
    """``GradNorms`` of every convolution and linear weight, in the order the modules are built (input to
    classifier), over the first ``window`` and the last ``window`` steps of a run: a per-depth gradient profile at
    initialisation and at the end without logging every step."""

    def __init__(self, window: int) -> None:
        super().__init__(every=1)
        self.window = window
        self.total = 0
        self.layers: list[str] = []

    def on_fit_start(self, state: Any, total_steps: int) -> None:
        self.total = total_steps
        self.layers = [f"{name}.weight" for name, m in state.model.named_modules()
                       if isinstance(m, (nn.Conv2d, nn.Linear))]

    def on_backward(self, state: Any) -> dict[str, Any] | None:
        step = state.step + 1
        if self.window < step <= self.total - self.window:
            return None
        norms = grad_norms(state.model)
        record = {"kind": self.kind, "step": step, **{k: norms.get(k, 0.0) for k in self.layers}}
        self.records.append(record)
        return record


def setup(mode: str) -> Setup:
    m = MODES[mode]
    runs = []
    for label, (model, recipe, _, _) in NETS.items():
        over: dict[str, Any] = {"optim.lr": LR_AT_32[label]}
        if model == "vit_ti16":
            over |= {**VIT_PLAIN_DATA, "model.kwargs.depth": m["vit_depth"]}
            if label == "vit_noskip":
                over["model.kwargs.residual"] = False
        runs.append(RunSpec(label, model, recipe=recipe, overrides=over,
                            callbacks=lambda w=m["window"]: [StepMetrics(), EndGradNorms(w)]))
    notes = [
        "One budget for all five nets: the same images, epochs, batch 32 and a cosine schedule; each family keeps its "
        "paper's optimiser. The three CNNs run from `cifar10_resnet20_full` (the model swapped): SGD with momentum "
        "0.9 and weight decay 1e-4 on every parameter, which is also DenseNet's (§4.2, there with Nesterov momentum, "
        "dropped here so that the CNNs share one optimiser); lr 0.025 for ResNet-20 and plain-20 (0.1 at batch "
        "128) and 0.05 for DenseNet-BC (0.1 at batch 64), scaled linearly. The ViTs run from `cifar10_vit_ti16`: "
        "AdamW, weight decay 0.05, lr 5e-4 (the recipe's 1e-3 at batch 128, square-root scaled). Augmentation is "
        "pad-4 crop + flip for every net: the ViT recipe's RandAugment, mixup, cutmix and label smoothing are off, "
        "so that every training loss is plain cross-entropy.",
        "The ViT is ViT-Ti's width (192, 3 heads, MLP 768) on 4x4 patches of the 32x32 image (64 tokens + class "
        f"token), {m['vit_depth']} blocks; `vit_noskip` is the same net with `residual=False` (identical parameters "
        "and initialisation; the pre-norm LayerNorms stay in front of each sublayer).",
        f"Gradient profiles: the L2 norm of each convolution and linear weight's gradient (before the optimiser step), "
        f"averaged over the first {m['window']} steps ('init') and the last {m['window']} ('end'), layers in build "
        "order from the input to the classifier. The in/out ratio is the geometric mean of the first third of the "
        "layers (classifier excluded) over that of the last third: below 1 the gradient shrinks on its way to the "
        "input (vanishing), above 1 it grows (with batch norm, a plain net's gradient grows towards the input at "
        "initialisation: Yang et al., ICLR 2019). ViT's classifier is zero-initialised (the official init), so at "
        "step 1 no gradient reaches its trunk; zero norms are left out of the averages.",
    ]
    if mode == "quick":
        notes += ["**Shrunk:** 2 epochs on a class-balanced 3,000-image subset (186 steps at batch 32, the first "
                  "half-epoch a linear warmup), tested on 1,000 test images; ViT depth 4 instead of the recipe's 6; "
                  "one seed. Sized from timing probes: a DenseNet-BC-100 step costs about 19 ResNet-20 steps on a "
                  "CPU (0.29 against 0.04 GMACs per image, and many small concatenations), a depth-4 ViT step about "
                  "4, and DenseNet-BC takes most of the time."]
    elif mode == "smoke":
        notes += ["Smoke test: 64 images, one epoch, ViT depth 2; the numbers mean nothing."]
    else:
        notes += ["Full: the whole 50,000-image training set for 60 epochs at batch 32 (about 94k steps) for every "
                  "net, ViT depth 6 as in the recipe."]
    return Setup(runs=runs, overrides={**SHARED, **m["overrides"]}, notes=notes)


def profile(records: Sequence[dict[str, Any]], steps: set[int]) -> list[tuple[str, float]]:
    """Each layer's mean gradient norm over the records of ``steps``, zeros left out (0.0 where all are zero), in
    the records' layer order."""
    chosen = [r for r in records if r["step"] in steps]
    if not chosen:
        return []
    layers = [k for k in chosen[0] if k not in ("kind", "step", "total")]
    out = []
    for name in layers:
        values = [r[name] for r in chosen if r.get(name)]
        out.append((name, sum(values) / len(values) if values else 0.0))
    return out


def in_out_ratio(norms: Sequence[float]) -> float | None:
    """Geometric mean of the first third of the layers' gradient norms over that of the last third, the classifier
    (the last layer) left out; None if there are fewer than three such layers or a zero among them."""
    trunk = list(norms[:-1])
    third = len(trunk) // 3
    if third < 1:
        return None
    first, last = trunk[:third], trunk[-third:]
    if min(first + last) <= 0:
        return None

    def gmean(xs: Sequence[float]) -> float:
        return math.exp(sum(math.log(x) for x in xs) / len(xs))

    return gmean(first) / gmean(last)


def _loss_stats(steps: Sequence[dict[str, Any]], per_epoch: int) -> tuple[float, float]:
    """Mean and standard error of the per-step training losses of the last epoch."""
    last = [s["loss"] for s in steps[-per_epoch:]]
    mean = sum(last) / len(last)
    var = sum((x - mean) ** 2 for x in last) / max(len(last) - 1, 1)
    return mean, math.sqrt(var / len(last))


def analyse(ctx: Context) -> Analysis:
    window = MODES[ctx.mode]["window"]
    rows, curves, profiles = [], {}, {}
    for spec in ctx.setup.runs:
        model, _, skip, _ = NETS[spec.label]
        for o in ctx.runs(spec.label):
            row: dict[str, Any] = {"model": spec.label, "skip": skip, "weight layers": None, "params": None,
                                   "train loss (last epoch)": None, "loss s.e.": None, "train err %": None,
                                   "test err %": None, "grad in/out (init)": None, "grad in/out (end)": None,
                                   "status": "ok" if o.summary is not None else o.status}
            if o.summary is None:
                rows.append(row)
                continue
            epochs = ctx.records(o, "epoch")
            steps = ctx.records(o, "step_metrics")
            grads = ctx.records(o, "grad_norms")
            total = epochs[-1]["step"]
            per_epoch = total // len(epochs)
            init = profile(grads, set(range(1, window + 1)))
            end = profile(grads, set(range(total - window + 1, total + 1)))
            profiles[spec.label] = ([v for _, v in init], [v for _, v in end])
            curves[spec.label] = ([s["step"] for s in steps], [s["loss"] for s in steps])
            loss, se = _loss_stats(steps, per_epoch)
            r_init, r_end = in_out_ratio(profiles[spec.label][0]), in_out_ratio(profiles[spec.label][1])
            row.update({
                "weight layers": len(init), "params": f"{o.summary['params']:,}",
                "train loss (last epoch)": round(loss, 4), "loss s.e.": round(se, 4),
                "train err %": round(100 * (1 - epochs[-1]["train_acc"]), 2),
                "test err %": round(100 * (1 - o.summary["final_test_acc"]), 2),
                "grad in/out (init)": None if r_init is None else float(f"{r_init:.3g}"),
                "grad in/out (end)": None if r_end is None else float(f"{r_end:.3g}"),
            })
            rows.append(row)
    verdict, reason, findings = _verdict(rows, ctx.mode)
    figures = []
    if profiles:
        figures.append(Figure("grad_profile.png", f"Gradient norm of every convolution and linear weight, from the "
                              f"input (layer 0) to the classifier, averaged over the first {window} steps (dashed, "
                              f"'init') and the last {window} (solid, 'end'); log scale. The ViTs' init norms are "
                              "small because their classifier starts at zero and has taken only a few steps. A norm is "
                              "per weight tensor, so shapes matter (DenseNet's zig-zag: 1x1 bottleneck and 3x3 convs "
                              "alternate, transitions spike): compare each net with its twin, whose shapes are equal.",
                              _profile_figure(profiles)))
    if curves:
        figures.append(Figure("training_loss.png", "Training loss (cross-entropy) per step, smoothed (thin: raw), "
                              "one panel per kind of skip.", _loss_figure(curves)))
    columns = ["model", "skip", "weight layers", "params", "train loss (last epoch)", "train err %", "test err %",
               "grad in/out (init)", "grad in/out (end)", "status"]
    return Analysis(rows=rows, verdict=verdict, reason=reason, columns=columns, findings=findings, figures=figures)


def _profile_figure(profiles: dict[str, tuple[list[float], list[float]]]) -> Any:
    fig, axes = plots.panels(len(PANELS), width=5.0, height=3.8)
    for ax, (title, labels) in zip(axes, PANELS.items(), strict=True):
        for i, label in enumerate(lb for lb in labels if lb in profiles):
            for values, style, when in ((profiles[label][0], "--", "init"), (profiles[label][1], "-", "end")):
                xs = [j for j, v in enumerate(values) if v > 0]
                ax.plot(xs, [values[j] for j in xs], style, color=f"C{i}", lw=1.2, marker=".", ms=3,
                        label=f"{label} {when}")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("layer (input -> classifier)")
        ax.set_ylabel("gradient norm")
        ax.grid(True, alpha=0.3)
        _legend_or_note(ax, 7)
    fig.tight_layout()
    return fig


def _loss_figure(curves: dict[str, tuple[list[int], list[float]]]) -> Any:
    fig, axes = plots.panels(len(PANELS), width=5.0, height=3.8)
    for ax, (title, labels) in zip(axes, PANELS.items(), strict=True):
        for i, label in enumerate(lb for lb in labels if lb in curves):
            steps, loss = curves[label]
            ax.plot(steps, loss, color=f"C{i}", alpha=0.2, lw=0.6)
            ax.plot(steps, plots.smooth(loss, max(1, len(loss) // 15)), color=f"C{i}", lw=1.6, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.grid(True, alpha=0.3)
        _legend_or_note(ax, 8)
    fig.tight_layout()
    return fig


def _legend_or_note(ax: Any, fontsize: int) -> None:
    if ax.lines:
        ax.legend(fontsize=fontsize)
    else:
        ax.text(0.5, 0.5, "no finished run", ha="center", va="center", transform=ax.transAxes, color="0.4")


def compare_losses(with_skip: dict[str, Any], without: dict[str, Any]) -> str:
    """``helps``, ``hurts`` or ``tie``: the final training losses of two rows apart by more than twice the standard
    error of their difference and by more than 2% of the larger; a run without the skip that failed (diverged) while
    the one with it finished counts as ``helps``."""
    if without.get("status") == "failed" and with_skip.get("status") == "ok":
        return "helps"
    a, b = with_skip["train loss (last epoch)"], without["train loss (last epoch)"]
    noise = max(2 * math.hypot(with_skip["loss s.e."], without["loss s.e."]), LOSS_FLOOR * max(a, b))
    if a < b - noise:
        return "helps"
    if a > b + noise:
        return "hurts"
    return "tie"


def gradient_effect(with_skip: dict[str, Any], without: dict[str, Any]) -> str:
    """What the skip does to the per-depth gradient profile at initialisation, from the in/out ratios: a ratio
    closer to 1 (in log terms) is a flatter profile, the input layers getting as much gradient as the output ones."""
    a, b = with_skip.get("grad in/out (init)"), without.get("grad in/out (init)")
    if a is None or b is None:
        return ""
    if abs(math.log(a)) < abs(math.log(b)):
        return "; at initialisation its gradient profile is the flatter one (in/out ratio nearer 1)"
    more = "more" if a > b else "less"
    return f"; at initialisation its profile is not the flatter one: the input layers get {more} of the gradient"


def _ratio_text(row: dict[str, Any]) -> str:
    r0, r1 = row.get("grad in/out (init)"), row.get("grad in/out (end)")
    if r0 is None:
        return "no gradient profile"
    return f"in/out gradient ratio {r0:.3g} at init" + (f", {r1:.3g} at the end" if r1 is not None else "")


def _verdict(rows: list[dict[str, Any]], mode: str) -> tuple[str, str, list[str]]:
    """Per family, does the net with the skip train to a lower loss than its twin without (for DenseNet, which has
    none: than plain-20, a net a fifth as deep)? Addition and residual hold when the skip helps; concatenation holds
    when DenseNet-BC-100 is not worse than plain-20 (its depth alone would make a plain net degrade)."""
    by = {r["model"]: r for r in rows}
    outcomes: dict[str, str] = {}
    for family, (a, b) in FAMILIES.items():
        if by.get(a, {}).get("status") == "ok" and by.get(b, {}).get("status") in ("ok", "failed"):
            outcomes[family] = compare_losses(by[a], by[b])
    findings = []
    for family, (a, b) in FAMILIES.items():
        if family not in outcomes:
            continue
        ra, rb = by[a], by[b]
        loss_b = "diverged" if rb.get("status") == "failed" else f"{rb['train loss (last epoch)']:.3f}"
        findings.append(f"{family}: `{a}` ends at training loss {ra['train loss (last epoch)']:.3f} "
                        f"({_ratio_text(ra)}), `{b}` at {loss_b} ({_ratio_text(rb)}): the skip "
                        f"{_SAYS[family][outcomes[family]]}{gradient_effect(ra, rb)}.")
    if len(outcomes) < len(FAMILIES):
        missing = [f for f in FAMILIES if f not in outcomes]
        return "not testable here", f"The runs for {', '.join(missing)} did not finish.", findings
    holds = {"addition": outcomes["addition"] == "helps",
             "concatenation": outcomes["concatenation"] in ("helps", "tie"),
             "residual": outcomes["residual"] == "helps"}
    scale = " at this short scale" if mode != "full" else ""
    words = {"addition": f"addition (ResNet-20 vs plain-20) {_SAYS['addition'][outcomes['addition']]}",
             "concatenation": f"concatenation (DenseNet-BC-100) {_SAYS['concatenation'][outcomes['concatenation']]}",
             "residual": f"the transformer's residual (ViT with vs without) {_SAYS['residual'][outcomes['residual']]}"}
    summary = "; ".join(words.values())
    n = sum(holds.values())
    if n == len(holds):
        return "reproduced", f"In every family the skip makes the net train better{scale}: {summary}.", findings
    if n:
        return "partly reproduced", f"The claim holds in {n} of 3 families{scale}: {summary}.", findings
    return "not reproduced", f"No family trained better with its skip{scale}: {summary}.", findings


_SAYS = {
    "addition": {"helps": "lowers the training loss beyond noise", "tie": "makes no difference beyond noise",
                 "hurts": "ends at a higher training loss"},
    "concatenation": {"helps": "lets a 100-layer net train lower than the 20-layer plain net",
                      "tie": "lets a 100-layer net train as low as the 20-layer plain net",
                      "hurts": "does not keep a 100-layer net up with the 20-layer plain net"},
    "residual": {"helps": "lowers the training loss beyond noise", "tie": "makes no difference beyond noise",
                 "hurts": "ends at a higher training loss"},
}


EXPERIMENT = register(Experiment(
    name="skip-connections",
    question="What does the skip connection do in each family: ResNet's addition, DenseNet's concatenation, the "
             "transformer's residual?",
    claim="Shortcut connections let deep nets train: a plain net of the same layers has higher training error than "
          "its ResNet (ResNet §4.2, Fig. 6); dense connectivity \"alleviates the vanishing-gradient problem\" "
          "(DenseNet, abstract); the Transformer puts a residual connection around each of its sublayers (Vaswani "
          "et al. 2017, §3.1), as ViT does (Eq. 2-3).",
    source="He et al., CVPR 2016, §4.2; Huang et al., CVPR 2017; Dosovitskiy et al., ICLR 2021, Eq. 2-3, CIFAR-10",
    # the committed report's run on the 2-core AMD EPYC, 1 torch thread: 455 s of CPU time (user +
    # sys), 1,111 s of wall time because the machine was shared (load average 5-7)
    measured={"quick": Measured(8, EPYC_BF16, "CPU time of a 1-thread run under load")},
    full_cost="5 runs x 60 epochs of CIFAR-10 at batch 32: about 2 GPU-hours",
    setup=setup,
    analyse=analyse,
))
