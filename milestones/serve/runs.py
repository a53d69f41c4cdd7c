"""The model side of the page: loaded runs, the images sent to them, and what they answer.

Everything here is plain Python on tensors and bytes, so that it is tested without a server. A drawing or an upload
becomes the input its run was trained on by :func:`milestones.predict.to_model_input`, the function ``milestones
predict`` calls, with the run's :class:`~milestones.data.InputSpec`: MNIST's format for an MNIST run (the digit's
bounding box scaled to 20x20 and its centre of mass put at the centre of a 28x28 field, as LeCun et al. made MNIST,
then the recipe's padding to 32x32), and the scikit-learn digits' format for the ``make demo`` run (the box scaled to
fill a 32x32 bitmap, thresholded, counted in 4x4 blocks to 8x8, scaled back up to 32x32 as
:func:`milestones.data.sources._digits_all` does). A drawing whose ink spans less than :data:`MIN_INK_EXTENT` of
its longer side (a dot, an empty pad) is refused: both formats would blow it up to a full-size blob and the model
would name a class for it with as much confidence as for a digit.

The paper's LeNet-5 answers with distances, not probabilities: its RBF output layer gives the squared distance from
F6's 84 outputs to each class's fixed prototype, and the model's logits are these distances negated. They differ by
tens of units between classes, so a softmax over them puts ~100% on the closest class for a clear digit and a
scribble alike. For such a model (:func:`_distance_output`) the answers carry ``"distances"`` (smaller is closer)
instead of ``"probs"``, and say so in ``"output"``.
"""

from __future__ import annotations

import base64
import io
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor, nn
from torch.nn import functional as F

from ..data import input_spec
from ..data.augment import pad
from ..data.spec import InputSpec
from ..errors import CheckpointError, DataError
from ..predict import MAX_PIXELS, to_8bit, to_model_input, to_pixels
from ..predict import digits_format as digits_format  # the page's formats are predict's: one recipe per dataset
from ..predict import ink_box as _ink_box
from ..predict import mnist_format as mnist_format
from ..viz import features

# Limits on what a request may send. A 280x280 drawing is about 10 KB; a phone photo is a few MB.
MAX_BODY_BYTES = 8 * 1024 * 1024
ACCEPTED_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}
MIN_INK_EXTENT = 1 / 8  # of the drawing's longer side: 35 of the pad's 280 pixels; its pen is 18 pixels wide

LENET_MODELS = ("lenet5", "lenet5_modern")
FEATURE_LAYERS = ("c1", "c3")
TOPK = 5
OVERLAY_SIDE = 224  # pixels of the overlay image the page shows


class BadImageError(DataError):
    """A request's image that cannot be used: wrong type, undecodable, too large, or (a drawing) too little ink.

    ``code`` is the stable, machine-readable name of the problem that the page turns into its own words."""

    def __init__(self, message: str, status: int = 400, code: str = "unreadable_image") -> None:
        super().__init__(message)
        self.status, self.code = status, code


def decode_image(data: bytes, content_type: str, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode a PNG or JPEG sent by a client to an 8-bit ``L`` or ``RGB`` image, refusing anything else.

    The format must match ``content_type`` and the pixel count is checked on the header, before decoding.
    """
    fmt = ACCEPTED_TYPES.get(content_type.split(";")[0].strip().lower())
    if fmt is None:
        raise BadImageError(f"unsupported content type {content_type[:40]!r}; send image/png or image/jpeg", 415,
                            "unsupported_type")
    too_large = f"limit {max_pixels:,} pixels; resize it first"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as img:
                if img.width * img.height > max_pixels:
                    raise BadImageError(f"image is {img.width}x{img.height} pixels, {too_large}", 413, "too_large")
                img.load()
                img = ImageOps.exif_transpose(img)
                return to_8bit(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImageError(f"image is too large to decode safely ({too_large})", 413, "too_large") from None
    except UnidentifiedImageError:
        raise BadImageError(f"the body is not a {fmt} image; send the file's bytes with its own content type") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImageError(f"the {fmt} image is corrupt or truncated ({str(e)[:60]})") from None


def check_ink(img: Image.Image, *, min_extent: float = MIN_INK_EXTENT) -> None:
    """Refuse a drawing whose ink's bounding box spans less than ``min_extent`` of its longer side (422)."""
    side = max(img.width, img.height)
    box = _ink_box(img)
    extent = max(box.size) if box.getextrema()[1] > 32 else 0
    need = int(np.ceil(min_extent * side))
    if not extent:
        raise BadImageError("nothing drawn: the image has no ink; draw a digit", 422, "too_little_ink")
    if extent < need:
        raise BadImageError(f"too little ink to read: it spans {extent} of the image's {side} pixels; draw a larger "
                            f"digit, at least {need} pixels tall or wide", 422, "too_little_ink")


def _distance_output(model: nn.Module) -> bool:
    """Whether ``model`` answers with RBF distances (the paper's LeNet-5): its logits are negated distances."""
    from ..models.lenet import RBF

    return isinstance(getattr(model, "head", None), RBF)


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, dtype=np.uint8).tobytes()).decode()


def maps_payload(maps: Tensor) -> dict[str, Any]:
    """(C, H, W) activations as the page draws them: each map stretched to 0..255 on its own range, base64."""
    lo = maps.flatten(1).min(1).values.view(-1, 1, 1)
    hi = maps.flatten(1).max(1).values.view(-1, 1, 1)
    scaled = ((maps - lo) / (hi - lo).clamp_min(1e-12) * 255).round().clamp(0, 255).to(torch.uint8)
    return {"shape": list(maps.shape), "data": _b64(scaled.numpy())}


