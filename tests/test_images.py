"""Images a user may hand to ``milestones predict`` (issue 7): every common mode and format becomes the model's input
((C, H, W) uint8 of the requested size, with pixel values that mean what the file meant), and an unreadable or
dangerously large file is one line on stderr, exit status 2, no traceback.

``tests/test_cli.py`` already runs predict end to end on a grayscale, RGBA, palette, 16-bit PNG and a CMYK JPEG and
checks a garbage PNG, an 8000x6000 image and a missing file; this file covers the rest of the modes and formats
directly on :func:`milestones.predict.load_image`, with value checks and hypothesis properties, and more unreadable
files through the CLI.
"""

from __future__ import annotations

import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from milestones import cli
from milestones.errors import DataError
from milestones.models import create_model
from milestones.predict import MAX_PIXELS, load_image
from milestones.train.checkpoint import save_checkpoint


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header that claims ``width`` x ``height`` pixels, followed by almost no data: decoding it would
    fail, so an error that says "too large" proves the size was checked before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def make_image(mode: str, pixels: np.ndarray) -> Image.Image:
    """An image of ``mode`` from an (H, W, 4) uint8 array of random bytes."""
    rgb = Image.fromarray(pixels[..., :3])
    if mode == "1":
        return Image.fromarray(pixels[..., 0] > 127)
    if mode in ("L", "RGB", "CMYK", "P", "LAB"):
        return rgb.convert(mode)
    if mode == "LA":
        return Image.fromarray(pixels[..., :2])
    if mode == "RGBA":
        return Image.fromarray(pixels)
    if mode == "I;16":
        return Image.fromarray(pixels[..., 0].astype(np.uint16) * 257 + pixels[..., 1])
    if mode == "I":
        return Image.fromarray(pixels[..., 0].astype(np.int32) * 1000 - 5000)
    if mode == "F":
        return Image.fromarray(pixels[..., 0].astype(np.float32) / 255)
    raise ValueError(mode)


# The file format that stores each mode as that mode (PNG where it can).
FORMAT = {"1": "png", "L": "png", "LA": "png", "P": "png", "RGB": "png", "RGBA": "png", "I;16": "png",
          "I": "tiff", "F": "tiff", "CMYK": "tiff"}


def save(img: Image.Image, folder: Path, fmt: str) -> Path:
    path = folder / f"image.{fmt}"
    img.save(path)
    return path


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(sorted(FORMAT)),
    jpeg=st.booleans(),
    width=st.integers(1, 70),
    height=st.integers(1, 70),
    out=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    in_chans=st.sampled_from([1, 3]),
    digit_style=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_size_and_mode_becomes_the_requested_input(
    mode: str, jpeg: bool, width: int, height: int, out: tuple[int, int], in_chans: int, digit_style: bool, seed: int
) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    img = make_image(mode, pixels)
    fmt = "jpg" if jpeg and mode in ("L", "RGB", "CMYK") else FORMAT[mode]
    with tempfile.TemporaryDirectory() as tmp:
        assert Image.open(save(img, Path(tmp), fmt)).mode == mode or fmt == "jpg"  # the file really is that mode
        x = load_image(Path(tmp) / f"image.{fmt}", in_chans=in_chans, size=out, digit_style=digit_style)
    assert x.dtype == torch.uint8 and tuple(x.shape) == (in_chans, *out)


@settings(max_examples=40, deadline=None)
@given(
    mode=st.sampled_from(["L", "RGB", "P", "LA", "RGBA"]),
    value=st.integers(0, 255),
    size=st.tuples(st.integers(1, 50), st.integers(1, 50)),
    out=st.tuples(st.integers(1, 40), st.integers(1, 40)),
)
def test_a_flat_8bit_image_stays_flat_and_keeps_its_value(
    mode: str, value: int, size: tuple[int, int], out: tuple[int, int]
) -> None:
    """Resizing cannot invent structure, and an opaque 8-bit colour keeps its value in any mode."""
    img = Image.new("L", size, value).convert(mode)
    with tempfile.TemporaryDirectory() as tmp:
        x = load_image(save(img, Path(tmp), "png"), in_chans=3, size=out)
    assert (x.int() - value).abs().max() <= 1  # PIL's fixed-point resampling may round by one


def test_alpha_and_palette_transparency_are_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[:, :3] = [200, 10, 10, 255]  # opaque red on the left, fully transparent black on the right
    la = np.zeros((4, 6, 2), np.uint8)
    la[:, :3] = [40, 255]
    pal = Image.fromarray(rgba[..., :3]).convert("P")
    pal.info["transparency"] = pal.getpixel((5, 0))  # the black entry is transparent
    for name, img in {"rgba": Image.fromarray(rgba), "la": Image.fromarray(la), "p": pal}.items():
        img.save(tmp_path / f"{name}.png", **({"transparency": pal.info["transparency"]} if name == "p" else {}))
        x = load_image(tmp_path / f"{name}.png", in_chans=3, size=(4, 6))
        assert (x[:, :, 3:] == 255).all(), name
        assert (x[:, :, :3] != 255).any(), name


