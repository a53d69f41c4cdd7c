"""``experiment``: list or run the experiments that test the papers' claims."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from .callbacks import progress_bar
from .options import add_data_root, add_device, add_no_progress, add_precision, table

WIDTH = 100
"""Columns ``experiment list`` fits in; ``experiment show NAME`` gives the rest."""


def _measured(e: Any) -> str:
    return ", ".join(f"{m} {v.minutes:g} min" for m, v in e.measured.items()) or "-"


def list_table(experiments: Sequence[Any], width: int = WIDTH) -> str:
    """One row per experiment in ``width`` columns: its name, its measured modes and its question, wrapped."""
    rows = [[e.name, _measured(e), e.question] for e in experiments]
    fixed = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(("name", "measured"))]
    room = max(width - sum(fixed) - 4, 20)
    lines = []
    for name, measured, question in rows:
        for i, part in enumerate(textwrap.wrap(question, room, break_on_hyphens=False)):
            lines.append([name, measured, part] if i == 0 else ["", "", part])
    return table(["name", "measured", "question"], lines)


def describe(e: Any) -> str:
    """Everything ``experiment list`` leaves out for one experiment, wrapped to :data:`WIDTH` columns."""

    def para(label: str, text: str) -> str:
        return textwrap.fill(text, WIDTH, initial_indent=f"{label}: ", subsequent_indent="  ", break_on_hyphens=False)

    measured = "; ".join(f"{m}: {v.describe()}" for m, v in e.measured.items()) or "not yet measured"
    return "\n".join([
        e.name, "",
        para("question", e.question),
        para("the paper's claim", e.claim),
        para("source", e.source),
        para("measured wall time", measured),
        para("standard budget", f"{e.standard_limit} minutes on 2 CPU cores"),
        para("full mode", e.full_cost),
        para("--data", ", ".join(e.datasets) if e.datasets else "its own dataset only"),
        para("report", f"docs/experiments/{e.name}/report.md"),
        para("rerun", f"milestones experiment run {e.name} --mode standard"),
    ])


def cmd_experiment(args: argparse.Namespace) -> int:
    from ..experiments import MODES, get_experiment, list_experiments, run_experiment

    if args.action == "list":
        if args.name or args.report_dir or args.out:
            from ..errors import ConfigError

            raise ConfigError("'milestones experiment list' takes no experiment name or folders; "
                              "'milestones experiment show NAME' tells one in full")
        print(list_table(list_experiments()))
        print("\n" + textwrap.fill(f"modes: {', '.join(MODES)} (smoke: seconds, what the tests run; quick: at most 15 "
                                    "minutes on 2 CPU cores, one seed; standard: at most 45 minutes (90 where stated), "
                                    "3 seeds per arm, the committed reports; full: paper scale, for a GPU). "
                                    "Details of one: milestones experiment show NAME", WIDTH))
        return 0
    if args.action == "show":
        if not args.name:
            from ..errors import ConfigError

            raise ConfigError("name the experiment to show: milestones experiment show NAME (see 'milestones "
                              "experiment list')")
        print(describe(get_experiment(args.name)))
        return 0
    if not args.name:
        from ..errors import ConfigError

        raise ConfigError("name the experiment to run: milestones experiment run NAME (see 'milestones experiment "
                          "list')")
    from ..train.loop import TrainingInterrupted

    def event(what: str, p, i: int, n: int) -> None:
        words = {"skip": "finished earlier, skipped", "skip-failed": "failed earlier, skipped", "start": "training",
                 "resume": "resuming", "failed": "FAILED (recorded; the experiment goes on)", "done": "done"}
        print(f"[{i + 1}/{n}] {p.title}: {words[what]}", flush=True)

    try:
        result = run_experiment(args.name, mode=args.mode, out=args.out, seeds=args.seeds, device=args.device,
                                precision=args.precision, data_root=args.data_root, data=args.data,
                                report_dir=args.report_dir,
                                on_event=event,
                                callbacks=[progress_bar(bar=not args.no_progress)])
    except TrainingInterrupted as e:
        print(f"{e}\nthe experiment stopped; run the same command again to go on", file=sys.stderr)
        return e.exit_code
    a = result.analysis
    print(f"{result.experiment.name} ({result.mode}): {a.verdict}. {a.reason}")
    print(f"report: {result.report} ({result.seconds:.0f} s)")
    return 0


def add_experiment(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("experiment", help="list or run the experiments that test the papers' claims",
                       description="'milestones experiment list' shows every experiment with its measured time and "
                       "question; 'milestones experiment show NAME' its claim, source and costs; 'milestones "
                       "experiment run NAME' trains what it needs (finished runs are skipped, an "
                       "interrupted one resumes), analyses it and writes report.md, results.csv and figures.")
    s.add_argument("action", choices=["list", "show", "run"], help="list: every experiment, one line each; show: one "
                   "in full (claim, source, measured times, budgets); run: run the one named")
    s.add_argument("name", nargs="?", help="the experiment to show or run (see 'milestones experiment list')")
    s.add_argument("--mode", default="quick", help="quick (CPU, one seed, <= 15 min), standard (CPU, 3 seeds, <= 45 "
                   "min: the committed reports), full (paper scale, GPU) or smoke (seconds)")
    s.add_argument("--out", help="the experiment's folder (default: runs/experiments/NAME-MODE)")
    s.add_argument("--report-dir", help="also write report.md, results.csv and the figures here")
    s.add_argument("--seeds", type=int, help="seeds per run (default: the mode's)")
    add_device(s, help="cpu, cuda, cuda:1 or auto (default: the recipes')")
    add_precision(s, None, help="the one precision of all the experiment's runs, kept by its folder (default: "
                  "auto, resolved once: bf16 only where auto picks it for every family the experiment trains)")
    add_data_root(s)
    s.add_argument("--data", help="another dataset for an experiment whose question is not tied to one (MNIST-like "
                   "sets for the MNIST experiments; see its report)")
    add_no_progress(s)
    s.set_defaults(handler=cmd_experiment)


PARSERS = {"experiment": add_experiment}
