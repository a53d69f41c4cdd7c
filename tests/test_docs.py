"""Generated documentation and the CLI's numbers: docs/models.md is fresh, and `milestones info`/`list` show, for
every registered model, what the paper reported beside what we measure. The other generated docs (benchmarks.md's
command lines, the quick leaderboard) are what their generators write, and every command in docs/results.md still
parses with the current CLI, config and scripts (nothing is trained or measured).

Independent references: exact counts quoted from PAPERS.md / the papers (AlexNet, VGG, ResNet-50, LeNet-5), the
family COUNTS tables, and a fresh meta-device measurement.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import importlib.util
import io
import itertools
import json
import re
import shlex
from pathlib import Path
from types import ModuleType

import pytest

from milestones import catalog, cli, compare
from milestones.errors import ConfigError
from milestones.models import PaperRef, get_spec, list_models
from milestones.report import REGENERATE, models_markdown, short_cite

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "models.md"
ALL = list_models()

# One or two per family (cheap on the meta device), covering 1-channel, 227 px and 32 px inputs and a reported
# params_m, top-5 error and CIFAR-10 dataset; together about 8 s on one core.
INFO_MODELS = ["lenet5", "alexnet", "vgg16", "googlenet", "resnet50", "resnet20", "vit_b16", "swin_t", "cswin_t"]

# Exact counts stated independently of our code (issue 3 and PAPERS.md §1.2-1.5).
KNOWN_PARAMS = {
    "alexnet": 60_965_224,
    "alexnet_owt": 61_100_840,
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16_c": 133_638_952,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "googlenet": 6_998_552,
    "resnet50": 25_557_032,
    "lenet5": 60_000,
    "densenet121": 7_978_856,
    "inception_v3": 23_834_568,  # torchvision inception_v3(aux_logits=False)
    "xception": 22_855_952,  # Chollet 2017, Table 3
}

# First author of each family's paper (alexnet_owt: Krizhevsky alone; VGG: two authors).
FIRST_AUTHOR = {
    "lenet": "LeCun",
    "alexnet": "Krizhevsky",
    "convnet4": "Krizhevsky",
    "vgg": "Simonyan & Zisserman",
    "googlenet": "Szegedy",
    "resnet": "He",
    "vit": "Dosovitskiy",
    "swin": "Liu",
    "cswin": "Dong",
    "densenet": "Huang",
    "inception": "Szegedy",  # v2: Ioffe & Szegedy; v3: Szegedy et al.
    "xception": "Chollet",
}


def _table_rows(markdown: str) -> dict[str, list[str]]:
    """Model name -> the cells of its row in the generated table."""
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 2 and re.fullmatch(r"`[a-z0-9_]+`", cells[1]):
            rows[cells[1].strip("`")] = cells
    return rows


def test_models_md_is_fresh() -> None:
    """The committed docs/models.md is exactly what the registry renders today."""
    expected = models_markdown()
    assert DOC.is_file(), f"{DOC} is missing; generate it with `{REGENERATE}`"
    assert DOC.read_text(encoding="utf-8") == expected, (
        f"docs/models.md is stale (a model, count or paper number changed); regenerate it with `{REGENERATE}`"
    )


def test_model_catalog_is_fresh() -> None:
    """milestones/catalog.json, which `milestones list` reads instead of importing every model family (and torch),
    is exactly what the registry renders today."""
    assert catalog.CATALOG_FILE.read_text(encoding="utf-8") == catalog.catalog_json(), (
        f"milestones/catalog.json is stale (a model, count or paper changed); regenerate it with "
        f"`{catalog.REGENERATE}`"
    )
    assert [r["name"] for r in catalog.find_models()] == list_models()
    for pattern in ("resnet*", "vgg1[19]_bn", "nosuchnet*", ""):
        assert [r["name"] for r in catalog.find_models([pattern])] == list_models(pattern)


def test_models_markdown_is_deterministic() -> None:
    assert models_markdown() == models_markdown()


def test_models_table_has_every_model_once_grouped_by_family() -> None:
    rows = [line for line in models_markdown().splitlines() if re.match(r"\|[^|]*\| `", line)]
    names = [line.split("|")[2].strip().strip("`") for line in rows]
    assert names == ALL, "one row per registered model, in registration order"
    heads = [line.split("|")[1].strip() for line in rows]
    families = [get_spec(n).family for n in names]
    # Each family is one contiguous block whose first row carries the family name.
    starts = [i for i, f in enumerate(families) if i == 0 or families[i - 1] != f]
    assert len(starts) == len(set(families)), f"a family is split into several groups: {families}"
    assert [i for i, h in enumerate(heads) if h] == starts
    assert [heads[i] for i in starts] == [f"**{families[i]}**" for i in starts]


@pytest.mark.parametrize("name", ALL)
def test_models_table_row_shows_ours_and_the_papers_numbers(name: str) -> None:
    spec = get_spec(name)
    cells = _table_rows(models_markdown())[name]
    r, c = spec.reported, spec.counts
    assert f"{FIRST_AUTHOR.get(spec.family, '')}" in cells[2] and f" {spec.paper.year}" in cells[2]
    assert cells[3] == "x".join(map(str, spec.input_size))
    assert cells[4] == f"{c.params:,}"
    assert cells[5] == ("-" if r.params_m is None else str(r.params_m))
    assert cells[6] == f"{c.macs / 1e9:.4g}"
    assert cells[7] == ("-" if r.gmacs is None else str(r.gmacs))
    assert cells[9] == ("-" if r.top1_err is None else str(r.top1_err))
    assert cells[10] == ("-" if r.top5_err is None else str(r.top5_err))
    if r.top1_err is not None or r.top5_err is not None:
        assert cells[8] == r.dataset and cells[11] not in ("", "-"), f"{name}: a paper error needs its source"


@pytest.mark.parametrize("name", sorted(KNOWN_PARAMS))
def test_models_table_matches_independent_counts(name: str) -> None:
    assert _table_rows(models_markdown())[name][4] == f"{KNOWN_PARAMS[name]:,}"


def test_short_cite_forms() -> None:
    assert short_cite(PaperRef("T", "Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun", 2016)) == "He et al. 2016"
    assert short_cite(PaperRef("T", "Simonyan, Zisserman", 2015)) == "Simonyan & Zisserman 2015"
    assert short_cite(PaperRef("T", "Krizhevsky", 2014, arxiv="1404.5997")) == (
        "[Krizhevsky 2014](https://arxiv.org/abs/1404.5997)"
    )


def test_report_cli_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", "models"]) == 0
    assert capsys.readouterr().out == models_markdown()


def _info(name: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(["info", name, "--brief"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


@pytest.mark.parametrize("name", INFO_MODELS)
def test_info_prints_reported_vs_measured(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`milestones info NAME --brief`: the paper's numbers beside ours, the parameter count as a plain integer."""
    spec = get_spec(name)
    out = _info(name, capsys)
    assert out.startswith(f"{name}  ({spec.family} family)")
    assert str(spec.paper.year) in out and spec.paper.title in out
    params = re.search(r"^params\s+(\S+)\s+(\S+)\s*$", out, re.M)
    assert params, f"no params row in:\n{out}"
    assert re.fullmatch(r"\d+", params.group(2)), f"measured params {params.group(2)!r} is not a plain integer"
    assert int(params.group(2)) == spec.counts.params
    if name in KNOWN_PARAMS:
        assert int(params.group(2)) == KNOWN_PARAMS[name]
    paper_params = params.group(1)
    assert paper_params == ("-" if spec.reported.params_m is None else f"{spec.reported.params_m}M")
    gmacs = re.search(r"^GMACs\s+(\S+)\s+(\S+)\s*$", out, re.M)
    assert gmacs
    assert gmacs.group(1) == ("-" if spec.reported.gmacs is None else str(spec.reported.gmacs))
    assert gmacs.group(2) == f"{spec.counts.macs / 1e9:.4g}"  # measured afresh, printed to 4 digits
    top1 = re.search(r"^top-1 err % \((.+?)\)\s+(\S+)", out, re.M)
    assert top1 and top1.group(1) == spec.reported.dataset
    assert top1.group(2) == ("-" if spec.reported.top1_err is None else str(spec.reported.top1_err))
    top5 = re.search(r"^top-5 err % \(.+?\)\s+(\S+)", out, re.M)
    assert top5 and top5.group(1) == ("-" if spec.reported.top5_err is None else str(spec.reported.top5_err))
    if spec.reported.source:
        assert f"paper numbers from: {spec.reported.source}" in out


