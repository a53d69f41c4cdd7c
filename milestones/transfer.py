"""Using a trained network on other data: fine-tuning from its weights, and its features as a fixed backbone.

    >>> cfg = finetune_config("runs/resnet20-cifar10", data="folder:~/photos", head_only=True)
    >>> run_training(cfg)                                   # milestones finetune runs/resnet20-cifar10 --data ...
    >>> feats, labels = extract_features(model, loader, layer="stages.2")   # milestones features RUN --layer ...

Fine-tuning is configuration, not a second training loop: the ``finetune`` section of a run's config
(:class:`~milestones.config.FinetuneConfig`) names the weights to start from, and :func:`build_finetuned` (called by
:func:`~milestones.train.run.run_training` when a run starts) loads them, replaces the head with the model's own
``reset_classifier`` and freezes what the patterns name; :func:`~milestones.train.optim.param_groups` gives the
backbone its lower learning rate. Everything else (the run directory, resume, EMA, torchrun) is the normal run's.

The head is found the same way for every family: the parameters that ``reset_classifier`` replaces, observed on a
copy of the model built on the meta device (no memory, no compute). Features come from the one capture mechanism,
:func:`milestones.viz.features` (forward hooks), or from the model's ``forward_features`` when no layer is named.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .config import FinetuneConfig, RunConfig, apply_overrides, build_config, shipped_file
from .errors import CheckpointError, ConfigError
from .models import create_model, get_spec


def head_names(model_name: str, kwargs: Mapping[str, Any]) -> list[str]:
    """The parameter names of the model's classifier: those its ``reset_classifier`` replaces (built on the meta
    device, so this is free even for a large model)."""
    with torch.device("meta"):
        model = create_model(model_name, **kwargs)
        before = {id(p) for p in model.parameters()}
        model.reset_classifier(int(kwargs.get("num_classes", 1000)))
    return [n for n, p in model.named_parameters() if id(p) not in before]


def source_meta(weights: str | Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint file a run directory or weight file names, and its metadata (``{}`` for bare weights); reads
    only the JSON beside the weights, so a wrong source fails before any data are loaded."""
    from .train.checkpoint import resolve_checkpoint

    path = resolve_checkpoint(weights, "best")
    meta_file = path.with_suffix(".json")
    if not meta_file.is_file():
        return path, {}
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        raise CheckpointError(f"checkpoint metadata {meta_file} is corrupt; delete it to use the weights alone"
                              ) from None
    return path, meta if isinstance(meta, dict) else {}


def check_source(model_name: str, weights: str | Path) -> dict[str, Any]:
    """Refuse weights made for another model (one line); returns the checkpoint's metadata."""
    path, meta = source_meta(weights)
    made_for = meta.get("model")
    if made_for and made_for != model_name:
        raise CheckpointError(f"{path} holds weights of {made_for}, not of {model_name}; fine-tune {made_for} "
                              f"(drop --model / model.name) or pass {model_name} weights")
    return meta


def build_finetuned(model_name: str, kwargs: Mapping[str, Any], ft: FinetuneConfig) -> nn.Module:
    """``model_name`` built with ``kwargs`` (``num_classes``: the new data's), with the trained weights of
    ``ft.weights`` and, if ``ft.new_head``, a fresh head from the family's ``reset_classifier``.

    Raises:
        CheckpointError: the weights are another model's, or do not fit this one (one line: which tensors).
        ConfigError: ``new_head`` is false and the trained head's classes are not the data's.
    """
    from .train.checkpoint import load_checkpoint, load_weights_into

    assert ft.weights is not None
    meta = check_source(model_name, ft.weights)
    state, _ = load_checkpoint(ft.weights, "best")
    num_classes = int(kwargs.get("num_classes", 1000))
    trained = _trained_classes(model_name, kwargs, state, meta)
    model = create_model(model_name, **{**kwargs, "num_classes": trained})
    load_weights_into(model, state, source=str(ft.weights), model_name=model_name)
    if ft.new_head:
        model.reset_classifier(num_classes)
    elif trained != num_classes:
        raise ConfigError(f"the head of {ft.weights} has {trained} classes and the data has {num_classes}: let "
                          "finetune replace it (finetune.new_head=true, drop --keep-head)")
    return model


