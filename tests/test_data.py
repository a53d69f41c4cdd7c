"""Data package: real MNIST against its published facts, layouts, error messages, digits, and the tensor loader.

Independent references: label counts and sha256 values published with MNIST (shared/data/README.md), hashlib over the
raw files, torchvision's own idx reader, PIL's bilinear resize, and brute-force recomputation of crops and flips.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from milestones.config import DataConfig
from milestones.data import (
    SOURCES,
    BatchAugment,
    DataSpec,
    ImageSplit,
    TensorLoader,
    get_data_spec,
    get_dataset,
    hold_out,
    list_datasets,
    make_loaders,
    normalise,
    random_crop,
    random_flip,
    read_idx,
    resolve_root,
    subset,
)
from milestones.data.pipeline import VAL_SEED
from milestones.data.sources import digits_test_mask
from milestones.errors import ConfigError, DataError, MilestonesError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
# sha256 of the uncompressed files as published (shared/data/README.md, "Uncompressed files")
SHA256_RAW = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MNIST_FILES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


# ---------------------------------------------------------------- real MNIST


@pytest.fixture(scope="module")
def mnist_dir(data_root: Path) -> Path:
    folder = data_root / "mnist"
    if not all((folder / f).is_file() for f in MNIST_FILES):
        pytest.skip(f"no MNIST in {folder}")
    return folder


@pytest.fixture(scope="module")
def mnist(data_root: Path, mnist_dir: Path) -> dict[str, ImageSplit]:
    return {split: get_dataset("mnist", split, root=data_root) for split in ("train", "test")}


def test_mnist_counts_shapes_and_labels(mnist: dict[str, ImageSplit]) -> None:
    train, test = mnist["train"], mnist["test"]
    assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert torch.bincount(train.labels).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(test.labels).tolist() == MNIST_TEST_COUNTS
    assert train.spec is get_data_spec("mnist") and train.spec.img_size == (28, 28)


@pytest.mark.parametrize("split, prefix", [("train", "train"), ("test", "t10k")])
def test_mnist_pixel_and_label_checksums(
    mnist: dict[str, ImageSplit], mnist_dir: Path, split: str, prefix: str
) -> None:
    for kind, header, tensor in (("images-idx3", 16, mnist[split].images), ("labels-idx1", 8, mnist[split].labels)):
        raw = gzip.decompress((mnist_dir / f"{prefix}-{kind}-ubyte.gz").read_bytes())
        assert hashlib.sha256(raw).hexdigest() == SHA256_RAW[f"{prefix}-{kind}-ubyte"]  # the file is the original
        ours = tensor.to(torch.uint8).numpy().tobytes()  # labels are 0..9, so uint8 is lossless
        assert hashlib.sha256(ours).hexdigest() == hashlib.sha256(raw[header:]).hexdigest()


def _stats(images: torch.Tensor) -> tuple[float, float]:
    """Exact mean and (population) std of uint8 images on the 0..1 scale, from their 256-bin histogram."""
    hist = torch.bincount(images.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    mean = (hist * values).sum() / hist.sum()
    return mean.item(), ((hist * (values - mean) ** 2).sum() / hist.sum()).sqrt().item()


def test_mnist_normalisation_stats_match_spec(mnist: dict[str, ImageSplit]) -> None:
    mean, std = _stats(mnist["train"].images)
    assert (mean, std) == pytest.approx((0.1306605, 0.3081078), abs=1e-6)  # the widely quoted 0.1307, 0.3081
    assert mnist["train"].spec.mean[0] == pytest.approx(mean, abs=5e-5)
    assert mnist["train"].spec.std[0] == pytest.approx(std, abs=5e-5)


def test_mnist_loads_fast(data_root: Path, mnist_dir: Path) -> None:
    # CPU time, not wall time: the CI machine is shared, but decompressing and parsing costs the same CPU
    start = time.process_time()
    get_dataset("mnist", "train", root=data_root)
    get_dataset("mnist", "test", root=data_root)
    assert time.process_time() - start < 1.5


def test_download_table_matches_the_real_files(mnist_dir: Path) -> None:
    files = {f.name: f for split in ("train", "test") for f in SOURCES["mnist"].files[split]}
    assert sorted(files) == sorted(MNIST_FILES)
    for name, entry in files.items():
        data = (mnist_dir / name).read_bytes()
        assert hashlib.md5(data).hexdigest() == entry.md5
        assert hashlib.sha256(data).hexdigest() == entry.sha256


def test_torchvision_layout(mnist: dict[str, ImageSplit], mnist_dir: Path, tmp_path: Path) -> None:
    from torchvision.datasets.mnist import read_image_file, read_label_file

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES[:2]:  # train: gzipped, as torchvision downloads them
        (raw / name).symlink_to(mnist_dir / name)
    for name in MNIST_FILES[2:]:  # test: uncompressed, as torchvision extracts them
        (raw / name.removesuffix(".gz")).write_bytes(gzip.decompress((mnist_dir / name).read_bytes()))
    train = get_dataset("mnist", "train", root=tmp_path)
    test = get_dataset("mnist", "test", root=tmp_path)
    assert torch.equal(train.images, mnist["train"].images) and torch.equal(train.labels, mnist["train"].labels)
    assert torch.equal(test.images, mnist["test"].images) and torch.equal(test.labels, mnist["test"].labels)
    # torchvision's own reader agrees on the same files
    assert torch.equal(read_image_file(str(raw / "t10k-images-idx3-ubyte")), test.images[:, 0])
    assert torch.equal(read_label_file(str(raw / "t10k-labels-idx1-ubyte")), test.labels)


def test_make_loaders_from_a_data_config(data_root: Path, mnist_dir: Path) -> None:
    """Subsets (the test subset whatever the seed), normalisation overrides recorded in the spec, pad, soft targets
    under mixup; the model's default image size is for image folders only."""
    cfg = DataConfig(name="mnist", root=str(data_root), pad=2, train_subset=600, test_subset=100, batch_size=64,
                     eval_batch_size=60, mean=[0.5], std=[0.25], crop_padding=2, mixup_alpha=0.2)
    train, test, spec, val = make_loaders(cfg, "cpu", seed=1, default_image_size=(99, 99))
    assert val is None  # no data.val_split
    assert spec.mean == (0.5,) and spec.std == (0.25,) and train.spec == test.spec == spec
    assert (len(train), len(test), train.img_size, test.img_size) == (9, 2, (32, 32), (32, 32))
    x, y = next(iter(train))
    assert x.shape == (64, 1, 32, 32) and y.shape == (64, 10) and torch.allclose(y.sum(1), torch.ones(64))
    tx, ty = next(iter(test))
    assert ty.dtype == torch.int64 and torch.allclose(tx[:, :, :2], torch.full_like(tx[:, :, :2], -2.0))  # 0 -> -2
    other = make_loaders(cfg, "cpu", seed=2)
    assert torch.equal(other.test.images, test.images) and not torch.equal(other.train.images, train.images)


