"""A run's config as it is on disk: reading a run directory's ``config.yaml`` (older runs' included) and what may
change when the run is resumed (:data:`RESUMABLE_KEYS`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from ..config import RunConfig, from_dict
from ..errors import ConfigError, RunDirError
from .rundir import RUN_MARKER

RESUMABLE_KEYS = (
    "train.epochs", "train.progress", "train.log_every", "train.checkpoint_every", "train.threads", "train.device",
    "train.target_accuracy", "train.dist_timeout", "train.tensorboard", "data.root", "data.download",
    "data.eval_batch_size", "out_dir",
    "name",
)
"""Config keys that may differ when a run is resumed: they decide where things are and what is logged or evaluated,
not the steps already taken. ``train.epochs`` may only grow."""


def load_run_config(path: str | Path) -> RunConfig:
    """The ``config.yaml`` of an existing run directory, as a :class:`RunConfig`."""
    p = Path(path)
    if not p.is_dir():
        raise RunDirError(f"{p} is not a run directory (it does not exist); --resume takes the folder of an "
                          "earlier run")
    file = p / RUN_MARKER
    if not file.is_file():
        raise RunDirError(f"{p} is not a run directory (it has no {RUN_MARKER}); --resume takes the folder of an "
                          "earlier run")
    try:
        data = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError):
        raise RunDirError(f"{file} is unreadable or not valid YAML; the run cannot be resumed") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{file} does not hold a run configuration; the run cannot be resumed")
    try:
        return from_dict(legacy_defaults(data))
    except ConfigError as e:
        raise ConfigError(f"{file}: {e}") from None


def legacy_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A saved run config from before ``train.precision`` and ``train.compile`` existed, with the values it trained
    with: eager, float32 on a CPU and bf16 autocast on CUDA (what ``auto`` gives on CUDA), so that resuming it does
    not change how it computes."""
    train = data.get("train")
    if isinstance(train, dict) and "precision" not in train:
        data = {**data, "train": {"precision": "auto" if torch.cuda.is_available() else "fp32", "compile": False,
                                  **train}}
    return data


def _flat(cfg: RunConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for k, v in node.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict) and key != "model.kwargs":
                walk(v, f"{key}.")
            else:
                out[key] = v

    walk(cfg.to_dict(), "")
    return out


def config_differences(old_cfg: RunConfig, new_cfg: RunConfig, *, all_kwargs: bool = False) -> str:
    """The settings outside :data:`RESUMABLE_KEYS` where ``new_cfg`` differs from ``old_cfg``, as ``key (old ->
    new)`` text ("" if none). ``model.kwargs`` of ``new_cfg`` may leave out options unless ``all_kwargs``."""
    old, new = _flat(old_cfg), _flat(new_cfg)
    changed = [k for k in new if k not in RESUMABLE_KEYS and k != "model.kwargs" and new[k] != old.get(k)]
    kwargs = dict.fromkeys([*new_cfg.model.kwargs, *(old_cfg.model.kwargs if all_kwargs else ())])
    changed += [f"model.kwargs.{k}" for k in kwargs
                if k not in old_cfg.model.kwargs or k not in new_cfg.model.kwargs
                or old_cfg.model.kwargs[k] != new_cfg.model.kwargs[k]]

    def get(flat: dict[str, Any], key: str) -> Any:
        if key.startswith("model.kwargs."):
            return flat.get("model.kwargs", {}).get(key.removeprefix("model.kwargs."))
        return flat.get(key)

    shown = ", ".join(f"{k} ({get(old, k)!r} -> {get(new, k)!r})" for k in changed[:4])
    return shown + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")


def resume_config(saved: RunConfig, cfg: RunConfig | None, path: Path, epochs_done: int = 0) -> RunConfig:
    """``saved`` with the :data:`RESUMABLE_KEYS` taken from ``cfg``; any other difference is a ConfigError naming it.

    ``cfg.model.kwargs`` may leave out options that the saved run filled in from the data (``num_classes``...).
    """
    if cfg is None:
        return saved
    changed = config_differences(saved, cfg)
    if changed:
        raise ConfigError(f"cannot change {changed} when resuming {path}: a resumed run keeps its config.yaml "
                          f"(only {', '.join(RESUMABLE_KEYS)} may change); start a new run instead")
    if cfg.train.epochs < epochs_done:
        raise ConfigError(f"train.epochs={cfg.train.epochs} is fewer than the {epochs_done} epochs {path} has "
                          "already trained")
    merged = from_dict(saved.to_dict())
    for key in RESUMABLE_KEYS:
        section, _, name = key.rpartition(".")
        src, dst = (getattr(cfg, section), getattr(merged, section)) if section else (cfg, merged)
        setattr(dst, name, getattr(src, name))
    merged.out_dir, merged.name = saved.out_dir, saved.name  # the run stays where it is
    return merged
