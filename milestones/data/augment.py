"""Batched augmentation as tensor ops: a whole batch at once on its own device, no per-sample PIL, no workers.

Every random augmentation comes in two halves: a deterministic function that applies given per-sample parameters
(:func:`crop`, :func:`flip`), which the loader uses with parameters drawn once per epoch from its own generator, and a
``random_*`` wrapper that draws them. The functions work on uint8 images (before normalisation, so indexing moves a
quarter of the bytes) or on floats.

* Geometry: :func:`crop` (pad and crop), :func:`flip`, :func:`cutout` (DeVries & Taylor, arXiv:1708.04552).
* Mixing, which also mixes the labels: :func:`mixup` (Zhang et al., arXiv:1710.09412) and :func:`cutmix` (Yun et al.,
  arXiv:1905.04899) return a :class:`Mixed` batch, with soft targets and a loss; :func:`soft_targets` adds label
  smoothing (Szegedy et al., arXiv:1512.00567).
* Policies: :func:`trivial_augment` (TrivialAugment Wide, Müller & Hutter, arXiv:2103.10158) and :func:`rand_augment`
  (Cubuk et al., arXiv:1909.13719), batched over per-image operations; see :func:`apply_ops`.

A random wrapper draws from the ``torch.Generator`` it is given (on the generator's device), so a seeded generator
makes it reproducible on any device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
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


def cutout(x: Tensor, cy: Tensor, cx: Tensor, size: int, value: float = 0) -> Tensor:
    """Fill a ``size`` x ``size`` square of each image with ``value``, centred at ``(cy[b], cx[b])``, clipped at the
    borders.

    The square covers rows ``cy - size // 2`` to ``cy - size // 2 + size - 1`` (columns likewise): exactly ``size``
    pixels a side when it lies inside the image. DeVries & Taylor (arXiv:1708.04552) draw the centre anywhere in the
    image, so the square is often partly outside, and cut after normalisation, where 0 is the mean colour; the loaders
    do the same (their code cuts ``size - 1`` pixels for an odd ``size``; we cut ``size``).

    Args:
        x: ``(B, C, H, W)`` images, any dtype.
        cy: ``(B,)`` integer centre rows.
        cx: ``(B,)`` integer centre columns.
        size: Side of the square in pixels.
        value: Fill value.
    """
    b, _, h, w = x.shape
    dev = x.device
    top = cy.to(dev).view(b, 1) - size // 2
    left = cx.to(dev).view(b, 1) - size // 2
    rows, cols = torch.arange(h, device=dev), torch.arange(w, device=dev)
    in_rows = (rows >= top) & (rows < top + size)  # (B, H)
    in_cols = (cols >= left) & (cols < left + size)  # (B, W)
    return x.masked_fill(in_rows.view(b, 1, h, 1) & in_cols.view(b, 1, 1, w), value)


def random_cutout(x: Tensor, size: int, generator: torch.Generator | None = None, value: float = 0) -> Tensor:
    """:func:`cutout` at a uniformly random centre per image (anywhere in the image, as in the paper)."""
    b, _, h, w = x.shape
    dev = _device_of(generator)
    cy = torch.randint(0, h, (b,), generator=generator, device=dev)
    cx = torch.randint(0, w, (b,), generator=generator, device=dev)
    return cutout(x, cy, cx, size, value)


def soft_targets(y: Tensor, num_classes: int, smoothing: float = 0.0) -> Tensor:
    """``(B, num_classes)`` float32 targets: ``(1 - smoothing) * one_hot(y) + smoothing / num_classes`` (Szegedy et
    al., arXiv:1512.00567, section 7); each row sums to 1. ``F.cross_entropy(logits, soft_targets(y, k, s))`` equals
    ``F.cross_entropy(logits, y, label_smoothing=s)``."""
    out = torch.full((len(y), num_classes), smoothing / num_classes, device=y.device)
    return out.scatter_add_(1, y.view(-1, 1), torch.full((len(y), 1), 1.0 - smoothing, device=y.device))


class Mixed(NamedTuple):
    """A mixed batch: ``x`` is ``lam`` parts of the images labelled ``y_a`` and ``1 - lam`` parts of ``y_b``."""

    x: Tensor
    y_a: Tensor
    y_b: Tensor
    lam: float

    def soft_targets(self, num_classes: int, smoothing: float = 0.0) -> Tensor:
        """``(B, num_classes)`` targets ``lam * t(y_a) + (1 - lam) * t(y_b)``; rows sum to 1."""
        a = soft_targets(self.y_a, num_classes, smoothing)
        return a.mul_(self.lam).add_(soft_targets(self.y_b, num_classes, smoothing), alpha=1.0 - self.lam)

    def loss(self, logits: Tensor, smoothing: float = 0.0) -> Tensor:
        """``lam * CE(logits, y_a) + (1 - lam) * CE(logits, y_b)``, the papers' loss (equal to the cross-entropy with
        :meth:`soft_targets`)."""
        ce_a = F.cross_entropy(logits, self.y_a, label_smoothing=smoothing)
        ce_b = F.cross_entropy(logits, self.y_b, label_smoothing=smoothing)
        return self.lam * ce_a + (1.0 - self.lam) * ce_b


def mixup(x: Tensor, y: Tensor, lam: float, perm: Tensor) -> Mixed:
    """``lam * x + (1 - lam) * x[perm]`` with labels ``y`` and ``y[perm]`` (Zhang et al., arXiv:1710.09412).

    Args:
        x: ``(B, C, H, W)`` floating images (normalised or not; mixing is linear).
        y: ``(B,)`` int64 labels.
        lam: Weight of the batch itself, in [0, 1].
        perm: ``(B,)`` permutation pairing each image with its partner.
    """
    if not x.is_floating_point():
        raise ValueError(f"mixup needs floating images (a uint8 blend would round), got {x.dtype}")
    perm = perm.to(x.device)
    return Mixed(x.mul(lam).add_(x[perm], alpha=1.0 - lam), y, y[perm.to(y.device)], float(lam))


def cutmix(x: Tensor, y: Tensor, box: tuple[int, int, int, int], perm: Tensor) -> Mixed:
    """Paste the ``box`` region of each partner image ``x[perm]`` into ``x`` (Yun et al., arXiv:1905.04899).

    Args:
        x: ``(B, C, H, W)`` images, any dtype.
        y: ``(B,)`` int64 labels.
        box: ``(top, left, height, width)`` in pixels, inside the image; the same box for the whole batch, as in the
            paper's code.
        perm: ``(B,)`` permutation pairing each image with its partner.

    Returns:
        The mixed batch, with ``lam = 1 - box area / image area`` (the share of each image that is its own).
    """
    top, left, bh, bw = box
    h, w = x.shape[-2:]
    if not (0 <= top and 0 <= left and 0 <= bh and 0 <= bw and top + bh <= h and left + bw <= w):
        raise ValueError(f"box {box} is not inside the {h}x{w} image")
    perm = perm.to(x.device)
    out = x.clone()
    out[:, :, top : top + bh, left : left + bw] = x[perm, :, top : top + bh, left : left + bw]
    return Mixed(out, y, y[perm.to(y.device)], 1.0 - bh * bw / (h * w))


def _beta(alpha: float, generator: torch.Generator | None) -> float:
    """One draw of Beta(alpha, alpha), seeded from ``generator`` (torch has no seeded Beta sampler)."""
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=_device_of(generator)).item())
    return beta_from_seed(alpha, seed)


def random_mixup(x: Tensor, y: Tensor, alpha: float = 1.0, generator: torch.Generator | None = None) -> Mixed:
    """:func:`mixup` with ``lam ~ Beta(alpha, alpha)`` once per batch and a random pairing (the paper's CIFAR-10
    setting is ``alpha = 1``)."""
    lam = _beta(alpha, generator)
    return mixup(x, y, lam, torch.randperm(len(x), generator=generator, device=_device_of(generator)))


def cutmix_box(size: tuple[int, int], lam: float, cy: int, cx: int) -> tuple[int, int, int, int]:
    """The paper's box for a drawn ``lam``: sides ``sqrt(1 - lam)`` times the image's, centred at ``(cy, cx)`` and
    clipped at the borders, as ``(top, left, height, width)``."""
    h, w = size
    cut_h, cut_w = int(h * math.sqrt(1.0 - lam)), int(w * math.sqrt(1.0 - lam))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    return top, left, bottom - top, right - left


def random_cutmix(x: Tensor, y: Tensor, alpha: float = 1.0, generator: torch.Generator | None = None) -> Mixed:
    """:func:`cutmix` as in the paper's code: ``lam ~ Beta(alpha, alpha)``, a box of sides ``sqrt(1 - lam)`` times
    the image's centred uniformly at random and clipped at the borders, and ``lam`` recomputed from the clipped box."""
    h, w = x.shape[-2:]
    dev = _device_of(generator)
    lam = _beta(alpha, generator)
    cy, cx = torch.randint(0, 1 << 30, (2,), generator=generator, device=dev).tolist()
    perm = torch.randperm(len(x), generator=generator, device=dev)
    return cutmix(x, y, cutmix_box((h, w), lam, cy % h, cx % w), perm)


