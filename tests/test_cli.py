"""The command line end to end, and the one-line errors (exit status 2, no traceback) a user meets."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_checks import one_line_error
from PIL import Image

from milestones import cli


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    one_line_error(err, *needles)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """The demo path, shortened: `milestones train lenet5 --data digits` for 3 epochs."""
    out = tmp_path_factory.mktemp("cli_runs")
    code = cli.main(["train", "lenet5", "--data", "digits", "--epochs", "3", "--out", str(out), "--name", "demo",
                     "--no-progress"])
    assert code == 0
    return out / "demo"


def test_train_prints_accuracy_and_run_dir(digits_run, capsys) -> None:
    assert (digits_run / "checkpoints" / "best.safetensors").is_file()
    code, out, _ = run_cli(capsys, "eval", str(digits_run))
    assert code == 0 and "lenet5 on digits (test, 359 images): top-1" in out
    acc = float(out.split("top-1 ")[1].split("%")[0])
    assert acc > 50.0  # 3 of the recipe's 20 epochs; chance is 10%


def test_predict_any_image_mode(digits_run, tmp_path, capsys) -> None:
    """A drawn digit in any common mode and size goes through the model's own preprocessing."""
    canvas = np.full((120, 90), 255, np.uint8)
    canvas[20:100, 40:52] = 0  # a dark "1" on white paper
    files = {
        "gray.png": Image.fromarray(canvas),
        "rgba.png": Image.fromarray(canvas).convert("RGBA"),
        "palette.png": Image.fromarray(canvas).convert("P"),
        "sixteen.png": Image.fromarray(canvas.astype(np.uint16) * 257),
        "cmyk.jpg": Image.fromarray(canvas).convert("CMYK"),
    }
    paths = []
    for name, img in files.items():
        img.save(tmp_path / name)
        paths.append(str(tmp_path / name))
    code, out, err = run_cli(capsys, "predict", str(digits_run), *paths, "--topk", "2")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == len(files)
    for line in lines:
        assert "%" in line


def test_predict_unreadable_and_huge_images(digits_run, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    code, _, err = run_cli(capsys, "predict", str(digits_run), str(bad))
    assert_one_line_error(code, err, str(bad))
    huge = tmp_path / "huge.png"
    Image.new("L", (8000, 6000)).save(huge)
    code, _, err = run_cli(capsys, "predict", str(digits_run), str(huge))
    assert_one_line_error(code, err, "too large")
    code, _, err = run_cli(capsys, "predict", str(digits_run), str(tmp_path / "nope.png"))
    assert_one_line_error(code, err, "does not exist")


def test_unknown_model_suggests_close_matches(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "train", "resnet5O", "--data", "digits", "--out", str(tmp_path))
    assert_one_line_error(code, err, "unknown model 'resnet5O'", "resnet50")
    code, _, err = run_cli(capsys, "info", "lenet")
    assert_one_line_error(code, err, "lenet5")


def test_unknown_config_key_lists_valid_keys(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "train", "lenet5", "--data", "digits", "--optim.lrate=0.1", "--out", str(tmp_path))
    assert_one_line_error(code, err, "optim.lrate", "optim.lr")


def test_wrong_value_type(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "train", "lenet5", "--data", "digits", "--train.epochs=many", "--out", str(tmp_path))
    assert_one_line_error(code, err, "train.epochs", "integer")


def test_unknown_model_option(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "train", "lenet5", "--data", "digits", "--model.kwargs.depth=3",
                           "--out", str(tmp_path))
    assert_one_line_error(code, err, "'depth'", "num_classes")


def test_train_dry_run_prints_the_config_and_trains_nothing(capsys, tmp_path) -> None:
    """`train --dry-run`: the resolved config as YAML (recipe, then overrides), no data read, no run directory; a
    misspelt model option still fails, as it would in a real run."""
    import yaml

    code, out, err = run_cli(capsys, "train", "resnet20", "--data", "cifar10", "--optim.lr=0.1", "--epochs", "3",
                             "--data-root", str(tmp_path / "nothing-here"), "--out", str(tmp_path), "--dry-run")
    assert (code, err) == (0, "")
    cfg = yaml.safe_load(out)
    assert cfg["model"]["name"] == "resnet20" and cfg["data"]["name"] == "cifar10"
    assert cfg["optim"]["lr"] == 0.1 and cfg["train"]["epochs"] == 3 and cfg["data"]["crop_padding"] == 4
    assert list(tmp_path.iterdir()) == []
    code, _, err = run_cli(capsys, "train", "lenet5", "--data", "digits", "--model.kwargs.depth=3", "--dry-run")
    assert_one_line_error(code, err, "'depth'", "num_classes")


def test_missing_data_says_where_to_put_which_files(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "train", "lenet5", "--data", "mnist", "--data-root", str(tmp_path / "empty"),
                           "--out", str(tmp_path))
    assert_one_line_error(code, err, "train-images-idx3-ubyte", "mnist", "--download")


def _mnist_copy(tmp_path: Path, data_root: Path) -> Path:
    """A data root holding a private copy of the real MNIST files, safe to damage."""
    root = tmp_path / "root"
    (root / "mnist").mkdir(parents=True)
    for f in (data_root / "mnist").iterdir():
        shutil.copy(f, root / "mnist" / f.name)
    return root


def test_truncated_data_file_is_named(capsys, tmp_path, data_root) -> None:
    root = _mnist_copy(tmp_path, data_root)
    victim = root / "mnist" / "train-images-idx3-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:50_000])
    code, _, err = run_cli(capsys, "train", "lenet5", "--data", "mnist", "--data-root", str(root),
                           "--out", str(tmp_path / "runs"))
    assert_one_line_error(code, err, "train-images-idx3-ubyte.gz")


def test_eval_of_a_missing_run_is_one_line(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "eval", str(tmp_path / "nothing"))
    assert_one_line_error(code, err, "nothing")


def test_corrupt_idx_header_is_named(capsys, tmp_path, data_root) -> None:
    root = _mnist_copy(tmp_path, data_root)
    victim = root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    victim.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 100))  # wrong magic for a label file
    code, _, err = run_cli(capsys, "train", "lenet5", "--data", "mnist", "--data-root", str(root),
                           "--out", str(tmp_path / "runs"))
    assert_one_line_error(code, err, "t10k-labels-idx1-ubyte.gz")


