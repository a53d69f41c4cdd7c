"""Using a trained network on other data: fine-tuning from its weights, and its features as a fixed backbone.

    >>> cfg = finetune_config("runs/resnet20-cifar10", data="folder:~/photos", head_only=True)
    >>> run_training(cfg)                                   # milestones finetune runs/resnet20-cifar10 --data ...
    >>> feats, labels = extract_features(model, loader, layer="stages.2")   # milestones features RUN --layer ...

Fine-tuning is configuration, not a second training loop: :func:`finetune_config` writes the ``finetune`` section of
a run's config (:class:`~milestones.config.FinetuneConfig`), and the training side of it lives with training, in
:mod:`milestones.train.finetune` (loading the weights, the new head, the frozen layers). Features come from the one
capture mechanism,
:func:`milestones.viz.features` (forward hooks), or from the model's ``forward_features`` when no layer is named.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from .config import FinetuneConfig, RunConfig, apply_overrides, build_config, shipped_file
from .errors import ConfigError
from .models import get_spec

# The training side lives in train/finetune.py; these are this module's public face for using a trained network.
from .train.finetune import check_config, check_source, freeze, head_names, source_meta  # noqa: F401


def finetune_config(weights: str | Path, *, data: str, model: str | None = None, recipe: str | Path | None = None,
                    freeze: Sequence[str] = (), head_only: bool = False, backbone_lr_mult: float = 1.0,  # noqa: F811
                    new_head: bool = True, overrides: Iterable[str] = ()) -> RunConfig:
    """The config of a fine-tuning run of ``weights`` on ``data`` (what ``milestones finetune`` trains).

    The model and its options are the checkpoint's (``model`` is needed only for bare weights without metadata);
    ``num_classes`` comes from the new data. The recipe is ``recipe`` if given, else the shipped one for (model,
    data), else the source run's own ``config.yaml``, else the defaults; then the data, the ``finetune`` section and
    ``overrides`` (``--optim.lr=0.01``...) are applied.
    """
    from .train.runconfig import load_run_config

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


FEATURE_FILES = (".npy", ".npz")
"""What :func:`save_features` writes: ``.npy`` (labels beside it in ``.labels.npy``) or ``.npz`` (arrays
``features``, ``labels``, ``classes``)."""


def features_file(out: str | Path) -> Path:
    """``out`` as a :func:`save_features` path; any other suffix than :data:`FEATURE_FILES` is a one-line error."""
    path = Path(out)
    if path.suffix not in FEATURE_FILES:
        raise ConfigError(f"--out must end in .npy (labels go beside it in .labels.npy) or .npz, got {path.name!r}")
    return path


def save_features(out: str | Path, features: Tensor, labels: Tensor, classes: Sequence[str]) -> str:
    """Write :func:`extract_features`' output to ``out`` (:func:`features_file`), creating its folder; returns where
    it went in words (``features.npy (labels: features.labels.npy)``). An unwritable place is a one-line
    :class:`~milestones.errors.RunDirError`."""
    import numpy as np

    from .errors import RunDirError

    path = features_file(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".npz":
            np.savez(path, features=features.numpy(), labels=labels.numpy(), classes=np.array(classes))
            return str(path)
        labels_file = path.with_name(path.stem + ".labels.npy")
        np.save(path, features.numpy())
        np.save(labels_file, labels.numpy())
        return f"{path} (labels: {labels_file})"
    except OSError as e:
        raise RunDirError(f"could not write {path}: {e.strerror or e}") from None
