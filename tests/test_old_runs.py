"""Long runs survive refactors (issue 27, point 8): a run directory made by the code of 2026-12-07 (commit 9ee4c9e,
before the input contract, the family traits and the train/ package's new modules) still loads, predicts, evaluates
and resumes with today's code.

The fixture was made with ``PYTHONPATH=<checkout of 9ee4c9e> python -m milestones train lenet5 --data digits
--train.epochs=1`` (its curves.png and lock file left out); it is LeNet-5 after one epoch on scikit-learn's digits.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from milestones import cli
from milestones.data import input_spec
from milestones.train.checkpoint import load_checkpoint, restore_model

FIXTURE = Path(__file__).parent / "fixtures" / "lenet5-digits-9ee4c9e"


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    run = tmp_path / FIXTURE.name
    shutil.copytree(FIXTURE, run)
    return run


def test_the_fixture_is_from_before_the_input_contract() -> None:
    meta = json.loads((FIXTURE / "checkpoints" / "best.json").read_text())
    assert "style" not in meta["data"] and meta["data"]["name"] == "digits"


def test_an_old_checkpoint_loads_with_the_contract_its_dataset_declares(old_run: Path) -> None:
    state, meta = load_checkpoint(old_run)
    spec = input_spec(meta["data"])
    assert (meta["data"]["style"], meta["data"]["recipe"]) == ("digit", "sklearn-digits")
    assert spec.input_size == (1, 32, 32)
    model, _ = restore_model(old_run)
    with torch.no_grad():
        out = model(torch.zeros(2, *spec.input_size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    torch.testing.assert_close(model.state_dict()["c1.weight"], state["c1.weight"], rtol=0, atol=0)


def test_an_old_run_predicts_and_evaluates(old_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    digit = np.zeros((64, 64), np.uint8)
    digit[10:54, 28:36] = 255  # a drawn 1
    Image.fromarray(digit).save(tmp_path / "one.png")
    assert cli.main(["predict", str(old_run), str(tmp_path / "one.png")]) == 0
    assert "one.png" in capsys.readouterr().out
    assert cli.main(["eval", str(old_run)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((old_run / "summary.json").read_text())
    assert f"{100 * summary['final_test_acc']:.2f}%" in out  # the same test set and preprocessing as when it trained


def test_an_old_run_resumes_for_more_epochs(old_run: Path) -> None:
    before = json.loads((old_run / "summary.json").read_text())
    assert cli.main(["train", "--resume", str(old_run), "--train.epochs=2", "--no-progress"]) == 0
    after = json.loads((old_run / "summary.json").read_text())
    assert before["epochs"] == 1 and after["epochs"] == 2
    kinds = [json.loads(line)["kind"] for line in (old_run / "metrics.jsonl").read_text().splitlines()]
    assert "resume" in kinds and kinds.count("epoch") == 2