def beta_from_seed(alpha: float, seed: int) -> float:
    """Beta(alpha, alpha) drawn by NumPy from ``seed`` (torch has no seeded Beta sampler); :func:`_beta`'s second
    half, for parameters drawn ahead of time."""
    return float(np.random.default_rng(seed).beta(alpha, alpha))


#: The operations of TrivialAugment Wide and RandAugment, in torchvision's order (``apply_ops`` indexes this).
OPS = (
    "identity",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "rotate",
    "brightness",
    "color",
    "contrast",
    "sharpness",
    "posterize",
    "solarize",
    "autocontrast",
    "equalize",
)
_GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")
_SIGNED = torch.tensor([op in _GEOMETRIC or op in ("brightness", "color", "contrast", "sharpness") for op in OPS])


def magnitude_bins(policy: str, num_bins: int, size: tuple[int, int]) -> Tensor:
    """``(len(OPS), num_bins)`` float64 table: each operation's magnitude at each strength bin.

    The ranges are torchvision's: ``"trivial"`` (TrivialAugment Wide: shear 0.99, translate 32 px, rotate 135 deg,
    enhancements 0.99, posterize 8..2 bits) and ``"rand"`` (RandAugment: shear 0.3, translate 150/331 of the side,
    rotate 30 deg, enhancements 0.9, posterize 8..4 bits); solarize runs from threshold 1.0 down to 0.0 (a fraction of
    the maximum value). Parameterless operations have zeros.
    """
    h, w = size
    if policy == "trivial":
        top = {"shear_x": 0.99, "shear_y": 0.99, "translate_x": 32.0, "translate_y": 32.0, "rotate": 135.0}
        enhance, posterize_steps = 0.99, 6
    elif policy == "rand":
        top = {
            "shear_x": 0.3,
            "shear_y": 0.3,
            "translate_x": 150.0 / 331.0 * w,
            "translate_y": 150.0 / 331.0 * h,
            "rotate": 30.0,
        }
        enhance, posterize_steps = 0.9, 4
    else:
        raise ValueError(f"policy must be 'trivial' or 'rand', got {policy!r}")
    top.update(dict.fromkeys(("brightness", "color", "contrast", "sharpness"), enhance))
    table = torch.zeros(len(OPS), num_bins, dtype=torch.float64)
    for i, op in enumerate(OPS):
        if op in top:  # float32 linspace, as torchvision's tables, then exact in float64
            table[i] = torch.linspace(0.0, top[op], num_bins).double()
        elif op == "posterize":
            table[i] = (8 - torch.arange(num_bins) / ((num_bins - 1) / posterize_steps)).round().double()
        elif op == "solarize":
            table[i] = torch.linspace(1.0, 0.0, num_bins).double()
    return table


