"""Does the fast path cost accuracy? Train the shipped recipes with ``train.precision`` auto, fp32 and bf16 and compare.

Checks (issue 17), on whatever machine runs this:

1. ``lenet5`` on MNIST (recipe ``mnist_lenet5``) with ``auto`` reaches >= 99.0% test accuracy. ``auto`` keeps the
   LeNet family in float32 on a CPU (``milestones.precision.BF16_KEPT_FP32_CPU``), so a forced bf16 run is added to
   measure bf16 itself.
2. ResNet-20's 10-epoch CIFAR-10 recipe (``cifar10_resnet20``) with ``auto`` within 0.5 points of fp32, two seeds
   each (mean over seeds). Where ``auto`` resolves to fp32 the comparison is trivially equal, so forced bf16 runs are
   added; where it resolves to bf16 they would repeat the auto runs and are left out.

Every run is a normal run directory under ``--out`` (finished runs are reused when the script is run again, so an
interrupted run of the script loses only the run in progress). The report (markdown, for docs/results.md) goes to
stdout and, with ``--report``, to a file; ``--json`` writes every run's summary.

Usage::

    python benchmarks/precision_accuracy.py --data-root ../shared/data          # full: ~1 h on a 2-core CPU
    python benchmarks/precision_accuracy.py --smoke --data-root ../shared/data  # seconds: checks the script only

Run it alone on a quiet machine: the times it reports are only comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from milestones.config import build_config
from milestones.machine import cpu_name
from milestones.models import get_spec
from milestones.precision import cpu_capability, native_bf16, resolve_precision
from milestones.train import run_training

LENET_TARGET = 0.99
RESNET_GAP = 0.5  # points


def _run(model: str, data: str, precision: str, seed: int, args: argparse.Namespace) -> dict:
    name = f"{model}-{data}-{precision}-seed{seed}" + ("-smoke" if args.smoke else "")
    folder = Path(args.out) / name
    if (folder / "summary.json").is_file():
        return json.loads((folder / "summary.json").read_text())
    overrides = [f"--train.precision={precision}", f"--train.seed={seed}", "--train.progress=false",
                 f"--out_dir={args.out}", f"--name={name}"]
    if args.data_root:
        overrides.append(f"--data.root={args.data_root}")
    if args.smoke:
        overrides += ["--train.epochs=1", "--data.train_subset=512", "--data.test_subset=256"]
    cfg = build_config(model=model, data=data, overrides=overrides)
    print(f"training {name}", file=sys.stderr, flush=True)
    return run_training(cfg, overwrite=True).summary


def _arms(model: str) -> list[str]:
    """auto and fp32, plus bf16 where auto does not already run it."""
    auto = resolve_precision("auto", "cpu", get_spec(model).family).value
    return ["auto", "fp32"] + (["bf16"] if auto != "bf16" else [])


def measure(args: argparse.Namespace) -> tuple[str, list[dict]]:
    """Train the runs and return (markdown report, summaries)."""
    rows, summaries = [], []
    checks = []
    lenet = {}
    for arm in ("auto", "bf16"):
        s = _run("lenet5", "mnist", arm, 0, args)
        summaries.append({"arm": arm, "seed": 0, **s})
        lenet[arm] = s
        rows.append(("lenet5", "mnist", arm, s["precision"], "0", f"{100 * s['final_test_acc']:.2f}",
                     f"{s['train_seconds']:.0f}"))
    ok = lenet["auto"]["final_test_acc"] >= LENET_TARGET
    checks.append(f"lenet5 on MNIST with auto ({lenet['auto']['precision']}): "
                  f"{100 * lenet['auto']['final_test_acc']:.2f}% (target >= {100 * LENET_TARGET:.1f}%): "
                  f"{'met' if ok else 'NOT met'}")
    seeds = [0] if args.smoke else [0, 1]
    means = {}
    for arm in _arms("resnet20"):
        accs = []
        for seed in seeds:
            s = _run("resnet20", "cifar10", arm, seed, args)
            summaries.append({"arm": arm, "seed": seed, **s})
            accs.append(s["final_test_acc"])
            rows.append(("resnet20", s["dataset"], arm, s["precision"], str(seed), f"{100 * s['final_test_acc']:.2f}",
                         f"{s['train_seconds']:.0f}"))
        means[arm] = statistics.mean(accs)
    gap = 100 * (means["auto"] - means["fp32"])
    checks.append(f"resnet20, 10-epoch recipe, auto - fp32 = {gap:+.2f} points (mean of {len(seeds)} seed(s); "
                  f"target within {RESNET_GAP}): {'met' if abs(gap) <= RESNET_GAP else 'NOT met'}")
    if "bf16" in means:
        checks.append(f"resnet20, forced bf16 - fp32 = {100 * (means['bf16'] - means['fp32']):+.2f} points")
    flags = ", ".join(native_bf16()) or "none"
    lines = [
        f"Machine: {cpu_name()}; native bf16 flags: {flags}; torch kernels: {cpu_capability()}; "
        f"auto resolves to: lenet5 {lenet['auto']['precision']}, resnet20 "
        f"{resolve_precision('auto', 'cpu', 'resnet').value}." + (" SMOKE MODE: 1 epoch on subsets, not a result."
                                                                 if args.smoke else ""),
        "",
        "| model | data | asked | ran in | seed | test acc % | train s |",
        "|---|---|---|---|---|---|---|",
        *["| " + " | ".join(r) + " |" for r in rows],
        "",
        *[f"- {c}" for c in checks],
    ]
    return "\n".join(lines) + "\n", summaries


def build_parser() -> argparse.ArgumentParser:
    """The script's options (``tests/test_docs.py`` parses the commands in docs/results.md with it)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", help="data folder (default: $MILESTONES_DATA)")
    p.add_argument("--out", default="runs/precision_accuracy", help="folder for the run directories")
    p.add_argument("--smoke", action="store_true", help="1 epoch on 512 images, one seed: tests the script only")
    p.add_argument("--report", help="also write the markdown report here")
    p.add_argument("--json", help="write every run's summary here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report, summaries = measure(args)
    print(report, end="")
    if args.report:
        Path(args.report).write_text(report)
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
