"""Exact resume (issue 7): a run killed with SIGKILL, stopped with SIGINT or SIGTERM, or stopped by a full disk
continues from its saved training state with ``milestones train --resume RUN_DIR`` and, in deterministic mode, ends
bitwise identical to a run that was never interrupted: every tensor of the final weights and of the final training
state (optimizer moments, RNG and loader state), and every logged loss.

The interrupted runs are real processes (``python -m milestones.cli train``) stopped by real signals once their files
show they are mid-epoch; the reference and the resumes run in this process. All CLI runs are LeNet-5 on 320 MNIST
training images, batch 16, two epochs of 20 steps (the library-path EMA test: 160 images, two epochs of 10).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from milestones import cli
from milestones.train.checkpoint import load_training_state

STEPS_PER_EPOCH = 20
TOTAL_STEPS = 2 * STEPS_PER_EPOCH
CHECKPOINT_EVERY = 3
TIMING = {"train_seconds", "img_per_s", "elapsed"}  # the only fields allowed to differ between runs


def train_args(data_root: Path, out: Path, name: str, *extra: str) -> list[str]:
    return ["lenet5", "--data", "mnist", "--data-root", str(data_root), "--data.train_subset=320",
            "--data.test_subset=200", "--data.batch_size=16", "--epochs", "2", "--train.deterministic=true",
            "--train.threads=1", "--train.log_every=1", f"--train.checkpoint_every={CHECKPOINT_EVERY}",
            "--no-progress", "--out", str(out), "--name", name, *extra]


@pytest.fixture(scope="module")
def reference(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run, never interrupted."""
    out = tmp_path_factory.mktemp("resume_ref")
    assert cli.main(["train", *train_args(data_root, out, "ref")]) == 0
    return out / "ref"


