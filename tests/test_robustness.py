"""Runs survive bad input and bad numbers (issue 7): a non-finite loss stops the run at the step it happens and keeps
the last good state; ``--resume`` refuses, in one line on stderr with exit status 2, anything it cannot continue
exactly (a missing, corrupt or mismatched state, a changed config) and changes nothing on disk when it does; run
directories are never silently reused; a failed write never leaves a torn or temporary file.

Each CLI case checks the user's view: status 2, one line starting with ``error:``, no traceback, the named file or
key in the line, and every file of the run directory byte for byte as before.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
from pathlib import Path

import cli_checks
import pytest
import torch
from safetensors.torch import load_file

from milestones import cli
from milestones.config import build_config
from milestones.errors import RunDirError
from milestones.files import atomic_write
from milestones.train.callbacks import Callback, StepInfo
from milestones.train.checkpoint import load_training_state, pack, unpack
from milestones.train.loop import NonFiniteLossError
from milestones.train.run import run_training


def small_args(data_root: Path, out: Path, name: str, *extra: str, model: str = "lenet5") -> list[str]:
    """LeNet-5 on 160 MNIST images, batch 16: 10 steps per epoch; a state every 4 steps."""
    return [model, "--data", "mnist", "--data-root", str(data_root), "--data.train_subset=160",
            "--data.test_subset=100", "--data.batch_size=16", "--epochs", "1", "--train.threads=1",
            "--train.checkpoint_every=4", "--no-progress", "--out", str(out), "--name", name, *extra]


@pytest.fixture(scope="module")
def finished_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("robust")
    assert cli.main(["train", *small_args(data_root, out, "done")]) == 0
    return out / "done"


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    """A private copy of the finished run to damage."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(code: int, capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    return cli_checks.one_line_error(err, *needles)


# --- a non-finite loss -----------------------------------------------------------------------------------------------