@pytest.mark.parametrize("in_memory", [None, False])
def test_make_loaders_opens_each_split_of_a_folder_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        in_memory: bool | None) -> None:
    """Issue 27.3: an image folder has one way in, ``open_folder``, which decides in memory or streamed once per
    split: ``make_loaders`` opens (and resolves) each split once, where it used to resolve the training split twice,
    to decide and then to load it."""
    from PIL import Image

    from milestones.data import StreamingLoader, pipeline
    from milestones.data import folder as folder_mod

    for split, n in (("train", 2), ("test", 1)):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / split / c / f"{i}.png")
    opened, resolved = [], []
    open_folder, resolve_folder = pipeline.open_folder, folder_mod.resolve_folder
    monkeypatch.setattr(pipeline, "open_folder", lambda name, split, **kw: opened.append(split) or
                        open_folder(name, split, **kw))
    monkeypatch.setattr(folder_mod, "resolve_folder", lambda *a: resolved.append(a) or resolve_folder(*a))
    cfg = DataConfig(name=f"folder:{tmp_path}", in_memory=in_memory, workers=0, batch_size=2, eval_batch_size=2)
    loaders = make_loaders(cfg, "cpu", seed=0, default_image_size=(8, 8))
    assert opened == ["train", "test"] and len(resolved) == 2
    kind = TensorLoader if in_memory is None else StreamingLoader
    assert isinstance(loaders.train, kind) and isinstance(loaders.test, kind)
    assert loaders.train.spec.img_size == (8, 8) and loaders.test.num_samples == 2


