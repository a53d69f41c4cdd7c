"""Safe loading (issue 7): a pickle that would run code is refused and runs nothing; corrupt, truncated or mismatched
files end in one clear sentence (CheckpointError in the library; one line on stderr and exit 2 in the CLI).

The malicious files are real: each payload's side effect (creating a marker file, a harmless stand-in for
``os.system``) is shown to happen when the same file is unpickled without ``weights_only``, so the tests would fail
if the loader ever ran it.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from cli_checks import one_line_error

from milestones import cli
from milestones.errors import CheckpointError
from milestones.models import create_model
from milestones.train.checkpoint import load_checkpoint, load_weights_into, restore_model, save_checkpoint
from milestones.weights import load_pickle_weights


class _TouchOnLoad:
    """Unpickling calls ``Path.touch(marker)``; pickled through ``getattr(PosixPath, "touch")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


class _ExecOnLoad:
    """Unpickling calls the builtin ``exec`` on source that creates the marker: a direct global, no indirection."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _save_payload(kind: str, path: Path, marker: Path) -> None:
    """A weight file whose unpickling creates ``marker``, in the formats a user may be handed."""
    bait = {"conv1.weight": torch.zeros(2, 2)}
    if kind == "touch-zip":
        torch.save({**bait, "fc.weight": _TouchOnLoad(marker)}, path)
    elif kind == "exec-zip-protocol4":
        torch.save({**bait, "fc.weight": _ExecOnLoad(marker)}, path, pickle_protocol=4)
    elif kind == "touch-legacy":
        torch.save({**bait, "x": _TouchOnLoad(marker)}, path, _use_new_zipfile_serialization=False)
    elif kind == "exec-raw-pickle":
        path.write_bytes(pickle.dumps(_ExecOnLoad(marker), protocol=2))
    else:
        raise ValueError(kind)


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    return one_line_error(capsys.readouterr().err)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch warns about protocol 4 / legacy files before refusing
@pytest.mark.parametrize("kind", ["touch-zip", "exec-zip-protocol4", "touch-legacy", "exec-raw-pickle"])
def test_convert_refuses_a_pickle_that_would_run_code(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker, evil = tmp_path / "pwned", tmp_path / "resnet18-evil.pth"
    _save_payload(kind, evil, marker)
    out = tmp_path / "x.safetensors"

    assert cli.main(["convert", "resnet18", str(evil), "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert "refused" in err and str(evil) in err
    assert not marker.exists(), "the payload ran"
    assert not out.exists()
    with pytest.raises(CheckpointError, match="refused"):
        load_pickle_weights(evil)
    assert not marker.exists(), "the payload ran"

    # Control: the payload is live. Unpickled the unsafe way it does create the marker.
    if kind == "exec-raw-pickle":
        pickle.loads(evil.read_bytes())
    else:
        torch.load(evil, weights_only=False)
    assert marker.exists()


def test_refusal_is_plain_text_naming_what_was_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pth"
    _save_payload("touch-zip", evil, marker)
    assert cli.main(["convert", "resnet18", str(evil)]) == 2
    err = _one_line_error(capsys)
    assert "\x1b" not in err
    assert "getattr" in err  # the global the file tried to call


def test_a_plain_state_dict_is_still_accepted(tmp_path: Path) -> None:
    """The refusal is about code, not about pickles: tensors in (nested) dicts load, as torchvision files do."""
    path = tmp_path / "ok.pth"
    state = {"a.weight": torch.randn(3, 2), "a.bias": torch.arange(3)}
    torch.save({"state_dict": state}, path)
    loaded = load_pickle_weights(path)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize(
    "how",
    [
        "truncated",
        "empty",
        "garbage",
    ],
)
def test_unreadable_pth_is_a_one_line_error(how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "resnet18-bad.pth"
    torch.save({"w": torch.randn(64, 64)}, path)
    blob = path.read_bytes()
    path.write_bytes({"truncated": blob[: len(blob) // 2], "empty": b"", "garbage": b"\x00not a weight file" * 9}[how])
    assert cli.main(["convert", "resnet18", str(path)]) == 2
    err = _one_line_error(capsys)
    assert str(path) in err
    with pytest.raises(CheckpointError):
        load_pickle_weights(path)


def test_a_pth_without_tensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save({"w": [1, 2, 3]}, path)
    with pytest.raises(CheckpointError, match="state dict of tensors"):
        load_pickle_weights(path)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A real milestones checkpoint of resnet20 for CIFAR-10 (weights + metadata), as a run saves one."""
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10)
    meta = {"model": "resnet20", "model_kwargs": {"num_classes": 10}}
    return save_checkpoint(tmp_path / "ckpt", model, meta)


def test_checkpoint_round_trip_is_intact(checkpoint: Path) -> None:
    """The baseline the corruption tests depart from: the untouched checkpoint restores."""
    model, meta = restore_model(checkpoint)
    assert meta["model"] == "resnet20" and model.head.out_features == 10


