"""Progress from the library reaches the screen only through what the caller installs (issue 12)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from milestones.data.folder import decode_folder
from milestones.progress import progress, show_progress


class Recorder:
    def __init__(self) -> None:
        self.opened: list[dict] = []
        self.updates: list[int] = []

    @contextlib.contextmanager
    def __call__(self, **options):
        self.opened.append(options)
        yield self

    def update(self, n: int) -> None:
        self.updates.append(n)


def test_silent_unless_installed_and_reset_after_an_error() -> None:
    with progress(total=3, desc="x", unit="img") as bar:
        bar.update(3)  # nothing installed: a silent bar
    rec = Recorder()
    with pytest.raises(RuntimeError), show_progress(rec):
        with progress(total=3, desc="x", unit="img") as bar:
            bar.update(2)
        raise RuntimeError("boom")
    assert rec.opened == [{"total": 3, "desc": "x", "unit": "img"}] and rec.updates == [2]
    with progress(total=1, desc="y", unit="img") as bar:
        bar.update(1)
    assert len(rec.opened) == 1  # the factory is gone once its block ended


def test_decoding_a_folder_reports_every_image(tmp_path: Path) -> None:
    for cls in ("cat", "dog"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(torch.randint(0, 255, (8, 8, 3), dtype=torch.uint8).numpy()).save(
                tmp_path / "train" / cls / f"{i}.png")
    rec = Recorder()
    with show_progress(rec):
        images, labels, classes = decode_folder(tmp_path, "train", use_cache=False)
    assert images.shape == (6, 3, 8, 8) and classes == ("cat", "dog")
    assert rec.opened[0]["unit"] == "img" and sum(rec.updates) == 6


@pytest.mark.parametrize("flags", [[], ["--no-progress"]])
def test_training_into_a_log_writes_one_line_per_epoch(flags: list[str], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 28: with stderr not a terminal (``train ... > log 2>&1``), no bar updates (each a carriage return) but
    one line per epoch on stdout; ``--no-progress`` hides bars only, never the epoch lines."""
    from milestones.cli import main

    assert main(["train", "lenet5", "--data", "digits", "--epochs", "2", "--data.train_subset=200",
                 "--data.batch_size=20", "--out", str(tmp_path), "--name", "log", *flags]) == 0
    out, err = capsys.readouterr()
    assert "\r" not in out + err
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and all(": train loss " in line and "test accuracy" in line for line in epochs), out
    assert err == ""  # stderr is left to errors