def test_run_directory_is_never_overwritten(digits_run, capsys) -> None:
    before = (digits_run / "summary.json").read_bytes()
    code, _, err = run_cli(capsys, "train", "lenet5", "--data", "digits", "--epochs", "1",
                           "--out", str(digits_run.parent), "--name", "demo", "--no-progress")
    assert_one_line_error(code, err, "already holds a run", "--overwrite")
    assert (digits_run / "summary.json").read_bytes() == before


def test_console_script_runs_as_a_process() -> None:
    """The installed entry point works as a separate process; an error there is also one line and exit 2."""
    ok = subprocess.run([sys.executable, "-m", "milestones.cli", "list", "lenet*"], capture_output=True, text=True)
    assert ok.returncode == 0 and "lenet5_modern" in ok.stdout and "60,000" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "milestones.cli", "info", "alexnett"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "alexnet" in bad.stderr


# --- issue 28: every option checked before anything is written; one line instead of a traceback -------------------


@pytest.mark.parametrize(("args", "needles", "dry_run_too"), [
    (["--train.epochs=0"], ["train.epochs must be at least 1"], True),
    (["--epochs", "0"], ["train.epochs must be at least 1"], True),
    (["--optim.name=adamm"], ["'adamm'", "optim.name", "adamw"], True),
    (["--schedule.name=cosinee"], ["'cosinee'", "schedule.name", "cosine"], True),
    (["--data.batch_size=0"], ["data.batch_size must be at least 1"], True),
    (["--name", "../../escaped"], ["'../../escaped'", "single folder name", "--out"], True),
    (["--data.train_subset=999999"], ["data.train_subset=999999", "1438 training images of digits"], False),
    (["--data.batch_size=5000"], ["data.batch_size=5000", "1438 training images"], False),
])
def test_bad_run_options_fail_before_anything_is_written(args, needles, dry_run_too, capsys, tmp_path) -> None:
    """Each is one line and exit 2, and leaves no run directory (nor anything outside --out): the options are
    checked before the run directory is made, the ones that need no data by --dry-run too."""
    out = tmp_path / "nest" / "runs"
    base = ["train", "lenet5", "--data", "digits", "--out", str(out), "--no-progress", "--train.threads=1"]
    code, _, err = run_cli(capsys, *base, *args)
    assert_one_line_error(code, err, *needles)
    assert list(tmp_path.rglob("*")) == []  # no run directory, and ../../escaped not made beside the test's folder
    if dry_run_too:
        code, out_text, err = run_cli(capsys, *base, *args, "--dry-run")
        assert out_text == ""
        assert_one_line_error(code, err, *needles)