def test_huge_learning_rate_stops_at_the_step_and_keeps_the_last_good_state(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ReLU LeNet-5 with SGD at lr 1e8 overflows within a few steps; log_every=0: the check does not need logging."""
    code = cli.main(["train", *small_args(data_root, tmp_path, "nan", "--train.log_every=0",
                                          "--train.checkpoint_every=1", "--optim.name=sgd", "--optim.lr=100000000.0",
                                          "--schedule.name=constant", model="lenet5_modern")])
    line = one_line_error(code, capsys, "loss became nan at step", "lower optim.lr", "last good training state")
    bad_step = int(line.split("at step ")[1].split()[0])
    tensors, info = load_training_state(tmp_path / "nan" / "checkpoints")
    assert info["step"] == bad_step - 1 and f"(step {bad_step - 1})" in line  # saved every step: the one before
    weights = [t for k, t in tensors.items() if k.startswith("model.") and t.is_floating_point()]
    assert all(bool(torch.isfinite(t).all()) for t in weights)


def _train_with_poison(data_root: Path, out: Path, poison_at: int) -> NonFiniteLossError:
    """An in-process run whose on_step hook turns one weight into NaN after step ``poison_at``."""

    class Poison(Callback):
        def on_step(self, info: StepInfo) -> None:
            if info.step == poison_at:
                with torch.no_grad():
                    next(info.model.parameters()).view(-1)[0] = math.nan

    cfg = build_config(model="lenet5", data="mnist", overrides=[
        f"--data.root={data_root}", "--data.train_subset=160", "--data.test_subset=100", "--data.batch_size=16",
        "--train.epochs=1", "--train.threads=1", "--train.checkpoint_every=3", "--train.log_every=0",
        "--train.progress=false", f"--out_dir={out}", "--name=poisoned"])
    with pytest.raises(NonFiniteLossError) as info:
        run_training(cfg, callbacks=[Poison()])
    return info.value


def test_nan_weights_stop_the_run_at_the_next_step(data_root: Path, tmp_path: Path) -> None:
    err = _train_with_poison(data_root, tmp_path, poison_at=7)
    assert "loss became nan at step 8 (epoch 1)" in str(err) and "(step 6)" in str(err)
    tensors, info = load_training_state(tmp_path / "poisoned" / "checkpoints")
    assert info["step"] == 6 and all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point())


def test_nan_weights_are_never_saved(data_root: Path, tmp_path: Path) -> None:
    """Poisoned right before a save (step 6 of checkpoint_every=3): the save refuses, the step-3 state stays."""
    err = _train_with_poison(data_root, tmp_path, poison_at=6)
    assert "weights became NaN or infinite by step 6" in str(err) and "(step 3)" in str(err)
    assert load_training_state(tmp_path / "poisoned" / "checkpoints")[1]["step"] == 3


# --- resume: every way it can be refused -----------------------------------------------------------------------------


def test_resume_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["train", "--resume", str(tmp_path / "nowhere")])
    one_line_error(code, capsys, "nowhere", "does not exist", "--resume")
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    code = cli.main(["train", "--resume", str(tmp_path / "stuff")])
    one_line_error(code, capsys, "stuff", "no config.yaml")
    assert (tmp_path / "stuff" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("damage", "needles"),
    [
        ("no-state", ("state.json", "--overwrite")),
        ("state-json-garbage", ("state.json", "corrupt")),
        ("state-json-truncated", ("state.json", "corrupt")),
        ("tensors-flipped", ("state.", "checksum", "corrupt")),
        ("tensors-truncated", ("state.", "corrupt or truncated")),
        ("tensors-missing", ("state.", "cannot read")),
        ("config-garbage", ("config.yaml", "not valid YAML")),
        ("config-other-model", ("config.yaml", "model.name ('lenet5' -> 'lenet5_modern')")),
        ("config-other-classes", ("config.yaml", "model.kwargs.num_classes (10 -> 5)")),
        ("config-unknown-key", ("config.yaml", "optim.lrate")),
    ],
)
def test_resume_refuses_a_damaged_run_and_changes_nothing(
    damage: str, needles: tuple[str, ...], run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = run_copy / "checkpoints"
    state = json.loads((ckpt / "state.json").read_text())
    tensors = ckpt / state["tensors_file"]
    config = run_copy / "config.yaml"
    if damage == "no-state":
        (ckpt / "state.json").unlink()
    elif damage == "state-json-garbage":
        (ckpt / "state.json").write_text("not json at all")
    elif damage == "state-json-truncated":
        (ckpt / "state.json").write_bytes((ckpt / "state.json").read_bytes()[:300])
    elif damage == "tensors-flipped":
        blob = bytearray(tensors.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        tensors.write_bytes(bytes(blob))
    elif damage == "tensors-truncated":
        tensors.write_bytes(tensors.read_bytes()[:1000])
    elif damage == "tensors-missing":
        tensors.unlink()
    elif damage == "config-garbage":
        config.write_text("model: {name: [\n")
    elif damage == "config-other-model":
        config.write_text(config.read_text().replace("name: lenet5\n", "name: lenet5_modern\n", 1))
    elif damage == "config-other-classes":
        config.write_text(config.read_text().replace("num_classes: 10", "num_classes: 5"))
    elif damage == "config-unknown-key":
        config.write_text(config.read_text().replace("  lr:", "  lrate:"))
    before = snapshot(run_copy)
    code = cli.main(["train", "--resume", str(run_copy), "--epochs", "3", "--no-progress"])
    one_line_error(code, capsys, *needles)
    assert snapshot(run_copy) == before


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--optim.lr=0.5"], ("optim.lr (0.002 -> 0.5)", "start a new run")),
        (["lenet5_modern"], ("model.name ('lenet5' -> 'lenet5_modern')",)),
        (["--data", "fashion-mnist"], ("data.name ('mnist' -> 'fashion-mnist')",)),
        (["--seed", "3"], ("train.seed (0 -> 3)",)),
        (["--model.kwargs.num_classes=5"], ("model.kwargs.num_classes (10 -> 5)",)),
        (["--overwrite"], ("--overwrite", "--resume")),
        (["--name", "other"], ("--name", "--resume")),
        (["--config", "x.yaml"], ("--config", "--resume")),
        (["--epochs", "0"], ("train.epochs=0", "fewer than the 1 epochs")),
        ([], ("already finished its 1 epochs", "--epochs N")),
        (["--epochs", "1"], ("already finished",)),
        (["--optim.lrate=1"], ("optim.lrate", "optim.lr")),
    ],
    ids=["optim", "model", "data", "seed", "kwargs", "overwrite", "name", "config", "fewer-epochs", "finished",
         "finished-same-epochs", "unknown-key"],
)
def test_resume_refuses_changes_that_would_alter_the_run(
    args: list[str], needles: tuple[str, ...], run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(run_copy)
    code = cli.main(["train", "--resume", str(run_copy), "--no-progress", *args])
    one_line_error(code, capsys, *needles)
    assert snapshot(run_copy) == before


def test_harmless_changes_are_allowed_on_resume(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """More epochs with other logging, checkpointing, device and thread settings: accepted, and recorded."""
    code = cli.main(["train", "--resume", str(run_copy), "--epochs", "2", "--no-progress", "--device", "cpu",
                     "--train.log_every=3", "--train.checkpoint_every=0", "--train.threads=1",
                     "--data.eval_batch_size=50"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"resumed {run_copy} from step 10" in out
    records = [json.loads(line) for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records].count("resume") == 1
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]
    assert [r["step"] for r in records if r["kind"] == "step" and r["step"] > 10] == [12, 15, 18]
    assert "log_every: 3" in (run_copy / "config.yaml").read_text()


# --- run directories -------------------------------------------------------------------------------------------------


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    code = cli.main(["train", *small_args(data_root, tmp_path, "precious"), "--overwrite"])
    one_line_error(code, capsys, str(precious), "holds no run", "even with --overwrite")
    assert (precious / "thesis.tex").read_text() == "years of work"
    (tmp_path / "afile").write_text("x")
    code = cli.main(["train", *small_args(data_root, tmp_path, "afile")])
    one_line_error(code, capsys, "is not a folder")
    assert (tmp_path / "afile").read_text() == "x"


def test_an_existing_run_points_to_resume_and_overwrite(
    finished_run: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(finished_run)
    code = cli.main(["train", *small_args(data_root, finished_run.parent, finished_run.name)])
    one_line_error(code, capsys, "already holds a run", f"--resume {finished_run}", "--overwrite")
    assert snapshot(finished_run) == before


# --- checkpoints used by eval and predict ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_checkpoint_for_another_number_of_classes_via_cli(
    command: str, run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta_path = run_copy / "checkpoints" / "best.json"
    meta = json.loads(meta_path.read_text())
    meta["model_kwargs"]["num_classes"] = 5
    meta_path.write_text(json.dumps(meta))
    args = [str(run_copy)] + (["whatever.png"] if command == "predict" else [])
    code = cli.main([command, *args])
    one_line_error(code, capsys, "does not fit model 'lenet5'", "(10, 84) in the file, (5, 84) in the model")


def test_eval_with_a_truncated_checkpoint(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = run_copy / "checkpoints" / "best.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    code = cli.main(["eval", str(run_copy)])
    one_line_error(code, capsys, str(weights), "corrupt or truncated")


# --- the pieces underneath -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_atomic_write_leaves_the_old_file_and_no_temporary(
    failure: BaseException, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "last.safetensors"
    target.write_bytes(b"the good old checkpoint")

    def broken_fsync(fd: int) -> None:
        raise failure

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(RunDirError if isinstance(failure, OSError) else KeyboardInterrupt) as info:
        atomic_write(target, b"half a new checkpoint")
    monkeypatch.undo()
    assert target.read_bytes() == b"the good old checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]
    if isinstance(failure, OSError):
        assert "No space left on device" in str(info.value) and str(target) in str(info.value)


def test_pack_round_trips_an_optimizer_state() -> None:
    """Integer parameter ids, tuples (Adam's betas), None and tensors all come back as they were."""
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    packed = pack(state, "optimizer", tensors)
    restored = unpack(json.loads(json.dumps(packed)), tensors)
    assert restored["param_groups"] == state["param_groups"]
    assert restored["state"].keys() == state["state"].keys()
    for pid, entry in state["state"].items():
        for k, v in entry.items():
            assert torch.equal(restored["state"][pid][k], v)


def test_the_state_is_plain_safetensors_and_json(finished_run: Path) -> None:
    """Nothing pickled: state.json is JSON, its tensors file is safetensors that any reader opens."""
    info = json.loads((finished_run / "checkpoints" / "state.json").read_text())
    tensors = load_file(finished_run / "checkpoints" / info["tensors_file"])
    assert info["step"] == 10 and info["epochs_done"] == 1 and "rng.torch" in tensors
    assert {k.split(".")[0] for k in tensors} == {"model", "optimizer", "loader", "rng"}


def test_scientific_notation_is_a_number() -> None:
    cfg = build_config(model="lenet5", data="mnist", overrides=["--optim.lr=1e-3", "--optim.weight_decay=5e-4"])
    assert cfg.optim.lr == 0.001 and cfg.optim.weight_decay == 0.0005


def test_the_gpu_style_deferred_check_names_the_first_bad_step() -> None:
    """On a GPU the loss is not read every step; the first bad step is kept on the device and reported at the next
    check. The same code runs here on CPU tensors with the per-step read switched off."""
    from milestones.train.loop import FiniteGuard

    guard = FiniteGuard(torch.device("cpu"), steps_per_epoch=5)
    guard.each_step = False
    for step, value in enumerate([1.0, 0.5, math.inf, math.nan, 0.2], start=11):
        guard.update(torch.tensor(value), step)  # no exception yet: nothing is read
    with pytest.raises(NonFiniteLossError, match=r"at step 13 \(epoch 3\)"):
        guard.check()
    fine = FiniteGuard(torch.device("cpu"), steps_per_epoch=5)
    fine.each_step = False
    fine.update(torch.tensor(1.0), 1)
    fine.check()
