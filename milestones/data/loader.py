"""The fast path: a split held on its device as uint8, batched with tensor ops (the airbench approach).

Each epoch draws, from the loader's own ``torch.Generator``, one permutation and every augmentation parameter for the
whole epoch (crop offsets, flip mask, TrivialAugment operations, cutout centres), so the epoch is fully determined by
the generator state at its start. That is
what :meth:`TensorLoader.state_dict` saves, with the epoch and the number of batches already served, so a run resumed
from a checkpoint sees exactly the batches it would have seen. No workers, no per-sample Python, no PIL.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from . import augment
from .spec import ImageSplit


def check_augmentation(*, trivial_augment: bool = False, rand_augment: int = 0, mixup_alpha: float = 0.0,
                       cutmix_alpha: float = 0.0, prefix: str = "") -> None:
    """Refuse option sets :class:`TensorLoader` cannot serve (one-line :class:`ConfigError`, a ``ValueError``).
    The options are ``data.*`` config keys too: training checks a config with ``prefix="data."`` before any data
    loads, so the message names the keys to change."""
    if trivial_augment and rand_augment:
        raise ConfigError(f"{prefix}trivial_augment and {prefix}rand_augment are two policies: choose one, not both")
    if mixup_alpha < 0 or cutmix_alpha < 0 or rand_augment < 0:
        raise ConfigError(f"{prefix}mixup_alpha, {prefix}cutmix_alpha and {prefix}rand_augment must be >= 0, got "
                          f"{mixup_alpha}, {cutmix_alpha}, {rand_augment}")


class TensorLoader:
    """Iterate an :class:`ImageSplit` in batches of normalised float images and int64 labels.

    Args:
        split: The data; its uint8 images are padded/resized once and moved to ``device``.
        batch_size: Samples per batch.
        train: Shuffle each epoch, augment (``flip``, ``crop_padding``) and, by default, drop the last partial batch.
            With ``train=False`` the order is the split's and nothing is augmented.
        device: Where the images live and the batches are made.
        pad: Zero pixels added on every side once, up front (MNIST 28x28 -> 32x32 for LeNet-5: ``pad=2``).
        target_size: ``(H, W)`` or an int; after ``pad``, images of another size are resized (bilinear, antialiased).
        flip: Random left-right flips (training only), probability 1/2.
        crop_padding: Random crops of the input size from the image reflect-padded by this many pixels (training only).
        cutout: Side of a square set to 0 after normalisation (the mean colour), centred anywhere in the image, once
            per image (training only; DeVries & Taylor, arXiv:1708.04552: 16 for CIFAR-10, 8 for CIFAR-100).
        trivial_augment: One random TrivialAugment Wide operation per image, on the uint8 pixels after crop and flip
            (training only; :func:`augment.trivial_augment`). Images need 1 or 3 channels.
        rand_augment: RandAugment with this many operations per image at strength bin ``rand_magnitude`` of 31
            (training only; :func:`augment.rand_augment`; 0: off).
        rand_magnitude: RandAugment's strength bin (torchvision's default 9).
        mixup_alpha: Mix each training batch with a shuffled copy of itself, ``lam ~ Beta(alpha, alpha)`` per batch
            (:func:`augment.mixup`); the labels then come out as ``(B, num_classes)`` soft targets. 0: off.
        cutmix_alpha: Paste a box of a shuffled copy into each batch instead (:func:`augment.cutmix`); with both
            alphas set, each batch is mixed one way or the other with probability 1/2 (as timm does). 0: off.
        seed: Seed of the loader's own generator (ignored when ``generator`` is given).
        generator: A CPU ``torch.Generator`` to draw orders and augmentations from; the loader owns it (it resets
            the state at each epoch start).
        drop_last: Drop the last partial batch; default ``train``.
        normalise: Map to ``(x / 255 - mean) / std``; otherwise return ``x / 255``.
        mean: Per-channel mean overriding ``split.spec.mean`` (values on the 0..1 scale).
        std: Per-channel std overriding ``split.spec.std``.
        dtype: Floating dtype of the images yielded.
        channels_last: Yield images in ``torch.channels_last`` memory format.
    """

    def __init__(
        self,
        split: ImageSplit,
        *,
        batch_size: int,
        train: bool,
        device: torch.device | str = "cpu",
        pad: int = 0,
        target_size: int | tuple[int, int] | None = None,
        flip: bool = False,
        crop_padding: int = 0,
        cutout: int = 0,
        trivial_augment: bool = False,
        rand_augment: int = 0,
        rand_magnitude: int = 9,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        seed: int = 0,
        generator: torch.Generator | None = None,
        drop_last: bool | None = None,
        normalise: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError("generator must be a CPU generator (its state is saved in checkpoints)")
        self.spec = split.spec
        self.batch_size = batch_size
        self.train = train
        self.device = torch.device(device)
        self.flip = flip
        self.crop_padding = crop_padding
        self.cutout = cutout
        self.trivial_augment = trivial_augment
        check_augmentation(trivial_augment=trivial_augment, rand_augment=rand_augment, mixup_alpha=mixup_alpha,
                           cutmix_alpha=cutmix_alpha)
        self.rand_augment = rand_augment
        self.rand_magnitude = rand_magnitude
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.num_classes = split.spec.num_classes
        self.drop_last = train if drop_last is None else drop_last
        self.dtype = dtype
        self.channels_last = channels_last
        c = split.images.shape[1]
        self.mean = tuple(mean if mean is not None else split.spec.mean) if normalise else (0.0,) * c
        self.std = tuple(std if std is not None else split.spec.std) if normalise else (1.0,) * c
        if len(self.mean) != c or len(self.std) != c:
            raise ValueError(f"mean/std need {c} values, got {len(self.mean)}/{len(self.std)}")
        self._scale, self._shift = augment.normalise_params(self.mean, self.std, self.device)
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

    def _draw(self) -> dict[str, Tensor]:
        """The epoch's order (absent: the split's own), crop offsets (2, N), flip mask (N,), TrivialAugment operations
        and magnitudes (N,) and cutout centres (2, N), drawn in this fixed sequence (new options come last, so that
        older options draw the same numbers)."""
        n, g = len(self.labels), self.generator
        if not self.train:
            return {}
        h, w = self.img_size
        draws = {"order": torch.randperm(n, generator=g)}
        if self.crop_padding:
            draws["offsets"] = torch.randint(0, 2 * self.crop_padding + 1, (2, n), generator=g)
        if self.flip:
            draws["flip"] = torch.rand(n, generator=g) < 0.5
        if self.trivial_augment:
            draws["op"], draws["magnitude"] = augment.draw_ops(n, (h, w), g, policy="trivial")
        if self.cutout:
            rows, cols = torch.randint(0, h, (n,), generator=g), torch.randint(0, w, (n,), generator=g)
            draws["centre"] = torch.stack([rows, cols])
        for i in range(self.rand_augment):
            draws[f"rand_op{i}"], draws[f"rand_mag{i}"] = augment.draw_ops(
                n, (h, w), g, policy="rand", magnitude=self.rand_magnitude)
        if self.mixup_alpha or self.cutmix_alpha:  # per batch: which kind, lam's seed, partner order, box centre
            nb = len(self)
            both = self.mixup_alpha > 0 and self.cutmix_alpha > 0
            draws["mix_cut"] = (torch.rand(nb, generator=g) < 0.5) if both else torch.full((nb,), self.cutmix_alpha > 0)
            draws["mix_seed"] = torch.randint(0, 2**62, (nb,), generator=g)
            draws["mix_perm"] = torch.rand(nb, self.batch_size, generator=g)
            draws["mix_centre"] = torch.stack([torch.randint(0, h, (nb,), generator=g),
                                               torch.randint(0, w, (nb,), generator=g)], 1)
        return {k: v.to(self.device) for k, v in draws.items()}

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self._started:  # the previous iteration ended or was abandoned: move on to the next epoch
            self._epoch += 1
            self._epoch_state = self._next_state
            self._served = 0
        self._started = True
        self.generator.set_state(self._epoch_state)
        draws = self._draw()
        order, offsets, mask = draws.get("order"), draws.get("offsets"), draws.get("flip")
        self._next_state = self.generator.get_state()
        for i in range(self._served, len(self)):
            batch = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = batch if order is None else order[batch]
            x = self.images[idx]  # (B, C, H, W) uint8: augment before the float conversion, on a quarter of the bytes
            if offsets is not None:  # crop and flip in one gather
                flips = None if mask is None else mask[idx]
                x = augment.crop(x, offsets[0, idx], offsets[1, idx], self.crop_padding, flip=flips)
            elif mask is not None:
                x = augment.flip(x, mask[idx])
            if "op" in draws:
                x = augment.apply_ops(x, draws["op"][idx], draws["magnitude"][idx])
            for r in range(self.rand_augment):
                x = augment.apply_ops(x, draws[f"rand_op{r}"][idx], draws[f"rand_mag{r}"][idx])
            x = torch.addcmul(self._shift, x.to(torch.float32), self._scale)  # augment.normalise
            if "centre" in draws:  # after normalising, so the square is the mean colour, as in the paper's code
                x = augment.cutout(x, draws["centre"][0, idx], draws["centre"][1, idx], self.cutout)
            x = x.to(self.dtype)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = self.labels[idx]
            if "mix_seed" in draws:
                x, y = self._mix(x, y, i, draws)
            self._served = i + 1
            yield x, y

    def _mix(self, x: Tensor, y: Tensor, i: int, draws: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Batch ``i``'s mixup or cutmix, with its labels as soft targets."""
        cut = bool(draws["mix_cut"][i])
        lam = augment.beta_from_seed(self.cutmix_alpha if cut else self.mixup_alpha, int(draws["mix_seed"][i]))
        perm = draws["mix_perm"][i, : len(y)].argsort()  # a uniformly random permutation of this batch
        if cut:
            cy, cx = draws["mix_centre"][i].tolist()
            mixed = augment.cutmix(x, y, augment.cutmix_box(tuple(x.shape[-2:]), lam, cy, cx), perm)
        else:
            mixed = augment.mixup(x, y, lam, perm)
        return mixed.x, mixed.soft_targets(self.num_classes)

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
        size = (target_size, target_size) if isinstance(target_size, int) else tuple(target_size)
        images = augment.resize(images, size)
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
    if not stratified or n == total:
        keep = torch.arange(n)
    else:
        labels = split.labels.cpu()
        perm = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
        counts = torch.bincount(labels, minlength=split.spec.num_classes).tolist()
        exact = [n * c / total for c in counts]
        quota = [math.floor(q) for q in exact]
        # largest remainders first; ties to the lower class index, so the result is deterministic
        for c in sorted(range(len(counts)), key=lambda c: (quota[c] - exact[c], c))[: n - sum(quota)]:
            quota[c] += 1
        permuted = labels[perm]
        keep = torch.cat([perm[permuted == c][:q] for c, q in enumerate(quota)]).sort().values
    keep = keep.to(split.images.device)
    return ImageSplit(split.images[keep], split.labels[keep], split.spec)
