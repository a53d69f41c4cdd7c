"""Reading weight files made by other tools, without ever running code from them."""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError


def load_pickle_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a ``.pt``/``.pth`` state dict with ``torch.load(weights_only=True)``.

    The restricted unpickler only rebuilds tensors and plain containers, so a file crafted to run code is refused
    (with a one-line :class:`CheckpointError`) and nothing in it runs.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weight file {p} does not exist")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except Exception as e:  # safetensors raises several types for a bad file
            raise CheckpointError(f"{p} is not a valid safetensors file ({str(e)[:60]})") from None
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise CheckpointError(f"cannot read {p}: {e.strerror or e}") from None
    if head[:2] != b"PK" and head[:1] != b"\x80":  # torch.save writes a zip archive, or (legacy) a binary pickle
        what = "an empty file" if not head else "neither the zip archive torch.save writes nor its older pickle format"
        raise CheckpointError(f"{p} is not a PyTorch checkpoint ({what}); give the .pth file torchvision or timm "
                              "downloaded")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr; the refusal below says enough
            warnings.simplefilter("ignore")
            obj: Any = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message spans several lines with terminal escape codes; keep only the global it refused.
        found = re.search(r"GLOBAL ([\w.]+\w)", str(e))
        if found or _calls_something(p):
            what = f"it calls {found.group(1)}" if found else "it holds objects other than tensors"
            raise CheckpointError(f"refused to load {p}: {what}, which could run code (nothing was run); only plain "
                                  "state dicts of tensors are accepted") from None
        raise CheckpointError(f"{p} is not a PyTorch checkpoint (its bytes are not a pickle; nothing in it was run)"
                              ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        lines = str(e).strip().splitlines()
        why = lines[0][:80] if lines else "it is empty or cut short"
        raise CheckpointError(f"{p} is not a readable PyTorch weight file ({why})") from None
    except Exception:  # the restricted unpickler met bytes no pickle holds (KeyError, IndexError, ...)
        raise CheckpointError(f"{p} is not a PyTorch checkpoint (its bytes are not a pickle torch can read; nothing "
                              "in it was run)") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{p} does not hold a state dict of tensors")
    return obj


_CALLING_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX"}
"""Pickle opcodes that fetch or call a function or class: what lets a pickle run code."""


def _calls_something(path: Path) -> bool:
    """Whether ``path`` holds well-formed pickles (torch.save's zip archive: its ``data.pkl``; the legacy format: the
    pickles it starts with) one of which calls a function or class. Parsed with :mod:`pickletools`, which runs
    nothing: this tells a pickle the safe loader refused from bytes that are no pickle at all."""
    import io
    import pickletools

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                data = z.read(name) if name is not None else b""
        else:
            data = path.read_bytes()
        stream = io.BytesIO(data)
        for _ in range(5):  # legacy: magic number, protocol, system info, the object, storage keys
            if stream.tell() >= len(data):
                return False
            if {op.name for op, _, _ in pickletools.genops(stream)} & _CALLING_OPCODES:
                return True
    except Exception:  # pickletools' ValueError for bytes no pickle holds, and whatever a broken archive raises
        return False
    return False


# The input the published weights were trained on is a fact of those weights, not of our architecture (the same
# GoogLeNet trained here takes its dataset's mean/std): torchvision's ImageNet weights take ImageNet's mean/std,
# except GoogLeNet's and Inception v3's, which torchvision builds with transform_input=True because they were trained
# on inputs in [-1, 1]; timm's legacy_xception's pretrained_cfg says mean = std = 0.5 too. Our models never re-map.
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
MINUS_ONE_TO_ONE = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
WEIGHTS_STATS = {"googlenet": MINUS_ONE_TO_ONE, "inception_v3": MINUS_ONE_TO_ONE, "legacy_xception": MINUS_ONE_TO_ONE}
"""Mean/std of the inputs each convertible source's published weights expect, where not ImageNet's."""


def converted_data(source: str, library: str, target: str, model_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``meta["data"]`` record of weights converted from ``library``'s ``source`` into our ``target``: what the
    weights expect (:class:`~milestones.data.InputSpec`: RGB at the model's input size, ImageNet's mean/std or
    [-1, 1]) and their class names (ImageNet-1k's, from torchvision's weight metadata, for 1,000 classes; numbers
    otherwise). ``name`` is None: there is no dataset of theirs to evaluate on, ``--data`` names one."""
    from .data.spec import InputSpec, size_hw
    from .models import get_spec

    num_classes = int(model_kwargs.get("num_classes", 1000))
    mean, std = WEIGHTS_STATS.get(source, IMAGENET_STATS)
    size = size_hw(model_kwargs.get("img_size") or tuple(get_spec(target).input_size[1:]))
    spec = InputSpec(3, size, mean, std)
    names = imagenet_classes() if num_classes == 1000 else None
    imagenet = names is not None
    return {"name": None, "full_name": f"{'ImageNet-1k, ' if imagenet else ''}{library} {source} weights",
            "classes": names or [str(i) for i in range(num_classes)], **spec.to_dict(),
            "input_size": list(spec.input_size)}


def imagenet_classes() -> list[str] | None:
    """ImageNet-1k's 1,000 class names in label order, as torchvision's weight metadata gives them (no download);
    None without torchvision."""
    try:
        from torchvision.models import ResNet18_Weights
    except ImportError:
        return None
    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def load_weights_into(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str, model_name: str) -> None:
    """``load_state_dict`` that explains a mismatch (missing, unexpected or mis-shaped tensors) in one line."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} tensors of another shape (e.g. {k}: {tuple(state[k].shape)} in the file, "
                         f"{tuple(own[k].shape)} in the model)")
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise CheckpointError(f"checkpoint {source} does not fit model {model_name!r}: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)


def converted_path(source: str, file: str | Path, out: str | Path | None = None, *, overwrite: bool = False) -> Path:
    """Where :func:`convert_weights` of ``source``'s ``file`` is saved: ``out`` (given ``.safetensors`` if it lacks
    it), by default ``<file's stem>.<target>.safetensors`` in the working directory; an existing one (or its
    ``.json``) is a one-line :class:`CheckpointError` unless ``overwrite``."""
    from .models import get_converter

    path = Path(out or Path(file).with_suffix("").name + f".{get_converter(source).target}.safetensors")
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    if (path.exists() or path.with_suffix(".json").exists()) and not overwrite:
        raise CheckpointError(f"{path} exists; pass --overwrite or another --out")
    return path


def convert_weights(source: str, file: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Our model with the weights of torchvision's or timm's ``source`` read from ``file`` (never unpickling code,
    :func:`load_pickle_weights`), and the metadata a checkpoint of it records: model name and options (the head's
    class count read from the weights), where the weights came from and what input they expect
    (:func:`converted_data`). Save both with :func:`milestones.train.checkpoint.save_checkpoint`."""
    from .models import create_model, get_converter

    conv = get_converter(source)
    state = load_pickle_weights(file)
    converted = conv.fn(state)
    num_classes = next((v.shape[0] for k, v in converted.items() if k.startswith("head") and v.ndim == 2), None)
    kwargs = dict(conv.target_kwargs)
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    model = create_model(conv.target, **kwargs)
    load_weights_into(model, converted, source=str(file), model_name=conv.target)
    meta = {"model": conv.target, "model_kwargs": kwargs, "converted_from": f"{conv.library} {source}",
            "source_file": str(file), "data": converted_data(source, conv.library, conv.target, kwargs)}
    return model, meta
