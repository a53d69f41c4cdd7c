"""The fast path: a split held on its device as uint8, batched with tensor ops (the airbench approach).

Each epoch draws, from the loader's own ``torch.Generator``, one permutation and then, through its
:class:`~milestones.data.batch_augment.BatchAugment`, every augmentation parameter for the whole epoch (crop offsets,
flip mask, policy operations, cutout centres, mixing), so the epoch is fully determined by the generator state at its
start. That is what :meth:`TensorLoader.state_dict` saves, with the epoch and the number of batches already served, so
a run resumed from a checkpoint sees exactly the batches it would have seen. No workers, no per-sample Python, no PIL.

In a distributed run (:meth:`TensorLoader.shard`) every rank draws the same permutation and augmentation parameters
and serves only its rows of each global batch, so N ranks together see exactly the batches one process sees. A mixed
batch (mixup, cutmix: each image is mixed with a partner anywhere in the batch) is augmented whole and then sliced.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from . import augment
from .batch_augment import BatchAugment
from .spec import ImageSplit, size_hw


class TensorLoader:
    """Iterate an :class:`ImageSplit` in batches of normalised float images and int64 labels.

    Args:
        split: The data; its uint8 images are padded/resized once and moved to ``device``.
        batch_size: Samples per batch.
        train: Shuffle each epoch, augment, and by default drop the last partial batch. With ``train=False`` the
            order is the split's and batches are only normalised.
        augment: What turns a uint8 batch into a float one (augmentation when ``train``, normalisation, mixing);
            default: normalise with the split's statistics, no augmentation.
        device: Where the images live and the batches are made.
        pad: Zero pixels added on every side once, up front (MNIST 28x28 -> 32x32 for LeNet-5: ``pad=2``).
        target_size: ``(H, W)`` or an int; after ``pad``, images of another size are resized (bilinear, antialiased).
        channels_last: Yield images in ``torch.channels_last`` memory format.
        seed: Seed of the loader's own generator (ignored when ``generator`` is given).
        generator: A CPU ``torch.Generator`` to draw orders and augmentations from; the loader owns it (it resets
            the state at each epoch start).
        drop_last: Drop the last partial batch; default ``train``.
    """

    def __init__(
        self,
        split: ImageSplit,
        *,
        batch_size: int,
        train: bool,
        augment: BatchAugment | None = None,
        device: torch.device | str = "cpu",
        pad: int = 0,
        target_size: int | tuple[int, int] | None = None,
        channels_last: bool = False,
        seed: int = 0,
        generator: torch.Generator | None = None,
        drop_last: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError("generator must be a CPU generator (its state is saved in checkpoints)")
        self.spec = split.spec
        self.batch_size = batch_size
        self.train = train
        self.device = torch.device(device)
        self.augment = augment if augment is not None else BatchAugment.for_spec(split.spec)
        c = split.images.shape[1]
        if len(self.augment.mean) != c:
            raise ValueError(f"mean/std need {c} values, got {len(self.augment.mean)}/{len(self.augment.std)}")
        self.drop_last = train if drop_last is None else drop_last
        self.channels_last = channels_last
        images = _pad_resize(split.images, pad, target_size)
        self.images = images.to(self.device)  # (N, C, H, W) uint8
        self.labels = split.labels.to(self.device)  # (N,) int64
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)
        # the epoch being served, the generator state at its start, and batches of it already yielded
        self._epoch = 0
        self._epoch_state = self.generator.get_state()
        self._served = 0
        self._started = False  # an __iter__ has begun the current epoch
        self._next_state: Tensor | None = None  # generator state after the current epoch's draws
        self.rank, self.world_size = 0, 1

    def shard(self, rank: int, world_size: int) -> TensorLoader:
        """Serve only rank ``rank``'s part of each batch: rows ``[rank * b / world_size, (rank + 1) * b / world_size)``
        of a batch of ``b`` (``torch.tensor_split``'s parts when ``b`` does not divide). ``batch_size`` and
        ``len(self)`` stay those of the global batches. Returns ``self``."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
        if self.train and self.drop_last and self.batch_size % world_size:
            raise ValueError(f"batch_size {self.batch_size} does not split into {world_size} equal parts")
        self.rank, self.world_size = rank, world_size
        return self

    def _rows(self, b: int) -> tuple[int, int]:
        """This rank's rows ``[lo, hi)`` of a global batch of ``b``."""
        q, r = divmod(b, self.world_size)
        lo = self.rank * q + min(self.rank, r)
        return lo, lo + q + (self.rank < r)

    @property
    def img_size(self) -> tuple[int, int]:
        """``(H, W)`` of the images yielded (after ``pad`` and ``target_size``)."""
        return (self.images.shape[2], self.images.shape[3])

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    @property
    def epoch(self) -> int:
        """Index of the epoch the next (or current) iteration serves."""
        return self._epoch + 1 if self._epoch_done() else self._epoch

    def __len__(self) -> int:
        """Number of batches per epoch."""
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _epoch_done(self) -> bool:
        return self._started and self._served >= len(self)

    def _draw(self) -> tuple[Tensor | None, dict[str, Tensor]]:
        """The epoch's order (None: the split's own) and its augmentation draws, on the loader's device: the
        permutation first, then :meth:`BatchAugment.draw`."""
        if not self.train:
            return None, {}
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator)
        draws = self.augment.draw(n, self.img_size, self.generator, batches=len(self), batch_size=self.batch_size)
        return order.to(self.device), {k: v.to(self.device) for k, v in draws.items()}

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self._started:  # the previous iteration ended or was abandoned: move on to the next epoch
            self._epoch += 1
            self._epoch_state = self._next_state
            self._served = 0
        self._started = True
        self.generator.set_state(self._epoch_state)
        order, draws = self._draw()
        self._next_state = self.generator.get_state()
        n = len(self.labels)
        whole = self.world_size == 1 or self.augment.mixes
        for i in range(self._served, len(self)):
            start = i * self.batch_size
            lo, hi = (0, None) if whole else self._rows(min(self.batch_size, n - start))
            batch = slice(start + lo, start + hi if hi is not None else start + self.batch_size)
            idx = batch if order is None else order[batch]
            # per-sample draws are indexed by the sample (idx), per-batch ones by the batch (i)
            x, y = self.augment(self.images[idx], self.labels[idx], draws, index=idx, batch=i)
            if self.world_size > 1 and whole:  # mixed within the global batch, then this rank's rows
                lo, hi = self._rows(len(y))
                x, y = x[lo:hi], y[lo:hi]
            self._served = i + 1
            if len(y) == 0:  # a last evaluation batch smaller than the world: nothing for this rank
                continue
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is: ``epoch``, ``batch`` (batches of it already served) and the generator state at the
        start of that epoch. Taken mid-epoch, a loader restored from it continues with the next batch."""
        if self._epoch_done():
            return {"epoch": self._epoch + 1, "batch": 0, "generator": self._next_state.clone()}
        return {"epoch": self._epoch, "batch": self._served, "generator": self._epoch_state.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next iteration serves the rest of the saved epoch."""
        self._epoch = int(state["epoch"])
        self._served = int(state["batch"])
        self._epoch_state = torch.as_tensor(state["generator"], dtype=torch.uint8).clone()
        self._started = False
        self._next_state = None


