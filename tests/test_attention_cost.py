"""attention-cost (issue 14): the exponent fit, the counter against the closed-form cost of each attention design, the
attended-token masks read from real models, and run-less experiments in the runner. The experiment's smoke run is
``test_experiments.py::test_every_experiment_runs_end_to_end_in_smoke_mode[attention-cost]``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from milestones.attention import query_attention
from milestones.errors import ConfigError
from milestones.experiments import base
from milestones.experiments.attention_cost import (
    DESIGNS,
    MATCHED,
    _matched_input,
    attention_layer,
    attention_matrix_bytes,
    closed_form_macs,
    count_pass,
    first_layer,
    growth_exponent,
    layer_input_shape,
    matched_layer,
)
from milestones.models import create_model


@pytest.mark.parametrize("exponent", [1.0, 1.5, 2.0, 0.73])
def test_growth_exponent_recovers_a_power_law(exponent: float) -> None:
    n = [196.0, 576.0, 1024.0, 2304.0, 4096.0]
    fitted = growth_exponent(n, [3.7 * x**exponent for x in n])
    assert fitted == pytest.approx(exponent, rel=1e-9)


def test_growth_exponent_of_a_sum_tends_to_its_largest_power() -> None:
    """4NC^2 + 2N^2C (global attention at C = 768): nearly linear at few tokens, quadratic at many."""
    n = [float(2**k) for k in range(4, 22)]
    cost = [4 * x * 768**2 + 2 * x * x * 768 for x in n]
    assert growth_exponent(n[:2], cost[:2]) < 1.05
    assert growth_exponent(n[-2:], cost[-2:]) > 1.98
    assert 1.05 < growth_exponent(n, cost) < 1.98
    assert growth_exponent([100.0], [5.0]) != growth_exponent([100.0], [5.0])  # one point: nan


@pytest.mark.parametrize("size", [224, 448])
@pytest.mark.parametrize("design", ["global", "window", "cross-shaped"])
def test_counted_matched_layer_macs_equal_the_closed_form(design: str, size: int) -> None:
    """The counter against each design's formula (Swin Eq. 1-2; our count of a CSWin layer) at the same width and
    grid; 224 and 448 give grids of 56 and 112, which 7 x 7 windows tile."""
    with torch.device("meta"):
        layer = matched_layer(design)
    x = torch.zeros(_matched_input(design, size), device="meta")
    g = size // 4
    expected = closed_form_macs(design, g, g, MATCHED["dim"], window=MATCHED["window"], sw=MATCHED["sw"])
    assert count_pass(layer, x, backward=False) == expected


@pytest.mark.parametrize("name", list(DESIGNS))
def test_native_layer_macs_equal_the_closed_form_at_224(name: str) -> None:
    """The first attention layer of the registered model at 224: ViT's 197 tokens of width 768, Swin's 56 x 56 grid of
    width 96 in 7 x 7 windows, CSWin's 56 x 56 grid of width 64 in stripes of width 1."""
    with torch.device("meta"):
        model = create_model(name, **({"img_size": 224} if name != "swin_t" else {}))
    layer = attention_layer(model, name)
    x = torch.zeros(layer_input_shape(name, 224), device="meta")
    if name == "vit_b16":
        n = 197  # 196 patches and the class token: one "row" of n tokens
        expected = 4 * n * 768**2 + 2 * n * n * 768
    else:
        expected = closed_form_macs(DESIGNS[name], 56, 56, 96 if name == "swin_t" else 64)
    assert count_pass(layer, x, backward=False) == expected
    assert count_pass(layer, x, backward=True) > 2 * expected  # backward: input and weight gradients
    with torch.device("meta"):
        alone = first_layer(name)  # what the experiment times: the same layer, built without the network
    assert count_pass(alone, x, backward=False) == expected
    assert sum(p.numel() for p in alone.parameters()) == sum(p.numel() for p in layer.parameters())


def test_attention_matrix_bytes_counts_the_global_weights_kept_alive() -> None:
    """ViT-B/16 at 224: 12 heads x 197^2 float32 per block; a backward pass keeps weights and softmax of all 12."""
    assert attention_matrix_bytes("layer", "vit_b16", 224, backward=False, shrink={}) == 4 * 12 * 197**2
    assert attention_matrix_bytes("network", "vit_b16", 224, backward=True, shrink={}) == 4 * 12 * 197**2 * 24
    assert attention_matrix_bytes("network", "vit_b16", 224, backward=True, shrink={"vit_b16": {"depth": 1}}) == (
        4 * 12 * 197**2 * 2)
    assert attention_matrix_bytes("matched", "vit_b16", 320, backward=False, shrink={}) == 4 * 2 * 6400**2
    assert attention_matrix_bytes("matched", "cswin_t", 320, backward=True, shrink={}) == 0


def _box(h: int, w: int, rows: range, cols: range) -> torch.Tensor:
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[rows.start:rows.stop, cols.start:cols.stop] = True
    return mask


