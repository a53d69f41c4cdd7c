"""Look inside a network: its filters, feature maps, Grad-CAM, attention maps and training curves.

    >>> from milestones import create_model, features
    >>> from milestones.viz import filter_grid, grad_cam, overlay
    >>> model = create_model("lenet5")
    >>> features(model, ["c1", "c3"])(x)["c3"].shape      # (1, 16, 10, 10) for x of shape (1, 1, 32, 32)
    >>> filter_grid(model).savefig("c1.png")
    >>> cam = grad_cam(model, x[0]); overlay(x[0], cam.heatmap)   # (32, 32, 3) uint8

Intermediate outputs of every family come from one mechanism, :func:`features` (forward hooks); attention comes from
the transformers' own ``attention_maps`` through :func:`milestones.attention.query_attention`. Matplotlib is
imported only when a figure is drawn.
"""

from __future__ import annotations

from .attention import attention_rollout, head_maps, query_maps, stripe_maps
from .cam import GradCam, grad_cam
from .capture import FeatureExtractor, as_maps, default_cam_layer, features, first_conv, layer_names
from .figures import (
           attention_figure,
           display_image,
           feature_maps,
           filter_grid,
           filter_image,
           gradcam_figure,
           overlay,
           training_curves,
)

__all__ = ["FeatureExtractor", "GradCam", "as_maps", "attention_figure", "attention_rollout", "default_cam_layer",
           "display_image", "feature_maps", "features", "filter_grid", "filter_image", "first_conv", "grad_cam",
           "gradcam_figure", "head_maps", "layer_names", "overlay", "query_maps", "stripe_maps", "training_curves"]
