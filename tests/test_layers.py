"""The SDPA / explicit attention switch of ``_layers.attend``: scoped, restored on error, per thread, seen by
torch.compile, and what makes the MAC counts include attention."""

from __future__ import annotations

import threading

import pytest
import torch

from milestones import count_macs, create_model
from milestones.models import explicit_attention
from milestones.models._layers import attend, explicit_attention_enabled


def test_switch_is_scoped_and_nests() -> None:
    assert not explicit_attention_enabled()
    with explicit_attention():
        assert explicit_attention_enabled()
        with explicit_attention(False):
            assert not explicit_attention_enabled()
        assert explicit_attention_enabled()
    assert not explicit_attention_enabled()


def test_exception_inside_restores_the_default() -> None:
    with pytest.raises(RuntimeError, match="boom"), explicit_attention():
        assert explicit_attention_enabled()
        raise RuntimeError("boom")
    assert not explicit_attention_enabled()
    with explicit_attention(), pytest.raises(ValueError), explicit_attention(False):
        raise ValueError
    assert not explicit_attention_enabled()


def test_count_macs_failure_leaves_the_default() -> None:
    """count_macs switches to the explicit path; a model that raises inside it does not leave the switch on."""

    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("broken model")

    with pytest.raises(RuntimeError, match="broken model"):
        count_macs(Broken(), (3, 8, 8))
    assert not explicit_attention_enabled()


def test_other_threads_do_not_see_the_switch() -> None:
    seen: list[bool] = []
    with explicit_attention():
        thread = threading.Thread(target=lambda: seen.append(explicit_attention_enabled()))
        thread.start()
        thread.join()
    assert seen == [False]


def test_attention_macs_are_counted_on_a_real_device() -> None:
    """A one-block ViT at 32x32 (4 patches + class token): count_macs equals the hand count, attention's two matmuls
    (q k^T and weights v, N * N * D each) included, on CPU tensors where the fused SDPA kernel is invisible."""
    model = create_model("vit_ti16", img_size=32, depth=1).eval()
    n, d = 5, 192
    hand = (
        d * 4 * (3 * 16 * 16)  # patch embedding: 192 outputs at 2 x 2 positions
        + n * d * 3 * d  # qkv
        + 2 * n * n * d  # q k^T and weights v, over all heads
        + n * d * d  # output projection
        + 2 * n * d * 4 * d  # MLP
        + d * 1000  # head
    )
    assert count_macs(model, (3, 32, 32)) == hand
    assert not explicit_attention_enabled()


def test_torch_compile_follows_the_switch() -> None:
    """A compiled function recompiles when the switch changes instead of keeping the path it was traced with."""
    graphs: list[set[str]] = []

    def backend(gm: torch.fx.GraphModule, _inputs: list[torch.Tensor]):  # noqa: ANN202
        graphs.append({str(node.target) for node in gm.graph.nodes if node.op.startswith("call_")})
        return gm.forward

    fn = torch.compile(lambda q: attend(q, q, q)[0], backend=backend, fullgraph=True)
    q = torch.randn(1, 2, 4, 8)
    fn(q)
    with explicit_attention():
        fn(q)
    fn(q)
    assert len(graphs) == 2
    assert any("scaled_dot_product_attention" in t for t in graphs[0])
    assert not any("scaled_dot_product_attention" in t for t in graphs[1])
    assert any("softmax" in t for t in graphs[1])
