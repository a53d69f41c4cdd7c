"""``milestones compare``: train a suite of models x seeds one after another and rank them.

A suite is a YAML file (or the name of a shipped one: ``quick``, ``full``)::

    name: quick                 # the suite's folder under --out
    description: ...
    data: cifar10               # every run's dataset
    seeds: [0]
    overrides:                  # dotted config keys applied to every run, after its recipe
      train.epochs: 2
      data.train_subset: 5000
    runs:
      - resnet20                # the shipped recipe for (model, data)
      - model: plain20
        recipe: cifar10_plain20_full   # another recipe (a path, or a shipped recipe's name)
        overrides: {optim.lr: 0.05}     # for this run only, after the suite's
        label: plain20-slow             # its name in the results (default: the model's)

Each (run, seed) trains into ``<out>/<suite>/runs/<label>-s<seed>`` with :func:`~milestones.train.run.run_training`.
The suite is resumable: a finished run (``summary.json``) is skipped, an interrupted one continues from its saved
training state, and a run whose saved config no longer matches the suite is refused rather than mixed in. A run
that fails (a diverging loss, say) is recorded and the suite goes on; the next invocation skips it unless told to
retry. At the end the results go to ``results.csv`` (one row per run), ``leaderboard.md`` (mean +- std over seeds)
and three plots: test accuracy against parameters, against multiply-adds and against publication year.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import RunConfig, build_config, load_yaml, set_value, shipped_file, shipped_names
from .errors import ConfigError, RunDirError
from .models import get_spec
from .report import format_count

if TYPE_CHECKING:
    from .train.callbacks import Callback

SUITE_KEYS = ("name", "description", "data", "seeds", "overrides", "runs")
RUN_KEYS = ("model", "label", "recipe", "overrides", "init_from")
FAILED_MARKER = "failed.json"

CSV_FIELDS = (
    "suite", "label", "model", "seed", "status", "dataset", "device", "precision", "params", "macs", "year", "epochs",
    "final_test_acc", "best_test_acc", "train_seconds", "wall_seconds", "img_per_s", "processor", "cpu_count",
    "torch_threads", "torch", "run_dir", "error",
)


@dataclass
class SuiteRun:
    """One line of a suite's ``runs``: a model, the recipe it starts from and its own overrides."""

    model: str
    label: str
    recipe: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    """The label of an earlier run of the suite whose trained weights (same seed) this run fine-tunes
    (``finetune.weights``; the other ``finetune.*`` keys go in ``overrides``)."""


@dataclass
class Suite:
    name: str
    runs: list[SuiteRun]
    data: str = "cifar10"
    seeds: list[int] = field(default_factory=lambda: [0])
    overrides: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""


@dataclass
class Planned:
    """A (run, seed) of a suite with its resolved config and where it lives."""

    run: SuiteRun
    seed: int
    cfg: RunConfig
    path: Path

    @property
    def title(self) -> str:
        return f"{self.run.label} seed {self.seed}"


@dataclass
class Outcome:
    """What became of a planned run: ``done`` (this time), ``skipped`` (finished earlier), ``failed``."""

    planned: Planned
    status: str
    summary: dict[str, Any] | None = None
    error: str = ""


def list_suites() -> list[str]:
    return shipped_names("suites")


def _suite_file(name: str | Path) -> Path:
    p = Path(name)
    if p.is_file():
        return p
    shipped = shipped_file("suites", name)
    if shipped is not None:
        return shipped
    raise ConfigError(f"suite {str(name)!r} is neither a file nor a shipped suite ({', '.join(list_suites())})")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping of dotted config keys, e.g. {{train.epochs: 2}}; got {value!r}")
    return dict(value)


def _check_keys(data: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where}; valid keys: {', '.join(allowed)}")