def _bound(x: Tensor) -> float:
    return 1.0 if x.is_floating_point() else 255.0


def _finish(out: Tensor, like: Tensor) -> Tensor:
    """Clamp a float32 result to the value range of ``like`` and cast to its dtype (truncating, as torchvision)."""
    out = out.clamp_(0, _bound(like))
    return out.to(like.dtype)


def _gray(x: Tensor) -> Tensor:
    """ITU-R 601 luma ``(B, 1, H, W)`` float32 of RGB images, floored for integer images (torchvision's rule)."""
    r, g, b = x.to(torch.float32).unbind(1)
    gray = r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(1)
    return gray if x.is_floating_point() else gray.floor_()


def _blend(x: Tensor, other: Tensor, ratio: Tensor) -> Tensor:
    """``ratio * x + (1 - ratio) * other`` per image (``ratio`` (B, 1, 1, 1)), clamped, in the dtype of ``x``."""
    return _finish(x.to(torch.float32).mul(ratio).add_(other * (1.0 - ratio)), x)


def _brightness(x: Tensor, m: Tensor) -> Tensor:
    return _finish(x.to(torch.float32).mul(1.0 + m), x)


def _color(x: Tensor, m: Tensor) -> Tensor:
    return x if x.shape[1] == 1 else _blend(x, _gray(x), 1.0 + m)


