"""Data parallelism with torchrun (issue 15), with real processes: gloo on the CPU, one thread each.

- 2 ranks give the weights of 1 process: in float64 through the library's pieces (``tests/ddp_worker.py``: sharded
  loader with flip, crop and mixup, DDP, SyncBatchNorm) to ~1e-9 of the weights' size, and end to end through
  ``milestones train`` in float32 for lenet5_modern (a well-conditioned net) to 1e-3 of the weights' size.
- Two torchrun launchers with ``--nnodes 2`` meet on 127.0.0.1 (c10d) and train one run, written by rank 0 alone.
- A rank killed with SIGKILL stops the job within seconds with a clear line; ``--resume`` with the same world size
  ends with exactly the weights of the uninterrupted two-node run (same ranks, same reduction order).
- Bad input is one line and exit 2 before anything starts, and leaves the run's files as they were.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import ddp_worker
import pytest
import torch
from parity import relative_error
from safetensors.torch import load_file

from milestones import cli

TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
       "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
EPOCHS = 12


def args(out: Path, name: str, *extra: str) -> list[str]:
    """lenet5_modern on 128 digits, global batch 32: 4 steps an epoch, a saved state every 3 steps."""
    return ["lenet5_modern", "--data", "digits", "--data.train_subset=128", "--data.test_subset=64",
            "--data.batch_size=32", "--data.flip=true", "--data.crop_padding=2", "--optim.lr=0.02",
            "--epochs", str(EPOCHS), "--train.deterministic=true", "--train.log_every=1",
            "--train.checkpoint_every=3", "--no-progress", "--out", str(out), "--name", name, *extra]


def launch(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "milestones", "train", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / "last.safetensors")


def scaled_error(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> float:
    """Largest difference over all floating tensors, relative to the largest weight (BN biases near 0 would make a
    per-tensor ratio measure rounding alone)."""
    keys = [k for k in expected if expected[k].is_floating_point()]
    scale = max(float(expected[k].abs().max()) for k in keys)
    return max(float((actual[k].double() - expected[k].double()).abs().max()) for k in keys) / scale


def test_two_ranks_match_one_process_float64(tmp_path: Path) -> None:
    """lenet5_modern (mixup: mixed over the global batch) and resnet20 (SyncBatchNorm), 3 SGD steps each."""
    single, multi = tmp_path / "single", tmp_path / "multi"
    single.mkdir(), multi.mkdir()
    worker = str(TESTS / "ddp_worker.py")
    ran = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          worker, str(multi)], env=ENV, capture_output=True, text=True, timeout=180)
    assert ran.returncode == 0, ran.stderr[-2000:]
    for name in ddp_worker.RUNS:
        ddp_worker.train(name, single, single=True)
        a, b = torch.load(multi / f"{name}.pt"), torch.load(single / f"{name}.pt")
        assert a.keys() == b.keys()
        moved = max(relative_error(a[k], b[k]) for k in b if b[k].is_floating_point())
        assert moved < 1e-9, f"{name}: 2 ranks differ from 1 process by {moved:.2e} of the weights' size"


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two launchers, one process each, ``--nnodes 2`` on 127.0.0.1: one run."""
    out = tmp_path_factory.mktemp("ddp")
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [launch(args(out, "nodes", "--nproc", "1", "--nnodes", "2", "--rdzv-endpoint", endpoint,
                         "--rdzv-id", "test")) for _ in range(2)]
    for p in nodes:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
    return out / "nodes"


def test_two_nodes_train_one_run_written_by_rank_zero(two_nodes: Path) -> None:
    files = sorted(p.name for p in two_nodes.iterdir())
    assert files == [".lock", "checkpoints", "config.yaml", "curves.png", "metrics.jsonl", "summary.json"]
    epochs = [line for line in (two_nodes / "metrics.jsonl").read_text().splitlines() if '"epoch", "epoch"' in line]
    assert len(epochs) == EPOCHS  # one writer: each record once
    assert (two_nodes / "checkpoints" / "state.json").read_text().count('"world_size": 2') == 1
    summary = json.loads((two_nodes / "summary.json").read_text())  # issue 28: it says it ran on 2 processes
    assert summary["world_size"] == 2 and summary["img_per_s_scope"] == "global"