def load_suite(name: str | Path) -> Suite:
    """Read and check a suite file (or a shipped suite's name); every problem is a one-line ConfigError."""
    path = _suite_file(name)
    data = load_yaml(path)
    where = f"suite {str(path)!r}"
    _check_keys(data, SUITE_KEYS, where)
    runs_raw = data.get("runs")
    if not isinstance(runs_raw, list) or not runs_raw:
        raise ConfigError(f"{where} needs a non-empty list 'runs' of model names or {{model: ...}} mappings")
    runs = []
    for i, item in enumerate(runs_raw):
        if isinstance(item, str):
            item = {"model": item}
        if not isinstance(item, Mapping) or "model" not in item:
            raise ConfigError(f"runs[{i}] of {where} must be a model name or a mapping with a 'model' key")
        _check_keys(item, RUN_KEYS, f"runs[{i}] of {where}")
        get_spec(str(item["model"]))  # an unknown model fails now, with close matches
        runs.append(SuiteRun(model=str(item["model"]), label=str(item.get("label") or item["model"]),
                             recipe=item.get("recipe"), overrides=_mapping(item.get("overrides"), f"runs[{i}]"),
                             init_from=item.get("init_from")))
    labels = [r.label for r in runs]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise ConfigError(f"{where} names {twice[0]!r} twice; give the runs distinct 'label's")
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) or len(set(seeds)) != len(seeds)):
        raise ConfigError(f"seeds of {where} must be a list of distinct integers, got {seeds!r}")
    name_ = str(data.get("name") or path.stem)
    if "/" in name_ or name_ in (".", ".."):
        raise ConfigError(f"the name of {where} must be a plain folder name, got {name_!r}")
    return Suite(name=name_, runs=runs, data=str(data.get("data", "cifar10")), seeds=seeds,
                 overrides=_mapping(data.get("overrides"), f"overrides of {where}"),
                 description=str(data.get("description") or ""), source=str(path))


def plan(suite: Suite, out: str | Path, *, settings: Mapping[str, Any] | None = None,
         runs_dir: Path | None = None) -> list[Planned]:
    """Every (run, seed) with its config: recipe <- suite overrides <- run overrides <- seed <- ``settings`` (the
    command line's: data root, device, progress), run by run, seed within run. The runs live in ``runs_dir``,
    default ``out/<suite name>/runs``."""
    root = runs_dir if runs_dir is not None else Path(out) / suite.name / "runs"
    out_planned = []
    for i, run in enumerate(suite.runs):
        if run.init_from is not None and run.init_from not in [r.label for r in suite.runs[:i]]:
            raise ConfigError(f"run {run.label!r} starts from {run.init_from!r}, which is not an earlier run of the "
                              "suite; list the run it fine-tunes before it")
        for seed in suite.seeds:
            cfg = build_config(model=run.model, data=suite.data, config_file=run.recipe)
            if run.recipe is not None:
                cfg.data.name = suite.data
            for where, mapping in (("suite", suite.overrides), (run.label, run.overrides),
                                   ("command line", settings or {})):
                for key, value in mapping.items():
                    try:
                        set_value(cfg, key, value)
                    except ConfigError as e:
                        raise ConfigError(f"{e} (in the {where} overrides)") from None
            cfg.train.seed = seed
            if run.init_from is not None:
                cfg.finetune.weights = str(root / f"{run.init_from}-s{seed}")
            cfg.out_dir, cfg.name = str(root), f"{run.label}-s{seed}"
            out_planned.append(Planned(run, seed, cfg, root / cfg.name))
    return out_planned


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def status(p: Planned) -> str:
    """``new``, ``finished``, ``failed`` (recorded by an earlier invocation), ``partial`` (to resume) or ``changed``
    (made with another config than the suite now asks for: :func:`run_suite` refuses it).

    A run that stopped early at ``train.stop_at_train_error`` is finished as one that ran all its epochs is. A run
    whose saved state has all its epochs, or stopped early, but no ``summary.json`` (stopped while finishing) counts
    as new: its state cannot be trained further, so it is trained again.
    """
    from .train.checkpoint import STATE_JSON, has_training_state

    if not p.path.exists():
        return "new"
    if _config_changes(p):
        return "changed"
    summary = _read_json(p.path / "summary.json")
    if summary is not None and (summary.get("epochs", 0) >= p.cfg.train.epochs or summary.get("stopped")):
        return "finished"
    if (p.path / FAILED_MARKER).is_file():
        return "failed"
    ckpt = p.path / "checkpoints"
    if has_training_state(ckpt):
        info = _read_json(ckpt / STATE_JSON) or {}
        stopped = (info.get("history") or {}).get("stop_reason")
        if not stopped and (info.get("batch", 0) or info.get("epochs_done", 0) < p.cfg.train.epochs):
            return "partial"
    return "new"


