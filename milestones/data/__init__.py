"""Datasets as in-memory uint8 tensors, and the device-resident loader that batches them.

    >>> from milestones.data import TensorLoader, get_dataset
    >>> train = get_dataset("mnist", "train", root="../shared/data")  # else MILESTONES_DATA, else ~/.cache/milestones
    >>> loader = TensorLoader(train, batch_size=128, train=True, pad=2, seed=0)  # 28x28 -> 32x32 for LeNet-5
    >>> for x, y in loader: ...  # x: (128, 1, 32, 32) float32, y: (128,) int64

``get_dataset`` never touches the network unless asked (``download=True``, the CLI's ``--download``).
"""

from __future__ import annotations

from .augment import crop, flip, normalise, random_crop, random_flip
from .download import RemoteFile, download_file
from .loader import TensorLoader, subset
from .sources import (
    SOURCES,
    Source,
    get_data_spec,
    get_dataset,
    get_source,
    list_datasets,
    read_idx,
    resolve_root,
)
from .spec import DataSpec, ImageSplit

__all__ = [
    "SOURCES",
    "DataSpec",
    "ImageSplit",
    "RemoteFile",
    "Source",
    "TensorLoader",
    "crop",
    "download_file",
    "flip",
    "get_data_spec",
    "get_dataset",
    "get_source",
    "list_datasets",
    "normalise",
    "random_crop",
    "random_flip",
    "read_idx",
    "resolve_root",
    "subset",
]
