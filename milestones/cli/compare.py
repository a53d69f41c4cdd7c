"""``compare``: train a suite of models x seeds (resumable) and write its leaderboard."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .callbacks import progress_bar
from .options import add_data_root, add_device, add_no_progress, add_precision


def cmd_compare(args: argparse.Namespace) -> int:
    from ..compare import collect, load_suite, plan, run_suite, status, write_reports

    suite = load_suite(args.suite)
    settings: dict[str, object] = {}
    if args.data_root:
        settings["data.root"] = args.data_root
    if args.device:
        settings["train.device"] = args.device
    if args.precision:
        settings["train.precision"] = args.precision
    if args.no_progress:
        settings["train.progress"] = False
    out = Path(args.out)
    if args.dry_run:
        planned = plan(suite, out, settings=settings)
        print(f"suite {suite.name}: {len(planned)} runs ({len(suite.runs)} models x {len(suite.seeds)} seeds) "
              f"on {suite.data}, into {out / suite.name}")
        for p in planned:
            c = p.cfg
            print(f"  {p.title:<24} {status(p):<9} {c.train.epochs} epochs, batch {c.data.batch_size}, "
                  f"{c.optim.name} lr {c.optim.lr:g}, {c.schedule.name}")
        return 0

    def event(what: str, p, i: int, n: int) -> None:
        words = {"skip": "finished earlier, skipped", "skip-failed": "failed earlier, skipped (--retry-failed to "
                 "run it again)", "start": "training", "resume": "resuming", "failed": "FAILED", "done": "done"}
        extra = ""
        if what == "done":
            s = json.loads((p.path / "summary.json").read_text())
            extra = f": {100 * s['final_test_acc']:.2f}% in {s['train_seconds']:.0f} s"
        print(f"[{i + 1}/{n}] {p.title}: {words[what]}{extra}", flush=True)

    if args.report_only:
        outcomes = collect(suite, out, settings=settings)
    else:
        from ..train.loop import TrainingInterrupted

        try:
            outcomes = run_suite(suite, out, settings=settings, retry_failed=args.retry_failed, on_event=event,
                                 callbacks=[progress_bar(bar=not args.no_progress)])
        except TrainingInterrupted as e:
            print(f"{e}\nthe suite stopped; run the same 'milestones compare' command again to go on",
                  file=sys.stderr)
            return e.exit_code
    paths = write_reports(suite, outcomes, args.report_dir or out / suite.name)
    failed = sum(o.status == "failed" for o in outcomes)
    missing = sum(o.status == "missing" for o in outcomes)
    print(f"leaderboard: {paths['leaderboard']}")
    print(f"results: {paths['csv']}" + (f"; {failed} failed" if failed else "") + (f"; {missing} not run yet"
                                                                                   if missing else ""))
    return 0


def add_compare(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("compare", help="train a suite of models x seeds (resumable) and write a leaderboard",
                       description="Train every run of SUITE (a YAML file, or a shipped suite: quick, full) that has "
                       "not finished yet, one after another, then write results.csv, leaderboard.md and plots. "
                       "Running it again skips finished runs and resumes an interrupted one.")
    s.add_argument("suite", help="suite file or shipped suite name (see 'milestones recipes')")
    s.add_argument("--out", default="runs", help="folder for the suite's folder (default: runs)")
    s.add_argument("--report-dir", help="where results.csv, leaderboard.md and the plots go (default: the suite's "
                   "folder)")
    add_data_root(s)
    add_device(s, help="cpu, cuda, cuda:1 or auto (default: the recipes')")
    add_precision(s, None, help="train.precision of every run (default: the recipes', auto)")
    s.add_argument("--dry-run", action="store_true", help="list the runs and their state; train nothing")
    s.add_argument("--report-only", action="store_true", help="write the reports from the finished runs only")
    s.add_argument("--retry-failed", action="store_true", help="train again the runs that failed earlier")
    add_no_progress(s)
    s.set_defaults(handler=cmd_compare)


PARSERS = {"compare": add_compare}
