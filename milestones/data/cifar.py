"""CIFAR-10 and CIFAR-100 (Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009).

Three ways to the data, tried in this order by ``get_dataset("cifar10" | "cifar100", split)``:

1. **The official python version**, laid out as torchvision's ``CIFAR10``/``CIFAR100`` leave it: the folder
   ``cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``, ``test_batch``, ``batches.meta``) or
   ``cifar-100-python/`` (``train``, ``test``, ``meta``), in ``<root>/cifar10/`` (``<root>/cifar100/``) or directly
   in ``<root>/`` (torchvision's ``root``). A tarball that is there but not extracted is extracted first. The pickles
   are read with an unpickler that only builds numpy arrays and plain containers, never arbitrary objects.
2. **The lossy JPEG copy of CIFAR-10** (CIFAR-10 only, and only without ``download=True``):
   ``<root>/cifar10/cifar10-jpg-q75.zip``, ``train|test/<class>/NNNN.jpg`` (the layout of ``shared/data``; see its
   README). Its images are JPEG quality 75: on average 5.8/255 off the real pixels (PSNR 30 dB). The split's spec says
   so (``variant="jpeg-q75"``, :attr:`DataSpec.full_name` ``"cifar10 (jpeg-q75)"``) and every result on it must.
   Decoded once into the uint8 cache (:mod:`.cache`). Order: ``NNNN`` counts a class's earlier images in the original
   order, so with ``exact-subset/cifar10_labels_51000.txt`` beside the zip (all 50,000 original train labels) the
   **train split is put back in the original order** (image ``i`` is the ``k``-th of class ``y_i``, ``k`` the count
   of ``y_i`` among labels ``0..i-1``); without it, train is in class-folder order (all airplanes, then all
   automobiles, ...). Test is always in class-folder order: only its first 1,000 labels are known.
3. **Download** (``download=True``): the official tarball from the Toronto mirror, md5-checked by
   :func:`~milestones.data.download.download_file`, then extracted with every member checked (no absolute paths,
   no ``..``, no links or devices), into ``<root>/cifar10/``.

``cifar10-exact`` is the lossless subset in ``shared/data/cifar10/exact-subset/`` (ConvNetJS PNG sprites): train
images 0..3,999 and test images 0..999 with their real pixels, for checks where exact data matters.
"""

from __future__ import annotations

import codecs
import dataclasses
import os
import pickle
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .download import RemoteFile, download_file
from .folder import decode_folder
from .spec import DataSpec

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# the fine label names of cifar-100-python/meta, in label order (alphabetical)
CIFAR100_CLASSES = tuple(
    (
        "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
        "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup "
        "dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower "
        "leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange "
        "orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit "
        "raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel "
        "streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip "
        "turtle wardrobe whale willow_tree wolf woman worm"
    ).split()
)

# Per-channel mean and population std of the 50,000 official training images on the 0..1 scale, the values torchvision
# and timm users quote (tests/test_cifar.py checks CIFAR-10's against the JPEG copy and the exact subset).
CIFAR10_SPEC = DataSpec("cifar10", 10, 3, (32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), CIFAR10_CLASSES)
CIFAR100_SPEC = DataSpec(
    "cifar100", 100, 3, (32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), CIFAR100_CLASSES
)
JPEG_VARIANT = "jpeg-q75"
EXACT_VARIANT = "exact-subset"
CIFAR10_EXACT_SPEC = dataclasses.replace(
    CIFAR10_SPEC,
    name="cifar10-exact",
    variant=EXACT_VARIANT,
    note="lossless CIFAR-10 pixels (ConvNetJS sprites): train images 0..3999, test images 0..999, original order",
)
MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)


@dataclass(frozen=True)
class CifarLayout:
    """Where the official python version keeps one CIFAR set's data.

    Attributes:
        tarball: The published archive, with torchvision's md5.
        dirname: The folder the archive extracts to.
        files: Batch files of each split, in order.
        label_key: Key of the labels in each batch (``labels``; CIFAR-100: ``fine_labels``).
        meta: ``(file, key)`` of the class names.
        jpeg_zip: Name of a lossy JPEG copy in the dataset folder, tried when the official files are missing.
    """

    tarball: RemoteFile
    dirname: str
    files: Mapping[str, tuple[str, ...]]
    label_key: str
    meta: tuple[str, str]
    jpeg_zip: str | None = None


