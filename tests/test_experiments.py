"""Experiments (issue 13): each runs end to end in its smoke mode and writes its report, CSV and figures; analyses are
checked on synthetic records whose answer is known; bad input is one line and exit 2, and nothing is overwritten."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cli_checks
import pytest

from milestones import cli
from milestones.experiments import get_experiment, list_experiments, run_experiment
from milestones.experiments.plots import smooth

NAMES = [e.name for e in list_experiments()]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_experiment_runs_end_to_end_in_smoke_mode(name: str, data_root: Path, tmp_path: Path) -> None:
    out, docs = tmp_path / "out", tmp_path / "docs"
    result = run_experiment(name, mode="smoke", out=out, data_root=str(data_root), report_dir=docs)
    exp = get_experiment(name)
    for folder in (out, docs):
        text = (folder / "report.md").read_text()
        for part in (exp.question, exp.source, "**Verdict:", "## Setup", "## Results", "## Reproduce",
                     f"milestones experiment run {name} --mode smoke", "Machine:"):
            assert part in text, (folder, part)
        rows = list(csv.DictReader((folder / "results.csv").open()))
        assert rows == [{k: "" if v is None else str(v) for k, v in r.items()} for r in result.analysis.rows]
        for f in result.analysis.figures:
            assert (folder / f.name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"]({f.name})" in text
    # a second invocation trains nothing: every run is finished
    events: list[str] = []
    run_experiment(name, mode="smoke", out=out, data_root=str(data_root), on_event=lambda w, *a: events.append(w))
    assert set(events) <= {"skip"}


def test_smooth_is_a_trailing_mean() -> None:
    assert smooth([0, 2, 4, 6], 2) == [0, 1, 3, 5]
    assert smooth([1.0], 5) == [1.0]


def test_degradation_verdict_on_synthetic_runs() -> None:
    from milestones.experiments.degradation import _verdict

    def rows(plain: tuple[float, float], resnet: tuple[float, float]):
        return [{"model": f"{f}{d}", "depth": d, "status": "ok", "train err % (last 20% of steps)": e}
                for f, errs in (("plain", plain), ("resnet", resnet)) for d, e in zip((20, 56), errs, strict=True)]

    assert _verdict(rows((10.0, 20.0), (10.0, 8.0)), "quick")[0] == "reproduced"
    assert _verdict(rows((10.0, 20.0), (10.0, 15.0)), "quick")[0] == "partly reproduced"
    assert _verdict(rows((20.0, 10.0), (10.0, 8.0)), "quick")[0] == "partly reproduced"
    assert _verdict(rows((20.0, 10.0), (10.0, 15.0)), "quick")[0] == "not reproduced"
    assert _verdict(rows((10.0, 20.0), (10.0, 8.0))[:2], "quick")[0] == "not testable here"


def test_experiment_list_shows_every_experiment(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["experiment", "list"]) == 0
    out = capsys.readouterr().out
    for e in list_experiments():
        assert e.name in out and e.question in out
        assert 0 < e.quick_minutes <= 15  # the promise of quick mode


@pytest.mark.parametrize("args, words", [
    (["experiment", "run", "degradatoin"], "unknown experiment 'degradatoin'; did you mean degradation"),
    (["experiment", "run", "degradation", "--mode", "fast"], "unknown mode 'fast'"),
    (["experiment", "run", "degradation", "--seeds", "0"], "--seeds must be at least 1"),
    (["experiment", "run"], "name the experiment to run"),
])
def test_bad_experiment_input_is_one_line(args: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(args) == 2
    cli_checks.one_line_error(capsys.readouterr().err, words)


def test_an_out_folder_holding_something_else_is_refused_and_left_alone(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "experiment.json").write_text(json.dumps({"experiment": "inception-1x1", "mode": "quick"}))
    assert cli.main(["experiment", "run", "degradation", "--out", str(other)]) == 2
    cli_checks.one_line_error(capsys.readouterr().err, "holds experiment 'inception-1x1' in mode 'quick'")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert cli.main(["experiment", "run", "degradation", "--out", str(mine)]) == 2
    cli_checks.one_line_error(capsys.readouterr().err, "holds something other than an experiment")
    assert (mine / "notes.txt").read_text() == "keep me" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in other.iterdir()) == ["experiment.json"]


def test_the_experiments_index_is_fresh() -> None:
    """docs/experiments/README.md lists every experiment with the verdict of its committed report."""
    from milestones.experiments.base import index_markdown

    docs = Path(__file__).resolve().parent.parent / "docs" / "experiments"
    assert (docs / "README.md").read_text() == index_markdown(docs), (
        "docs/experiments/README.md is stale; regenerate it with `milestones report experiments > "
        "docs/experiments/README.md` (or `make docs`)")
    for name in NAMES:
        report = docs / name / "report.md"
        if report.is_file():
            assert f"]({name}/report.md)" in (docs / "README.md").read_text()