def test_vit_attends_to_every_token() -> None:
    torch.manual_seed(0)
    model = create_model("vit_b16", img_size=96, depth=2)
    maps = query_attention(model, torch.randn(1, 3, 96, 96), (50, 20))
    assert [q.design for q in maps] == ["global", "global"]
    for q in maps:
        assert q.grid == (6, 6) and q.query == (3, 1)
        assert q.attended().all()
        # each head's row sums to 1 less its weight on the class token
        assert bool((q.weights.sum(dim=(1, 2)) < 1).all())


def test_swin_attends_to_its_window_and_its_shifted_window() -> None:
    """At 112 px stage 1 is a 28 x 28 grid of four 7 x 7 windows a side. The token over pixel (50, 50) is (12, 12):
    its window is rows/cols 7-13; the partition shifted by 3 puts it in rows/cols 10-16. The token (0, 0) sits in the
    shifted grid's wrapped corner window, where the mask keeps only its own 3 x 3 region."""
    torch.manual_seed(0)
    model = create_model("swin_t", depths=(2, 1, 1, 1))
    x = torch.randn(1, 3, 112, 112)
    window, shifted = query_attention(model, x, (50, 50))[:2]
    assert (window.design, shifted.design) == ("window", "shifted window")
    assert window.grid == (28, 28) and window.query == (12, 12)
    assert torch.equal(window.attended(), _box(28, 28, range(7, 14), range(7, 14)))
    assert torch.equal(shifted.attended(), _box(28, 28, range(10, 17), range(10, 17)))
    corner = query_attention(model, x, (0, 0))[1]
    assert torch.equal(corner.attended(), _box(28, 28, range(0, 3), range(0, 3)))
    assert window.weights.sum(dim=(1, 2)) == pytest.approx([1.0] * 3, rel=1e-5)


def test_cswin_attends_to_its_cross_shaped_stripes() -> None:
    """Stage 1 (28 x 28 at 112 px, sw = 1): the query's row and column; stage 2 (14 x 14, sw = 2): the 2-wide
    stripes holding it. Vertical-stripe heads come first and see only the column stripe."""
    torch.manual_seed(0)
    model = create_model("cswin_t", depths=(1, 1, 1, 1), img_size=112)
    maps = query_attention(model, torch.randn(1, 3, 112, 112), (50, 50))
    s1, s2, s3, s4 = maps
    assert [q.design for q in maps] == ["cross-shaped", "cross-shaped", "global", "global"]
    assert s1.grid == (28, 28) and s1.query == (12, 12)
    assert torch.equal(s1.attended(), _box(28, 28, range(12, 13), range(28)) | _box(28, 28, range(28), range(12, 13)))
    vertical = (s1.weights[: s1.weights.shape[0] // 2] > 0).any(0)
    assert torch.equal(vertical, _box(28, 28, range(28), range(12, 13)))
    assert s2.grid == (14, 14) and s2.query == (6, 6)
    assert torch.equal(s2.attended(), _box(14, 14, range(6, 8), range(14)) | _box(14, 14, range(14), range(6, 8)))
    assert s3.attended().all() and s4.attended().all()  # stripes of 7 cover the 7 x 7 and 4 x 4 grids: global


def test_query_attention_rejects_what_it_cannot_read() -> None:
    with pytest.raises(ConfigError, match="reads the attention of cswin, swin, vit models, not LeNet5"):
        query_attention(create_model("lenet5"), torch.randn(1, 1, 32, 32), (3, 3))
    with pytest.raises(ConfigError, match="outside"):
        query_attention(create_model("vit_ti16", img_size=32, depth=1), torch.randn(1, 3, 32, 32), (40, 3))


def test_a_run_less_experiment_writes_its_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``Setup(runs=[], data=None)``: nothing is trained, analyse measures through ``ctx.cached`` and the report says
    so instead of naming a dataset and seeds."""
    calls: list[int] = []

    def analyse(ctx: base.Context) -> base.Analysis:
        value = ctx.cached("measure", lambda: calls.append(1) or {"x": 2})
        assert ctx.outcomes == [] and ctx.device == "cpu"
        return base.Analysis(rows=[{"x": value["x"]}], verdict="not testable here", reason="a test")

    exp = base.Experiment("tiny-measure", "Q?", "C.", "S", 1, "none", lambda mode: base.Setup(runs=[], data=None),
                          analyse)
    monkeypatch.setitem(base._REGISTRY, exp.name, exp)
    for _ in range(2):
        result = base.run_experiment(exp.name, mode="smoke", out=tmp_path / "out", device="cpu")
    text = result.report.read_text()
    assert calls == [1]  # the second run read the cache
    assert "- Nothing is trained (no seeds): measurements only" in text
    assert "seeds:" not in text and "runs' own wall time" not in text
    assert "| x |" in text and "| 2 |" in text
