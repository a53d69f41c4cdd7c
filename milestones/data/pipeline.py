"""From a ``data:`` config section to batches: the one entry training uses, and its sibling for evaluation.

    >>> loaders = make_loaders(cfg.data, "cpu", seed=0, default_image_size=(32, 32))  # the model's input (H, W)
    >>> for x, y in loaders.train: ...  # x (B, C, H, W) float normalised; y (B,) int64, or (B, K) when mixing
    >>> loaders.val  # the images data.val_split held out of the training split, served as the test split; or None
    >>> loader = make_test_loader(meta["data"])  # a checkpoint's test split, padded and normalised as in training

Every decision on the data of a run is taken here: where the images come from (a dataset table row or an image
folder, with its decode cache), whether an image folder is held in memory or streamed, the validation split, the
subsets, the normalisation statistics, and the augmentation (one :class:`~milestones.data.batch_augment.BatchAugment`
for all loaders).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from ..errors import ConfigError
from .batch_augment import BatchAugment
from .folder import FolderDataset, StreamingLoader, folder_batches, is_folder_name, open_folder
from .loader import TensorLoader, hold_out, select_classes, subset
from .sources import get_dataset, resolve_root
from .spec import DataSpec, ImageSplit

if TYPE_CHECKING:
    from ..config import DataConfig

BatchLoader = TensorLoader | StreamingLoader

STREAMED_UNSUPPORTED = ("trivial_augment", "rand_augment", "mixup_alpha", "cutmix_alpha", "train_subset",
                        "test_subset", "mean", "std", "pad", "classes", "val_split")
"""``data.*`` keys a streamed image folder refuses (it serves crop_padding, flip and cutout)."""

VAL_SEED = 2024
"""Seed of ``data.val_split``'s choice of images: fixed, never the run's seed, so that every seed and arm of a
comparison holds out the same images."""


class Loaders(NamedTuple):
    """A run's data: the training and test loaders, the spec of the data they serve (with ``data.mean`` and
    ``data.std`` applied, as recorded with checkpoints), and the validation loader over the images ``data.val_split``
    held out of the training split (None without one)."""

    train: BatchLoader
    test: BatchLoader
    spec: DataSpec
    val: BatchLoader | None = None


def make_loaders(data_cfg: DataConfig, device: torch.device | str, *, seed: int,
                 default_image_size: tuple[int, int] | None = None, channels: int | None = None) -> Loaders:
    """The training, test and validation loaders a ``data:`` config section describes.

    Args:
        data_cfg: The run's :class:`~milestones.config.DataConfig`.
        device: Where batches are made (and in-memory images live).
        seed: Seed of the training loader's shuffling and augmentation, and of ``data.train_subset``'s choice
            (``data.test_subset`` always takes the same images, seed 0, and ``data.val_split`` seed
            :data:`VAL_SEED`).
        default_image_size: ``(H, W)`` an image folder is resized to when ``data.image_size`` is unset: the model's
            input size (image folders mix sizes).
        channels: The channels an image folder is decoded to (1 or 3): the model's ``in_chans`` when it is fixed
            (a fine-tuned model's), converting images of the other kind with a logged warning; None: the folder's
            own. Other datasets keep theirs.

    ``data.channels_last`` must be a bool here: ``auto`` depends on the model, and ``run_training`` resolves it first
    (:func:`milestones.precision.resolve_channels_last`); left at ``auto``, batches come in the default NCHW layout.

    Raises:
        ConfigError: Augmentation options that cannot go together (checked before any data loads), options a
            streamed image folder does not serve, or a ``data.val_split`` that leaves too few training images.
        DataError: The data cannot be found or read.
    """
    BatchAugment.check_config(data_cfg)
    if data_cfg.val_split < 0:
        raise ConfigError(f"data.val_split must be a number of training images to hold out (0: none), got "
                          f"{data_cfg.val_split}")
    if not isinstance(data_cfg.channels_last, bool):
        data_cfg = dataclasses.replace(data_cfg, channels_last=False)
    device = torch.device(device)
    if is_folder_name(data_cfg.name):  # held in memory when it fits, else streamed with fewer options
        where = dict(root=resolve_root(data_cfg.root), image_size=data_cfg.image_size or default_image_size,
                     channels=channels, max_per_class=data_cfg.max_per_class)
        train = open_folder(data_cfg.name, "train", in_memory=data_cfg.in_memory, **where)
        if isinstance(train, FolderDataset):
            return _streamed_folder(train, data_cfg, device, seed=seed, where=where)
        test = open_folder(data_cfg.name, "test", in_memory=True, **where)
    else:
        kw = dict(root=data_cfg.root, download=data_cfg.download, image_size=data_cfg.image_size,
                  max_per_class=data_cfg.max_per_class)
        train, test = get_dataset(data_cfg.name, "train", **kw), get_dataset(data_cfg.name, "test", **kw)
    if data_cfg.classes:
        train, test = select_classes(train, data_cfg.classes), select_classes(test, data_cfg.classes)
    val = _split_val(train, data_cfg) if data_cfg.val_split else None
    if val is not None:
        train, val = val
    for key, split, what in (("train_subset", train, "training"), ("test_subset", test, "test")):
        n = getattr(data_cfg, key)
        if n and n > len(split):
            raise ConfigError(f"data.{key}={n} is more than the {len(split)} {what} images of {data_cfg.name}: ask "
                              f"for at most {len(split)}, or null for all of them")
    if data_cfg.train_subset:
        train = subset(train, data_cfg.train_subset, seed=seed)
    if data_cfg.test_subset:
        test = subset(test, data_cfg.test_subset, seed=0)
    augment = BatchAugment.from_config(data_cfg, train.spec)
    if data_cfg.mean is not None or data_cfg.std is not None:  # the spec says what the batches are normalised with
        spec = dataclasses.replace(train.spec, mean=augment.mean, std=augment.std)
        train, test = dataclasses.replace(train, spec=spec), dataclasses.replace(test, spec=spec)
        val = dataclasses.replace(val, spec=spec) if val is not None else None
    kw = dict(augment=augment, device=device, pad=data_cfg.pad, channels_last=data_cfg.channels_last)
    train_loader = TensorLoader(train, batch_size=data_cfg.batch_size, train=True, seed=seed, **kw)
    test_loader = TensorLoader(test, batch_size=data_cfg.eval_batch_size, train=False, **kw)
    val_loader = TensorLoader(val, batch_size=data_cfg.eval_batch_size, train=False, **kw) if val is not None else None
    return Loaders(train_loader, test_loader, train_loader.spec, val_loader)


def _split_val(train: ImageSplit, data_cfg: DataConfig) -> tuple[ImageSplit, ImageSplit]:
    """The training split without ``data.val_split`` images, and those images (chosen with :data:`VAL_SEED`)."""
    n, total = data_cfg.val_split, len(train)
    if n >= total:
        raise ConfigError(f"data.val_split={n} holds out the whole training split of {data_cfg.name} ({total} "
                          f"images); hold out fewer than {total}")
    if data_cfg.train_subset and data_cfg.train_subset > total - n:
        raise ConfigError(f"data.train_subset={data_cfg.train_subset} asks for more than the {total - n} training "
                          f"images data.val_split={n} leaves; lower one of them")
    return hold_out(train, n, seed=VAL_SEED)


def _streamed_folder(train_set: FolderDataset, data_cfg: DataConfig, device: torch.device, *, seed: int,
                     where: dict[str, Any]) -> Loaders:
    """Loaders for an image folder whose training split streams through DataLoader workers (too large for memory,
    or ``data.in_memory: false``); its test split is opened as the training split was, by :func:`open_folder`."""
    unsupported = [k for k in STREAMED_UNSUPPORTED if getattr(data_cfg, k)]
    if unsupported:
        raise ConfigError(f"a streamed image folder supports crop_padding, flip and cutout only, not data."
                          f"{unsupported[0]}; set data.in_memory=true if the decoded images fit in memory")
    kw = dict(augment=BatchAugment.from_config(data_cfg, train_set.spec), workers=data_cfg.workers, device=device,
              channels_last=data_cfg.channels_last)
    train = folder_batches(train_set, batch_size=data_cfg.batch_size, train=True, seed=seed, **kw)
    test_set = open_folder(data_cfg.name, "test", in_memory=data_cfg.in_memory, **where)
    test = folder_batches(test_set, batch_size=data_cfg.eval_batch_size, train=False, **kw)
    return Loaders(train, test, train.spec)


def make_test_loader(data_meta: Mapping[str, Any], *, split: str = "test", name: str | None = None,
                     root: str | None = None, batch_size: int = 1000,
                     device: torch.device | str = "cpu") -> TensorLoader:
    """A loader over the data a checkpoint was trained on, made as its test loader was: the same padding, image
    size and normalisation, from the ``data`` section of the checkpoint's metadata.

    Args:
        data_meta: ``meta["data"]`` of a checkpoint (``name``, ``mean``, ``std``, ``pad``, ``img_size``, and
            ``class_subset`` when it was trained on some classes only: ``data.classes``).
        split: The split to evaluate on.
        name: Another dataset with the same classes, instead of the checkpoint's.
        root: Data root (see :func:`~milestones.data.resolve_root`).
        batch_size: Samples per batch.
        device: Where batches are made.
    """
    name = name or data_meta["name"]
    expects = len(data_meta["mean"])  # one mean per channel the model was trained on
    if is_folder_name(name):  # resized for the model and read with its channels
        data = open_folder(name, split, root=resolve_root(root), image_size=data_meta.get("img_size"),
                           channels=expects, in_memory=True)
    else:
        data = get_dataset(name, split, root=root)
    if data_meta.get("class_subset") and name == data_meta["name"]:
        data = select_classes(data, data_meta["class_subset"])
    if data.spec.in_chans != expects:
        trained = f" (it was trained on {data_meta['name']})" if data_meta.get("name") else ""
        raise ConfigError(f"{name} has {data.spec.in_chans}-channel images, but the model expects {expects}-channel "
                          f"images{trained}: evaluate it on data with {expects} channel(s)")
    augment = BatchAugment(data_meta["mean"], data_meta["std"])
    return TensorLoader(data, batch_size=batch_size, train=False, augment=augment, device=device,
                        pad=data_meta.get("pad", 0))
