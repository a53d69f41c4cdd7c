"""Intermediate outputs of any model by layer name: one mechanism (forward hooks) for every family.

torchvision's ``create_feature_extractor`` traces the model with FX, which fails on data-dependent Python control flow
(Swin pads a grid only when it is not a multiple of the window). Forward hooks see every family as it runs, cost
nothing when unused (they are registered only for the duration of one call), and keep the autograd graph when asked,
which is what Grad-CAM needs. Layer names are the model's own ``named_modules()`` names (``"c1"``,
``"stages.2"``, ``"stages.0.blocks.1"``), the same names its checkpoint keys use.

    >>> extract = features(model, ["c1", "c3"])
    >>> extract(x)["c3"].shape             # LeNet-5 on (1, 1, 32, 32): (1, 16, 10, 10)
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ..errors import ConfigError
from ..models import family_of, family_traits, last_stage

# Modules whose 4-D output is (B, C, H, W) even inside the channels-last transformers (their stems, LePE's conv).
_NCHW = (nn.Conv2d, nn.modules.batchnorm._BatchNorm, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)


def layer_names(model: nn.Module) -> list[str]:
    """Every layer name :func:`features` accepts, in registration order (the whole model, ``""``, left out)."""
    return [n for n, _ in model.named_modules() if n]


def unknown_layer(model: nn.Module, name: str) -> ConfigError:
    """The one-line error for a layer name the model does not have, with the closest names it does have."""
    names = layer_names(model)
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    if not close:  # no near spelling: show the top of the hierarchy instead
        close = [n for n, _ in model.named_children()][:8]
        hint = f"its top-level layers are {', '.join(close)}"
    else:
        hint = f"did you mean {', '.join(close)}?"
    return ConfigError(f"{type(model).__name__} has no layer {name!r}; {hint} (milestones.viz.layer_names(model) "
                       "lists them all)")


def _first_tensor(output: Any) -> Tensor | None:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((o for o in output if isinstance(o, Tensor)), None)
    return None


class FeatureExtractor:
    """Calls ``model`` and returns the outputs of the named layers (see :func:`features`).

    Attributes:
        layouts: after a call, each layer's output layout: ``"NCHW"``, ``"NHWC"`` (Swin's and CSWin's token grids),
            ``"tokens"`` (ViT's ``(B, prefix + h*w, D)``) or ``"flat"`` (``(B, D)``).
    """

    def __init__(self, model: nn.Module, layers: str | Sequence[str], *, detach: bool = True) -> None:
        self.model = model
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        if not self.layers:
            raise ConfigError("features() needs at least one layer name")
        modules = dict(model.named_modules())
        for name in self.layers:
            if name not in modules or not name:
                raise unknown_layer(model, name)
        self._modules = {n: modules[n] for n in self.layers}
        self.detach = detach
        self.layouts: dict[str, str] = {}

    def run(self, x: Tensor) -> tuple[Any, dict[str, Tensor]]:
        """``(model(x), {layer: output})``. With ``detach=False`` the outputs stay in the autograd graph (a layer's
        output is cloned on its way on, so later in-place operations cannot change what was captured)."""
        out: dict[str, Tensor] = {}

        def hook(name: str):
            def store(module: nn.Module, args: Any, output: Any) -> Any:
                t = _first_tensor(output)
                if t is None:
                    return None
                # a copy: an in-place activation after this layer (VGG's ReLU(inplace=True)) would change a view
                out[name] = t.detach().clone() if self.detach else t
                self.layouts[name] = self._layout(module, t)
                if not self.detach and t is output:
                    return output.clone()  # downstream works on the copy; ours stays as computed
                return None
            return store

        handles = [m.register_forward_hook(hook(n)) for n, m in self._modules.items()]
        try:
            y = self.model(x)
        finally:
            for h in handles:
                h.remove()
        silent = [n for n in self.layers if n not in out]
        if silent:
            raise ConfigError(f"layer {silent[0]!r} of {type(self.model).__name__} did not run in forward() (or "
                              "returned no tensor); pick a layer on the forward path")
        return y, {n: out[n] for n in self.layers}

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        return self.run(x)[1]

    def _layout(self, module: nn.Module, t: Tensor) -> str:
        if t.ndim == 4:
            family = family_of(self.model)
            nhwc = family is not None and family_traits(family).feature_layout == "NHWC"
            grid = nhwc and not isinstance(module, _NCHW)
            return "NHWC" if grid else "NCHW"
        if t.ndim == 3:
            return "tokens"
        return "flat"

    def maps(self, x: Tensor) -> dict[str, Tensor]:
        """The outputs as ``(B, C, H, W)`` maps: token grids are laid out on their image grid (ViT's class token
        dropped). A layer without a spatial output (a classifier) is a ConfigError."""
        return {n: as_maps(t, self.layouts[n], self.model, n) for n, t in self(x).items()}


def as_maps(t: Tensor, layout: str, model: nn.Module, name: str = "") -> Tensor:
    """One captured output as ``(B, C, H, W)``, whatever its layout."""
    if layout == "NCHW":
        return t
    if layout == "NHWC":
        return t.permute(0, 3, 1, 2)
    if layout == "tokens":
        b, n, d = t.shape
        if hasattr(model, "grid_size") and hasattr(model, "num_prefix_tokens"):  # a ViT says its grid
            (gh, gw), prefix = model.grid_size, model.num_prefix_tokens
        else:  # a square grid, after at most one prefix token
            prefix = 0 if math.isqrt(n) ** 2 == n else 1
            gh = gw = math.isqrt(n - prefix)
        if gh * gw + prefix != n:
            raise ConfigError(f"layer {name!r} has {n} tokens, not a {gh}x{gw} grid; pick a layer with a token grid")
        return t[:, prefix:].transpose(1, 2).reshape(b, d, gh, gw)
    raise ConfigError(f"layer {name!r} outputs {tuple(t.shape)}, which has no spatial layout; pick an earlier layer")


def features(model: nn.Module, layers: str | Sequence[str], *, detach: bool = True) -> FeatureExtractor:
    """A callable that runs ``model`` and returns ``{layer: output}`` for the named layers, for any family.

    Args:
        model: any ``nn.Module`` (every registered model, or your own).
        layers: names from ``model.named_modules()``; an unknown name is a one-line ConfigError listing close ones.
        detach: False keeps the outputs in the autograd graph (for gradients with respect to them).

    Returns:
        A :class:`FeatureExtractor`: ``extract(x) -> dict``, ``extract.run(x) -> (logits, dict)`` and
        ``extract.maps(x)``, the outputs as ``(B, C, H, W)`` maps.
    """
    return FeatureExtractor(model, layers, detach=detach)


def first_conv(model: nn.Module) -> str:
    """The name of the first convolution: the first layer's filters, or a transformer's patch embedding."""
    name = next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if name is None:
        raise ConfigError(f"{type(model).__name__} has no Conv2d layer to draw filters of; pass a layer name")
    return name


def default_cam_layer(model: nn.Module) -> str:
    """Where Grad-CAM looks by default: the layer the model's family declares (``Traits.cam_layer`` in its family
    file), the last convolutional stage whose maps still have a spatial grid (LeNet-5's C3, since C5 is already
    1x1; ViT's next-to-last block, since the last block's patch tokens never reach the class token). A model of no
    registered family: its last ``stages`` entry, else its ``tail``.
    """
    family = family_of(model)
    if family is not None:
        return family_traits(family).default_cam_layer(model)
    stages = getattr(model, "stages", None)
    if isinstance(stages, (nn.Sequential, nn.ModuleList)) and len(stages):
        return last_stage(model)
    if isinstance(getattr(model, "tail", None), nn.Module):
        return "tail"
    raise ConfigError(f"no default Grad-CAM layer for {type(model).__name__}; pass layer= (a conv block's name)")

