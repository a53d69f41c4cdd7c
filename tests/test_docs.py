"""Generated documentation and the CLI's numbers: docs/models.md is fresh, and `milestones info`/`list` show, for
every registered model, what the paper reported beside what we measure.

Independent references: exact counts quoted from PAPERS.md / the papers (AlexNet, VGG, ResNet-50, LeNet-5), the
family COUNTS tables, and a fresh meta-device measurement.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from milestones import cli
from milestones.models import PaperRef, get_spec, list_models
from milestones.report import REGENERATE, models_markdown, short_cite

DOC = Path(__file__).resolve().parent.parent / "docs" / "models.md"
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
    assert float(cells[6]) == pytest.approx(c.gmacs, rel=1e-3)
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
    assert float(gmacs.group(2)) == pytest.approx(spec.counts.gmacs, rel=1e-3, abs=1e-4)
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
    assert cli.main(["list", "nosuchnet*"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "milestones list" in err
