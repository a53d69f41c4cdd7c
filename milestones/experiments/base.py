"""What an experiment is, and the one runner that trains its runs, analyses them and writes its report.

An :class:`Experiment` is declarative: a question, the paper's claim with its source, and two functions. ``setup(mode)``
returns the runs to train (models x overrides, as a ``compare`` suite) and the shrinks that mode makes;
``analyse(ctx)`` reads the finished runs from disk (summaries and ``metrics.jsonl`` records, including those that
callbacks such as :class:`~milestones.train.callbacks.GradNorms` logged) and returns tables, figures and a verdict.
The runner reuses ``compare``: finished runs are skipped, an interrupted one resumes exactly, a diverging one is
recorded as failed and the experiment goes on.

Modes: ``smoke`` (seconds; what the test suite runs), ``quick`` (at most 15 minutes alone on 2 CPU cores, one seed:
a demonstration that reaches the claim's regime wherever that fits), ``standard`` (at most 45 minutes alone on 2 CPU
cores, 90 where the claim needs it and the experiment says so; at least 3 seeds per arm wherever the verdict rests on
a difference between trained arms; the mode of the committed reports) and ``full`` (the paper-scale version, for a
GPU). Every verdict comes from :func:`milestones.experiments.verdict.decide`; one precision is pinned for all of an
experiment's runs when its folder is created (``auto`` resolved once), so its arms compute alike on any machine.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from ..compare import Outcome, Suite, SuiteRun, run_suite
from ..errors import ConfigError, RunDirError
from ..files import atomic_write
from ..train.callbacks import Callback
from ..train.rundir import RunDir
from . import plots
from .verdict import VERDICTS

MODES = ("smoke", "quick", "standard", "full")
MARKER = "experiment.json"
EPYC_BF16 = "AMD EPYC, avx512_bf16"
"""The machine kind most committed quick reports of 2026-12-01/02 were measured on."""
AVX2_EPYC = "AMD EPYC, AVX2, no bf16 flags"
"""The kind the first standard reports (2026-12-07) were measured on."""


@dataclass(frozen=True)
class Measured:
    """A mode's measured wall time (minutes, alone unless ``note`` says otherwise) and the machine kind it was
    measured on, as ``experiment list`` and the index show it."""

    minutes: float
    kind: str
    note: str = ""
    over_budget: bool = False
    """The mode ran past its budget (15 minutes for quick, ``standard_limit`` for standard) on this kind: said in the
    index and ``experiment show``, and a reason to shrink the mode, not to hide the figure."""

    def describe(self) -> str:
        over = "; OVER BUDGET" if self.over_budget else ""
        return f"{self.minutes:g} min ({self.kind}{'; ' + self.note if self.note else ''}{over})"


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
class Tuning:
    """The same tuning effort for every arm: each arm of ``arms`` runs at every value of ``grid`` (for ``key``,
    the learning rate by default) on seed ``seed``, with ``overrides`` on top of its own (a shorter schedule, say);
    ``score`` reads a finished grid run and returns a number, lower is better (a validation error, never a test
    error: put ``data.val_split`` in the setup's overrides; or, for a claim about training speed, a training
    error). Then every arm runs at its chosen value on the setup's seeds (or its own ``seeds``: ``[]`` for an arm
    that runs in the grid only). With ``overrides`` empty the grid run at the chosen value is that arm's run on
    ``seed`` and is not trained again."""

    arms: list[RunSpec]
    grid: Sequence[float]
    score: Callable[[Context, Outcome], float]
    criterion: str
    """What ``score`` measures, for the report (e.g. "validation error after the last epoch")."""
    key: str = "optim.lr"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0

    def label(self, arm: str, value: float) -> str:
        return f"{arm}@{value:g}"


@dataclass
class Setup:
    """What a mode trains: the runs, the data, shared overrides and seeds, and the shrinks to state in the report.
    ``tuning``'s arms run after their grid, at the chosen values, beside ``runs``."""

    runs: list[RunSpec]
    data: str | None = "cifar10"
    """The dataset the runs train on; None for an experiment that trains nothing (measurements only)."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    notes: list[str] = field(default_factory=list)
    tuning: Tuning | None = None


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
    answer: str = ""
    """The report's first paragraph: the learner's question (``../shared/PAPERS.md`` §5) answered in plain words."""
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
    scores: dict[str, dict[float, float]] = field(default_factory=dict)
    """The tuning grid's scores, by arm and value (``inf`` for a failed run)."""
    chosen: dict[str, float] = field(default_factory=dict)
    """Each tuned arm's chosen value."""
    aliases: dict[str, str] = field(default_factory=dict)
    """Grid labels whose run is also a tuned arm's run (``relu@0.03`` -> ``relu``)."""

    def runs(self, label: str) -> list[Outcome]:
        """The outcomes of one run spec (a tuned arm's at its chosen value), one per seed, in seed order."""
        found = [o for o in self.outcomes if self.aliases.get(o.planned.run.label, o.planned.run.label) == label]
        return sorted(found, key=lambda o: o.planned.seed)

    def convergence(self, outcome: Outcome, errors: Sequence[float] | None = None) -> Any:
        """:func:`~milestones.experiments.verdict.converged` for one run: ``errors`` (%, one per epoch; default the
        loop's running training error over each epoch's batches), its epochs' learning rates, its planned epochs and
        base learning rate."""
        from .verdict import converged

        epochs = self.records(outcome, "epoch")
        errors = [100 * (1 - e["train_acc"]) for e in epochs] if errors is None else errors
        cfg = outcome.planned.cfg
        return converged(errors, [e["lr"] for e in epochs], planned_epochs=cfg.train.epochs, base_lr=cfg.optim.lr)

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
    measured: Mapping[str, Measured]
    """Measured wall time per mode on this project's 2-core CPU machine, with the machine kind."""
    full_cost: str
    setup: Callable[[str], Setup]
    analyse: Callable[[Context], Analysis]
    datasets: tuple[str, ...] = ()
    """Datasets ``--data`` may swap in for the setup's (its question is not tied to one); empty: the setup's only.
    ``folder:`` admits any image folder."""
    standard_limit: int = 45
    """The standard mode's budget in minutes alone on 2 cores: 45, or 90 where the claim cannot be decided in 45."""


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


