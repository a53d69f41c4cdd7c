"""``vit-data-hunger``: does a Vision Transformer need more data than a ResNet, and where, if anywhere, does it
catch up?

Dosovitskiy et al. 2021 (ICLR), §4.3, Fig. 3 and 4: pre-trained on ImageNet-1k alone, ViT-B and ViT-L fall behind
BiT ResNets; with ImageNet-21k they are on par and with JFT-300M they overtake. On random JFT subsets (Fig. 4) ViT-B/32
"performs much worse on the 9M subset, but better on 90M+ subsets" than ResNet50: the convolutional inductive bias
helps on small data, learning the patterns from data wins on large data. We train a small ViT (the
``cifar10_vit_ti16`` recipe: ViT-Ti width, 4x4 patches, 6 blocks) against ResNet-20 and a CIFAR ResNet-18 on 10, 25,
50 and 100% of a CIFAR-10 training set (nested, class-balanced subsets) at two budgets:

* **equal epochs**: every model sees every image of its subset the same number of times;
* **equal compute**: every model gets the training multiply-adds the ViT spent at equal epochs (forward and backward
  as ``torch.utils.flop_counter`` counts them, halved, on the meta device; the ResNets' epochs are that budget over
  their own cost per epoch, rounded to a whole epoch, and the report shows the ratio that results).

The seed's sentence "ViT models outperform the current SOTA CNNs by almost four times in terms of computational
efficiency and accuracy" is checked against what the paper says (its Table 2 compute column and §4.4), in the report.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from ..models import create_model, explicit_attention
from . import plots
from .base import EPYC_BF16, Analysis, Context, Experiment, Figure, Measured, RunSpec, Setup, register
from .measures import noise_threshold

FRACTIONS = (0.10, 0.25, 0.50, 1.00)
EQUAL_EPOCHS, EQUAL_COMPUTE = "equal epochs", "equal compute"
CNNS = ("resnet20", "resnet18")

# The same augmentation for all three (pad-4 crop + flip, label smoothing 0.1): the paper's data-hunger runs used
# "moderate regularization" (weight decay, dropout, label smoothing), not the RandAugment/mixup/cutmix the recipe adds
# for DeiT-style training, which is known to close much of the gap (Touvron et al. 2021), a different question.
VIT_AUGMENT = {"data.rand_augment": 0, "data.mixup_alpha": 0.0, "data.cutmix_alpha": 0.0}
MODELS: dict[str, dict[str, Any]] = {
    "vit": {"model": "vit_ti16", "recipe": "cifar10_vit_ti16", "overrides": VIT_AUGMENT},
    "resnet20": {"model": "resnet20", "recipe": "cifar10_resnet20", "overrides": {}},
    "resnet18": {"model": "resnet18", "recipe": "cifar10_resnet20",
                 "overrides": {"model.kwargs.stem": "cifar", "model.kwargs.num_classes": 10}},
}
# The kwargs each model is built with (the recipe's plus the overrides above), for counting its multiply-adds.
KWARGS = {"vit": {"img_size": 32, "patch_size": 4, "depth": 6, "num_classes": 10}, "resnet20": {},
          "resnet18": {"stem": "cifar", "num_classes": 10}}

MODES: dict[str, dict[str, Any]] = {
    # base: the training set the fractions are of; epochs: every model's at equal epochs; equal_epochs: which CNNs
    # also train at equal epochs (all of them at equal compute); lr: per family, for the mode's batch size.
    "quick": {"base": 1600, "test": 500, "epochs": 6, "batch": 32, "fractions": FRACTIONS,
              "equal_epochs": ("resnet20",), "vit_depth": 6, "lr": {"vit": 5e-4, "resnet": 0.05}},
    "full": {"base": None, "test": None, "epochs": 60, "batch": 128, "fractions": FRACTIONS,
             "equal_epochs": CNNS, "vit_depth": 6, "lr": {}},
    "smoke": {"base": 64, "test": 64, "epochs": 1, "batch": 16, "fractions": (0.5, 1.0),
              "equal_epochs": ("resnet20",), "vit_depth": 1, "lr": {}},
}
CIFAR10_TRAIN = 50_000
CHANCE = 10.0  # test accuracy % of a guess among CIFAR-10's ten classes

# Dosovitskiy et al. 2021, Table 2: ImageNet top-1 after fine-tuning (mean of three fine-tuning runs) and the
# pre-training compute in TPUv3-core-days.
TABLE2 = [
    ("ViT-H/14 (JFT-300M)", 88.55, 2.5),
    ("ViT-L/16 (JFT-300M)", 87.76, 0.68),
    ("ViT-L/16 (ImageNet-21k)", 85.30, 0.23),
    ("BiT-L (ResNet152x4, JFT-300M)", 87.54, 9.9),
    ("Noisy Student (EfficientNet-L2, JFT-300M)", 88.4, 12.3),
]


def vit_kwargs(mode: str) -> dict[str, Any]:
    return {**KWARGS["vit"], "depth": MODES[mode]["vit_depth"]}


def model_kwargs(key: str, mode: str) -> dict[str, Any]:
    return vit_kwargs(mode) if key == "vit" else dict(KWARGS[key])


@functools.cache
def _train_macs(name: str, kwargs: tuple[tuple[str, Any], ...]) -> int:
    with torch.device("meta"):
        model = create_model(name, **dict(kwargs))
        x, y = torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)
        with explicit_attention(), FlopCounterMode(display=False) as counter:
            F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() // 2 // 2  # FLOPs -> MACs, batch 2 -> one image


def train_macs_per_image(key: str, mode: str) -> int:
    """Multiply-adds of one training image, forward and backward (about 3x the forward pass), as the counter counts
    them for the model as the experiment builds it."""
    return _train_macs(MODELS[key]["model"], tuple(sorted(model_kwargs(key, mode).items())))


def train_images(mode: str, fraction: float) -> int:
    m = MODES[mode]
    return round(fraction * (m["base"] or CIFAR10_TRAIN))


def steps_per_epoch(n: int, batch: int) -> int:
    """The loader drops the last partial batch when training."""
    return n // batch


def run_macs(epochs: int, n: int, batch: int, macs_per_image: int) -> int:
    """Training multiply-adds of a run: steps x images per step x multiply-adds per image."""
    return epochs * steps_per_epoch(n, batch) * batch * macs_per_image


def compute_epochs(budget_macs: int, n: int, batch: int, macs_per_image: int) -> int:
    """Whole epochs whose training multiply-adds come closest to ``budget_macs`` (at least one)."""
    per_epoch = run_macs(1, n, batch, macs_per_image)
    return max(1, round(budget_macs / per_epoch))


def plan(mode: str) -> list[dict[str, Any]]:
    """Every run of a mode: label, model key, regime(s), fraction, images, epochs, steps and training MACs."""
    m = MODES[mode]
    vit_macs = train_macs_per_image("vit", mode)
    out = []
    for f in m["fractions"]:
        n = train_images(mode, f)
        budget = run_macs(m["epochs"], n, m["batch"], vit_macs)
        pct = f"{round(100 * f)}pct"
        out.append({"label": f"vit-{pct}", "key": "vit", "regimes": (EQUAL_EPOCHS, EQUAL_COMPUTE), "fraction": f,
                    "images": n, "epochs": m["epochs"], "macs": budget})
        for key in CNNS:
            macs = train_macs_per_image(key, mode)
            epochs = compute_epochs(budget, n, m["batch"], macs)
            if key in m["equal_epochs"]:
                both = epochs == m["epochs"]  # the equal-compute run would be the same run: train it once
                out.append({"label": f"{key}-{pct}", "key": key, "fraction": f, "images": n, "epochs": m["epochs"],
                            "regimes": (EQUAL_EPOCHS, EQUAL_COMPUTE) if both else (EQUAL_EPOCHS,),
                            "macs": run_macs(m["epochs"], n, m["batch"], macs)})
                if both:
                    continue
            out.append({"label": f"{key}-compute-{pct}", "key": key, "regimes": (EQUAL_COMPUTE,), "fraction": f,
                        "images": n, "epochs": epochs, "macs": run_macs(epochs, n, m["batch"], macs)})
    for p in out:
        p["steps"] = p["epochs"] * steps_per_epoch(p["images"], m["batch"])
        p["budget_ratio"] = p["macs"] / next(q["macs"] for q in out if q["key"] == "vit"
                                             and q["fraction"] == p["fraction"])
    return out


def setup(mode: str) -> Setup:
    m = MODES[mode]
    runs = []
    for p in plan(mode):
        spec = MODELS[p["key"]]
        over = {**spec["overrides"], "train.epochs": p["epochs"], "data.train_subset": p["images"]}
        if p["key"] == "vit":
            over["model.kwargs.depth"] = m["vit_depth"]
        lr = m["lr"].get("vit" if p["key"] == "vit" else "resnet")
        if lr is not None:
            over["optim.lr"] = lr
        runs.append(RunSpec(p["label"], spec["model"], recipe=spec["recipe"], overrides=over))
    shared: dict[str, Any] = {"data.batch_size": m["batch"]}
    if m["test"]:
        shared["data.test_subset"] = m["test"]
    ratios = {p["key"]: p["epochs"] / m["epochs"] for p in plan(mode) if EQUAL_COMPUTE in p["regimes"]}
    base = f"{m['base']:,}-image class-balanced subset" if m["base"] else "full 50,000-image training set"
    notes = [
        f"Data sizes: {', '.join(f'{round(100 * f)}%' for f in m['fractions'])} of the {base} of CIFAR-10 "
        f"({', '.join(f'{train_images(mode, f):,}' for f in m['fractions'])} images), class-balanced and nested "
        "(each smaller subset is part of the larger ones: `data.train_subset` takes each class's images in the order "
        "of one permutation per seed).",
        f"ViT: `vit_ti16` as the `cifar10_vit_ti16` recipe builds it (width 192, 3 heads, 4x4 patches, 64 tokens + "
        f"class token, {m['vit_depth']} blocks), AdamW, warmup + cosine. ResNet-20 and ResNet-18 (`stem=cifar`: 3x3 "
        "stem, no max-pool) with the `cifar10_resnet20` recipe: Nesterov SGD, one-cycle, weight decay 5e-4.",
        "Augmentation is the same for all three: pad-4 crop + flip, label smoothing 0.1. The ViT recipe's "
        "RandAugment, mixup and cutmix are off, as in the paper's data-size runs (\"moderate regularization\"); "
        "DeiT-style augmentation narrows the gap and is a different question.",
        f"Equal epochs: {m['epochs']} epoch(s) for every model at every size (so a smaller subset also gets fewer "
        "steps). Equal compute: each model gets the training multiply-adds the ViT spent at that size, counted "
        "forward and backward by `torch.utils.flop_counter` (the ViT's attention through the explicit path), in "
        "whole epochs: " + ", ".join(f"{k} {v:.2g}x the ViT's epochs" for k, v in ratios.items() if k != "vit")
        + ". The `training MACs / ViT's` column gives the ratio the rounding leaves. Wall time is reported too but "
        "is not the budget: on a CPU, convolutions and attention run at different fractions of peak.",
    ]
    if mode == "quick":
        notes.append(f"**Shrunk:** the fractions are of a {m['base']:,}-image subset, not of the 50,000 images; "
                     f"{m['epochs']} epochs at batch {m['batch']} (ViT AdamW lr {m['lr']['vit']:g}, the recipe's "
                     f"1e-3 at batch 128 scaled by the square root of the batch ratio; ResNets SGD lr "
                     f"{m['lr']['resnet']:g}, the recipe's 0.2 scaled linearly); test on {m['test']:,} images; "
                     "ResNet-18 trains only at equal compute (at equal epochs it alone would take longer than the "
                     "rest of the experiment). Every model is far from converged: this measures early learning on "
                     "small data, not final accuracy.")
    elif mode == "smoke":
        notes.append("Smoke test: 32 and 64 images, one epoch, a one-block ViT; the numbers mean nothing.")
    else:
        notes.append(f"All 50,000 training and 10,000 test images, {m['epochs']} epochs at the recipes' batch 128 "
                     "and learning rates; ResNet-18 at equal epochs too.")
    return Setup(runs=runs, overrides=shared, notes=notes)


def analyse(ctx: Context) -> Analysis:
    mode = ctx.mode
    rows = []
    for p in plan(mode):
        for regime in p["regimes"]:
            row: dict[str, Any] = {
                "regime": regime, "model": p["key"], "fraction %": round(100 * p["fraction"]),
                "train images": p["images"], "epochs": p["epochs"], "steps": p["steps"],
                "training TMACs": round(p["macs"] / 1e12, 3), "training MACs / ViT's": round(p["budget_ratio"], 3),
                "test acc %": None, "train acc %": None, "wall s": None, "run": p["label"], "status": "missing"}
            for o in ctx.runs(p["label"])[:1]:
                row["status"] = "ok" if o.summary is not None else o.status
                if o.summary is not None:
                    row["test acc %"] = round(100 * o.summary["final_test_acc"], 2)
                    row["train acc %"] = round(100 * (o.summary["final_train_acc"] or 0.0), 2)
                    row["wall s"] = round(float(o.summary.get("wall_seconds") or 0.0), 1)
            rows.append(row)
    acc = [r["test acc %"] for r in rows if r["test acc %"] is not None]
    n_test = MODES[mode]["test"] or 10_000
    noise = noise_threshold([], 100 - sum(acc) / len(acc) if acc else None, n_test)
    verdict, reason, findings = verdict_from_rows(rows, noise["threshold"])
    findings.append(f"Noise: one seed per run; on {n_test:,} test images one standard error of a difference between "
                    f"two runs is {noise['sampling']:.1f} points, so gaps below {noise['threshold']:.1f} points are "
                    "treated as ties.")
    params = {p["key"]: o.summary["params"] for p in plan(mode) for o in ctx.runs(p["label"])[:1] if o.summary}
    findings.append("Per training image (forward + backward): " + ", ".join(
        f"{k} {train_macs_per_image(k, mode) / 1e6:,.0f}M multiply-adds"
        + (f" ({params[k] / 1e6:.2f}M parameters)" if k in params else "") for k in MODELS) + ".")
    findings += match_compute(ctx, rows)
    findings += compute_claim()
    figures = []
    if acc:
        figures.append(Figure("accuracy_vs_data.png", "Test accuracy against the number of training images, at equal "
                              "epochs (left) and at equal training multiply-adds (right); log scale.",
                              accuracy_figure(rows)))
        figures.append(Figure("table2_compute.png", "The paper's Table 2: ImageNet top-1 after fine-tuning against "
                              "pre-training compute (TPUv3-core-days, log scale). Large-data numbers from the paper, "
                              "not ours.", table2_figure()))
    columns = ["regime", "model", "fraction %", "train images", "epochs", "steps", "training TMACs",
               "training MACs / ViT's", "test acc %", "train acc %", "wall s", "status"]
    return Analysis(rows=rows, verdict=verdict, reason=reason, columns=columns, findings=findings, figures=figures)


def gaps(rows: Sequence[Mapping[str, Any]], threshold: float = 0.0
         ) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """ViT's test accuracy minus each CNN's, per (regime, CNN), as (train images, points), smallest size first.
    A size where both are within ``threshold`` of chance (10%) is left out: neither has learned anything there (too
    few steps), so their difference says nothing about data."""
    acc = {(r["regime"], r["model"], r["train images"]): r["test acc %"] for r in rows
           if r.get("status") == "ok" and r.get("test acc %") is not None}
    out: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for (regime, model, n), a in sorted(acc.items(), key=lambda kv: kv[0][2]):
        vit = acc.get((regime, "vit", n))
        if model != "vit" and vit is not None and max(vit, a) > CHANCE + threshold:
            out.setdefault((regime, model), []).append((n, vit - a))
    return out


def crossover(series: Sequence[tuple[int, float]], threshold: float) -> dict[str, Any]:
    """Where the ViT's gap to a CNN changes sign beyond noise as the data grows.

    Returns ``kind``: ``behind`` (the ViT is behind by more than ``threshold`` at every size), ``ahead`` (ahead at
    every size), ``crossover`` (behind at a smaller size and ahead at every size from some larger one on; ``at`` is
    the interpolated number of images, linear in log(images)), ``reversed`` (ahead on small data, behind on large),
    or ``tie`` (anything else: within noise somewhere, no clean change of sign); and ``narrowing``: the gap at the
    largest size minus the gap at the smallest (positive: the ViT gains more from data).
    """
    if not series:
        return {"kind": "tie", "at": None, "narrowing": None}
    values = [g for _, g in series]
    narrowing = values[-1] - values[0] if len(values) > 1 else None
    behind = [g < -threshold for g in values]
    ahead = [g > threshold for g in values]
    if all(behind):
        return {"kind": "behind", "at": None, "narrowing": narrowing}
    if all(ahead):
        return {"kind": "ahead", "at": None, "narrowing": narrowing}
    first_ahead = next((i for i in range(len(values)) if all(ahead[i:])), None)
    if first_ahead and any(behind[:first_ahead]):
        last_behind = max(i for i in range(first_ahead) if behind[i])
        (n0, g0), (n1, g1) = series[last_behind], series[first_ahead]
        t = g0 / (g0 - g1)  # where the straight line through the two gaps crosses zero
        at = math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0)))
        return {"kind": "crossover", "at": round(at), "narrowing": narrowing}
    if ahead[0] and behind[-1]:
        return {"kind": "reversed", "at": None, "narrowing": narrowing}
    return {"kind": "tie", "at": None, "narrowing": narrowing}


def verdict_from_rows(rows: Sequence[Mapping[str, Any]], threshold: float) -> tuple[str, str, list[str]]:
    """The paper: CNNs ahead on small data, the ViT gaining more from more data and overtaking only far beyond
    CIFAR-10's size (ImageNet's 1.3M images were still too few for ViT-B/L). Reproduced here means: the ViT behind
    every CNN at the smallest size and its gap narrowing (or a crossover) in every comparison; partly: behind on
    small data in every comparison but gaining on some or none; not reproduced: not behind on the smallest data."""
    series = gaps(rows, threshold)
    if not series or any(len(s) < 2 for s in series.values()):
        return "not testable here", ("Needs the ViT and a CNN finished, and one of them above chance, at two or more "
                                     "data sizes."), []
    findings, results = [], {}
    for (regime, cnn), s in gaps(rows, -math.inf).items():
        dropped = sorted({n for n, _ in s} - {n for n, _ in series.get((regime, cnn), [])})
        if dropped:
            findings.append(f"{regime}, ViT and {cnn} both within {threshold:.1f} points of chance at "
                            f"{', '.join(f'{n:,}' for n in dropped)} images (too few steps to learn): left out of "
                            "the comparison.")
    for (regime, cnn), s in series.items():
        c = crossover(s, threshold)
        results[(regime, cnn)] = c
        sizes = ", ".join(f"{n:,}: {g:+.1f}" for n, g in s)
        what = {"behind": "behind at every size", "ahead": "ahead at every size", "reversed": "ahead on small data, "
                "behind on large", "tie": "no clean change of sign beyond noise",
                "crossover": f"crossover near {c['at']:,} images" if c["at"] else ""}[c["kind"]]
        trend = ""
        if c["narrowing"] is not None:
            change = ("the ViT gains" if c["narrowing"] > threshold else "the ViT loses ground"
                      if c["narrowing"] < -threshold else "the gap changes within noise")
            trend = f"; from the smallest to the largest size {change} ({c['narrowing']:+.1f} points)"
        findings.append(f"{regime}, ViT minus {cnn} (points of test accuracy by training images: {sizes}): "
                        f"{what}{trend}.")
    small_behind = {k: s[0][1] < -threshold for k, s in series.items()}
    gaining = {k: c["kind"] == "crossover" or (c["narrowing"] or 0.0) > threshold for k, c in results.items()}
    crossed = [k for k, c in results.items() if c["kind"] == "crossover"]
    where = ("" if not crossed else
             " The ViT overtakes " + ", ".join(f"{cnn} ({regime}) near {results[(regime, cnn)]['at']:,} images"
                                               for regime, cnn in crossed) + ".")
    behind = [f"{cnn} ({regime})" for (regime, cnn), c in results.items() if c["kind"] == "behind"]
    losing = [k for k, c in results.items() if c["narrowing"] is not None and c["narrowing"] < -threshold]
    overall = ""
    if behind or losing:
        overall = (" Over all sizes" + (f" the ViT is behind {', '.join(behind)} at every size" if behind else "")
                   + (" and" if behind and losing else "")
                   + (f" it loses ground as the data grows in {len(losing)} of {len(results)} comparisons" if losing
                      else "") + ": in this range (hundreds to thousands of images) more data helps the ResNets "
                   "more; the paper's ViT-B/32 overtook ResNet-50 only between 9M and 90M JFT images (Fig. 4).")
    where += overall
    if all(small_behind.values()) and all(gaining.values()):
        return "reproduced", ("On the smallest subset the ViT is behind every ResNet, and with more data it gains on "
                              "each of them, at equal epochs and at equal compute: the inductive bias is worth most "
                              f"when data is scarce.{where}"), findings
    if all(small_behind.values()):
        some = [f"{cnn} ({regime})" for (regime, cnn), g in gaining.items() if g]
        gain = (f"it gains on {', '.join(some)} only" if some else
                "its gap does not narrow as the data grows in this range")
        return "partly reproduced", ("The ViT is behind every ResNet on the smallest subset, as the paper's "
                                     f"small-data results predict, but {gain}.{where}"), findings
    if any(small_behind.values()):
        which = [f"{cnn} ({regime})" for (regime, cnn), b in small_behind.items() if b]
        return "partly reproduced", (f"On the smallest subset the ViT is behind {', '.join(which)} only; against the "
                                     f"others it is level or ahead.{where}"), findings
    return "not reproduced", ("On the smallest subset the ViT is level with or ahead of every ResNet: no small-data "
                              f"penalty at this scale.{where}"), findings


def match_compute(ctx: Context, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """For each size, the fraction of the ViT's training compute ResNet-20 had spent (at equal compute, whose run is
    the longest) when its test accuracy first reached the ViT's final one: our small-data analogue of the paper's
    compute comparison."""
    mode = ctx.mode
    vit_acc = {r["train images"]: r["test acc %"] for r in rows
               if r["model"] == "vit" and r["regime"] == EQUAL_EPOCHS and r.get("test acc %") is not None}
    out = []
    for p in plan(mode):
        if p["key"] != "resnet20" or EQUAL_COMPUTE not in p["regimes"] or p["images"] not in vit_acc:
            continue
        for o in ctx.runs(p["label"])[:1]:
            if o.summary is None:
                continue
            per_step = p["macs"] / p["steps"]
            vit_macs = p["macs"] / p["budget_ratio"]
            hit = next((e for e in ctx.records(o, "epoch") if 100 * e["test_acc"] >= vit_acc[p["images"]]), None)
            if hit is None:
                out.append(f"{p['images']:,} images: ResNet-20 never reached the ViT's {vit_acc[p['images']]:.1f}% "
                           "with the ViT's compute.")
            else:
                share = hit["step"] * per_step / vit_macs
                out.append(f"{p['images']:,} images: ResNet-20 reached the ViT's final {vit_acc[p['images']]:.1f}% "
                           f"after epoch {hit['epoch']}, with {100 * share:.0f}% of the ViT's training multiply-adds "
                           f"({1 / share:.1f}x less compute for the same accuracy).")
    return out


def compute_claim() -> list[str]:
    """What the paper says about compute, quoted, and what follows for small data."""
    vit_h, bit, ns = TABLE2[0][2], TABLE2[3][2], TABLE2[4][2]
    return [
        "The seed's sentence \"ViT models outperform the current SOTA CNNs by almost four times in terms of "
        "computational efficiency and accuracy\" is not in the paper. What the paper says: abstract, \"Vision "
        "Transformer (ViT) attains excellent results compared to state-of-the-art convolutional networks while "
        "requiring substantially fewer computational resources to train\"; Table 2, pre-training compute in "
        f"TPUv3-core-days, ViT-H/14 {vit_h}k, ViT-L/16 (JFT) 0.68k, ViT-L/16 (ImageNet-21k) 0.23k, BiT-L {bit}k, "
        f"Noisy Student {ns}k, at ImageNet top-1 88.55 / 87.76 / 85.30 / 87.54 / 88.4 (88.5 in Touvron et al.); "
        "Table 2's caption, \"Vision Transformer models pre-trained on the JFT-300M dataset outperform ResNet-based "
        "baselines on all datasets, while taking substantially less computational resources to pre-train\"; §4.4, "
        "\"ViT uses approximately 2 - 4x less compute to attain the same performance (average over 5 datasets)\". "
        "(The abstract is checked against copies of the arXiv abstract; the caption, §4.4 and the table's numbers "
        "against our reading of the paper and PAPERS.md §1.6, not re-read in the PDF on this machine.)",
        f"So \"almost four times\" is the compute ratio BiT-L / ViT-H/14 = {bit / vit_h:.2f} (Noisy Student: "
        f"{ns / vit_h:.1f}x), and the upper end of §4.4's 2-4x. It is not a fourfold gain in accuracy: ViT-H/14 is "
        f"{TABLE2[0][1] - TABLE2[3][1]:+.2f} points over BiT-L on ImageNet and {TABLE2[0][1] - TABLE2[4][1]:+.2f} "
        "over Noisy Student. The paper itself notes that pre-training efficiency depends also on the schedule, "
        "optimiser and weight decay, not only the architecture (§4.2).",
        "What does not follow for small data: every one of those comparisons is pre-training on JFT-300M (303M "
        "images) or ImageNet-21k (14M) followed by fine-tuning; the same paper shows ViT below the ResNets when "
        "trained on ImageNet-1k (1.3M) alone (§4.3, Fig. 3) and on the 9M-image JFT subset (Fig. 4). CIFAR-10 is "
        "50,000 images, 26 times fewer than ImageNet-1k, so the paper predicts the ResNets ahead here at any budget, "
        "and its compute advantage, measured at the accuracy ViT reaches only with huge data, says nothing about "
        "training from scratch on a small set. Our compute-matched runs above are the small-data version of the "
        "question.",
    ]


def accuracy_figure(rows: Sequence[Mapping[str, Any]]) -> Any:
    fig, axes = plots.panels(2, width=5.2, height=4.0)
    for ax, regime in zip(axes, (EQUAL_EPOCHS, EQUAL_COMPUTE), strict=True):
        for i, model in enumerate(("vit", *CNNS)):
            pts = sorted((r["train images"], r["test acc %"]) for r in rows if r["regime"] == regime
                         and r["model"] == model and r.get("test acc %") is not None)
            if pts:
                ax.plot([n for n, _ in pts], [a for _, a in pts], "o-", color=f"C{i}", label=model)
        ax.set_xscale("log")
        plots.label_axes(ax, "training images", "test accuracy %", title=regime)
    fig.tight_layout()
    return fig


def table2_figure() -> Any:
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (name, top1, kdays) in enumerate(TABLE2):
        ax.scatter([kdays], [top1], color=f"C{0 if name.startswith('ViT') else 1}", zorder=3)
        ax.annotate(name, (kdays, top1), textcoords="offset points", xytext=(5, -10 if i % 2 else 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("pre-training compute, thousands of TPUv3-core-days")
    ax.set_ylabel("ImageNet top-1 % (fine-tuned)")
    ax.set_title("Dosovitskiy et al. 2021, Table 2")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


EXPERIMENT = register(Experiment(
    name="vit-data-hunger",
    question="Does a ViT need more data than a ResNet, at equal epochs and at equal compute?",
    claim="Trained on ImageNet-1k alone, ViT-B/L fall below BiT ResNets; they match them with ImageNet-21k and "
          "overtake with JFT-300M; on JFT subsets ViT-B/32 is much worse than ResNet50 at 9M images and better from "
          "90M. Pre-training compute: ViT-H/14 2.5k TPUv3-core-days against BiT-L 9.9k and Noisy Student 12.3k.",
    source="Dosovitskiy et al., ICLR 2021, §4.3, Fig. 3-4, Table 2, CIFAR-10 subsets",
    # the committed report's run on the 2-core AMD EPYC, 1 torch thread: 782 s of CPU time
    # (user + sys), 951 s wall (load average 3-4.5)
    measured={"quick": Measured(13, EPYC_BF16, "CPU time of a 1-thread run under load")},
    full_cost="4 sizes x 5 runs of up to 60 epochs of CIFAR-10 (ResNet-20 up to 271): about 1-2 GPU-hours",
    setup=setup,
    analyse=analyse,
))
