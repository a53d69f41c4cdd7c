"""What an experiment is, and the one runner that trains its runs, analyses them and writes its report.

An :class:`Experiment` is declarative: a question, the paper's claim with its source, and two functions. ``setup(mode)``
returns the runs to train (models x overrides, as a ``compare`` suite) and the shrinks that mode makes;
``analyse(ctx)`` reads the finished runs from disk (summaries and ``metrics.jsonl`` records, including those that
callbacks such as :class:`~milestones.train.callbacks.GradNorms` logged) and returns tables, figures and a verdict.
The runner reuses ``compare``: finished runs are skipped, an interrupted one resumes exactly, a diverging one is
recorded as failed and the experiment goes on.

Modes: ``quick`` (at most 15 minutes on 2 CPU cores; subsets, fewer epochs, narrower nets, each shrink stated in the
report), ``full`` (the paper-scale version, for a GPU) and ``smoke`` (seconds; what the test suite runs).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from ..compare import Outcome, Suite, SuiteRun, run_suite
from ..errors import ConfigError, RunDirError
from ..train.callbacks import Callback
from ..train.checkpoint import atomic_write
from ..train.rundir import RunDir
from . import plots

MODES = ("quick", "full", "smoke")
VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "not testable here")
MARKER = "experiment.json"


@dataclass(frozen=True)
class RunSpec:
    """One training run of an experiment: a registered model, the recipe it starts from, its overrides (dotted config
    keys, ``model.kwargs.*`` included) and the measuring callbacks it needs (made fresh for each run)."""

    label: str
    model: str
    recipe: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    callbacks: Callable[[], Sequence[Callback]] | None = None
    seeds: Sequence[int] | None = None
    """This run's seeds instead of the setup's, e.g. a second seed of the reference run alone to measure the noise
    when every run cannot have two (``--seeds`` still sets every run's)."""
    init_from: str | None = None
    """The label of an earlier run of the experiment (same seeds) whose trained weights this run starts from: a
    pretraining run, then fine-tuning runs (``finetune.*`` overrides choose the head, freezing and learning rates)."""


@dataclass
class Setup:
    """What a mode trains: the runs, the data, shared overrides and seeds, and the shrinks to state in the report."""

    runs: list[RunSpec]
    data: str | None = "cifar10"
    """The dataset the runs train on; None for an experiment that trains nothing (measurements only)."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    notes: list[str] = field(default_factory=list)


@dataclass
class Figure:
    name: str  # file name, e.g. "curves.png"
    caption: str
    figure: Any  # a matplotlib Figure


@dataclass
class Analysis:
    """What ``analyse`` returns. ``rows`` become ``results.csv`` and the report's table (``columns`` chooses and orders
    the columns shown; values are printed as they are, so format floats in the rows you build)."""

    rows: list[dict[str, Any]]
    verdict: str
    reason: str
    columns: list[str] | None = None
    findings: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


@dataclass
class Context:
    """What ``analyse`` gets: the mode, the setup, every run's outcome by label and seed, and the output folder."""

    mode: str
    setup: Setup
    outcomes: list[Outcome]
    out: Path
    data_root: str | None = None
    device: str | None = None
    """The device asked for (``--device``); None means the default (CUDA where available)."""

    def runs(self, label: str) -> list[Outcome]:
        """The outcomes of one run spec, one per seed."""
        return [o for o in self.outcomes if o.planned.run.label == label]

    def records(self, outcome: Outcome, kind: str) -> list[dict[str, Any]]:
        """A run's ``metrics.jsonl`` records of one kind (``epoch``, ``step``, ``step_metrics``, ``grad_norms``...)."""
        return RunDir(outcome.planned.path).records(kind)

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()``'s JSON-able result, stored in ``out/cache/<key>.json`` so a second run of the experiment
        (e.g. to redraw the report) does not redo work outside training, such as fitting an SVM."""
        path = self.out / "cache" / f"{key}.json"
        if path.is_file():
            return json.loads(path.read_text())
        value = compute()
        atomic_write(path, json.dumps(value, indent=1).encode())
        return value


@dataclass(frozen=True)
class Experiment:
    name: str
    question: str
    claim: str
    source: str
    quick_minutes: float
    """Measured wall time of quick mode on this project's 2-core CPU machine (the committed report's)."""
    full_cost: str
    setup: Callable[[str], Setup]
    analyse: Callable[[Context], Analysis]


@dataclass
class ExperimentResult:
    experiment: Experiment
    mode: str
    out: Path
    analysis: Analysis
    report: Path
    seconds: float
    failed: int


_REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    if experiment.name in _REGISTRY:
        raise ValueError(f"experiment {experiment.name!r} registered twice")
    _REGISTRY[experiment.name] = experiment
    return experiment


def list_experiments() -> list[Experiment]:
    return list(_REGISTRY.values())


def get_experiment(name: str) -> Experiment:
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"unknown experiment {name!r}; {hint}'milestones experiment list' shows all "
                          f"({', '.join(_REGISTRY)})")
    return _REGISTRY[name]


def machine() -> str:
    """The machine line of a report: ``milestones.bench.machine_description`` for the device the runs used."""
    from ..bench import machine_description

    return machine_description("cuda" if torch.cuda.is_available() else "cpu")


def _claim_folder(out: Path, name: str, mode: str) -> None:
    """Refuse an output folder that holds another experiment (or another mode of this one), or anything else."""
    marker = out / MARKER
    if marker.is_file():
        try:
            held = json.loads(marker.read_text())
        except (OSError, ValueError):
            raise RunDirError(f"{marker} is unreadable; choose another --out") from None
        if held.get("experiment") != name or held.get("mode") != mode:
            raise RunDirError(f"{out} holds experiment {held.get('experiment')!r} in mode {held.get('mode')!r}, not "
                              f"{name!r} in mode {mode!r}; choose another --out")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunDirError(f"{out} exists and holds something other than an experiment; choose another --out")
    atomic_write(marker, json.dumps({"experiment": name, "mode": mode, "created": _now()}, indent=1).encode())


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def run_experiment(
    name: str,
    *,
    mode: str = "quick",
    out: str | Path | None = None,
    seeds: int | None = None,
    device: str | None = None,
    precision: str | None = None,
    data_root: str | None = None,
    report_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    on_event: Callable[[str, Any, int, int], None] | None = None,
    command: str | None = None,
) -> ExperimentResult:
    """Train what the experiment needs (skipping what is done), analyse it and write ``report.md``, ``results.csv``
    and the figures into ``out`` (default ``runs/experiments/NAME-MODE``) and, if given, ``report_dir``.

    Args:
        seeds: How many seeds (0..N-1) each run gets; default the mode's.
        precision: ``train.precision`` of every run (``auto``, ``fp32``, ``bf16``); default the recipes'.
        callbacks: Added to every run (the CLI's progress bar).
        command: The command line to print in the report (default: the equivalent ``milestones experiment run``).
    """
    exp = get_experiment(name)
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    setup = exp.setup(mode)
    if seeds is not None:
        setup.seeds = list(range(seeds))
        setup.runs = [dataclasses.replace(r, seeds=None) for r in setup.runs]
    folder = Path(out) if out is not None else Path("runs") / "experiments" / f"{name}-{mode}"
    _claim_folder(folder, name, mode)
    start = time.perf_counter()
    specs = {r.label: r for r in setup.runs}
    by_seeds: dict[tuple[int, ...], list[RunSpec]] = {}  # one compare suite per set of seeds
    for r in setup.runs:
        by_seeds.setdefault(tuple(setup.seeds if r.seeds is None else r.seeds), []).append(r)
    suites = [Suite(name=name, runs=[SuiteRun(r.model, r.label, r.recipe, dict(r.overrides), r.init_from)
                                     for r in runs],
                    data=setup.data, seeds=list(group), overrides=dict(setup.overrides))
              for group, runs in by_seeds.items()]
    settings: dict[str, Any] = {"train.progress": False}
    if data_root:
        settings["data.root"] = data_root
    if device:
        settings["train.device"] = device
    if precision:
        settings["train.precision"] = precision

    def per_run(p: Any) -> list[Callback]:
        make = specs[p.run.label].callbacks
        return [*(make() if make else []), *callbacks]

    outcomes: list[Outcome] = []
    total = sum(len(x.runs) * len(x.seeds) for x in suites)
    for suite in suites:
        done = len(outcomes)  # number the events across the suites
        event = (lambda w, p, i, n, done=done: on_event(w, p, done + i, total)) if on_event else None
        outcomes += run_suite(suite, folder, settings=settings, callbacks=per_run, on_event=event,
                              runs_dir=folder / "runs")
    ctx = Context(mode, setup, outcomes, folder, data_root, device)
    analysis = exp.analyse(ctx)
    seconds = time.perf_counter() - start
    failed = sum(o.status == "failed" for o in outcomes)
    if command is None:
        extra = "".join(f" {k} {v}" for k, v in (("--seeds", seeds), ("--device", device)) if v is not None)
        command = f"milestones experiment run {name} --mode {mode}{extra}"
    targets = [folder] + ([Path(report_dir)] if report_dir is not None else [])
    report = None
    for target in targets:
        path = write_report(exp, mode, setup, analysis, outcomes, target, seconds=seconds, command=command)
        report = report or path
    for f in analysis.figures:
        plots.pyplot().close(f.figure)
    assert report is not None
    return ExperimentResult(exp, mode, folder, analysis, report, seconds, failed)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None or value == "" else str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in columns})
    return buf.getvalue()


def _training_seconds(outcomes: Sequence[Outcome]) -> float:
    return sum(float((o.summary or {}).get("wall_seconds") or 0.0) for o in outcomes)


def _precisions(outcomes: Sequence[Outcome]) -> str:
    """How the runs computed, from their summaries: ``fp32 (6 runs)``, with the reason ``auto`` gave."""
    seen: dict[tuple[str, str], int] = {}
    for o in outcomes:
        s = o.summary or {}
        if s.get("precision"):
            reason = (s.get("run_settings") or {}).get("precision", {}).get("reason", "")
            seen[(s["precision"], reason)] = seen.get((s["precision"], reason), 0) + 1
    return "; ".join(f"{p} ({n} run{'s' if n > 1 else ''}{': ' + r if r else ''})" for (p, r), n in seen.items())


def render_report(exp: Experiment, mode: str, setup: Setup, analysis: Analysis, outcomes: Sequence[Outcome], *,
                  seconds: float, command: str) -> str:
    """The report as markdown: question, claim, verdict, setup, results, figures, how to reproduce."""
    datasets = sorted({(o.summary or {}).get("dataset", "") for o in outcomes} - {""}) or [setup.data or ""]
    failed = [o for o in outcomes if o.status == "failed"]
    lines = [
        f"# `{exp.name}`: {exp.question}",
        "",
        f"**The paper's claim.** {exp.claim} ({exp.source})",
        "",
        f"**Verdict: {analysis.verdict}.** {analysis.reason}",
        "",
        "## Setup",
        "",
        f"- Mode: **{mode}**" + (" (shrunk to run on a CPU in minutes; the `full` mode is the paper-scale version)"
                                 if mode == "quick" else ""),
        f"- Data: {', '.join(datasets)}; seeds: {', '.join(map(str, setup.seeds))}"
        + "".join(f"; `{r.label}`: {', '.join(map(str, r.seeds))}" for r in setup.runs if r.seeds is not None)
        if setup.data is not None or setup.runs else "- Nothing is trained: measurements only",
    ]
    if setup.runs:
        lines.append(f"- Runs: {', '.join(f'`{r.label}`' for r in setup.runs)}")
        ran_in = _precisions(outcomes)
        if ran_in:
            lines.append(f"- Precision: {ran_in}")
    lines += [f"- {n}" for n in setup.notes]
    lines += ["", "## Results", "", markdown_table(analysis.rows, analysis.columns or list(analysis.rows[0]))
              if analysis.rows else "(no results)", ""]
    lines += [f"- {f}" for f in analysis.findings]
    if failed:
        lines += [f"- Run `{o.planned.run.label}` (seed {o.planned.seed}) failed: {o.error}" for o in failed]
    if analysis.figures:
        lines += ["", "## Figures", ""]
        for f in analysis.figures:
            lines += [f"![{f.caption}]({f.name})", "", f"*{f.caption}*", ""]
    lines += [
        "## Reproduce",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Machine: {machine()}. This invocation took {seconds:.0f} s"
        + (f"; the runs' own wall time adds up to {_training_seconds(outcomes):.0f} s (a run finished earlier is not "
           "trained again)" if setup.runs else " (measurements cached in the output folder are not taken again)")
        + f". Written {_now()}.",
    ]
    return "\n".join(lines).rstrip() + "\n"


def write_report(exp: Experiment, mode: str, setup: Setup, analysis: Analysis, outcomes: Sequence[Outcome],
                 folder: Path, *, seconds: float, command: str) -> Path:
    """``report.md``, ``results.csv`` and each figure's PNG in ``folder``; returns the report's path."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for f in analysis.figures:
            f.figure.savefig(folder / f.name, dpi=110)
        atomic_write(folder / "results.csv", to_csv(analysis.rows).encode())
        text = render_report(exp, mode, setup, analysis, outcomes, seconds=seconds, command=command)
        atomic_write(folder / "report.md", text.encode())
    except OSError as e:
        raise RunDirError(f"could not write the report in {folder}: {e.strerror or e}") from None
    return folder / "report.md"


def committed_verdict(report: Path) -> str | None:
    """The verdict line of a written report (``**Verdict: X.** why``), or None if there is no report."""
    try:
        for line in report.read_text().splitlines():
            if line.startswith("**Verdict: "):
                return line.removeprefix("**Verdict: ").replace(".**", ":", 1)
    except OSError:
        return None
    return None


def committed_precision(report: Path) -> str:
    """The precisions a written report's runs computed in (its ``- Precision:`` line, reasons left out), or a note
    that it predates ``train.precision`` (2026-12-02), when every run computed in float32."""
    try:
        text = report.read_text()
    except OSError:
        return "-"
    for line in text.splitlines():
        if line.startswith("- Precision: "):
            return ", ".join(dict.fromkeys(part.split(" (")[0].strip()
                                           for part in line.removeprefix("- Precision: ").split("; ")))
    return "fp32 (before `train.precision`)"


def index_markdown(docs: Path) -> str:
    """``docs/experiments/README.md``: every registered experiment, its question, claim source, cost and the verdict
    of its committed report (``milestones report experiments`` writes it; a test keeps it fresh)."""
    lines = [
        "# Experiments",
        "",
        "Each experiment answers one question the landmark papers raise, with runs anyone can repeat: "
        "`milestones experiment run NAME --mode quick` (at most 15 minutes on 2 CPU cores; subsets, fewer epochs or "
        "narrower nets, each shrink stated in the report) or `--mode full` (the paper-scale version, for a GPU). The "
        "reports linked here come from quick-mode runs on this project's 2-core CPU machine; each names its command, "
        "machine and wall time. Verdicts say whether the paper's claim held at that scale, and why not where it did "
        "not. 'precision' is what the report's runs computed in (`--precision`, default `auto`); reports made before "
        "that setting existed ran everything in float32.",
        "",
        "Generated by `milestones report experiments > docs/experiments/README.md`.",
        "",
        "| experiment | question | paper | quick (min) | precision | full | verdict (quick mode) |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in list_experiments():
        verdict = committed_verdict(docs / e.name / "report.md")
        link = f"[`{e.name}`]({e.name}/report.md)" if verdict else f"`{e.name}`"
        precision = committed_precision(docs / e.name / "report.md") if verdict else "-"
        lines.append(f"| {link} | {e.question} | {e.source} | {e.quick_minutes:g} | {precision} | {e.full_cost} | "
                     f"{verdict or 'no committed report yet'} |")
    return "\n".join(lines) + "\n"
