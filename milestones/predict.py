"""Turning a user's image into a model input, safely and the way the model's training data looked.

One contract and one function for every image a model is shown outside training: ``milestones predict``, ``milestones
viz`` and the page's drawing and upload panels all call :func:`to_model_input` with the model's
:class:`~milestones.data.InputSpec` (saved in its checkpoint). Photos are resized to the training size; handwriting is
formatted by its dataset's own recipe: MNIST's for MNIST and KMNIST (:func:`mnist_format`: the ink's box scaled to fit
20x20 and its centre of mass put at the centre of a 28x28 field, as LeCun et al. made MNIST), scikit-learn's for its
digits (:func:`digits_format`: the box scaled to fill a 32x32 bitmap, thresholded, counted in 4x4 blocks to 8x8 and
scaled back up as :func:`milestones.data.sources._digits_all` does).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.nn import functional as F

from .data.augment import normalise, pad
from .data.spec import InputSpec
from .errors import DataError

# Refuse images over 40 megapixels, from a file or an upload: decoding them could exhaust memory (a "decompression
# bomb"). 40 million RGB pixels are 120 MB decoded; a 24- or 40-megapixel phone photo still passes.
MAX_PIXELS = 40_000_000


def read_image(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode any PNG/JPEG (any size or mode) to an 8-bit ``L`` or ``RGB`` image, refusing what cannot be used.

    Modes are normalised: palette and alpha images are composited on white, 16-bit and float images are rescaled to
    8 bits, CMYK and the other colour modes become RGB; EXIF rotation is applied. A file over ``max_pixels`` is
    refused on its header, before decoding. Every problem is a one-line :class:`~milestones.errors.DataError`.
    """
    p = Path(path)
    too_large = f"too large to decode safely (limit {max_pixels // 1_000_000} megapixels); resize it first"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                if img.width * img.height > max_pixels:
                    raise DataError(f"image {p} is {img.width}x{img.height}, {too_large}")
                img.load()
                img = ImageOps.exif_transpose(img)  # phone photos store their rotation in EXIF
                return to_8bit(img)
    except FileNotFoundError:
        raise DataError(f"image {p} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{p} is a folder, not an image file") from None
    except PermissionError:
        raise DataError(f"cannot read image {p}: permission denied") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # PIL's own check (on the header, before decoding) can fire before ours
        raise DataError(f"image {p} is {too_large}") from None
    except UnidentifiedImageError as e:
        raise DataError(f"cannot read {p} as an image ({type(e).__name__}); use a PNG or JPEG file") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"image {p} is corrupt or truncated ({str(e)[:60]}); re-export it as PNG or JPEG") from None


