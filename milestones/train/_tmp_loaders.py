"""TEMPORARY: the old data block of run.py, until milestones.data.make_loaders lands."""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from ..errors import ConfigError


class Loaders(NamedTuple):
    train: Any
    test: Any
    spec: Any


def make_loaders(data, device, *, seed, default_image_size=None):
    from ..data import TensorLoader, get_dataset, subset
    from ..data.folder import folder_loader, is_folder_name
    from ..data.loader import check_augmentation

    check_augmentation(trivial_augment=data.trivial_augment, rand_augment=data.rand_augment,
                       mixup_alpha=data.mixup_alpha, cutmix_alpha=data.cutmix_alpha, prefix="data.")
    size = data.image_size
    if not size and is_folder_name(data.name):
        size = default_image_size
    if is_folder_name(data.name) and not data.in_memory:
        kw = dict(image_size=size, in_memory=data.in_memory, workers=data.workers, root=data.root,
                  max_per_class=data.max_per_class, device=device, channels_last=data.channels_last)
        train = folder_loader(data.name, "train", batch_size=data.batch_size, train=True, flip=data.flip,
                              crop_padding=data.crop_padding, cutout=data.cutout, seed=seed, decide_only=True, **kw)
        if train is not None:
            unsupported = [k for k in ("trivial_augment", "rand_augment", "mixup_alpha", "cutmix_alpha",
                                       "train_subset", "test_subset", "mean", "std", "pad") if getattr(data, k)]
            if unsupported:
                raise ConfigError(f"a streamed image folder supports crop_padding, flip and cutout only, not data."
                                  f"{unsupported[0]}; set data.in_memory=true if the decoded images fit in memory")
            test = folder_loader(data.name, "test", batch_size=data.eval_batch_size, train=False, **kw)
            return Loaders(train, test, train.spec)
    data_kw = dict(root=data.root, download=data.download, image_size=size, max_per_class=data.max_per_class)
    train_split = get_dataset(data.name, "train", **data_kw)
    test_split = get_dataset(data.name, "test", **data_kw)
    if data.train_subset:
        train_split = subset(train_split, data.train_subset, seed=seed)
    if data.test_subset:
        test_split = subset(test_split, data.test_subset, seed=0)
    spec = train_split.spec
    if data.mean is not None or data.std is not None:
        spec = dataclasses.replace(spec, mean=tuple(data.mean or spec.mean), std=tuple(data.std or spec.std))
        train_split = dataclasses.replace(train_split, spec=spec)
        test_split = dataclasses.replace(test_split, spec=spec)
    loader_kw = dict(device=device, pad=data.pad, channels_last=data.channels_last)
    train_loader = TensorLoader(train_split, batch_size=data.batch_size, train=True, flip=data.flip,
                                crop_padding=data.crop_padding, cutout=data.cutout,
                                trivial_augment=data.trivial_augment, rand_augment=data.rand_augment,
                                rand_magnitude=data.rand_magnitude, mixup_alpha=data.mixup_alpha,
                                cutmix_alpha=data.cutmix_alpha, seed=seed, **loader_kw)
    test_loader = TensorLoader(test_split, batch_size=data.eval_batch_size, train=False, **loader_kw)
    return Loaders(train_loader, test_loader, train_loader.spec)
