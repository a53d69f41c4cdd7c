"""``vgg-features-transfer``: how well do VGG features still serve as a backbone, next to a ResNet's?

The seed says VGG lives on "for transfer learning or smaller datasets" and "as a backbone", and asks how many modern
vision tasks still rely on VGG features. Simonyan & Zisserman (ICLR 2015, §4 and Appendix B) showed their ImageNet
features, taken from the last hidden layer and fed to a linear SVM, beat the state of the art on VOC and Caltech;
Razavian et al. (CVPR-W 2014) and Donahue et al. (DeCAF, ICML 2014) made the same point for AlexNet features. We test
the transfer at CIFAR scale with the library's own fine-tuning (``finetune.*`` config keys): pretrain VGG-11-BN
(CIFAR-sized) and ResNet-20 on CIFAR-10 classes 0-4 (airplane ... deer), then learn classes 5-9 (dog ... truck) from
10, 100 or 1000 labels per class in three ways:

* **probe**: a linear classifier on the frozen pretrained features (``finetune.head_only``; frozen batch-norm keeps
  its statistics); VGG's features are FC7's output, ResNet's the global-average-pooled last stage;
* **fine-tune**: all layers from the pretrained weights, the backbone at a tenth of the head's learning rate
  (``finetune.backbone_lr_mult: 0.1``);
* **scratch**: the same network from a random init, same data and steps.
"""

from __future__ import annotations

import math
from typing import Any

from . import plots
from .base import EPYC_BF16, Analysis, Context, Experiment, Figure, Measured, RunSpec, Setup, register

SOURCE_CLASSES = [0, 1, 2, 3, 4]  # airplane, automobile, bird, cat, deer
TARGET_CLASSES = [5, 6, 7, 8, 9]  # dog, frog, horse, ship, truck
METHODS = ("probe", "fine-tune", "scratch")
TEST = "test"
LABELS = (10, 100, 1000)

# Quick mode narrows VGG-11-BN to ResNet-20's multiply-adds (39M vs 41M per 32x32 image): half the channels in the
# first two stages and 256 from the third on, FC6/FC7 of 512; the layer structure is the paper's configuration A.
NARROW_VGG = {"widths": [32, 64, 128, 256, 256], "hidden": 512}
MODELS: dict[str, dict[str, Any]] = {
    "vgg11_bn": {"recipe": "cifar10_vgg11_bn", "lr": 0.05, "kwargs": {"img_size": 32}},
    "resnet20": {"recipe": "cifar10_resnet20", "lr": 0.2, "kwargs": {}},
}

MODES: dict[str, dict[str, Any]] = {
    # per_class: images per class kept of each split (None: all); test: test images (of the 5 classes) measured;
    # pre_epochs: pretraining epochs on classes 0-4; epochs/batch: per labels-per-class size of the transfer runs.
    "quick": {"data": "cifar10", "per_class": 1000, "test": 1000, "pre_epochs": 6, "pre_batch": 128,
              "labels": LABELS, "epochs": {10: 12, 100: 8, 1000: 3}, "batch": {10: 10, 100: 50, 1000: 100},
              "narrow": True},
    "full": {"data": "cifar10", "per_class": None, "test": None, "pre_epochs": 30, "pre_batch": 128,
             "labels": LABELS, "epochs": {10: 100, 100: 40, 1000: 20}, "batch": {10: 10, 100: 50, 1000: 128},
             "narrow": False},
    "smoke": {"data": "cifar10-exact", "per_class": 20, "test": 50, "pre_epochs": 1, "pre_batch": 50,
              "labels": (4,), "epochs": {4: 1}, "batch": {4: 10}, "narrow": True},
}


def _label(model: str, labels: int | None = None, method: str | None = None) -> str:
    return f"{model}-pretrain" if labels is None else f"{model}-{method}-{labels}"