def explain(model: nn.Module, x: Tensor, target: int) -> tuple[str, np.ndarray]:
    """``(method, (h, w) heat map)`` of where ``model`` looked for class ``target`` in input ``x`` ``(1, C, H, W)``:
    the method the model's family declares (``Traits.explain``): attention rollout for a ViT, Grad-CAM (on the
    family's default layer) for the CNNs, Swin and CSWin."""
    from ..models import family_of, family_traits
    from ..viz import attention_rollout, grad_cam

    family = family_of(model)
    if family is not None and family_traits(family).explain == "rollout":
        return "attention rollout", attention_rollout(model, x[0])
    cam = grad_cam(model, x[0], target_class=target)
    return f"Grad-CAM ({cam.layer})", cam.coarse


def overlay_png(image: Tensor, heat: np.ndarray | None, *, smooth: bool = True, side: int = OVERLAY_SIDE) -> str:
    """A PNG data URL of ``image`` ((C, H, W) uint8) scaled to ``side`` pixels, with ``heat`` blended in by
    :func:`milestones.viz.overlay` where given."""
    from ..viz import overlay

    rgb = image.expand(3, -1, -1) if image.shape[0] == 1 else image
    base = F.interpolate(rgb[None].float(), size=(side, side), mode="bilinear", align_corners=False)[0] / 255
    arr = base.clamp(0, 1).permute(1, 2, 0).numpy()
    out = overlay(arr, heat, smooth=smooth) if heat is not None else (arr * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@dataclass
class LoadedRun:
    """One run's best checkpoint, ready to answer: the model in eval mode and the data format it was trained on."""

    id: str
    path: Path
    model: nn.Module
    meta: dict[str, Any]
    lock: threading.Lock = field(default_factory=threading.Lock)  # hooks and gradients are per model, not per call

    @property
    def data(self) -> dict[str, Any]:
        return self.meta["data"]

    @property
    def input(self) -> InputSpec:
        """How an image becomes this run's input: the contract saved with its checkpoint."""
        return input_spec(self.data)

    @property
    def drawable(self) -> bool:
        """A LeNet-5 trained on handwritten digits: the page's drawing panel."""
        return self.meta["model"] in LENET_MODELS and self.input.style == "digit"

    def describe(self) -> dict[str, Any]:
        d = self.data
        return {"id": self.id, "model": self.meta["model"], "data": d.get("full_name", d["name"]),
                "classes": list(d["classes"]), "input_size": list(d["input_size"]), "drawable": self.drawable,
                "digits_format": "digits" if self.input.recipe == "sklearn-digits" else "mnist",
                "output": "distances" if _distance_output(self.model) else "probabilities"}

    def draw(self, img: Image.Image) -> dict[str, Any]:
        """The drawing panel's answer: the input as the model saw it, the class, ten scores (softmax probabilities,
        or the paper's LeNet-5's distances), C1 and C3 maps. Too little ink raises :class:`BadImageError` (422)."""
        check_ink(img)
        pixels = to_pixels(img, self.input)
        with self.lock, torch.inference_mode():
            logits, maps = features(self.model, FEATURE_LAYERS).run(to_model_input(pixels, self.input))
        logits = logits[0].float()
        if _distance_output(self.model):
            scores = {"output": "distances", "distances": (-logits).tolist()}
        else:
            scores = {"output": "probabilities", "probs": logits.softmax(0).tolist()}
        seen = pad(pixels[None], self.data.get("pad", 0))[0, 0]
        return {"prediction": self.data["classes"][int(logits.argmax())], **scores, "logits": logits.tolist(),
                "input": {"shape": list(seen.shape), "data": _b64(seen.numpy())},
                "features": {name: maps_payload(maps[name][0].float()) for name in FEATURE_LAYERS}}

    def predict(self, img: Image.Image) -> dict[str, Any]:
        """Top-5 classes of an uploaded image (by probability, or by distance for the paper's LeNet-5), and where the
        model looked for the first (Grad-CAM or attention)."""
        d = self.data
        pixels = to_pixels(img, self.input)
        x = to_model_input(pixels, self.input)
        with self.lock:
            with torch.inference_mode():
                logits = self.model(x).float()[0]
            distances = _distance_output(self.model)
            top = logits.topk(min(TOPK, len(logits)))
            method, heat = explain(self.model, x, int(top.indices[0]))
        seen = pad(pixels[None], d.get("pad", 0))[0]
        key, values = ("distance", -top.values) if distances else ("prob", logits.softmax(0)[top.indices])
        return {"output": "distances" if distances else "probabilities",
                "top": [{"class": d["classes"][i], key: v} for v, i in zip(values.tolist(), top.indices.tolist())],
                "method": method, "overlay": overlay_png(seen, heat, smooth=not method.startswith("attention"))}


def load_runs(paths: list[str | Path], *, device: str = "cpu") -> list[LoadedRun]:
    """Load each run directory's best checkpoint; ids are the folder names, made unique with -2, -3, ..."""
    from ..train.checkpoint import restore_model

    runs: list[LoadedRun] = []
    seen: set[str] = set()
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise CheckpointError(f"run directory {path} does not exist; train one with 'milestones train' first")
        model, meta = restore_model(path, device=device)
        if "data" not in meta:
            raise CheckpointError(f"{path} has no data description in its checkpoint metadata; it cannot be served")
        base = path.name if path.is_dir() else path.stem
        rid, n = base, 2
        while rid in seen:
            rid, n = f"{base}-{n}", n + 1
        seen.add(rid)
        runs.append(LoadedRun(rid, path, model, meta))
    return runs
