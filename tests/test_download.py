"""Downloads, end to end against a local HTTP server on 127.0.0.1 (nothing here touches the internet).

The server serves a small generated idx set; the ``mnist`` table row is swapped for one with that set's checksums and
counts, and with mirrors that cannot be reached, so every request must go through the override under test.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import struct
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from milestones.data import SOURCES, RemoteFile, download_file, get_dataset
from milestones.errors import DataError

COUNTS = {"train": 120, "test": 30}
PREFIX = {"train": "train", "test": "t10k"}
UNREACHABLE = ("http://127.0.0.1:9/never/",)  # the discard port: a request here fails at once, offline


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files, a request log, and ``/short/<file>``: a response that stops halfway through its body."""

    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if self.path.startswith("/short/"):
            body = (Path(self.directory) / self.path.removeprefix("/short/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture
def served(tmp_path: Path) -> dict:
    """Generated MNIST-format files in a folder ``www``: their arrays and their :class:`RemoteFile` entries."""
    www = tmp_path / "www"
    www.mkdir()
    rng = np.random.default_rng(0)
    arrays, files = {}, {}
    for split, n in COUNTS.items():
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        entries = []
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{PREFIX[split]}-{kind}-ubyte.gz"
            data = gzip.compress(_idx(array), mtime=0)
            (www / name).write_bytes(data)
            # images carry a sha256 (checked instead of md5, like the real MNIST row); labels only md5 (like KMNIST)
            sha = hashlib.sha256(data).hexdigest() if kind.startswith("images") else None
            entries.append(RemoteFile(name, md5=hashlib.md5(data).hexdigest(), sha256=sha))
        arrays[split] = (images, labels)
        files[split] = tuple(entries)
    return {"www": www, "arrays": arrays, "files": files}


@pytest.fixture
def server(served: dict) -> Iterator[tuple[str, list[str]]]:
    """``(base URL, request log)`` of a threaded HTTP server on 127.0.0.1 serving ``served['www']``."""
    log: list[str] = []
    handler = type("LoggedHandler", (Handler,), {"requests": log})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(served["www"])))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", log
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def fake_mnist(served: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Point the ``mnist`` row at the generated files' checksums and counts, with unreachable mirrors."""
    row = dataclasses.replace(SOURCES["mnist"], counts=COUNTS, files=served["files"], mirrors=UNREACHABLE)
    monkeypatch.setitem(SOURCES, "mnist", row)
    monkeypatch.delenv("MILESTONES_MIRROR", raising=False)
    return served


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _check(split, arrays: dict, name: str) -> None:
    images, labels = arrays[name]
    assert torch.equal(split.images[:, 0], torch.from_numpy(images))
    assert torch.equal(split.labels, torch.from_numpy(labels.astype(np.int64)))


def test_download_with_mirror_argument(fake_mnist: dict, server, tmp_path: Path) -> None:
    url, log = server
    root = tmp_path / "root"
    train = get_dataset("mnist", "train", root=root, download=True, mirrors=[url])
    _check(train, fake_mnist["arrays"], "train")
    assert _files(root / "mnist") == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]  # no .part left
    for f in fake_mnist["files"]["train"]:
        assert (root / "mnist" / f.name).read_bytes() == (fake_mnist["www"] / f.name).read_bytes()
    assert sorted(log) == ["/train-images-idx3-ubyte.gz", "/train-labels-idx1-ubyte.gz"]
    again = get_dataset("mnist", "train", root=root, download=True, mirrors=[url])  # present: no new request
    _check(again, fake_mnist["arrays"], "train")
    assert len(log) == 2


def test_download_with_env_mirror(fake_mnist: dict, server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, log = server
    monkeypatch.setenv("MILESTONES_MIRROR", url)
    test = get_dataset("mnist", "test", root=tmp_path / "root", download=True)
    _check(test, fake_mnist["arrays"], "test")
    assert len(log) == 2


def test_download_falls_back_to_the_next_mirror(fake_mnist: dict, server, tmp_path: Path) -> None:
    url, log = server
    test = get_dataset("mnist", "test", root=tmp_path / "root", download=True, mirrors=[url + "missing/", url])
    _check(test, fake_mnist["arrays"], "test")
    assert log == [
        "/missing/t10k-images-idx3-ubyte.gz",
        "/t10k-images-idx3-ubyte.gz",
        "/missing/t10k-labels-idx1-ubyte.gz",
        "/t10k-labels-idx1-ubyte.gz",
    ]


def test_table_mirrors_are_the_default(
    fake_mnist: dict, server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = server
    monkeypatch.setitem(SOURCES, "mnist", dataclasses.replace(SOURCES["mnist"], mirrors=(url,)))
    _check(get_dataset("mnist", "test", root=tmp_path / "root", download=True), fake_mnist["arrays"], "test")


@pytest.mark.parametrize("which", ["images", "labels"])  # sha256-checked and md5-checked entries
def test_checksum_mismatch_leaves_no_file(fake_mnist: dict, server, tmp_path: Path, which: str) -> None:
    url, _ = server
    name = f"t10k-{which}-idx{3 if which == 'images' else 1}-ubyte.gz"
    path = fake_mnist["www"] / name
    data = bytearray(path.read_bytes())
    data[-9] ^= 0xFF  # one flipped byte in the served file
    path.write_bytes(bytes(data))
    root = tmp_path / "root"
    with pytest.raises(DataError) as err:
        get_dataset("mnist", "test", root=root, download=True, mirrors=[url])
    message = str(err.value)
    assert "\n" not in message and name in message and "mismatch" in message
    assert ("sha256" if which == "images" else "md5") in message
    assert name not in _files(root / "mnist") and not [f for f in _files(root / "mnist") if f.endswith(".part")]


def test_interrupted_transfer_leaves_no_file(fake_mnist: dict, server, tmp_path: Path) -> None:
    url, _ = server
    folder = tmp_path / "dl"
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        download_file(fake_mnist["files"]["test"][1], [url + "short/"], folder)
    assert _files(folder) == []


def test_unreachable_mirror_is_a_one_line_error(fake_mnist: dict, tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        get_dataset("mnist", "test", root=tmp_path, download=True)
    message = str(err.value)
    assert "\n" not in message and UNREACHABLE[0] in message and f"{tmp_path / 'mnist'}/" in message
    assert _files(tmp_path / "mnist") == []


def test_no_download_unless_asked(fake_mnist: dict, server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, log = server
    monkeypatch.setenv("MILESTONES_MIRROR", url)
    with pytest.raises(DataError, match="--download"):
        get_dataset("mnist", "train", root=tmp_path)
    assert log == [] and not (tmp_path / "mnist").exists()
    get_dataset("digits", "test", root=tmp_path, download=True)  # embedded: never fetched
    assert log == []