def _pad_resize(images: Tensor, padding: int, target_size: int | tuple[int, int] | None) -> Tensor:
    images = augment.pad(images, padding)
    if target_size is not None:
        images = augment.resize(images, size_hw(target_size))
    return images


def subset(split: ImageSplit, n: int, seed: int = 0, *, stratified: bool = True) -> ImageSplit:
    """``n`` samples of ``split`` for quick runs, in their original order.

    Stratified (default): each class gets its share of ``n`` by the largest-remainder method, filled with that
    class's samples in the order of a permutation drawn with ``seed``, so class balance matches the full split.
    Otherwise: the first ``n`` samples.

    Args:
        split: The full split.
        n: Samples to keep, ``0 < n <= len(split)``.
        seed: Seed of the permutation (stratified only).
        stratified: Keep class proportions; else take the first ``n``.
    """
    total = len(split)
    if not 0 < n <= total:
        raise ValueError(f"subset size must be in 1..{total}, got {n}")
    keep = _stratified(split, n, seed) if stratified and n < total else torch.arange(n)
    return _take(split, keep)


def hold_out(split: ImageSplit, n: int, *, seed: int) -> tuple[ImageSplit, ImageSplit]:
    """``split`` without ``n`` held-out samples, and those samples (a validation set), each in the original order.

    The held-out samples are the ones :func:`subset` would keep with the same ``seed`` (stratified), so the classes
    keep their proportions on both sides.

    Args:
        split: The full split.
        n: Samples to hold out, ``0 < n < len(split)``.
        seed: Seed of the choice.
    """
    total = len(split)
    if not 0 < n < total:
        raise ValueError(f"held-out size must be in 1..{total - 1}, got {n}")
    held = _stratified(split, n, seed)
    rest = torch.ones(total, dtype=torch.bool)
    rest[held] = False
    return _take(split, rest.nonzero().squeeze(1)), _take(split, held)


def _stratified(split: ImageSplit, n: int, seed: int) -> Tensor:
    """Sorted indices of ``n`` samples of ``split``, class proportions kept (see :func:`subset`)."""
    total = len(split)
    labels = split.labels.cpu()
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    counts = torch.bincount(labels, minlength=split.spec.num_classes).tolist()
    exact = [n * c / total for c in counts]
    quota = [math.floor(q) for q in exact]
    # largest remainders first; ties to the lower class index, so the result is deterministic
    for c in sorted(range(len(counts)), key=lambda c: (quota[c] - exact[c], c))[: n - sum(quota)]:
        quota[c] += 1
    permuted = labels[perm]
    return torch.cat([perm[permuted == c][:q] for c, q in enumerate(quota)]).sort().values


def _take(split: ImageSplit, index: Tensor) -> ImageSplit:
    index = index.to(split.images.device)
    return ImageSplit(split.images[index], split.labels[index], split.spec)


def select_classes(split: ImageSplit, classes: list[int] | tuple[int, ...]) -> ImageSplit:
    """The samples of ``classes`` only, relabelled ``0..k-1`` in the order given (``[5, 6, 7, 8, 9]``: label 5 becomes
    0); the spec's class names follow. For class splits such as "pretrain on 0-4, transfer to 5-9"."""
    from ..errors import ConfigError

    k = split.spec.num_classes
    bad = [c for c in classes if not 0 <= c < k]
    if bad or not classes:
        raise ConfigError(f"data.classes must list labels in 0..{k - 1} of {split.spec.name}, got {list(classes)}")
    if len(set(classes)) != len(classes):
        raise ConfigError(f"data.classes lists a label twice: {list(classes)}")
    relabel = torch.full((k,), -1, dtype=torch.int64)
    relabel[torch.tensor(list(classes))] = torch.arange(len(classes))
    new = relabel[split.labels.cpu()]
    keep = (new >= 0).nonzero().squeeze(1)
    spec = dataclasses.replace(split.spec, num_classes=len(classes),
                               classes=tuple(split.spec.classes[c] for c in classes),
                               note=f"{split.spec.note} Classes {list(classes)} only, relabelled 0..{len(classes) - 1}."
                               .strip())
    return ImageSplit(split.images[keep.to(split.images.device)], new[keep].to(split.labels.device), spec)
