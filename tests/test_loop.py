"""The training loop's seams (issue 12): TrainState round trips, callbacks that measure without changing the run,
and one writer per run directory."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from milestones.config import build_config
from milestones.errors import ConfigError, RunDirError
from milestones.train import (
    Activations,
    Callback,
    GradNorms,
    RunDir,
    StepMetrics,
    TrainState,
    grad_norms,
    record_activations,
    run_training,
)
from milestones.train.loop import logits_and_loss
from milestones.train.state import EpochTally


def tiny_cfg(data_root: Path, out: Path, name: str, *extra: str):
    return build_config(model="lenet5", data="mnist", overrides=[
        f"--data.root={data_root}", "--data.train_subset=96", "--data.test_subset=64", "--data.batch_size=16",
        "--train.epochs=2", "--train.deterministic=true", "--train.threads=1", "--train.log_every=1",
        "--train.progress=false", f"--out_dir={out}", f"--name={name}", *extra])


class _Loader:
    """A loader with a position, as TensorLoader has: enough for TrainState's round trip."""

    def __init__(self) -> None:
        self.position = torch.tensor([3, 1, 4])

    def state_dict(self) -> dict:
        return {"position": self.position.clone(), "epoch": 2}

    def load_state_dict(self, state: dict) -> None:
        self.position = state["position"].clone()

    def __len__(self) -> int:
        return 5


def _state(seed: int) -> TrainState:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    return TrainState(model, torch.optim.AdamW(model.parameters(), lr=0.1), _Loader(), torch.device("cpu"))


def test_train_state_round_trip_restores_everything_that_decides_the_next_step() -> None:
    a = _state(0)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    a.tally = EpochTally.zero(a.device)
    for _ in range(3):  # a few real steps, so the optimizer has moments
        a.optimizer.zero_grad()
        logits, loss = logits_and_loss(a.model, x, y, nn.functional.cross_entropy, 0.0)
        loss.backward()
        a.optimizer.step()
        a.tally.add(loss, logits, y)
        a.step += 1
    a.loader.position = torch.tensor([9, 9, 9])
    tensors, info = a.state_dict()
    expected_draw = torch.rand(3)  # what the global RNG gives next after the save

    b = _state(1)
    assert not torch.equal(a.model[0].weight, b.model[0].weight)
    tensors = {k: v.clone() for k, v in tensors.items()}  # as from a file: nothing shared with ``a``
    b.load_state_dict((tensors, info), model_name="mlp")
    assert torch.equal(torch.rand(3), expected_draw)
    assert b.step == 3 and b.tally is not None and b.tally.batches == 3 and b.tally.seen == 48
    assert torch.equal(b.tally.loss_sum, a.tally.loss_sum)
    assert torch.equal(b.loader.position, torch.tensor([9, 9, 9]))
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
        sa, sb = a.optimizer.state[pa], b.optimizer.state[pb]
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    # the next step is the same in both
    for s in (a, b):
        s.optimizer.zero_grad()
        nn.functional.cross_entropy(s.model(x), y).backward()
        s.optimizer.step()
    assert all(torch.equal(pa, pb) for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True))


def test_grad_norms_match_a_float64_recompute() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    model(torch.randn(2, 1, 8, 8)).square().sum().backward()
    norms = grad_norms(model)
    grads = {n: p.grad.double() for n, p in model.named_parameters()}
    for name, g in grads.items():
        assert math.isclose(norms[name], float(g.norm()), rel_tol=1e-5)
    total = float(torch.cat([g.flatten() for g in grads.values()]).norm())
    assert math.isclose(norms["total"], total, rel_tol=1e-5)


def test_record_activations_captures_outputs_and_removes_its_hooks_even_after_an_error() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(5, 4)
    with record_activations(model, ["1"]) as acts:
        model(x)
    assert torch.equal(acts["1"], torch.relu(model[0](x)))
    with pytest.raises(RuntimeError), record_activations(model, ["0", "2"]):
        raise RuntimeError("boom")
    assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match="no submodule 'fc9'"), record_activations(model, ["fc9"]):
        pass