def test_two_nodes_match_one_process(two_nodes: Path, tmp_path: Path) -> None:
    assert cli.main(["train", *args(tmp_path, "one")]) == 0
    assert json.loads((tmp_path / "one" / "summary.json").read_text())["world_size"] == 1
    err = scaled_error(weights(two_nodes), weights(tmp_path / "one"))
    assert err < 1e-3, f"2 ranks differ from 1 process by {err:.2e} of the largest weight"


def rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the worker with ``RANK=rank`` among the launcher's children."""
    for child in Path(f"/proc/{launcher}/task").glob("*/children"):
        for pid in child.read_text().split():
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in env:
                return int(pid)
    return None


def saved_step(run: Path) -> int:
    try:
        return json.loads((run / "checkpoints" / "state.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return 0


def test_sigkill_of_a_rank_stops_the_job_and_resume_continues_exactly(two_nodes: Path, tmp_path: Path) -> None:
    run = tmp_path / "killed"
    job = launch(args(tmp_path, "killed", "--nproc", "2"))
    deadline = time.monotonic() + 180
    while saved_step(run) < 3 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = rank_pid(job.pid, 1)
    assert victim is not None and job.poll() is None, "the job ended before a rank could be killed"
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    _, err = job.communicate(timeout=60)
    assert time.monotonic() - killed_at < 30, "the job took too long to stop"
    assert job.returncode != 0
    assert "another process of this 2-process run stopped" in err or "Signals.SIGKILL" in err, err[-2000:]
    step = saved_step(run)
    assert 3 <= step < 4 * EPOCHS

    resumed = launch(["--resume", str(run), "--nproc", "2", "--no-progress"])
    out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err[-2000:]
    assert f"from step {step}" in out
    mine, ref = weights(run), weights(two_nodes)
    assert all(torch.equal(mine[k], ref[k]) for k in ref), "the resumed run ended with other weights"


def test_bad_input_is_one_line_and_exit_2(two_nodes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = two_nodes / "checkpoints" / "state.json"
    before = state.read_bytes()
    cases = {
        "--nproc 4096 is more than": ["train", *args(two_nodes.parent, "x", "--nproc", "4096")],
        "needs --rdzv-endpoint": ["train", *args(two_nodes.parent, "x", "--nproc", "1", "--nnodes", "2")],
        "was trained by 2 process(es), not 1": ["train", "--resume", str(two_nodes), "--nproc", "1", "--epochs",
                                                str(EPOCHS + 1)],
        "was trained by 2 process(es) and this run has 1": ["train", "--resume", str(two_nodes), "--epochs",
                                                            str(EPOCHS + 1), "--no-progress"],
        "does not split into 3 equal parts": ["train", *args(two_nodes.parent, "x", "--nproc", "3")],
    }
    for expected, argv in cases.items():
        if "--nproc 3" in " ".join(argv) and (os.cpu_count() or 1) < 3:
            argv = [a if a != "3" else "1" for a in argv] + ["--nnodes", "3", "--rdzv-endpoint", "127.0.0.1:1"]
            expected = "does not split into 3 equal parts"
        assert cli.main(argv) == 2, expected
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    assert state.read_bytes() == before
    assert not (two_nodes.parent / "x").exists()


@pytest.mark.parametrize("options", [dict(flip=True, crop_padding=2), dict(flip=True, cutmix_alpha=1.0)])
def test_shards_put_together_are_the_global_batches(options: dict) -> None:
    """In one process: the 3 ranks' parts of every batch, stacked in rank order, are the unsharded loader's batch,
    augmentation draws included (cutmix pastes across the global batch); a last evaluation batch splits too."""
    from milestones.data import get_dataset
    from milestones.data.batch_augment import BatchAugment
    from milestones.data.loader import TensorLoader, subset

    split = subset(get_dataset("digits", "train"), 100, seed=0)
    aug = BatchAugment.for_spec(split.spec, **options)

    def loader(rank: int, world: int, train: bool = True) -> TensorLoader:
        return TensorLoader(split, batch_size=24 if train else 40, train=train, augment=aug, seed=3).shard(rank, world)

    for train in (True, False):
        whole = list(loader(0, 1, train))
        parts = [list(loader(r, 3, train)) for r in range(3)]
        assert all(len(p) == len(whole) for p in parts)
        for i, (x, y) in enumerate(whole):
            assert torch.equal(torch.cat([p[i][0] for p in parts]), x)
            assert torch.equal(torch.cat([p[i][1] for p in parts]), y)