def setup(mode: str) -> Setup:
    m = MODES[mode]
    runs = []
    for model, info in MODELS.items():
        kwargs = {**info["kwargs"], **(NARROW_VGG if m["narrow"] and model == "vgg11_bn" else {})}
        common = {f"model.kwargs.{k}": v for k, v in kwargs.items()}
        pre = _label(model)
        runs.append(RunSpec(pre, model, recipe=info["recipe"], overrides={
            **common, "data.classes": SOURCE_CLASSES, "train.epochs": m["pre_epochs"],
            "data.batch_size": m["pre_batch"], "optim.lr": info["lr"] * m["pre_batch"] / 128}))
        for n in m["labels"]:
            batch = m["batch"][n]
            # the recipe's lr scaled linearly with the batch (Goyal et al. 2017)
            base = {**common, "data.classes": TARGET_CLASSES, "data.train_subset": 5 * n,
                    "train.epochs": m["epochs"][n], "data.batch_size": batch, "optim.lr": info["lr"] * batch / 128}
            runs += [
                RunSpec(_label(model, n, "probe"), model, recipe=info["recipe"], init_from=pre,
                        overrides={**base, "finetune.head_only": True}),
                RunSpec(_label(model, n, "fine-tune"), model, recipe=info["recipe"], init_from=pre,
                        overrides={**base, "finetune.backbone_lr_mult": 0.1}),
                RunSpec(_label(model, n, "scratch"), model, recipe=info["recipe"], overrides=base),
            ]
    notes = [
        "Each model's shipped CIFAR-10 recipe (one-cycle Nesterov SGD, pad-4 crop + flip, label smoothing 0.1) for "
        "every run; the learning rate scaled linearly with the batch (recipe lr x batch / 128). Transfer runs: "
        "`data.classes: [5, 6, 7, 8, 9]` with a class-balanced `data.train_subset` of 5 x labels-per-class images "
        "(nested: the 10-label set is inside the 100-label set); pretraining: `data.classes: [0, 1, 2, 3, 4]`. "
        "Probe and fine-tune runs start from the same seed's pretraining run (`RunSpec.init_from`) with a new "
        "5-way head from the family's `reset_classifier`.",
        f"Test accuracy is the last epoch's on {f'{m[TEST]:,}' if m[TEST] else 'all'} test images of the target "
        "classes (not the best epoch's, which would select on the test set); chance is 20%.",
    ]
    if mode == "quick":
        notes += ["**Shrunk:** the first 1,000 training images of each class (so pretraining sees 5,000 images, "
                  "not 25,000) for 6 epochs; transfer runs 12 / 8 / 3 epochs at batch 10 / 50 / 100 for 10 / 100 / "
                  "1000 labels per class (60 / 80 / 150 steps); 1,000 test images (200 per class, class-balanced); "
                  "VGG-11-BN narrowed to ResNet-20's multiply-adds (widths 32-64-128-256-256, FC6/FC7 of 512: "
                  "2.7M parameters instead of 28M); one seed."]
    elif mode == "smoke":
        notes += ["Smoke test: 20 images per class of the exact CIFAR-10 subset, 4 labels per class, one epoch; "
                  "the numbers mean nothing."]
    else:
        notes += ["Full: all 25,000 training images of classes 0-4 for 30 epochs, the full-width VGG-11-BN "
                  "(28M parameters), all 5,000 test images of classes 5-9."]
    setup_overrides = {"data.test_subset": m["test"]} if m["test"] else {}
    if m["per_class"]:
        setup_overrides["data.max_per_class"] = m["per_class"]
    return Setup(runs=runs, data=m["data"], overrides=setup_overrides, notes=notes)


def _acc(ctx: Context, label: str) -> float | None:
    """Mean final test accuracy (%) over the seeds that finished, or None."""
    accs = [100 * o.summary["final_test_acc"] for o in ctx.runs(label) if o.summary]
    return sum(accs) / len(accs) if accs else None


def analyse(ctx: Context) -> Analysis:
    m = MODES[ctx.mode]
    rows: list[dict[str, Any]] = []
    acc: dict[tuple[str, int, str], float] = {}
    for model in MODELS:
        pre = _label(model)
        done = [o for o in ctx.runs(pre) if o.summary]
        params = f"{done[0].summary['params']:,}" if done else "-"
        macs = f"{done[0].summary['macs'] / 1e6:.1f}M" if done else "-"
        pre_acc = _acc(ctx, pre)
        rows.append({"model": model, "labels/class": "pretrain (classes 0-4)", "method": "-", "params": params,
                     "MACs": macs, "test acc %": _fmt(pre_acc)})
        for n in m["labels"]:
            for method in METHODS:
                a = _acc(ctx, _label(model, n, method))
                if a is not None:
                    acc[(model, n, method)] = a
                rows.append({"model": model, "labels/class": n, "method": method, "params": params, "MACs": macs,
                             "test acc %": _fmt(a)})
    n_test = m["test"] or 5000
    noise = 2 * math.sqrt(2 * 0.25 / n_test) * 100  # two standard errors of a difference at 50% accuracy
    pretrain_images = 5 * (m["per_class"] or 5000)  # classes 0-4 have 5,000 training images each
    verdict, reason, findings = _verdict(acc, m["labels"], noise, pretrain_images)
    findings.append(f"Noise: one seed per run; on {n_test:,} test images two standard errors of a difference "
                    f"between two runs are about {noise:.1f} points (at 50% accuracy); smaller gaps are treated as "
                    "noise.")
    figures = []
    if acc:
        fig, axes = plots.panels(len(MODELS))
        for ax, model in zip(axes, MODELS, strict=True):
            for i, method in enumerate(METHODS):
                xs = [n for n in m["labels"] if (model, n, method) in acc]
                ax.plot(xs, [acc[(model, n, method)] for n in xs], marker="o", color=f"C{i}", label=method,
                        ls="--" if method == "scratch" else "-")
            ax.axhline(20, color="grey", lw=0.8, ls=":", label="chance")
            ax.set_xscale("log")
            plots.label_axes(ax, "labels per class (classes 5-9)", "test accuracy %", title=model)
        fig.tight_layout()
        figures.append(Figure("transfer.png", "Test accuracy on CIFAR-10 classes 5-9 against the labels per class, "
                              "for a linear probe on frozen features, fine-tuning and training from scratch; each "
                              "network was pretrained on classes 0-4.", fig))
        gains = {model: [acc.get((model, n, "probe"), math.nan) - acc.get((model, n, "scratch"), math.nan)
                         for n in m["labels"]] for model in MODELS}
        figures.append(Figure("probe_gain.png", "What the frozen pretrained features are worth: linear-probe accuracy "
                              "minus from-scratch accuracy, in points, per labels-per-class size.",
                              plots.bars([str(n) for n in m["labels"]], gains, "probe - scratch (points)")))
    columns = ["model", "labels/class", "method", "params", "MACs", "test acc %"]
    return Analysis(rows=rows, verdict=verdict, reason=reason, columns=columns, findings=findings, figures=figures)