def to_pixels(img: Image.Image, spec: InputSpec) -> Tensor:
    """An image as the model's dataset stores its samples: ``(C, H, W)`` uint8 of ``spec.img_size``, a digit
    formatted by ``spec.recipe``, anything else resized (bilinear). Padding and normalisation are not applied."""
    recipe = spec.recipe if spec.style == "digit" and spec.in_chans == 1 else None
    h, w = spec.img_size
    if recipe == "mnist":
        arr = mnist_format(img, (h, w))
    elif recipe == "sklearn-digits":
        arr = digits_format(img, (h, w))
    else:
        arr = np.asarray(img.convert("L" if spec.in_chans == 1 else "RGB").resize((w, h), Image.BILINEAR),
                         dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(arr.copy())


def to_model_input(image: Image.Image | Tensor, spec: InputSpec) -> Tensor:
    """The ``(1, C, H + 2 pad, W + 2 pad)`` float input a model with contract ``spec`` was trained on, from a decoded
    image (:func:`read_image`, or the page's upload) or from pixels :func:`to_pixels` already made: padded and
    normalised as its test loader did in training."""
    pixels = to_pixels(image, spec) if isinstance(image, Image.Image) else image
    return normalise(pad(pixels[None], spec.pad), spec.mean, spec.std)


def load_image(path: str | Path, *, in_chans: int, size: Sequence[int], digit_style: bool = False) -> torch.Tensor:
    """Read any PNG/JPEG (any size or mode) as a ``(C, H, W)`` uint8 tensor of ``size`` ``(H, W)``
    (:func:`read_image`, then :func:`to_pixels`). ``digit_style`` formats a grayscale digit by MNIST's recipe."""
    c = int(in_chans)
    spec = InputSpec(c, (int(size[0]), int(size[1])), (0.0,) * c, (1.0,) * c)
    return to_pixels(read_image(path), spec.with_style("digit") if digit_style else spec)


def to_8bit(img: Image.Image) -> Image.Image:
    """Grayscale ``L`` or ``RGB`` (alpha composited on white) from any mode."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if img.mode.startswith("I;16") or (img.mode == "I" and lo >= 0 and hi <= 65535 and hi > 255):
            scaled = arr / 257  # 16-bit samples: 65535 is white, whatever the image's own range
        elif img.mode == "I" and lo >= 0 and hi <= 255:
            scaled = arr
        elif img.mode == "F" and lo >= 0 and hi <= 1:
            scaled = arr * 255  # the usual float convention, 0..1
        else:  # no known range: stretch what is there
            scaled = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.round().clip(0, 255).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img.convert("RGBA")).convert("RGB")
    if img.mode == "CMYK":
        return img.convert("RGB")
    if img.mode == "1":
        return img.convert("L")
    if img.mode not in ("L", "RGB"):  # LAB, HSV, YCbCr...: PIL converts them to RGB, not always to L
        return img.convert("RGB")
    return img


def ink_box(img: Image.Image) -> Image.Image:
    """Light ink on black (inverting dark-on-light), cropped to the ink's bounding box; all black if there is none."""
    img = img.convert("L")
    if np.asarray(img).mean() > 127:
        img = ImageOps.invert(img)
    ys, xs = np.nonzero(np.asarray(img) > 32)
    if not len(xs):
        return Image.new("L", (1, 1), 0)
    return img.crop((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))


def _fit(ink: Image.Image, box: int) -> Image.Image:
    """``ink`` scaled (Lanczos) so that its longer side is ``box`` pixels."""
    scale = box / max(ink.width, ink.height)
    return ink.resize((max(1, round(ink.width * scale)), max(1, round(ink.height * scale))), Image.LANCZOS)


def mnist_format(img: Image.Image, size: tuple[int, int] = (28, 28)) -> np.ndarray:
    """``size`` uint8 as MNIST was made (28x28): the ink's box scaled to fit 20/28 of the field, its centre of mass
    moved to the centre."""
    h, w = size
    ink = _fit(ink_box(img), max(1, round(min(h, w) * 20 / 28)))
    field = np.zeros((h, w), np.float64)
    y0, x0 = (h - ink.height) // 2, (w - ink.width) // 2
    field[y0:y0 + ink.height, x0:x0 + ink.width] = np.asarray(ink, dtype=np.float64)
    if field.sum() > 0:
        ys, xs = np.mgrid[:h, :w]
        cy, cx = (field * ys).sum() / field.sum(), (field * xs).sum() / field.sum()
        field = _shift(field, round((h - 1) / 2 - cy), round((w - 1) / 2 - cx))
    return field.round().clip(0, 255).astype(np.uint8)


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` moved by ``(dy, dx)`` pixels, zeros coming in (the 20x20 box's margin means nothing leaves the field)."""
    out = np.zeros_like(a)
    h, w = a.shape
    if abs(dy) < h and abs(dx) < w:
        out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = a[max(-dy, 0):h - max(dy, 0),
                                                                       max(-dx, 0):w - max(dx, 0)]
    return out


def digits_format(img: Image.Image, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """``size`` uint8 as the scikit-learn digits look after our loader: a 32x32 bitmap counted in 4x4 blocks to 8x8
    (values 0..16), scaled to 0..255 and upsampled to ``size`` bilinearly with antialiasing."""
    ink = _fit(ink_box(img), 32)
    bitmap = Image.new("L", (32, 32), 0)
    bitmap.paste(ink, ((32 - ink.width) // 2, (32 - ink.height) // 2))
    bits = torch.from_numpy((np.asarray(bitmap) > 127).astype(np.float32))[None, None]
    counts = F.avg_pool2d(bits, 4) * 16  # (1, 1, 8, 8) set pixels per block, 0..16
    x = F.interpolate(counts * (255 / 16), size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)[0, 0].numpy()
