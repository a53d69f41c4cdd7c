"""The two data types of every dataset: a :class:`DataSpec` (what the data is) and an :class:`ImageSplit` (the data),
and :func:`size_hw`, the one reading of an image-size option.

Kept in their own module so that the sources, the loader and the augmentations can all import them without cycles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class DataSpec:
    """What a model and a loader need to know about a dataset.

    Attributes:
        name: Registry name, e.g. ``"mnist"``.
        num_classes: Number of classes; labels are ``0 .. num_classes - 1``.
        in_chans: Image channels (1 for the digit sets).
        img_size: Stored image size ``(H, W)``, before any loader padding or resizing.
        mean: Per-channel mean of the training images scaled to [0, 1], used to normalise.
        std: Per-channel standard deviation of the training images scaled to [0, 1].
        classes: Human-readable class names, indexed by label.
        variant: Which copy of the dataset this is, when not the official one (``""``): ``"jpeg-q75"`` for the lossy
            JPEG copy of CIFAR-10, ``"exact-subset"`` for its lossless 5,000-image subset. Results on a variant must
            say so; :attr:`full_name` does.
        note: One line on where the data came from and in what order, for logs and reports.
    """

    name: str
    num_classes: int
    in_chans: int
    img_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    variant: str = ""
    note: str = ""

    @property
    def full_name(self) -> str:
        """The name to report results under: ``"cifar10"``, or ``"cifar10 (jpeg-q75)"`` for a variant."""
        return f"{self.name} ({self.variant})" if self.variant else self.name

    def __post_init__(self) -> None:
        if len(self.classes) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.classes)} class names for {self.num_classes} classes")
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(f"{self.name}: mean/std need one value per channel ({self.in_chans})")


@dataclass
class ImageSplit:
    """One split of a dataset, held in memory.

    Attributes:
        images: ``(N, C, H, W)`` uint8 tensor, values 0..255.
        labels: ``(N,)`` int64 tensor.
        spec: The dataset's :class:`DataSpec`.
    """

    images: Tensor
    labels: Tensor
    spec: DataSpec

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be a (N, C, H, W) uint8 tensor, got {tuple(self.images.shape)} {self.images.dtype}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must be a ({len(self.images)},) int64 tensor, got {tuple(self.labels.shape)} "
                f"{self.labels.dtype}"
            )

    def __len__(self) -> int:
        return len(self.labels)


def size_hw(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """An image size given as an int (square) or ``(H, W)``, as ``(H, W)``; None stays None."""
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return int(h), int(w)
