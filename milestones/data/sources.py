"""Where datasets come from: one table row per dataset (:data:`SOURCES`) and one loader function per file format.

A row names the dataset's :class:`DataSpec`, the files of each split with their published checksums, the mirrors to
download them from, the folder they live in under the data root, and the function that turns them into uint8 tensors.
A new dataset is one more row plus, for a new file format, one more loader function. CIFAR-10/100 and the CIFAR-10
JPEG copy and exact subset are read by :mod:`.cifar`; any ``train|test/<class>/*.jpg`` folder or zip is a dataset too,
named ``"folder:<path>"`` (:mod:`.folder`).

Layouts searched under the data root ``<root>`` for the idx sets (MNIST, Fashion-MNIST, KMNIST), per file, in order:

* ``<root>/<folder>/<name>.gz``, the original files as published (the layout of ``shared/data``), or uncompressed;
* ``<root>/<TorchvisionClass>/raw/<name>``, torchvision's own layout (``MNIST``, ``FashionMNIST``, ``KMNIST``),
  uncompressed as torchvision extracts them, or still gzipped.

Local files are parsed, not checksummed: a re-gzipped copy of the right data is fine, and every parse checks the idx
magic number, the dimensions and the length, so a corrupt or truncated file fails with one line naming it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import gzip
import hashlib
import math
import os
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError
from . import augment, cifar
from .download import RemoteFile, download_file
from .folder import is_folder_name, open_folder
from .spec import DataSpec, ImageSplit, InputSpec, size_hw

ENV_ROOT = "MILESTONES_DATA"
ENV_MIRROR = "MILESTONES_MIRROR"
DEFAULT_ROOT = Path("~/.cache/milestones")
DOWNLOAD_HINT = "--download (download=True)"

Loader = Callable[..., tuple[Tensor, Tensor] | tuple[Tensor, Tensor, DataSpec]]


@dataclass(frozen=True)
class Source:
    """One dataset: what it is, where its files are and how to read them.

    Attributes:
        spec: The dataset's :class:`DataSpec`.
        load: ``load(source, split, root, *, download, mirrors, max_per_class, cache_dir) -> (images, labels)``,
            uint8 ``(N, C, H, W)`` and int64 ``(N,)``, or ``(images, labels, spec)`` when the files found are a
            variant of the dataset (the CIFAR-10 JPEG copy). ``max_per_class`` and ``cache_dir`` are hints a loader
            may use (decode less, cache decoded images) or ignore: :func:`get_dataset` applies the limit anyway.
        counts: Number of samples in each split, checked on every load.
        files: For each split, the files it needs, with their published checksums.
        mirrors: Base URLs to download ``files`` from, tried in order.
        folder: Folder under the data root that holds (or receives) the files.
        torchvision_folder: torchvision's class name for the dataset; its files live in ``<root>/<this>/raw``.
    """

    spec: DataSpec
    load: Loader
    counts: Mapping[str, int]
    files: Mapping[str, tuple[RemoteFile, ...]] = field(default_factory=dict)
    mirrors: tuple[str, ...] = ()
    folder: str = ""
    torchvision_folder: str | None = None


def resolve_root(root: str | Path | None = None) -> Path:
    """The data root: ``root`` if given, else the environment variable ``MILESTONES_DATA``, else ~/.cache/milestones."""
    chosen = root if root not in (None, "") else os.environ.get(ENV_ROOT) or DEFAULT_ROOT
    return Path(chosen).expanduser()


def _mirrors(source: Source, mirrors: Sequence[str] | None) -> tuple[str, ...]:
    """Explicit mirrors, else ``MILESTONES_MIRROR`` (comma-separated base URLs that replace the table's), else the
    table's."""
    if mirrors is not None:
        return tuple(mirrors)
    env = os.environ.get(ENV_MIRROR, "")
    override = tuple(m.strip() for m in env.split(",") if m.strip())
    return override or source.mirrors


def _corrupt(path: Path, problem: str) -> DataError:
    return DataError(
        f"{path}: {problem}; delete it and fetch a fresh copy with {DOWNLOAD_HINT}, "
        "or replace it with the original file"
    )


def read_idx(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Read an idx file of unsigned bytes (LeCun's MNIST format), gzipped or not, and check its shape.

    The format: two zero bytes, a type code (0x08 = ubyte), the number of dimensions, then each dimension as a
    big-endian uint32, then the data in C order.

    Args:
        path: The file; gzip is recognised by its magic bytes, not its suffix.
        shape: The expected array shape, e.g. ``(60000, 28, 28)``.

    Returns:
        A writable uint8 array of ``shape``.

    Raises:
        DataError: The file cannot be read, is not valid gzip, is truncated, or holds something else.
    """
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path} ({err.strerror}); check its permissions") from err
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except EOFError as err:
            raise _corrupt(path, "truncated gzip file (the stream ends early)") from err
        except (OSError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
            raise _corrupt(path, f"not a valid gzip file ({err})") from err
    ndim = len(shape)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _corrupt(path, f"only {len(raw)} bytes, too short for an idx header")
    magic = bytes([0, 0, 0x08, ndim])
    if raw[:4] != magic:
        raise _corrupt(
            path, f"wrong magic number 0x{raw[:4].hex()} (expected 0x{magic.hex()}, an idx{ndim}-ubyte file)"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if dims != shape:
        raise _corrupt(path, f"holds an array of shape {dims}, expected {shape}")
    expected = header + math.prod(shape)
    if len(raw) != expected:
        raise _corrupt(
            path, f"wrong length: {len(raw):,} bytes uncompressed, expected {expected:,} (truncated or corrupt)"
        )
    # copy: frombuffer on bytes is read-only, and torch.from_numpy wants a writable array
    return np.frombuffer(raw, dtype=np.uint8, count=expected - header, offset=header).reshape(shape).copy()


def _candidates(root: Path, source: Source, name: str) -> list[Path]:
    stem = name.removesuffix(".gz")
    paths = [root / source.folder / name, root / source.folder / stem]
    if source.torchvision_folder:
        raw = root / source.torchvision_folder / "raw"
        paths += [raw / stem, raw / name]
    return paths


def _find(root: Path, source: Source, name: str) -> Path | None:
    return next((p for p in _candidates(root, source, name) if p.is_file()), None)


def _missing_message(root: Path, source: Source, split: str, missing: Sequence[RemoteFile]) -> str:
    names = " and ".join(f.name for f in missing)
    where = f"{root / source.folder}/"
    alt = ""
    if source.torchvision_folder:
        alt = f" (torchvision's {root / source.torchvision_folder / 'raw'}/ also works)"
    return (
        f"{source.spec.name} {split} files not found: put {names} in {where}{alt}, or use {DOWNLOAD_HINT} to fetch them"
    )


def load_idx(
    source: Source, split: str, root: Path, *, download: bool, mirrors: Sequence[str], **_: object
) -> tuple[Tensor, Tensor]:
    """Load one split of an idx dataset (MNIST, Fashion-MNIST, KMNIST): ``source.files[split]`` = (images, labels)."""
    wanted = source.files[split]
    paths = {f.name: _find(root, source, f.name) for f in wanted}
    missing = [f for f in wanted if paths[f.name] is None]
    if missing:
        if not download:
            raise DataError(_missing_message(root, source, split, missing))
        for f in missing:
            paths[f.name] = download_file(f, mirrors, root / source.folder)
    image_file, label_file = wanted
    n, (h, w) = source.counts[split], source.spec.img_size
    images = read_idx(paths[image_file.name], (n, h, w))
    labels = read_idx(paths[label_file.name], (n,))
    if labels.max(initial=0) >= source.spec.num_classes:
        raise _corrupt(paths[label_file.name], f"label {labels.max()} out of range 0..{source.spec.num_classes - 1}")
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


DIGITS_SIZE = (32, 32)
DIGITS_TEST_FRACTION = 0.2
DIGITS_SEED = 0


@functools.lru_cache(maxsize=1)
def _digits_all() -> tuple[Tensor, Tensor]:
    """All 1,797 scikit-learn digits as (1797, 1, 32, 32) uint8 and their labels.

    The 8x8 images hold counts 0..16 (each pixel counts the set pixels of a 4x4 block of the 32x32 original bitmaps,
    UCI "Optical Recognition of Handwritten Digits"). We scale them to 0..255 (x * 255 / 16) and upsample to 32x32
    with bilinear interpolation (``align_corners=False``, antialias on), then round: a smooth, blurred digit of the
    size LeNet-5 expects, with no outside download.
    """
    from sklearn.datasets import load_digits  # lazy: scikit-learn takes a while to import and only digits needs it

    bunch = load_digits()
    x = torch.from_numpy(bunch.images).float().mul_(255 / 16).unsqueeze(1)  # (N, 1, 8, 8)
    x = F.interpolate(x, size=DIGITS_SIZE, mode="bilinear", align_corners=False, antialias=True)
    images = x.round_().clamp_(0, 255).to(torch.uint8)
    return images, torch.from_numpy(bunch.target.astype(np.int64))


def digits_test_mask(labels: Tensor, *, fraction: float = DIGITS_TEST_FRACTION, seed: int = DIGITS_SEED) -> Tensor:
    """The fixed held-out test split of the digits: a boolean mask over the 1,797 samples.

    Stratified: from each class the ``round(fraction * n_class)`` samples that come first when ordered by the BLAKE2b
    hash of ``f"{seed}:{index}"``. A hash, not a random generator, so the split never changes with numpy, torch or
    scikit-learn versions. With the defaults: 359 test and 1,438 train samples.
    """

    def key(i: int) -> bytes:
        return hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest()

    mask = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique().tolist():
        members = sorted(torch.nonzero(labels == c).flatten().tolist(), key=key)
        mask[members[: int(fraction * len(members) + 0.5)]] = True
    return mask


def load_digits_split(
    source: Source, split: str, root: Path, *, download: bool, mirrors: Sequence[str], **_: object
) -> tuple[Tensor, Tensor]:
    """Load one split of scikit-learn's bundled digits (no files, no download; ``root`` is unused)."""
    images, labels = _digits_all()
    test = digits_test_mask(labels)
    keep = test if split == "test" else ~test
    return images[keep], labels[keep]


DIGIT_CLASSES = tuple("0123456789")
IDX_NAMES = (
    ("train", "train-images-idx3-ubyte.gz"),
    ("train", "train-labels-idx1-ubyte.gz"),
    ("test", "t10k-images-idx3-ubyte.gz"),
    ("test", "t10k-labels-idx1-ubyte.gz"),
)


def _idx_files(md5: Sequence[str], sha256: Sequence[str | None] = (None,) * 4) -> dict[str, tuple[RemoteFile, ...]]:
    """The four files of an idx dataset, checksums in :data:`IDX_NAMES` order, as ``{split: (images, labels)}``."""
    files: dict[str, tuple[RemoteFile, ...]] = {}
    for (split, name), m, s in zip(IDX_NAMES, md5, sha256, strict=True):
        files[split] = (*files.get(split, ()), RemoteFile(name, md5=m, sha256=s))
    return files


# mean/std: MNIST measured on the 60,000 training images of shared/data (tests/test_data.py recomputes them);
# Fashion-MNIST and KMNIST: the commonly published training-set values (no copy of those sets here to check them).
# Checksums of the .gz files: md5 as in torchvision.datasets; MNIST's sha256 as in shared/data/README.md.
SOURCES: dict[str, Source] = {
    "mnist": Source(
        spec=DataSpec("mnist", 10, 1, (28, 28), (0.1307,), (0.3081,), DIGIT_CLASSES, digit_recipe="mnist"),
        load=load_idx,
        counts={"train": 60_000, "test": 10_000},
        files=_idx_files(
            md5=(
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ),
            sha256=(
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ),
        ),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        folder="mnist",
        torchvision_folder="MNIST",
    ),
    "fashion-mnist": Source(
        spec=DataSpec(
            name="fashion-mnist",
            num_classes=10,
            in_chans=1,
            img_size=(28, 28),
            mean=(0.2860,),
            std=(0.3530,),
            classes=(
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
        ),
        load=load_idx,
        counts={"train": 60_000, "test": 10_000},
        files=_idx_files(
            md5=(
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        folder="fashion-mnist",
        torchvision_folder="FashionMNIST",
    ),
    "kmnist": Source(
        spec=DataSpec(
            name="kmnist",
            num_classes=10,
            in_chans=1,
            img_size=(28, 28),
            mean=(0.1918,),
            std=(0.3483,),
            classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
            digit_recipe="mnist",  # made as MNIST was: 28x28, the character's centre of mass centred
        ),
        load=load_idx,
        counts={"train": 60_000, "test": 10_000},
        files=_idx_files(
            md5=(
                "bdb82020997e1d708af4cf47b453dcf7",
                "e144d726b3acfaa3e44228e80efcd344",
                "5c965bf0a639b31b8f53240b1b52f4d7",
                "7320c461ea6c1c855c0b718fb2a4b134",
            ),
        ),
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        folder="kmnist",
        torchvision_folder="KMNIST",
    ),
    # mean/std measured on the 1,438 training images after the 32x32 resize (tests/test_data.py recomputes them)
    "digits": Source(
        spec=DataSpec("digits", 10, 1, DIGITS_SIZE, (0.3052,), (0.3235,), DIGIT_CLASSES,
                      digit_recipe="sklearn-digits"),
        load=load_digits_split,
        counts={"train": 1_438, "test": 359},
    ),
    # official python version, else (CIFAR-10) the lossy JPEG copy; see cifar.py. md5s as in torchvision.datasets
    "cifar10": Source(
        spec=cifar.CIFAR10_SPEC,
        load=functools.partial(cifar.load_cifar, layout=cifar.CIFAR10),
        counts={"train": 50_000, "test": 10_000},
        files={"train": (cifar.CIFAR10.tarball,), "test": (cifar.CIFAR10.tarball,)},
        mirrors=cifar.MIRRORS,
        folder="cifar10",
    ),
    "cifar100": Source(
        spec=cifar.CIFAR100_SPEC,
        load=functools.partial(cifar.load_cifar, layout=cifar.CIFAR100),
        counts={"train": 50_000, "test": 10_000},
        files={"train": (cifar.CIFAR100.tarball,), "test": (cifar.CIFAR100.tarball,)},
        mirrors=cifar.MIRRORS,
        folder="cifar100",
    ),
    # the lossless subset of shared/data/cifar10/exact-subset: train images 0..3999, test images 0..999
    "cifar10-exact": Source(
        spec=cifar.CIFAR10_EXACT_SPEC,
        load=cifar.load_cifar10_exact,
        counts={"train": 4_000, "test": 1_000},
        folder="cifar10",
    ),
}


def _close(word: str, options: Sequence[str]) -> str:
    matches = difflib.get_close_matches(word, options, n=3, cutoff=0.5)
    return f"did you mean {', '.join(matches)}? " if matches else ""


def get_source(name: str) -> Source:
    """The :class:`Source` row for ``name`` (case-insensitive; ``_`` and ``-`` are the same).

    Raises:
        DataError: Unknown name, with close matches.
    """
    key = name.strip().lower().replace("_", "-")
    if key not in SOURCES:
        raise DataError(f"unknown dataset {name!r}; {_close(key, list(SOURCES))}known: {', '.join(SOURCES)}")
    return SOURCES[key]


def input_spec(record: Mapping[str, Any]) -> InputSpec:
    """The input contract of a checkpoint's ``meta["data"]`` (or :meth:`InputSpec.to_dict`'s record).

    A record from before the contract has no ``style``: it is what the dataset named by ``record["name"]`` declares
    in its source row (:attr:`DataSpec.digit_recipe`), photo for an unknown or folder dataset.
    """
    if "style" in record:
        return InputSpec.from_dict(record)
    source = SOURCES.get(str(record.get("name") or "").strip().lower().replace("_", "-"))
    recipe = source.spec.digit_recipe if source is not None else None
    return InputSpec.from_dict({**record, "style": "digit" if recipe else "photo", "recipe": recipe})


def get_data_spec(name: str) -> DataSpec:
    """The :class:`DataSpec` of a dataset, without loading it.

    For ``cifar10`` this is the official data's; a split loaded from the JPEG copy carries the same spec with
    ``variant="jpeg-q75"``. Image folders (``"folder:<path>"``) have no spec until loaded: use the split's.
    """
    if is_folder_name(name):
        raise DataError(f"an image folder's spec comes with its data: use get_dataset({name!r}, split).spec")
    return get_source(name).spec


def list_datasets() -> list[str]:
    """Names accepted by :func:`get_dataset`, in table order (besides ``"folder:<path>"``)."""
    return list(SOURCES)


def first_per_class(labels: Tensor, n: int) -> Tensor:
    """Boolean mask keeping the first ``n`` samples of each class, in the split's order."""
    labels = labels.cpu()
    order = torch.sort(labels, stable=True).indices
    sorted_labels = labels[order]
    starts = torch.searchsorted(sorted_labels, sorted_labels, right=False)  # first position of each sample's class
    rank = torch.empty_like(labels)
    rank[order] = torch.arange(len(labels)) - starts
    return rank < n


def get_dataset(
    name: str,
    split: str,
    *,
    root: str | Path | None = None,
    download: bool = False,
    mirrors: Sequence[str] | None = None,
    image_size: int | Sequence[int] | None = None,
    max_per_class: int | None = None,
    cache_dir: str | Path | None = None,
    channels: int | None = None,
) -> ImageSplit:
    """Load one split of a dataset into memory as uint8 tensors.

    Args:
        name: A name from :func:`list_datasets` (``mnist``, ``fashion-mnist``, ``kmnist``, ``digits``, ``cifar10``,
            ``cifar100``, ``cifar10-exact``), or ``"folder:<path>"`` for an image folder or zip laid out as
            ``<split>/<class>/<image>`` (a relative path is looked for in the working directory, then the data root).
        split: ``"train"`` or ``"test"`` (an image folder: any split folder it has).
        root: Data root; see :func:`resolve_root`. Unused by ``digits``.
        download: Fetch missing files from the dataset's mirrors (checksummed) into ``<root>/<folder>/``.
        mirrors: Base URLs to download from instead of the table's; default: the environment variable
            ``MILESTONES_MIRROR`` (comma-separated) if set, else the table's.
        image_size: ``(H, W)`` or an int to resize every image to (bilinear, antialiased; an image folder scales
            each image's shorter side and crops the centre). Needed for an image folder of mixed sizes.
        max_per_class: Keep only the first ``max_per_class`` images of each class, in the split's order (quick runs,
            tests). An image folder or the CIFAR-10 JPEG copy then decodes only those.
        cache_dir: Where decoded images are cached (image folders, the CIFAR-10 JPEG copy); default: the
            environment variable ``MILESTONES_CACHE``, else beside the source, else under the data root, else
            ``~/.cache/milestones/cache`` (see :mod:`milestones.data.cache`).
        channels: An image folder's images decoded as RGB (3) or grayscale (1), converted where they are of the
            other kind (a logged warning says so once); default: as its first image. Other datasets keep their own.

    Returns:
        The split: ``(N, C, H, W)`` uint8 images, ``(N,)`` int64 labels and the dataset's spec (for a variant of
        the dataset, such as the CIFAR-10 JPEG copy, with its ``variant`` and ``note`` set).

    Raises:
        DataError: Unknown name or split, missing files (one line: which files go where), a failed download, or a
            corrupt or truncated file (one line naming it).
    """
    if max_per_class is not None and max_per_class < 1:
        raise ValueError(f"max_per_class must be positive, got {max_per_class}")
    size = size_hw(image_size)
    if is_folder_name(name):
        return open_folder(name, split, root=resolve_root(root), image_size=size, channels=channels, in_memory=True,
                           max_per_class=max_per_class, cache_dir=cache_dir)
    source = get_source(name)
    if split not in source.counts:
        raise DataError(
            f"unknown split {split!r} for {source.spec.name}; {_close(split, list(source.counts))}"
            f"known: {', '.join(source.counts)}"
        )
    loaded = source.load(
        source,
        split,
        resolve_root(root),
        download=download,
        mirrors=_mirrors(source, mirrors),
        max_per_class=max_per_class,
        cache_dir=cache_dir,
    )
    images, labels, spec = loaded if len(loaded) == 3 else (*loaded, source.spec)
    if max_per_class is None:
        if len(labels) != source.counts[split]:  # load_idx checks this per file
            raise DataError(f"{spec.full_name} {split}: {len(labels)} samples, expected {source.counts[split]}")
    else:
        keep = first_per_class(labels, max_per_class)
        if not bool(keep.all()):
            images, labels = images[keep], labels[keep]
    if size is not None and tuple(images.shape[2:]) != size:
        images = augment.resize(images, size)
        spec = dataclasses.replace(spec, img_size=size)
    return ImageSplit(images, labels, spec)