def test_make_loaders_checks_augmentation_before_any_data_loads(tmp_path: Path) -> None:
    cfg = DataConfig(name="mnist", root=str(tmp_path / "nowhere"), trivial_augment=True, rand_augment=2)
    with pytest.raises(ConfigError, match="data.trivial_augment and data.rand_augment"):
        make_loaders(cfg, "cpu", seed=0)


def test_loader_normalises_mnist_to_zero_mean_unit_std(mnist: dict[str, ImageSplit]) -> None:
    full = next(iter(TensorLoader(mnist["train"], batch_size=60_000, train=False)))[0]
    assert full.mean().item() == pytest.approx(0.0, abs=1e-3) and full.std().item() == pytest.approx(1.0, abs=1e-3)
    x, _ = next(iter(TensorLoader(mnist["train"], batch_size=2048, train=True, seed=0)))
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05
    padded = next(iter(TensorLoader(mnist["test"], batch_size=64, train=False, pad=2)))[0]
    assert padded.shape == (64, 1, 32, 32)
    background = -mnist["test"].spec.mean[0] / mnist["test"].spec.std[0]
    assert torch.allclose(padded[:, :, :2], torch.full_like(padded[:, :, :2], background))


# ---------------------------------------------------------------- layouts, errors (generated files, no real data)


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """A data root with a generated MNIST test split (10,000 blank images, labels i % 10) in the shared layout."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(np.zeros((10_000, 28, 28), np.uint8))))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.arange(10_000, dtype=np.uint8) % 10)))
    return tmp_path


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message
    return message


def test_generated_split_loads(fake_root: Path) -> None:
    test = get_dataset("mnist", "test", root=fake_root)
    assert test.labels[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1] and test.images.sum() == 0


def test_missing_files_one_line_says_what_goes_where(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        get_dataset("mnist", "train", root=tmp_path)
    message = _one_line(err)
    assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message
    assert f"{tmp_path / 'mnist'}/" in message and "--download" in message
    assert not (tmp_path / "mnist").exists()  # nothing was created or fetched


def test_missing_one_file_names_only_that_file(fake_root: Path) -> None:
    (fake_root / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        get_dataset("mnist", "test", root=fake_root)
    message = _one_line(err)
    assert "t10k-labels-idx1-ubyte.gz" in message and "t10k-images" not in message


def _truncated_gz(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _bad_gz(data: bytes) -> bytes:
    return b"\x1f\x8b" + b"\x00" * 40


def _wrong_magic(data: bytes) -> bytes:
    raw = bytearray(gzip.decompress(data))
    raw[3] = 3  # an idx3 header in the labels file
    return gzip.compress(bytes(raw))


def _short_body(data: bytes) -> bytes:
    return gzip.compress(gzip.decompress(data)[:-5])  # valid gzip, data cut short


def _wrong_count(data: bytes) -> bytes:
    return gzip.compress(_idx(np.zeros(9_999, np.uint8)))


@pytest.mark.parametrize(
    "corrupt, words",
    [
        (_truncated_gz, "truncated"),
        (_bad_gz, "gzip"),
        (_wrong_magic, "magic"),
        (_short_body, "length"),
        (_wrong_count, "shape"),
    ],
)
def test_corrupt_files_one_line_naming_the_file(fake_root: Path, corrupt, words: str) -> None:
    path = fake_root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(DataError) as err:
        get_dataset("mnist", "test", root=fake_root)
    message = _one_line(err)
    assert str(path) in message and words in message and "--download" in message


def test_uncompressed_shared_layout_and_out_of_range_label(fake_root: Path) -> None:
    folder = fake_root / "mnist"
    gz = folder / "t10k-labels-idx1-ubyte.gz"
    labels = np.arange(10_000, dtype=np.uint8) % 10
    labels[7] = 10
    (folder / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels))
    gz.unlink()
    with pytest.raises(DataError, match="out of range"):
        get_dataset("mnist", "test", root=fake_root)


def test_read_idx_reads_uncompressed(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "x").write_bytes(_idx(array))
    out = read_idx(tmp_path / "x", (2, 3, 4))
    assert np.array_equal(out, array) and out.flags.writeable


def test_unknown_names_suggest_close_matches() -> None:
    with pytest.raises(DataError, match="did you mean mnist") as err:
        get_dataset("minst", "train")
    assert isinstance(err.value, MilestonesError) and "kmnist" in str(err.value)
    with pytest.raises(DataError, match="did you mean test"):
        get_dataset("digits", "tset")
    assert get_data_spec("Fashion_MNIST").name == "fashion-mnist"
    assert list_datasets() == ["mnist", "fashion-mnist", "kmnist", "digits", "cifar10", "cifar100", "cifar10-exact"]


def test_resolve_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MILESTONES_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_root("~/x") == tmp_path / "home" / "x"
    assert resolve_root(None) == tmp_path / "env"
    monkeypatch.delenv("MILESTONES_DATA")
    assert resolve_root(None) == tmp_path / "home" / ".cache" / "milestones"


def test_idx_tables_are_consistent() -> None:
    for name in ("mnist", "fashion-mnist", "kmnist"):
        source = SOURCES[name]
        assert source.counts == {"train": 60_000, "test": 10_000} and source.mirrors
        for split, prefix in (("train", "train"), ("test", "t10k")):
            images, labels = source.files[split]
            assert (images.name, labels.name) == (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz")
            assert all(len(f.md5) == 32 for f in (images, labels))
        assert len({f.md5 for split in source.files.values() for f in split}) == 4


# ---------------------------------------------------------------- digits


def test_digits_shapes_split_and_balance() -> None:
    train, test = get_dataset("digits", "train"), get_dataset("digits", "test")
    assert train.images.shape == (1438, 1, 32, 32) and test.images.shape == (359, 1, 32, 32)
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255
    full = torch.bincount(torch.cat([train.labels, test.labels])).tolist()
    assert full == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # scikit-learn's load_digits
    for n, t in zip(full, torch.bincount(test.labels).tolist(), strict=True):
        assert t == round(0.2 * n)  # stratified 20%
    # reproducible, and pinned: the held-out set must never move
    again = get_dataset("digits", "test")
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)
    from sklearn.datasets import load_digits

    mask = digits_test_mask(torch.from_numpy(load_digits().target.astype(np.int64)))
    indices = np.flatnonzero(mask.numpy()).astype("<i8").tobytes()
    assert hashlib.sha256(indices).hexdigest() == "2088cd0c0b9c96ee8d2c86bf5bc41b736adab8d1763e11d3df6ed8d0fe3ab6ae"


def _rows(images: torch.Tensor) -> set[bytes]:
    """Each image as bytes (digits' 1438 training images are all distinct, so sets compare images)."""
    return {img.numpy().tobytes() for img in images.cpu()}


def test_hold_out_partitions_the_split_class_balanced() -> None:
    """The held-out images and the rest are disjoint and together the whole split, each in the original order; the
    held-out ones are the ones subset() keeps with the same seed, every class within one image of its share."""
    full = get_dataset("digits", "train")
    rest, held = hold_out(full, 200, seed=VAL_SEED)
    assert (len(rest), len(held)) == (1238, 200) and len(_rows(full.images)) == 1438
    assert _rows(rest.images) | _rows(held.images) == _rows(full.images)
    assert not _rows(rest.images) & _rows(held.images)
    same = subset(full, 200, seed=VAL_SEED)
    assert torch.equal(held.images, same.images) and torch.equal(held.labels, same.labels)
    counts = torch.bincount(full.labels, minlength=10).tolist()
    for share, got in zip(counts, torch.bincount(held.labels, minlength=10).tolist(), strict=True):
        assert abs(got - 200 * share / 1438) < 1
    index = {img.numpy().tobytes(): i for i, img in enumerate(full.images)}
    for part in (rest, held):
        where = [index[img.numpy().tobytes()] for img in part.images]
        assert where == sorted(where)
    with pytest.raises(ValueError, match="1..1437"):
        hold_out(full, 1438, seed=0)


def test_val_split_holds_out_the_same_images_for_every_seed_before_train_subset() -> None:
    """``data.val_split`` comes out as ``loaders.val``: the same 200 images whatever the run's seed (VAL_SEED), never
    in the training loader (carved before train_subset, which still follows the seed), served unaugmented in order
    at the eval batch size, as the test loader is."""
    cfg = DataConfig(name="digits", val_split=200, train_subset=600, batch_size=32, eval_batch_size=64, flip=True,
                     crop_padding=2, mean=[0.1], std=[0.7])
    a, b = make_loaders(cfg, "cpu", seed=0), make_loaders(cfg, "cpu", seed=1)
    held = hold_out(get_dataset("digits", "train"), 200, seed=VAL_SEED)[1]
    for loaders in (a, b):
        assert torch.equal(loaders.val.images, held.images) and torch.equal(loaders.val.labels, held.labels)
        assert loaders.train.num_samples == 600 and not _rows(loaders.train.images) & _rows(held.images)
        assert loaders.val.spec == loaders.train.spec == loaders.spec and loaders.spec.mean == (0.1,)
    assert not torch.equal(a.train.images, b.train.images)
    assert not a.val.train and len(a.val) == 4 and a.val.batch_size == a.test.batch_size == 64
    first, again = (list(a.val) for _ in range(2))
    assert [len(y) for _, y in first] == [64, 64, 64, 8]
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(first, again, strict=True))  # no augmentation
    x, y = first[0]
    assert torch.equal(y, held.labels[:64]) and torch.allclose(x, (held.images[:64].float() / 255 - 0.1) / 0.7)
    assert make_loaders(dataclasses.replace(cfg, val_split=0), "cpu", seed=0).val is None


