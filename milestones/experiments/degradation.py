"""``degradation``: why do deep plain nets train worse, and why don't residual nets?

He et al. 2016 (CVPR), §4.2 and Fig. 6: on CIFAR-10, plain nets of 20, 32, 44 and 56 layers have *higher training
error* the deeper they are, while ResNets of the same depths and the same parameter counts train better the deeper
they are (test error 8.75 / 7.51 / 7.17 / 6.97 %, Table 6). The optimiser, not overfitting, is the problem. We train
both families with the paper's optimiser (SGD 0.1, momentum 0.9, weight decay 1e-4, batch 128, pad-4 crop + flip),
log every step's training loss and error and the gradient norm of the first convolution, and compare.
"""

from __future__ import annotations

from typing import Any

from ..train.callbacks import GradNorms, StepMetrics
from . import plots
from .base import EPYC_BF16, Analysis, Context, Experiment, Figure, Measured, RunSpec, Setup, register

PAPER_TEST_ERR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97}  # ResNet, Table 6
FIRST = "stem.conv."  # the first convolution's parameters in both families

MODES: dict[str, dict[str, Any]] = {
    "quick": {"depths": (20, 56), "overrides": {"train.epochs": 5, "data.train_subset": 5000,
                                                 "data.test_subset": 2000, "data.batch_size": 32, "optim.lr": 0.025}},
    "full": {"depths": (20, 32, 44, 56), "overrides": {}},
    "smoke": {"depths": (20,), "overrides": {"train.epochs": 1, "data.train_subset": 256, "data.test_subset": 200,
                                              "data.batch_size": 64}},
}


def setup(mode: str) -> Setup:
    m = MODES[mode]
    runs = [RunSpec(f"{family}{d}", f"{family}{d}", recipe="cifar10_resnet20_full",
                    callbacks=lambda: [StepMetrics(), GradNorms(every=5, only=[FIRST])])
            for family in ("plain", "resnet") for d in m["depths"]]
    notes = ["The paper's optimiser and augmentation for every run (`cifar10_resnet20_full` with the model swapped): "
             "SGD lr 0.1, momentum 0.9, weight decay 1e-4 on every parameter, batch 128, pad-4 crop + flip."]
    if mode == "quick":
        notes += ["**Shrunk:** 5 epochs on a class-balanced 5,000-image subset, test on 2,000 images; batch 32 at "
                  "lr 0.025 (the paper's 0.1 at batch 128, scaled linearly: Goyal et al. 2017) so that the same "
                  "images give 780 steps instead of 195, all before the paper's first lr drop; depths 20 and 56 "
                  "only (the ends of the paper's range; 32 and 44 left out for time)."]
    elif mode == "smoke":
        notes += ["Smoke test: 256 images, one epoch; the numbers mean nothing."]
    else:
        notes += ["The paper's full schedule: 164 epochs (64k iterations), lr / 10 at 32k and 48k."]
    return Setup(runs=runs, overrides=m["overrides"], notes=notes)