def _fmt(a: float | None) -> str:
    return "-" if a is None else f"{a:.1f}"


def _verdict(acc: dict[tuple[str, int, str], float], labels: tuple[int, ...], noise: float,
             pretrain_images: int) -> tuple[str, str, list[str]]:
    """The claim: VGG's pretrained features serve as a backbone where labels are few (probe or fine-tune beats
    scratch by more than the noise); and how they compare with ResNet's."""
    needed = [(model, n, method) for model in MODELS for n in labels for method in METHODS]
    if any(k not in acc for k in needed):
        return "not testable here", "Not every run finished.", []
    findings = []
    helps: dict[str, list[int]] = {}
    for model in MODELS:
        helps[model] = []
        for n in labels:
            gain = max(acc[(model, n, "probe")], acc[(model, n, "fine-tune")]) - acc[(model, n, "scratch")]
            if gain > noise:
                helps[model].append(n)
            findings.append(f"{model}, {n} labels per class: probe {acc[(model, n, 'probe')]:.1f}%, fine-tune "
                            f"{acc[(model, n, 'fine-tune')]:.1f}%, scratch {acc[(model, n, 'scratch')]:.1f}% (the "
                            f"better pretrained start minus scratch: {gain:+.1f} points).")
            behind = acc[(model, n, "scratch")] - acc[(model, n, "fine-tune")]
            if behind > noise:
                ratio = 5 * n / pretrain_images
                findings.append(f"{model}, {n} labels per class: training from scratch beats fine-tuning by "
                                f"{behind:.1f} points. The target set ({5 * n:,} images) is {ratio:.2g}x the "
                                f"pretraining set ({pretrain_images:,}); likely reasons, not tested here: the "
                                "pretrained start has little to add at that size, and the backbone's tenth of the "
                                "learning rate keeps it near features made for the other classes.")
    for n in labels:
        gap = acc[("vgg11_bn", n, "probe")] - acc[("resnet20", n, "probe")]
        word = "within noise" if abs(gap) <= noise else ("VGG ahead" if gap > 0 else "ResNet ahead")
        findings.append(f"Frozen features, {n} labels per class: VGG-11-BN {acc[('vgg11_bn', n, 'probe')]:.1f}% vs "
                        f"ResNet-20 {acc[('resnet20', n, 'probe')]:.1f}% ({gap:+.1f} points, {word}).")
    vgg, resnet = helps["vgg11_bn"], helps["resnet20"]
    where = " and ".join(map(str, vgg)) or "no"
    compare = (f"ResNet-20's pretrained start helps at {' and '.join(map(str, resnet))} labels per class"
               if resnet else "ResNet-20's pretrained start helps at no label count")
    compare += " too." if resnet == vgg else "."
    if vgg == list(labels):
        return "reproduced", (f"VGG-11-BN's pretrained features beat training from scratch at every label count "
                              f"({where} per class); {compare}"), findings
    if vgg and vgg[0] == labels[0]:
        return "partly reproduced", (f"VGG-11-BN's pretrained features beat training from scratch with few labels "
                                     f"({where} per class) but not with more; {compare}"), findings
    if vgg:
        return "partly reproduced", (f"VGG-11-BN's pretrained features beat training from scratch at {where} labels "
                                     f"per class only; {compare}"), findings
    return "not reproduced", (f"VGG-11-BN's pretrained features never beat training from scratch by more than the "
                              f"noise; {compare}"), findings


EXPERIMENT = register(Experiment(
    name="vgg-features-transfer",
    question="How well do VGG features still serve as a backbone for a new task with few labels, next to a "
             "ResNet's?",
    claim="VGG's features transfer: taken from a network trained on one task, a linear classifier on them (or "
          "fine-tuning) does well on another task with few labels, which is why VGG lives on as a backbone.",
    source="Simonyan & Zisserman, ICLR 2015, §4 and Appendix B (features for other datasets); the seed's 'VGG as a "
           "backbone'",
    # the committed report's run on the 2-core AMD EPYC, 1 torch thread: 568 s of CPU time
    # (user + sys), 896 s wall while other work shared the machine (load average about 3)
    measured={"quick": Measured(10, EPYC_BF16, "CPU time of a 1-thread run under load")},
    full_cost="20 runs: 2 pretrainings x 30 epochs of 25,000 images plus short transfer runs: about 1 GPU-hour",
    setup=setup,
    analyse=analyse,
))