def _flip(path: Path, where: int, n: int = 16) -> None:
    blob = bytearray(path.read_bytes())
    for i in range(where, where + n):
        blob[i] ^= 0xFF
    path.write_bytes(bytes(blob))


# Without its .json a checkpoint has no checksum, so flipped tensor bytes are undetectable there (a valid file).
CORRUPTIONS = [(how, True) for how in ("flip-data", "flip-header", "truncate", "empty")] + [
    (how, False) for how in ("flip-header", "truncate", "empty")
]


@pytest.mark.parametrize(
    ("how", "with_meta"), CORRUPTIONS, ids=[f"{h}-{'json' if m else 'no-json'}" for h, m in CORRUPTIONS]
)
def test_corrupt_checkpoint_names_the_file(how: str, with_meta: bool, checkpoint: Path) -> None:
    size = checkpoint.stat().st_size
    if how == "flip-data":
        _flip(checkpoint, size - 1000)
    elif how == "flip-header":
        _flip(checkpoint, 0, 8)  # the header-length field
    elif how == "truncate":
        checkpoint.write_bytes(checkpoint.read_bytes()[: size // 3])
    else:
        checkpoint.write_bytes(b"")
    if not with_meta:
        checkpoint.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError) as info:
        restore_model(checkpoint)
    msg = str(info.value)
    assert str(checkpoint) in msg and "\n" not in msg
    assert ("corrupt" in msg) or ("truncated" in msg)


def test_corrupt_metadata_is_a_checkpoint_error(checkpoint: Path) -> None:
    checkpoint.with_suffix(".json").write_text('{"model": "resnet20", ')
    with pytest.raises(CheckpointError, match=r"ckpt\.json.*corrupt"):
        restore_model(checkpoint)


def test_cli_with_a_corrupt_checkpoint_is_one_line(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _flip(checkpoint, checkpoint.stat().st_size // 2)
    assert cli.main(["predict", str(checkpoint), "no-image.png"]) == 2
    assert str(checkpoint) in _one_line_error(capsys)


def test_convert_reads_a_corrupt_safetensors_input_as_one_line(
    checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    assert cli.main(["convert", "resnet18", str(checkpoint)]) == 2
    assert str(checkpoint) in _one_line_error(capsys)


def test_checkpoint_for_another_number_of_classes(checkpoint: Path) -> None:
    state, _ = load_checkpoint(checkpoint)
    with pytest.raises(CheckpointError) as info:
        load_weights_into(create_model("resnet20", num_classes=100), state, source="ckpt", model_name="resnet20")
    msg = str(info.value)
    assert "resnet20" in msg and "head.weight" in msg and "(10, 64)" in msg and "(100, 64)" in msg

    # The same through the metadata: a .json that asks for 100 classes does not fit the 10-class weights.
    meta_path = checkpoint.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["model_kwargs"]["num_classes"] = 100
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"head\.weight: \(10, 64\) in the file, \(100, 64\) in the model"):
        restore_model(checkpoint)


def test_checkpoint_for_another_model(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state, _ = load_checkpoint(checkpoint)
    with pytest.raises(CheckpointError) as info:
        load_weights_into(create_model("resnet32", num_classes=10), state, source="ckpt", model_name="resnet32")
    msg = str(info.value)
    assert "'resnet32'" in msg and "missing" in msg and "\n" not in msg

    with pytest.raises(CheckpointError) as info:
        load_weights_into(create_model("lenet5", num_classes=10), state, source="ckpt", model_name="lenet5")
    msg = str(info.value)
    assert "'lenet5'" in msg and "missing" in msg and "unexpected" in msg

    meta_path = checkpoint.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["model"] = "plain32"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"does not fit model 'plain32'.*missing"):
        restore_model(checkpoint)
    assert cli.main(["predict", str(checkpoint), "no-image.png"]) == 2
    assert "'plain32'" in _one_line_error(capsys)


@pytest.mark.parametrize("content", ["text", "random", "random-after-pickle-marker"])
def test_a_file_that_is_not_a_checkpoint_is_named_so(content: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A text file or random bytes is "not a PyTorch checkpoint", never a pickle "which could run code" (issue 28:
    the text file ended in ``KeyError: 101`` from the unpickler)."""
    import random

    noise = random.Random(0).randbytes(4000)
    path = tmp_path / "text.pth"
    path.write_bytes({"text": b"hello, these are not weights\n" * 20, "random": b"\x07" + noise,
                      "random-after-pickle-marker": b"\x80" + noise}[content])
    assert cli.main(["convert", "resnet18", str(path), "--out", str(tmp_path / "x.safetensors")]) == 2
    err = _one_line_error(capsys)
    assert str(path) in err and "not a PyTorch checkpoint" in err and "run code" not in err
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_pickle_weights(path)
