"""CIFAR-10/100 and image folders: the official pickle format, safe extraction, downloads, the JPEG copy, the cache.

Independent references: torchvision's own CIFAR10/CIFAR100 readers on the same generated files, PIL decoding the
same JPEGs, the lossless exact subset of shared/data (its README: known labels, a published image hash, the JPEG error
bounds), torchvision's resize, and arrays the tests generate themselves. Real-data tests use the ``data_root`` fixture
and put every cache in a temporary folder (or ``MILESTONES_CACHE``), never in shared/data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import os
import pickle
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from milestones.config import DataConfig
from milestones.data import SOURCES, BatchAugment, TensorLoader, get_dataset, make_loaders, make_test_loader
from milestones.data import cache as cache_mod
from milestones.data.cifar import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    original_order,
    read_pickle,
    read_train_labels,
    safe_extract,
)
from milestones.data.folder import (
    FolderDataset,
    StreamingLoader,
    folder_loader,
    index_folder,
)
from milestones.data.sources import first_per_class
from milestones.errors import ConfigError, DataError

# ---------------------------------------------------------------- the official python format (generated files)

PER_BATCH = 6  # images per generated batch file: 5 train batches -> 30 train images, 1 test batch -> 6


def _batch(rng: np.random.Generator, n: int, num_classes: int, label_key: str, *, bytes_keys: bool = False) -> dict:
    batch = {
        "batch_label": "generated",
        label_key: rng.integers(0, num_classes, n).tolist(),
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "filenames": [f"img_{i}.png" for i in range(n)],
    }
    return {k.encode(): v for k, v in batch.items()} if bytes_keys else batch


def _write(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))  # protocol 2, as the Python 2 originals


def make_cifar10(folder: Path, seed: int = 0, *, bytes_keys: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A generated ``cifar-10-batches-py`` in ``folder``; returns ``{split: (images NCHW, labels)}``. With
    ``bytes_keys``, one batch has bytes keys (as Python 3 reads a Python 2 pickle without ``encoding="latin1"``)."""
    rng = np.random.default_rng(seed)
    d = folder / "cifar-10-batches-py"
    d.mkdir(parents=True)
    out: dict[str, list] = {"train": [], "test": []}
    for name, split in [*((f"data_batch_{i}", "train") for i in range(1, 6)), ("test_batch", "test")]:
        batch = _batch(rng, PER_BATCH, 10, "labels", bytes_keys=bytes_keys and name == "data_batch_2")
        _write(d / name, batch)
        batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
        out[split].append((batch["data"].reshape(-1, 3, 32, 32), np.asarray(batch["labels"])))
    _write(d / "batches.meta", {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": PER_BATCH})
    return {s: (np.concatenate([p[0] for p in v]), np.concatenate([p[1] for p in v])) for s, v in out.items()}


@pytest.fixture
def small_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cifar10/cifar100 rows with the generated sets' counts."""
    for name in ("cifar10", "cifar100"):
        row = dataclasses.replace(SOURCES[name], counts={"train": 5 * PER_BATCH, "test": PER_BATCH})
        monkeypatch.setitem(SOURCES, name, row)
    monkeypatch.delenv("MILESTONES_MIRROR", raising=False)


def _torchvision_reader(monkeypatch: pytest.MonkeyPatch):
    """torchvision's CIFAR classes, with their md5 checks of the published files turned off for generated ones."""
    import torchvision.datasets.cifar as tv

    monkeypatch.setattr(tv, "check_integrity", lambda *args, **kwargs: True)
    monkeypatch.setattr(tv.CIFAR10, "_check_integrity", lambda self: True)
    return tv


@pytest.mark.parametrize("layout", ["ours", "torchvision"])  # <root>/cifar10/cifar-10-batches-py or <root>/...
def test_official_format_matches_torchvision(
    tmp_path: Path, small_counts: None, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    folder = tmp_path / "cifar10" if layout == "ours" else tmp_path
    arrays = make_cifar10(folder)
    tv = _torchvision_reader(monkeypatch)
    for split in ("train", "test"):
        ours = get_dataset("cifar10", split, root=tmp_path)
        images, labels = arrays[split]
        assert torch.equal(ours.images, torch.from_numpy(images)) and torch.equal(ours.labels, torch.from_numpy(labels))
        ref = tv.CIFAR10(str(folder), train=split == "train", download=False)
        assert np.array_equal(ours.images.permute(0, 2, 3, 1).numpy(), ref.data)  # torchvision keeps HWC
        assert ours.labels.tolist() == ref.targets and ref.classes == list(ours.spec.classes)
        assert ours.spec.variant == "" and ours.spec.full_name == "cifar10"


def test_bytes_keys_are_read_too(tmp_path: Path, small_counts: None) -> None:
    arrays = make_cifar10(tmp_path / "cifar10", bytes_keys=True)
    train = get_dataset("cifar10", "train", root=tmp_path)
    assert torch.equal(train.images, torch.from_numpy(arrays["train"][0]))
    assert torch.equal(train.labels, torch.from_numpy(arrays["train"][1]))


def test_cifar100_fine_labels_and_meta_check(
    tmp_path: Path, small_counts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    d = tmp_path / "cifar100" / "cifar-100-python"
    d.mkdir(parents=True)
    train, test = (_batch(rng, n, 100, "fine_labels") for n in (5 * PER_BATCH, PER_BATCH))
    for b in (train, test):
        b["coarse_labels"] = [f // 5 for f in b["fine_labels"]]
    _write(d / "train", train)
    _write(d / "test", test)
    _write(d / "meta", {"fine_label_names": list(CIFAR100_CLASSES), "coarse_label_names": [str(i) for i in range(20)]})
    tv = _torchvision_reader(monkeypatch)
    ours = get_dataset("cifar100", "train", root=tmp_path)
    ref = tv.CIFAR100(str(tmp_path / "cifar100"), train=True, download=False)
    assert np.array_equal(ours.images.permute(0, 2, 3, 1).numpy(), ref.data) and ours.labels.tolist() == ref.targets
    assert ours.spec.num_classes == 100 and list(ours.spec.classes) == ref.classes
    assert list(CIFAR100_CLASSES) == sorted(set(CIFAR100_CLASSES)) and len(CIFAR100_CLASSES) == 100
    _write(d / "meta", {"fine_label_names": list(reversed(CIFAR100_CLASSES))})
    with pytest.raises(DataError, match="class names"):
        get_dataset("cifar100", "test", root=tmp_path)


# A pickle as Python 2's cPickle wrote the published batches (protocol 2): keys and the array's raw data are byte
# strings (SHORT_BINSTRING), and numpy's globals live in numpy.core.multiarray, a module numpy 2 renamed.
PY2_PICKLE = (
    b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\nq\x03K\x00\x85U"
    b"\x01b\x87Rq\x04(K\x01K\x03\x85cnumpy\ndtype\nq\x05U\x02u1K\x00K\x01\x87Rq\x06(K\x03U\x01|NNNJ\xff\xff\xff"
    b"\xffJ\xff\xff\xff\xffK\x00tb\x89U\x03ab\xfftbU\x06labelsq\x07]q\x08(K\x01K\x02K\x03eu."
)


def test_python2_pickles_are_read(tmp_path: Path) -> None:
    path = tmp_path / "batch"
    path.write_bytes(PY2_PICKLE)
    batch = read_pickle(path)
    assert sorted(batch) == ["data", "labels"] and batch["labels"] == [1, 2, 3]
    assert batch["data"].dtype == np.uint8 and batch["data"].tolist() == [97, 98, 255]


class _Evil:
    def __reduce__(self):  # unpickling this would run os.system
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize(
    "content, words",
    [
        (pickle.dumps({"data": _Evil(), "labels": []}, protocol=2), "refusing to load"),
        (pickle.dumps([1, 2, 3], protocol=2), "expected a dict"),
        (b"\x80\x02}q\x00", "not a CIFAR python batch"),  # truncated
        (pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, protocol=2), "expected uint8"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, protocol=2), "out of range"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8)}, protocol=2), "'labels'"),
    ],
)
def test_bad_batch_files_are_one_line_errors(tmp_path: Path, small_counts: None, content: bytes, words: str) -> None:
    make_cifar10(tmp_path / "cifar10")
    path = tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        get_dataset("cifar10", "test", root=tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and words in message


def test_missing_cifar_says_what_goes_where(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        get_dataset("cifar10", "train", root=tmp_path)
    message = str(err.value)
    assert "\n" not in message and "cifar-10-python.tar.gz" in message and "cifar10-jpg-q75.zip" in message
    assert f"{tmp_path / 'cifar10'}/" in message and "--download" in message
    with pytest.raises(DataError, match="cifar-100-python.tar.gz") as err:
        get_dataset("cifar100", "test", root=tmp_path)
    assert "jpg" not in str(err.value)
    assert not any(tmp_path.iterdir())  # nothing was created or fetched


def _tarball(src: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src, arcname=src.name)
    return dest


def test_local_tarball_is_extracted(tmp_path: Path, small_counts: None) -> None:
    arrays = make_cifar10(tmp_path / "gen")
    (tmp_path / "root" / "cifar10").mkdir(parents=True)
    _tarball(tmp_path / "gen" / "cifar-10-batches-py", tmp_path / "root" / "cifar10" / "cifar-10-python.tar.gz")
    test = get_dataset("cifar10", "test", root=tmp_path / "root")
    assert torch.equal(test.images, torch.from_numpy(arrays["test"][0]))
    extracted = sorted(p.name for p in (tmp_path / "root" / "cifar10" / "cifar-10-batches-py").iterdir())
    assert extracted == sorted(["batches.meta", "test_batch", *(f"data_batch_{i}" for i in range(1, 6))])
    assert not [p for p in (tmp_path / "root" / "cifar10").iterdir() if p.name.startswith(".")]  # no temp folder left


def _evil_tar(path: Path, kind: str) -> Path:
    with tarfile.open(path, "w") as tar:
        good = tarfile.TarInfo("cifar-10-batches-py/readme.txt")
        good.size = 2
        tar.addfile(good, io.BytesIO(b"ok"))
        info = tarfile.TarInfo({"dotdot": "../evil.txt", "absolute": "/tmp/evil.txt"}.get(kind, "evil"))
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
        elif kind == "fifo":
            info.type = tarfile.FIFOTYPE
        else:
            info.size = 4
        tar.addfile(info, io.BytesIO(b"evil") if info.isfile() else None)
    return path


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "fifo"])
def test_extraction_refuses_unsafe_members(tmp_path: Path, kind: str) -> None:
    archive = _evil_tar(tmp_path / "a.tar", kind)
    dest = tmp_path / "dest" / "inner"
    with pytest.raises(DataError, match="refusing") as err:
        safe_extract(archive, dest)
    assert "\n" not in str(err.value)
    assert not dest.exists() or not any(dest.rglob("*"))  # nothing at all was written, not even the good member
    assert not (tmp_path / "dest" / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


def test_extraction_of_a_corrupt_archive_is_a_data_error(tmp_path: Path) -> None:
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 50)
    with pytest.raises(DataError, match="cannot extract"):
        safe_extract(archive, tmp_path / "out")