def spawn(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "milestones.cli", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def saved_step(run: Path) -> int:
    """The step of the committed training state (state.json is replaced atomically, so any read is whole)."""
    try:
        return json.loads((run / "checkpoints" / "state.json").read_text())["step"]
    except FileNotFoundError:
        return -1


def logged_step(run: Path) -> int:
    """The last step logged to metrics.jsonl (complete lines only: the writer may be mid-line)."""
    try:
        text = (run / "metrics.jsonl").read_text()
    except FileNotFoundError:
        return -1
    steps = [json.loads(line)["step"] for line in text.splitlines(keepends=True) if line.endswith("\n")]
    return max(steps, default=-1)


def wait_until(proc: subprocess.Popen, progress, at_least: int, timeout: float = 120.0) -> int:
    """Poll (10 ms) until ``progress()`` reaches ``at_least``; the process must still be running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (status {proc.returncode}) before step {at_least}: {err[-2000:]}")
        step = progress()
        if step >= at_least:
            return step
        time.sleep(0.01)
    proc.kill()
    proc.communicate()
    pytest.fail(f"the run did not reach step {at_least} within {timeout} s")


def assert_same_run(run: Path, reference: Path) -> None:
    """Bitwise-identical final weights and training state, and the same metrics apart from timings."""
    ours, theirs = (load_file(p / "checkpoints/last.safetensors") for p in (run, reference))
    assert ours.keys() == theirs.keys()
    for k in theirs:
        assert torch.equal(ours[k], theirs[k]), f"weights differ in {k}"
    (state, info), (ref_state, ref_info) = (load_training_state(p / "checkpoints") for p in (run, reference))
    assert state.keys() == ref_state.keys()
    for k in ref_state:
        assert torch.equal(state[k], ref_state[k]), f"training state differs in {k}"
    assert info["step"] == ref_info["step"] == TOTAL_STEPS and info["epochs_done"] == 2

    def records(path: Path) -> list[dict]:
        rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in TIMING} for r in rows if r["kind"] != "resume"]

    assert records(run) == records(reference)  # no step logged twice, none missing, the same losses
    assert sum(json.loads(line)["kind"] == "resume" for line in (run / "metrics.jsonl").read_text().splitlines()) == 1


def resume(run: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = cli.main(["train", "--resume", str(run), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(
    reference: Path, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "killed"
    proc = spawn(train_args(data_root, tmp_path, "killed"))
    wait_until(proc, lambda: saved_step(run), 2 * CHECKPOINT_EVERY + 1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    state = json.loads((run / "checkpoints/state.json").read_text())
    assert state["batch"] > 0 and state["step"] % CHECKPOINT_EVERY == 0  # a mid-epoch state
    assert not (run / "summary.json").exists()

    (run / "checkpoints" / ".state.b.safetensors.k1ll3d.tmp").write_bytes(b"half")  # as a kill mid-write leaves
    out = resume(run, capsys)
    assert f"resumed {run} from step {state['step']}" in out
    assert_same_run(run, reference)
    assert not list(run.rglob("*.tmp"))


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigint_sigterm_finish_the_step_save_and_say_how_to_resume(
    sig: signal.Signals, status: int, reference: Path, data_root: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No periodic checkpoints here: the state found afterwards can only be the one the signal handler saved."""
    run = tmp_path / "stopped"
    proc = spawn(train_args(data_root, tmp_path, "stopped", "--train.checkpoint_every=0"))
    wait_until(proc, lambda: logged_step(run), 5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    state = json.loads((run / "checkpoints/state.json").read_text())
    step = state["step"]
    assert 5 <= step < STEPS_PER_EPOCH and state["batch"] == step  # stopped in epoch 1, right after a step
    assert f"stopped by {sig.name} after step {step} (epoch 1/2" in lines[0]
    assert f"milestones train --resume {run}" in lines[0]
    assert logged_step(run) == step  # the step it was in was finished and logged, no more

    resume(run, capsys)
    assert_same_run(run, reference)


def _fail_fsync_of(monkeypatch: pytest.MonkeyPatch, prefix: str, nth: int) -> list[str]:
    """Make fsync fail with ENOSPC for the ``nth`` temporary file whose name starts with ``prefix`` (how a full disk
    shows up when the page cache is flushed). Returns the names of the files it failed."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to name the file being synced")
    real, seen, failed = os.fsync, [0], []

    def fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
            if name.startswith(prefix):
                seen[0] += 1
                if seen[0] == nth:
                    failed.append(name)
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return failed


@pytest.mark.parametrize(
    ("victim", "nth", "kept_step"),
    [
        (".state.a.safetensors.", 2, 2 * CHECKPOINT_EVERY),  # the 3rd state's tensors (slots alternate a, b, a)
        (".state.json.", 3, 2 * CHECKPOINT_EVERY),  # the 3rd state's commit point, after its tensors were written
        (".last.safetensors.", 2, TOTAL_STEPS - TOTAL_STEPS % CHECKPOINT_EVERY),  # epoch 2's weights
    ],
    ids=["state-tensors", "state-json", "last-weights"],
)
def test_disk_full_stops_with_one_line_and_keeps_the_previous_checkpoint(
    victim: str, nth: int, kept_step: int, reference: Path, data_root: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    failed = _fail_fsync_of(monkeypatch, victim, nth)
    code = cli.main(["train", *train_args(data_root, tmp_path, "full")])
    _, err = capsys.readouterr()
    monkeypatch.undo()
    run = tmp_path / "full"
    assert failed and code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert "No space left on device" in lines[0] and f"milestones train --resume {run}" in lines[0]
    assert f"after step {kept_step} is intact" in lines[0]

    # The previous checkpoint is whole: its checksum verifies, and nothing half-written is left beside it.
    _, info = load_training_state(run / "checkpoints")
    assert info["step"] == kept_step
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("state")) == sorted(
        ["state.json", info["tensors_file"]])
    assert not [p for p in run.rglob("*.tmp")]
    if victim.startswith(".last"):
        last = json.loads((run / "checkpoints/last.json").read_text())
        assert last["epoch"] == 1  # epoch 1's weights survive
        from milestones.train.checkpoint import restore_model

        restore_model(run, prefer="last")

    # ... and good enough to finish the run exactly as if the disk had never filled up.
    resume(run, capsys)
    assert_same_run(run, reference)


def test_finished_run_extended_with_more_epochs(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A finished run resumed with more epochs continues from its end-of-run state (the schedule is recomputed)."""
    run = tmp_path / "more"
    shutil.copytree(reference, run)
    code = cli.main(["train", "--resume", str(run), "--epochs", "3", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs if r["kind"] == "epoch"] == [1, 2, 3]
    assert json.loads((run / "summary.json").read_text())["epochs"] == 3
    assert load_training_state(run / "checkpoints")[1]["step"] == 3 * STEPS_PER_EPOCH
    assert "epochs: 3" in (run / "config.yaml").read_text()


def test_ema_and_an_in_process_stop_resume_exactly(data_root: Path, tmp_path: Path) -> None:
    """The library path: run_training stopped by SIGTERM from inside a step, then run_training(resume=...). With an
    EMA of the weights, which is saved, restored and checkpointed too."""
    from milestones.config import build_config
    from milestones.train.callbacks import Callback, StepInfo
    from milestones.train.loop import TrainingInterrupted
    from milestones.train.run import run_training

    def cfg(name: str):
        return build_config(model="lenet5", data="mnist", overrides=[
            f"--data.root={data_root}", "--data.train_subset=160", "--data.test_subset=100", "--data.batch_size=16",
            "--train.epochs=2", "--train.deterministic=true", "--train.threads=1", "--train.ema_decay=0.9",
            "--train.checkpoint_every=4", "--train.progress=false", f"--out_dir={tmp_path}", f"--name={name}"])

    class StopAt13(Callback):
        def on_step(self, info: StepInfo) -> None:
            if info.step == 13:
                handler = signal.getsignal(signal.SIGTERM)
                assert handler not in (signal.SIG_DFL, None), "no SIGTERM handler: the signal would end pytest"
                os.kill(os.getpid(), signal.SIGTERM)

    reference = run_training(cfg("ref"))
    with pytest.raises(TrainingInterrupted) as info:
        run_training(cfg("cut"), callbacks=[StopAt13()])
    assert info.value.step == 13 and info.value.exit_code == 143 and "batch 3/10" in str(info.value)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers are put back
    resumed = run_training(resume=tmp_path / "cut")
    assert resumed.resumed_from == 13

    for tag in ("last", "ema"):
        ours, theirs = (load_file(p / f"checkpoints/{tag}.safetensors") for p in (resumed.run.path, reference.run.path))
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), tag
    last, ema = (load_file(resumed.run.path / f"checkpoints/{tag}.safetensors") for tag in ("last", "ema"))
    assert last.keys() == ema.keys() and not all(torch.equal(last[k], ema[k]) for k in last)  # a real average
    state = load_training_state(resumed.run.path / "checkpoints")[0]
    assert int(state["ema.n_averaged"]) == 20  # one update per step
    assert resumed.history.epochs[-1]["ema_test_acc"] == reference.history.epochs[-1]["ema_test_acc"]


def _digits_cfg(out: Path, name: str, *extra: str):
    """LeNet-5 on 480 digits (no data root needed): 30 steps of 16 an epoch."""
    from milestones.config import build_config

    return build_config(model="lenet5", data="digits", overrides=[
        "--data.train_subset=480", "--data.batch_size=16", "--data.test_subset=100", "--schedule.name=constant",
        "--optim.lr=0.003", "--train.loss=ce", "--train.epochs=2", "--train.deterministic=true", "--train.threads=1",
        "--train.progress=false", f"--out_dir={out}", f"--name={name}", *extra])


def test_train_error_window_survives_a_resume_bit_exactly(tmp_path: Path) -> None:
    """A run stopped by SIGTERM three steps before ``train.stop_at_train_error`` would stop it resumes with the
    window of batch errors it had: it stops at the same step, with the same trailing mean, bit for bit, and the same
    weights as the run never interrupted (an empty window after the resume could not stop it before 5 more steps)."""
    from milestones.train.callbacks import Callback, StepInfo
    from milestones.train.loop import TrainingInterrupted
    from milestones.train.run import run_training

    stop = ("--train.stop_at_train_error=0.25", "--train.stop_window=5")
    reference = run_training(_digits_cfg(tmp_path, "ref", *stop))
    at = reference.history.stopped_at_step
    assert at is not None and 8 <= at < 30
    cut = at - 3

    class StopAt(Callback):
        def on_step(self, info: StepInfo) -> None:
            if info.step == cut:
                os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted):
        run_training(_digits_cfg(tmp_path, "cut", *stop), callbacks=[StopAt()])
    info = load_training_state(tmp_path / "cut" / "checkpoints")[1]
    assert info["step"] == cut and len(info["error_window"]) == 5
    resumed = run_training(resume=tmp_path / "cut")
    assert resumed.resumed_from == cut
    assert resumed.history.stopped_at_step == at
    assert resumed.history.train_error_window == reference.history.train_error_window  # exact, not approx
    assert resumed.summary["stopped"] == reference.summary["stopped"]
    ours, theirs = (load_file(r.run.path / "checkpoints/last.safetensors") for r in (resumed, reference))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_a_resumed_run_keeps_how_it_computes_and_records_each_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bf16 run resumed where precision and channels_last would resolve otherwise (here: resolvers patched to say
    fp32 and NCHW) still trains in bf16 with channels_last, says the choices were kept, and summary.json lists both
    parts of the run with their machine. A training state from before choices were saved resolves them anew."""
    from torch import nn

    from milestones.machine import cpu_name
    from milestones.precision import Choice, native_bf16
    from milestones.train import run as run_mod
    from milestones.train.callbacks import Callback

    class ConvOutputs(Callback):
        """Dtype and layout of the first convolution's output (6 channels: NHWC shows) in every training step."""

        def __init__(self) -> None:
            self.seen: set[tuple[torch.dtype, bool]] = set()

        def on_fit_start(self, state, total_steps) -> None:
            conv = next(m for m in state.model.modules() if isinstance(m, nn.Conv2d))
            self.handle = conv.register_forward_hook(self.hook)

        def hook(self, module, inputs, output) -> None:
            if module.training:
                self.seen.add((output.dtype, output.is_contiguous(memory_format=torch.channels_last)))

        def on_fit_end(self, state) -> None:
            self.handle.remove()

    first = ConvOutputs()
    cpu_bf16 = ("--train.device=cpu", "--train.precision=bf16", "--data.channels_last=true")
    run_mod.run_training(_digits_cfg(tmp_path, "bf16", *cpu_bf16, "--train.epochs=1"), callbacks=[first])
    assert first.seen == {(torch.bfloat16, True)}
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "bf16", old)

    monkeypatch.setattr(run_mod, "resolve_precision", lambda *a, **k: Choice("fp32", "patched"))
    monkeypatch.setattr(run_mod, "resolve_channels_last", lambda *a, **k: Choice(False, "patched"))
    resumed = ConvOutputs()
    more = _digits_cfg(tmp_path, "bf16", *cpu_bf16, "--train.epochs=2")
    result = run_mod.run_training(more, resume=tmp_path / "bf16", callbacks=[resumed])
    assert resumed.seen == {(torch.bfloat16, True)}
    summary = json.loads((result.run.path / "summary.json").read_text())
    assert summary["precision"] == "bf16" and summary["channels_last"] is True
    for key in ("precision", "channels_last", "compile"):
        assert summary["run_settings"][key]["reason"].endswith("; kept from the run's start")
        assert summary["run_settings"][key]["reason"].count("kept") == 1
    where = {"processor": cpu_name(), "bf16_flags": native_bf16(), "device": "cpu"}
    assert summary["segments"] == [{"from_step": 0, **where}, {"from_step": 30, **where}]
    assert load_training_state(result.run.path / "checkpoints")[1]["segments"] == summary["segments"]

    state = json.loads((old / "checkpoints" / "state.json").read_text())
    del state["choices"], state["segments"]  # as saved before they were recorded
    (old / "checkpoints" / "state.json").write_text(json.dumps(state))
    legacy = ConvOutputs()
    result = run_mod.run_training(more, resume=old, callbacks=[legacy])
    assert legacy.seen == {(torch.float32, False)} and result.summary["precision"] == "fp32"
    assert result.summary["segments"] == [{"from_step": 30, **where}]