def test_info_unknown_model_is_one_line_with_close_matches(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["info", "resnet5O", "--brief"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "resnet50" in err


def test_list_shows_every_model_with_its_exact_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[2:]}
    assert list(rows) == ALL
    for name in ALL:
        spec = get_spec(name)
        assert f" {spec.counts.params:,} " in rows[name], f"list row for {name} lacks {spec.counts.params:,}"
        assert f" {spec.family} " in rows[name] and f" {spec.paper.year} " in rows[name]


def test_list_pattern_and_no_match(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list", "vgg1[19]_bn"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["vgg11_bn", "vgg19_bn"]
    # several patterns: their union, in registry order, each model once
    assert cli.main(["list", "xception*", "inception*", "inception_v3"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [line.split()[0] for line in rows] == [n for n in ALL if n.startswith(("inception", "xception"))]
    assert all(f" {get_spec(line.split()[0]).counts.params:,} " in line for line in rows)
    assert cli.main(["list", "nosuchnet*"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "milestones list" in err


def _script(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as a module: nothing runs (each script's work is in its ``main()``)."""
    return _load_script(name)


@functools.cache
def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmarks_md_command_lines_are_the_generators() -> None:
    """docs/benchmarks.md's "Generated by ... Reproduce any row with `milestones bench ...`" paragraph is exactly what
    make_benchmarks_doc.py writes for the command line it names, and the Machine section records that run's
    settings; without a GPU table the GPU section is the generator's sentence."""
    gen = _script("make_benchmarks_doc")
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    line = re.search(r"^Generated by `python benchmarks/make_benchmarks_doc\.py(.*?)` on (\d{4}-\d{2}-\d{2})\..*$",
                     text, re.M)
    assert line, "docs/benchmarks.md names no generating command"
    argv = shlex.split(line[1])
    assert line[0] == gen.intro(argv, line[2]).rstrip("\n")
    args, n = gen.parse_args(argv), gen.probe_side(gen.parse_args(argv).quick)
    assert (f"settings of this run: {'quick' if args.quick else 'full'} mode, {args.threads} torch thread(s), "
            f"{args.reps} reps after {args.warmup} warm-up step(s), clock = {args.clock}") in text
    assert f"float32 matmul peak ({n}x{n}x{n}, median of 7)" in text
    gpu = text.split("\n## GPU\n", 1)[1].split("\n_Total generation time")[0]
    assert "|" in gpu or gpu.strip() == gen.NO_GPU


def test_benchmarks_intro_follows_the_arguments() -> None:
    """The reproduce line carries the settings the run used: quick and full defaults, and explicit values."""
    gen = _script("make_benchmarks_doc")
    quick, full = gen.intro(["--quick"], "D"), gen.intro([], "D")
    assert "`python benchmarks/make_benchmarks_doc.py --quick` on D." in quick
    assert "--threads 1 --clock cpu --reps 5 --warmup 1 --probe 1024`" in quick
    assert "`python benchmarks/make_benchmarks_doc.py` on D." in full and "--reps 10 --warmup 2 --probe 2048`" in full
    wall = gen.intro(["--clock", "wall", "--threads", "2", "--reps", "7"], "D")
    assert "--threads 2 --clock wall --reps 7 --warmup 2 --probe 2048`" in wall


QUICK = ROOT / "docs" / "compare" / "quick"
_INT_FIELDS = ("seed", "params", "macs", "year", "epochs", "cpu_count", "torch_threads")
_FLOAT_FIELDS = ("final_test_acc", "best_test_acc", "train_seconds", "wall_seconds", "img_per_s")


def test_quick_leaderboard_is_the_compare_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/compare/quick/leaderboard.md is exactly what `milestones compare` writes from the results.csv beside it
    and today's suite file: its "Generated by `milestones compare quick`" line, the suite's description, every row."""
    text = (QUICK / "leaderboard.md").read_text(encoding="utf-8")
    line = re.search(r"^Generated by `milestones compare (\S+)` \(([^)]+)\)\.", text, re.M)
    assert line, "the leaderboard names no generating command"
    with open(QUICK / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.update({k: int(r[k]) for k in _INT_FIELDS if r[k] != ""})
        r.update({k: float(r[k]) for k in _FLOAT_FIELDS if r[k] != ""})
    assert compare.to_csv(rows) == (QUICK / "results.csv").read_text(encoding="utf-8")
    plots = ["acc_vs_params.png", "acc_vs_macs.png", "acc_vs_year.png"]  # the order compare.plot writes them
    assert all((QUICK / p).is_file() for p in plots)
    monkeypatch.setattr(compare, "_now", lambda: line[2])  # the one thing a regeneration would change
    assert text == compare.leaderboard_markdown(compare.load_suite(line[1]), rows, plots=plots)


# docs/results.md writes a few arguments as placeholders; each stands for these values.
PLACEHOLDERS = {"MODEL": ("vit_ti16", "cswin_t", "swin_t"), "<that run>": ("that-run",)}
COMMAND_STARTS = ("milestones ", "python benchmarks/", "make ")


def _documented_commands(markdown: str) -> list[str]:
    """Indented code-block lines (with ``\\`` continuations joined, ``# comments`` dropped) and inline code spans
    that start with ``milestones``, ``python benchmarks/`` or ``make``, placeholders expanded; in order, once each."""
    found, pending = [], ""
    for line in markdown.splitlines():
        if line.startswith("    ") and line.strip():
            pending += line.strip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            found.append(pending)
        pending = ""
    found += re.findall(r"`([^`\n]+)`", markdown)
    commands = []
    for cmd in found:
        cmd = re.sub(r"\s+#.*$", "", cmd).strip()
        if not cmd.startswith(COMMAND_STARTS):
            continue
        used = [k for k in PLACEHOLDERS if k in cmd]
        for values in itertools.product(*(PLACEHOLDERS[k] for k in used)):
            expanded = cmd
            for key, value in zip(used, values, strict=True):
                expanded = expanded.replace(key, value)
            if expanded not in commands:
                commands.append(expanded)
    return commands


RESULTS_COMMANDS = _documented_commands((ROOT / "docs" / "results.md").read_text(encoding="utf-8"))


def _parse(parser: object, argv: list[str]) -> object:
    try:
        return parser.parse_args(argv)
    except SystemExit:
        raise ConfigError(f"{' '.join(argv)!r} does not parse") from None


def _check_cli(argv: list[str], tmp: Path) -> None:
    """A `milestones` command, parsed; `train` runs with --dry-run (config resolved, model options checked on the
    meta device, nothing trained), `compare` resolves every run's config of its suite."""
    if argv[0] == "train":
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                rc = cli.main([*argv, "--dry-run"])
            except SystemExit as e:  # argparse
                rc = e.code
        if rc != 0:
            raise ConfigError(f"{' '.join(argv)!r}: {err.getvalue().strip()}")
        return
    args = _parse(cli.build_parser(), argv)
    if args.command == "compare":
        compare.plan(compare.load_suite(args.suite), tmp)


def check_command(cmd: str, tmp: Path) -> None:
    """Parse a documented command the way its program would, without running it."""
    argv = shlex.split(cmd)
    if argv[0] == "milestones":
        _check_cli(argv[1:], tmp)
    elif argv[0] == "make":
        makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
        for target in argv[1:]:
            rule = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", makefile, re.M)
            assert rule, f"the Makefile has no target {target!r}"
            for recipe in rule[1].splitlines():
                words = shlex.split(recipe.strip())
                if words[0].endswith("/milestones"):
                    _check_cli(words[1:], tmp)
    elif argv[0] == "python" and argv[1].startswith("benchmarks/"):
        name = Path(argv[1]).stem
        parser = _script(name).build_parser()
        if name in ("time_to_accuracy", "ddp_scaling"):  # each runs `milestones train MODEL --data DATA ... EXTRA`
            try:
                args, extra = parser.parse_known_args(argv[2:])
            except SystemExit:
                raise ConfigError(f"{cmd!r} does not parse") from None
            _check_cli(["train", args.model, "--data", args.data, f"--train.target_accuracy={args.target}", *extra],
                       tmp)
        elif name == "recipe_sweep":  # every grid entry is a `milestones train --config RECIPE ...` run
            args = _parse(parser, argv[2:])
            grid = json.loads((ROOT / args.grid).read_text(encoding="utf-8"))
            for run_args in grid["runs"].values():
                _check_cli(["train", "--config", grid["recipe"], *run_args], tmp)
        else:
            _parse(parser, argv[2:])
    else:
        raise ConfigError(f"no checker for {cmd!r}")


def test_results_md_has_commands() -> None:
    assert len(RESULTS_COMMANDS) >= 15, RESULTS_COMMANDS
    assert any(c.startswith("milestones train vit_ti16 ") for c in RESULTS_COMMANDS)


@pytest.mark.parametrize("cmd", RESULTS_COMMANDS)
def test_results_md_command_parses(cmd: str, tmp_path: Path) -> None:
    """Each command in docs/results.md parses with today's CLI, recipes, suites and scripts (an unknown override key,
    recipe or option fails loudly); nothing is trained."""
    check_command(cmd, tmp_path)


@pytest.mark.parametrize("cmd", [
    "milestones train vit_ti16 --data cifar10 --data.mixup=0",
    "milestones train vit_ti16 --data cifar10 --model.kwargs.patch=4",
    "milestones train resnet20 --data cifar10 --epochs ten",
    "milestones train resnet20 --data cifar10 --optim.lr=fast",
    "milestones eval --tta",
    "milestones compare quick --dry-rnu",
    "python benchmarks/loader_vs_torchvision.py --task mnist --reps 3",
    "python benchmarks/time_to_accuracy.py lenet5_modern --data mnist --train.epoch=4",
    "make nosuchtarget",
])
def test_command_checker_rejects(cmd: str, tmp_path: Path) -> None:
    """The checker is not vacuous: a misspelt key, a bad value, a missing argument or target fails."""
    with pytest.raises((ConfigError, AssertionError)):
        check_command(cmd, tmp_path)
