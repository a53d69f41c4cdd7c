"""The data types of every dataset: a :class:`DataSpec` (what the data is), an :class:`ImageSplit` (the data) and an
:class:`InputSpec` (what a model trained on it is fed), and :func:`size_hw`, the one reading of an image-size option.

Kept in their own module so that the sources, the loader and the augmentations can all import them without cycles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

DigitRecipe = Literal["mnist", "sklearn-digits"]
DIGIT_RECIPES: tuple[str, ...] = ("mnist", "sklearn-digits")
"""How a handwritten image becomes a sample of a digit set: ``"mnist"`` (LeCun et al.: the ink's box scaled to fit
20/28 of the field, its centre of mass at the centre) or ``"sklearn-digits"`` (UCI optdigits: a 32x32 bitmap counted in
4x4 blocks to 8x8, as scikit-learn's digits are). See :func:`milestones.predict.to_pixels`."""


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
        digit_recipe: For a set of handwriting, how its samples were made from a drawing (:data:`DIGIT_RECIPES`), so
            that a user's drawing is fed the same way; ``None`` for photographs (and clothes).
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
    digit_recipe: DigitRecipe | None = None

    @property
    def full_name(self) -> str:
        """The name to report results under: ``"cifar10"``, or ``"cifar10 (jpeg-q75)"`` for a variant."""
        return f"{self.name} ({self.variant})" if self.variant else self.name

    def __post_init__(self) -> None:
        if len(self.classes) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.classes)} class names for {self.num_classes} classes")
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(f"{self.name}: mean/std need one value per channel ({self.in_chans})")
        if self.digit_recipe is not None and self.digit_recipe not in DIGIT_RECIPES:
            raise ValueError(f"{self.name}: digit_recipe must be one of {DIGIT_RECIPES}, got {self.digit_recipe!r}")

    def input_spec(self, pad: int = 0) -> InputSpec:
        """What a model trained on this data is fed: these images, ``pad`` pixels of zero padding, this mean/std."""
        return InputSpec(self.in_chans, self.img_size, self.mean, self.std, pad=pad,
                         style="digit" if self.digit_recipe else "photo", recipe=self.digit_recipe)


@dataclass(frozen=True)
class InputSpec:
    """A model's input contract: how any image becomes the tensor the model was trained on.

    Saved in every checkpoint (its fields are keys of ``meta["data"]``, :meth:`to_dict`) and read back with
    :meth:`from_dict`, which also reads the ``meta["data"]`` of checkpoints saved before the contract existed.
    :func:`milestones.predict.to_model_input` is the one function that applies it, for ``predict``, ``viz`` and the
    page alike.

    Attributes:
        in_chans: Channels (1: grayscale, 3: RGB).
        img_size: ``(H, W)`` of the stored image, before ``pad``.
        mean: Per-channel mean subtracted from pixels scaled to [0, 1].
        std: Per-channel standard deviation they are divided by.
        pad: Zero padding on every side after formatting (LeNet-5's 28 -> 32 for MNIST).
        style: ``"digit"``: handwriting, inverted to light ink on black and formatted by ``recipe``; ``"photo"``:
            the whole image resized to ``img_size``.
        recipe: The digit recipe (:data:`DIGIT_RECIPES`); ``None`` for photos.
    """

    in_chans: int
    img_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int = 0
    style: Literal["digit", "photo"] = "photo"
    recipe: DigitRecipe | None = None

    def __post_init__(self) -> None:
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(f"mean/std need one value per channel ({self.in_chans}), got {self.mean}, {self.std}")
        if self.style not in ("digit", "photo"):
            raise ValueError(f"style must be 'digit' or 'photo', got {self.style!r}")
        if (self.recipe is None) != (self.style == "photo") or (self.recipe and self.recipe not in DIGIT_RECIPES):
            raise ValueError(f"a digit style needs a recipe of {DIGIT_RECIPES} and a photo none, got {self.recipe!r}")

    @property
    def input_size(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the model's input, padding included."""
        return self.in_chans, self.img_size[0] + 2 * self.pad, self.img_size[1] + 2 * self.pad

    def with_style(self, style: Literal["digit", "photo"]) -> InputSpec:
        """This contract with another style; a digit style keeps its recipe, or takes MNIST's."""
        if style == self.style:
            return self
        return dataclasses.replace(self, style=style, recipe="mnist" if style == "digit" else None)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, the keys :meth:`from_dict` reads (a subset of a checkpoint's ``meta["data"]``)."""
        return {"in_chans": self.in_chans, "img_size": list(self.img_size), "mean": list(self.mean),
                "std": list(self.std), "pad": self.pad, "style": self.style, "recipe": self.recipe}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InputSpec:
        """The contract recorded in ``d`` (:meth:`to_dict`, or a checkpoint's whole ``meta["data"]``) with its
        ``style``. A record from before the contract has none: read it with :func:`milestones.data.input_spec`, which
        asks the dataset's source row."""
        if "style" not in d:
            raise ValueError("this data record has no style (made before the input contract); read it with "
                             "milestones.data.input_spec, which takes the style its dataset declares")
        style, recipe = d["style"], d.get("recipe")
        return cls(int(d["in_chans"]), size_hw(d["img_size"]), tuple(float(v) for v in d["mean"]),
                   tuple(float(v) for v in d["std"]), pad=int(d.get("pad", 0) or 0), style=style, recipe=recipe)


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