def _config_changes(p: Planned) -> str:
    """How the config saved in the run's folder differs from the suite's now ('' if the same or not saved)."""
    from .train.runconfig import config_differences, load_run_config

    if not (p.path / "config.yaml").is_file():
        return ""
    return config_differences(load_run_config(p.path), p.cfg)


def _check_same_config(p: Planned) -> None:
    """Refuse to count a run made with another config than the suite's now (edited suite or recipe)."""
    changed = _config_changes(p)
    if changed:
        raise RunDirError(f"{p.path} was trained with another config than the suite now asks for: {changed}; move "
                          "that run away (or use another --out) to train it again")


Event = Callable[[str, Planned, int, int], None]


def run_suite(suite: Suite, out: str | Path, *, settings: Mapping[str, Any] | None = None, retry_failed: bool = False,
              on_event: Event | None = None,
              callbacks: Sequence[Callback] | Callable[[Planned], Sequence[Callback]] = (),
              runs_dir: Path | None = None) -> list[Outcome]:
    """Train every planned run not finished yet, in order; return the outcome of each.

    ``on_event(what, planned, index, total)`` is called with ``what`` in ``skip``, ``start``, ``resume``, ``done``,
    ``failed``, ``skip-failed`` (for the CLI's progress lines). Interruptions (Ctrl-C, SIGTERM) propagate after the
    current run has saved its state; calling again continues where it stopped. ``callbacks`` go to every run
    (:func:`~milestones.train.run.run_training`), or are made for each planned run when a function.
    """
    from .train.loop import NonFiniteLossError
    from .train.run import run_training

    planned = plan(suite, out, settings=settings, runs_dir=runs_dir)
    states = [status(p) for p in planned]
    for p, st in zip(planned, states, strict=True):  # all must match the suite before anything trains or is replaced
        if st == "changed":
            _check_same_config(p)
    outcomes = []
    emit = on_event or (lambda *a: None)
    for i, (p, st) in enumerate(zip(planned, states, strict=True)):
        if st == "finished":
            emit("skip", p, i, len(planned))
            outcomes.append(Outcome(p, "skipped", _read_json(p.path / "summary.json")))
            continue
        if st == "failed" and not retry_failed:
            emit("skip-failed", p, i, len(planned))
            info = _read_json(p.path / FAILED_MARKER) or {}
            outcomes.append(Outcome(p, "failed", error=str(info.get("error", "failed earlier"))))
            continue
        if st == "failed":
            (p.path / FAILED_MARKER).unlink()
            st = status(p)
        source = p.run.init_from and next((o for o in outcomes if o.planned.run.label == p.run.init_from
                                           and o.planned.seed == p.seed), None)
        if source is not None and source.summary is None:  # the run it fine-tunes failed
            error = f"not trained: {p.run.init_from} (seed {p.seed}), whose weights it starts from, failed"
            outcomes.append(Outcome(p, "failed", error=error))
            emit("failed", p, i, len(planned))
            continue
        emit("resume" if st == "partial" else "start", p, i, len(planned))
        try:
            extra = callbacks(p) if callable(callbacks) else callbacks
            if st == "partial":
                result = run_training(dataclasses.replace(p.cfg), resume=p.path, callbacks=extra)
            else:
                result = run_training(p.cfg, overwrite=p.path.exists(), callbacks=extra)
        except NonFiniteLossError as e:
            if not p.path.is_dir():
                raise
            (p.path / FAILED_MARKER).write_text(json.dumps({"error": str(e), "time": _now()}, indent=2))
            outcomes.append(Outcome(p, "failed", error=str(e)))
            emit("failed", p, i, len(planned))
            continue
        outcomes.append(Outcome(p, "done", result.summary))
        emit("done", p, i, len(planned))
    return outcomes


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def collect(suite: Suite, out: str | Path, *, settings: Mapping[str, Any] | None = None) -> list[Outcome]:
    """The outcomes of the suite's runs as they stand on disk, training nothing (``--report-only``)."""
    outcomes = []
    for p in plan(suite, out, settings=settings):
        st = status(p)
        if st == "finished":
            outcomes.append(Outcome(p, "skipped", _read_json(p.path / "summary.json")))
        elif st == "failed":
            outcomes.append(Outcome(p, "failed", error=str((_read_json(p.path / FAILED_MARKER) or {}).get("error"))))
        else:
            outcomes.append(Outcome(p, "missing"))
    return outcomes


