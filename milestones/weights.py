"""Reading weight files made by other tools, without ever running code from them."""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

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
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr; the refusal below says enough
            warnings.simplefilter("ignore")
            obj: Any = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message spans several lines with terminal escape codes; keep only the global it refused.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        what = f"it calls {found.group(1)}" if found else "it holds objects other than tensors"
        raise CheckpointError(f"refused to load {p}: {what}, which could run code (nothing was run); only plain "
                              "state dicts of tensors are accepted") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        lines = str(e).strip().splitlines()
        why = lines[0][:80] if lines else "it is empty or cut short"
        raise CheckpointError(f"{p} is not a readable PyTorch weight file ({why})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{p} does not hold a state dict of tensors")
    return obj