def analyse(ctx: Context) -> Analysis:
    rows, curves, norms = [], {}, {}
    for spec in ctx.setup.runs:
        family, depth = spec.label[:-2], int(spec.label[-2:])  # "plain20", "resnet56"
        for o in ctx.runs(spec.label):
            if o.summary is None:
                rows.append({"model": spec.label, "family": family, "depth": depth, "status": o.status})
                continue
            epochs = ctx.records(o, "epoch")
            steps = ctx.records(o, "step_metrics")
            grads = ctx.records(o, "grad_norms")
            curves[spec.label] = ([r["step"] for r in steps], [100 * r["error"] for r in steps],
                                  [(e["step"], 100 * (1 - e["test_acc"])) for e in epochs])
            norms[spec.label] = ([g["step"] for g in grads], [g[f"{FIRST}weight"] for g in grads])
            first_grad = [g[f"{FIRST}weight"] for g in grads]
            rows.append({
                "model": spec.label, "family": family, "depth": depth, "params": f"{o.summary['params']:,}",
                "train err % (last epoch)": round(100 * (1 - epochs[-1]["train_acc"]), 2),
                "test err %": round(100 * (1 - o.summary["final_test_acc"]), 2),
                "paper test err %": PAPER_TEST_ERR.get(depth) if family == "resnet" else None,
                "first-conv grad norm (median)": round(sorted(first_grad)[len(first_grad) // 2], 4)
                if first_grad else None,
                "status": "ok",
            })
    verdict, reason, findings = _verdict(rows, ctx.mode)
    figures = []
    if curves:
        figures.append(Figure("training_error.png", "Training error per step (batch error, smoothed; thin: raw) and "
                              "test error per epoch (markers), plain nets left, ResNets right, as in the paper's "
                              "Fig. 6.", plots.error_panels(curves, ["plain", "resnet"])))
        figures.append(Figure("first_layer_grad_norm.png", "Gradient norm of the first convolution's weights, every "
                              "5th step (log scale).", plots.series(norms, "step", "gradient norm (first conv)",
                                                                   log=True)))
    columns = ["model", "params", "train err % (last epoch)", "test err %",
               "paper test err %", "first-conv grad norm (median)", "status"]
    return Analysis(rows=rows, verdict=verdict, reason=reason, columns=columns, findings=findings, figures=figures)


def _verdict(rows: list[dict[str, Any]], mode: str) -> tuple[str, str, list[str]]:
    """Plain nets: does training error grow with depth? ResNets: does it not?"""
    err = {r["model"]: r["train err % (last epoch)"] for r in rows if r.get("status") == "ok"}
    depths = sorted({r["depth"] for r in rows})
    if len(depths) < 2 or not all(f"{f}{d}" in err for f in ("plain", "resnet") for d in (depths[0], depths[-1])):
        return "not testable here", "Needs at least two depths of each family to finish.", []
    shallow, deep = depths[0], depths[-1]
    plain_degrades = err[f"plain{deep}"] > err[f"plain{shallow}"]
    resnet_holds = err[f"resnet{deep}"] <= err[f"resnet{shallow}"] + 1.0  # within a point of batch noise
    findings = [
        f"plain{shallow} -> plain{deep}: training error {err[f'plain{shallow}']:.1f}% -> {err[f'plain{deep}']:.1f}% "
        f"({'higher' if plain_degrades else 'not higher'} when deeper).",
        f"resnet{shallow} -> resnet{deep}: training error {err[f'resnet{shallow}']:.1f}% -> "
        f"{err[f'resnet{deep}']:.1f}%.",
        f"At equal size (0.27M parameters), resnet{shallow} ends at {err[f'resnet{shallow}']:.1f}% training error and "
        f"plain{shallow} at {err[f'plain{shallow}']:.1f}%; at {deep} layers {err[f'resnet{deep}']:.1f}% against "
        f"{err[f'plain{deep}']:.1f}%: the seed's observation that a small ResNet converges more reliably than a "
        f"plain net of similar size is {'borne out' if err[f'resnet{deep}'] < err[f'plain{deep}'] else 'not seen'} "
        "here.",
    ]
    scale = " at this short scale" if mode != "full" else ""
    if plain_degrades and resnet_holds:
        return "reproduced", (f"The deeper plain net trains worse than the shallower one, the deeper ResNet does not"
                              f"{scale}, as in the paper's Fig. 6."), findings
    if plain_degrades or resnet_holds:
        which = "plain nets degrade with depth" if plain_degrades else "ResNets do not degrade with depth"
        why = ""
        if plain_degrades and mode != "full":
            why = (f" The deeper ResNet is still behind the shallower one this early: it has {deep / shallow:.1f}x "
                   "the layers to fit with the same few hundred steps, and the paper's curves are drawn over 64k "
                   "iterations; the full mode is the test of the second half.")
        return "partly reproduced", f"Only half the claim holds{scale}: {which}.{why}", findings
    return "not reproduced", f"Neither trend appears{scale}.", findings


EXPERIMENT = register(Experiment(
    name="degradation",
    question="Why do deeper plain nets train worse, and why don't ResNets?",
    claim="Plain nets of 20-56 layers have higher training error the deeper they are; ResNets of the same depth "
          "train better the deeper they are (test error 8.75 / 7.51 / 7.17 / 6.97% for 20 / 32 / 44 / 56 layers).",
    source="He et al., CVPR 2016, §4.2, Fig. 6 and Table 6, CIFAR-10",
    # 182 s alone on the 2-core AMD EPYC with avx512_bf16, 2 threads, bf16 by auto (322 s in fp32)
    measured={"quick": Measured(4, EPYC_BF16)},
    full_cost="8 runs x 164 epochs of CIFAR-10: about 3 GPU-hours",
    setup=setup,
    analyse=analyse,
))
