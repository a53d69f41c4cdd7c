"""Batched augmentation as tensor ops: a whole batch at once on its own device, no per-sample PIL, no workers.

Every random augmentation comes in two halves: a deterministic function that applies given per-sample parameters
(:func:`crop`, :func:`flip`), which the loader uses with parameters drawn once per epoch from its own generator, and a
``random_*`` wrapper that draws them. The functions work on uint8 images (before normalisation, so indexing moves a
quarter of the bytes) or on floats. Later augmentations (cutout, mixup) belong here too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _reflect(index: Tensor, size: int) -> Tensor:
    """Mirror out-of-range indices about the edges without repeating the edge pixel (``F.pad`` "reflect")."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def crop(
    x: Tensor, dy: Tensor, dx: Tensor, padding: int, *, mode: str = "reflect", flip: Tensor | None = None
) -> Tensor:
    """Crop each image at its own offset from the image padded by ``padding`` pixels on every side.

    ``out[b, :, i, j] = padded(x)[b, :, i + dy[b], j + dx[b]]``: the output keeps the input size, and an offset of
    ``padding`` is the identity. The padded image is never built: the crop is one ``index_select`` on the flattened
    batch with mirrored (``reflect``) or clamped and masked (``constant``, zeros) indices, which on a CPU is several
    times faster than multi-dimensional advanced indexing or ``gather``.

    Args:
        x: ``(B, C, H, W)`` images, any dtype.
        dy: ``(B,)`` integer row offsets in ``[0, 2 * padding]``.
        dx: ``(B,)`` integer column offsets in ``[0, 2 * padding]``.
        padding: Pixels of padding on each side; below H and W for ``reflect``.
        mode: ``"reflect"`` (airbench's CIFAR choice) or ``"constant"`` (zeros, torchvision's RandomCrop default).
        flip: Optional ``(B,)`` boolean mask: also mirror those crops left-right, in the same pass.

    Returns:
        ``(B, C, H, W)`` crops, in the dtype of ``x``.
    """
    b, c, h, w = x.shape
    if mode not in ("reflect", "constant"):
        raise ValueError(f"mode must be 'reflect' or 'constant', got {mode!r}")
    if mode == "reflect" and padding >= min(h, w):
        raise ValueError(f"reflect padding {padding} must be smaller than the image ({h}x{w})")
    dev = x.device
    rows = dy.to(dev).view(b, 1) - padding + torch.arange(h, device=dev)  # (B, H) rows of x to read, maybe outside
    cols = dx.to(dev).view(b, 1) - padding + torch.arange(w, device=dev)  # (B, W)
    if flip is not None:
        cols = torch.where(flip.to(dev).view(b, 1), cols.flip(1), cols)
    if mode == "reflect":
        out = _take(x, _reflect(rows, h), _reflect(cols, w))
    else:
        out = _take(x, rows.clamp(0, h - 1), cols.clamp(0, w - 1))
        inside = ((rows >= 0) & (rows < h)).view(b, 1, h, 1) & ((cols >= 0) & (cols < w)).view(b, 1, 1, w)
        out = out * inside.to(out.dtype)
    return out


def _take(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``out[b, c, i, j] = x[b, c, rows[b, i], cols[b, j]]`` for in-range ``rows`` (B, H') and ``cols`` (B, W')."""
    b, c, h, w = x.shape
    plane = torch.arange(b * c, device=x.device).view(b, c, 1, 1) * (h * w)  # start of each (b, c) plane
    index = plane + (rows * w).view(b, 1, -1, 1) + cols.view(b, 1, 1, -1)  # (B, C, H', W') flat indices
    return x.reshape(-1).index_select(0, index.view(-1)).view(index.shape)


def flip(x: Tensor, mask: Tensor) -> Tensor:
    """Mirror left-right the images of ``x`` (B, C, H, W) where the boolean ``mask`` (B,) is set."""
    return torch.where(mask.to(x.device).view(-1, 1, 1, 1), x.flip(3), x)


def _device_of(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def random_crop(x: Tensor, padding: int, generator: torch.Generator | None = None, *, mode: str = "reflect") -> Tensor:
    """Pad by ``padding`` and crop back to the input size at a random offset per image (see :func:`crop`)."""
    b = x.shape[0]
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=_device_of(generator))
    return crop(x, offsets[0], offsets[1], padding, mode=mode)


def random_flip(x: Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> Tensor:
    """Mirror left-right each image of ``x`` with probability ``p``."""
    mask = torch.rand(x.shape[0], generator=generator, device=_device_of(generator)) < p
    return flip(x, mask)


def normalise(
    x: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor, *, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Map uint8 images (0..255) to ``(x / 255 - mean) / std`` per channel, as ``dtype``.

    Computed in float32 as one multiply-add (scale ``1 / (255 std)``, shift ``-mean / std``), then cast.
    """
    scale, shift = normalise_params(mean, std, x.device)
    if scale.shape[1] != x.shape[1]:
        raise ValueError(f"mean/std have {scale.shape[1]} values for {x.shape[1]} channels")
    return torch.addcmul(shift, x.to(torch.float32), scale).to(dtype)


def normalise_params(
    mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """``(scale, shift)``, each ``(1, C, 1, 1)`` float32 on ``device``, so that ``x * scale + shift`` normalises."""
    mean = torch.as_tensor(mean, dtype=torch.float64).flatten()
    std = torch.as_tensor(std, dtype=torch.float64).flatten()
    scale, shift = 1 / (255 * std), -mean / std  # in float64, rounded once to float32
    return scale.view(1, -1, 1, 1).to(device, torch.float32), shift.view(1, -1, 1, 1).to(device, torch.float32)


def pad(x: Tensor, padding: int, value: int = 0) -> Tensor:
    """Pad every side of ``x`` (B, C, H, W) by ``padding`` pixels of ``value`` (e.g. MNIST 28x28 -> 32x32 with 2)."""
    return F.pad(x, (padding,) * 4, value=value) if padding else x


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize uint8 images to ``size`` (H, W): bilinear, antialiased when shrinking, rounded back to uint8."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    y = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    return y.round_().clamp_(0, 255).to(torch.uint8)
