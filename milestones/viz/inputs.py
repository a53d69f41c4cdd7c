"""What the views look at: a model (a trained run, or a registered name at random init) and an image fed to it the
way its training data were."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError

GRAY_STATS = ((0.5,), (0.5,))
RGB_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # ImageNet's, for a random-init model without data


def load_model(target: str | Path, *, options: Mapping[str, Any] | None = None, seed: int = 0,
               which: str = "best") -> tuple[nn.Module, dict[str, Any]]:
    """A model in eval mode and a description of its input (the ``data`` part of a checkpoint's metadata).

    Args:
        target: a run directory or ``.safetensors`` checkpoint (trained weights), or a registered model name (random
            init with ``seed``, built with ``options``; its input is the spec's size, or ``img_size`` if given).
        options: model keyword arguments for a registered name.
        which: ``best`` or ``last`` checkpoint of a run directory.

    Returns:
        ``(model, data)`` where ``data`` has ``name``, ``classes`` (None for a random-init model) and the fields of
        its :class:`~milestones.data.InputSpec` (``in_chans``, ``img_size``, ``mean``, ``std``, ``pad``, ``style``).
    """
    from ..data.spec import InputSpec
    from ..models import create_model, get_spec

    p = Path(target)
    if p.exists():
        if options:
            raise ConfigError("model options apply to a registered model name, not to a run or checkpoint")
        from ..train.checkpoint import restore_model

        model, meta = restore_model(p, prefer=which)
        return model, dict(meta["data"])
    spec = get_spec(str(target))  # an unknown name: UnknownModelError with close names
    kwargs = dict(options or {})
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = create_model(str(target), **kwargs).eval()
    in_chans = int(kwargs.get("in_chans", spec.input_size[0]))
    size = kwargs.get("img_size", tuple(spec.input_size[1:]))
    size = [int(size), int(size)] if isinstance(size, (int, float)) else [int(s) for s in size]
    mean, std = GRAY_STATS if in_chans == 1 else RGB_STATS if in_chans == 3 else ((0.5,) * in_chans,) * 2
    spec = InputSpec(in_chans, (size[0], size[1]), tuple(mean), tuple(std))
    return model, {"name": None, **spec.to_dict(), "classes": None}


def image_input(path: str | Path, data: Mapping[str, Any], *, digit_style: bool | None = None) -> tuple[Tensor,
                                                                                                       Tensor]:
    """Read an image file for a model: ``(uint8 (C, H, W) as loaded, normalised float (1, C, H', W'))``.

    The file is read with :func:`milestones.predict.read_image` (any PNG/JPEG, size or mode) and fed by
    :func:`milestones.predict.to_model_input` with the model's :class:`~milestones.data.InputSpec` (``data``), as
    ``milestones predict`` and the page feed it. ``digit_style`` overrides the style the data declare.
    """
    from ..data import input_spec
    from ..predict import read_image, to_model_input, to_pixels

    spec = input_spec(data)
    if digit_style is not None:
        spec = spec.with_style("digit" if digit_style else "photo")
    raw = to_pixels(read_image(path), spec)
    return raw, to_model_input(raw, spec)