def test_callbacks_measure_without_changing_the_run(data_root: Path, tmp_path: Path) -> None:
    """Per-step loss and error, per-layer gradient norms and activation statistics come out for the steps asked for,
    agree with what the run logged, and leave the trained weights bitwise the same as a run without them."""
    plain = run_training(tiny_cfg(data_root, tmp_path, "plain"))
    metrics, norms = StepMetrics(), GradNorms(every=2, only=["c1."])
    acts = Activations(["c1", "s2"], every=3)
    seen: list[str] = []

    class Order(Callback):
        def on_fit_start(self, state, total_steps):
            seen.append(f"start {total_steps}")

        def on_epoch_end(self, record, improved, state):
            seen.append(f"epoch {record['epoch']} {improved == (state.history.best_epoch == record['epoch'])}")

        def on_fit_end(self, state):
            seen.append("end")

    measured = run_training(tiny_cfg(data_root, tmp_path, "measured"), callbacks=[metrics, norms, acts, Order()])
    ours, theirs = (load_file(r.run.path / "checkpoints/last.safetensors") for r in (measured, plain))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)

    steps = [r for r in measured.run.records("step")]
    assert [r["step"] for r in metrics.records] == [r["step"] for r in steps] == list(range(1, 13))
    assert all(math.isclose(m["loss"], r["loss"], rel_tol=1e-6) for m, r in zip(metrics.records, steps, strict=True))
    assert all(0.0 <= m["error"] <= 1.0 for m in metrics.records)
    assert [r["step"] for r in norms.records] == list(range(2, 13, 2))
    assert set(norms.records[0]) == {"kind", "step", "c1.weight", "c1.bias", "total"}
    assert all(r["total"] >= r["c1.weight"] > 0 for r in norms.records)
    assert [r["step"] for r in acts.records] == [3, 6, 9, 12]
    assert set(acts.records[0]) == {"kind", "step", "c1", "s2"} and acts.records[0]["c1"]["std"] > 0
    for c in (metrics, norms, acts):  # the run directory holds them too, for analyses that read runs from disk
        assert measured.run.records(c.kind) == c.records
    assert seen == ["start 12", "epoch 1 True", "epoch 2 True", "end"]
    assert not any(m._forward_hooks for m in measured.model.modules())


def test_a_run_directory_has_one_writer(data_root: Path, tmp_path: Path) -> None:
    """While a process holds a run (here: this one), another cannot resume it, replace it or write it: one line,
    exit 2. Once the holder lets go, resuming works."""
    run_training(tiny_cfg(data_root, tmp_path, "held", "--train.epochs=1"))
    path = tmp_path / "held"
    holder = RunDir(path).lock()
    try:
        with pytest.raises(RunDirError, match="in use by another process"):
            RunDir(path).lock()
        base = [sys.executable, "-m", "milestones.cli", "train"]
        for args in (["--resume", str(path), "--epochs", "2"],
                     ["lenet5", "--data", "mnist", "--data-root", str(data_root), "--out", str(tmp_path), "--name",
                      "held", "--overwrite", "--data.train_subset=96", "--data.batch_size=32", "--epochs", "1"]):
            proc = subprocess.run([*base, *args, "--no-progress"], capture_output=True, text=True, timeout=120)
            assert proc.returncode == 2, proc.stderr
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and "in use by another process" in lines[0] and "Traceback" not in proc.stderr
        assert (path / "summary.json").is_file()  # nothing was replaced
    finally:
        holder.unlock()
    resumed = run_training(tiny_cfg(data_root, tmp_path, "held", "--train.epochs=2"), resume=path)
    assert resumed.resumed_from == 6 and len(resumed.history.epochs) == 2


def digits_cfg(out: Path, name: str, *extra: str):
    """LeNet-5 on 480 digits (no data root needed), 30 steps of 16 an epoch: it learns within the first epoch."""
    return build_config(model="lenet5", data="digits", overrides=[
        "--data.train_subset=480", "--data.batch_size=16", "--data.test_subset=100", "--schedule.name=constant",
        "--optim.lr=0.003", "--train.loss=ce", "--train.epochs=2", "--train.deterministic=true", "--train.threads=1",
        "--train.progress=false", f"--out_dir={out}", f"--name={name}", *extra])


class BatchErrors(Callback):
    """Each step's batch training error, recomputed from the step's logits and targets."""

    def __init__(self) -> None:
        self.errors: list[float] = []

    def on_step(self, info) -> None:
        hard = info.targets if info.targets.ndim == 1 else info.targets.argmax(1)
        self.errors.append(int((info.logits.argmax(1) != hard).sum()) / len(hard))


