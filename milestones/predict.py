"""Turning a user's image file into a model input, safely and the way the model's training data looked."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DataError

# Refuse images over 40 megapixels: decoding them could exhaust memory (a "decompression bomb").
MAX_PIXELS = 40_000_000


def load_image(path: str | Path, *, in_chans: int, size: Sequence[int], digit_style: bool = False) -> torch.Tensor:
    """Read any PNG/JPEG (any size or mode) as a ``(C, H, W)`` uint8 tensor of ``size`` ``(H, W)``.

    Modes are normalised first: palette and alpha images are composited on white, 16-bit and float images are
    rescaled to 8 bits, CMYK is converted to RGB; then the image becomes grayscale or RGB as the model expects.
    ``digit_style`` mimics MNIST: a light background is inverted to white-on-black, and the digit's bounding box is
    scaled to fit 20/28 of the field and centred, as the MNIST images were made.
    """
    p = Path(path)
    too_large = f"too large to decode safely (limit {MAX_PIXELS // 1_000_000} megapixels); resize it first"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise DataError(f"image {p} is {img.width}x{img.height}, {too_large}")
                img.load()
                img = ImageOps.exif_transpose(img)  # phone photos store their rotation in EXIF
                img = _to_8bit(img).convert("L" if in_chans == 1 else "RGB")
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
    h, w = int(size[0]), int(size[1])
    if digit_style and in_chans == 1:
        img = _mnist_style(img, (h, w))
    else:
        img = img.resize((w, h), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(arr.copy())


def _to_8bit(img: Image.Image) -> Image.Image:
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


def _mnist_style(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    arr = np.asarray(img)
    if arr.mean() > 127:  # dark ink on light paper -> MNIST's light ink on black
        img = ImageOps.invert(img)
        arr = np.asarray(img)
    ys, xs = np.nonzero(arr > 32)
    if len(xs):
        img = img.crop((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    h, w = size
    box = max(1, round(min(h, w) * 20 / 28))
    scale = box / max(img.width, img.height)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    canvas = Image.new("L", (w, h), 0)
    canvas.paste(img, ((w - img.width) // 2, (h - img.height) // 2))
    return canvas