def machine_kind() -> str:
    """The kind of machine, as reports and ``experiment list`` name it: the CPU, the instruction set torch's kernels
    use and its native bf16 flags (``AMD EPYC 9B14, AVX2, no bf16 flags``), or the GPU."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    from ..machine import cpu_name
    from ..precision import cpu_capability, native_bf16

    flags = native_bf16()
    return f"{cpu_name()}, {cpu_capability()}, {' + '.join(flags) if flags else 'no bf16 flags'}"


def _claim_folder(out: Path, name: str, mode: str, data: str | None) -> dict[str, Any]:
    """Refuse an output folder that holds another experiment (or another mode or dataset of this one), or anything
    else; returns what the folder's marker holds (a new folder gets one)."""
    marker = out / MARKER
    if marker.is_file():
        try:
            held = json.loads(marker.read_text())
        except (OSError, ValueError):
            raise RunDirError(f"{marker} is unreadable; choose another --out") from None
        if held.get("experiment") != name or held.get("mode") != mode:
            raise RunDirError(f"{out} holds experiment {held.get('experiment')!r} in mode {held.get('mode')!r}, not "
                              f"{name!r} in mode {mode!r}; choose another --out")
        if held.get("data", data) != data:
            raise RunDirError(f"{out} holds {name} on {held.get('data')!r}, not on {data!r}; choose another --out")
        return held
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunDirError(f"{out} exists and holds something other than an experiment; choose another --out")
    held = {"experiment": name, "mode": mode, "data": data, "created": _now()}
    atomic_write(marker, json.dumps(held, indent=1).encode())
    return held


def pin_precision(folder: Path, held: dict[str, Any], asked: str | None, setup: Setup, device: str | None) -> str:
    """The one precision every run of the experiment computes in, fixed when its folder is first used: ``asked``
    (``--precision``), or ``auto`` resolved once for all its families (bf16 only where auto picks bf16 for every
    family it trains, else fp32). A folder made in one precision refuses another."""
    from ..models import get_spec
    from ..precision import check_precision, resolve_precision
    from ..train.device import resolve_device

    pinned = held.get("precision")
    if asked is not None:
        check_precision(asked)
    if pinned is not None:
        if asked not in (None, "auto", pinned):
            raise ConfigError(f"{folder} was made with --precision {pinned}: its runs keep it (pass --precision "
                              f"{pinned} or choose another --out)")
        return str(pinned)
    if asked in ("fp32", "bf16"):
        pinned = asked
    elif not setup.runs:
        pinned = "fp32"
    else:
        dev = resolve_device(device or "auto")
        picks = {resolve_precision("auto", dev, get_spec(r.model).family).value for r in setup.runs}
        pinned = "bf16" if picks == {"bf16"} else "fp32"
    atomic_write(folder / MARKER, json.dumps({**held, "precision": pinned}, indent=1).encode())
    return pinned


