"""Checkpoints: weights as safetensors beside a JSON file of metadata, both written atomically.

``<stem>.safetensors`` holds the model's state dict and nothing else, so any safetensors reader can use it.
``<stem>.json`` holds what is needed to rebuild and use the model (name, options, classes, preprocessing), the run's
progress, and the SHA-256 of the weights file, which is checked on load. Each file is written to a temporary name,
flushed to disk and renamed over the old one, so a crash leaves either the previous checkpoint or the new one, never
a torn file.

A full training state for ``--resume`` (model, optimizer, EMA, RNG and data-loader state, progress) is saved by
:func:`save_training_state` the same way, as tensors in a safetensors file plus a JSON file for everything else, with
``state.json`` as the single commit point. Nothing here unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from ..errors import CheckpointError
from ..files import atomic_write
from ..weights import load_weights_into

FORMAT = "milestones-checkpoint/1"
def save_checkpoint(stem: Path, model: nn.Module, meta: Mapping[str, Any]) -> Path:
    """Save ``model``'s weights to ``stem.safetensors`` and ``meta`` (plus a checksum) to ``stem.json``."""
    blob = st_save(cpu_tensors(model.state_dict()), metadata={"format": FORMAT})
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
    elif p.suffix != ".safetensors" and p.with_suffix(".safetensors").is_file():
        p = p.with_suffix(".safetensors")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist; pass a run directory or a .safetensors file")
    return p


def load_checkpoint(path: str | Path, prefer: str = "best") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read weights and metadata; a corrupt, truncated or tampered file is a one-line :class:`CheckpointError`.

    A data record from before the input contract gets the ``style`` and ``recipe`` its dataset declares
    (:func:`milestones.data.input_spec`), so every reader of ``meta["data"]`` sees one form."""
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
            raise CheckpointError(
                f"checkpoint metadata {meta_path} is corrupt; delete it to load the weights alone"
            ) from None
        expected = meta.get("weights_sha256")
        if expected and hashlib.sha256(blob).hexdigest() != expected:
            raise CheckpointError(
                f"checkpoint {weights} does not match the checksum in {meta_path.name}: it is corrupt or truncated"
            )
    try:
        state = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {weights} is corrupt or not a safetensors file ({str(e)[:80]})") from None
    if isinstance(meta.get("data"), dict) and "style" not in meta["data"] and "in_chans" in meta["data"]:
        from ..data import input_spec

        spec = input_spec(meta["data"])
        meta["data"] = {**meta["data"], "style": spec.style, "recipe": spec.recipe}
    return state, meta


def restore_model(
    path: str | Path, *, device: torch.device | str = "cpu", prefer: str = "best"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint was saved from and load its weights; returns ``(model in eval mode, meta)``.

    ``meta["data"]`` describes the model's input (:class:`~milestones.data.InputSpec` fields, classes); a checkpoint
    ``milestones convert`` wrote before it recorded one gets the record convert writes now."""
    from ..models import create_model

    state, meta = load_checkpoint(path, prefer)
    name = meta.get("model")
    if not name:
        raise CheckpointError(f"checkpoint {path} has no metadata naming its model; it needs the .json beside it")
    model = create_model(name, **meta.get("model_kwargs", {}))
    load_weights_into(model, state, source=str(path), model_name=name)
    if "data" not in meta and meta.get("converted_from"):  # converted before convert recorded what weights expect
        from ..weights import converted_data

        library, _, source = str(meta["converted_from"]).partition(" ")
        meta["data"] = converted_data(source, library, name, meta.get("model_kwargs", {}))
    return model.to(device).eval(), meta


STATE_FORMAT = "milestones-train-state/1"
STATE_JSON = "state.json"
_STATE_SLOTS = ("state.a.safetensors", "state.b.safetensors")


