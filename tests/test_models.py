"""Registry-wide model tests: exact numbers on the meta device, the paper's rounding, docstrings, fwd/bwd."""

from __future__ import annotations

import importlib
import re

import pytest
import torch

from milestones import count_macs, count_params
from milestones.errors import ConfigError
from milestones.models import Counts, create_model, get_spec, list_models, model_options

ALL = list_models()


@pytest.mark.parametrize("name", ALL)
def test_counts_exact(name: str) -> None:
    """Parameters and multiply-adds, both exact integers, as stored in the family's COUNTS table.

    No tolerance: the meta-device count is deterministic, so any difference is a stale or mistyped entry (a 1e-6
    GMACs slack once hid lenet5 carrying lenet5_modern's 416,520 MACs instead of its own 415,680).
    """
    spec = get_spec(name)
    assert spec.counts is not None, f"{name} has no Counts entry"
    with torch.device("meta"):
        model = create_model(name)
    assert (count_params(model), count_macs(model, spec.input_size)) == (spec.counts.params, spec.counts.macs)


def test_counts_are_integers() -> None:
    """A Counts entry holds exact integers; a rounded float (the old ``gmacs=0.0004165`` style) is refused."""
    for name in ALL:
        c = get_spec(name).counts
        assert type(c.params) is int and type(c.macs) is int, name
    with pytest.raises(TypeError, match="macs"):
        Counts(params=60_000, macs=0.00041568)
    with pytest.raises(TypeError, match="params"):
        Counts(params=60e3, macs=415_680)


@pytest.mark.parametrize("name", [n for n in ALL if get_spec(n).reported.params_m is not None])
def test_params_within_paper_rounding(name: str) -> None:
    """The paper prints millions rounded (and sometimes loosely, e.g. AlexNet's "60 million"); stay within 5%."""
    spec = get_spec(name)
    assert spec.counts.params / 1e6 == pytest.approx(spec.reported.params_m, rel=0.05)


def test_reported_numbers_are_checked_against_the_paper() -> None:
    """A paper number still marked "verify" / "from memory" is not reported: check it or leave it out (None)."""
    unverified = [n for n in ALL if re.search(r"verify|from memory", get_spec(n).reported.source, re.I)]
    assert not unverified, f"REPORTED entries still to check against the paper: {unverified}"


@pytest.mark.parametrize("name", ALL)
def test_docstring_table(name: str) -> None:
    """The family docstring's paper-vs-ours table has a row for the variant with its exact parameter count."""
    spec = get_spec(name)
    doc = importlib.import_module(f"milestones.models.{spec.family}").__doc__ or ""
    rows = [line for line in doc.splitlines() if re.match(rf"\|\s*`?{re.escape(name)}`?\s*\|", line)]
    assert rows, f"no '| {name} |' row in the {spec.family} docstring"
    assert f"{spec.counts.params:,}" in rows[0], f"row for {name} does not show {spec.counts.params:,}"
    if spec.reported.top1_err is not None:
        assert f"{spec.reported.top1_err}" in rows[0], f"row for {name} does not show the paper's top-1 error"


@pytest.mark.parametrize("name", ALL)
def test_forward_backward(name: str) -> None:
    """A small instance runs forward and backward, returns (B, num_classes) logits, and every parameter gets a grad."""
    spec = get_spec(name)
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, **spec.small)
    x = torch.randn(2, *(spec.small_input or spec.input_size))
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.logsumexp(dim=1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing}"


@pytest.mark.parametrize("name", ALL)
def test_model_api(name: str) -> None:
    """forward_features gives (B, D); reset_classifier changes the number of outputs."""
    spec = get_spec(name)
    model = create_model(name, num_classes=7, **spec.small).eval()
    x = torch.randn(1, *(spec.small_input or spec.input_size))
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.ndim == 2 and feats.shape[0] == 1
        model.reset_classifier(3)
        assert model(x).shape == (1, 3)


TRANSFORMERS = ["vit_ti16", "swin_t", "cswin_t"]


def test_transformers_share_one_spelling() -> None:
    """The options the three transformer families have in common are spelt alike (issue 12), and their blocks expose
    attention weights through the same method."""
    shared = {"dim", "num_heads", "mlp_ratio", "drop_rate", "attn_drop_rate", "drop_path_rate", "num_classes"}
    for name in TRANSFORMERS:
        assert shared <= set(model_options(name)), name
        with torch.device("meta"):
            model = create_model(name)
        assert callable(model.attention_maps)
        blocks = [m for m in model.modules() if hasattr(m, "drop_path") and hasattr(m, "mlp")]
        assert blocks and all(callable(getattr(b, "forward_with_attention", None)) for b in blocks), name


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("swin_t", "embed_dim", "dim"),
        ("vit_ti16", "dropout", "drop_rate"),
        ("vit_ti16", "attn_dropout", "attn_drop_rate"),
        ("cswin_t", "drop_path", "drop_path_rate"),
        ("vit_ti16", "image_size", "img_size"),
    ],
)
def test_old_spelling_is_a_one_line_error_naming_the_new_one(name: str, old: str, new: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_model(name, **{old: 1})
    message = str(info.value)
    assert "\n" not in message
    assert f"no option {old!r} (did you mean {new!r}?); valid options: " in message


def test_select_models_expands_globs_once_and_checks_names() -> None:
    """``milestones bench`` (and any command taking model words) resolves them here, in the registry."""
    from milestones.errors import UnknownModelError
    from milestones.models import select_models

    assert select_models(["resnet2*", "resnet20"]) == [n for n in list_models("resnet2*")]
    assert select_models(["lenet5", "vgg11"]) == ["lenet5", "vgg11"]
    with pytest.raises(UnknownModelError, match="no model matches 'nosuch\\*'"):
        select_models(["nosuch*"])
    with pytest.raises(UnknownModelError, match="did you mean"):
        select_models(["resnet5O"])