def _usage() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and its finished children, and wall seconds."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime, time.perf_counter()


def _load() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


@dataclass
class Costs:
    """What an experiment cost: wall and CPU seconds, the one-minute load averages seen, the machine kind, summed
    over its ``invocations`` (an interrupted experiment that is run again adds one; a rerun that only redraws the
    report adds its few seconds)."""

    wall: float
    cpu: float
    load_before: float | None
    load_after: float | None
    kind: str
    invocations: int = 1

    def describe(self) -> str:
        loads = [x for x in (self.load_before, self.load_after) if x is not None]
        load = f"; load average {min(loads):.1f}-{max(loads):.1f}" if loads else ""
        over = f" over {self.invocations} invocations" if self.invocations > 1 else ""
        return f"{self.wall:.0f} s wall, {self.cpu:.0f} s CPU{load}{over}"

    @classmethod
    def total(cls, records: Sequence[Mapping[str, Any]]) -> Costs:
        """The sum of the invocations recorded in the folder's marker (kinds joined where they differ)."""
        loads = [r[k] for r in records for k in ("load_before", "load_after") if r.get(k) is not None]
        kinds = list(dict.fromkeys(r["kind"] for r in records))
        return cls(sum(r["wall"] for r in records), sum(r["cpu"] for r in records), min(loads, default=None),
                   max(loads, default=None), "; ".join(kinds), len(records))