# ---------------------------------------------------------------- results


def result_rows(suite: Suite, outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    """One flat record per run (the CSV's rows)."""
    rows = []
    for o in outcomes:
        s = o.summary or {}
        p = o.planned
        rows.append({
            "suite": suite.name, "label": p.run.label, "model": p.run.model, "seed": p.seed,
            "status": "ok" if o.summary else o.status, "dataset": s.get("dataset", ""), "device": s.get("device", ""),
            "precision": s.get("precision", ""), "params": s.get("params", ""), "macs": s.get("macs", ""),
            "year": get_spec(p.run.model).paper.year,
            "epochs": s.get("epochs", ""), "final_test_acc": s.get("final_test_acc", ""),
            "best_test_acc": s.get("best_test_acc", ""), "train_seconds": s.get("train_seconds", ""),
            "wall_seconds": s.get("wall_seconds", ""), "img_per_s": s.get("img_per_s", ""),
            "processor": s.get("processor", ""), "cpu_count": s.get("cpu_count", ""),
            "torch_threads": s.get("torch_threads", ""), "torch": s.get("torch", ""), "run_dir": str(p.path),
            "error": o.error,
        })
    return rows


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in CSV_FIELDS})
    return buf.getvalue()


@dataclass
class Entry:
    """A leaderboard line: one suite run over its seeds."""

    label: str
    model: str
    year: int
    params: int | None
    macs: int | None
    accs: list[float]
    train_seconds: list[float]
    img_per_s: list[float]
    dataset: str
    device: str
    failed: int

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accs) if self.accs else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.accs) if len(self.accs) > 1 else 0.0