def _contrast(x: Tensor, m: Tensor) -> Tensor:
    gray = _gray(x) if x.shape[1] == 3 else x.to(torch.float32)
    return _blend(x, gray.mean(dim=(1, 2, 3), keepdim=True), 1.0 + m)


def _sharpness(x: Tensor, m: Tensor) -> Tensor:
    """Blend with a smoothed copy (3x3 kernel, 5 in the centre, 1 around, / 13); the border pixels are kept."""
    c, h, w = x.shape[1:]
    if h <= 2 or w <= 2:
        return x
    kernel = torch.ones(3, 3, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(c, 1, 3, 3)
    out = x.to(torch.float32, copy=True)
    blurred = F.conv2d(out, kernel, groups=c)
    if not x.is_floating_point():
        blurred = blurred.round_()
    inner = out[:, :, 1:-1, 1:-1]
    inner.add_((blurred - inner) * (1.0 - (1.0 + m)))  # x + (1 - factor) * (blurred - x), factor = 1 + m
    return _finish(out, x)


def _posterize(x: Tensor, m: Tensor) -> Tensor:
    bits = m.to(torch.int64)  # (B, 1, 1, 1), 0..8
    if x.is_floating_point():
        levels = (2**bits).to(x.dtype)
        return x.mul(levels).floor_().clamp_(min=torch.zeros_like(levels), max=levels - 1).div_(levels)
    keep = ((0xFF << (8 - bits)) & 0xFF).to(torch.uint8)  # the top `bits` bits of each value
    return x & keep


def _solarize(x: Tensor, m: Tensor) -> Tensor:
    bound = _bound(x)
    return torch.where(x >= bound * m, (bound - x) if x.is_floating_point() else 255 - x, x)


def _autocontrast(x: Tensor, m: Tensor) -> Tensor:
    """Stretch each channel of each image to the full range; constant channels are left alone."""
    bound = _bound(x)
    f = x.to(torch.float32)
    low, high = f.amin(dim=(2, 3), keepdim=True), f.amax(dim=(2, 3), keepdim=True)
    flat = high == low
    inv_scale = (high - low).mul_(1.0 / bound).masked_fill_(flat, 1.0)
    return _finish(f.sub(low.masked_fill(flat, 0.0)).div_(inv_scale), x)


def _equalize(x: Tensor, m: Tensor) -> Tensor:
    """Histogram equalisation per channel with PIL's lookup table (``ImageOps.equalize``); float images are quantised
    to 256 levels first."""
    q = x if x.dtype == torch.uint8 else x.mul(255).round_().clamp_(0, 255).to(torch.uint8)
    b, c, h, w = q.shape
    flat = q.reshape(b * c, h * w).to(torch.int64)
    hist = torch.zeros(b * c, 256, dtype=torch.int64, device=x.device).scatter_add_(1, flat, torch.ones_like(flat))
    # PIL: step = (pixels not of the largest value present) // 255; lut[v] = (cum_hist[v - 1] + step // 2) // step
    last = 255 - hist.flip(1).ne(0).to(torch.int64).argmax(1, keepdim=True)  # largest value present
    step = (h * w - hist.gather(1, last)) // 255
    cum = hist.cumsum(1)[:, :-1]
    lut = (cum + step // 2).div(step.clamp(min=1), rounding_mode="floor").clamp_(0, 255)
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut], dim=1).to(torch.uint8)
    out = torch.where(step != 0, lut.gather(1, flat).to(torch.uint8), flat.to(torch.uint8)).view(b, c, h, w)
    return out if x.dtype == torch.uint8 else out.to(x.dtype).div_(255)