def record_invocation(folder: Path, costs: Costs) -> Costs:
    """Add this invocation's costs to the folder's marker and return the experiment's total so far."""
    marker = folder / MARKER
    held = json.loads(marker.read_text())
    held.setdefault("invocations", []).append(
        {"wall": round(costs.wall, 1), "cpu": round(costs.cpu, 1), "load_before": costs.load_before,
         "load_after": costs.load_after, "kind": costs.kind, "at": _now()})
    atomic_write(marker, json.dumps(held, indent=1).encode())
    return Costs.total(held["invocations"])


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
    data: str | None = None,
    report_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    on_event: Callable[[str, Any, int, int], None] | None = None,
    command: str | None = None,
) -> ExperimentResult:
    """Train what the experiment needs (skipping what is done), analyse it and write ``report.md``, ``results.csv``
    and the figures into ``out`` (default ``runs/experiments/NAME-MODE``) and, if given, ``report_dir``.

    Args:
        seeds: How many seeds (0..N-1) each run gets; default the mode's.
        precision: ``train.precision`` of every run (``auto``, ``fp32``, ``bf16``), pinned for the folder (see
            :func:`pin_precision`); default ``auto``, resolved once.
        data: Another dataset of those the experiment admits (``Experiment.datasets``) instead of its own.
        callbacks: Added to every run (the CLI's progress bar).
        command: The command line to print in the report (default: the equivalent ``milestones experiment run``).
    """
    exp = get_experiment(name)
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    setup = exp.setup(mode)
    if data is not None and data != setup.data:
        kind = "folder:" if data.startswith("folder:") else data
        if kind not in exp.datasets:
            raise ConfigError(f"{name} takes --data {' or '.join(exp.datasets) if exp.datasets else setup.data} "
                              f"only, not {data!r}" + ("" if exp.datasets else ": its question is tied to that data"))
        setup.data = data
    if seeds is not None:
        setup.seeds = list(range(seeds))
        setup.runs = [dataclasses.replace(r, seeds=None) for r in setup.runs]
    suffix = "" if data is None or data == exp.setup(mode).data else "-" + data.replace(":", "-").replace("/", "-")
    folder = Path(out) if out is not None else Path("runs") / "experiments" / f"{name}-{mode}{suffix}"
    held = _claim_folder(folder, name, mode, setup.data)
    pinned = pin_precision(folder, held, precision, setup, device)
    cpu0, start = _usage()
    load0 = _load()
    specs: dict[str, RunSpec] = {}
    settings: dict[str, Any] = {"train.progress": False}
    if data_root:
        settings["data.root"] = data_root
    if device:
        settings["train.device"] = device
    settings["train.precision"] = pinned

    def per_run(p: Any) -> list[Callback]:
        make = specs[p.run.label].callbacks
        return [*(make() if make else []), *callbacks]

    def train(runs: Sequence[RunSpec], seeds: Sequence[int], first: int, total: int) -> list[Outcome]:
        """Train ``runs`` (each on its own seeds, or ``seeds``), one compare suite per set of seeds."""
        specs.update({r.label: r for r in runs})
        by_seeds: dict[tuple[int, ...], list[RunSpec]] = {}
        for r in runs:
            by_seeds.setdefault(tuple(seeds if r.seeds is None else r.seeds), []).append(r)
        out: list[Outcome] = []
        for group, members in by_seeds.items():
            suite = Suite(name=name, runs=[SuiteRun(r.model, r.label, r.recipe, dict(r.overrides), r.init_from)
                                           for r in members], data=setup.data, seeds=list(group),
                          overrides=dict(setup.overrides))
            done = first + len(out)  # number the events across the suites
            event = (lambda w, p, i, n, done=done: on_event(w, p, done + i, total)) if on_event else None
            out += run_suite(suite, folder, settings=settings, callbacks=per_run, on_event=event,
                             runs_dir=folder / "runs")
        return out

    tuning = setup.tuning
    n_grid = len(tuning.arms) * len(tuning.grid) if tuning else 0
    n_arms = sum(len([s for s in (setup.seeds if a.seeds is None else a.seeds)
                      if tuning.overrides or s != tuning.seed]) for a in tuning.arms) if tuning else 0
    total = n_grid + n_arms + sum(len(setup.seeds if r.seeds is None else r.seeds) for r in setup.runs)
    try:
        outcomes = train(setup.runs, setup.seeds, 0, total)
        ctx = Context(mode, setup, outcomes, folder, data_root, device)
        if tuning is not None:
            started = [len(outcomes)]  # events numbered across the grid and the arms

            def train_next(runs: Sequence[RunSpec], seeds: Sequence[int]) -> list[Outcome]:
                out = train(runs, seeds, started[0], total)
                started[0] += len(out)
                return out

            outcomes += _tune(tuning, ctx, train_next, setup.seeds)
    except BaseException:  # stopped (SIGTERM, Ctrl-C) or failed: the time it spent still counts in the folder's cost
        cpu1, end = _usage()
        record_invocation(folder, Costs(end - start, cpu1 - cpu0, load0, _load(), machine_kind()))
        raise
    analysis = exp.analyse(ctx)
    cpu1, end = _usage()
    costs = record_invocation(folder, Costs(end - start, cpu1 - cpu0, load0, _load(), machine_kind()))
    failed = sum(o.status == "failed" for o in outcomes)
    if command is None:
        extra = "".join(f" {k} {v}" for k, v in (("--seeds", seeds), ("--device", device),
                                                  ("--data", data if suffix else None)) if v is not None)
        command = f"milestones experiment run {name} --mode {mode} --precision {pinned}{extra}"
    targets = [folder] + ([Path(report_dir)] if report_dir is not None else [])
    report = None
    for target in targets:
        path = write_report(exp, mode, setup, analysis, outcomes, target, costs=costs, command=command,
                            tuning=tuning_lines(ctx))
        report = report or path
    for f in analysis.figures:
        plots.pyplot().close(f.figure)
    assert report is not None
    return ExperimentResult(exp, mode, folder, analysis, report, costs.wall, failed)


def _tune(tuning: Tuning, ctx: Context, train: Callable[[Sequence[RunSpec], Sequence[int]], list[Outcome]],
          seeds: Sequence[int]) -> list[Outcome]:
    """Run the grid on ``tuning.seed``, choose each arm's value by its score (lowest; a failed run scores ``inf``,
    ties go to the smaller value), then run every arm at its choice on ``seeds``; fills ``ctx.scores``,
    ``ctx.chosen`` and ``ctx.aliases`` and returns every outcome (the grid's included)."""
    grid_runs = [dataclasses.replace(arm, label=tuning.label(arm.label, v), seeds=[tuning.seed],
                                     overrides={**arm.overrides, **tuning.overrides, tuning.key: v})
                 for arm in tuning.arms for v in tuning.grid]
    grid = train(grid_runs, [tuning.seed])
    by_label = {o.planned.run.label: o for o in grid}
    for arm in tuning.arms:
        scores = {}
        for v in tuning.grid:
            o = by_label[tuning.label(arm.label, v)]
            scores[v] = float("inf") if o.summary is None else float(tuning.score(ctx, o))
        ctx.scores[arm.label] = scores
        ctx.chosen[arm.label] = min(tuning.grid, key=lambda v: (scores[v], v))
    reuse = not tuning.overrides and tuning.seed in seeds
    arms = [dataclasses.replace(arm, overrides={**arm.overrides, tuning.key: ctx.chosen[arm.label]},
                                seeds=[s for s in (seeds if arm.seeds is None else arm.seeds)
                                       if not (reuse and s == tuning.seed)])
            for arm in tuning.arms]
    if reuse:
        ctx.aliases.update({tuning.label(a.label, ctx.chosen[a.label]): a.label for a in tuning.arms})
    main = train([a for a in arms if a.seeds], seeds)
    return grid + main


