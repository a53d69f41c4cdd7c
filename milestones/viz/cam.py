"""Grad-CAM: which parts of the image a class score depends on, read from a convolutional layer's maps.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization", ICCV 2017
(arXiv 1610.02391), eq. 1-2: each channel k of the layer's maps A gets the weight alpha_k, the spatial mean of
d score / d A_k; the map is ReLU(sum_k alpha_k A_k), upsampled to the input. The maps come from
:func:`~milestones.viz.capture.features`, the same hooks every other view uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import ConfigError
from .capture import as_maps, default_cam_layer, features


@dataclass(frozen=True)
class GradCam:
    """A Grad-CAM result.

    Attributes:
        heatmap: ``(H, W)`` float32 in [0, 1] at the input's resolution (all zeros when no region raises the score).
        coarse: the same before upsampling, on the layer's own grid.
        target_class: the class whose score was explained.
        score: that class's logit.
        layer: the layer the maps came from.
    """

    heatmap: np.ndarray
    coarse: np.ndarray
    target_class: int
    score: float
    layer: str


def batch_of_one(image: Tensor) -> Tensor:
    x = image.unsqueeze(0) if image.ndim == 3 else image
    if x.ndim != 4 or x.shape[0] != 1:
        raise ConfigError(f"expected one normalised image (C, H, W) or (1, C, H, W), got shape {tuple(image.shape)}")
    return x.float()


def grad_cam(model: nn.Module, image: Tensor, target_class: int | None = None, layer: str | None = None) -> GradCam:
    """Grad-CAM of ``target_class`` (default: the predicted class) for one normalised image.

    Args:
        model: a CNN (any registered one, or your own; transformers work too through their token grids).
        image: ``(C, H, W)`` or ``(1, C, H, W)``, normalised as the model's training data was.
        target_class: the class to explain; None explains the top prediction.
        layer: where to read the maps; None takes the family's default
            (:func:`~milestones.viz.capture.default_cam_layer`).

    The model runs in eval mode (restored afterwards); its parameters' ``.grad`` are not touched.
    """
    x = batch_of_one(image)
    layer = layer or default_cam_layer(model)
    extract = features(model, [layer], detach=False)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits, captured = extract.run(x.detach().requires_grad_(True))  # input grad: a graph even if frozen
            if not isinstance(logits, Tensor) or logits.ndim != 2:
                raise ConfigError("grad_cam needs a model whose forward returns logits (B, classes)")
            k = int(logits[0].argmax()) if target_class is None else int(target_class)
            if not 0 <= k < logits.shape[1]:
                raise ConfigError(f"target class {k} is out of range: the model has {logits.shape[1]} classes")
            acts = captured[layer]
            (grads,) = torch.autograd.grad(logits[0, k], acts)
    finally:
        model.train(was_training)
    layout = extract.layouts[layer]
    a = as_maps(acts.detach(), layout, model, layer).double()  # (1, C, h, w); float64: no cancellation issues
    g = as_maps(grads, layout, model, layer).double()
    weights = g.mean(dim=(2, 3), keepdim=True)  # alpha_k, eq. 1
    cam = F.relu((weights * a).sum(dim=1, keepdim=True))  # eq. 2
    top = float(cam.max())
    cam = cam / top if top > 0 else cam
    up = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False).clamp(0, 1)
    return GradCam(up[0, 0].float().numpy(), cam[0, 0].float().numpy(), k, float(logits[0, k].detach()), layer)
