"""The ``skip-connections`` experiment (issue 14) and the ViT's ``residual`` option it needs: the block without its
skips is exactly MLP(LN(MSA(LN x))), with them Eq. 2-3, both against a float64 recomputation from the weights; the
gradient profile and its in/out ratio on hand-made records; the verdict on hand-made rows, each branch; a smoke run
that writes the table and both figures."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from parity import MARGIN, REL, assert_logits_close, relative_error
from torch.nn import functional as F

from milestones.errors import ConfigError
from milestones.experiments import run_experiment
from milestones.experiments.skip_connections import (
    EndGradNorms,
    _verdict,
    compare_losses,
    gradient_effect,
    in_out_ratio,
    profile,
)
from milestones.models import create_model


def _tiny_vit(residual: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("vit_ti16", img_size=8, patch_size=4, depth=2, num_classes=3, residual=residual)


def _reference_block(block: torch.nn.Module, x: torch.Tensor, residual: bool) -> torch.Tensor:
    """The block recomputed in float64 from its weights: LayerNorm, softmax attention and the exact (erf) GELU
    written out by hand."""
    w = {k: v.detach().double() for k, v in block.state_dict().items()}
    x = x.double()

    def ln(t: torch.Tensor, name: str) -> torch.Tensor:
        mu = t.mean(-1, keepdim=True)
        var = ((t - mu) ** 2).mean(-1, keepdim=True)
        return (t - mu) / torch.sqrt(var + 1e-6) * w[f"{name}.weight"] + w[f"{name}.bias"]

    def attn(t: torch.Tensor) -> torch.Tensor:
        b, n, d = t.shape
        heads = block.attn.num_heads
        q, k, v = (t @ w["attn.qkv.weight"].T + w["attn.qkv.bias"]).split(d, dim=-1)
        q, k, v = (z.reshape(b, n, heads, d // heads).transpose(1, 2) for z in (q, k, v))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)
        out = (a @ v).transpose(1, 2).reshape(b, n, d)
        return out @ w["attn.proj.weight"].T + w["attn.proj.bias"]

    def mlp(t: torch.Tensor) -> torch.Tensor:
        h = t @ w["mlp.fc1.weight"].T + w["mlp.fc1.bias"]
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        return h @ w["mlp.fc2.weight"].T + w["mlp.fc2.bias"]

    if not residual:
        return mlp(ln(attn(ln(x, "norm1")), "norm2"))
    x = x + attn(ln(x, "norm1"))
    return x + mlp(ln(x, "norm2"))


@pytest.mark.parametrize("residual", [True, False])
def test_vit_block_with_and_without_residual_against_float64(residual: bool) -> None:
    model = _tiny_vit(residual).eval()
    for block in model.stages:  # the official init has near-zero biases: give every parameter a size of its own
        for p in block.parameters():
            p.data.normal_(0, 0.2)
    assert all(b.residual is residual for b in model.stages)
    x = torch.randn(2, 5, 192, generator=torch.Generator().manual_seed(1))
    block = model.stages[0]
    with torch.no_grad():
        ours = block(x)
        expected = _reference_block(block, x, residual)
        other = _reference_block(block, x, not residual)
    assert_logits_close(ours, expected.float())
    assert relative_error(ours, other.float()) > MARGIN * REL  # the other wiring would fail the bound


def test_vit_residual_false_keeps_parameters_and_init() -> None:
    with_skip, without = _tiny_vit(True), _tiny_vit(False)
    a, b = with_skip.state_dict(), without.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same initialisation
    x = torch.randn(2, 3, 8, 8)
    assert with_skip(x).shape == without(x).shape == (2, 3)
    with pytest.raises(ConfigError, match="drop_path_rate"):
        create_model("vit_ti16", img_size=8, patch_size=4, depth=2, residual=False, drop_path_rate=0.1)


def test_profile_averages_the_window_without_zeros_and_ratio_compares_thirds() -> None:
    records = [{"kind": "grad_norms", "step": 1, "a": 0.0, "b": 2.0, "c": 1.0},
               {"kind": "grad_norms", "step": 2, "a": 4.0, "b": 4.0, "c": 3.0},
               {"kind": "grad_norms", "step": 9, "a": 1.0, "b": 1.0, "c": 1.0}]
    assert profile(records, {1, 2}) == [("a", 4.0), ("b", 3.0), ("c", 2.0)]
    assert profile(records, {5}) == []
    # seven layers, the last the classifier: thirds of the six trunk layers are (1, 4) and (2, 8)
    norms = [1.0, 4.0, 100.0, 100.0, 2.0, 8.0, 1000.0]
    assert in_out_ratio(norms) == pytest.approx(math.sqrt(4) / math.sqrt(16), rel=1e-12)
    assert in_out_ratio([1.0, 2.0, 3.0]) is None  # fewer than three trunk layers
    assert in_out_ratio([0.0, 1.0, 1.0, 5.0]) is None  # no gradient reached the first layer


def test_end_grad_norms_logs_only_the_two_windows_in_build_order() -> None:
    from types import SimpleNamespace

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(36, 2))
    cb = EndGradNorms(window=2)
    state = SimpleNamespace(model=model, step=0)
    cb.on_fit_start(state, total_steps=7)
    logged = []
    for step in range(7):
        state.step = step
        model.zero_grad()
        F.cross_entropy(model(torch.randn(4, 3, 5, 5)), torch.tensor([0, 1, 0, 1])).backward()
        if (r := cb.on_backward(state)) is not None:
            logged.append(r)
    assert [r["step"] for r in logged] == [1, 2, 6, 7]
    assert list(logged[0])[2:] == ["0.weight", "2.weight"]
    assert logged[-1]["2.weight"] == pytest.approx(float(model[2].weight.grad.norm()), rel=1e-6)


def _rows(resnet: float, plain: float, dense: float, vit: float, noskip: float | None,
          se: float = 0.001) -> list[dict]:
    losses = {"resnet20": resnet, "plain20": plain, "densenet_bc100": dense, "vit": vit, "vit_noskip": noskip}
    return [{"model": k, "status": "ok" if v is not None else "failed", "train loss (last epoch)": v,
             "loss s.e.": se if v is not None else None, "grad in/out (init)": 1.0, "grad in/out (end)": None}
            for k, v in losses.items()]


def test_compare_losses_branches() -> None:
    def row(loss: float | None, se: float = 0.01, status: str = "ok") -> dict:
        return {"train loss (last epoch)": loss, "loss s.e.": se, "status": status}

    assert compare_losses(row(1.0), row(1.5)) == "helps"
    assert compare_losses(row(1.5), row(1.0)) == "hurts"
    assert compare_losses(row(1.0), row(1.01)) == "tie"  # within 2% of the larger
    assert compare_losses(row(1.0, se=0.1), row(1.2, se=0.1)) == "tie"  # within twice the s.e. of the difference
    assert compare_losses(row(1.0), row(None, status="failed")) == "helps"  # without the skip it diverged


def test_gradient_effect_reads_flatness_as_a_ratio_near_one_either_way() -> None:
    def row(r: float | None) -> dict:
        return {"grad in/out (init)": r}

    assert "is the flatter one" in gradient_effect(row(1.2), row(4.35))  # a BN plain net's gradient grows inwards
    assert "flatter" in gradient_effect(row(0.8), row(0.1)) and "not" not in gradient_effect(row(0.8), row(0.1))
    steeper = gradient_effect(row(3.0), row(2.0))
    assert "not the flatter" in steeper and "get more" in steeper
    assert "get less" in gradient_effect(row(0.2), row(0.5))
    assert gradient_effect(row(None), row(2.0)) == ""


def test_verdict_on_hand_made_rows() -> None:
    assert _verdict(_rows(1.0, 1.3, 1.2, 1.5, 2.0), "quick")[0] == "reproduced"
    assert _verdict(_rows(1.0, 1.3, 1.31, 1.5, None), "quick")[0] == "reproduced"  # DenseNet ties; no-skip diverged
    verdict, reason, findings = _verdict(_rows(1.0, 1.3, 1.8, 1.5, 1.5), "quick")
    assert verdict == "partly reproduced" and "1 of 3" in reason and len(findings) == 3
    assert _verdict(_rows(1.3, 1.0, 1.8, 2.0, 1.5), "quick")[0] == "not reproduced"
    rows = [r for r in _rows(1.0, 1.3, 1.2, 1.5, 2.0) if r["model"] != "densenet_bc100"]
    verdict, reason, _ = _verdict(rows, "quick")
    assert verdict == "not testable here" and "concatenation" in reason


@pytest.mark.slow
def test_smoke_run_writes_table_profiles_and_figures(data_root: Path, tmp_path: Path) -> None:
    result = run_experiment("skip-connections", mode="smoke", out=tmp_path / "out", data_root=str(data_root))
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert [r["model"] for r in rows] == ["resnet20", "plain20", "densenet_bc100", "vit", "vit_noskip"]
    assert {r["status"] for r in rows} == {"ok"}
    layers = {r["model"]: int(r["weight layers"]) for r in rows}
    assert layers["resnet20"] == layers["plain20"] == 20 and layers["densenet_bc100"] == 100
    assert layers["vit"] == layers["vit_noskip"] == 2 * 4 + 2  # patch embedding, 4 per block, head
    assert all(float(r["grad in/out (init)"]) > 0 for r in rows)
    text = (tmp_path / "out" / "report.md").read_text()
    for name in ("grad_profile.png", "training_loss.png"):
        assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG" and f"]({name})" in text
    noskip = next(o for o in result.analysis.rows if o["model"] == "vit_noskip")
    assert noskip["skip"] == "none"
    cfg = (tmp_path / "out" / "runs" / "vit_noskip-s0" / "config.yaml").read_text()
    assert "residual: false" in cfg
