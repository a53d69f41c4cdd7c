"""Family traits: every registered family declares, in its own file, what the rest of the library needs to know about
it (issue 27), and each declared trait is checked against a real small model of the family."""

from __future__ import annotations

import json

import pytest
import torch

from milestones import precision as P
from milestones.attention import query_attention
from milestones.errors import ConfigError, UnknownModelError
from milestones.models import (
    FAMILIES,
    PaperRef,
    Traits,
    create_model,
    family_of,
    family_traits,
    get_spec,
    list_models,
    measured,
    register_variants,
)
from milestones.models._registry import MEASURED_FILE
from milestones.viz import default_cam_layer, features, grad_cam


def _small(family: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """The family's first variant as its tests' small instance, with one input."""
    spec = get_spec(list_models(family=family)[0])
    torch.manual_seed(0)
    model = create_model(spec.name, num_classes=5, **spec.small).eval()
    with torch.no_grad():  # ViT's head starts at zero (its paper's fine-tuning init): no score would depend on anything
        for p in model.parameters():
            if p.ndim >= 2 and not p.any():
                p.normal_(std=0.02)
    return model, torch.randn(1, *(spec.small_input or spec.input_size))


def test_every_family_file_registers_models_and_traits() -> None:
    assert len(FAMILIES) >= 12
    for family in FAMILIES:
        assert list_models(family=family), family
        assert isinstance(family_traits(family), Traits)
        assert all(get_spec(n).traits is family_traits(family) for n in list_models(family=family))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_declared_cam_layer_has_a_gradient(family: str) -> None:
    """The family's default Grad-CAM layer exists in a built model and carries a gradient from the class score:
    ViT's last block (whose patch tokens never reach the class token) would give an all-zero map."""
    model, x = _small(family)
    assert family_of(model) == family
    layer = default_cam_layer(model)
    assert layer in dict(model.named_modules()), layer
    logits, captured = features(model, [layer], detach=False).run(x)
    (grad,) = torch.autograd.grad(logits[0, 0], captured[layer])
    if grad.ndim == 3:  # tokens: only image tokens make a map (ViT's last block reaches the head by its class token)
        grad = grad[:, getattr(model, "num_prefix_tokens", 0):]
    assert grad.abs().max() > 0, f"the class score does not depend on {layer}'s map"
    cam = grad_cam(model, x[0], target_class=0)
    assert cam.layer == layer and cam.coarse.ndim == 2  # a grid (1x1 for some families at their small input)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_with_attention_weights_declares_their_reader(family: str) -> None:
    """A family whose models expose ``attention_maps`` must say how they are read (and nothing else may claim to):
    a new transformer family without a reader fails here rather than in ``viz attention``."""
    model, x = _small(family)
    traits = family_traits(family)
    if hasattr(model, "attention_maps"):
        assert traits.attention is not None, f"{family} has attention_maps but declares no reader"
        maps = query_attention(model, x, (0, 0))
        assert len(maps) == len(model.attention_maps(x))
        for m in maps:
            assert m.weights.shape[1:] == m.grid and (m.weights >= 0).all()
        assert not traits.convolutional
    else:
        assert traits.attention is None
        with pytest.raises(ConfigError, match="not"):
            query_attention(model, x, (0, 0))
    assert (traits.explain == "rollout") == (family == "vit")


def test_convolutional_families_get_channels_last_on_cuda() -> None:
    """The trait, not a list in precision.py, decides: the Inceptions and Xception are convolutional (an old list left
    them out, so CUDA kept them NCHW as 'not a convolutional family')."""
    for family in FAMILIES:
        choice = P.resolve_channels_last("auto", family, "cuda")
        assert choice.value is family_traits(family).convolutional, (family, choice.reason)
    assert P.resolve_channels_last("auto", "inception", "cuda").value is True
    assert P.resolve_channels_last("auto", "xception", "cuda").value is True
    assert P.resolve_channels_last("auto", "swin", "cuda").value is False


def test_the_measured_table_names_registered_families_only() -> None:
    """measured.json is data keyed by family: a typo or a removed family is caught, and each entry has the fields
    precision reads."""
    table = {k: v for k, v in json.loads(MEASURED_FILE.read_text()).items() if not k.startswith("_")}
    assert set(table) <= set(FAMILIES), set(table) - set(FAMILIES)
    fields = {"cpu_bf16": {"use", "why"}, "cpu_channels_last": {"use", "speedup", "model"},
              "cpu_bf16_channels_last": {"use", "speedup", "model"}, "cpu_compile": {"speedup", "seconds", "model"}}
    for family, entry in table.items():
        for key, value in entry.items():
            if key.startswith("_"):
                continue
            assert key in fields, (family, key)
            assert fields[key] <= set(value), (family, key, set(value))
            if "model" in value:
                assert get_spec(value["model"]).family == family, (family, key, value["model"])
    assert measured() == table
    assert P.BF16_CPU_CHECKED == {f: e["cpu_bf16"]["why"] for f, e in table.items() if e.get("cpu_bf16", {}).get("use")}
    assert P.CHANNELS_LAST_CPU["resnet"] == (True, table["resnet"]["cpu_channels_last"]["speedup"], "resnet20")


def test_a_family_cannot_register_without_traits_or_with_two() -> None:
    paper = PaperRef("t", "a", 2000)
    with pytest.raises(TypeError, match="traits"):
        register_variants({}, paper=paper)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="two different Traits"):
        # the lenet family declared its traits already; another declaration for it is refused
        def lenet_twice(cfg: object) -> torch.nn.Module:
            return torch.nn.Identity()
        lenet_twice.__module__ = "milestones.models.lenet"
        register_variants({}, paper=paper, traits=Traits(convolutional=False, cam_layer="x"))(lenet_twice)
    with pytest.raises(UnknownModelError, match="unknown model family"):
        family_traits("lenet5")
