"""Typed run configuration: dataclasses, YAML recipes and dotted command-line overrides.

A recipe is a YAML file whose nesting mirrors :class:`RunConfig` (``optim: {lr: 0.05}``); on the command line the
same key is ``--optim.lr=0.05``. Keys are checked against the dataclasses and values against their types, so a typo
is an error that lists the valid keys instead of a setting that silently does nothing. No ``exec``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


@dataclass
class ModelConfig:
    """Which registered model, and the ``create_model`` options that adapt it to the data (recorded with the run)."""

    name: str = "lenet5"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Augmentation:
    """The training augmentations, declared once: ``data.*`` config keys (:class:`DataConfig`) and the options of
    :class:`~milestones.data.BatchAugment`, which applies them batched on the data's device.

    Attributes:
        flip: Random left-right flips, probability 1/2.
        crop_padding: Random crops of the input size from the image reflect-padded by this many pixels.
        cutout: Side of a square set to 0 after normalisation, centred anywhere in the image, once per image
            (DeVries & Taylor, arXiv:1708.04552: 16 for CIFAR-10, 8 for CIFAR-100).
        trivial_augment: One random TrivialAugment Wide operation per image; images need 1 or 3 channels.
        rand_augment: RandAugment with this many operations per image at strength bin ``rand_magnitude`` of 31
            (0: off).
        rand_magnitude: RandAugment's strength bin (torchvision's default 9).
        mixup_alpha: Mix each batch with a shuffled copy of itself, ``lam ~ Beta(alpha, alpha)`` per batch; the
            labels come out as ``(B, num_classes)`` soft targets. 0: off.
        cutmix_alpha: Paste a box of a shuffled copy into each batch instead; with both alphas set, each batch is
            mixed one way or the other with probability 1/2 (as timm does). 0: off.
    """

    flip: bool = False
    crop_padding: int = 0
    cutout: int = 0
    trivial_augment: bool = False
    rand_augment: int = 0
    rand_magnitude: int = 9
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0


AUGMENT_KEYS = tuple(f.name for f in dataclasses.fields(Augmentation))
"""The augmentation options, which are ``data.*`` config keys with the same names."""


@dataclass
class DataConfig(Augmentation):
    """Dataset, batching and augmentation. ``mean``/``std`` override the dataset's normalisation when set.

    Augmentations (training only): the fields of :class:`Augmentation`.

    An image folder (``name: folder:PATH``) is resized to ``image_size``, by default the model's input size; it is
    decoded into memory when it fits (``in_memory``: null = decide by size, true, false) and otherwise streamed by
    ``workers`` DataLoader processes (crop, flip and cutout only; resumable at epoch ends).

    ``channels_last``: NHWC tensors for the model and the batches; ``auto`` (default) decides per family from measured
    speeds (:func:`milestones.precision.resolve_channels_last`).
    ``classes``: keep only these labels of the dataset, relabelled ``0..k-1`` in the order given (``[5, 6, 7, 8,
    9]`` makes CIFAR-10's dog label 0); applied before ``max_per_class``, ``train_subset`` and ``test_subset``.
    ``val_split``: hold this many images of the training split out as a validation set (0: none), evaluated after each
    epoch as ``val_loss``/``val_acc``. They are chosen class-balanced with a fixed seed
    (:data:`milestones.data.pipeline.VAL_SEED`), never the run's, after ``classes`` and before ``train_subset``, so
    every seed and arm of a comparison holds out the same images and ``train_subset`` never draws one of them.
    """

    name: str = "mnist"
    root: str | None = None
    download: bool = False
    batch_size: int = 128
    eval_batch_size: int = 1000
    pad: int = 0
    image_size: int | None = None
    max_per_class: int | None = None
    classes: list[int] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    val_split: int = 0
    channels_last: bool | str = "auto"
    in_memory: bool | None = None
    workers: int = 2


@dataclass
class OptimConfig:
    """Optimiser: ``sgd`` (momentum, Nesterov), ``adam`` or ``adamw``. Norms and biases get no weight decay unless
    ``decay_norm_and_bias``."""

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    decay_norm_and_bias: bool = False


@dataclass
class ScheduleConfig:
    """Learning-rate schedule over training steps: ``constant``, ``step``, ``cosine`` or ``onecycle``.

    ``warmup_epochs`` of linear warm-up precede any of them. ``milestones`` are in epochs (``step``). ``onecycle``
    rises from ``lr / div_factor`` to ``lr`` over ``pct_start`` of training, then anneals linearly to ``min_lr``.
    """

    name: str = "cosine"
    warmup_epochs: float = 0.0
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1
    min_lr: float = 0.0
    pct_start: float = 0.25
    div_factor: float = 25.0


@dataclass
class TrainConfig:
    """The loop's settings. ``loss`` is ``ce`` or ``lenet_map`` (the LeNet-5 paper's MAP criterion).

    ``checkpoint_every``: optimiser steps between full training-state saves for ``--resume`` (0: at epoch ends only;
    the state is always saved at epoch ends and on SIGINT/SIGTERM). ``ema_decay``: keep an exponential moving average
    of the weights with this decay (e.g. 0.999), evaluated each epoch and saved as ``checkpoints/ema``.
    ``sync_bn``: in a distributed run (torchrun), normalise BatchNorm layers with the global batch's statistics, as
    one process would (no effect in one process). ``dist_timeout``: seconds a collective may wait for the other ranks
    before the run stops with an error. ``precision``: ``auto`` (default), ``fp32`` or ``bf16`` (autocast; weights,
    optimizer, BatchNorm statistics and loss stay float32); ``compile``: ``auto`` (default), true or false
    (``torch.compile``); :mod:`milestones.precision` says how ``auto`` decides each.
    ``tensorboard``: also write the metrics and a per-epoch filter grid for TensorBoard in ``<run>/tensorboard``
    (needs the ``tensorboard`` package: ``pip install 'milestones[tensorboard]'``).
    ``stop_at_train_error``: stop once the training error (the fraction of a step's batch misclassified; the argmax
    of soft labels under mixup/cutmix) averaged over the last ``stop_window`` steps is at most this fraction (e.g.
    0.25; null: run the schedule to its end). The mean counts only once a whole window has been seen; the epoch in
    progress then ends early (evaluated, recorded and saved as any epoch) and the run is finished: its
    ``summary.json`` says ``stopped``, and ``--resume`` or ``milestones compare`` do not train it further. Each step
    then reads one number from the device (a sync on a GPU).
    """

    epochs: int = 10
    loss: str = "ce"
    label_smoothing: float = 0.0
    map_j: float = 1.0
    aux_loss_weight: float = 0.0
    clip_grad_norm: float | None = None
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    threads: int | None = None
    log_every: int = 50
    target_accuracy: float | None = None
    progress: bool = True
    checkpoint_every: int = 0
    ema_decay: float | None = None
    sync_bn: bool = False
    dist_timeout: float = 300.0
    precision: str = "auto"
    compile: bool | str = "auto"
    tensorboard: bool = False
    stop_at_train_error: float | None = None
    stop_window: int = 20


@dataclass
class FinetuneConfig:
    """Start from trained weights instead of a random init (transfer learning; ``milestones finetune``).

    ``weights``: a run directory (its best checkpoint) or a ``.safetensors`` checkpoint (a run's, or one made by
    ``milestones convert``) of the same model. ``new_head``: replace the classifier with a fresh one for the data's
    classes (the model's own ``reset_classifier``); false keeps the trained head, which must then have as many classes
    as the data. ``freeze``: glob patterns over parameter names (``stem.*``, ``stages.[01].*``) whose parameters
    are not trained; a BatchNorm layer whose parameters are all frozen also keeps its running statistics. ``head_only``:
    freeze everything but the new head (a linear probe on frozen features). ``backbone_lr_mult``: the learning rate
    of every parameter outside the head, as a multiple of ``optim.lr`` (discriminative learning rates; 0.1 is usual).
    Applied when the run starts; a resumed run continues from its own saved state.
    """

    weights: str | None = None
    new_head: bool = True
    freeze: list[str] = field(default_factory=list)
    head_only: bool = False
    backbone_lr_mult: float = 1.0


@dataclass
class RunConfig:
    """Everything that defines a run; saved as ``config.yaml`` in its run directory."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    out_dir: str = "runs"
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` (already YAML-parsed) against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")
    if tp is Any:
        return value
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool) and inner is not Any:
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot in the mantissa) as a string
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number):
                return number
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} must be a string, got {value!r}")
    return value


def _fields(node: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(node))
    return {f.name: hints[f.name] for f in dataclasses.fields(node)}


def valid_keys(node: Any | None = None, prefix: str = "") -> list[str]:
    """Every dotted key of the config tree (``optim.lr``, ...)."""
    node = RunConfig() if node is None else node
    keys = []
    for name in _fields(node):
        value = getattr(node, name)
        if dataclasses.is_dataclass(value):
            keys += valid_keys(value, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _unknown(key: str, options: Iterable[str], where: str) -> ConfigError:
    options = list(options)
    close = difflib.get_close_matches(key, options, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint}; valid keys{where}: {', '.join(options)}")


def set_value(cfg: RunConfig, key: str, value: Any) -> None:
    """Set a dotted ``key`` to an already-parsed ``value``, checking the key and the type.

    ``model.kwargs.<name>`` is free-form: ``create_model`` checks those names against the model's options.
    """
    parts = key.split(".")
    node: Any = cfg
    for i, part in enumerate(parts):
        so_far = ".".join(parts[: i + 1])
        if isinstance(node, dict):  # model.kwargs.<anything>
            if i == len(parts) - 1:
                node[part] = value
                return
            node = node.setdefault(part, {})
            continue
        fields = _fields(node)
        if part not in fields:
            prefix = ".".join(parts[:i])
            siblings = valid_keys(node, f"{prefix}." if prefix else "")
            raise _unknown(so_far, siblings, f" under {prefix!r}" if prefix else "")
        if i == len(parts) - 1:
            current = getattr(node, part)
            if dataclasses.is_dataclass(current):
                if not isinstance(value, Mapping):
                    example = valid_keys(current, so_far + ".")[0]
                    raise ConfigError(f"{so_far} is a section; set its keys, e.g. {example}")
                for k, v in value.items():
                    set_value(cfg, f"{so_far}.{k}", v)
                return
            setattr(node, part, _coerce(value, fields[part], so_far))
            return
        node = getattr(node, part)


def merge_mapping(cfg: RunConfig, data: Mapping[str, Any], prefix: str = "") -> RunConfig:
    """Apply a nested mapping (a parsed recipe) onto ``cfg``."""
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping) and full != "model.kwargs" and not full.startswith("model.kwargs."):
            merge_mapping(cfg, value, f"{full}.")
        else:
            set_value(cfg, full, dict(value) if isinstance(value, Mapping) else value)
    return cfg


def parse_override(arg: str) -> tuple[str, Any]:
    """``--optim.lr=0.05`` -> ``("optim.lr", 0.05)``; the value is parsed as YAML (``true``, ``[1, 2]``, ``null``)."""
    key, sep, raw = arg.removeprefix("--").partition("=")
    if not sep or not key:
        raise ConfigError(f"expected an override like --optim.lr=0.05, got {arg!r}")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(cfg: RunConfig, args: Iterable[str]) -> RunConfig:
    """Apply ``--dotted.key=value`` overrides in order."""
    for arg in args:
        key, value = parse_override(arg)
        set_value(cfg, key, value)
    return cfg


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a recipe file; a missing or malformed file is a one-line ConfigError."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {str(p)!r}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {str(p)!r} is not valid YAML{where}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of sections (model, data, optim, ...)")
    return dict(data)


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def shipped_names(folder: str) -> list[str]:
    """Names (without ``.yaml``) of the YAML files shipped in the package's ``folder`` (``recipes``, ``suites``)."""
    files = resources.files("milestones") / folder
    return sorted(p.name.removesuffix(".yaml") for p in files.iterdir() if p.name.endswith(".yaml"))


def shipped_file(folder: str, name: str | Path) -> Path | None:
    """The shipped ``<folder>/<name>.yaml`` for a bare name (``.yaml`` optional), or None."""
    if "/" in str(name):
        return None
    ref = resources.files("milestones") / folder / f"{str(name).removesuffix('.yaml')}.yaml"
    return Path(str(ref)) if ref.is_file() else None


def resolve_recipe(name: str | Path, relative_to: Path | None = None) -> Path:
    """A recipe file: an existing path (relative to ``relative_to``'s folder if given), or a shipped recipe's name
    (``cifar10_resnet20_full``, with or without ``.yaml``)."""
    p = Path(name)
    for candidate in ([relative_to.parent / p] if relative_to is not None and not p.is_absolute() else []) + [p]:
        if candidate.is_file():
            return candidate
    shipped = shipped_file("recipes", name)
    if shipped is not None:
        return shipped
    close = difflib.get_close_matches(str(name).removesuffix(".yaml"), list_recipes(), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else "; shipped recipes: see 'milestones recipes'"
    raise ConfigError(f"config file {str(name)!r} does not exist and is not a shipped recipe{hint}")


def load_recipe(name: str | Path, *, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe (a path or a shipped recipe's name), following ``extends: OTHER``: the other recipe is read
    first and this one's keys replace or deepen its (``model.kwargs`` is merged key by key)."""
    path = resolve_recipe(name, _seen[-1] if _seen else None)
    if path.resolve() in _seen:
        raise ConfigError(f"recipe {str(path)!r} extends itself (through {' -> '.join(p.name for p in _seen)})")
    data = load_yaml(path)
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"'extends' in {str(path)!r} must name one recipe, got {base!r}")
    return _deep_merge(load_recipe(base, _seen=(*_seen, path.resolve())), data)


def recipe_path(model: str, data: str) -> Path | None:
    """The shipped default recipe for ``model`` on ``data`` (``recipes/<data>_<model>.yaml``), if there is one."""
    return shipped_file("recipes", f"{data.replace('-', '_')}_{model}")


def list_recipes() -> list[str]:
    """Names of the shipped recipes (without ``.yaml``)."""
    return shipped_names("recipes")


def build_config(
    *,
    model: str | None = None,
    data: str | None = None,
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
) -> RunConfig:
    """Resolve a run's config: defaults <- shipped recipe for (model, data) or ``config_file`` (a path or a shipped
    recipe's name) <- overrides.

    ``model`` and ``data`` given on the command line win over the file's.
    """
    cfg = RunConfig()
    if config_file is not None:
        merge_mapping(cfg, load_recipe(config_file))
    else:
        path = recipe_path(model or cfg.model.name, data or cfg.data.name)
        if path is not None:
            merge_mapping(cfg, load_recipe(path))
    if model is not None and model != cfg.model.name:
        cfg.model.name, cfg.model.kwargs = model, dict(cfg.model.kwargs) if config_file else {}
    if data is not None:
        cfg.data.name = data
    apply_overrides(cfg, overrides)
    return cfg


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Rebuild a RunConfig from ``to_dict`` output (a run's ``config.yaml``)."""
    return merge_mapping(RunConfig(), data)
