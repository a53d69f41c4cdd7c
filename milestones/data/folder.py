"""Image-folder datasets: ``<source>/<split>/<class>/*.jpg|png``, where ``<source>`` is a directory or a zip file.

    >>> train = get_dataset("folder:~/data/imagenette2-160.zip", "train", image_size=128)  # through sources.py
    >>> loader = folder_loader("~/data/imagenet", "train", batch_size=256, train=True, image_size=224)  # streams
    >>> split = open_folder("folder:photos", "test", image_size=224)  # the way in: an ImageSplit, or a FolderDataset

This is torchvision's ``ImageFolder`` layout. Class names are the sorted folder names of the ``train`` split (of the
requested split when there is no ``train``), so every split labels a class alike; within a class, files are taken in
natural order (``img2`` before ``img10``), recursively. Inside a zip the split folder may sit under one common prefix
(``imagenette2-160/train/...``). The CIFAR-10 JPEG copy in ``shared/data`` has exactly this layout.

Two ways to use one:

* In memory (:func:`decode_folder`, ``get_dataset("folder:...")``): every image is decoded once into a uint8 tensor,
  resized to ``image_size`` if given (shorter side, then a centre crop), and cached (see :mod:`.cache`), so that a
  later load reads one file: the 60,000 CIFAR-10 JPEGs take about 10 s to decode on a busy 2-core CPU and under
  half a second to load again.
* Streamed (:class:`StreamingLoader`, for sets larger than memory): a ``torch.utils.data.DataLoader`` whose workers
  read and decode each file with ``torchvision.io``, resized to ``image_size``; the batch is then augmented by the
  same :class:`~milestones.data.batch_augment.BatchAugment` as :class:`~milestones.data.loader.TensorLoader`'s.

:func:`open_folder` is the one way in: it decides between the two (by size, unless told) and returns the split
in memory or the dataset to stream; :func:`folder_loader` opens a split and batches it.

Decoding uses ``torchvision.io`` (libjpeg-turbo, libpng), about four times faster than PIL per CIFAR image and
pixel-identical to it on the CIFAR-10 JPEG copy (``tests/test_cifar.py`` checks); formats it does not read (BMP, TIFF,
...) go through PIL, and so does everything once torchvision drops its decoders (deprecated in 0.29 for TorchCodec).

Images are decoded to ``channels``: 3 (RGB) or 1 (grayscale). A training run asks for its model's ``in_chans`` when
the model has one (a fine-tuned LeNet-5 reads a folder as grayscale), else the folder's own, judged from its first
image (grayscale if that one is). Images of the other kind are converted, and a warning says so once per folder.

Normalisation defaults to the ImageNet statistics, the usual choice for an arbitrary photo set; set
``data.mean``/``data.std`` in a run config to use a dataset's own.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import DataError
from ..progress import progress
from . import augment, cache
from .batch_augment import BatchAugment
from .loader import TensorLoader
from .spec import DataSpec, ImageSplit, size_hw

PREFIX = "folder:"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
# ImageNet training-set statistics (torchvision's and timm's defaults); for one channel, their mean
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRAY_MEAN, GRAY_STD = (0.449,), (0.226,)
# PIL modes of one-channel images (with or without alpha); every other mode is decoded as colour
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

log = logging.getLogger(__name__)
_TOLD: set[tuple[str, int, int]] = set()  # (folder, its channels, the channels asked for): conversions said once


def is_folder_name(name: str) -> bool:
    """Whether a dataset name means an image folder: ``"folder:<path>"``."""
    return name.startswith(PREFIX)


def resolve_folder(name: str | Path, root: Path | None = None) -> Path:
    """The directory or zip file that ``"folder:<path>"`` (or a plain path) names.

    A relative path is taken from the working directory, else from the data root ``root``.

    Raises:
        DataError: Neither exists.
    """
    text = str(name)
    text = text[len(PREFIX) :] if text.startswith(PREFIX) else text
    path = Path(text).expanduser()
    if path.exists() or path.is_absolute() or root is None:
        if not path.exists():
            raise DataError(f"image folder {path} not found: give a directory or .zip holding train/<class>/*.jpg")
        return path
    under_root = Path(root) / path
    if not under_root.exists():
        raise DataError(f"image folder {text} not found in the working directory nor in the data root {root}")
    return under_root


def _natural_key(text: str) -> list[Any]:
    """Sort key that orders digit runs by value: ``img2`` before ``img10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _is_image(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


@dataclass(frozen=True)
class FolderIndex:
    """The files of one split of an image folder, in dataset order, and their labels.

    Attributes:
        source: The directory or zip file.
        split: The split folder's name (``"train"``).
        classes: Class names, indexed by label.
        files: Per sample, a zip member name or a path relative to ``source``.
        labels: Per sample, its label.
    """

    source: Path
    split: str
    classes: tuple[str, ...]
    files: tuple[str, ...]
    labels: tuple[int, ...]

    @property
    def is_zip(self) -> bool:
        return self.source.is_file()

    def __len__(self) -> int:
        return len(self.files)


def _open_zip(source: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as err:
        raise DataError(f"{source}: not a readable zip file ({err})") from err


def _zip_tree(zf: zipfile.ZipFile, source: Path) -> dict[str, dict[str, list[str]]]:
    """``{split: {class: [member, ...]}}`` of a zip laid out as ``[prefix/]<split>/<class>/.../<image>``."""
    names = [n for n in zf.namelist() if not n.endswith("/") and _is_image(n)]
    names = [n for n in names if not n.startswith("__MACOSX/")]
    # the prefix: everything above the split folders, the same for every image (e.g. "imagenette2-160/")
    prefixes = {n.count("/") - 2 for n in names if n.count("/") >= 2}
    if not prefixes:
        raise DataError(f"{source}: no images in <split>/<class>/ folders")
    depth = min(prefixes)
    tree: dict[str, dict[str, list[str]]] = {}
    heads = set()
    for n in names:
        parts = n.split("/")
        if len(parts) < depth + 3:
            continue
        heads.add("/".join(parts[:depth]))
        tree.setdefault(parts[depth], {}).setdefault(parts[depth + 1], []).append(n)
    if len(heads) > 1:
        raise DataError(f"{source}: images under several top folders ({', '.join(sorted(heads)[:3])}, ...)")
    return tree


def _dir_classes(split_dir: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))


def _dir_files(class_dir: Path, source: Path) -> list[str]:
    files = []
    for folder, subdirs, names in os.walk(class_dir, followlinks=True):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        files += [os.path.relpath(os.path.join(folder, n), source) for n in names if _is_image(n)]
    return files


def index_folder(
    source: Path, split: str, *, max_per_class: int | None = None, zf: zipfile.ZipFile | None = None
) -> FolderIndex:
    """List one split of an image folder (directory or zip) without decoding anything.

    Args:
        source: Directory or zip holding ``<split>/<class>/...``.
        split: The split folder to list.
        max_per_class: Keep only the first ``max_per_class`` files of each class (natural order).
        zf: ``source`` already opened as a zip (reading a zip's directory of 60,000 names takes a second or more).

    Raises:
        DataError: No such split, no class folders, or a class of this split that ``train`` lacks.
    """
    if source.is_file():
        if zf is None:
            with _open_zip(source) as opened:
                tree = _zip_tree(opened, source)
        else:
            tree = _zip_tree(zf, source)
        found = sorted(tree)
        members = tree.get(split)
        class_names = sorted(tree.get("train", members or {}))
    else:
        found = _dir_classes(source)
        members = None
        if (source / split).is_dir():
            members = {c: _dir_files(source / split / c, source) for c in _dir_classes(source / split)}
        class_names = _dir_classes(source / "train") if (source / "train").is_dir() else sorted(members or {})
    if not members:
        raise DataError(
            f"{source}: no {split!r} split with class folders (found: {', '.join(found) or 'nothing'}); "
            f"expected {split}/<class>/<image>"
        )
    extra = sorted(set(members) - set(class_names))
    if extra:
        raise DataError(f"{source}: {split} has classes that train lacks: {', '.join(extra[:5])}")
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        chosen = sorted(members.get(name, []), key=_natural_key)[:max_per_class]
        files += chosen
        labels += [label] * len(chosen)
    return FolderIndex(source, split, tuple(class_names), tuple(files), tuple(labels))


def resize_center_crop(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Scale uint8 ``image`` (C, H, W) so that it covers ``size`` (its shorter side fits), then crop the centre.

    Bilinear with antialiasing (:func:`augment.resize`). Equal to a plain resize when the aspect ratios agree.
    """
    h, w = image.shape[-2:]
    th, tw = size
    if (h, w) == (th, tw):
        return image
    scale = max(th / h, tw / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    image = augment.resize(image.unsqueeze(0), (nh, nw))[0]
    top, left = int(round((nh - th) / 2)), int(round((nw - tw) / 2))  # torchvision's center_crop rounding
    return image[:, top : top + th, left : left + tw]


def _torchvision_io() -> Any:
    """``torchvision.io`` if it still decodes images, else None (its decoders are deprecated since 0.29)."""
    try:
        from torchvision import io as tv_io

        return tv_io if hasattr(tv_io, "decode_jpeg") and hasattr(tv_io, "decode_image") else None
    except ImportError:
        return None


def _decode_pil(data: bytes, channels: int, name: str) -> Tensor:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            array = np.asarray(img.convert("RGB" if channels == 3 else "L"))
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{name}: not a readable image ({err})") from err
    tensor = torch.from_numpy(array.copy())
    return tensor.permute(2, 0, 1).contiguous() if tensor.ndim == 3 else tensor.unsqueeze(0)


def image_channels(data: bytes) -> int:
    """1 if encoded image ``data`` is grayscale (with or without alpha), else 3; read from its header (PIL)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return 1 if img.mode in _GRAY_MODES else 3
    except (UnidentifiedImageError, OSError, ValueError):
        return 3  # decoding it will say what is wrong


def _resolve_channels(source: Path, first: str, data: bytes, channels: int | None) -> tuple[int, int]:
    """``(channels to decode to, the folder's own)``: ``channels``, or the folder's own (its first image's) when None.
    A conversion is logged once per folder and direction."""
    own = image_channels(data)
    if channels is None:
        return own, own
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    _say_converted(source, first, own, channels)
    return channels, own


def _say_converted(source: Path, first: str, own: int, channels: int) -> None:
    key = (str(source), own, channels)
    if own == channels or key in _TOLD:
        return
    _TOLD.add(key)
    kind = {1: "grayscale", 3: "RGB"}
    how = "converting them to grayscale" if channels == 1 else "repeating their gray channel as R, G and B"
    log.warning("image folder %s holds %s images (its first: %s) and the model takes %d-channel input: %s",
                source, kind[own], first, channels, how)


def decode_image(data: bytes, *, channels: int = 3, name: str = "image") -> Tensor:
    """Decode encoded image bytes to a uint8 ``(channels, H, W)`` tensor (RGB or grayscale).

    ``torchvision.io`` first (JPEG, PNG, GIF, WebP; libjpeg-turbo, about 4x faster than PIL per CIFAR image and
    pixel-identical to it there); PIL for other formats, or where torchvision no longer decodes.

    Raises:
        DataError: Neither can read it (one line naming ``name``).
    """
    return _decode_many([data], channels, [name])[0]


def _decode_many(datas: list[bytes], channels: int, names: list[str]) -> list[Tensor]:
    """Decode a chunk of files: JPEGs in one ``decode_jpeg`` call (less per-image overhead), the rest one by one."""
    tv_io = _torchvision_io()
    if tv_io is None:
        return [_decode_pil(d, channels, n) for d, n in zip(datas, names, strict=True)]
    mode = tv_io.ImageReadMode.RGB if channels == 3 else tv_io.ImageReadMode.GRAY
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points to TorchCodec; still works
        if all(d[:2] == b"\xff\xd8" for d in datas):
            try:
                return tv_io.decode_jpeg([torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas], mode=mode)
            except RuntimeError:
                pass  # one of them is damaged or unusual: find it below, one at a time
        out = []
        for d, n in zip(datas, names, strict=True):
            try:
                out.append(tv_io.decode_image(torch.frombuffer(bytearray(d), dtype=torch.uint8), mode=mode))
            except RuntimeError:
                out.append(_decode_pil(d, channels, n))
        return out


class _Reader:
    """Reads files of a :class:`FolderIndex`; a zip is opened lazily, once per process (DataLoader workers)."""

    def __init__(self, source: Path, zf: zipfile.ZipFile | None = None) -> None:
        self.source = source
        self._zip = zf
        self._pid = os.getpid() if zf is not None else -1

    def read(self, name: str) -> bytes:
        if not self.source.is_file():
            return (self.source / name).read_bytes()
        if self._zip is None or self._pid != os.getpid():
            self._zip = _open_zip(self.source)
            self._pid = os.getpid()
        return self._zip.read(name)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __getstate__(self) -> dict[str, Any]:  # a ZipFile cannot be pickled to a spawned worker
        return {"source": self.source, "_zip": None, "_pid": -1}


def _decode_all(
    index: FolderIndex, size: tuple[int, int] | None, channels: int | None, zf: zipfile.ZipFile | None = None
) -> tuple[Tensor, int]:
    """Decode every file of ``index`` into one ``(N, C, H, W)`` uint8 tensor, reporting progress through
    :mod:`milestones.progress`; returns it and the channels of the folder's first image.

    ``channels`` None: as many as the first image has (1 if it is grayscale, else 3)."""
    reader = _Reader(index.source, zf)
    own = channels or 3
    where = (lambda name: f"{index.source}:{name}") if index.is_zip else (lambda name: str(index.source / name))
    images: Tensor | None = None
    chunk = 256
    try:
        with progress(total=len(index), desc=f"decoding {index.source.name} {index.split}", unit="img") as bar:
            for start in range(0, len(index), chunk):
                names = list(index.files[start : start + chunk])
                try:
                    datas = [reader.read(name) for name in names]
                except (OSError, KeyError, zipfile.BadZipFile) as err:
                    raise DataError(f"cannot read a file of {index.source} ({err})") from err
                if start == 0:
                    channels, own = _resolve_channels(index.source, names[0], datas[0], channels)
                for i, img in enumerate(_decode_many(datas, channels, [where(n) for n in names]), start):
                    if size is not None:
                        img = resize_center_crop(img, size)
                    if images is None:  # the first image fixes the size when none is given
                        images = torch.empty((len(index), *img.shape), dtype=torch.uint8)
                    elif img.shape != images.shape[1:]:
                        raise DataError(
                            f"{where(index.files[i])} is {img.shape[2]}x{img.shape[1]}, the first image "
                            f"{images.shape[3]}x{images.shape[2]}: pass image_size to resize them all"
                        )
                    images[i] = img
                bar.update(len(names))
    finally:
        reader.close()
    if images is None:
        images = torch.empty((0, channels or 3, *(size or (0, 0))), dtype=torch.uint8)
    return images, own


def decode_folder(
    source: Path,
    split: str,
    *,
    image_size: int | Sequence[int] | None = None,
    channels: int | None = 3,
    max_per_class: int | None = None,
    root: Path | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """Decode one split of an image folder into memory, through the cache.

    Args:
        source: Directory or zip file.
        split: Split folder name.
        image_size: ``(H, W)`` or an int; images of another size are scaled and centre-cropped to it. Default: keep
            the size, which must then be the same for every image.
        channels: 3 (RGB) or 1 (grayscale); None: as the first image is (1 if it is grayscale, else 3). Images of
            the other kind are converted, and a logged warning says so once.
        max_per_class: Decode only the first ``max_per_class`` images of each class.
        root: Data root, one of the cache's fallback places (see :mod:`.cache`).
        cache_dir: Cache folder, overriding ``MILESTONES_CACHE`` and the defaults.
        use_cache: Read and write the cache (off: always decode).

    Returns:
        ``(images, labels, classes)``: ``(N, C, H, W)`` uint8, ``(N,)`` int64 and the class names.
    """
    if channels not in (1, 3, None):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    size = size_hw(image_size)
    identity = cache.fingerprint(source, parts=() if source.is_file() else (split,))
    params = {"split": split, "size": size, "channels": channels, "max_per_class": max_per_class}
    if source.is_dir() and (source / "train").is_dir():  # another split takes its class list from train's folders
        params["train_classes"] = _dir_classes(source / "train")
    name = f"{source.stem}-{split}-{cache.cache_key(identity, params)}.pt"
    dirs = cache.cache_dirs(source, root, cache_dir)
    if use_cache and (entry := cache.load_entry(name, dirs)) is not None:
        if channels is not None and entry.get("own_channels") and entry.get("first"):
            _say_converted(source, entry["first"], int(entry["own_channels"]), channels)
        return entry["images"], entry["labels"], tuple(entry["classes"])
    with contextlib.ExitStack() as stack:  # a zip is opened once, to list and to read
        zf = stack.enter_context(_open_zip(source)) if source.is_file() else None
        index = index_folder(source, split, max_per_class=max_per_class, zf=zf)
        images, own = _decode_all(index, size, channels, zf)
    labels = torch.tensor(index.labels, dtype=torch.int64)
    if use_cache:
        entry = {
            "images": images,
            "labels": labels,
            "classes": list(index.classes),
            "own_channels": own,
            "first": index.files[0] if index.files else "",
            "source": identity,
            "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()},
        }
        cache.save_entry(name, dirs, entry)
    return images, labels, index.classes


def folder_spec(
    source: Path, classes: Sequence[str], channels: int, img_size: tuple[int, int], *, note: str = ""
) -> DataSpec:
    """The :class:`DataSpec` of an image folder (named ``"folder:<path>"``): its classes and the ImageNet
    normalisation statistics."""
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else (GRAY_MEAN, GRAY_STD)
    return DataSpec(
        name=f"{PREFIX}{source}",
        num_classes=len(classes),
        in_chans=channels,
        img_size=img_size,
        mean=mean,
        std=std,
        classes=tuple(classes),
        note=note or f"image folder {source}",
    )


class FolderDataset(torch.utils.data.Dataset):
    """A map-style dataset over an image folder that decodes each file when asked (for DataLoader workers).

    Args:
        index: The files and labels (:func:`index_folder`).
        image_size: ``(H, W)`` or an int every image is scaled and centre-cropped to. Needed to batch images of
            different sizes.
        channels: 3 (RGB) or 1 (grayscale); None: as the first image (1 if it is grayscale, else 3). Images of the
            other kind are converted, and a logged warning says so once.
    """

    def __init__(self, index: FolderIndex, *, image_size: int | Sequence[int] | None,
                 channels: int | None = 3) -> None:
        self.index = index
        self.size = size_hw(image_size)
        self._reader = _Reader(index.source)
        if len(index):
            first = index.files[0]
            channels, _ = _resolve_channels(index.source, first, self._reader.read(first), channels)
        self.channels = channels or 3

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        name = self.index.files[i]
        img = decode_image(self._reader.read(name), channels=self.channels, name=f"{self.index.source}:{name}")
        return (img if self.size is None else resize_center_crop(img, self.size)), self.index.labels[i]

    @property
    def nbytes(self) -> int:
        """Bytes the split would take in memory as uint8 at ``image_size`` (0 when no size is set)."""
        return len(self) * self.channels * math.prod(self.size) if self.size else 0

    @property
    def spec(self) -> DataSpec:
        """The folder's :class:`DataSpec` (:func:`folder_spec`); without ``image_size``, the first image's size."""
        size = self.size if self.size is not None else tuple(self[0][0].shape[1:])
        source = self.index.source
        return folder_spec(source, self.index.classes, self.channels, size, note=f"image folder {source}, streamed")


class StreamingLoader:
    """Batches of a :class:`FolderDataset` decoded by DataLoader workers, then augmented and normalised as tensors.

    Yields the same ``(x, y)`` batches as :class:`~milestones.data.loader.TensorLoader`: float ``(B, C, H, W)``
    normalised images and int64 labels (soft targets when mixing); shuffled and augmented when ``train``, by the
    same :class:`~milestones.data.batch_augment.BatchAugment`. Each epoch is reshuffled by the DataLoader's own seeded
    generator; augmentation parameters are drawn per batch from a second seeded generator. Not resumable mid-epoch
    (unlike TensorLoader).

    Args:
        dataset: The files to stream.
        batch_size: Samples per batch.
        train: Shuffle and augment; by default drop the last partial batch.
        augment: What turns a uint8 batch into a float one; default: normalise with ``dataset.spec``'s statistics.
        workers: DataLoader worker processes decoding files.
        device: Where batches are augmented and returned.
        channels_last: Yield images in ``torch.channels_last`` memory format.
        seed: Seed of the shuffling and augmentation generators.
        drop_last: Drop the last partial batch; default ``train``.
    """

    def __init__(
        self,
        dataset: FolderDataset,
        *,
        batch_size: int,
        train: bool,
        augment: BatchAugment | None = None,
        workers: int = 2,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        seed: int = 0,
        drop_last: bool | None = None,
    ) -> None:
        self.dataset, self.spec = dataset, dataset.spec
        self.batch_size, self.train = batch_size, train
        self.augment = augment if augment is not None else BatchAugment.for_spec(self.spec)
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.generator = torch.Generator().manual_seed(seed)
        self.loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            generator=torch.Generator().manual_seed(seed + 1),
            num_workers=workers,
            drop_last=train if drop_last is None else drop_last,
            persistent_workers=workers > 0,
        )

    @property
    def img_size(self) -> tuple[int, int]:
        """``(H, W)`` of the images yielded."""
        return self.spec.img_size

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in self.loader:
            x, y = x.to(self.device), y.to(self.device)
            draws = None
            if self.train:
                b = len(x)
                draws = self.augment.draw(b, tuple(x.shape[-2:]), self.generator, batches=1, batch_size=b)
                draws = {k: v.to(self.device) for k, v in draws.items()}
            x, y = self.augment(x, y, draws)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y


def open_folder(
    name: str | Path,
    split: str,
    *,
    root: Path | None = None,
    image_size: int | Sequence[int] | None = None,
    channels: int | None = None,
    in_memory: bool | None = None,
    memory_budget: int = 4 << 30,
    max_per_class: int | None = None,
    cache_dir: str | Path | None = None,
) -> ImageSplit | FolderDataset:
    """One split of an image folder: the way every caller opens one (``get_dataset``, ``make_loaders``,
    ``make_test_loader``, :func:`folder_loader`), deciding here, once, whether it is held in memory or streamed.

    Args:
        name: ``"folder:<path>"`` or a path (directory or zip); a relative one is looked for in the working
            directory, then under ``root``.
        split: Split folder name.
        root: Data root (relative paths, cache fallback).
        image_size: ``(H, W)`` or an int every image is scaled and centre-cropped to; needed for mixed sizes and to
            stream.
        channels: 3 (RGB) or 1 (grayscale), the model's; None: as the folder's first image. Images of the other kind
            are converted, and a logged warning says so once per folder.
        in_memory: True: in memory; False: streamed; None: in memory when the split's decoded uint8 images fit in
            ``memory_budget`` bytes (deciding lists the files and decodes nothing).
        memory_budget: Bytes the decoded split may take in memory.
        max_per_class: Use only the first ``max_per_class`` images of each class (natural order).
        cache_dir: Cache folder of the in-memory path (see :mod:`.cache`).

    Returns:
        An :class:`ImageSplit` decoded through the cache (:func:`decode_folder`), or a :class:`FolderDataset` that
        decodes each file when asked.
    """
    if max_per_class is not None and max_per_class < 1:
        raise ValueError(f"max_per_class must be positive, got {max_per_class}")
    source = resolve_folder(name, root)
    if not in_memory:
        dataset = FolderDataset(index_folder(source, split, max_per_class=max_per_class), image_size=image_size,
                                channels=channels)
        if in_memory is False or dataset.nbytes > memory_budget:
            return dataset
    images, labels, classes = decode_folder(source, split, image_size=image_size, channels=channels,
                                            max_per_class=max_per_class, root=root, cache_dir=cache_dir)
    return ImageSplit(images, labels, folder_spec(source, classes, images.shape[1], tuple(images.shape[2:])))


def folder_batches(
    data: ImageSplit | FolderDataset, *, batch_size: int, train: bool, workers: int = 2, **options: Any
) -> TensorLoader | StreamingLoader:
    """Batches of a split :func:`open_folder` opened: a :class:`StreamingLoader` decoding in ``workers`` processes
    for a :class:`FolderDataset`, else a :class:`~milestones.data.loader.TensorLoader`. ``options`` are those both
    take: ``augment``, ``seed``, ``device``, ``drop_last``, ``channels_last``."""
    if isinstance(data, FolderDataset):
        return StreamingLoader(data, batch_size=batch_size, train=train, workers=workers, **options)
    return TensorLoader(data, batch_size=batch_size, train=train, **options)


def folder_loader(
    name: str | Path,
    split: str,
    *,
    batch_size: int,
    train: bool,
    image_size: int | Sequence[int],
    workers: int = 2,
    channels: int | None = None,
    in_memory: bool | None = None,
    memory_budget: int = 4 << 30,
    root: Path | None = None,
    cache_dir: str | Path | None = None,
    max_per_class: int | None = None,
    **options: Any,
) -> TensorLoader | StreamingLoader:
    """A loader over one split of an image folder: :func:`open_folder` (same arguments), then
    :func:`folder_batches` (``batch_size``, ``train``, ``workers`` and ``options``: ``augment``, ``seed``,
    ``device``, ``drop_last``, ``channels_last``)."""
    data = open_folder(name, split, root=root, image_size=image_size, channels=channels, in_memory=in_memory,
                       memory_budget=memory_budget, max_per_class=max_per_class, cache_dir=cache_dir)
    return folder_batches(data, batch_size=batch_size, train=train, workers=workers, **options)
