"""``list``, ``info``, ``recipes`` and ``report``: what the package holds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import table


def cmd_list(args: argparse.Namespace) -> int:
    from ..catalog import COLUMNS, find_models

    rows = find_models(args.patterns)  # the generated catalogue: no torch, no model family imported
    if not rows:
        shown = " ".join(repr(p) for p in args.patterns or [None])
        print(f"no model matches {shown}; run 'milestones list' to see all", file=sys.stderr)
        return 2
    print(table(COLUMNS, [[r[c] for c in COLUMNS] for r in rows]))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from ..measure import count_macs, count_params, layer_summary
    from ..models import create_model, get_spec, model_options

    spec = get_spec(args.name)
    with torch.device("meta"):
        model = create_model(args.name)
        params = count_params(model)
        macs = count_macs(model, spec.input_size)
        rows = layer_summary(model, spec.input_size) if not args.brief else []
    r = spec.reported
    print(f"{spec.name}  ({spec.family} family)")
    print(f"paper:       {spec.paper.cite()}")
    print(f"input:       {'x'.join(str(v) for v in spec.input_size)} (C x H x W)")
    print(f"options:     {', '.join(model_options(args.name))}")
    print()
    print(table(["", "paper", "measured"], [
        ["params", f"{r.params_m}M" if r.params_m is not None else "-", str(params)],
        ["GMACs", r.gmacs if r.gmacs is not None else "-", f"{macs / 1e9:.4g}"],
        [f"top-1 err % ({r.dataset})", r.top1_err if r.top1_err is not None else "-", "see docs/results.md"],
        [f"top-5 err % ({r.dataset})", r.top5_err if r.top5_err is not None else "-", "-"],
    ]))
    if r.source:
        print(f"paper numbers from: {r.source}")
    if spec.counts and spec.counts.source:
        print(f"exact count agrees with: {spec.counts.source}")
    if rows:
        print()
        print(table(["layer", "type", "output", "params", "MACs"],
                    [[x.name, x.kind, "x".join(str(d) for d in x.output_shape[1:]), f"{x.params:,}",
                      f"{x.macs:,}"] for x in rows]))
        print(f"total: {params:,} parameters, {macs:,} multiply-adds")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from ..compare import list_suites
    from ..config import list_recipes

    print("recipes (milestones train --config NAME, or picked by model and --data):")
    for name in list_recipes():
        print(f"  {name}")
    print("suites (milestones compare NAME):")
    for name in list_suites():
        print(f"  {name}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if args.what == "experiments":
        from ..experiments.base import index_markdown

        print(index_markdown(Path(args.docs)), end="")
        return 0
    from ..report import models_markdown

    print(models_markdown(), end="")
    return 0


def add_list(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("list", help="list registered models")
    s.add_argument("patterns", nargs="*", metavar="PATTERN", help="glob patterns, e.g. 'resnet*' 'vgg1?' (any matches)")
    s.set_defaults(handler=cmd_list)


def add_info(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("info", help="paper, reported vs measured numbers, layer summary")
    s.add_argument("name", help="registered model name, e.g. resnet50 ('milestones list' shows them)")
    s.add_argument("--brief", action="store_true", help="skip the layer-by-layer summary")
    s.set_defaults(handler=cmd_info)


def add_recipes(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("recipes", help="list the shipped training recipes and compare suites")
    s.set_defaults(handler=cmd_recipes)


def add_report(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("report", help="generated documentation, e.g. 'milestones report models > docs/models.md'")
    s.add_argument("what", choices=["models", "experiments"], help="models: the table of every registered model "
                   "(docs/models.md); experiments: the index of experiments and their verdicts "
                   "(docs/experiments/README.md)")
    s.add_argument("--docs", default="docs/experiments", help="where the committed experiment reports are (for "
                   "'experiments')")
    s.set_defaults(handler=cmd_report)


PARSERS = {"list": add_list, "info": add_info, "recipes": add_recipes, "report": add_report}