@pytest.mark.parametrize(("device", "needles"), [
    ("cuda", ["--device cuda", "no CUDA GPU", "--device cpu"]),
    ("cuda:1", ["--device cuda:1", "no CUDA GPU"]),
    ("gpu", ["'gpu'", "cpu, cuda"]),
])
def test_a_device_this_machine_lacks_is_one_line(device, needles, capsys, tmp_path, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    code, _, err = run_cli(capsys, "train", "lenet5", "--data", "digits", "--device", device, "--out", str(tmp_path),
                           "--no-progress")
    assert_one_line_error(code, err, *needles)
    assert list(tmp_path.iterdir()) == []


def test_eval_on_data_with_other_channels_says_what_the_run_expects(digits_run, data_root, capsys) -> None:
    code, _, err = run_cli(capsys, "eval", str(digits_run), "--data", "cifar10", "--data-root", str(data_root))
    assert_one_line_error(code, err, "cifar10 has 3-channel images", "expects 1-channel", "digits")


def test_serve_on_a_port_out_of_range_is_one_line(digits_run, capsys) -> None:
    code, _, err = run_cli(capsys, "serve", str(digits_run), "--port", "99999")
    assert_one_line_error(code, err, "--port", "65535", "99999")


def test_predict_topk_below_one_is_one_line(digits_run, tmp_path, capsys) -> None:
    image = tmp_path / "seven.png"
    Image.new("L", (28, 28), 255).save(image)
    code, out, err = run_cli(capsys, "predict", str(digits_run), str(image), "--topk", "0")
    assert out == ""
    assert_one_line_error(code, err, "--topk must be at least 1", "got 0")


@pytest.mark.parametrize("args", [[], ["--data", "mnist"]])
def test_train_without_a_model_shows_the_usage_and_trains_nothing(args, capsys, tmp_path, monkeypatch) -> None:
    """Bare `milestones train` used to start the default recipe's 20-epoch MNIST run. (The data root points
    nowhere, so that code which still started a run would fail fast instead of training.)"""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MILESTONES_DATA", str(tmp_path / "no-data"))
    code, out, err = run_cli(capsys, "train", *args)
    assert code == 2 and out == ""
    assert err.startswith("usage: milestones train") and "--resume RUN_DIR" in err
    assert err.strip().splitlines()[-1].startswith("error: name the model to train")
    assert list(tmp_path.iterdir()) == []


def test_train_without_a_model_name_still_takes_a_recipe_or_an_override(capsys) -> None:
    """--config (whose recipe names the model; the README's `train --config cifar10_resnet20_full`) and
    --model.name=... need no positional model (--resume: tests/test_resume.py)."""
    import yaml

    code, out, _ = run_cli(capsys, "train", "--config", "cifar10_resnet20_full", "--dry-run")
    assert code == 0 and yaml.safe_load(out)["model"]["name"] == "resnet20"
    code, out, _ = run_cli(capsys, "train", "--model.name=lenet5_modern", "--data", "digits", "--dry-run")
    assert code == 0 and yaml.safe_load(out)["model"]["name"] == "lenet5_modern"


def test_every_option_has_help_and_none_is_taken_by_prefix(capsys) -> None:
    """`--epoch` is not silently `--epochs` (allow_abbrev=False on every parser); `--help` explains every option."""
    import argparse

    parser = cli.build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in {"": parser, **subcommands}.items():
        assert sub.allow_abbrev is False, name
        missing = [a.dest for a in sub._actions if a.help is None]
        assert missing == [], (name, missing)
    code, out, err = run_cli(capsys, "train", "lenet5", "--data", "digits", "--epoch", "1", "--dry-run")
    assert out == ""
    assert_one_line_error(code, err, "'--epoch'")
    with pytest.raises(SystemExit) as e:  # argparse's own usage error for the other commands
        cli.main(["info", "lenet5", "--bri"])
    assert e.value.code == 2 and "unrecognized arguments: --bri" in capsys.readouterr().err


FRESH_PROCESS = """
import contextlib, io, json, sys
from milestones.cli import COMMANDS, main

codes = {}
for argv in (["--help"], ["--version"], *([c, "--help"] for c in COMMANDS), ["list"], ["list", "resnet*", "vgg1?"],
             ["list", "nosuchnet*"]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's --help and --version
            code = e.code
    codes[" ".join(argv)] = code
print(json.dumps({"codes": codes, "torch": sorted(m for m in sys.modules if m.split(".")[0] == "torch")}))
"""


def test_help_and_list_do_not_import_torch() -> None:
    """`--help`, every `COMMAND --help`, `--version` and `list` build the parser and read the model catalogue only:
    torch, about 1.5 s of the 1.6-1.9 s `--help` took (issue 28), is never imported. A fresh process, since this one
    has torch already."""
    run = subprocess.run([sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["torch"] == [], "imported by --help or list: " + ", ".join(result["torch"][:5])
    assert set(result["codes"].values()) == {0, 2} and result["codes"]["list nosuchnet*"] == 2
    assert [argv for argv, code in result["codes"].items() if code != 0] == ["list nosuchnet*"]


def test_the_package_imports_torch_only_when_a_name_needs_it() -> None:
    """`import milestones` is light; `from milestones import create_model` (PEP 562) and `milestones.models` work."""
    code = ("import sys, milestones; light = 'torch' not in sys.modules; from milestones import create_model, "
            "features; print(light, milestones.models.create_model is create_model, 'torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.stdout.split() == ["True", "True", "True"], run.stderr