def tuning_lines(ctx: Context) -> list[str]:
    """The report's tuning section: each arm's scores over the grid, the chosen value in bold."""
    t = ctx.setup.tuning
    if t is None or not ctx.scores:
        return []
    values = list(t.grid)
    lines = ["## Tuning", "",
             f"Every arm ran the same grid of `{t.key}` on seed {t.seed}"
             + (f" with {', '.join(f'`{k}={v}`' for k, v in t.overrides.items())}" if t.overrides else "")
             + f"; the value with the lowest {t.criterion} was chosen, then every arm ran at its choice on every "
               "seed.", "",
             "| arm | " + " | ".join(f"{v:g}" for v in values) + " |", "|---|" + "---|" * len(values)]
    for arm, scores in ctx.scores.items():
        cells = [("**{:.4g}**" if v == ctx.chosen[arm] else "{:.4g}").format(scores[v])
                 if scores[v] != float("inf") else "failed" for v in values]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines + [""]


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


MODE_NOTES = {
    "smoke": " (seconds, for the test suite; the numbers mean nothing)",
    "quick": " (one seed, at most 15 minutes on 2 CPU cores: a demonstration, not the committed answer)",
    "standard": " (the committed report: seeds per arm, at most 45 minutes on 2 CPU cores, 90 where stated)",
    "full": " (the paper-scale version, for a GPU)",
}


def render_report(exp: Experiment, mode: str, setup: Setup, analysis: Analysis, outcomes: Sequence[Outcome], *,
                  costs: Costs, command: str, tuning: Sequence[str] = ()) -> str:
    """The report as markdown: the learner's answer, claim, verdict, setup (mode, seeds, precision, cost, machine),
    results, figures, how to reproduce."""
    datasets = sorted({(o.summary or {}).get("dataset", "") for o in outcomes} - {""}) or [setup.data or ""]
    failed = [o for o in outcomes if o.status == "failed"]
    lines = [f"# `{exp.name}`: {exp.question}", ""]
    if analysis.answer:
        lines += [analysis.answer, ""]
    lines += [
        f"**The paper's claim.** {exp.claim} ({exp.source})",
        "",
        f"**Verdict: {analysis.verdict}.** {analysis.reason}",
        "",
        "## Setup",
        "",
        f"- Mode: **{mode}**{MODE_NOTES.get(mode, '')}",
        f"- Data: {', '.join(datasets)}; seeds: {', '.join(map(str, setup.seeds))}"
        + "".join(f"; `{r.label}`: {', '.join(map(str, r.seeds))}" for r in setup.runs if r.seeds is not None)
        if setup.data is not None or setup.runs or setup.tuning
        else "- Nothing is trained (no seeds): measurements only",
    ]
    trains = bool(setup.runs or setup.tuning)
    if trains:
        labels = [r.label for r in setup.runs] + ([a.label for a in setup.tuning.arms] if setup.tuning else [])
        lines.append(f"- Runs: {', '.join(f'`{label}`' for label in labels)}"
                     + (" (after the tuning grid below)" if setup.tuning else ""))
        ran_in = _precisions(outcomes)
        if ran_in:
            lines.append(f"- Precision: {ran_in}")
    train_wall = _training_seconds(outcomes)
    lines.append(f"- Cost: {costs.describe()}" + (
        f"; the runs' own training wall time adds up to {train_wall:.0f} s (a run finished by an earlier invocation "
        "is not trained again)" if trains else "") + f". Machine kind: {costs.kind}.")
    lines += [f"- {n}" for n in setup.notes]
    lines += ["", "## Results", "", markdown_table(analysis.rows, analysis.columns or list(analysis.rows[0]))
              if analysis.rows else "(no results)", ""]
    lines += [f"- {f}" for f in analysis.findings]
    if tuning:
        lines += [""] + tuning
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
        f"Machine: {machine()}. This invocation took {costs.wall:.0f} s"
        + ("" if setup.runs or setup.tuning else " (measurements cached in the output folder are not taken again)")
        + f". Written {_now()}.",
    ]
    return "\n".join(lines).rstrip() + "\n"