def leaderboard(rows: Sequence[Mapping[str, Any]]) -> list[Entry]:
    """Rows grouped by label, best mean final test accuracy first; runs without a result sort last."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["label"], []).append(r)
    entries = []
    for label, rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        entries.append(Entry(
            label=label, model=rs[0]["model"], year=rs[0]["year"],
            params=ok[0]["params"] if ok else None, macs=ok[0]["macs"] if ok else None,
            accs=[float(r["final_test_acc"]) for r in ok], train_seconds=[float(r["train_seconds"]) for r in ok],
            img_per_s=[float(r["img_per_s"]) for r in ok], dataset=ok[0]["dataset"] if ok else "",
            device=ok[0]["device"] if ok else "", failed=sum(r["status"] == "failed" for r in rs)))
    return sorted(entries, key=lambda e: (not e.accs, -e.mean if e.accs else 0.0, e.label))


def _si(n: float | None) -> str:
    return format_count(n, spec=".3g")


def _machine(rows: Sequence[Mapping[str, Any]]) -> str:
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return "no finished runs"
    kinds = sorted({f"{r['device']}: {r['processor'] or 'unknown processor'}, {r['cpu_count']} CPUs, "
                    f"{r['torch_threads']} torch threads, torch {r['torch']}"
                    + (f", {r['precision']}" if r.get("precision") else "") for r in ok})
    return "; ".join(kinds)


def leaderboard_markdown(suite: Suite, rows: Sequence[Mapping[str, Any]], *, plots: Sequence[str] = ()) -> str:
    """The leaderboard as markdown: params, MACs, test accuracy mean +- std over seeds, training time, img/s."""
    entries = leaderboard(rows)
    datasets = sorted({e.dataset for e in entries if e.dataset})
    lines = [f"# Leaderboard: suite `{suite.name}`", ""]
    if suite.description:
        lines += [suite.description.strip(), ""]
    lines += [
        f"Generated by `milestones compare {suite.name}` ({_now()}). Dataset: {', '.join(datasets) or '-'}. "
        f"Seeds: {', '.join(map(str, suite.seeds))}. Machine: {_machine(rows)}.",
        "",
        "Test accuracy is the final epoch's (not the best epoch's: choosing an epoch by its test score would "
        "flatter it), mean ± sample standard deviation over the seeds that finished. Training time is the sum of "
        "the epochs' training passes (no evaluation, no data loading before the first epoch); img/s is training "
        "images per second over those passes. MACs are multiply-adds per image at the trained input size.",
        "",
        "| rank | model | year | params | MACs | test acc % | seeds | train time (s) | img/s | device | dataset |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, e in enumerate(entries, 1):
        if e.accs:
            acc = f"{100 * e.mean:.2f} ± {100 * e.std:.2f}" if len(e.accs) > 1 else f"{100 * e.mean:.2f}"
            seeds = f"{len(e.accs)}" + (f" ({e.failed} failed)" if e.failed else "")
            time_s = f"{statistics.fmean(e.train_seconds):.0f}"
            ips = f"{statistics.fmean(e.img_per_s):.0f}"
        else:
            acc, seeds, time_s, ips = ("failed" if e.failed else "not run"), f"0 ({e.failed} failed)", "-", "-"
        name = f"`{e.label}`" + (f" ({e.model})" if e.label != e.model else "")
        lines.append(f"| {i if e.accs else '-'} | {name} | {e.year} | {_si(e.params)} | {_si(e.macs)} | {acc} | "
                     f"{seeds} | {time_s} | {ips} | {e.device or '-'} | {e.dataset or '-'} |")
    failures = [r for r in rows if r["status"] == "failed"]
    if failures:
        lines += ["", "Failed runs:", ""]
        lines += [f"- `{r['label']}` seed {r['seed']}: {r['error']}" for r in failures]
    if plots:
        lines += [""] + [f"![{Path(p).stem.replace('_', ' ')}]({Path(p).name})" for p in plots]
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[Mapping[str, Any]], folder: Path, title: str) -> list[Path]:
    """Test accuracy against parameters, MACs and publication year: three PNGs in ``folder`` (error bars: the std
    over seeds). Returns their paths; none when no run finished."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [e for e in leaderboard(rows) if e.accs]
    if not entries:
        return []
    paths = []
    for key, xlabel, log, fname in (("params", "parameters", True, "acc_vs_params.png"),
                                    ("macs", "multiply-adds per image", True, "acc_vs_macs.png"),
                                    ("year", "publication year", False, "acc_vs_year.png")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for e in entries:
            x = getattr(e, key)
            ax.errorbar([x], [100 * e.mean], yerr=[100 * e.std], fmt="o", capsize=3)
            ax.annotate(e.label, (x, 100 * e.mean), textcoords="offset points", xytext=(5, 4), fontsize=8)
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{title}: test accuracy vs {xlabel}", fontsize=10)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        path = folder / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def write_reports(suite: Suite, outcomes: Sequence[Outcome], folder: str | Path) -> dict[str, Path]:
    """``results.csv``, ``leaderboard.md`` and the plots in ``folder``, each written atomically."""
    from .files import atomic_write

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        rows = result_rows(suite, outcomes)
        csv_path, md_path = folder / "results.csv", folder / "leaderboard.md"
        atomic_write(csv_path, to_csv(rows).encode())
        dataset = next((r["dataset"] for r in rows if r["dataset"]), suite.data)
        plots = plot(rows, folder, f"{suite.name} ({dataset})")
        atomic_write(md_path, leaderboard_markdown(suite, rows, plots=[p.name for p in plots]).encode())
    except OSError as e:
        raise RunDirError(f"could not write the suite's reports in {folder}: {e.strerror or e}") from None
    return {"csv": csv_path, "leaderboard": md_path, **{p.stem: p for p in plots}}


__all__ = [
    "Outcome", "Planned", "Suite", "SuiteRun", "collect", "leaderboard", "leaderboard_markdown", "list_suites",
    "load_suite", "plan", "result_rows", "run_suite", "status", "to_csv", "write_reports",
]