_COLOR_OPS = {
    "brightness": _brightness,
    "color": _color,
    "contrast": _contrast,
    "sharpness": _sharpness,
    "posterize": _posterize,
    "solarize": _solarize,
    "autocontrast": _autocontrast,
    "equalize": _equalize,
}


def _geometric(x: Tensor, op: Tensor, m: Tensor) -> Tensor:
    """Shear, translate and rotate, each image by its own matrix, in one ``grid_sample`` (nearest, zero fill).

    The inverse matrices follow torchvision's ``_get_inverse_affine_matrix`` and its pixel-centre grid, so the result
    equals ``F.affine``/``F.rotate`` image by image: shears about the top-left corner with ``shear = atan(m)``,
    translations by ``int(m)`` pixels, rotations by ``m`` degrees counter-clockwise about the centre.
    """
    n, _, h, w = x.shape
    dev = x.device
    m = m.to(torch.float64)
    zero = torch.zeros_like(m)

    def where(name: str, value: Tensor) -> Tensor:
        return torch.where(op == OPS.index(name), value, zero)

    sx = torch.deg2rad(where("shear_x", torch.rad2deg(torch.atan(m))))
    sy = torch.deg2rad(where("shear_y", torch.rad2deg(torch.atan(m))))
    tx, ty = where("translate_x", torch.trunc(m)), where("translate_y", torch.trunc(m))
    rot = torch.deg2rad(where("rotate", -m))  # F.rotate hands -angle to the inverse-matrix helper
    corner = (op == OPS.index("shear_x")) | (op == OPS.index("shear_y"))  # torchvision shears with center=[0, 0]
    cx, cy = torch.where(corner, -w / 2, zero), torch.where(corner, -h / 2, zero)
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -(a * torch.tan(sx) + torch.sin(rot))
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = torch.cos(rot) - c * torch.tan(sx)
    m0, m1, m3, m4 = d, -b, -c, a  # the inverse of [[a, b], [c, d]] (determinant 1)
    m2 = cx - m0 * (cx + tx) - m1 * (cy + ty)
    m5 = cy - m3 * (cx + tx) - m4 * (cy + ty)
    theta = torch.stack([m0, m1, m2, m3, m4, m5], 1).view(n, 2, 3).to(torch.float32)
    xs = torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, w, device=dev)  # pixel centres about the image centre
    ys = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, h, device=dev)
    base = torch.stack([xs.expand(h, w), ys.view(h, 1).expand(h, w), torch.ones(h, w, device=dev)], -1)
    scale = torch.tensor([0.5 * w, 0.5 * h], dtype=torch.float32, device=dev)
    grid = base.view(1, h * w, 3).expand(n, -1, -1).bmm(theta.to(dev).transpose(1, 2) / scale).view(n, h, w, 2)
    out = F.grid_sample(x.to(torch.float32), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out if x.is_floating_point() else out.round_().to(x.dtype)


def apply_ops(x: Tensor, op: Tensor, magnitude: Tensor) -> Tensor:
    """Apply to each image of ``x`` its own operation ``OPS[op[b]]`` at its own ``magnitude[b]``.

    Operations follow torchvision's kernels (``transforms.v2.functional``), so an image comes out as torchvision's
    ``_apply_image_or_video_transform`` would make it (up to float rounding, at most 1/255 on rare pixels): shears
    take the shear factor, translations pixels, rotation degrees; brightness, color, contrast and sharpness take
    ``factor - 1``; posterize takes bits, solarize a threshold as a fraction of the maximum value. The batch is
    grouped by operation, so each runs once on its images; all geometric ones share one ``grid_sample``.

    Args:
        x: ``(B, C, H, W)`` uint8 images (0..255) or floats in [0, 1]; C is 1 or 3.
        op: ``(B,)`` integer indices into :data:`OPS`.
        magnitude: ``(B,)`` signed magnitudes.

    Returns:
        The augmented images, in the dtype of ``x``.
    """
    if x.shape[1] not in (1, 3):
        raise ValueError(f"images need 1 or 3 channels, got {x.shape[1]}")
    dtype = x.dtype
    if x.is_floating_point() and dtype != torch.float32:
        x = x.to(torch.float32)
    op, magnitude = op.to(x.device), magnitude.to(x.device)
    out = x.clone()
    geometric = torch.zeros_like(op, dtype=torch.bool)
    for name in _GEOMETRIC:
        geometric |= op == OPS.index(name)
    idx = geometric.nonzero().squeeze(1)
    if len(idx):
        out[idx] = _geometric(x[idx], op[idx], magnitude[idx])
    for name, fn in _COLOR_OPS.items():
        idx = (op == OPS.index(name)).nonzero().squeeze(1)
        if len(idx):
            out[idx] = fn(x[idx], magnitude[idx].to(torch.float32).view(-1, 1, 1, 1))
    return out.to(dtype)


def draw_ops(
    n: int,
    size: tuple[int, int],
    generator: torch.Generator | None = None,
    *,
    policy: str = "trivial",
    num_bins: int = 31,
    magnitude: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw ``n`` (operation, signed magnitude) pairs: a uniform operation, a uniform strength bin (or the fixed
    ``magnitude`` bin, RandAugment) and, for signed operations, a random sign.

    Returns:
        ``(op, magnitude)``: ``(n,)`` int64 indices into :data:`OPS` and ``(n,)`` float64 values for
        :func:`apply_ops`, on the generator's device.
    """
    dev = _device_of(generator)
    op = torch.randint(0, len(OPS), (n,), generator=generator, device=dev)
    if magnitude is None:
        bins = torch.randint(0, num_bins, (n,), generator=generator, device=dev)
    else:
        if not 0 <= magnitude < num_bins:
            raise ValueError(f"magnitude must be in 0..{num_bins - 1}, got {magnitude}")
        bins = torch.full((n,), magnitude, device=dev)
    negative = torch.rand(n, generator=generator, device=dev) <= 0.5
    values = magnitude_bins(policy, num_bins, size).to(dev)[op, bins]
    return op, torch.where(negative & _SIGNED.to(dev)[op], -values, values)


def trivial_augment(x: Tensor, generator: torch.Generator | None = None, *, num_bins: int = 31) -> Tensor:
    """TrivialAugment Wide (Müller & Hutter, arXiv:2103.10158): one random operation at a random strength per image.

    Works on uint8 images (before normalisation) or floats in [0, 1]; see :func:`apply_ops`.
    """
    op, magnitude = draw_ops(len(x), tuple(x.shape[-2:]), generator, policy="trivial", num_bins=num_bins)
    return apply_ops(x, op, magnitude)


def rand_augment(
    x: Tensor,
    generator: torch.Generator | None = None,
    *,
    num_ops: int = 2,
    magnitude: int = 9,
    num_bins: int = 31,
) -> Tensor:
    """RandAugment (Cubuk et al., arXiv:1909.13719): ``num_ops`` random operations in a row per image, all at strength
    bin ``magnitude`` of ``num_bins`` (torchvision's defaults: 2 operations, bin 9 of 31)."""
    size = tuple(x.shape[-2:])
    for _ in range(num_ops):
        op, values = draw_ops(len(x), size, generator, policy="rand", num_bins=num_bins, magnitude=magnitude)
        x = apply_ops(x, op, values)
    return x