def _trained_classes(model_name: str, kwargs: Mapping[str, Any], state: Mapping[str, Tensor],
                     meta: Mapping[str, Any]) -> int:
    """How many classes the saved head has: the checkpoint's ``num_classes``, else the saved head weight's rows."""
    saved = (meta.get("model_kwargs") or {}).get("num_classes")
    if saved is not None:
        return int(saved)
    for name in head_names(model_name, kwargs):
        if name in state and state[name].ndim >= 1:
            return int(state[name].shape[0])
    return int(kwargs.get("num_classes", 1000))


_STOCHASTIC = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def _keep_eval(module: nn.Module, args: Any) -> None:
    module.training = False  # a frozen BatchNorm normalises with its trained statistics and does not update them


def freeze(model: nn.Module, patterns: Sequence[str] = (), *, head: Collection[str] = (),
           head_only: bool = False) -> list[str]:
    """Stop training the parameters whose names match any glob pattern (or, with ``head_only``, all but ``head``);
    returns their names. A BatchNorm layer left with no trainable parameter also stops updating its statistics; with
    ``head_only`` every BatchNorm and dropout layer outside the head runs as in eval mode (fixed features).

    Raises:
        ConfigError: a pattern matches no parameter (with close names), or nothing would be left to train.
    """
    names = [n for n, _ in model.named_parameters()]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise unknown_pattern(model, pattern)
    frozen = [n for n in names if (head_only and n not in head) or any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if len(frozen) == len(names):
        raise ConfigError(f"finetune.freeze {list(patterns)}{' with head_only' if head_only else ''} freezes every "
                          f"parameter of {type(model).__name__}; leave the head (e.g. {', '.join(head) or 'head.*'}) "
                          "trainable")
    params = dict(model.named_parameters())
    for n in frozen:
        params[n].requires_grad_(False)
    head_modules = {n.rpartition(".")[0] for n in head}
    for name, m in model.named_modules():
        own = list(m.parameters(recurse=False))
        frozen_bn = isinstance(m, nn.modules.batchnorm._BatchNorm) and own and not any(p.requires_grad for p in own)
        # a linear probe reads fixed features: no dropout (nor batch statistics) anywhere before the head
        in_head = any(name == h or name.startswith(f"{h}.") for h in head_modules)
        probe = head_only and isinstance(m, _STOCHASTIC) and not in_head
        if frozen_bn or probe:
            m.register_forward_pre_hook(_keep_eval)
    return frozen


def unknown_pattern(model: nn.Module, pattern: str) -> ConfigError:
    """The one-line error for a freeze pattern that matches nothing, with close layer names as patterns."""
    layers = [n for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    prefixes = list(dict.fromkeys(f"{'.'.join(n.split('.')[:k])}.*" for n in layers for k in (1, 2, 3)))
    close = difflib.get_close_matches(pattern, prefixes + [n for n, _ in model.named_parameters()], n=4, cutoff=0.5)
    top = ", ".join(dict.fromkeys(f"{n.split('.')[0]}.*" for n in layers))
    hint = f"did you mean {', '.join(close)}?" if close else f"its top-level layers are {top}"
    return ConfigError(f"finetune.freeze pattern {pattern!r} matches no parameter of {type(model).__name__}; {hint}")


def check_config(cfg: RunConfig) -> None:
    """Check the ``finetune`` section before any data are loaded: weights of this model, patterns that match (on a
    meta-device copy of the model)."""
    ft = cfg.finetune
    if ft.weights:
        check_source(cfg.model.name, ft.weights)
    if ft.backbone_lr_mult < 0:
        raise ConfigError(f"finetune.backbone_lr_mult must be >= 0, got {ft.backbone_lr_mult}")
    if ft.freeze:
        with torch.device("meta"):
            model = create_model(cfg.model.name, **cfg.model.kwargs)
        names = [n for n, _ in model.named_parameters()]
        for pattern in ft.freeze:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise unknown_pattern(model, pattern)


def prepare(model: nn.Module, cfg: RunConfig) -> list[str]:
    """Freeze what ``cfg.finetune`` asks for; returns the head's parameter names (for the learning-rate groups)."""
    ft = cfg.finetune
    needs_head = ft.head_only or ft.backbone_lr_mult != 1.0
    head = head_names(cfg.model.name, cfg.model.kwargs) if needs_head else []
    if ft.freeze or ft.head_only:
        freeze(model, ft.freeze, head=head, head_only=ft.head_only)
    return head


def finetune_config(weights: str | Path, *, data: str, model: str | None = None, recipe: str | Path | None = None,
                    freeze: Sequence[str] = (), head_only: bool = False, backbone_lr_mult: float = 1.0,
                    new_head: bool = True, overrides: Iterable[str] = ()) -> RunConfig:
    """The config of a fine-tuning run of ``weights`` on ``data`` (what ``milestones finetune`` trains).

    The model and its options are the checkpoint's (``model`` is needed only for bare weights without metadata);
    ``num_classes`` comes from the new data. The recipe is ``recipe`` if given, else the shipped one for (model,
    data), else the source run's own ``config.yaml``, else the defaults; then the data, the ``finetune`` section and
    ``overrides`` (``--optim.lr=0.01``...) are applied.
    """
    from .train.run import load_run_config

    path, meta = source_meta(weights)
    name = model or meta.get("model")
    if not name:
        raise ConfigError(f"{path} has no metadata naming its model; pass --model NAME")
    get_spec(name)
    check_source(name, weights)
    run_dir = Path(weights) if Path(weights).is_dir() else None
    if recipe is None and shipped_file("recipes", f"{data.replace('-', '_')}_{name}") is None and run_dir:
        cfg = load_run_config(run_dir)
        cfg.data.name, cfg.data.classes, cfg.name = data, None, None
        cfg.data.max_per_class = cfg.data.train_subset = cfg.data.test_subset = None
        cfg.data.image_size = cfg.data.image_size if data.startswith("folder:") else None
        cfg.out_dir = "runs"
    else:
        cfg = build_config(model=name, data=data, config_file=recipe)
    trained_size = (meta.get("data") or {}).get("img_size")
    if data.startswith("folder:") and cfg.data.image_size is None and trained_size:
        cfg.data.image_size = int(trained_size[0])  # the size the network was trained at (VGG's FC6 depends on it)
    cfg.model.name = name
    # the new data decide the classes; an image folder is read with the trained input's channels (a named dataset
    # has its own, and a model taking other channels is a one-line error when the weights load)
    drop = ("num_classes",) if data.startswith("folder:") else ("num_classes", "in_chans")
    kwargs = {k: v for k, v in (meta.get("model_kwargs") or cfg.model.kwargs).items() if k not in drop}
    cfg.model.kwargs = kwargs
    cfg.finetune = FinetuneConfig(weights=str(weights), new_head=new_head, freeze=list(freeze), head_only=head_only,
                                  backbone_lr_mult=backbone_lr_mult)
    return apply_overrides(cfg, overrides)


def pool(t: Tensor, layout: str, how: str = "avg") -> Tensor:
    """One captured layer output as ``(B, D)``: ``avg`` averages over space or tokens, ``flatten`` keeps all."""
    if how not in ("avg", "flatten"):
        raise ConfigError(f"pool must be 'avg' or 'flatten', got {how!r}")
    if layout == "flat":
        return t.flatten(1)
    if how == "flatten":
        return t.flatten(1)
    dims = {"NCHW": (2, 3), "NHWC": (1, 2), "tokens": (1,)}[layout]
    return t.float().mean(dim=dims)


@torch.no_grad()
def extract_features(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], layer: str | None = None, *,
                     pool_how: str = "avg") -> tuple[Tensor, Tensor]:
    """Features of every image the loader serves, and their labels: ``((N, D) float32, (N,) int64)`` on the CPU.

    Args:
        model: any model; put in eval mode here.
        batches: ``(x, y)`` batches, e.g. :func:`~milestones.data.make_test_loader`'s.
        layer: a layer name (``model.named_modules()``; an unknown one is a one-line error with close names); None:
            ``model.forward_features``, the vector the head reads.
        pool_how: how a spatial or token output becomes a vector: ``avg`` (global average) or ``flatten``.
    """
    from .viz import features

    model.eval()
    extract = features(model, [layer]) if layer is not None else None
    feats, labels = [], []
    for x, y in batches:
        if extract is None:
            f = model.forward_features(x).flatten(1)
        else:
            out = extract(x)[layer]
            f = pool(out, extract.layouts[layer], pool_how)
        feats.append(f.float().cpu())
        labels.append(y.cpu())
    if not feats:
        raise ConfigError("the data served no images to extract features from")
    return torch.cat(feats), torch.cat(labels)
