"""Datasets as in-memory uint8 tensors, and the device-resident loader that batches them.

    >>> from milestones.data import TensorLoader, get_dataset
    >>> train = get_dataset("mnist", "train", root="../shared/data")  # else MILESTONES_DATA, else ~/.cache/milestones
    >>> loader = TensorLoader(train, batch_size=128, train=True, pad=2, seed=0)  # 28x28 -> 32x32 for LeNet-5
    >>> for x, y in loader: ...  # x: (128, 1, 32, 32) float32, y: (128,) int64

    >>> cifar = get_dataset("cifar10", "train", root="../shared/data")  # the JPEG copy there: decoded once, cached
    >>> cifar.spec.full_name  # 'cifar10 (jpeg-q75)': report results under this name
    >>> loader = TensorLoader(cifar, batch_size=128, train=True, crop_padding=4, flip=True, cutout=16)
    >>> photos = get_dataset("folder:~/data/imagenette2-160.zip", "train", image_size=128)  # train|test/<class>/*

``get_dataset`` never touches the network unless asked (``download=True``, the CLI's ``--download``).
"""

from __future__ import annotations

from .augment import (
    Mixed,
    apply_ops,
    crop,
    cutmix,
    cutout,
    flip,
    mixup,
    normalise,
    rand_augment,
    random_crop,
    random_cutmix,
    random_cutout,
    random_flip,
    random_mixup,
    soft_targets,
    trivial_augment,
)
from .download import RemoteFile, download_file
from .folder import FolderDataset, StreamingLoader, folder_loader, load_folder
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
    "FolderDataset",
    "ImageSplit",
    "Mixed",
    "RemoteFile",
    "Source",
    "StreamingLoader",
    "TensorLoader",
    "apply_ops",
    "crop",
    "cutmix",
    "cutout",
    "download_file",
    "flip",
    "folder_loader",
    "get_data_spec",
    "get_dataset",
    "get_source",
    "list_datasets",
    "load_folder",
    "mixup",
    "normalise",
    "rand_augment",
    "random_crop",
    "random_cutmix",
    "random_cutout",
    "random_flip",
    "random_mixup",
    "read_idx",
    "resolve_root",
    "soft_targets",
    "subset",
    "trivial_augment",
]
