"""Datasets as in-memory uint8 tensors, the loaders that batch them, and the one entry from a config to batches.

    >>> from milestones.data import make_loaders
    >>> loaders = make_loaders(cfg.data, "cpu", seed=0, default_image_size=(32, 32))  # what training calls
    >>> for x, y in loaders.train: ...  # x: (B, C, H, W) float32 normalised, y: (B,) int64 (or (B, K) mixed)

The pieces, for use without a config:

    >>> from milestones.data import BatchAugment, TensorLoader, get_dataset
    >>> train = get_dataset("mnist", "train", root="../shared/data")  # else MILESTONES_DATA, else ~/.cache/milestones
    >>> loader = TensorLoader(train, batch_size=128, train=True, pad=2, seed=0)  # 28x28 -> 32x32 for LeNet-5
    >>> cifar = get_dataset("cifar10", "train", root="../shared/data")  # the JPEG copy there: decoded once, cached
    >>> cifar.spec.full_name  # 'cifar10 (jpeg-q75)': report results under this name
    >>> aug = BatchAugment.for_spec(cifar.spec, crop_padding=4, flip=True, cutout=16)
    >>> loader = TensorLoader(cifar, batch_size=128, train=True, augment=aug)
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
from .batch_augment import BatchAugment, check_augmentation
from .download import RemoteFile, download_file
from .folder import FolderDataset, StreamingLoader, folder_loader, open_folder
from .loader import TensorLoader, hold_out, subset
from .pipeline import Loaders, make_loaders, make_test_loader
from .sources import (
    SOURCES,
    Source,
    get_data_spec,
    get_dataset,
    get_source,
    input_spec,
    list_datasets,
    read_idx,
    resolve_root,
)
from .spec import DataSpec, ImageSplit, InputSpec, size_hw

__all__ = [
    "SOURCES",
    "BatchAugment",
    "DataSpec",
    "FolderDataset",
    "ImageSplit",
    "InputSpec",
    "Loaders",
    "Mixed",
    "RemoteFile",
    "Source",
    "StreamingLoader",
    "TensorLoader",
    "apply_ops",
    "check_augmentation",
    "crop",
    "cutmix",
    "cutout",
    "download_file",
    "flip",
    "folder_loader",
    "get_data_spec",
    "input_spec",
    "get_dataset",
    "get_source",
    "hold_out",
    "list_datasets",
    "make_loaders",
    "make_test_loader",
    "mixup",
    "normalise",
    "open_folder",
    "rand_augment",
    "random_crop",
    "random_cutmix",
    "random_cutout",
    "random_flip",
    "random_mixup",
    "read_idx",
    "resolve_root",
    "size_hw",
    "soft_targets",
    "subset",
    "trivial_augment",
]