CIFAR10 = CifarLayout(
    tarball=RemoteFile("cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a"),
    dirname="cifar-10-batches-py",
    files={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    label_key="labels",
    meta=("batches.meta", "label_names"),
    jpeg_zip="cifar10-jpg-q75.zip",
)
CIFAR100 = CifarLayout(
    tarball=RemoteFile("cifar-100-python.tar.gz", md5="eb9058c3a382ffc7106e4002c42a8d85"),
    dirname="cifar-100-python",
    files={"train": ("train",), "test": ("test",)},
    label_key="fine_labels",
    meta=("meta", "fine_label_names"),
)
LABELS_FILE = Path("exact-subset") / "cifar10_labels_51000.txt"
EXACT_SHEETS = {"train": ("cifar10_batch_0.png", "cifar10_batch_1.png", "cifar10_batch_2.png",
                          "cifar10_batch_3.png"), "test": ("cifar10_batch_50.png",)}  # fmt: skip


_RECONSTRUCT = np.ndarray.__reduce__(np.empty(0))[0]  # numpy's array-rebuilding function, whatever its module
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # written by numpy 1.x (and Python 2, as published)
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # written by numpy 2.x
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how protocol 2 stores bytes written by Python 3
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays only: a batch file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _corrupt(path: Path, problem: str) -> DataError:
    return DataError(f"{path}: {problem}; delete it and fetch a fresh copy with --download (download=True)")


def read_pickle(path: Path) -> dict[str, Any]:
    """Read one CIFAR python batch or meta file (a pickled dict), with string keys.

    The published files were pickled by Python 2; ``latin1`` decodes their byte strings (numpy's documented way to
    read Python 2 arrays). Keys that arrive as bytes are decoded too.

    Raises:
        DataError: Unreadable, not a pickled dict, or holding something other than arrays and plain values.
    """
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except OSError as err:
        raise DataError(f"cannot read {path} ({err.strerror}); check its permissions") from err
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise _corrupt(path, f"not a CIFAR python batch ({err})") from err
    if not isinstance(obj, dict):
        raise _corrupt(path, f"holds a {type(obj).__name__}, expected a dict")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of one batch file.

    Each row of ``data`` is one image: 1,024 red values, then green, then blue, each plane row-major, so a plain
    reshape gives CHW.
    """
    batch = read_pickle(path)
    if "data" not in batch or label_key not in batch:
        raise _corrupt(path, f"no 'data' and {label_key!r} entries (found {', '.join(map(str, batch)) or 'none'})")
    data, labels = np.asarray(batch["data"]), np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise _corrupt(path, f"data is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    if labels.shape != (len(data),):
        raise _corrupt(path, f"{labels.size} labels for {len(data)} images")
    if len(labels) and not 0 <= labels.min() <= labels.max() < num_classes:
        raise _corrupt(path, f"label out of range 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive (any compression) into ``dest``, refusing members that could land outside it.

    Only regular files and folders with relative paths free of ``..`` are allowed: an absolute path, a ``..``, a
    symbolic or hard link, a device or a FIFO anywhere in the archive rejects the whole archive before anything is
    written (the attacks of CVE-2007-4559). Files go to a temporary folder in ``dest`` first and are moved into place
    only when all of them are out, so an interrupted extraction leaves no half-written data folder.

    Raises:
        DataError: An unsafe member, or an archive that cannot be read.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                parts = PurePosixPath(m.name.replace("\\", "/")).parts
                if not (m.isfile() or m.isdir()):
                    raise DataError(f"{archive}: refusing to extract {m.name!r}, which is not a plain file or folder")
                if m.name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                    raise DataError(f"{archive}: refusing to extract {m.name!r}, which points outside the folder")
            dest.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
            try:
                for m in members:
                    target = tmp.joinpath(*PurePosixPath(m.name).parts)
                    if m.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(m) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                for folder, _, files in os.walk(tmp):  # move everything into place, merging with what is there
                    rel = Path(folder).relative_to(tmp)
                    (dest / rel).mkdir(parents=True, exist_ok=True)
                    for name in files:
                        os.replace(Path(folder) / name, dest / rel / name)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        raise _corrupt(archive, f"cannot extract ({err})") from err


def _official_dir(root: Path, folder: str, layout: CifarLayout, split: str) -> Path | None:
    """The first extracted official folder holding every batch file of ``split``."""
    for base in (root / folder, root):
        d = base / layout.dirname
        if all((d / name).is_file() for name in layout.files[split]):
            return d
    return None


def _read_official(folder: Path, layout: CifarLayout, split: str, spec: DataSpec) -> tuple[Tensor, Tensor]:
    meta = folder / layout.meta[0]
    if meta.is_file():  # the class names, when present, must be the ones we label with
        names = tuple(read_pickle(meta).get(layout.meta[1], ()))
        if names != spec.classes:
            raise _corrupt(meta, f"class names {names[:3]}... differ from {spec.name}'s {spec.classes[:3]}...")
    parts = [read_cifar_batch(folder / name, layout.label_key, spec.num_classes) for name in layout.files[split]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)


def _read_label_list(path: Path) -> np.ndarray:
    """All 51,000 labels of ``cifar10_labels_51000.txt``: the 50,000 train labels, then the first 1,000 test labels.

    Raises:
        DataError: Not 51,000 integer lines in 0..9.
    """
    try:
        labels = np.loadtxt(path, dtype=np.int64, ndmin=1)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read the CIFAR-10 label list ({err})") from err
    if labels.shape != (51_000,) or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path}: expected 51,000 labels in 0..9, one a line, got {labels.size}")
    return labels


def read_train_labels(path: Path) -> np.ndarray:
    """The 50,000 CIFAR-10 train labels, in the original order, from ``cifar10_labels_51000.txt``.

    Raises:
        DataError: Not 51,000 integer lines in 0..9.
    """
    return _read_label_list(path)[:50_000]


def original_order(labels: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """Positions in a class-major array (``counts[c]`` images of class ``c``, each class in its original order) of
    the images of the original sequence ``labels``, skipping images beyond a class's count.

    Image ``i`` is the ``k``-th of class ``labels[i]``, where ``k`` counts ``labels[i]`` among ``labels[:i]``.
    """
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(labels), dtype=np.int64)
    for c in range(len(counts)):
        where = np.flatnonzero(labels == c)
        rank[where] = np.arange(len(where))
    keep = rank < np.asarray(counts)[labels]
    return offsets[labels[keep]] + rank[keep]


def load_cifar10_jpeg(
    path: Path,
    split: str,
    *,
    root: Path | None = None,
    max_per_class: int | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[Tensor, Tensor, DataSpec]:
    """One split of the CIFAR-10 JPEG copy (``cifar10-jpg-q75.zip``), in the order the module docstring describes.

    Args:
        path: The zip file.
        split: ``"train"`` or ``"test"``.
        root: Data root (a fallback place for the decode cache).
        max_per_class: Decode only the first images of each class in the original order (those numbered below it).
        cache_dir: Decode cache folder (see :mod:`.cache`).

    Returns:
        ``(images, labels, spec)``; the spec is CIFAR-10's with ``variant="jpeg-q75"`` and a note on the order.
    """
    images, labels, classes = decode_folder(path, split, max_per_class=max_per_class, root=root, cache_dir=cache_dir)
    if classes != CIFAR10_CLASSES:
        raise DataError(f"{path}: class folders {', '.join(classes)} are not CIFAR-10's {', '.join(CIFAR10_CLASSES)}")
    if tuple(images.shape[1:]) != (3, 32, 32):
        raise DataError(f"{path}: images are {tuple(images.shape[1:])}, expected (3, 32, 32)")
    label_file = path.parent / LABELS_FILE
    has_order = label_file.is_file()
    if has_order:
        order = f"train in the original order (rebuilt from {LABELS_FILE}), test in class-folder order"
    else:
        order = "train and test in class-folder order (no exact-subset/cifar10_labels_51000.txt to rebuild train's)"
    if split == "train" and has_order:
        original = read_train_labels(label_file)
        counts = torch.bincount(labels, minlength=10).tolist()
        available = np.bincount(original, minlength=10)
        if any(n > a or (max_per_class is None and n != a) for n, a in zip(counts, available, strict=True)):
            raise DataError(f"{path}: per-class counts {counts} do not fit the label list {label_file}")
        index = torch.from_numpy(original_order(original, counts))
        images, labels = images[index], labels[index]
    note = f"lossy JPEG (quality 75) copy of CIFAR-10, {path.name}: not the official pixels; {order}"
    return images, labels, dataclasses.replace(CIFAR10_SPEC, variant=JPEG_VARIANT, note=note)


def load_cifar(
    source: Any,
    split: str,
    root: Path,
    *,
    download: bool,
    mirrors: Sequence[str],
    layout: CifarLayout,
    max_per_class: int | None = None,
    cache_dir: str | Path | None = None,
    **_: Any,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, DataSpec]:
    """Load one split of CIFAR-10/100 (the ``load`` of their ``SOURCES`` rows): official files, else a local tarball,
    else (CIFAR-10, no ``download``) the JPEG copy, else a download."""
    spec = source.spec
    folder = _official_dir(root, source.folder, layout, split)
    if folder is None:
        tarball = next(
            (p for p in (root / source.folder / layout.tarball.name, root / layout.tarball.name) if p.is_file()), None
        )
        jpeg = root / source.folder / layout.jpeg_zip if layout.jpeg_zip else None
        if tarball is None and not download and jpeg is not None and jpeg.is_file():
            return load_cifar10_jpeg(jpeg, split, root=root, max_per_class=max_per_class, cache_dir=cache_dir)
        if tarball is None and not download:
            alt = f", or the JPEG copy {layout.jpeg_zip}" if layout.jpeg_zip else ""
            raise DataError(
                f"{spec.name} {split} files not found: put {layout.tarball.name} (or its extracted "
                f"{layout.dirname}/) in {root / source.folder}/{alt}, or use --download (download=True) to fetch it"
            )
        if tarball is None:
            tarball = download_file(source.files[split][0], mirrors, root / source.folder)
        safe_extract(tarball, tarball.parent)
        folder = tarball.parent / layout.dirname
        missing = [name for name in layout.files[split] if not (folder / name).is_file()]
        if missing:
            raise _corrupt(tarball, f"has no {layout.dirname}/{missing[0]}")
    return _read_official(folder, layout, split, spec)


def load_cifar10_exact(source: Any, split: str, root: Path, **_: Any) -> tuple[Tensor, Tensor]:
    """The exact CIFAR-10 subset from ``<root>/cifar10/exact-subset/``: PNG sprite sheets, one image per row.

    Row ``r`` of a 1024x1000 RGB sheet is one image: pixel ``j`` of the row is pixel ``j`` of the 32x32 image in
    row-major order, so the sheet reshapes to ``(1000, 32, 32, 3)``.
    """
    from PIL import Image

    folder = root / source.folder / "exact-subset"
    names = EXACT_SHEETS[split]
    needed = [folder / n for n in names] + [root / source.folder / LABELS_FILE]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise DataError(f"cifar10-exact {split} files not found: put {' and '.join(missing)} in {folder}/")
    sheets = []
    for path in needed[:-1]:
        try:
            with Image.open(path) as img:
                sheet = np.asarray(img.convert("RGB"))
        except OSError as err:
            raise DataError(f"{path}: not a readable PNG ({err})") from err
        if sheet.shape != (1000, 1024, 3):
            raise DataError(f"{path}: a {sheet.shape[1]}x{sheet.shape[0]} image, expected a 1024x1000 sprite sheet")
        sheets.append(sheet.reshape(1000, 32, 32, 3))
    images = torch.from_numpy(np.concatenate(sheets)).permute(0, 3, 1, 2).contiguous()
    all_labels = _read_label_list(needed[-1])
    labels = all_labels[:4000] if split == "train" else all_labels[50_000:]
    return images, torch.from_numpy(labels.copy())


__all__ = [
    "CIFAR10",
    "CIFAR100",
    "CIFAR100_SPEC",
    "CIFAR10_EXACT_SPEC",
    "CIFAR10_SPEC",
    "MIRRORS",
    "CifarLayout",
    "load_cifar",
    "load_cifar10_exact",
    "load_cifar10_jpeg",
    "original_order",
    "read_cifar_batch",
    "read_pickle",
    "read_train_labels",
    "safe_extract",
]