@pytest.mark.parametrize(("changes", "words"), [
    ({"val_split": 1438}, "data.val_split=1438 holds out the whole training split of digits"),
    ({"val_split": 1000, "train_subset": 500}, "data.train_subset=500 asks for more than the 438 training images"),
    ({"val_split": -5}, "data.val_split must be a number of training images"),
])
def test_val_split_that_leaves_too_few_images_is_a_one_line_error(changes: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        make_loaders(DataConfig(name="digits", **changes), "cpu", seed=0)
    assert "\n" not in str(info.value)


def test_digits_resize_matches_pil_and_stats_match_spec() -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    mask = digits_test_mask(torch.from_numpy(bunch.target.astype(np.int64))).numpy()
    train = get_dataset("digits", "train")
    originals = bunch.images[~mask]
    for i in range(0, len(train), 97):
        ref = Image.fromarray((originals[i] * 255 / 16).astype(np.float32)).resize((32, 32), Image.BILINEAR)
        assert np.abs(np.round(np.asarray(ref)) - train.images[i, 0].numpy()).max() <= 1
    mean, std = _stats(train.images)
    assert train.spec.mean[0] == pytest.approx(mean, abs=5e-5) and train.spec.std[0] == pytest.approx(std, abs=5e-5)


# ---------------------------------------------------------------- loader and augmentation (synthetic, labels = ids)


def _ids_split(n: int = 50, c: int = 3, h: int = 10, w: int = 12, seed: int = 0) -> ImageSplit:
    """Random images whose label is their index, so every yielded sample can be traced back."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)
    spec = DataSpec("ids", n, c, (h, w), (0.5,) * c, (0.25,) * c, tuple(str(i) for i in range(n)))
    return ImageSplit(images, torch.arange(n), spec)


def _bytes(x: torch.Tensor) -> torch.Tensor:
    """Images yielded with ``normalise=False`` (x / 255) back to exact uint8."""
    return (x * 255).round().to(torch.uint8)


def _epoch(loader: TensorLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def _aug(split: ImageSplit, **options) -> BatchAugment:
    return BatchAugment.for_spec(split.spec, **options)


def test_loader_batches_and_len() -> None:
    split = _ids_split(50)
    train = TensorLoader(split, batch_size=16, train=True)
    batches = _epoch(train)
    assert len(train) == len(batches) == 3 and all(x.shape == (16, 3, 10, 12) for x, _ in batches)
    assert all(x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in batches)
    seen = torch.cat([y for _, y in batches])
    assert len(seen.unique()) == 48  # a permutation, last partial batch dropped
    test = TensorLoader(split, batch_size=16, train=False)
    batches = _epoch(test)
    assert len(test) == len(batches) == 4 and batches[-1][0].shape[0] == 2
    assert torch.equal(torch.cat([y for _, y in batches]), torch.arange(50))  # eval: original order, all samples
    x = torch.cat([x for x, _ in batches])
    assert torch.allclose(x, (split.images.float() / 255 - 0.5) / 0.25, atol=1e-6)


def test_loader_options_shapes() -> None:
    split = _ids_split(8, c=1, h=28, w=28)
    x, _ = next(iter(TensorLoader(split, batch_size=8, train=False, pad=2)))
    assert x.shape == (8, 1, 32, 32)
    x, _ = next(iter(TensorLoader(split, batch_size=8, train=False, target_size=32)))
    assert x.shape == (8, 1, 32, 32)
    split8 = _ids_split(8)
    loader = TensorLoader(split8, batch_size=4, train=True, channels_last=True,
                          augment=_aug(split8, dtype=torch.bfloat16))
    x, _ = next(iter(loader))
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
    x, _ = next(iter(TensorLoader(split, batch_size=8, train=False, augment=_aug(split, normalise=False))))
    assert torch.allclose(x, split.images.float() / 255, rtol=0, atol=1e-7)


def test_flip_is_a_flip() -> None:
    split = _ids_split(64)
    loader = TensorLoader(split, batch_size=64, train=True, augment=_aug(split, flip=True, normalise=False), seed=3)
    x, y = next(iter(loader))
    x, original = _bytes(x), split.images[y]
    same = (x == original).flatten(1).all(1)
    mirrored = (x == original.flip(3)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 10 < int(mirrored.sum()) < 54
    eval_loader = TensorLoader(split, batch_size=64, train=False, augment=_aug(split, flip=True, normalise=False))
    eval_x, _ = next(iter(eval_loader))
    assert torch.equal(_bytes(eval_x), split.images)  # no augmentation at eval


@pytest.mark.parametrize("flip", [False, True])
def test_crop_keeps_content_inside_the_padding(flip: bool) -> None:
    p = 3
    split = _ids_split(40)
    augment = _aug(split, crop_padding=p, flip=flip, normalise=False)
    loader = TensorLoader(split, batch_size=40, train=True, augment=augment, seed=1)
    x, y = next(iter(loader))
    x = _bytes(x)
    padded = F.pad(split.images.float(), (p,) * 4, mode="reflect").to(torch.uint8)  # torch's reflect padding
    _, _, h, w = split.images.shape

    def matches(img: torch.Tensor, window: torch.Tensor) -> bool:  # window (C, H, W): crop, then maybe mirror
        return torch.equal(img, window) or (flip and torch.equal(img, window.flip(2)))

    offsets = set()
    for img, i in zip(x, y.tolist(), strict=True):
        found = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if matches(img, padded[i, :, dy : dy + h, dx : dx + w])
        ]
        assert found, f"sample {i} is not a window of its padded image"
        offsets.update(found)
    assert len(offsets) > 10  # offsets vary


def test_random_crop_and_flip_functions() -> None:
    x = torch.randint(0, 256, (32, 2, 9, 9), dtype=torch.uint8)
    a = random_crop(x, 2, torch.Generator().manual_seed(0))
    b = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)
    zero = random_crop(x, 2, torch.Generator().manual_seed(0), mode="constant")
    assert (zero == 0).float().mean() > (x == 0).float().mean()  # zero borders came in
    flipped = random_flip(x, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(flipped, x.flip(3)) and torch.equal(random_flip(x, p=0.0), x)
    y = normalise(x, (0.1, 0.2), (0.3, 0.4))
    ref = (x.double() / 255 - torch.tensor([0.1, 0.2]).view(1, 2, 1, 1).double()) / torch.tensor([0.3, 0.4]).view(
        1, 2, 1, 1
    ).double()
    assert y.dtype == torch.float32 and torch.allclose(y.double(), ref, atol=1e-5)


def test_same_seed_same_order_and_epochs_differ() -> None:
    split = _ids_split(50)
    kwargs = dict(batch_size=10, train=True, augment=_aug(split, flip=True, crop_padding=2))
    a, b = TensorLoader(split, seed=5, **kwargs), TensorLoader(split, seed=5, **kwargs)
    ea, eb = _epoch(a), _epoch(b)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(ea, eb, strict=True))
    other = _epoch(TensorLoader(split, seed=6, **kwargs))
    assert not torch.equal(torch.cat([y for _, y in ea]), torch.cat([y for _, y in other]))
    second = _epoch(a)
    assert a.epoch == 2 and not torch.equal(torch.cat([y for _, y in ea]), torch.cat([y for _, y in second]))


@pytest.mark.parametrize("stop", [0, 2, 5])  # epoch start, mid-epoch, epoch end
def test_state_dict_round_trip_resumes_the_same_batches(stop: int) -> None:
    split = _ids_split(50)
    kwargs = dict(batch_size=10, train=True, augment=_aug(split, flip=True, crop_padding=2))
    a = TensorLoader(split, seed=7, **kwargs)
    _epoch(a)  # epoch 0
    it = iter(a)
    for _ in range(stop):  # part of epoch 1
        next(it)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)  # checkpoints go through torch.save / safetensors-style tensors
    expected = list(it) + _epoch(a) + _epoch(a)  # rest of epoch 1, epochs 2 and 3
    b = TensorLoader(split, seed=123, **kwargs)  # another seed: the state must override it
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer))
    assert b.epoch == (2 if stop == 5 else 1)
    got = _epoch(b) + _epoch(b) + ([] if stop == 5 else _epoch(b))
    if stop == 5:
        expected = expected[:10]  # epoch 1 was complete: resume at epoch 2
    assert len(got) == len(expected)
    assert all(torch.equal(xg, xe) and torch.equal(yg, ye) for (xg, yg), (xe, ye) in zip(got, expected, strict=True))


def test_abandoned_epoch_moves_on() -> None:
    loader = TensorLoader(_ids_split(50), batch_size=10, train=True, seed=0)
    first = next(iter(loader))[1]
    assert loader.epoch == 0
    again = next(iter(loader))[1]  # a new iteration starts epoch 1, not the rest of epoch 0
    assert loader.epoch == 1 and not torch.equal(first, again)


def test_subset_stratified_and_first_n() -> None:
    labels = torch.arange(1000) % 10
    labels[:100] = 0  # unbalanced: class 0 has 190 samples
    spec = DataSpec("s", 10, 1, (2, 2), (0.0,), (1.0,), tuple("0123456789"))
    split = ImageSplit(
        torch.arange(1000).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous(), labels, spec
    )
    small = subset(split, 100, seed=0)
    counts = torch.bincount(small.labels, minlength=10)
    full = torch.bincount(labels, minlength=10)
    assert len(small) == 100
    assert all(abs(c - 100 * f / 1000) < 1 for c, f in zip(counts.tolist(), full.tolist(), strict=True))
    assert torch.equal(subset(split, 100, seed=0).images, small.images)
    assert not torch.equal(subset(split, 100, seed=1).images, small.images)
    first = subset(split, 7, stratified=False)
    assert torch.equal(first.labels, labels[:7])
    with pytest.raises(ValueError):
        subset(split, 1001)


def test_subset_rounds_to_exactly_n() -> None:
    split = _ids_split(50)
    split = ImageSplit(
        split.images, split.labels % 3, DataSpec("s", 3, 3, (10, 12), (0.5,) * 3, (0.25,) * 3, ("a", "b", "c"))
    )
    for n in (1, 2, 7, 49, 50):
        assert len(subset(split, n)) == n


def test_image_split_validates() -> None:
    with pytest.raises(ValueError):
        ImageSplit(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int64), get_data_spec("mnist"))
    with pytest.raises(ValueError):
        ImageSplit(
            torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), get_data_spec("mnist")
        )


def test_loader_copies_nothing_on_cpu_without_pad() -> None:
    split = _ids_split(8)
    loader = TensorLoader(split, batch_size=4, train=False)
    assert loader.images.data_ptr() == split.images.data_ptr() and loader.img_size == (10, 12)
    assert loader.num_samples == 8


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_loader_matches_cpu() -> None:
    split = _ids_split(50)
    kwargs = dict(batch_size=16, train=True, augment=_aug(split, flip=True, crop_padding=2), pad=1, channels_last=True,
                  seed=4)
    cpu = _epoch(TensorLoader(split, device="cpu", **kwargs))
    gpu = _epoch(TensorLoader(split, device="cuda", **kwargs))
    assert all(xg.is_cuda and yg.is_cuda for xg, yg in gpu)
    for (xc, yc), (xg, yg) in zip(cpu, gpu, strict=True):
        assert torch.equal(yc, yg.cpu()) and torch.allclose(xc, xg.cpu(), atol=1e-6)
