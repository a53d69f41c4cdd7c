"""The one place where a uint8 batch becomes a training batch: augmentation, normalisation and label mixing.

Both loaders hand their batches to a :class:`BatchAugment`: :class:`~milestones.data.loader.TensorLoader` with
parameters drawn once per epoch (so an epoch is fixed by its generator state, and resumable mid-epoch),
:class:`~milestones.data.folder.StreamingLoader` with parameters drawn per batch. The draws come from
:meth:`BatchAugment.draw` in a fixed sequence; the pixels change in :meth:`BatchAugment.__call__`, built from the pure
functions of :mod:`.augment`.

    >>> aug = BatchAugment.for_spec(split.spec, flip=True, crop_padding=4, cutout=16)
    >>> draws = aug.draw(len(split), (32, 32), torch.Generator().manual_seed(0), batches=1, batch_size=len(split))
    >>> x, y = aug(split.images, split.labels, draws)  # (N, 3, 32, 32) float32 normalised, (N,) int64
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..config import AUGMENT_KEYS, Augmentation
from ..errors import ConfigError
from . import augment
from .spec import DataSpec

if TYPE_CHECKING:
    from ..config import DataConfig

Draws = Mapping[str, Tensor]
"""Random parameters from :meth:`BatchAugment.draw`: per-sample tensors (last dimension: samples) and per-batch ones
(first dimension: batches)."""



def check_augmentation(*, trivial_augment: bool = False, rand_augment: int = 0, mixup_alpha: float = 0.0,
                       cutmix_alpha: float = 0.0, prefix: str = "") -> None:
    """Refuse option sets :class:`BatchAugment` cannot serve (one-line :class:`ConfigError`, a ``ValueError``).
    The options are ``data.*`` config keys too (:meth:`BatchAugment.check_config` passes ``prefix="data."``), so the
    message names the keys to change."""
    if trivial_augment and rand_augment:
        raise ConfigError(f"{prefix}trivial_augment and {prefix}rand_augment are two policies: choose one, not both")
    if mixup_alpha < 0 or cutmix_alpha < 0 or rand_augment < 0:
        raise ConfigError(f"{prefix}mixup_alpha, {prefix}cutmix_alpha and {prefix}rand_augment must be >= 0, got "
                          f"{mixup_alpha}, {cutmix_alpha}, {rand_augment}")


@dataclass
class BatchAugment(Augmentation):
    """Turn uint8 batches into float training (or evaluation) batches: augment, normalise, mix.

    Without draws (evaluation) a batch is only normalised. With draws, in this order: crop and flip, TrivialAugment
    or RandAugment on the uint8 pixels, normalisation, cutout (in normalised space, so the square is the mean colour,
    as in the paper's code), the cast to ``dtype``, then mixup or cutmix, which turns the labels into soft targets.

    Args:
        mean: Per-channel mean (0..1 scale); images come out as ``(x / 255 - mean) / std``.
        std: Per-channel standard deviation.
        num_classes: Width of the soft targets of mixed batches (needed only with ``mixup_alpha``/``cutmix_alpha``).
        dtype: Floating dtype of the images returned.
        **augmentations: The keyword-only options of :class:`~milestones.config.Augmentation` (flip, crop_padding,
            cutout, trivial_augment, rand_augment, rand_magnitude, mixup_alpha, cutmix_alpha), applied by
            :func:`augment.trivial_augment`, :func:`augment.rand_augment`, :func:`augment.mixup` and
            :func:`augment.cutmix`.
    """

    mean: Sequence[float]
    std: Sequence[float]
    num_classes: int | None = None
    dtype: torch.dtype = torch.float32
    _params: dict[torch.device, tuple[Tensor, Tensor]] = field(default_factory=dict, init=False, repr=False,
                                                                compare=False)

    def __post_init__(self) -> None:
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean and std need one value per channel, got {len(self.mean)} and {len(self.std)}")
        check_augmentation(trivial_augment=self.trivial_augment, rand_augment=self.rand_augment,
                           mixup_alpha=self.mixup_alpha, cutmix_alpha=self.cutmix_alpha)
        if self.mixes and self.num_classes is None:
            raise ValueError("mixup/cutmix need num_classes (the width of their soft targets)")

    @classmethod
    def for_spec(cls, spec: DataSpec, *, normalise: bool = True, **options: Any) -> BatchAugment:
        """The augmentation ``options`` for a dataset: its statistics (with ``normalise=False``, only ``x / 255``)
        and its number of classes."""
        c = spec.in_chans
        mean, std = (spec.mean, spec.std) if normalise else ((0.0,) * c, (1.0,) * c)
        return cls(mean, std, num_classes=spec.num_classes, **options)

    @staticmethod
    def check_config(data_cfg: DataConfig) -> None:
        """Refuse the augmentation options of a ``data:`` config section (a :class:`~milestones.config.DataConfig`)
        that cannot be served, naming them as ``data.*`` keys; needs no data, so it can run before any loads."""
        check_augmentation(trivial_augment=data_cfg.trivial_augment, rand_augment=data_cfg.rand_augment,
                           mixup_alpha=data_cfg.mixup_alpha, cutmix_alpha=data_cfg.cutmix_alpha, prefix="data.")

    @classmethod
    def from_config(cls, data_cfg: DataConfig, spec: DataSpec) -> BatchAugment:
        """What a ``data:`` config section asks for (a :class:`~milestones.config.DataConfig`): its augmentation
        keys, and ``data.mean``/``data.std`` where set, else the dataset's statistics."""
        cls.check_config(data_cfg)
        mean, std = data_cfg.mean or spec.mean, data_cfg.std or spec.std
        return cls(mean, std, num_classes=spec.num_classes, **{k: getattr(data_cfg, k) for k in AUGMENT_KEYS})

    @property
    def mixes(self) -> bool:
        """Whether batches are mixed (mixup or cutmix), so that labels come out as soft targets."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def draw(self, n: int, size: tuple[int, int], generator: torch.Generator, *, batches: int,
             batch_size: int) -> dict[str, Tensor]:
        """Every random parameter for ``n`` samples of ``size`` (H, W) served in ``batches`` batches.

        Per sample: crop offsets (2, n), flip mask (n,), TrivialAugment operations and magnitudes (n,), cutout
        centres (2, n), RandAugment operations and magnitudes (rand_augment, n); per batch: mixup or cutmix, the
        seed of its ``lam``, a partner order and a box centre. Drawn in this fixed sequence, only for the options
        set (new options come last, so that older options draw the same numbers).
        """
        g = generator
        h, w = size
        draws: dict[str, Tensor] = {}
        if self.crop_padding:
            draws["offsets"] = torch.randint(0, 2 * self.crop_padding + 1, (2, n), generator=g)
        if self.flip:
            draws["flip"] = torch.rand(n, generator=g) < 0.5
        if self.trivial_augment:
            draws["op"], draws["magnitude"] = augment.draw_ops(n, size, g, policy="trivial")
        if self.cutout:
            rows, cols = torch.randint(0, h, (n,), generator=g), torch.randint(0, w, (n,), generator=g)
            draws["centre"] = torch.stack([rows, cols])
        if self.rand_augment:
            ops = [augment.draw_ops(n, size, g, policy="rand", magnitude=self.rand_magnitude)
                   for _ in range(self.rand_augment)]
            draws["rand_op"] = torch.stack([op for op, _ in ops])
            draws["rand_mag"] = torch.stack([m for _, m in ops])
        if self.mixes:
            nb = batches
            if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
                draws["mix_cut"] = torch.rand(nb, generator=g) < 0.5
            else:
                draws["mix_cut"] = torch.full((nb,), self.cutmix_alpha > 0)
            draws["mix_seed"] = torch.randint(0, 2**62, (nb,), generator=g)
            draws["mix_perm"] = torch.rand(nb, batch_size, generator=g)
            draws["mix_centre"] = torch.stack([torch.randint(0, h, (nb,), generator=g),
                                               torch.randint(0, w, (nb,), generator=g)], 1)
        return draws

    def __call__(self, x: Tensor, y: Tensor, draws: Draws | None = None, *, index: Tensor | slice = slice(None),
                 batch: int = 0) -> tuple[Tensor, Tensor]:
        """Augment and normalise one batch.

        Args:
            x: ``(B, C, H, W)`` uint8 images.
            y: ``(B,)`` int64 labels.
            draws: From :meth:`draw`, on the batch's device; None or empty: only normalise.
            index: Where the batch's samples sit along the per-sample draws (default: all of them, in order).
            batch: The batch's number among the per-batch draws.

        Returns:
            ``(x, y)``: ``(B, C, H, W)`` images of ``dtype``; ``y`` unchanged, or ``(B, num_classes)`` float32 soft
            targets when the batch was mixed.
        """
        d = draws or {}
        flips = d["flip"][index] if "flip" in d else None
        if "offsets" in d:  # crop and flip in one gather, on the uint8 pixels: a quarter of the bytes of floats
            x = augment.crop(x, d["offsets"][0, index], d["offsets"][1, index], self.crop_padding, flip=flips)
        elif flips is not None:
            x = augment.flip(x, flips)
        if "op" in d:
            x = augment.apply_ops(x, d["op"][index], d["magnitude"][index])
        for op, magnitude in zip(d.get("rand_op", ()), d.get("rand_mag", ()), strict=True):
            x = augment.apply_ops(x, op[index], magnitude[index])
        scale, shift = self._normalise_params(x.device)
        x = torch.addcmul(shift, x.to(torch.float32), scale)  # augment.normalise
        if "centre" in d:
            x = augment.cutout(x, d["centre"][0, index], d["centre"][1, index], self.cutout)
        x = x.to(self.dtype)
        if "mix_seed" in d:
            x, y = self._mix(x, y, d, batch)
        return x, y

    def _normalise_params(self, device: torch.device) -> tuple[Tensor, Tensor]:
        if device not in self._params:
            self._params[device] = augment.normalise_params(self.mean, self.std, device)
        return self._params[device]

    def _mix(self, x: Tensor, y: Tensor, d: Draws, i: int) -> tuple[Tensor, Tensor]:
        """Batch ``i``'s mixup or cutmix, with its labels as soft targets."""
        cut = bool(d["mix_cut"][i])
        lam = augment.beta_from_seed(self.cutmix_alpha if cut else self.mixup_alpha, int(d["mix_seed"][i]))
        perm = d["mix_perm"][i, : len(y)].argsort()  # a uniformly random permutation of this batch
        if cut:
            cy, cx = d["mix_centre"][i].tolist()
            mixed = augment.cutmix(x, y, augment.cutmix_box(tuple(x.shape[-2:]), lam, cy, cx), perm)
        else:
            mixed = augment.mixup(x, y, lam, perm)
        return mixed.x, mixed.soft_targets(self.num_classes)