# ---------------------------------------------------------------- download from a local server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """``(base URL, served folder, request log)`` of an HTTP server on 127.0.0.1."""
    www = tmp_path / "www"
    www.mkdir()
    log: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            log.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", www, log
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _serve_cifar10(tmp_path: Path, www: Path, monkeypatch: pytest.MonkeyPatch, *, md5: str | None = None) -> dict:
    arrays = make_cifar10(tmp_path / "gen")
    tarball = _tarball(tmp_path / "gen" / "cifar-10-batches-py", www / "cifar-10-python.tar.gz")
    remote = dataclasses.replace(
        SOURCES["cifar10"].files["train"][0], md5=md5 or hashlib.md5(tarball.read_bytes()).hexdigest()
    )
    row = dataclasses.replace(
        SOURCES["cifar10"],
        files={"train": (remote,), "test": (remote,)},
        mirrors=("http://127.0.0.1:9/never/",),  # only the mirror under test can answer
    )
    monkeypatch.setitem(SOURCES, "cifar10", row)
    return arrays


def test_download_checks_md5_and_extracts(
    tmp_path: Path, small_counts: None, server, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, www, log = server
    arrays = _serve_cifar10(tmp_path, www, monkeypatch)
    root = tmp_path / "root"
    train = get_dataset("cifar10", "train", root=root, download=True, mirrors=[url])
    assert torch.equal(train.images, torch.from_numpy(arrays["train"][0])) and log == ["/cifar-10-python.tar.gz"]
    assert (root / "cifar10" / "cifar-10-python.tar.gz").is_file()
    test = get_dataset("cifar10", "test", root=root, download=True, mirrors=[url])  # present now: no new request
    assert torch.equal(test.labels, torch.from_numpy(arrays["test"][1])) and len(log) == 1


def test_download_md5_mismatch_leaves_nothing(
    tmp_path: Path, small_counts: None, server, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, www, _ = server
    _serve_cifar10(tmp_path, www, monkeypatch, md5="0" * 32)
    root = tmp_path / "root"
    with pytest.raises(DataError, match="md5 mismatch"):
        get_dataset("cifar10", "train", root=root, download=True, mirrors=[url])
    assert not list((root / "cifar10").iterdir())


def test_no_download_unless_asked(tmp_path: Path, small_counts: None, server, monkeypatch: pytest.MonkeyPatch) -> None:
    url, www, log = server
    _serve_cifar10(tmp_path, www, monkeypatch)
    monkeypatch.setenv("MILESTONES_MIRROR", url)
    with pytest.raises(DataError, match="--download"):
        get_dataset("cifar10", "train", root=tmp_path / "root")
    assert log == []


# ---------------------------------------------------------------- image folders (generated)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> dict:
    """A generated image folder: PNGs (lossless) in train/test class folders, with traps for the listing."""
    rng = np.random.default_rng(0)
    root = tmp_path / "set"
    expected: dict[str, list[tuple[np.ndarray, int]]] = {"train": [], "test": []}
    for split, per_class in (("train", 12), ("test", 3)):
        for label, cls in enumerate(("ant", "bee", "cat")):
            if split == "test" and cls == "bee":
                continue  # a class missing from test keeps its label
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(per_class):  # names 0..11 without padding: natural order must put 2 before 10
                img = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
                (d / f"img{i}.png").write_bytes(_png(img))
                expected[split].append((img, label))
            (d / ".hidden.png").write_bytes(b"not an image")
            (d / "notes.txt").write_text("ignored")
    return {"root": root, "expected": expected}


def _zip_dir(src: Path, dest: Path, prefix: str) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, f"{prefix}{path.relative_to(src).as_posix()}")
    return dest


def _expected(folder: dict, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    items = folder["expected"][split]
    images = torch.from_numpy(np.stack([a for a, _ in items])).permute(0, 3, 1, 2)
    return images, torch.tensor([label for _, label in items])


@pytest.mark.parametrize("packed", ["dir", "zip", "zip-with-prefix"])
def test_folder_loads_exactly(folder: dict, tmp_path: Path, packed: str) -> None:
    source = folder["root"]
    if packed != "dir":
        source = _zip_dir(source, tmp_path / "set.zip", "set-v1/" if packed == "zip-with-prefix" else "")
    for split in ("train", "test"):
        data = get_dataset(f"folder:{source}", split, cache_dir=tmp_path / "cache")
        images, labels = _expected(folder, split)
        assert torch.equal(data.images, images) and torch.equal(data.labels, labels)
        assert data.spec.classes == ("ant", "bee", "cat") and data.spec.img_size == (9, 11)
        assert data.spec.name == f"folder:{source}" and data.spec.in_chans == 3
    index = index_folder(source, "train", max_per_class=3)
    assert [f.rsplit("/", 1)[-1] for f in index.files[:3]] == ["img0.png", "img1.png", "img2.png"]
    assert index.labels == (0, 0, 0, 1, 1, 1, 2, 2, 2)


def test_folder_relative_to_data_root_and_errors(folder: dict, tmp_path: Path) -> None:
    data = get_dataset("folder:set", "test", root=tmp_path, cache_dir=tmp_path / "cache")
    assert len(data) == 6
    with pytest.raises(DataError, match="not found"):
        get_dataset("folder:nowhere", "train", root=tmp_path)
    with pytest.raises(DataError, match="'val'"):
        get_dataset(f"folder:{folder['root']}", "val", cache_dir=tmp_path / "cache")
    (folder["root"] / "test" / "dog").mkdir()
    (folder["root"] / "test" / "dog" / "x.png").write_bytes(_png(np.zeros((9, 11, 3), np.uint8)))
    with pytest.raises(DataError, match="train lacks: dog"):
        get_dataset(f"folder:{folder['root']}", "test", cache_dir=tmp_path / "cache")


def test_folder_sizes_resize_and_fallback_decoders(folder: dict, tmp_path: Path) -> None:
    from torchvision.transforms.v2 import functional as TF

    odd = np.random.default_rng(5).integers(0, 256, (20, 14, 3), dtype=np.uint8)
    Image.fromarray(odd).save(folder["root"] / "train" / "cat" / "img99.bmp")  # BMP: decoded by PIL
    with pytest.raises(DataError, match="pass image_size"):
        get_dataset(f"folder:{folder['root']}", "train", cache_dir=tmp_path / "cache")
    data = get_dataset(f"folder:{folder['root']}", "train", image_size=8, cache_dir=tmp_path / "cache")
    assert data.images.shape == (37, 3, 8, 8) and data.spec.img_size == (8, 8)
    # shorter side to 8, then the centre: torchvision's resize + centre crop as the reference
    ref = TF.center_crop(TF.resize(torch.from_numpy(odd).permute(2, 0, 1), [11, 8], antialias=True), [8, 8])
    assert (data.images[-1].int() - ref.int()).abs().max() <= 1
    (folder["root"] / "test" / "ant" / "img1.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="img1.png"):
        get_dataset(f"folder:{folder['root']}", "test", cache_dir=tmp_path / "cache")


def test_folder_cache_hit_skips_decoding(folder: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    first = get_dataset(f"folder:{folder['root']}", "train", cache_dir=cache)
    assert len(list(cache.glob("set-train-*.pt"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite a cache entry")

    monkeypatch.setattr("milestones.data.folder._decode_all", no_decoding)
    again = get_dataset(f"folder:{folder['root']}", "train", cache_dir=cache)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    with pytest.raises(AssertionError, match="decoded again"):  # other parameters: another entry
        get_dataset(f"folder:{folder['root']}", "train", cache_dir=cache, max_per_class=2)
    # a new file in a class folder changes the folder's mtime, hence the key
    (folder["root"] / "train" / "ant" / "img50.png").write_bytes(_png(np.zeros((9, 11, 3), np.uint8)))
    with pytest.raises(AssertionError, match="decoded again"):
        get_dataset(f"folder:{folder['root']}", "train", cache_dir=cache)


def test_cache_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "data" / "set.zip"
    monkeypatch.delenv("MILESTONES_CACHE", raising=False)
    assert cache_mod.cache_dirs(source, tmp_path / "root") == [
        tmp_path / "data" / "set.zip.cache",
        tmp_path / "root" / "cache",
        Path("~/.cache/milestones/cache").expanduser(),
    ]
    monkeypatch.setenv("MILESTONES_CACHE", str(tmp_path / "env"))
    assert cache_mod.cache_dirs(source, None)[0] == tmp_path / "env"
    assert cache_mod.cache_dirs(source, None, tmp_path / "arg") == [tmp_path / "arg"]
    blocker = tmp_path / "file"
    blocker.write_text("a file, so no folder can be made under it (works even as root, unlike chmod)")
    entry = {"images": torch.zeros(2, 1, 2, 2, dtype=torch.uint8), "labels": torch.zeros(2, dtype=torch.int64)}
    readonly = tmp_path / "readonly"
    readonly.mkdir(mode=0o555)  # like shared/data: skipped even by root, who could write there
    written = cache_mod.save_entry("x.pt", [blocker / "sub", readonly / "cache", tmp_path / "ok"], entry)
    assert written == tmp_path / "ok" / "x.pt" and not any(readonly.iterdir())
    assert (written.stat().st_mode & 0o777) == 0o644
    loaded = cache_mod.load_entry("x.pt", [blocker / "sub", tmp_path / "ok"])
    assert torch.equal(loaded["images"], entry["images"])
    (tmp_path / "ok" / "x.pt").write_bytes(b"garbage")
    assert cache_mod.load_entry("x.pt", [tmp_path / "ok"]) is None  # a damaged entry is a miss, not a crash


def test_make_loaders_sizes_a_folder_for_the_model(folder: dict) -> None:
    """An image folder is resized to ``data.image_size``, else to the model's input size."""
    cfg = DataConfig(name=f"folder:{folder['root']}", batch_size=8, eval_batch_size=8)
    loaders = make_loaders(cfg, "cpu", seed=0, default_image_size=(16, 12))
    assert loaders.train.img_size == loaders.test.img_size == loaders.spec.img_size == (16, 12)
    cfg.image_size = 6
    assert make_loaders(cfg, "cpu", seed=0, default_image_size=(16, 12)).train.img_size == (6, 6)


def test_val_split_of_a_folder_in_memory_but_not_streamed(folder: dict) -> None:
    """An in-memory folder holds ``data.val_split`` images out of train (class-balanced: 2 of each class's 12); a
    streamed one cannot, and says what to do."""
    cfg = DataConfig(name=f"folder:{folder['root']}", batch_size=8, eval_batch_size=8, val_split=6, workers=0)
    loaders = make_loaders(cfg, "cpu", seed=0, default_image_size=(9, 11))
    assert loaders.train.num_samples == 30 and torch.bincount(loaders.val.labels).tolist() == [2, 2, 2]
    with pytest.raises(ConfigError, match="not data.val_split; set data.in_memory=true"):
        make_loaders(dataclasses.replace(cfg, in_memory=False), "cpu", seed=0, default_image_size=(9, 11))


@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_matches_in_memory(folder: dict, tmp_path: Path, workers: int) -> None:
    source = _zip_dir(folder["root"], tmp_path / "set.zip", "")
    memory = folder_loader(source, "train", batch_size=8, train=False, image_size=(9, 11), in_memory=True,
                           cache_dir=tmp_path / "cache")  # fmt: skip
    streamed = folder_loader(source, "train", batch_size=8, train=False, image_size=(9, 11), memory_budget=0,
                             workers=workers)  # fmt: skip
    assert isinstance(memory, TensorLoader) and isinstance(streamed, StreamingLoader)
    assert len(streamed) == len(memory) == 5 and streamed.img_size == (9, 11)
    for (xm, ym), (xs, ys) in zip(memory, streamed, strict=True):
        assert torch.equal(ym, ys) and torch.allclose(xm, xs, atol=1e-6)
    train = StreamingLoader(
        FolderDataset(index_folder(source, "train"), image_size=(9, 11)),
        batch_size=8,
        train=True,
        augment=BatchAugment.for_spec(memory.spec, flip=True, crop_padding=2, cutout=4),
        workers=workers,
        seed=0,
    )
    batches = list(train)
    assert len(batches) == 4 and all(x.shape == (8, 3, 9, 11) and x.dtype == torch.float32 for x, _ in batches)
    seen = torch.cat([y for _, y in batches]).tolist()
    assert seen != sorted(seen)  # shuffled


# ---------------------------------------------------------------- the real CIFAR-10 copies in shared/data


@pytest.fixture(scope="module")
def cifar_root(data_root: Path) -> Path:
    if not (data_root / "cifar10" / "cifar10-jpg-q75.zip").is_file():
        pytest.skip(f"no CIFAR-10 JPEG copy in {data_root / 'cifar10'}")
    if (data_root / "cifar10" / "cifar-10-batches-py").is_dir() or (data_root / "cifar-10-batches-py").is_dir():
        pytest.skip("the official CIFAR-10 files are present, so 'cifar10' does not read the JPEG copy")
    return data_root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``MILESTONES_CACHE`` when set (CI: shared with later tests, so the full decode happens once), else a tmp dir."""
    env = os.environ.get("MILESTONES_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("cifar-cache")


@pytest.fixture(scope="module")
def jpeg(cifar_root: Path, cache_dir: Path) -> dict:
    """The full JPEG copy, both splits, decoded once (or read from the cache), with timings."""
    out: dict = {}
    for split in ("train", "test"):
        start = time.perf_counter()
        out[split] = get_dataset("cifar10", split, root=cifar_root, cache_dir=cache_dir)
        out[f"{split}_seconds"] = time.perf_counter() - start
    return out


@pytest.fixture(scope="module")
def exact(cifar_root: Path) -> dict:
    return {split: get_dataset("cifar10-exact", split, root=cifar_root) for split in ("train", "test")}


def test_jpeg_copy_counts_and_spec(jpeg: dict) -> None:
    train, test = jpeg["train"], jpeg["test"]
    assert train.images.shape == (50_000, 3, 32, 32) and test.images.shape == (10_000, 3, 32, 32)
    assert torch.bincount(train.labels).tolist() == [5_000] * 10
    assert torch.bincount(test.labels).tolist() == [1_000] * 10
    for split in (train, test):
        assert split.spec.name == "cifar10" and split.spec.variant == "jpeg-q75"
        assert split.spec.full_name == "cifar10 (jpeg-q75)" and "lossy" in split.spec.note
        assert split.spec.classes == CIFAR10_CLASSES
    assert "original order" in train.spec.note
    assert train.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # README: the original first labels
    assert torch.equal(test.labels, torch.arange(10).repeat_interleave(1000))  # test: class-folder order


def test_jpeg_copy_statistics_near_the_official_ones(jpeg: dict) -> None:
    values = torch.arange(256, dtype=torch.float64) / 255
    for c in range(3):  # exact mean and population std from each channel's histogram
        hist = torch.bincount(jpeg["train"].images[:, c].flatten(), minlength=256).double()
        mean = (hist * values).sum() / hist.sum()
        std = ((hist * (values - mean) ** 2).sum() / hist.sum()).sqrt()
        assert mean.item() == pytest.approx(jpeg["train"].spec.mean[c], abs=0.002)
        assert std.item() == pytest.approx(jpeg["train"].spec.std[c], abs=0.004)


def test_cache_hit_is_fast_and_identical(jpeg: dict, cifar_root: Path, cache_dir: Path) -> None:
    assert list(cache_dir.glob("cifar10-jpg-q75-train-*.pt"))  # written to the cache dir, not to shared/data
    start, cpu = time.perf_counter(), time.process_time()
    again = get_dataset("cifar10", "train", root=cifar_root, cache_dir=cache_dir)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    # CPU time: the machine is shared; reading 150 MB and reordering costs the same CPU however busy it is
    assert cpu < 2.0, f"cached load took {cpu:.2f} s CPU ({wall:.2f} s wall)"
    assert torch.equal(again.images, jpeg["train"].images) and torch.equal(again.labels, jpeg["train"].labels)


def test_exact_subset_facts(exact: dict, cifar_root: Path) -> None:
    train, test = exact["train"], exact["test"]
    assert train.images.shape == (4000, 3, 32, 32) and test.images.shape == (1000, 3, 32, 32)
    assert train.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    # README: test image 0 (domestic_cat_s_000907.png) as raw HWC RGB has this published sha256
    raw = test.images[0].permute(1, 2, 0).contiguous().numpy().tobytes()
    assert hashlib.sha256(raw).hexdigest() == "af12e1241a1e7a0c9ba326825279bef5fe961ceb5f95212a99f9b1f22711f913"
    labels = read_train_labels(cifar_root / "cifar10" / "exact-subset" / "cifar10_labels_51000.txt")
    assert np.bincount(labels).tolist() == [5000] * 10
    assert train.spec.variant == "exact-subset" and train.spec.full_name == "cifar10-exact (exact-subset)"


def _mae(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).abs().mean(dim=(1, 2, 3))


def test_exact_pixels_match_the_jpeg_copy(jpeg: dict, exact: dict) -> None:
    """Train: the rebuilt order puts exact image i at JPEG index i. Test: exact image i is the k-th of its class."""
    right = _mae(jpeg["train"].images[:4000], exact["train"].images)
    assert torch.equal(jpeg["train"].labels[:4000], exact["train"].labels)
    labels = exact["test"].labels.numpy()
    position = torch.from_numpy(original_order(labels, [1000] * 10))  # class-folder position of each test image
    right_test = _mae(jpeg["test"].images[position], exact["test"].images)
    for err in (right, right_test):  # mean absolute error per image, on the 0..255 scale
        assert err.max() <= 13  # README: every image within 13/255
        assert 4 < err.mean() < 8  # README: 5.8/255 on average
    # a wrong candidate, the next image of the same class, is far further away
    nxt = torch.from_numpy(original_order(labels, [1000] * 10) + 1) % 10_000
    wrong_test = _mae(jpeg["test"].images[nxt], exact["test"].images)
    assert (right_test / wrong_test).max() < 0.3  # README: always below 0.27
    shifted = _mae(jpeg["train"].images[1:4001], exact["train"].images)  # off by one in the rebuilt order
    assert (right / shifted).max() < 0.3


def test_torchvision_decoding_equals_pil(cifar_root: Path, jpeg: dict) -> None:
    zip_path = cifar_root / "cifar10" / "cifar10-jpg-q75.zip"
    with zipfile.ZipFile(zip_path) as zf:
        for c, cls in enumerate(CIFAR10_CLASSES):
            for k in (0, 1, 517, 999):
                with Image.open(io.BytesIO(zf.read(f"test/{cls}/{k:04d}.jpg"))) as img:
                    pil = torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1)
                assert torch.equal(jpeg["test"].images[c * 1000 + k], pil), f"test/{cls}/{k:04d}.jpg"


def test_per_class_limit_and_order_without_the_label_list(jpeg: dict, cifar_root: Path, tmp_path: Path) -> None:
    small = get_dataset("cifar10", "train", root=cifar_root, max_per_class=40, cache_dir=tmp_path)
    keep = first_per_class(jpeg["train"].labels, 40)
    assert len(small) == 400 and torch.equal(small.images, jpeg["train"].images[keep])
    assert torch.equal(small.labels, jpeg["train"].labels[keep])
    # no exact-subset/ beside the zip: train comes in class-folder order
    bare = tmp_path / "bare"
    (bare / "cifar10").mkdir(parents=True)
    (bare / "cifar10" / "cifar10-jpg-q75.zip").symlink_to(cifar_root / "cifar10" / "cifar10-jpg-q75.zip")
    folder_order = get_dataset("cifar10", "train", root=bare, max_per_class=3, cache_dir=tmp_path)
    assert folder_order.labels.tolist() == [c for c in range(10) for _ in range(3)]
    assert "class-folder order" in folder_order.spec.note
    first3 = [int(i) for c in range(10) for i in torch.nonzero(jpeg["train"].labels == c)[:3, 0]]
    assert torch.equal(folder_order.images, jpeg["train"].images[first3])


@pytest.mark.parametrize("in_memory", [False, None])
def test_training_on_a_folder_streams_or_loads_it(folder: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture, in_memory: bool | None) -> None:
    """``data.in_memory: false`` trains through the streaming loader; by default a small folder goes in memory.
    Either way images are resized to the model's input size (32 for resnet20), the run completes, and ``milestones
    eval`` resizes the test split alike."""
    from milestones.config import build_config
    from milestones.data import folder as folder_mod
    from milestones.train.run import run_training

    made: list[str] = []
    original = folder_mod.StreamingLoader.__init__

    def spy(self, *args, **kwargs):
        made.append("stream")
        original(self, *args, **kwargs)

    monkeypatch.setattr(folder_mod.StreamingLoader, "__init__", spy)
    cfg = build_config(model="resnet20", data=f"folder:{folder['root']}", overrides=[
        "--train.epochs=1", "--data.batch_size=8", "--data.eval_batch_size=8", "--data.workers=0",
        f"--data.in_memory={'null' if in_memory is None else 'false'}", "--data.flip=true", "--data.crop_padding=2",
        "--train.progress=false", f"--out_dir={tmp_path}", "--name=run"])
    result = run_training(cfg)
    assert made == (["stream", "stream"] if in_memory is False else [])
    s = result.summary
    assert s["epochs"] == 1 and 0.0 <= s["final_test_acc"] <= 1.0
    meta = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert meta["data"]["input_size"] == [3, 32, 32] and make_test_loader(meta["data"]).img_size == (32, 32)
    from milestones.cli import main

    assert main(["eval", str(tmp_path / "run")]) == 0  # resized for the model as in training: the same accuracy
    assert f"top-1 {100 * s['final_test_acc']:.2f}%" in capsys.readouterr().out
    if in_memory is False:
        cfg.data.rand_augment, cfg.name = 2, "refused"
        with pytest.raises(ConfigError, match="in_memory=true"):
            run_training(cfg)