def cpu_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies ready for safetensors, which refuses tensors sharing memory (tied weights):
    a tensor whose storage was already seen is cloned."""
    out, seen = {}, set()
    for k, v in tensors.items():
        t = v.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            t = t.clone()
        elif ptr is not None:
            seen.add(ptr)
        out[k] = t
    return out


def save_training_state(ckpt_dir: Path, tensors: Mapping[str, torch.Tensor], info: Mapping[str, Any]) -> Path:
    """Write a full training state: ``tensors`` to a safetensors file and ``info`` (plain JSON) to ``state.json``.

    Two files cannot be replaced in one atomic step, so ``state.json`` is the commit point: the tensors go to the
    slot (``state.a``/``state.b``) that the current ``state.json`` does not name, then ``state.json`` is replaced by
    one naming the new slot and its SHA-256, then the old slot is removed. A crash or a full disk at any moment leaves
    the previous state complete and loadable. Returns the path of ``state.json``.
    """
    blob = st_save(cpu_tensors(tensors), metadata={"format": STATE_FORMAT})
    current = _current_slot(ckpt_dir)
    slot = _STATE_SLOTS[1] if current == _STATE_SLOTS[0] else _STATE_SLOTS[0]
    atomic_write(ckpt_dir / slot, blob)
    record = {"format": STATE_FORMAT, **info, "tensors_file": slot, "tensors_sha256": hashlib.sha256(blob).hexdigest()}
    try:
        atomic_write(ckpt_dir / STATE_JSON, json.dumps(record, indent=1, allow_nan=True).encode())
    except BaseException:
        (ckpt_dir / slot).unlink(missing_ok=True)  # not committed: the previous slot and state.json stay in charge
        raise
    if current is not None:  # always the other slot
        (ckpt_dir / current).unlink(missing_ok=True)
    return ckpt_dir / STATE_JSON


def _current_slot(ckpt_dir: Path) -> str | None:
    try:
        name = json.loads((ckpt_dir / STATE_JSON).read_text()).get("tensors_file")
    except (OSError, ValueError, AttributeError):
        return None
    return name if name in _STATE_SLOTS else None


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete what a process killed mid-save leaves in ``folder``: temporary files of :func:`atomic_write` and a
    state slot that ``state.json`` does not name. Returns the paths removed."""
    current = _current_slot(folder)
    stale = [p for p in folder.glob(".*.tmp") if p.is_file()]
    stale += [folder / s for s in _STATE_SLOTS if s != current and current is not None and (folder / s).is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def has_training_state(ckpt_dir: Path) -> bool:
    """Whether ``ckpt_dir`` holds a committed training state (its ``state.json``) to resume from."""
    return _current_slot(ckpt_dir) is not None


def load_training_state(ckpt_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read what :func:`save_training_state` wrote; anything missing, corrupt or mismatched is a one-line
    :class:`CheckpointError` naming the file."""
    path = ckpt_dir / STATE_JSON
    if not path.is_file():
        raise CheckpointError(f"{ckpt_dir} holds no {STATE_JSON}: the run saved no training state to resume from "
                              "(it was stopped before its first checkpoint); start it again with --overwrite")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        raise CheckpointError(f"training state {path} is corrupt (not JSON); start the run again with --overwrite"
                              ) from None
    if not isinstance(info, dict) or info.get("format") != STATE_FORMAT or info.get("tensors_file") not in _STATE_SLOTS:
        raise CheckpointError(f"{path} is not a milestones training state ({STATE_FORMAT})")
    weights = ckpt_dir / info["tensors_file"]
    try:
        blob = weights.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read training state {weights}: {e.strerror}") from None
    if hashlib.sha256(blob).hexdigest() != info.get("tensors_sha256"):
        raise CheckpointError(f"training state {weights} does not match the checksum in {STATE_JSON}: it is corrupt "
                              "or truncated")
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"training state {weights} is corrupt ({str(e)[:80]})") from None
    return tensors, info


def pack(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON-able copy of a nest of dicts, lists, tuples and scalars; tensors move into ``tensors`` under dotted
    names from ``prefix`` and leave ``{"__tensor__": name}`` behind. Non-string dict keys and tuples are kept
    (``{"__items__": [[k, v], ...]}``, ``{"__tuple__": [...]}``) so :func:`unpack` restores the exact structure,
    e.g. an optimizer's ``state_dict`` with its integer parameter ids."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: pack(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, pack(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [pack(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [pack(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a training state")


def unpack(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """The inverse of :func:`pack`."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            name = obj["__tensor__"]
            if name not in tensors:
                raise CheckpointError(f"training state lacks tensor {name}")
            return tensors[name]
        if "__items__" in obj:
            return {(tuple(k) if isinstance(k, list) else k): unpack(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(unpack(v, tensors) for v in obj["__tuple__"])
        return {k: unpack(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack(v, tensors) for v in obj]
    return obj