def test_validation_split_is_evaluated_after_each_epoch_and_summarised(tmp_path: Path) -> None:
    """With ``data.val_split`` every epoch record carries ``val_loss``/``val_acc`` of the held-out images (the last
    one equals evaluating the final weights on them), and summary.json the final and best of them."""
    from milestones.data import make_loaders
    from milestones.train.loop import evaluate

    result = run_training(digits_cfg(tmp_path, "val", "--data.val_split=200", "--train.precision=fp32"))
    records = result.run.records("epoch")
    assert [r["epoch"] for r in records] == [1, 2] and all({"val_loss", "val_acc"} <= r.keys() for r in records)
    data = digits_cfg(tmp_path, "x", "--data.val_split=200", f"--data.channels_last={result.summary['channels_last']}")
    loaders = make_loaders(data.data, "cpu", seed=0)  # as the run made them
    assert loaders.val.num_samples == 200
    again = evaluate(result.model, loaders.val)
    assert again["acc"] == records[-1]["val_acc"] and math.isclose(again["loss"], records[-1]["val_loss"],
                                                                   rel_tol=1e-5)
    summary = json.loads((result.run.path / "summary.json").read_text())
    assert summary["final_val_acc"] == records[-1]["val_acc"]
    assert summary["best_val_acc"] == max(r["val_acc"] for r in records) > 0.5
    assert summary["stopped"] is None  # it ran its schedule to the end
    plain = run_training(digits_cfg(tmp_path, "plain"))
    assert "val_acc" not in plain.run.records("epoch")[-1] and "best_val_acc" not in plain.summary


def test_stop_at_train_error_ends_the_epoch_early_and_the_run_counts_as_finished(tmp_path: Path) -> None:
    """The run stops at the first step where the mean of the last ``stop_window`` batch errors (full windows only)
    is at most ``stop_at_train_error``: that partial epoch is evaluated, recorded and saved, summary.json says why,
    and neither --resume (even with more epochs) nor ``milestones compare`` trains it further."""
    from milestones import compare

    errors = BatchErrors()
    cfg = digits_cfg(tmp_path, "stop", "--train.stop_at_train_error=0.25", "--train.stop_window=5")
    result = run_training(cfg, callbacks=[errors])
    means = {i: sum(errors.errors[i - 5:i]) / 5 for i in range(5, len(errors.errors) + 1)}
    expected = min(i for i, m in means.items() if m <= 0.25)
    assert expected == len(errors.errors) and 5 < expected < 30  # no step after it, and mid-epoch 1
    assert all(m > 0.25 for i, m in means.items() if i < expected)
    (record,) = result.run.records("epoch")
    assert record["step"] == expected and record["stop_reason"] == "train_error"
    assert record["train_error_window"] == means[expected]
    summary = json.loads((result.run.path / "summary.json").read_text())
    assert summary["stopped"] == {"reason": "train_error", "step": expected, "train_error_window": means[expected]}
    assert summary["epochs"] == 1 and result.history.stopped_at_step == expected
    state = json.loads((result.run.path / "checkpoints/state.json").read_text())
    assert state["step"] == expected and state["history"]["stop_reason"] == "train_error"
    with pytest.raises(RunDirError, match="already finished: it stopped at step"):
        run_training(digits_cfg(tmp_path, "stop", "--train.stop_at_train_error=0.25", "--train.stop_window=5",
                                "--train.epochs=3"), resume=result.run.path)
    planned = compare.Planned(None, 0, cfg, result.run.path)
    assert compare.status(planned) == "finished"
    (result.run.path / "summary.json").unlink()  # stopped while summarising: its state cannot go on, train anew
    assert compare.status(planned) == "new"


@pytest.mark.parametrize(("override", "words"), [
    ("--train.stop_at_train_error=0", "train.stop_at_train_error must be a fraction between 0 and 1"),
    ("--train.stop_at_train_error=1", "train.stop_at_train_error must be a fraction between 0 and 1"),
    ("--train.stop_window=0", "train.stop_window must be a number of steps, 1 or more"),
])
def test_stop_settings_are_checked_before_a_run_directory_exists(tmp_path: Path, override: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        run_training(digits_cfg(tmp_path, "bad", "--train.stop_at_train_error=0.2", override))
    assert "\n" not in str(info.value) and not (tmp_path / "bad").exists()


def test_trailing_error_counts_full_windows_and_the_larger_share_of_soft_labels() -> None:
    from milestones.train.loop import _trailing_error

    state = _state(0)
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [2.0, 0.0, 0.0]])
    hard = torch.tensor([0, 1, 0, 1])  # two of four wrong
    soft = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0]), 3) * 0.7 + 0.1  # mixed: argmax 0, 1, 2, 0
    assert _trailing_error(state, logits, hard, 3) is None
    assert _trailing_error(state, logits, soft, 3) is None  # none wrong
    assert _trailing_error(state, logits, hard, 3) == (0.5 + 0.0 + 0.5) / 3
    assert _trailing_error(state, logits, soft, 3) == (0.0 + 0.5 + 0.0) / 3  # the oldest left the window
    assert state.error_window == [0.0, 0.5, 0.0]