def write_report(exp: Experiment, mode: str, setup: Setup, analysis: Analysis, outcomes: Sequence[Outcome],
                 folder: Path, *, costs: Costs, command: str, tuning: Sequence[str] = ()) -> Path:
    """``report.md``, ``results.csv`` and each figure's PNG in ``folder``; returns the report's path."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for f in analysis.figures:
            f.figure.savefig(folder / f.name, dpi=110)
        atomic_write(folder / "results.csv", to_csv(analysis.rows).encode())
        text = render_report(exp, mode, setup, analysis, outcomes, costs=costs, command=command, tuning=tuning)
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


def committed_run(report: Path) -> dict[str, str]:
    """What a written report says of its own run: ``mode``, ``seeds`` (how many), ``precision`` and ``wall`` (its
    invocation's wall time), each "-" where the report does not say (reports from before the rules of 2026-12)."""
    found = {"mode": "-", "seeds": "-", "precision": committed_precision(report), "wall": "-"}
    try:
        text = report.read_text()
    except OSError:
        return found
    for line in text.splitlines():
        if line.startswith("- Mode: **"):
            found["mode"] = line.removeprefix("- Mode: **").partition("**")[0]
        elif line.startswith("- Nothing is trained"):
            found["seeds"] = "no"
        elif line.startswith("- Data: ") and "seeds: " in line:
            found["seeds"] = str(len(line.partition("seeds: ")[2].partition(";")[0].split(",")))
        elif line.startswith("- Cost: "):
            found["wall"] = f"{float(line.removeprefix('- Cost: ').split(' s wall')[0]) / 60:.0f} min"
        elif line.startswith("Machine: ") and "This invocation took " in line and found["wall"] == "-":
            found["wall"] = f"{float(line.partition('This invocation took ')[2].split(' s')[0]) / 60:.0f} min"
    return found


def index_markdown(docs: Path) -> str:
    """``docs/experiments/README.md``: every registered experiment, its question, claim source, the mode, seeds,
    precision and wall time of its committed report, each mode's measured time, and the report's verdict
    (``milestones report experiments`` writes it; a test keeps it fresh)."""
    lines = [
        "# Experiments",
        "",
        "Each experiment answers one question the landmark papers raise, with runs anyone can repeat: "
        "`milestones experiment run NAME --mode MODE`. Modes: `quick` (at most 15 minutes alone on 2 CPU cores, "
        "one seed: a demonstration), `standard` (at most 45 minutes alone on 2 CPU cores, 90 where the experiment "
        "says so; at least 3 seeds per arm wherever the verdict rests on a difference; the committed reports' "
        "mode) and `full` (the paper-scale version, for a GPU). Every verdict comes from one tested function with "
        "five words: reproduced, partly reproduced, not reproduced, inconclusive at this scale, not testable here; "
        "a difference counts only when a t-test over the seeds says so at 95%. The 'report' column says what the "
        "committed report ran: its mode, seeds per arm, precision and wall time; 'measured' gives each mode's wall "
        "time and the machine kind it was measured on. Reports made before these rules (mode '-') ran one seed in "
        "quick mode and judged differences against test-set sampling error alone: read their verdicts as early "
        "learning speed, not as the papers' claims.",
        "",
        "Generated by `milestones report experiments > docs/experiments/README.md`.",
        "",
        "| experiment | question | paper | report: mode, seeds, precision, wall | measured | full | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in list_experiments():
        report = docs / e.name / "report.md"
        verdict = committed_verdict(report)
        link = f"[`{e.name}`]({e.name}/report.md)" if verdict else f"`{e.name}`"
        ran = committed_run(report) if verdict else None
        seeds = "no seeds (measurements only)" if ran and ran["seeds"] == "no" else f"{ran and ran['seeds']} seed(s)"
        shown = (f"{ran['mode'] if ran['mode'] != '-' else 'quick (old rules)'}, {seeds}, "
                 f"{ran['precision']}, {ran['wall']}" if ran else "-")
        measured = "; ".join(f"{m}: {v.describe()}" for m, v in e.measured.items()) or "-"
        lines.append(f"| {link} | {e.question} | {e.source} | {shown} | {measured} | {e.full_cost} | "
                     f"{verdict or 'no committed report yet'} |")
    return "\n".join(lines) + "\n"
