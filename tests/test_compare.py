"""`milestones compare` on a tiny real CIFAR-10 suite; the CIFAR-10 recipes; a short real CIFAR-10 run that learns."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from cli_checks import one_line_error

from milestones import compare
from milestones.config import build_config, list_recipes, load_recipe
from milestones.errors import ConfigError, MilestonesError, RunDirError
from milestones.models import create_model

TINY = {
    "name": "tiny",
    "description": "Two small nets, two seeds, two epochs on 2,000 images.",
    "data": "cifar10",
    "seeds": [0, 1],
    "overrides": {"train.epochs": 2, "data.train_subset": 2000, "data.test_subset": 500, "train.log_every": 0},
    "runs": [
        "lenet5_modern",
        {"model": "plain20", "label": "plain20-narrow", "overrides": {"model.kwargs": {"widths": [8, 16, 32]}}},
    ],
}


def _suite(tmp_path: Path, data: dict, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def tiny_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list]:
    tmp = tmp_path_factory.mktemp("compare")
    suite_file = _suite(tmp, TINY)
    suite = compare.load_suite(suite_file)
    settings = {"data.root": str(data_root), "train.progress": False}
    events: list[tuple[str, str]] = []
    outcomes = compare.run_suite(suite, tmp / "out", settings=settings,
                                 on_event=lambda what, p, i, n: events.append((what, p.title)))
    compare.write_reports(suite, outcomes, tmp / "out" / "tiny")
    return tmp, suite_file, events


def test_tiny_suite_trains_every_run_and_writes_reports(tiny_run) -> None:
    tmp, _, events = tiny_run
    assert [e for e, _ in events] == ["start", "done"] * 4
    folder = tmp / "out" / "tiny"
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert [(r["label"], r["seed"], r["status"]) for r in rows] == [
        ("lenet5_modern", "0", "ok"), ("lenet5_modern", "1", "ok"), ("plain20-narrow", "0", "ok"),
        ("plain20-narrow", "1", "ok")]
    for r in rows:
        summary = json.loads((Path(r["run_dir"]) / "summary.json").read_text())
        assert float(r["final_test_acc"]) == summary["final_test_acc"] > 0.12  # above chance (0.10) after 2 epochs
        assert r["dataset"] == "cifar10 (jpeg-q75)" and r["device"] == "cpu"
    # the run's own overrides reached the model: plain20 at half width has about a quarter of the parameters
    assert int(rows[2]["params"]) == sum(p.numel() for p in create_model("plain20", widths=[8, 16, 32], num_classes=10)
                                         .parameters())
    # seeds differ, so the two runs of a model differ
    assert rows[0]["final_test_acc"] != rows[1]["final_test_acc"]


def test_leaderboard_is_sorted_with_mean_and_std(tiny_run) -> None:
    tmp, _, _ = tiny_run
    folder = tmp / "out" / "tiny"
    rows = list(csv.DictReader((folder / "results.csv").open()))
    md = (folder / "leaderboard.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| rank")]
    accs = {}
    for label in ("lenet5_modern", "plain20-narrow"):
        values = [100 * float(r["final_test_acc"]) for r in rows if r["label"] == label]
        mean = sum(values) / 2
        std = (sum((v - mean) ** 2 for v in values) / 1) ** 0.5  # sample std of two values
        accs[label] = mean
        line = next(x for x in table if f"`{label}`" in x)
        assert f"{mean:.2f} ± {std:.2f}" in line and "cifar10 (jpeg-q75)" in line
    first = max(accs, key=accs.get)
    assert f"`{first}`" in table[0] and table[0].startswith("| 1 |")
    assert "AMD" in md or "Intel" in md or "cpu:" in md  # the machine is named
    for png in ("acc_vs_params.png", "acc_vs_macs.png", "acc_vs_year.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({png})" in md


def test_second_invocation_skips_finished_runs(tiny_run, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp, suite_file, _ = tiny_run
    import milestones.train.run as run_module

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(run_module, "run_training", no_training)
    events: list[str] = []
    outcomes = compare.run_suite(compare.load_suite(suite_file), tmp / "out", on_event=lambda w, *a: events.append(w))
    assert events == ["skip"] * 4 and all(o.summary for o in outcomes)


def test_edited_suite_is_refused_not_mixed_in(tiny_run) -> None:
    tmp, _, _ = tiny_run
    edited = {**TINY, "overrides": {**TINY["overrides"], "optim.lr": 0.5}}
    with pytest.raises(RunDirError, match=r"another config .*optim\.lr") as e:
        compare.run_suite(compare.load_suite(_suite(tmp, edited, "edited.yaml")), tmp / "out")
    assert "\n" not in str(e.value)
    suite = compare.load_suite(_suite(tmp, edited, "edited.yaml"))
    assert {compare.status(p) for p in compare.plan(suite, tmp / "out")} == {"changed"}  # what --dry-run shows
    assert {o.status for o in compare.collect(suite, tmp / "out")} == {"missing"}  # --report-only leaves them out


def test_interrupted_run_resumes_and_failed_run_is_recorded(data_root: Path, tmp_path: Path) -> None:
    suite = compare.load_suite(_suite(tmp_path, {
        "name": "two", "data": "cifar10", "seeds": [0],
        "overrides": {"train.epochs": 2, "data.train_subset": 500, "data.test_subset": 200, "train.log_every": 0,
                      "data.root": str(data_root), "train.progress": False},
        "runs": ["lenet5_modern", {"model": "lenet5_modern", "label": "diverges",
                                     "overrides": {"optim.name": "sgd", "optim.lr": 1e8}}],
    }))
    from milestones.train.run import run_training

    first = compare.plan(suite, tmp_path / "out")[0]
    # one epoch of the two, as if the suite had been stopped after it
    run_training(compare.plan(suite, tmp_path / "out", settings={"train.epochs": 1})[0].cfg)
    assert compare.status(first) == "partial"
    events: list[str] = []
    outcomes = compare.run_suite(suite, tmp_path / "out", on_event=lambda w, *a: events.append(w))
    assert events == ["resume", "done", "start", "failed"]
    summary = outcomes[0].summary
    assert summary["epochs"] == 2 and summary["resumed_from_step"] > 0
    assert outcomes[1].status == "failed" and "loss became" in outcomes[1].error
    assert (outcomes[1].planned.path / compare.FAILED_MARKER).is_file()
    again: list[str] = []
    compare.run_suite(suite, tmp_path / "out", on_event=lambda w, *a: again.append(w))
    assert again == ["skip", "skip-failed"]
    paths = compare.write_reports(suite, compare.collect(suite, tmp_path / "out"), tmp_path / "report")
    md = paths["leaderboard"].read_text()
    assert "| - | `diverges` (lenet5_modern)" in md and "failed" in md and "loss became" in md


@pytest.mark.parametrize(("suite", "words"), [
    ({"data": "cifar10"}, "non-empty list 'runs'"),
    ({"runs": ["resnet2O"]}, "resnet20"),
    ({"runs": ["resnet20", "resnet20"]}, "twice"),
    ({"runs": [{"model": "resnet20", "lr": 0.1}]}, "unknown key 'lr'"),
    ({"runs": ["resnet20"], "seed": [1]}, "unknown key 'seed'"),
    ({"runs": ["resnet20"], "seeds": [1, 1]}, "distinct integers"),
    ({"runs": ["resnet20"], "overrides": {"optim.lrr": 1}}, "optim.lr"),
])
def test_bad_suites_are_one_line_errors(tmp_path: Path, suite: dict, words: str) -> None:
    with pytest.raises(MilestonesError, match=words) as e:
        s = compare.load_suite(_suite(tmp_path, suite))
        compare.plan(s, tmp_path / "out")
    assert "\n" not in str(e.value)


def test_cli_compare_errors_and_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from milestones.cli import main

    assert main(["compare", str(tmp_path / "missing.yaml")]) == 2
    one_line_error(capsys.readouterr().err, "neither a file nor a shipped suite")
    assert main(["compare", "quick", "--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "resnet20 seed 0" in out and "new" in out
    assert not (tmp_path / "quick").exists()  # a dry run writes nothing
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    assert "cifar10_resnet20_full" in listing and "quick" in listing and "full" in listing


def test_shipped_suites_cover_every_family_and_plan() -> None:
    families = {"lenet", "alexnet", "vgg", "googlenet", "inception", "xception", "resnet", "densenet", "vit", "cswin",
                "swin"}
    from milestones.models import get_spec

    for name in compare.list_suites():
        suite = compare.load_suite(name)
        assert {get_spec(r.model).family for r in suite.runs} >= families, name
        planned = compare.plan(suite, "runs")
        assert len(planned) == len(suite.runs) * len(suite.seeds)


# ---------------------------------------------------------------- recipes


CIFAR_RECIPES = [r for r in list_recipes() if r.startswith("cifar10_")]
# Recipes that reproduce a paper's unregularised training: AlexNet's Fig. 1 net, "no regularization of any kind".
NO_AUGMENTATION = {"cifar10_convnet4"}


def test_every_family_has_a_cifar10_recipe() -> None:
    wanted = {"lenet5_modern", "alexnet", "vgg11_bn", "vgg16_bn", "googlenet", "resnet20", "resnet56", "resnet110",
              "plain20", "plain56", "densenet_bc100", "vit_ti16", "cswin_t", "swin_t", "inception_v2", "inception_v3",
              "xception"}
    assert {build_config(config_file=r).model.name for r in CIFAR_RECIPES} >= wanted
    assert {"cifar10_resnet20_full", "cifar10_resnet56_full", "cifar10_resnet110_full",
            "cifar10_densenet_bc100_full"} <= set(CIFAR_RECIPES)


@pytest.mark.parametrize("recipe", CIFAR_RECIPES)
def test_cifar10_recipe_builds_a_32px_model(recipe: str) -> None:
    cfg = build_config(config_file=recipe)
    augmented = cfg.data.crop_padding == 4 and cfg.data.flip
    assert cfg.data.name == "cifar10" and augmented == (recipe not in NO_AUGMENTATION)
    model = create_model(cfg.model.name, **{**cfg.model.kwargs, "num_classes": 10, "in_chans": 3}).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet_full_recipe_is_the_papers_schedule() -> None:
    """He et al. §4.2: lr 0.1, momentum 0.9, wd 1e-4, batch 128, lr / 10 at 32k and 48k iterations, 64k in all."""
    per_epoch = 50_000 // 128  # 390: the last partial batch is dropped
    for depth in (20, 56, 110):
        cfg = build_config(config_file=f"cifar10_resnet{depth}_full")
        assert cfg.model.name == f"resnet{depth}"
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay, cfg.data.batch_size) == (
            "sgd", 0.1, 0.9, 1e-4, 128)
        assert cfg.schedule.name == "step" and cfg.schedule.gamma == 0.1
        steps = [m * per_epoch for m in cfg.schedule.milestones]
        assert steps == pytest.approx([32_000, 48_000], abs=2)
        assert cfg.train.epochs * per_epoch == pytest.approx(64_000, abs=per_epoch)
    assert build_config(config_file="cifar10_resnet110_full").schedule.warmup_epochs > 0  # the paper's 0.01 start


def test_extends_merges_and_refuses_cycles(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("model: {name: resnet20, kwargs: {shortcut: B}}\noptim: {lr: 0.3, momentum: 0.8}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nmodel: {name: resnet56}\noptim: {lr: 0.2}\n")
    data = load_recipe(tmp_path / "child.yaml")
    assert data == {"model": {"name": "resnet56", "kwargs": {"shortcut": "B"}}, "optim": {"lr": 0.2, "momentum": 0.8}}
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="extends itself"):
        load_recipe(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="did you mean cifar10_resnet20_full"):
        build_config(config_file="cifar10_resnet20_ful")


# ---------------------------------------------------------------- a real run


def test_short_real_cifar10_run_learns(data_root: Path, tmp_path: Path) -> None:
    """ResNet-20 with its shipped recipe, shortened: 3 epochs on 5,000 training images of the JPEG copy at a peak
    learning rate of 0.05 (0.2 is for the 10-epoch schedule), evaluated on 2,000 test images. Chance is 10%; with
    seeds 1 and 2 it reached 44.3% and 44.4% when the test was written (2 CPU cores); 30% is asserted."""
    from milestones.train.run import run_training

    cfg = build_config(model="resnet20", data="cifar10", overrides=[
        "--train.epochs=3", "--data.train_subset=5000", "--data.test_subset=2000", "--optim.lr=0.05",
        f"--data.root={data_root}", "--train.progress=false", f"--out_dir={tmp_path}", "--name=r20"])
    result = run_training(cfg)
    s = result.summary
    assert s["dataset"] == "cifar10 (jpeg-q75)" and s["params"] == 269_722
    assert s["final_test_acc"] >= 0.30, s["final_test_acc"]


def test_recipe_sweep_script(data_root: Path, tmp_path: Path) -> None:
    """benchmarks/recipe_sweep.py: every grid entry trains with its overrides, a failing one is reported in its row,
    the JSON holds the per-epoch accuracies, and a second call skips the finished runs."""
    import subprocess
    import sys

    short = ["--epochs", "1", "--data.train_subset=300", "--data.test_subset=200", "--train.log_every=0"]
    grid = tmp_path / "g.json"
    grid.write_text(json.dumps({"recipe": "cifar10_lenet5_modern", "runs": {
        "base": short, "ema": [*short, "--train.ema_decay=0.9"], "bad": [*short, "--optim.name=nope"]}}))
    script = Path(__file__).parents[1] / "benchmarks" / "recipe_sweep.py"
    cmd = [sys.executable, str(script), str(grid), "--data-root", str(data_root), "--device", "cpu",
           "--out", str(tmp_path / "out"), "--parallel", "2", "--json", str(tmp_path / "t.json")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    table = json.loads((tmp_path / "t.json").read_text())["runs"]
    assert len(table["base"]["test_acc"]) == 1 and 0 <= table["base"]["test_acc"][0] <= 100
    assert table["base"]["ema_test_acc"] == [] and len(table["ema"]["ema_test_acc"]) == 1
    assert table["bad"]["test_acc"] == []
    assert "| bad |" in first.stdout and "unknown optimizer 'nope'" in first.stdout
    stamp = (tmp_path / "out" / "g" / "base" / "summary.json").stat().st_mtime_ns
    subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    assert (tmp_path / "out" / "g" / "base" / "summary.json").stat().st_mtime_ns == stamp
