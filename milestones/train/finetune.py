"""The training side of fine-tuning: loading another run's (or converted) weights into a new model, its new head,
the frozen layers. :func:`~milestones.train.run.run_training` calls :func:`check_config` before a run writes anything
and :func:`build_finetuned` / :func:`prepare` when it starts; :func:`milestones.transfer.finetune_config` writes the
``finetune`` section these read.

The head is found the same way for every family: the parameters that ``reset_classifier`` replaces, observed on a
copy of the model built on the meta device (no memory, no compute). :func:`~milestones.train.optim.param_groups` gives
the backbone its lower learning rate; everything else (the run directory, resume, EMA, torchrun) is the normal run's.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import FinetuneConfig, RunConfig
from ..errors import CheckpointError, ConfigError
from ..models import create_model


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
    from .checkpoint import resolve_checkpoint

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
    from .checkpoint import load_checkpoint, load_weights_into

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
