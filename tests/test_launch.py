"""``milestones train --nproc N`` in the library (train/launch.py): the checks made once before torchrun starts, and
the command it runs. No process is started here; tests/test_distributed.py launches real ones."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from milestones.config import build_config
from milestones.errors import CheckpointError, ConfigError
from milestones.train.launch import LAUNCH_OPTIONS, check_resume_world, torchrun_command, without_launch_options


def cfg(*overrides: str):
    return build_config(model="lenet5", data="digits", overrides=["--train.device=cpu", "--data.batch_size=64",
                                                                  *overrides])


def test_launch_options_are_removed_with_their_values() -> None:
    argv = ["train", "lenet5", "--nproc", "2", "--data", "digits", "--nnodes=1", "--rdzv-endpoint", "h:1",
            "--rdzv-id=job", "--node-rank", "0", "--epochs", "3"]
    assert without_launch_options(argv) == ["lenet5", "--data", "digits", "--epochs", "3"]
    assert without_launch_options(["--resume", "runs/x", "--nproc", "2"]) == ["--resume", "runs/x"]
    assert set(LAUNCH_OPTIONS) == {"--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint", "--rdzv-id"}


def test_the_command_is_torchrun_running_the_same_training() -> None:
    argv = ["train", "lenet5", "--data", "digits", "--nproc", "1"]
    assert torchrun_command(cfg(), argv, nproc=1) == [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "--standalone",
        "-m", "milestones", "train", "lenet5", "--data", "digits"]
    nodes = torchrun_command(cfg(), argv, nproc=1, nnodes=2, rdzv_endpoint="127.0.0.1:29400")
    assert nodes[3:13] == ["--nproc-per-node", "1", "--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                           "127.0.0.1:29400", "--rdzv-id", "milestones"]


@pytest.mark.parametrize(("kwargs", "overrides", "needle"), [
    ({"nproc": 0}, (), "must be at least 1"),
    ({"nproc": 4096}, (), "CPU core(s) this process may use"),
    ({"nproc": 1, "nnodes": 2}, (), "needs --rdzv-endpoint"),
    ({"nproc": 1, "rdzv_endpoint": "nohost"}, (), "must be HOST:PORT"),
    ({"nproc": 1, "nnodes": 3, "rdzv_endpoint": "h:1"}, ("--data.batch_size=64",), "does not split into 3"),
    ({"nproc": 1}, ("--train.epochs=0",), "train.epochs must be at least 1"),  # the run's own checks, made once
])
def test_what_would_fail_on_every_rank_fails_once_here(kwargs: dict, overrides: tuple, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        torchrun_command(cfg(*overrides), ["train"], **kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_run_resumes_with_the_processes_it_was_saved_with(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    check_resume_world(tmp_path, 2)  # no state saved: the workers say so in their own words
    (tmp_path / "checkpoints" / "state.json").write_text(json.dumps({"world_size": 2}))
    check_resume_world(tmp_path, 2)
    with pytest.raises(CheckpointError, match=r"trained by 2 process\(es\), not 1: .*--nproc 2\)"):
        check_resume_world(tmp_path, 1)
    with pytest.raises(CheckpointError, match="not 1"):  # the same check through the launch
        torchrun_command(cfg(), ["train", "--resume", str(tmp_path), "--nproc", "1"], nproc=1, resume=tmp_path)