def test_sixteen_bit_and_float_images_keep_their_gradation(tmp_path: Path) -> None:
    ramp16 = np.tile(np.linspace(1000, 50000, 64), (8, 1)).astype(np.uint16)  # every row rises left to right
    Image.fromarray(ramp16).save(tmp_path / "ramp.png")
    Image.fromarray(ramp16.astype(np.float32) / 65535).save(tmp_path / "ramp.tiff")
    for name in ("ramp.png", "ramp.tiff"):
        x = load_image(tmp_path / name, in_chans=1, size=(8, 64))[0, 0].int()
        assert (x[1:] - x[:-1] >= 0).all() and x[-1] - x[0] >= 150, name  # still a ramp, not cut to 8 bits' LSBs


def test_cmyk_bilevel_and_animated(tmp_path: Path) -> None:
    Image.new("CMYK", (5, 5), (255, 0, 0, 0)).save(tmp_path / "cyan.tiff")  # pure cyan ink
    assert load_image(tmp_path / "cyan.tiff", in_chans=3, size=(5, 5))[:, 0, 0].tolist() == [0, 255, 255]
    bits = np.zeros((5, 5), bool)
    bits[:, 2:] = True
    Image.fromarray(bits).save(tmp_path / "bits.png")
    assert load_image(tmp_path / "bits.png", in_chans=1, size=(5, 5))[0, 0].tolist() == [0, 0, 255, 255, 255]
    frames = [Image.new("L", (6, 6), 30), Image.new("L", (6, 6), 220)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert (load_image(tmp_path / "anim.gif", in_chans=1, size=(6, 6)) == 30).all()  # the first frame


@pytest.mark.parametrize("fmt", ["bmp", "webp", "tiff", "gif"])
def test_other_formats(fmt: str, tmp_path: Path) -> None:
    img = Image.new("RGB", (9, 7), (10, 120, 240))
    x = load_image(save(img, tmp_path, fmt), in_chans=3, size=(7, 9))
    assert tuple(x.shape) == (3, 7, 9) and (x[:, 3, 4].int() - torch.tensor([10, 120, 240])).abs().max() <= 8


def test_lab_image_to_grayscale(tmp_path: Path) -> None:
    """LAB (as Photoshop writes TIFFs) has no direct grayscale conversion in PIL: it must go through RGB."""
    img = make_image("LAB", np.random.default_rng(0).integers(0, 256, (6, 8, 4), dtype=np.uint8))
    path = tmp_path / "img.tiff"
    img.save(path)
    assert Image.open(path).mode == "LAB"
    assert tuple(load_image(path, in_chans=1, size=(6, 8)).shape) == (1, 6, 8)


def test_flat_sixteen_bit_image_keeps_its_brightness(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "white16.png")
    assert (load_image(tmp_path / "white16.png", in_chans=1, size=(4, 4)) == 255).all()


# --- files that are not usable images: one line, exit 2 --------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained MNIST-style LeNet-5 checkpoint with the metadata predict reads (preprocessing is what is tested)."""
    torch.manual_seed(0)
    meta = {"model": "lenet5", "model_kwargs": {}, "data": {"name": "mnist", "classes": [str(i) for i in range(10)],
                                                            "mean": [0.1307], "std": [0.3081], "in_chans": 1,
                                                            "img_size": [28, 28], "pad": 2}}
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "lenet5", create_model("lenet5"), meta)


def _bad_file(kind: str, folder: Path) -> Path:
    ok = folder / "ok.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 50, 3), dtype=np.uint8)).save(ok)
    Image.open(ok).save(folder / "ok.jpg", quality=90)
    path = folder / f"{kind}.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not an image\n")
    elif kind == "truncated-png":
        path.write_bytes(ok.read_bytes()[: ok.stat().st_size // 2])
    elif kind == "truncated-jpeg":
        path = folder / "truncated.jpg"
        path.write_bytes((folder / "ok.jpg").read_bytes()[:700])
    elif kind == "bad-crc":
        blob = bytearray(ok.read_bytes())
        blob[40] ^= 0xFF  # inside the first IDAT chunk: its CRC no longer matches
        path.write_bytes(bytes(blob))
    elif kind == "directory":
        path.mkdir()
    elif kind == "claims-too-large":
        path.write_bytes(png_claiming(9000, 9000))  # 81 megapixels > MAX_PIXELS, in 100 bytes
    else:
        raise ValueError(kind)
    return path


BAD = ["empty", "text", "truncated-png", "truncated-jpeg", "bad-crc", "directory", "claims-too-large"]


@pytest.mark.parametrize("kind", BAD)
def test_unusable_image_is_one_line_naming_the_file(
    kind: str, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _bad_file(kind, tmp_path)
    with pytest.raises(DataError) as info:
        load_image(path, in_chans=1, size=(28, 28))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    if kind == "claims-too-large":
        assert "too large" in str(info.value) and f"{MAX_PIXELS // 1_000_000} megapixels" in str(info.value)

    before = sorted(p.name for p in tmp_path.iterdir())
    code = cli.main(["predict", str(checkpoint), str(tmp_path / "ok.png"), str(path)])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], err
    assert "Traceback" not in err
    assert out.startswith(f"{tmp_path / 'ok.png'}: ")  # the good image before it was still answered
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_a_decompression_bomb_is_called_too_large(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(100_000, 100_000))  # 10 gigapixels, past PIL's 179-megapixel bomb check
    with pytest.raises(DataError, match="too large"):
        load_image(path, in_chans=1, size=(28, 28))
