"""Checkpoints: weights as safetensors beside a JSON file of metadata, both written atomically.

``<stem>.safetensors`` holds the model's state dict and nothing else, so any safetensors reader can use it.
``<stem>.json`` holds what is needed to rebuild and use the model (name, options, classes, preprocessing), the run's
progress, and the SHA-256 of the weights file, which is checked on load. Each file is written to a temporary name,
flushed to disk and renamed over the old one, so a crash leaves either the previous checkpoint or the new one, never
a torn file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from ..errors import CheckpointError, RunDirError

FORMAT = "milestones-checkpoint/1"
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename: ``path`` is never left half-written.

    A full disk raises :class:`RunDirError`; the previous file at ``path`` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the user's usual permissions
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise RunDirError(f"could not write {path}: {e.strerror or e}; the previous file there is unchanged") from e
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def save_checkpoint(stem: Path, model: nn.Module, meta: Mapping[str, Any]) -> Path:
    """Save ``model``'s weights to ``stem.safetensors`` and ``meta`` (plus a checksum) to ``stem.json``."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    blob = st_save(state, metadata={"format": FORMAT})
    # Append, not with_suffix: a dotted stem such as "resnet18-f37072fd.resnet18" keeps its last part.
    weights = stem.with_name(stem.name + ".safetensors")
    atomic_write(weights, blob)
    info = {"format": FORMAT, **meta, "weights_sha256": hashlib.sha256(blob).hexdigest()}
    atomic_write(stem.with_name(stem.name + ".json"), json.dumps(info, indent=2, default=str).encode())
    return weights


def resolve_checkpoint(path: str | Path, prefer: str = "best") -> Path:
    """A checkpoint's ``.safetensors`` path from a run directory, a ``.safetensors``/``.json`` file or a stem."""
    p = Path(path)
    if p.is_dir():
        for tag in (prefer, "last", "best"):
            candidate = p / "checkpoints" / f"{tag}.safetensors"
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"{p} holds no checkpoints/{prefer}.safetensors; is it a run directory?")
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    elif p.suffix not in (".safetensors",) and p.with_suffix(".safetensors").is_file():
        p = p.with_suffix(".safetensors")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist; pass a run directory or a .safetensors file")
    return p


def load_checkpoint(path: str | Path, prefer: str = "best") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read weights and metadata; a corrupt, truncated or tampered file is a one-line :class:`CheckpointError`."""
    weights = resolve_checkpoint(path, prefer)
    try:
        blob = weights.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {weights}: {e.strerror}") from None
    meta_path = weights.with_suffix(".json")
    meta: dict[str, Any] = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            raise CheckpointError(f"checkpoint metadata {meta_path} is corrupt; delete it to load the weights alone") from None
        expected = meta.get("weights_sha256")
        if expected and hashlib.sha256(blob).hexdigest() != expected:
            raise CheckpointError(
                f"checkpoint {weights} does not match the checksum in {meta_path.name}: it is corrupt or truncated"
            )
    try:
        state = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {weights} is corrupt or not a safetensors file ({str(e)[:80]})") from None
    return state, meta


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


def restore_model(path: str | Path, *, device: torch.device | str = "cpu", prefer: str = "best") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint was saved from and load its weights; returns ``(model in eval mode, meta)``."""
    from ..models import create_model

    state, meta = load_checkpoint(path, prefer)
    name = meta.get("model")
    if not name:
        raise CheckpointError(f"checkpoint {path} has no metadata naming its model; it needs the .json beside it")
    model = create_model(name, **meta.get("model_kwargs", {}))
    load_weights_into(model, state, source=str(path), model_name=name)
    return model.to(device).eval(), meta
